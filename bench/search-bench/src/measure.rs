//! Timing the searches: each one warmed up, then run sequentially (one client, one request
//! at a time), latency from sending the request to the last byte of the answer.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::load::excerpt;
use crate::queries::{Kind, Query};

/// How many times, and for how long at most, each search runs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Timed runs per search.
    pub runs: usize,
    /// Untimed runs before them.
    pub warmup: usize,
    /// A search stops after this long (with at least [`MIN_RUNS`] runs).
    pub budget: Duration,
}

/// The fewest timed runs of a search, whatever the budget.
pub const MIN_RUNS: usize = 5;

/// One search at one scale.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// Patients loaded.
    pub scale: u64,
    pub name: String,
    pub search: String,
    pub selective: bool,
    /// The error that stopped it: the status and what the server said, or the transport
    /// error. No latency then.
    pub error: Option<String>,
    pub runs: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub mean_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Entries of the Bundle with search mode `match` (or no mode).
    pub matches: Option<u64>,
    /// Entries with search mode `include`.
    pub includes: Option<u64>,
    /// `Bundle.total`, when the server gave it.
    pub total: Option<u64>,
    /// Whether the Bundle had a `next` link.
    pub has_next: Option<bool>,
    /// Bytes of the answer.
    pub bytes: Option<u64>,
}

impl Measurement {
    fn new(scale: u64, query: &Query) -> Self {
        Measurement {
            scale,
            name: query.name.to_string(),
            search: query.display(),
            selective: query.selective,
            error: None,
            runs: 0,
            p50_ms: None,
            p99_ms: None,
            mean_ms: None,
            min_ms: None,
            max_ms: None,
            matches: None,
            includes: None,
            total: None,
            has_next: None,
            bytes: None,
        }
    }
}

/// A failed request, as the report shows it.
#[derive(Debug)]
pub struct Failure(pub String);

/// `GET url`; the body of a 200 answer.
pub async fn get(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, Failure> {
    let response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/fhir+json")
        .send()
        .await
        .map_err(|e| Failure(format!("request failed: {e}")))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| Failure(format!("reading the answer failed: {e}")))?;
    if status.as_u16() != 200 {
        return Err(Failure(format!(
            "{status}: {}",
            outcome_text(&body).unwrap_or_else(|| excerpt(&String::from_utf8_lossy(&body)))
        )));
    }
    Ok(body.to_vec())
}

/// The diagnostics of an OperationOutcome, if the body is one.
fn outcome_text(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    if value["resourceType"] != "OperationOutcome" {
        return None;
    }
    let texts: Vec<String> = value["issue"]
        .as_array()?
        .iter()
        .map(|issue| {
            let text = issue["diagnostics"]
                .as_str()
                .or_else(|| issue["details"]["text"].as_str())
                .unwrap_or("");
            format!("{} {}", issue["code"].as_str().unwrap_or("?"), text)
        })
        .collect();
    Some(excerpt(&texts.join("; ")))
}

/// What a searchset Bundle holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BundleCounts {
    pub matches: u64,
    pub includes: u64,
    pub total: Option<u64>,
    pub next: Option<String>,
}

/// Counts the entries of a searchset Bundle; an error if the body is not one.
pub fn bundle_counts(body: &[u8]) -> Result<BundleCounts, Failure> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Failure(format!("the answer is not JSON: {e}")))?;
    if value["resourceType"] != "Bundle" || value["type"] != "searchset" {
        return Err(Failure(format!(
            "the answer is not a searchset Bundle: {}",
            excerpt(&value.to_string())
        )));
    }
    let mut counts = BundleCounts {
        total: value["total"].as_u64(),
        ..BundleCounts::default()
    };
    for entry in value["entry"].as_array().into_iter().flatten() {
        match entry["search"]["mode"].as_str() {
            Some("include") | Some("outcome") => counts.includes += 1,
            _ => counts.matches += 1,
        }
    }
    counts.next = value["link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|link| link["relation"] == "next")
        .and_then(|link| link["url"].as_str())
        .map(str::to_string);
    Ok(counts)
}

