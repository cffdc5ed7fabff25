//! Bulk Data export, store side: the jobs (`export_jobs`) and the consistent read of the
//! resources they export.
//!
//! A job is claimed by one server at a time (`for update skip locked`), which keeps a
//! heartbeat on it; a job whose heartbeat stopped (its server died) is claimed again and run
//! from the start. A kick-off notifies [`EXPORT_CHANNEL`], so that an idle runner starts at
//! once. The resources of a job are read in one `repeatable read` transaction, on a
//! connection of its own, through server-side cursors: every type sees the same snapshot,
//! and memory holds one batch of rows at a time whatever the size of the export.
//!
//! A read selects the current resources of a type by search criteria ([`ExportRead`]), and
//! may be limited to the resources that other resources refer to, by the search index's
//! reference rows (`search_reference`): the Organizations and Practitioners of a Patient
//! export are those its Patients, Accounts and Invoices refer to.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fhir_core::ResourceType;
use fhir_core::search::query::TypeQuery;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

use crate::resources::WRITE_BARRIER;
use crate::search::criteria::{Sql, write_criteria};
use crate::{Store, StoreError};

/// The channel a kick-off notifies (the payload is the job's id): runners listen on it.
pub const EXPORT_CHANNEL: &str = "fhir_export";

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Accepted,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Accepted => "accepted",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            JobStatus::Accepted,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// An export job as stored.
#[derive(Debug, Clone)]
pub struct ExportJob {
    pub id: Uuid,
    pub status: JobStatus,
    /// What to export, as the server wrote it.
    pub request: Value,
    pub request_url: String,
    pub owner: Option<String>,
    pub requires_token: bool,
    pub created_at: DateTime<Utc>,
    pub transaction_time: Option<DateTime<Utc>>,
    pub progress: Option<String>,
    pub error: Option<String>,
    /// The manifest's output entries, once completed.
    pub output: Option<Value>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The previous status request, before this one (see [`Store::poll_export`]).
    pub polled_at: Option<DateTime<Utc>>,
}

/// A new job.
#[derive(Debug, Clone)]
pub struct NewExport {
    pub request: Value,
    pub request_url: String,
    pub owner: Option<String>,
    pub requires_token: bool,
}

const JOB_COLUMNS: &str = "id, status, request, request_url, owner, requires_token, created_at, \
     transaction_time, progress, error, output, expires_at, polled_at";

fn job(row: &sqlx::postgres::PgRow) -> Result<ExportJob, StoreError> {
    let status: String = row.get("status");
    Ok(ExportJob {
        id: row.get("id"),
        status: JobStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("job status {status}").into()))?,
        request: row.get("request"),
        request_url: row.get("request_url"),
        owner: row.get("owner"),
        requires_token: row.get("requires_token"),
        created_at: row.get("created_at"),
        transaction_time: row.get("transaction_time"),
        progress: row.get("progress"),
        error: row.get("error"),
        output: row.get("output"),
        expires_at: row.get("expires_at"),
        polled_at: row.get("polled_at"),
    })
}

