//! Transaction Bundles of the generated data, and their ingest by concurrent clients
//! (`bench/transaction`, see `bench/README.md`, "Transaction ingest").
//!
//! A Bundle holds whole patients in the generator's order: each Patient, its Account and its
//! Invoices as `POST` entries with `urn:uuid:` `fullUrl`s, the Account's and the Invoices'
//! references to their Patient and the Invoices' to their Account pointing at those
//! `fullUrl`s, so the server rewrites them to the ids it assigns
//! (http://hl7.org/fhir/R4/http.html#trules). The last patient of a Bundle keeps only the
//! entries that fit, so every Bundle has exactly its size.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use url::Url;

use crate::generate::{Generator, Record, account_id, patient_id};

/// `count` transaction Bundles of `size` entries, from Patient `from` on; and the first
/// patient after them.
pub fn bundles(generator: &Generator, from: u64, count: usize, size: usize) -> (Vec<Value>, u64) {
    let mut next = from;
    let bundles = (0..count)
        .map(|_| {
            let mut entries = Vec::with_capacity(size);
            while entries.len() < size {
                let room = size - entries.len();
                entries.extend(
                    record_entries(&generator.record(next))
                        .into_iter()
                        .take(room),
                );
                next += 1;
            }
            json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        })
        .collect();
    (bundles, next)
}

/// The entries of one patient: Patient, Account, Invoices.
fn record_entries(record: &Record) -> Vec<Value> {
    let i = record.index;
    let patient_url = full_url(1, 0, i);
    let account_url = full_url(2, 0, i);
    let local: HashMap<String, &str> = HashMap::from([
        (format!("Patient/{}", patient_id(i)), patient_url.as_str()),
        (format!("Account/{}", account_id(i)), account_url.as_str()),
    ]);
    let mut entries = vec![
        entry("Patient", &patient_url, &record.patient, &local),
        entry("Account", &account_url, &record.account, &local),
    ];
    for (k, invoice) in (1..).zip(&record.invoices) {
        entries.push(entry("Invoice", &full_url(3, k, i), invoice, &local));
    }
    entries
}

/// A `urn:uuid:` of its own for each resource: kind (1 Patient, 2 Account, 3 Invoice), the
/// Invoice's number and the patient's index, as a version 4 UUID's text.
fn full_url(kind: u32, k: u64, i: u64) -> String {
    format!("urn:uuid:{kind:08x}-{k:04x}-4000-8000-{i:012x}")
}

/// A `POST` entry of `resource` without its id, its references to `local` resources
/// pointing at their `fullUrl`s.
fn entry(rtype: &str, full_url: &str, resource: &Value, local: &HashMap<String, &str>) -> Value {
    let mut resource = resource.clone();
    if let Some(object) = resource.as_object_mut() {
        object.shift_remove("id");
    }
    point_at(&mut resource, local);
    json!({"fullUrl": full_url, "resource": resource,
           "request": {"method": "POST", "url": rtype}})
}

