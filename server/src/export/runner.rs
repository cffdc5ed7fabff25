//! The export runner: a background task of every server that claims waiting jobs (one at a
//! time), writes their files and records the outcome; and deletes expired jobs with their
//! files.
//!
//! A job's resources are read from one snapshot (`store::Snapshot`), a type after the other,
//! through a server-side cursor, and written as NDJSON (`<Type>-<n>.ndjson`, a new file past
//! `FHIR_EXPORT_MAX_FILE_BYTES`) under `FHIR_EXPORT_DIR/<job id>/`. Memory holds one batch of
//! rows, whatever the export's size. While it runs, the runner beats the job's heartbeat
//! with its progress; a cancelled job stops at the next beat and its files go. A job whose
//! runner died (no heartbeat for [`STALE_AFTER`]) is claimed by another runner and run again
//! from the start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fhir_core::ResourceType;
use serde_json::{Value, json};
use store::{ExportJob, Store};
use tokio::sync::watch;
use uuid::Uuid;

use super::ExportRequest;
use crate::config::ExportConfig;

/// How often the runner looks for work when there is none.
const IDLE: Duration = Duration::from_secs(1);
/// How often a running job's heartbeat is beaten.
const BEAT: Duration = Duration::from_secs(2);
/// A running job without a heartbeat for this long has lost its runner.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// Runs export jobs until `shutdown` turns true.
pub async fn run(store: Store, config: ExportConfig, mut shutdown: watch::Receiver<bool>) {
    let runner = Uuid::new_v4();
    while !*shutdown.borrow() {
        clean_expired(&store, &config.dir).await;
        let claimed = match store.claim_export(runner, STALE_AFTER).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "cannot look for export jobs");
                None
            }
        };
        match claimed {
            Some(job) => run_job(&store, &config, runner, job).await,
            None => {
                tokio::select! {
                    _ = shutdown.changed() => {}
                    () = tokio::time::sleep(IDLE) => {}
                }
            }
        }
    }
}

/// Deletes expired jobs and their files.
async fn clean_expired(store: &Store, dir: &Path) {
    match store.delete_expired_exports().await {
        Ok(ids) => {
            for id in ids {
                let _ = tokio::fs::remove_dir_all(dir.join(id.to_string())).await;
            }
        }
        Err(error) => tracing::warn!(%error, "cannot delete expired export jobs"),
    }
}

/// Why a job did not complete.
enum Stop {
    /// Cancelled, or taken over by another runner: nothing to record.
    Lost,
    /// Failed: the text is for the client (no resource content in it).
    Failed(String),
}

async fn run_job(store: &Store, config: &ExportConfig, runner: Uuid, job: ExportJob) {
    let dir = config.dir.join(job.id.to_string());
    let _ = tokio::fs::remove_dir_all(&dir).await;
    tracing::info!(job = %job.id, "export started");
    let started = Instant::now();
    let outcome = export(store, config, runner, &job, &dir).await;
    let expires_at = chrono::Utc::now()
        + chrono::Duration::from_std(config.retention).unwrap_or(chrono::Duration::days(1));
    match outcome {
        Ok((transaction_time, files)) => {
            let output = Value::Array(files);
            match store
                .complete_export(job.id, runner, transaction_time, &output, expires_at)
                .await
            {
                Ok(true) => {
                    tracing::info!(job = %job.id, seconds = started.elapsed().as_secs_f64(), "export completed")
                }
                Ok(false) => {
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                }
                Err(error) => {
                    tracing::warn!(job = %job.id, %error, "cannot record a completed export")
                }
            }
        }
        Err(Stop::Lost) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            tracing::info!(job = %job.id, "export cancelled");
        }
        Err(Stop::Failed(reason)) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            tracing::warn!(job = %job.id, %reason, "export failed");
            if let Err(error) = store.fail_export(job.id, &reason, expires_at).await {
                tracing::warn!(job = %job.id, %error, "cannot record a failed export");
            }
        }
    }
}

