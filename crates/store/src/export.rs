//! Bulk Data export, store side: the jobs (`export_jobs`) and the consistent read of the
//! resources they export.
//!
//! A job is claimed by one server at a time (`for update skip locked`), which keeps a
//! heartbeat on it; a job whose heartbeat stopped (its server died) is claimed again and run
//! from the start. The resources of a job are read in one `repeatable read` transaction, on a
//! connection of its own, through a server-side cursor: every type sees the same snapshot,
//! and memory holds one batch of rows at a time whatever the size of the export.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fhir_core::search::query::TypeQuery;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

use crate::search::criteria::{Sql, write_criteria};
use crate::{Store, StoreError};

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
        tx.commit().await?;
        Ok(Some(id))
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

    /// Opens a consistent read of every current resource on a connection of its own.
    pub async fn snapshot(&self) -> Result<Snapshot<'_>, StoreError> {
        let options: PgConnectOptions = (*self.pool.connect_options()).clone();
        let mut conn = PgConnection::connect_with(&options).await?;
        sqlx::query("begin isolation level repeatable read read only")
            .execute(&mut conn)
            .await?;
        let transaction_time: DateTime<Utc> = sqlx::query_scalar("select now()")
            .fetch_one(&mut conn)
            .await?;
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

/// Rows fetched from the cursor at a time.
const BATCH: i64 = 1000;

impl Snapshot<'_> {
    /// Hands the JSON text of every current resource of `query`'s type that meets its
    /// criteria (and, with `since`, changed after it) to `each`, in key order, a batch at a
    /// time; returns how many. `each` may stop the read with an error.
    pub async fn stream<E>(
        &mut self,
        query: &TypeQuery<'_>,
        since: Option<DateTime<Utc>>,
        mut each: impl FnMut(&str) -> Result<(), E>,
    ) -> Result<Result<u64, E>, StoreError> {
        let ids = self.store.param_ids().await?;
        self.cursors += 1;
        let cursor = format!("export_{}", self.cursors);
        let mut sql = Sql::new(
            ids,
            &format!(
                "declare {cursor} no scroll cursor for select r.content::text from resources r where r.res_type = "
            ),
        );
        sql.bind(query.resource_type.as_str().to_owned())
            .push(" and not r.deleted");
        if let Some(since) = since {
            sql.push(" and r.last_updated > ").bind(since);
        }
        write_criteria(&mut sql, query.resource_type, "r", &query.criteria);
        sql.push(" order by r.key");
        sql.builder
            .build()
            .persistent(false)
            .execute(&mut self.conn)
            .await?;
        let fetch = format!("fetch {BATCH} from {cursor}");
        let mut count = 0u64;
        loop {
            let rows = sqlx::query(&fetch).fetch_all(&mut self.conn).await?;
            for row in &rows {
                let content: String = row.get(0);
                if let Err(stop) = each(&crate::content::resource_type_first(content)) {
                    sqlx::query(&format!("close {cursor}"))
                        .execute(&mut self.conn)
                        .await?;
                    return Ok(Err(stop));
                }
                count += 1;
            }
            if (rows.len() as i64) < BATCH {
                break;
            }
        }
        sqlx::query(&format!("close {cursor}"))
            .execute(&mut self.conn)
            .await?;
        Ok(Ok(count))
    }

    /// Ends the read.
    pub async fn close(mut self) -> Result<(), StoreError> {
        sqlx::query("commit").execute(&mut self.conn).await?;
        self.conn.close().await?;
        Ok(())
    }
}