impl Store {
    /// Records a new job, `accepted`, unless `max_active` jobs are accepted or running
    /// already: then `None`.
    pub async fn create_export(
        &self,
        new: &NewExport,
        max_active: i64,
    ) -> Result<Option<Uuid>, StoreError> {
        let id = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        // One kick-off at a time counts the active jobs.
        sqlx::query("select pg_advisory_xact_lock(hashtextextended('export kick-off', 0))")
            .execute(&mut *tx)
            .await?;
        let active: i64 = sqlx::query_scalar(
            "select count(*) from export_jobs where status in ('accepted', 'running')",
        )
        .fetch_one(&mut *tx)
        .await?;
        if active >= max_active {
            return Ok(None);
        }
        sqlx::query(
            "insert into export_jobs (id, status, request, request_url, owner, requires_token)
             values ($1, 'accepted', $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(&new.request)
        .bind(&new.request_url)
        .bind(&new.owner)
        .bind(new.requires_token)
        .execute(&mut *tx)
        .await?;
        // Delivered at the commit: an idle runner need not wait for its next look.
        sqlx::query("select pg_notify($1, $2)")
            .bind(EXPORT_CHANNEL)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// A listener on [`EXPORT_CHANNEL`], on a connection of its own.
    pub async fn listen_exports(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(EXPORT_CHANNEL).await?;
        Ok(listener)
    }

    /// A job, recording this status request: the job as it was, with the previous request's
    /// time in `polled_at`. Expired jobs are not found.
    pub async fn poll_export(&self, id: Uuid) -> Result<Option<ExportJob>, StoreError> {
        let row = sqlx::query(&format!(
            "with old as (select polled_at as previous from export_jobs where id = $1)
             update export_jobs set polled_at = now() from old
             where id = $1 and (expires_at is null or expires_at > now())
             returning {JOB_COLUMNS_UPDATED}"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job).transpose()
    }

    /// A job, without recording anything. Expired jobs are not found.
    pub async fn export_job(&self, id: Uuid) -> Result<Option<ExportJob>, StoreError> {
        let row = sqlx::query(&format!(
            "select {JOB_COLUMNS} from export_jobs
             where id = $1 and (expires_at is null or expires_at > now())"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job).transpose()
    }

    /// Cancels an accepted or running job (its runner notices at its next heartbeat) or
    /// forgets a finished one; `false` when there is no such job.
    pub async fn cancel_export(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "update export_jobs set status = 'cancelled', expires_at = now()
             where id = $1 and status <> 'cancelled'
             and (expires_at is null or expires_at > now())",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims the oldest job waiting to run, or one whose runner stopped beating for
    /// `stale_after`, for server `runner`.
    pub async fn claim_export(
        &self,
        runner: Uuid,
        stale_after: Duration,
    ) -> Result<Option<ExportJob>, StoreError> {
        let row = sqlx::query(&format!(
            "with next as (
                 select id, polled_at as previous from export_jobs
                 where status = 'accepted'
                    or (status = 'running' and heartbeat_at < now() - make_interval(secs => $2))
                 order by created_at limit 1
                 for update skip locked
             )
             update export_jobs j
             set status = 'running', claimed_by = $1, heartbeat_at = now(),
                 progress = null, output = null, transaction_time = null
             from next where j.id = next.id
             returning {JOB_COLUMNS_UPDATED_J}"
        ))
        .bind(runner)
        .bind(stale_after.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job).transpose()
    }

    /// Records `progress` on a job `runner` still holds; `false` when it no longer does
    /// (cancelled, or taken over): the runner stops.
    pub async fn beat_export(
        &self,
        id: Uuid,
        runner: Uuid,
        progress: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "update export_jobs set heartbeat_at = now(), progress = $3
             where id = $1 and claimed_by = $2 and status = 'running'",
        )
        .bind(id)
        .bind(runner)
        .bind(progress)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a job `runner` holds completed, with its snapshot time and output, kept until
    /// `expires_at`; `false` when it no longer holds it.
    pub async fn complete_export(
        &self,
        id: Uuid,
        runner: Uuid,
        transaction_time: DateTime<Utc>,
        output: &Value,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "update export_jobs set status = 'completed', transaction_time = $3, output = $4,
                 expires_at = $5, progress = null, heartbeat_at = now()
             where id = $1 and claimed_by = $2 and status = 'running'",
        )
        .bind(id)
        .bind(runner)
        .bind(transaction_time)
        .bind(output)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a job failed with `error` (a text for the client), kept until `expires_at`.
    pub async fn fail_export(
        &self,
        id: Uuid,
        error: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "update export_jobs set status = 'failed', error = $2, expires_at = $3, progress = null
             where id = $1 and status in ('accepted', 'running')",
        )
        .bind(id)
        .bind(error)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes expired jobs and returns their ids (their files go too).
    pub async fn delete_expired_exports(&self) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(
            "delete from export_jobs where expires_at <= now()
             and status not in ('accepted', 'running') returning id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|row| row.get("id")).collect())
    }

    /// Opens a consistent read of every current resource on a connection of its own, as of
    /// its `transaction_time`: the write barrier is taken exclusively for the instant that
    /// time is read and the snapshot opened. Once granted, every write that stamped a version
    /// has committed (writes hold the barrier shared from before they read the clock until
    /// they end); until it is released, no write stamps one. So the snapshot holds exactly
    /// the versions stamped before `transaction_time`, and every later one is stamped after
    /// it: a `_since=transaction_time` export finds it.
    pub async fn snapshot(&self) -> Result<Snapshot<'_>, StoreError> {
        let options: PgConnectOptions = (*self.pool.connect_options()).clone();
        let mut conn = PgConnection::connect_with(&options).await?;
        let mut barrier = self.conn().await?;
        let mut exclusive = barrier.begin().await?;
        let transaction_time: DateTime<Utc> = sqlx::query_scalar(
            "select clock_timestamp() from (select pg_advisory_xact_lock($1)) as barrier",
        )
        .bind(WRITE_BARRIER)
        .fetch_one(&mut *exclusive)
        .await?;
        sqlx::query("begin isolation level repeatable read read only")
            .execute(&mut conn)
            .await?;
        // A repeatable-read transaction takes its snapshot at its first statement.
        sqlx::query("select 1").execute(&mut conn).await?;
        exclusive.commit().await?;
        barrier.done();
        Ok(Snapshot {
            store: self,
            conn,
            transaction_time,
            cursors: 0,
        })
    }
}

/// The job columns of an `update ... from old/next` (`polled_at` is the previous value).
const JOB_COLUMNS_UPDATED: &str = "id, status, request, request_url, owner, requires_token, \
     created_at, transaction_time, progress, error, output, expires_at, old.previous as polled_at";
const JOB_COLUMNS_UPDATED_J: &str = "j.id, j.status, j.request, j.request_url, j.owner, \
     j.requires_token, j.created_at, j.transaction_time, j.progress, j.error, j.output, \
     j.expires_at, next.previous as polled_at";

/// A consistent read of the current resources, as of [`Snapshot::transaction_time`].
#[derive(Debug)]
pub struct Snapshot<'s> {
    store: &'s Store,
    conn: PgConnection,
    /// The snapshot's time: every resource version committed before it is seen, none after.
    pub transaction_time: DateTime<Utc>,
    cursors: usize,
}

/// Rows fetched from a cursor at a time: one round trip per batch, and what a [`Batch`]
/// holds.
pub const BATCH: usize = 250;

/// What one read of a [`Snapshot`] selects: the current resources of the `queries`' types
/// that meet their type's criteria, and
/// - without `referenced_by`: that changed after `since`, when given;
/// - with `referenced_by`: that a resource of one of those queries refers to (a local
///   reference, found in the search index), each once; with `since` as well, that such a
///   resource changed after `since` refers to, or that changed after `since` themselves.
///   (An incremental export then holds what its resources refer to, and every change of
///   what the level's resources refer to.)
///
/// Types whose queries have no criteria are read together, in one scan of the table.
#[derive(Debug, Clone, Copy)]
pub struct ExportRead<'a, 'r> {
    /// One query per type.
    pub queries: &'a [TypeQuery<'r>],
    pub since: Option<DateTime<Utc>>,
    /// The queries of the referring resources (their criteria, without `since`).
    pub referenced_by: Option<&'a [TypeQuery<'r>]>,
}

impl Snapshot<'_> {
    /// Opens a cursor over what `read` selects, in the table's order.
    pub async fn read(&mut self, read: &ExportRead<'_, '_>) -> Result<Rows<'_>, StoreError> {
        let ids = self.store.param_ids().await?;
        self.cursors += 1;
        let cursor = format!("export_{}", self.cursors);
        let mut sql = Sql::new(
            ids,
            &format!(
                "declare {cursor} no scroll cursor for \
                 select r.res_type, r.content::text from resources r where not r.deleted"
            ),
        );
        let plain = read.referenced_by.is_none()
            && read.queries.iter().all(|query| query.criteria.is_empty());
        if let (None, Some(since)) = (read.referenced_by, read.since) {
            sql.push(" and r.last_updated > ").bind(since);
        }
        if plain {
            let types: Vec<String> = read
                .queries
                .iter()
                .map(|query| query.resource_type.as_str().to_owned())
                .collect();
            sql.push(" and r.res_type = any(").bind(types).push(")");
        } else {
            sql.push(" and (false");
            for query in read.queries {
                let rtype = query.resource_type;
                sql.push(format_args!(" or (r.res_type = '{rtype}'"));
                if let Some(sources) = read.referenced_by {
                    sql.push(" and r.id in ");
                    referenced(&mut sql, rtype, sources, None);
                    if let Some(since) = read.since {
                        sql.push(" and (r.last_updated > ")
                            .bind(since)
                            .push(" or r.id in ");
                        referenced(&mut sql, rtype, sources, Some(since));
                        sql.push(")");
                    }
                }
                write_criteria(&mut sql, rtype, "r", &query.criteria);
                sql.push(")");
            }
            sql.push(")");
        }
        sql.builder
            .build()
            .persistent(false)
            .execute(&mut self.conn)
            .await?;
        Ok(Rows {
            conn: &mut self.conn,
            fetch: format!("fetch {BATCH} from {cursor}"),
            cursor,
            done: false,
        })
    }

    /// Ends the read.
    pub async fn close(mut self) -> Result<(), StoreError> {
        sqlx::query("commit").execute(&mut self.conn).await?;
        self.conn.close().await?;
        Ok(())
    }
}

