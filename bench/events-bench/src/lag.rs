//! Commit-to-report lag: an open-loop generator writes Patients to the running server at a
//! fixed rate (every other write a `POST` create, the others a `PUT` update of a Patient
//! created earlier in the run), each sent on its schedule whether or not earlier answers
//! have arrived. The answer (201 or 200) marks the commit. A tracker polls
//! `analytics.applied_versions` every [`POLL`] for the written versions still pending; a
//! write's lag is from its answer to the first poll that finds its version (or a newer
//! one) applied, the state the reports are computed from.
//!
//! Before the measurement, a short warm-up at a tenth of the rate opens the connections;
//! it is waited for until applied, so the measurement starts without a backlog.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::stats::Sorted;
use crate::{emit, env};

/// How often the tracker looks for applied versions.
const POLL: Duration = Duration::from_millis(20);
/// How long, after the last answer, writes not yet applied are waited for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// A write sent later than this after its scheduled time counts as late.
const LATE: Duration = Duration::from_millis(10);
const WARMUP: Duration = Duration::from_secs(2);

/// A committed write the tracker waits for.
struct Written {
    id: String,
    version: i64,
    answered: Instant,
}

/// What one write observed.
struct Sample {
    late: Duration,
    response: Duration,
}

/// The generator's shared state.
struct Generator {
    client: reqwest::Client,
    base: String,
    /// The Patient without `id`, serialised once: the generator shares the server's
    /// cores, so it spends as little as it can per write.
    patient: String,
    /// Ids created so far, for the updates.
    created: Mutex<Vec<String>>,
}

pub async fn run(base: &str, patient: &Path, rate: u32, seconds: u32) -> anyhow::Result<()> {
    ensure!(
        rate > 0 && seconds > 0,
        "RATE and SECONDS must be at least 1"
    );
    let generator = Arc::new(Generator {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .timeout(Duration::from_secs(60))
            .build()?,
        base: base.trim_end_matches('/').to_owned(),
        patient: serde_json::to_string(&crate::patient(patient)?)?,
        created: Mutex::new(Vec::new()),
    });
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&env("DATABASE_URL")?)
        .await?;

    let warmup_rate = (rate / 10).max(10);
    let warmup = measure(&generator, &pool, warmup_rate, WARMUP).await?;
    ensure!(
        warmup.errors.is_empty() && warmup.unobserved == 0,
        "the warm-up failed (errors {:?}, {} writes never applied)",
        warmup.errors,
        warmup.unobserved
    );

    let duration = Duration::from_secs(u64::from(seconds));
    let run = measure(&generator, &pool, rate, duration).await?;
    let late = run.samples.iter().filter(|s| s.late > LATE).count();
    let max_late = run.samples.iter().map(|s| s.late).max().unwrap_or_default();
    let responses = Sorted::new(run.samples.iter().map(|s| s.response).collect());
    emit(&json!({
        "phase": "lag",
        "rate": rate,
        "seconds": seconds,
        "writes": run.writes,
        "answered": responses.len(),
        "errors": run.errors.values().sum::<usize>(),
        "error_kinds": run.errors,
        "sent_per_s": run.writes as f64 / run.sending.as_secs_f64(),
        "answered_per_s": responses.len() as f64 / run.answering.as_secs_f64(),
        "late": late,
        "max_late_ms": max_late.as_secs_f64() * 1000.0,
        "response_ms": responses.summary(),
        "lag_ms": run.lags.summary(),
        "observed": run.lags.len(),
        "unobserved": run.unobserved,
        "poll_ms": POLL.as_secs_f64() * 1000.0,
    }));
    Ok(())
}

/// One measurement's outcome.
struct Run {
    writes: usize,
    /// Failed writes by kind: the answer's status, or the client's error.
    errors: HashMap<String, usize>,
    samples: Vec<Sample>,
    /// From the first scheduled write to the last one sent.
    sending: Duration,
    /// From the first scheduled write to the last answer.
    answering: Duration,
    lags: Sorted,
    unobserved: usize,
}

/// Writes at `rate` per second for `duration`, then waits until every committed write is
/// applied (or [`DRAIN_TIMEOUT`] passes).
async fn measure(
    generator: &Arc<Generator>,
    pool: &PgPool,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<Run> {
    let writes = (u64::from(rate) * duration.as_secs()) as usize;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let (written, pending) = mpsc::unbounded_channel();
    let tracker = tokio::spawn(track(pool.clone(), pending));

    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(writes);
    let started = Instant::now();
    for n in 0..writes {
        interval.tick().await;
        let late = started.elapsed().saturating_sub(period * n as u32);
        let generator = Arc::clone(generator);
        let written = written.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let result = generator.write(n).await;
            let answered = Instant::now();
            let (id, version) = result?;
            let _ = written.send(Written {
                id,
                version,
                answered,
            });
            anyhow::Ok(Sample {
                late,
                response: answered - sent,
            })
        }));
    }
    let sending = started.elapsed();
    drop(written);
    let mut samples = Vec::with_capacity(writes);
    let mut errors: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        match task.await {
            Ok(Ok(sample)) => samples.push(sample),
            Ok(Err(error)) => *errors.entry(error_kind(&error)).or_default() += 1,
            Err(_) => *errors.entry("task failed".into()).or_default() += 1,
        }
    }
    let answering = started.elapsed();
    let (lags, unobserved) = tracker.await.context("the tracker failed")??;
    Ok(Run {
        writes,
        errors,
        samples,
        sending,
        answering,
        lags: Sorted::new(lags),
        unobserved,
    })
}

