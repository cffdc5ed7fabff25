//! Ferrum analytics: consumes the change stream (exchange `fhir.changes`) into narrow fact
//! tables in schema `analytics`, each event in one transaction with its processed marker,
//! and answers the reports with GROUP BY queries over them ([`reports()`], also as FHIR
//! MeasureReports: [`measure_report`]). [`rebuild()`] recomputes the facts from the stored
//! resources; incremental and rebuilt facts are always equal. A second consumer
//! ([`accounts`]) creates the billing Account of every new Patient (see
//! `docs/analytics.md`).
//!
//! The binary is thin: [`Command::parse`], [`Config::from_env`], [`logging::init`], then
//! [`run`], [`rebuild()`] or [`reports()`].

pub mod accounts;
pub mod config;
pub mod facts;
pub mod measure_report;
pub mod projection;
pub mod prune;
pub mod rebuild;
pub mod reports;
pub mod step;
pub mod worker;

use std::time::Duration;

use chrono::NaiveDate;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use store::StoreError;
use tokio::sync::watch;

pub use config::Config;
pub use facts::{Facts, Kind};
pub use projection::{Applied, Change, MalformedMessage, apply, apply_all};
pub use rebuild::{Rebuilt, rebuild};
pub use reports::{ReportOptions, Reports, reports};

/// The binary's usage text.
pub const USAGE: &str = "\
usage: analytics-worker                  consume change events until SIGINT or SIGTERM
       analytics-worker rebuild          recompute every aggregate from the stored resources
       analytics-worker report [--as-of YYYY-MM-DD] [--top N]
                                         print the reports as JSON
configuration: environment variables (see .env.example)";

/// What the binary was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Consume the change stream (no arguments).
    Consume,
    /// Recompute the projections from the stored resources, then exit.
    Rebuild,
    /// Print the reports as JSON, then exit.
    Report(ReportOptions),
    /// Print [`USAGE`].
    Help,
}

impl Command {
    /// Reads the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
        let mut args = args.into_iter();
        let command = match args.next().as_deref() {
            None => Command::Consume,
            Some("rebuild") => Command::Rebuild,
            Some("report") => return report_options(args).map(Command::Report),
            Some("help" | "-h" | "--help") => Command::Help,
            Some(_) => return Err("unknown command".into()),
        };
        match args.next() {
            None => Ok(command),
            Some(_) => Err("unexpected argument".into()),
        }
    }
}

fn report_options(mut args: impl Iterator<Item = String>) -> Result<ReportOptions, String> {
    let mut options = ReportOptions::today();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--as-of" => {
                options.as_of = NaiveDate::parse_from_str(&value, "%Y-%m-%d")
                    .map_err(|_| "--as-of must be a date, YYYY-MM-DD".to_owned())?;
            }
            "--top" => {
                options.top = value
                    .parse()
                    .ok()
                    .filter(|top| *top > 0)
                    .ok_or("--top must be a positive number")?;
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

/// Connects to PostgreSQL and applies the migrations (the `analytics` schema is one).
pub async fn connect(config: &Config) -> Result<PgPool, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(config.database_connections())
        .acquire_timeout(Duration::from_secs(10))
        .connect(&config.database_url)
        .await?;
    store::MIGRATOR
        .run(&pool)
        .await
        .map_err(StoreError::Migrate)?;
    Ok(pool)
}

/// Connects, migrates, then consumes change events until `shutdown` turns true. The broker
/// need not be reachable: the worker waits for it. The database must be.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), StoreError> {
    let pool = connect(&config).await?;
    consume_all(pool, &config, shutdown).await
}

/// Runs every consumer the configuration asks for until `shutdown` turns true: the
/// projection, and the billing accounts unless `ANALYTICS_AUTO_ACCOUNT` is false; and the
/// deletion of old processed markers ([`prune`]). Each has
/// its own queue and connection, so neither holds the other up. Fails only when the
/// billing accounts' store cannot be opened.
pub async fn consume_all(
    pool: PgPool,
    config: &Config,
    shutdown: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let pruning = prune::run(pool.clone(), config.processed_retention, shutdown.clone());
    if !config.auto_account {
        tracing::info!("ANALYTICS_AUTO_ACCOUNT is false: no billing accounts are created");
        tokio::join!(worker::consume(pool, config, shutdown), pruning);
        return Ok(());
    }
    let writer = accounts::AccountWriter::connect(config).await?;
    tokio::join!(
        worker::consume(pool, config, shutdown.clone()),
        worker::consume_with(worker::Handler::Accounts(writer), config, shutdown),
        pruning,
    );
    Ok(())
}

/// A stop signal that turns true on SIGINT (Ctrl-C) or SIGTERM.
pub fn stop_on_signal() -> watch::Receiver<bool> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        signal().await;
        tracing::info!("stopping");
        let _ = stop.send(true);
        // Keep the sender: a dropped one reads as a stop too, but only after this.
        stop.closed().await;
    });
    stopped
}

async fn signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        Command::parse(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse(&[]), Ok(Command::Consume));
        assert_eq!(parse(&["rebuild"]), Ok(Command::Rebuild));
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
        let Ok(Command::Report(options)) =
            parse(&["report", "--as-of", "2026-01-31", "--top", "3"])
        else {
            panic!("not a report");
        };
        assert_eq!(options.as_of, NaiveDate::from_ymd_opt(2026, 1, 31).unwrap());
        assert_eq!(options.top, 3);
        assert!(parse(&["rebuild", "now"]).is_err());
        assert!(parse(&["report", "--top", "0"]).is_err());
        assert!(parse(&["report", "--as-of"]).is_err());
        assert!(parse(&["reset"]).is_err());
    }
}
