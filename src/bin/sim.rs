//! The simulated LLM service; see `stampede_sim` for what it serves.

fn main() -> std::process::ExitCode {
    stampede_sim::main()
}
