//! The export runner: a background task of every server that claims waiting jobs (one at a
//! time), writes their files and records the outcome; and deletes expired jobs with their
//! files.
//!
//! A job's resources are read from one snapshot (`store::Snapshot`) through server-side
//! cursors (the types without criteria in one scan of the table, each of the others on its
//! own), and written as NDJSON (`<Type>-<n>.ndjson`, a new file past
//! `FHIR_EXPORT_MAX_FILE_BYTES`) under `FHIR_EXPORT_DIR/<job id>/` by a blocking thread of
//! its own. Memory holds a few batches of rows, whatever the export's size. While it runs,
//! the runner beats the job's heartbeat with its progress (between batches, at least every
//! [`BEAT`]); a cancelled job stops at the next beat and its files go. A job whose runner
//! died (no heartbeat for [`STALE_AFTER`]) is claimed by another runner and run again from
//! the start. An idle runner waits for a kick-off's notification, or looks again after
//! [`IDLE`].

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fhir_core::ResourceType;
use fhir_core::search::query::TypeQuery;
use serde_json::{Value, json};
use sqlx::postgres::PgListener;
use store::{Batch, ExportJob, ExportRead, Snapshot, Store};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::ExportRequest;
use crate::config::ExportConfig;

/// How often the runner looks for work when there is none.
const IDLE: Duration = Duration::from_secs(1);
/// How often a running job's heartbeat is beaten.
const BEAT: Duration = Duration::from_secs(2);
/// After a kick-off's notification, a claim that found nothing is tried again this soon, up
/// to [`RETRIES`] times: `skip locked` passes over a job whose row a status request is
/// updating at that moment (and the notification may be another runner's job).
const RETRY: Duration = Duration::from_millis(20);
const RETRIES: u32 = 5;
/// A running job without a heartbeat for this long has lost its runner.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// Runs export jobs until `shutdown` turns true.
pub async fn run(store: Store, config: ExportConfig, mut shutdown: watch::Receiver<bool>) {
    let runner = Uuid::new_v4();
    let mut listener: Option<PgListener> = None;
    // Looks left after a notification that found nothing (see [`RETRY`]).
    let mut retries = 0;
    while !*shutdown.borrow() {
        if listener.is_none() {
            match store.listen_exports().await {
                Ok(active) => listener = Some(active),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for export kick-offs; polling");
                }
            }
        }
        clean_expired(&store, &config.dir).await;
        let claimed = match store.claim_export(runner, STALE_AFTER).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "cannot look for export jobs");
                None
            }
        };
        match claimed {
            Some(job) => {
                retries = 0;
                run_job(&store, &config, runner, job).await;
            }
            None if retries > 0 => {
                retries -= 1;
                tokio::select! {
                    _ = shutdown.changed() => {}
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
            None => {
                tokio::select! {
                    _ = shutdown.changed() => {}
                    notified = wait(&mut listener) => if notified { retries = RETRIES },
                }
            }
        }
    }
}

