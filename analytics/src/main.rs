//! The `analytics-worker` binary: the command, configuration from the environment,
//! telemetry, then consume, rebuild or report.

use std::process::ExitCode;

use analytics_worker::{Command, Config, USAGE, rebuild, reports, run, stop_on_signal};

/// mimalloc, as the server: decoding an event allocates and frees many small values (the
/// envelope's JSON tree), where the system allocator took an eighth of the worker's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: the worker's own work per event is small next to PostgreSQL's, and on one
/// thread its tasks wake each other without waking another thread.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    let command = match Command::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(problem) => {
            eprintln!("{problem}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let config = Config::from_env()?;
    logging::init(config.log_json);
    match command {
        Command::Help => println!("{USAGE}"),
        Command::Consume => {
            tracing::info!(?config, "starting");
            run(config, stop_on_signal()).await?;
        }
        Command::Rebuild => {
            let pool = analytics_worker::connect(&config).await?;
            let rebuilt = rebuild(&pool).await?;
            tracing::info!(
                patients = rebuilt.patients,
                accounts = rebuilt.accounts,
                invoices = rebuilt.invoices,
                "analytics rebuilt"
            );
        }
        Command::Report(options) => {
            let pool = analytics_worker::connect(&config).await?;
            let reports = reports(&pool, options).await?;
            println!("{}", serde_json::to_string_pretty(&reports)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
