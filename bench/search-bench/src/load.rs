//! Loading generated data into a server: `PUT [base]/[type]/[id]` (update as create, the
//! generator's ids), many requests in flight.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::generate::{Generator, ORGANIZATIONS, PRACTITIONERS, Record};

/// Patients generated and sent per chunk: their Patients, then their Accounts, then their
/// Invoices, so that every reference points at a resource already stored.
const CHUNK: u64 = 5_000;

/// Retries of a write answered 429, 500, 502, 503 or 504 (e.g. an exhausted pool).
const RETRIES: u32 = 5;

/// What one load did.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoadReport {
    /// Patients before and after.
    pub from: u64,
    pub to: u64,
    pub concurrency: usize,
    /// Wall-clock seconds of the whole load.
    pub seconds: f64,
    /// Resources written, by type.
    pub resources: BTreeMap<String, u64>,
    /// Seconds spent writing each type (the phases run one after the other).
    pub seconds_by_type: BTreeMap<String, f64>,
    /// Bytes of JSON sent.
    pub bytes: u64,
    /// Writes retried after a 429 or 5xx answer.
    pub retries: u64,
}

impl LoadReport {
    pub fn total(&self) -> u64 {
        self.resources.values().sum()
    }
}

/// One resource to write.
struct Write {
    rtype: &'static str,
    id: String,
    body: Vec<u8>,
}

impl Write {
    fn of(rtype: &'static str, resource: &serde_json::Value) -> anyhow::Result<Self> {
        let id = resource["id"]
            .as_str()
            .context("a generated resource has no id")?
            .to_string();
        Ok(Write {
            rtype,
            id,
            body: serde_json::to_vec(resource)?,
        })
    }
}

/// Writes Patients `from..to` with their Accounts and Invoices (and, when `from` is 0, the
/// Organizations and Practitioners first).
pub async fn load(
    client: &reqwest::Client,
    base: &Url,
    generator: &Generator,
    from: u64,
    to: u64,
    concurrency: usize,
) -> anyhow::Result<LoadReport> {
    let mut report = LoadReport {
        from,
        to,
        concurrency,
        seconds: 0.0,
        resources: BTreeMap::new(),
        seconds_by_type: BTreeMap::new(),
        bytes: 0,
        retries: 0,
    };
    let started = Instant::now();
    if from == 0 {
        let organizations = (1..=ORGANIZATIONS)
            .map(|n| Write::of("Organization", &generator.organization(n)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        put_all(client, base, organizations, concurrency, &mut report).await?;
        let practitioners = (1..=PRACTITIONERS)
            .map(|n| Write::of("Practitioner", &generator.practitioner(n)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        put_all(client, base, practitioners, concurrency, &mut report).await?;
    }
    let mut start = from;
    while start < to {
        let end = (start + CHUNK).min(to);
        let records: Vec<Record> = (start..end).map(|i| generator.record(i)).collect();
        let patients = records
            .iter()
            .map(|r| Write::of("Patient", &r.patient))
            .collect::<anyhow::Result<Vec<_>>>()?;
        put_all(client, base, patients, concurrency, &mut report).await?;
        let accounts = records
            .iter()
            .map(|r| Write::of("Account", &r.account))
            .collect::<anyhow::Result<Vec<_>>>()?;
        put_all(client, base, accounts, concurrency, &mut report).await?;
        let invoices = records
            .iter()
            .flat_map(|r| r.invoices.iter())
            .map(|invoice| Write::of("Invoice", invoice))
            .collect::<anyhow::Result<Vec<_>>>()?;
        put_all(client, base, invoices, concurrency, &mut report).await?;
        eprintln!(
            "[search-bench] loaded patients {start}..{end} ({} resources so far, {:.0} s)",
            report.total(),
            started.elapsed().as_secs_f64()
        );
        start = end;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Writes `writes` (all of one type) with `concurrency` requests in flight.
async fn put_all(
    client: &reqwest::Client,
    base: &Url,
    writes: Vec<Write>,
    concurrency: usize,
    report: &mut LoadReport,
) -> anyhow::Result<()> {
    let Some(rtype) = writes.first().map(|w| w.rtype) else {
        return Ok(());
    };
    let count = writes.len() as u64;
    let bytes: u64 = writes.iter().map(|w| w.body.len() as u64).sum();
    let started = Instant::now();
    let retries: u64 = stream::iter(writes.into_iter().map(|write| put(client, base, write)))
        .buffer_unordered(concurrency.max(1))
        .try_fold(
            0u64,
            |sum, retried| async move { Ok(sum + u64::from(retried)) },
        )
        .await?;
    *report.resources.entry(rtype.to_string()).or_default() += count;
    *report.seconds_by_type.entry(rtype.to_string()).or_default() +=
        started.elapsed().as_secs_f64();
    report.bytes += bytes;
    report.retries += retries;
    Ok(())
}

/// One `PUT`; the retries it took.
async fn put(client: &reqwest::Client, base: &Url, write: Write) -> anyhow::Result<u32> {
    let url = format!(
        "{}/{}/{}",
        base.as_str().trim_end_matches('/'),
        write.rtype,
        write.id
    );
    let mut attempt = 0;
    loop {
        let response = client
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/fhir+json")
            .header(reqwest::header::ACCEPT, "application/fhir+json")
            .header("Prefer", "return=minimal")
            .body(write.body.clone())
            .send()
            .await;
        let retryable = match response {
            Ok(response) if response.status().is_success() => {
                // Read the (minimal) body so the connection goes back to the pool.
                response.bytes().await.ok();
                return Ok(attempt);
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                let retryable = matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504);
                if !retryable || attempt >= RETRIES {
                    bail!(
                        "PUT {}/{} answered {status}: {}",
                        write.rtype,
                        write.id,
                        excerpt(&text)
                    );
                }
                retryable
            }
            Err(error) => {
                if attempt >= RETRIES {
                    return Err(error).with_context(|| format!("PUT {}/{}", write.rtype, write.id));
                }
                true
            }
        };
        if retryable {
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
    }
}

/// The first 300 characters of a response body, on one line.
pub fn excerpt(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