/// Waits for a kick-off's notification or [`IDLE`], whichever comes first; whether a
/// notification came.
async fn wait(listener: &mut Option<PgListener>) -> bool {
    let Some(active) = listener.as_mut() else {
        tokio::time::sleep(IDLE).await;
        return false;
    };
    match tokio::time::timeout(IDLE, active.recv()).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "export notifications interrupted; polling");
            *listener = None;
            false
        }
        Err(_) => false,
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
///
/// Two tasks share the work: this one reads the snapshot a batch at a time and sends each
/// batch to a blocking thread ([`write_files`]) that writes it and sends it back to be
/// filled again, so the async threads never wait for the disk, the database and the disk
/// work at once, and memory holds [`BATCHES`] batches whatever the export's size.
async fn export(
    store: &Store,
    config: &ExportConfig,
    runner: Uuid,
    job: &ExportJob,
    dir: &Path,
) -> Result<(chrono::DateTime<chrono::Utc>, Vec<Value>), Stop> {
    let request: ExportRequest = serde_json::from_value(job.request.clone())
        .map_err(|_| Stop::Failed("the job's request cannot be read".into()))?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Stop::Failed(format!("cannot create the export directory: {e}")))?;
    let mut snapshot = store
        .snapshot()
        .await
        .map_err(|_| Stop::Failed("cannot read the database".into()))?;
    let (full, filled) = mpsc::channel(BATCHES);
    let (empty, emptied) = mpsc::channel(BATCHES);
    for _ in 0..BATCHES {
        // Cannot fail: the channel has room for every batch.
        let _ = empty.try_send(Batch::default());
    }
    let writing = tokio::task::spawn_blocking({
        let dir = dir.to_owned();
        let max_bytes = config.max_file_bytes;
        move || write_files(&dir, max_bytes, filled, &empty)
    });
    let read = read(store, runner, job, &request, &mut snapshot, full, emptied).await;
    // The sender is gone: the writer finishes what it has and ends.
    let written = writing
        .await
        .map_err(|_| Stop::Failed("writing the files failed".into()))?;
    let transaction_time = snapshot.transaction_time;
    let _ = snapshot.close().await;
    // A read that stopped because the writer failed says less than the writer's error.
    let mut written = match (read, written) {
        (Ok(()), Ok(written)) => written,
        (_, Err((rtype, error))) => {
            return Err(Stop::Failed(format!("writing {rtype} failed: {error}")));
        }
        (Err(stop), Ok(_)) => return Err(stop),
    };
    // The manifest lists the types in the order asked for.
    let order = |rtype: &ResourceType| request.types.iter().position(|name| name == rtype.as_str());
    written.sort_by_key(|(rtype, n, _)| (order(rtype), *n));
    let mut files: Vec<Value> = written
        .into_iter()
        .map(|(rtype, n, count)| {
            json!({"type": rtype.as_str(), "file": file_name(rtype, n), "count": count})
        })
        .collect();
    if let Some(ignored) = job.request["ignored"].as_array().filter(|i| !i.is_empty()) {
        let names: Vec<&str> = ignored.iter().filter_map(Value::as_str).collect();
        let outcome = fhir_core::outcome::operation_outcome(&[fhir_core::Issue {
            severity: fhir_core::Severity::Warning,
            code: fhir_core::IssueCode::NotSupported,
            diagnostics: format!("ignored (Prefer: handling=lenient): {}", names.join(", ")),
            expression: None,
        }]);
        let name = "OperationOutcome-1.ndjson";
        tokio::fs::write(dir.join(name), format!("{outcome}\n"))
            .await
            .map_err(|e| Stop::Failed(format!("writing the outcome failed: {e}")))?;
        files.push(json!({"type": "OperationOutcome", "file": name, "count": 1}));
    }
    Ok((transaction_time, files))
}

/// Batches of rows in the job's hands: one being filled, the others written or waiting to
/// be.
const BATCHES: usize = 3;

/// The reads of a job: the types without criteria in one read (one scan of the table), each
/// of the others in its own (its criteria, or the references that select it).
fn reads<'r>(
    request: &ExportRequest,
    registry: &'r fhir_core::search::Registry,
    base: &str,
) -> Result<Vec<Vec<TypeQuery<'r>>>, Stop> {
    let mut plain = Vec::new();
    let mut reads = Vec::new();
    for name in &request.types {
        let rtype: ResourceType = name
            .parse()
            .map_err(|_| Stop::Failed(format!("{name} is not served")))?;
        let query = request.query(registry, rtype, base).map_err(Stop::Failed)?;
        if query.criteria.is_empty() && !request.level.is_referenced(rtype) {
            plain.push(query);
        } else {
            reads.push(vec![query]);
        }
    }
    if !plain.is_empty() {
        reads.insert(0, plain);
    }
    Ok(reads)
}

/// Reads the job's resources from `snapshot` into the batches `emptied` brings back and sends
/// them to the writer (`full`), beating the heartbeat on the way.
async fn read(
    store: &Store,
    runner: Uuid,
    job: &ExportJob,
    request: &ExportRequest,
    snapshot: &mut Snapshot<'_>,
    full: mpsc::Sender<Batch>,
    mut emptied: mpsc::Receiver<Batch>,
) -> Result<(), Stop> {
    let registry = store
        .registry()
        .map_err(|_| Stop::Failed("search definitions unavailable".into()))?;
    let base = store.server_base().unwrap_or_default().to_owned();
    let referring = request.referring(registry, &base).map_err(Stop::Failed)?;
    // The writer stopped (its error is what the job reports).
    let writer_gone = || Stop::Failed("writing the files failed".into());
    let mut beaten = Instant::now();
    let mut total = 0u64;
    let mut spare = None;
    for queries in reads(request, registry, &base)? {
        let names: Vec<&str> = queries.iter().map(|q| q.resource_type.as_str()).collect();
        let names = names.join(", ");
        let referenced = queries
            .iter()
            .any(|q| request.level.is_referenced(q.resource_type));
        let read = ExportRead {
            queries: &queries,
            since: request.since,
            referenced_by: referring.as_deref().filter(|_| referenced),
        };
        let failed = |_| Stop::Failed(format!("reading {names} failed"));
        let mut rows = snapshot.read(&read).await.map_err(failed)?;
        loop {
            let mut batch = match spare.take() {
                Some(batch) => batch,
                None => emptied.recv().await.ok_or_else(writer_gone)?,
            };
            if !rows.next(&mut batch).await.map_err(failed)? {
                // Empty: the next read fills it.
                spare = Some(batch);
                break;
            }
            total += batch.len() as u64;
            full.send(batch).await.map_err(|_| writer_gone())?;
            if beaten.elapsed() >= BEAT {
                beaten = Instant::now();
                beat(store, job, runner, &format!("{total} resources written")).await?;
            }
        }
        rows.close().await.map_err(failed)?;
        beat(
            store,
            job,
            runner,
            &format!("{names} done: {total} resources written"),
        )
        .await?;
    }
    Ok(())
}