/// Writes `(select <id> ...)`: the ids of the resources of `rtype` that a current resource of
/// one of `sources` refers to (changed after `since`, when given).
fn referenced(
    sql: &mut Sql<'_>,
    rtype: ResourceType,
    sources: &[TypeQuery<'_>],
    since: Option<DateTime<Utc>>,
) {
    // Aliases of criteria end in a number: these cannot meet them.
    let (rf, src) = ("rf", "src");
    // The `left(.., 256)`s are those of the reference index (see `_has` in the criteria).
    sql.push(format_args!(
        "(select left({rf}.target_id, 256) from search_reference {rf} \
         join resources {src} on {src}.key = {rf}.res_key \
         where {rf}.target_id is not null and {rf}.url is null \
         and left({rf}.target_type, 256) = '{rtype}' and not {src}.deleted"
    ));
    if let Some(since) = since {
        sql.push(format_args!(" and {src}.last_updated > "))
            .bind(since);
    }
    sql.push(" and (false");
    for source in sources {
        sql.push(format_args!(
            " or ({src}.res_type = '{}'",
            source.resource_type
        ));
        write_criteria(sql, source.resource_type, src, &source.criteria);
        sql.push(")");
    }
    sql.push("))");
}

/// An open cursor of a [`Snapshot`]: the resources a read selects, a batch at a time.
#[derive(Debug)]
pub struct Rows<'c> {
    conn: &'c mut PgConnection,
    cursor: String,
    fetch: String,
    done: bool,
}