/// The URL a search's requests go to: the search itself, or the page reached by following
/// `next` links.
pub async fn target_url(
    client: &reqwest::Client,
    base: &Url,
    query: &Query,
) -> Result<String, Failure> {
    let first = query.url(base).to_string();
    let Kind::Page(page) = query.kind else {
        return Ok(first);
    };
    let mut url = first;
    for reached in 1..page {
        let body = get(client, &url).await?;
        let counts = bundle_counts(&body)?;
        let Some(next) = counts.next else {
            return Err(Failure(format!(
                "page {reached} has no next link: the search has {reached} page(s)"
            )));
        };
        url = absolute(base, &next);
    }
    Ok(url)
}

/// A link as an absolute URL (relative ones under `base`).
fn absolute(base: &Url, link: &str) -> String {
    match Url::parse(link) {
        Ok(url) => url.to_string(),
        Err(_) => base
            .join(link)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| link.to_string()),
    }
}

/// Times `query` at `scale`.
pub async fn measure(
    client: &reqwest::Client,
    base: &Url,
    query: &Query,
    scale: u64,
    settings: Settings,
) -> Measurement {
    let mut m = Measurement::new(scale, query);
    if let Err(Failure(error)) = run(client, base, query, settings, &mut m).await {
        m.error = Some(error);
    }
    m
}

async fn run(
    client: &reqwest::Client,
    base: &Url,
    query: &Query,
    settings: Settings,
    m: &mut Measurement,
) -> Result<(), Failure> {
    let url = target_url(client, base, query).await?;
    let body = get(client, &url).await?;
    let counts = bundle_counts(&body)?;
    m.matches = Some(counts.matches);
    m.includes = Some(counts.includes);
    m.total = counts.total;
    m.has_next = Some(counts.next.is_some());
    m.bytes = Some(body.len() as u64);
    for _ in 1..settings.warmup {
        get(client, &url).await?;
    }
    let mut latencies: Vec<f64> = Vec::with_capacity(settings.runs);
    let started = Instant::now();
    while latencies.len() < settings.runs
        && (latencies.len() < MIN_RUNS || started.elapsed() < settings.budget)
    {
        let sent = Instant::now();
        let result = get(client, &url).await;
        let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
        result?;
        latencies.push(elapsed);
    }
    let stats = Stats::of(&mut latencies);
    m.runs = latencies.len();
    m.p50_ms = Some(stats.p50);
    m.p99_ms = Some(stats.p99);
    m.mean_ms = Some(stats.mean);
    m.min_ms = Some(stats.min);
    m.max_ms = Some(stats.max);
    Ok(())
}

/// Latency statistics in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// Nearest-rank percentiles of `values` (sorted in place); all zero when empty.
    pub fn of(values: &mut [f64]) -> Stats {
        if values.is_empty() {
            return Stats {
                p50: 0.0,
                p99: 0.0,
                mean: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let n = values.len();
            let index = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            values[index]
        };
        Stats {
            p50: rank(0.50),
            p99: rank(0.99),
            mean: values.iter().sum::<f64>() / values.len() as f64,
            min: values[0],
            max: values[values.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut values: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        let stats = Stats::of(&mut values);
        assert_eq!(stats.p50, 100.0);
        assert_eq!(stats.p99, 198.0);
        assert_eq!(stats.min, 1.0);
        assert_eq!(stats.max, 200.0);
        let mut one = vec![3.0];
        assert_eq!(Stats::of(&mut one).p99, 3.0);
    }

    #[test]
    fn counts_a_searchset() {
        let body = br#"{"resourceType":"Bundle","type":"searchset","total":7,
            "link":[{"relation":"self","url":"http://x/fhir/Patient?_count=2"},
                    {"relation":"next","url":"http://x/fhir/Patient?_count=2&_cursor=abc"}],
            "entry":[{"resource":{},"search":{"mode":"match"}},
                     {"resource":{},"search":{"mode":"include"}},
                     {"resource":{}}]}"#;
        let counts = bundle_counts(body).ok();
        assert_eq!(
            counts,
            Some(BundleCounts {
                matches: 2,
                includes: 1,
                total: Some(7),
                next: Some("http://x/fhir/Patient?_count=2&_cursor=abc".into()),
            })
        );
        assert!(bundle_counts(br#"{"resourceType":"Patient"}"#).is_err());
    }

    #[test]
    fn reads_an_operation_outcome() {
        let body = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported","diagnostics":"no search yet"}]}"#;
        assert_eq!(
            outcome_text(body).as_deref(),
            Some("not-supported no search yet")
        );
    }
}