/// Beats the job's heartbeat with `progress`; stops when the job is no longer this runner's.
async fn beat(store: &Store, job: &ExportJob, runner: Uuid, progress: &str) -> Result<(), Stop> {
    match store.beat_export(job.id, runner, progress).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Stop::Lost),
        Err(_) => Err(Stop::Failed("the job's heartbeat failed".into())),
    }
}

/// The writer, on a blocking thread: writes the batches `filled` brings, each resource to its
/// type's files, and hands them back through `empty`, until the reader hangs up. Returns each
/// file (type, number) with its resource count, or the type whose writing failed.
fn write_files(
    dir: &Path,
    max_bytes: u64,
    mut filled: mpsc::Receiver<Batch>,
    empty: &mpsc::Sender<Batch>,
) -> Result<Vec<Written>, (ResourceType, std::io::Error)> {
    let mut writers: HashMap<ResourceType, Writer> = HashMap::new();
    while let Some(batch) = filled.blocking_recv() {
        for (rtype, text) in batch.iter() {
            writers
                .entry(rtype)
                .or_insert_with(|| Writer::new(dir, rtype, max_bytes))
                .write(text)
                .map_err(|e| (rtype, e))?;
        }
        // Room for it: there are never more batches than the channel holds. A reader that
        // has stopped no longer takes it.
        let _ = empty.try_send(batch);
    }
    let mut files = Vec::new();
    for (rtype, writer) in writers {
        let written = writer.finish().map_err(|e| (rtype, e))?;
        files.extend(written.into_iter().map(|(n, count)| (rtype, n, count)));
    }
    Ok(files)
}

/// A file written: its type, its number (from 1) and its resource count.
type Written = (ResourceType, usize, u64);

/// The name of the `n`th file of `rtype` (from 1).
fn file_name(rtype: ResourceType, n: usize) -> String {
    format!("{rtype}-{n}.ndjson")
}

/// Bytes buffered before a write to a file (one buffer per type being written).
const BUFFER: usize = 128 * 1024;

/// The NDJSON files of one type: `<Type>-<n>.ndjson`, the next one begun past the size
/// limit.
struct Writer {
    dir: PathBuf,
    rtype: ResourceType,
    max_bytes: u64,
    /// The file being written, its bytes and resources so far.
    current: Option<(std::io::BufWriter<std::fs::File>, u64, u64)>,
    /// The resource count of each file closed, in order.
    done: Vec<u64>,
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

    /// Writes one resource as a line (blocking: on the writer's thread).
    fn write(&mut self, content: &str) -> std::io::Result<()> {
        if self
            .current
            .as_ref()
            .is_some_and(|(_, bytes, _)| *bytes >= self.max_bytes)
        {
            self.close()?;
        }
        let (out, bytes, count) = match &mut self.current {
            Some(current) => current,
            None => {
                let name = file_name(self.rtype, self.done.len() + 1);
                let file = std::fs::File::create(self.dir.join(name))?;
                self.current
                    .insert((std::io::BufWriter::with_capacity(BUFFER, file), 0, 0))
            }
        };
        out.write_all(content.as_bytes())?;
        out.write_all(b"\n")?;
        *bytes += content.len() as u64 + 1;
        *count += 1;
        Ok(())
    }

    /// Ends the current file, on disk before the manifest lists it.
    fn close(&mut self) -> std::io::Result<()> {
        if let Some((mut out, _, count)) = self.current.take() {
            out.flush()?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            self.done.push(count);
        }
        Ok(())
    }

    /// The files written (numbered from 1), with their resource counts.
    fn finish(mut self) -> std::io::Result<Vec<(usize, u64)>> {
        self.close()?;
        Ok(self
            .done
            .into_iter()
            .enumerate()
            .map(|(i, c)| (i + 1, c))
            .collect())
    }
}
