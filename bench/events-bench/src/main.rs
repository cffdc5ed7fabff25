//! The measuring side of `bench/events` (see `bench/README.md`): the outbox relay against a
//! plain publish loop, the analytics worker's throughput, and the lag from a write's commit
//! to the worker's tables. Each command prints one JSON object per measurement on stdout;
//! `bench/events` provisions the database, the broker's virtual host and the processes.
//!
//! ```text
//! events-bench relay EVENTS PATIENT_JSON    fill the outbox, then time a plain publish loop,
//!                                           the server's relay, and the plain loop again
//! events-bench worker EVENTS                wait until the worker has applied EVENTS events
//! events-bench lag BASE_URL PATIENT_JSON RATE SECONDS
//!                                           writes at RATE per second, lag to the worker
//! ```
//!
//! `DATABASE_URL` and `RABBITMQ_URL` come from the environment, as for the binaries measured.

mod lag;
mod relay;
mod stats;
mod worker;

use std::path::Path;

use anyhow::{Context, bail};

const USAGE: &str = "usage: events-bench relay EVENTS PATIENT_JSON
       events-bench worker EVENTS
       events-bench lag BASE_URL PATIENT_JSON RATE SECONDS";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["relay", events, patient] => relay::run(number(events)?, Path::new(patient)).await,
        ["worker", events] => worker::run(number(events)?).await,
        ["lag", base, patient, rate, seconds] => {
            lag::run(base, Path::new(patient), number(rate)?, number(seconds)?).await
        }
        _ => bail!("{USAGE}"),
    }
}

fn number<T: std::str::FromStr>(text: &str) -> anyhow::Result<T> {
    text.parse()
        .ok()
        .with_context(|| format!("not a number: {text}"))
}

/// A required environment variable.
fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

/// The Patient every measurement writes, without `id` (the bench's own document).
fn patient(path: &Path) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let serde_json::Value::Object(mut patient) = serde_json::from_str(&text)? else {
        bail!("{} is not a JSON object", path.display());
    };
    patient.remove("id");
    patient.remove("meta");
    Ok(patient)
}

/// Prints one measurement as a JSON line.
fn emit(value: &serde_json::Value) {
    println!("{value}");
}
