//! Runs fuzz targets for longer than the test suite does:
//! `cargo run -p cipherdoc-fuzz --release -- [target|all] [iterations] [seed]`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map_or("all", String::as_str);
    let iterations = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut status = std::process::ExitCode::SUCCESS;
    for t in cipherdoc_fuzz::targets() {
        if which != "all" && which != t.name {
            continue;
        }
        match cipherdoc_fuzz::fuzz(&t, iterations, seed) {
            Ok(runs) => println!("{}: {runs} inputs, no finding (seed {seed})", t.name),
            Err(f) => {
                eprintln!("{f} (seed {seed})");
                status = std::process::ExitCode::FAILURE;
            }
        }
    }
    status
}
