//! The standalone `cipherdoc` command: keys, explicit encryption, inspection.

fn main() -> std::process::ExitCode {
    cipherdoc_cli::standalone::main()
}
