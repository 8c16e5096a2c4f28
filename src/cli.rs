//! The `cifix` command line.

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::{
    app,
    auth::AuthError,
    config::Config,
    kernel::context::Role,
    state::{self, AppState},
    telemetry,
};

#[derive(Parser)]
#[command(name = "cifix", version, about = "CIFIX LEARN backend")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Create a user; the password is read from standard input (one line).
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["student", "instructor", "admin"])]
        role: String,
    },
    /// Deliver queued email (the outbox) until stopped; for deployments that run workers apart
    /// from the API (then set CIFIX_EMAIL_WORKER=false on the API instances).
    Worker,
    /// Print the OpenAPI document.
    Openapi,
    /// Load a small demo catalog (courses, a demo instructor and students). Runs migrations
    /// first; a second run changes nothing.
    SeedDemo,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        println!("{}", serde_json::to_string_pretty(&crate::http::openapi())?);
        return Ok(());
    }
    // `?` on ConfigError prints exactly one line that names the variable.
    let config = Config::from_env()?;
    telemetry::init_logging(config.log_format);
    match command {
        Command::Serve => {
            let bind = config.bind;
            let state = AppState::build(config).await?;
            let listener = listen(bind).await?;
            tracing::info!(addr = %listener.local_addr()?, "cifix listening");
            app::serve(state, listener, app::shutdown_signal()).await
        }
        Command::Worker => {
            let state = AppState::build(config).await?;
            app::run_worker(state, app::shutdown_signal()).await
        }
        Command::Migrate => {
            let db = state::connect_db(&config).await?;
            db.migrate().await.context("running migrations")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::CreateUser { email, role } => {
            let role: Role =
                role.parse().map_err(|_| anyhow::anyhow!("--role must be student, instructor or admin"))?;
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password).context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            // Wired exactly as the server is (hashing cost, secrets, database).
            let state = AppState::build(config).await?;
            match state.auth.create_user(&email, password, role).await {
                Ok(u) => {
                    println!("created {} {} ({})", u.role.as_str(), u.email, u.id);
                    Ok(())
                }
                Err(AuthError::Validation(errors)) => {
                    let msg: Vec<String> = errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect();
                    bail!("cannot create user: {}", msg.join("; "))
                }
                Err(AuthError::EmailTaken) => {
                    bail!("cannot create user: {email} is already registered")
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::SeedDemo => {
            if config.env == crate::config::Environment::Production {
                bail!("seed-demo refuses to run with CIFIX_ENV=production");
            }
            let state = AppState::build(config).await?;
            let report = crate::demo::seed(&state.auth, &state.catalog, &state.progress).await?;
            match report.password {
                Some(pw) => {
                    println!("seeded {} demo courses; sign in with password {pw} as:", report.courses);
                    println!("  {} (instructor)", crate::demo::INSTRUCTOR_EMAIL);
                    for e in crate::demo::STUDENT_EMAILS {
                        println!("  {e} (student)");
                    }
                }
                None => println!("the demo data is already there; nothing changed"),
            }
            Ok(())
        }
        Command::Openapi => unreachable!(),
    }
}

/// Binds `bind`. All interfaces (`PORT` alone) means IPv6 and IPv4 on one socket; a host
/// without IPv6 gets IPv4 only instead of a refusal to start.
async fn listen(bind: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(bind).await {
        Ok(l) => Ok(l),
        Err(e) if bind.ip().is_unspecified() && bind.is_ipv6() => {
            tracing::warn!(error = %e, "no IPv6 here; listening on IPv4 only");
            let v4 = std::net::SocketAddr::from(([0, 0, 0, 0], bind.port()));
            tokio::net::TcpListener::bind(v4).await.with_context(|| format!("binding {v4}"))
        }
        Err(e) => Err(e).with_context(|| format!("binding CIFIX_BIND={bind}")),
    }
}
