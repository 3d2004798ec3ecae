//! `deployer`: the command line (see the library's `main`).

fn main() -> std::process::ExitCode {
    deployer::main()
}
