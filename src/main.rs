//! The `peaqos-orchestrator` command. Thin: configuration, logging, then the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use peaqos_orchestrator::clock::Clock;
use peaqos_orchestrator::config::{Config, LogFormat};
use peaqos_orchestrator::store::Store;
use peaqos_orchestrator::{App, DATABASE_WAIT, serve};

/// mimalloc: a request allocates and frees many small strings and JSON values; the system
/// allocator spent about a tenth of the heartbeat's server CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "peaqOS Machine Markets orchestrator", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply database migrations, then exit.
    Migrate,
    /// Ask the local server's /health; exit 0 when it answers {"ok":true}.
    Healthcheck,
    /// Print the OpenAPI 3.1 document (the committed openapi.json).
    Openapi,
    /// Work with the service catalogue.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Validate the built-in catalogue plus the *.json files of DIR (default: PEAQOS_CATALOG_DIR)
    /// as start-up would; print what loaded, or every problem and exit non-zero.
    Check {
        #[arg(env = "PEAQOS_CATALOG_DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

fn check_catalog(dir: Option<&std::path::Path>) -> ExitCode {
    let now = Clock::default().now_ms();
    match peaqos_orchestrator::catalog::load::load(dir, now) {
        Ok((_, counts)) => {
            println!("catalogue valid: {counts}");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems {
                println!("{problem}");
            }
            println!("catalogue invalid: {} problem(s)", problems.len());
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colour only on a terminal: a log file or pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Openapi) => {
            print!("{}", peaqos_orchestrator::openapi::pretty_json());
            return ExitCode::SUCCESS;
        }
        Some(Command::Catalog {
            command: CatalogCommand::Check { dir },
        }) => {
            let _ = dotenvy::dotenv();
            return check_catalog(dir.as_deref());
        }
        _ => {}
    }
    // A `.env` in the working directory fills in variables the environment does not set.
    let _ = dotenvy::dotenv();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("peaqos-orchestrator: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);

    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => run_server(config).await,
        Command::Migrate => migrate(config).await,
        Command::Healthcheck => healthcheck(config).await,
        Command::Openapi | Command::Catalog { .. } => {
            unreachable!("answered before configuration is read")
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("peaqos-orchestrator: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(config: Config) -> Result<(), String> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let addr = config.listen_addr;
    let app = App::start(config, Clock::default())
        .await
        .map_err(|e| e.to_string())?;
    release_freed_memory();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, backend = ?app.store.backend(), "peaqos-orchestrator listening");
    serve(app, listener, shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("shut down");
    Ok(())
}

/// Hands the pages freed during start-up back to the system. Parsing the catalogue builds and
/// drops its JSON text and trees (tens of MB with a large `PEAQOS_CATALOG_DIR`), and mimalloc
/// would otherwise keep those pages resident for the life of the process.
fn release_freed_memory() {
    // SAFETY: `mi_collect` only walks mimalloc's own free lists; it may be called at any time
    // from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

async fn migrate(config: Config) -> Result<(), String> {
    let store = Store::connect(
        &config.database,
        DATABASE_WAIT,
        Duration::from_millis(config.database_timeout_ms),
    )
    .await
    .map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    tracing::info!(backend = ?store.backend(), "migrations applied");
    Ok(())
}

async fn healthcheck(config: Config) -> Result<(), String> {
    let port = config.listen_addr.port();
    let url = format!("http://127.0.0.1:{port}/health");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    let body: serde_json::Value = client
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("{url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if body["ok"] == serde_json::Value::Bool(true) {
        Ok(())
    } else {
        Err(format!("{url} answered {body}"))
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
