//! `clinic`: the reference application's binary. `clinic demo` runs the
//! whole flow; every management command is there too (`clinic --help`).

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let app = match clinic::open(&clinic::settings_path()).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::args().nth(1).as_deref() == Some("demo") {
        return match clinic::demo(&app, &clinic::migrations_dir()).await {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    cipherdoc_cli::Management::new(app)
        .name("clinic")
        .migrations_dir(clinic::migrations_dir())
        .after_help("Application commands:\n  demo  migrate, create patients, find one by SSN, show the encrypted fields map and a stored document")
        .run()
        .await
}
