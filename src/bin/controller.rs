//! `controller`: runs Stampede test plans. See the `stampede_controller` crate.

fn main() -> std::process::ExitCode {
    stampede_controller::main()
}