/// Writes the job's files; returns the snapshot's time and the manifest's output entries
/// (`type`, `file`, `count`).
async fn export(
    store: &Store,
    config: &ExportConfig,
    runner: Uuid,
    job: &ExportJob,
    dir: &Path,
) -> Result<(chrono::DateTime<chrono::Utc>, Vec<Value>), Stop> {
    let request: ExportRequest = serde_json::from_value(job.request.clone())
        .map_err(|_| Stop::Failed("the job's request cannot be read".into()))?;
    let registry = store
        .registry()
        .map_err(|_| Stop::Failed("search definitions unavailable".into()))?;
    let base = store.server_base().unwrap_or_default().to_owned();
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Stop::Failed(format!("cannot create the export directory: {e}")))?;
    let mut snapshot = store
        .snapshot()
        .await
        .map_err(|_| Stop::Failed("cannot read the database".into()))?;
    let mut files = Vec::new();
    let mut beaten = Instant::now();
    let mut total = 0u64;
    for name in &request.types {
        let rtype: ResourceType = name
            .parse()
            .map_err(|_| Stop::Failed(format!("{name} is not served")))?;
        let queries = request
            .queries(registry, rtype, &base)
            .map_err(Stop::Failed)?;
        let mut writer = Writer::new(dir, rtype, config.max_file_bytes);
        // Several `_typeFilter`s: a resource matching two is written once.
        let mut seen = std::collections::HashSet::new();
        let several = queries.len() > 1;
        for query in &queries {
            let streamed = snapshot
                .stream(query, request.since, |content| {
                    if several && !seen.insert(resource_id(content)) {
                        return Ok(());
                    }
                    writer.write(content)
                })
                .await
                .map_err(|_| Stop::Failed(format!("reading {rtype} failed")))?;
            streamed.map_err(|e| Stop::Failed(format!("writing {rtype} failed: {e}")))?;
            if beaten.elapsed() >= BEAT {
                beaten = Instant::now();
                let progress = format!("{rtype}: {total} resources written");
                match store.beat_export(job.id, runner, &progress).await {
                    Ok(true) => {}
                    Ok(false) => return Err(Stop::Lost),
                    Err(_) => return Err(Stop::Failed("the job's heartbeat failed".into())),
                }
            }
        }
        let written = writer
            .finish()
            .map_err(|e| Stop::Failed(format!("writing {rtype} failed: {e}")))?;
        for (file, count) in written {
            total += count;
            files.push(json!({"type": rtype.as_str(), "file": file, "count": count}));
        }
        match store
            .beat_export(
                job.id,
                runner,
                &format!("{rtype} done: {total} resources written"),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(Stop::Lost),
            Err(_) => return Err(Stop::Failed("the job's heartbeat failed".into())),
        }
    }
    let transaction_time = snapshot.transaction_time;
    let _ = snapshot.close().await;
    if let Some(ignored) = job.request["ignored"].as_array().filter(|i| !i.is_empty()) {
        let names: Vec<&str> = ignored.iter().filter_map(Value::as_str).collect();
        let outcome = fhir_core::outcome::operation_outcome(&[fhir_core::Issue {
            severity: fhir_core::Severity::Warning,
            code: fhir_core::IssueCode::NotSupported,
            diagnostics: format!("ignored (Prefer: handling=lenient): {}", names.join(", ")),
            expression: None,
        }]);
        let name = "OperationOutcome-1.ndjson";
        std::fs::write(dir.join(name), format!("{outcome}\n"))
            .map_err(|e| Stop::Failed(format!("writing the outcome failed: {e}")))?;
        files.push(json!({"type": "OperationOutcome", "file": name, "count": 1}));
    }
    Ok((transaction_time, files))
}

/// The `id` of a resource's JSON text (for de-duplicating across `_typeFilter`s).
fn resource_id(content: &str) -> String {
    serde_json::from_str::<Value>(content)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// The NDJSON files of one type: `<Type>-<n>.ndjson`, the next one begun past the size
/// limit.
struct Writer {
    dir: PathBuf,
    rtype: ResourceType,
    max_bytes: u64,
    current: Option<(std::io::BufWriter<std::fs::File>, String, u64, u64)>,
    done: Vec<(String, u64)>,
}

impl Writer {
    fn new(dir: &Path, rtype: ResourceType, max_bytes: u64) -> Self {
        Writer {
            dir: dir.to_owned(),
            rtype,
            max_bytes: max_bytes.max(1),
            current: None,
            done: Vec::new(),
        }
    }

    /// Writes one resource as a line. (Blocking file writes in small buffered pieces: the
    /// runner is one task, and a full page cache flush is the kernel's.)
    fn write(&mut self, content: &str) -> std::io::Result<()> {
        if self
            .current
            .as_ref()
            .is_some_and(|(_, _, bytes, _)| *bytes >= self.max_bytes)
        {
            self.close()?;
        }
        if self.current.is_none() {
            let name = format!("{}-{}.ndjson", self.rtype, self.done.len() + 1);
            let file = std::fs::File::create(self.dir.join(&name))?;
            self.current = Some((std::io::BufWriter::new(file), name, 0, 0));
        }
        if let Some((out, _, bytes, count)) = self.current.as_mut() {
            out.write_all(content.as_bytes())?;
            out.write_all(b"\n")?;
            *bytes += content.len() as u64 + 1;
            *count += 1;
        }
        Ok(())
    }

    fn close(&mut self) -> std::io::Result<()> {
        if let Some((mut out, name, _, count)) = self.current.take() {
            out.flush()?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            self.done.push((name, count));
        }
        Ok(())
    }

    /// The files written, with their resource counts.
    fn finish(mut self) -> std::io::Result<Vec<(String, u64)>> {
        self.close()?;
        Ok(self.done)
    }
}