impl Generator {
    /// Write number `n`: a create when even, else an update of an earlier Patient. Returns
    /// the id and version the server answered with.
    async fn write(&self, n: usize) -> anyhow::Result<(String, i64)> {
        let target = if n % 2 == 1 {
            let created = self
                .created
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            // A spread of earlier Patients, most of them written a while ago.
            (!created.is_empty()).then(|| created[(n * 7919) % created.len()].clone())
        } else {
            None
        };
        let request = match &target {
            Some(id) => {
                // `{"id":"…",` then the rest of the Patient's members.
                let body = format!(r#"{{"id":{},{}"#, json!(id), &self.patient[1..]);
                self.client
                    .put(format!("{}/Patient/{id}", self.base))
                    .body(body)
            }
            None => self
                .client
                .post(format!("{}/Patient", self.base))
                .body(self.patient.clone()),
        };
        let response = request
            .header("content-type", "application/fhir+json")
            .send()
            .await?;
        let status = response.status();
        ensure!(status.is_success(), "answered {status}");
        // The version from `ETag` (`W/"n"`), a new id from `Location`
        // (`…/Patient/{id}/_history/{n}`), rather than from parsing the body; the body is
        // read so that the connection is reused.
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .with_context(|| format!("no {name}"))
        };
        let version: i64 = header("etag")?
            .trim_start_matches("W/")
            .trim_matches('"')
            .parse()
            .context("ETag is not a version")?;
        let id = match &target {
            Some(id) => id.clone(),
            None => header("location")?
                .rsplit('/')
                .nth(2)
                .context("Location is not a version's URL")?
                .to_owned(),
        };
        response.bytes().await?;
        if target.is_none() {
            self.created
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .push(id.clone());
        }
        Ok((id, version))
    }
}

/// A failed write's kind, without anything from a body.
fn error_kind(error: &anyhow::Error) -> String {
    match error.downcast_ref::<reqwest::Error>() {
        Some(e) if e.is_timeout() => "client timeout".into(),
        Some(e) if e.is_connect() => "connection refused or reset".into(),
        Some(_) => "transport error".into(),
        None => error.to_string(),
    }
}

/// Waits for every write sent on `written` to be applied; returns the lags and how many
/// were never seen applied.
async fn track(
    pool: PgPool,
    mut written: mpsc::UnboundedReceiver<Written>,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut pending: HashMap<String, Vec<(i64, Instant)>> = HashMap::new();
    let mut waiting = 0usize;
    let mut lags = Vec::new();
    let mut closed_at: Option<Instant> = None;
    loop {
        loop {
            match written.try_recv() {
                Ok(write) => {
                    pending
                        .entry(write.id)
                        .or_default()
                        .push((write.version, write.answered));
                    waiting += 1;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed_at.get_or_insert_with(Instant::now);
                    break;
                }
            }
        }
        if waiting == 0 {
            if closed_at.is_some() {
                return Ok((lags, 0));
            }
            match written.recv().await {
                Some(write) => {
                    pending
                        .entry(write.id)
                        .or_default()
                        .push((write.version, write.answered));
                    waiting += 1;
                }
                None => return Ok((lags, 0)),
            }
        }
        if closed_at.is_some_and(|at| at.elapsed() > DRAIN_TIMEOUT) {
            return Ok((lags, waiting));
        }
        let polled = Instant::now();
        // Only the ids whose oldest pending version is applied come back.
        let (ids, versions): (Vec<&str>, Vec<i64>) = pending
            .iter()
            .filter_map(|(id, writes)| Some((id.as_str(), writes.iter().map(|w| w.0).min()?)))
            .unzip();
        let applied: Vec<(String, i64)> = sqlx::query_as(
            "select a.id, a.version
             from unnest($1::text[], $2::int8[]) as w(id, version)
             join analytics.applied_versions a
               on a.res_type = 'Patient' and a.id = w.id and a.version >= w.version",
        )
        .bind(&ids)
        .bind(&versions)
        .fetch_all(&pool)
        .await?;
        for (id, version) in applied {
            if let Some(writes) = pending.get_mut(&id) {
                writes.retain(|(wanted, answered)| {
                    let done = *wanted <= version;
                    if done {
                        lags.push(polled - *answered);
                    }
                    !done
                });
                if writes.is_empty() {
                    pending.remove(&id);
                }
            }
        }
        waiting = pending.values().map(Vec::len).sum();
        tokio::time::sleep(POLL).await;
    }
}
