//! Forgetting processed markers: `analytics.processed_events` holds one row per event
//! applied, so that a redelivered copy is acknowledged without effect. The version check
//! (`analytics.applied_versions`) already makes every copy of an applied event stale, so a
//! marker is only a shortcut; markers older than the retention (far beyond any redelivery)
//! are deleted, in batches, once an hour.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

/// How often old markers are deleted.
const INTERVAL: Duration = Duration::from_secs(3600);
/// Markers deleted per statement.
const BATCH: i64 = 10_000;

/// Deletes at most [`BATCH`] markers older than `retention`; returns how many.
pub async fn prune_once(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "delete from analytics.processed_events where ctid in (
             select ctid from analytics.processed_events
             where processed_at < now() - make_interval(secs => $1)
             limit $2
         )",
    )
    .bind(retention.as_secs_f64())
    .bind(BATCH)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes old markers every [`INTERVAL`] until `shutdown` turns true. Failures are logged
/// and retried at the next interval.
pub async fn run(pool: PgPool, retention: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        loop {
            match prune_once(&pool, retention).await {
                Ok(deleted) if deleted == BATCH as u64 => continue,
                Ok(deleted) => {
                    if deleted > 0 {
                        tracing::debug!(deleted, "old processed markers deleted");
                    }
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "deleting old processed markers failed");
                    break;
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}