fn point_at(value: &mut Value, local: &HashMap<String, &str>) {
    match value {
        Value::Object(object) => {
            for (key, member) in object.iter_mut() {
                match member {
                    Value::String(text) if key == "reference" => {
                        if let Some(url) = local.get(text.as_str()) {
                            *text = (*url).to_string();
                        }
                    }
                    _ => point_at(member, local),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| point_at(item, local)),
        _ => {}
    }
}

/// What one ingest did.
#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub clients: usize,
    pub bundles: usize,
    /// Entries sent, and those answered `201` in a `200` transaction-response.
    pub entries: usize,
    pub committed: usize,
    /// Committed resources by type.
    pub by_type: BTreeMap<String, usize>,
    /// Bytes of JSON sent.
    pub bytes: usize,
    /// From the first request sent to the last answer received.
    pub seconds: f64,
    /// Per Bundle, request sent to answer read, milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Answers that were not a `200` transaction-response with a `201` per entry: by
    /// status (or `invalid` for a 200 of another shape, `socket` for a failed request),
    /// with the first one's text.
    pub errors: BTreeMap<String, usize>,
    pub first_error: Option<String>,
}

/// The outcome of one Bundle.
struct Answer {
    millis: f64,
    committed: Option<BTreeMap<String, usize>>,
    error: Option<(String, String)>,
}

/// POSTs every Bundle of `bodies` to `base` with `clients` requests in flight (each client
/// sends its next Bundle when the last is answered) and checks every answer.
pub async fn ingest(
    client: &reqwest::Client,
    base: &Url,
    bodies: Vec<(Vec<u8>, Vec<String>)>,
    clients: usize,
) -> anyhow::Result<IngestReport> {
    let url = base.as_str().trim_end_matches('/').to_string();
    let entries: usize = bodies.iter().map(|(_, types)| types.len()).sum();
    let bytes: usize = bodies.iter().map(|(body, _)| body.len()).sum();
    let count = bodies.len();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            let (bodies, next, answers) = (bodies.clone(), next.clone(), answers.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some((body, types)) = bodies.get(n) else {
                        return;
                    };
                    let answer = post(&client, &url, body.clone(), types).await;
                    answers.lock().await.push(answer);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.context("a client task failed")?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let answers = std::mem::take(&mut *answers.lock().await);
    let mut report = IngestReport {
        clients,
        bundles: count,
        entries,
        committed: 0,
        by_type: BTreeMap::new(),
        bytes,
        seconds,
        p50_ms: 0.0,
        p99_ms: 0.0,
        errors: BTreeMap::new(),
        first_error: None,
    };
    let mut millis: Vec<f64> = answers.iter().map(|a| a.millis).collect();
    millis.sort_by(f64::total_cmp);
    report.p50_ms = percentile(&millis, 0.50);
    report.p99_ms = percentile(&millis, 0.99);
    for answer in answers {
        if let Some(by_type) = answer.committed {
            for (rtype, n) in by_type {
                report.committed += n;
                *report.by_type.entry(rtype).or_default() += n;
            }
        }
        if let Some((kind, text)) = answer.error {
            *report.errors.entry(kind).or_default() += 1;
            report.first_error.get_or_insert(text);
        }
    }
    Ok(report)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One Bundle: POST, then the answer checked entry by entry against `types`.
async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>, types: &[String]) -> Answer {
    let started = Instant::now();
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/fhir+json")
        .header(reqwest::header::ACCEPT, "application/fhir+json")
        .body(body)
        .send()
        .await;
    let (status, text) = match response {
        Ok(response) => {
            let status = response.status();
            match response.bytes().await {
                Ok(bytes) => (status, bytes),
                Err(e) => return failed(started, "socket", e.to_string()),
            }
        }
        Err(e) => return failed(started, "socket", e.to_string()),
    };
    let millis = started.elapsed().as_secs_f64() * 1e3;
    if status != reqwest::StatusCode::OK {
        let excerpt: String = String::from_utf8_lossy(&text).chars().take(300).collect();
        return Answer {
            millis,
            committed: None,
            error: Some((status.as_u16().to_string(), excerpt)),
        };
    }
    match check(&text, types) {
        Ok(committed) => Answer {
            millis,
            committed: Some(committed),
            error: None,
        },
        Err(problem) => Answer {
            millis,
            committed: None,
            error: Some(("invalid".into(), problem)),
        },
    }
}

fn failed(started: Instant, kind: &str, text: String) -> Answer {
    Answer {
        millis: started.elapsed().as_secs_f64() * 1e3,
        committed: None,
        error: Some((kind.into(), text)),
    }
}

/// The committed resources by type of a transaction-response, whose entries must answer
/// `201` with a `location` of the entry's type, in the request's order.
fn check(body: &[u8], types: &[String]) -> Result<BTreeMap<String, usize>, String> {
    let bundle: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if bundle["resourceType"] != "Bundle" || bundle["type"] != "transaction-response" {
        return Err("not a transaction-response Bundle".into());
    }
    let entries = bundle["entry"].as_array().map_or(&[][..], Vec::as_slice);
    if entries.len() != types.len() {
        return Err(format!(
            "{} entries answered for {} sent",
            entries.len(),
            types.len()
        ));
    }
    let mut committed = BTreeMap::new();
    for (n, (entry, rtype)) in entries.iter().zip(types).enumerate() {
        let response = &entry["response"];
        let status = response["status"].as_str().unwrap_or_default();
        let location = response["location"].as_str().unwrap_or_default();
        if !status.starts_with("201") || !location.starts_with(&format!("{rtype}/")) {
            return Err(format!(
                "entry {n}: status {status:?}, location {location:?}"
            ));
        }
        *committed.entry(rtype.clone()).or_default() += 1;
    }
    Ok(committed)
}

/// The request body of each Bundle, and the type of each of its entries.
pub fn bodies(bundles: &[Value]) -> anyhow::Result<Vec<(Vec<u8>, Vec<String>)>> {
    bundles
        .iter()
        .map(|bundle| {
            let types = bundle["entry"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|e| e["request"]["url"].as_str().unwrap_or_default().to_string())
                .collect();
            Ok((serde_json::to_vec(bundle)?, types))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_full_and_refer_within_themselves() {
        let generator = Generator::new(7);
        let (bundles, next) = bundles(&generator, 0, 3, 100);
        assert!(next > 60, "whole patients fill the Bundles");
        for bundle in &bundles {
            let entries = bundle["entry"].as_array().map_or(&[][..], Vec::as_slice);
            assert_eq!(entries.len(), 100);
            let urls: Vec<&str> = entries
                .iter()
                .filter_map(|e| e["fullUrl"].as_str())
                .collect();
            assert_eq!(urls.len(), 100);
            for e in entries {
                assert!(e["resource"].get("id").is_none());
                if e["request"]["url"] == "Invoice" {
                    let subject = e["resource"]["subject"]["reference"].as_str();
                    assert!(subject.is_some_and(|s| urls.contains(&s)), "{subject:?}");
                    let account = e["resource"]["account"]["reference"].as_str();
                    assert!(account.is_some_and(|a| urls.contains(&a)), "{account:?}");
                }
            }
        }
        // The same seed gives the same Bundles.
        assert_eq!(super::bundles(&generator, 0, 3, 100).0, bundles);
    }
}
