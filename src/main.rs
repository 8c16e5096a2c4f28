use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A missing .env is fine; a malformed one is reported.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: .env: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = cifix::cli::Cli::parse();
    match cifix::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
