//! `agent`: Stampede's load agent. See the `stampede_agent` crate.

fn main() -> std::process::ExitCode {
    stampede_agent::main()
}