impl Rows<'_> {
    /// Fills `batch` with the next resources, at most [`BATCH`] (what it held goes); `false`
    /// once every one was handed over.
    pub async fn next(&mut self, batch: &mut Batch) -> Result<bool, StoreError> {
        batch.clear();
        if self.done {
            return Ok(false);
        }
        let rows = sqlx::query(&self.fetch).fetch_all(&mut *self.conn).await?;
        if rows.len() < BATCH {
            self.done = true;
        }
        for row in &rows {
            let rtype: &str = row.try_get(0)?;
            let rtype = rtype
                .parse()
                .map_err(|_| sqlx::Error::Decode(format!("resource type {rtype}").into()))?;
            crate::content::push_resource_type_first(row.try_get(1)?, &mut batch.text);
            batch.rows.push((rtype, batch.text.len()));
        }
        Ok(!batch.is_empty())
    }

    /// Closes the cursor (the snapshot stays open for the next read).
    pub async fn close(self) -> Result<(), StoreError> {
        sqlx::query(&format!("close {}", self.cursor))
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }
}

/// Resources read from a snapshot: their JSON text (`resourceType` first) one after the other
/// in one buffer, kept from one batch to the next so that a read allocates nothing once its
/// batches have grown to size.
#[derive(Debug, Default)]
pub struct Batch {
    text: String,
    /// Each resource's type and the end of its text.
    rows: Vec<(ResourceType, usize)>,
}

impl Batch {
    /// How many resources it holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Each resource's type and JSON text, in the order read.
    pub fn iter(&self) -> impl Iterator<Item = (ResourceType, &str)> {
        let mut start = 0;
        self.rows.iter().map(move |&(rtype, end)| {
            let text = &self.text[start..end];
            start = end;
            (rtype, text)
        })
    }

    fn clear(&mut self) {
        self.text.clear();
        self.rows.clear();
    }
}
