//! Worker throughput: started by `bench/events` on a queue the relay filled, the worker
//! applies the backlog; this waits until `analytics.processed_events` holds every event.
//! Throughput counts from the first event applied (the `processed_at` of its transaction)
//! to the poll that sees the last one, so the worker's start-up (connection, migrations,
//! queue declaration) is left out; the time from the call, made right after the worker
//! was started, is given too.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;

use crate::{emit, env};

const POLL: Duration = Duration::from_millis(20);
const TIMEOUT: Duration = Duration::from_secs(900);

pub async fn run(count: i64) -> anyhow::Result<()> {
    let called = Instant::now();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&env("DATABASE_URL")?)
        .await?;
    let query = "select count(*),
                 coalesce(extract(epoch from clock_timestamp() - min(processed_at))::float8, 0),
                 coalesce(extract(epoch from max(processed_at) - min(processed_at))::float8, 0)
                 from analytics.processed_events";
    loop {
        // The schema appears with the worker's migrations.
        let row: Option<(i64, f64, f64)> = sqlx::query_as(query).fetch_one(&pool).await.ok();
        if let Some((applied, since_first, first_to_last)) = row.filter(|r| r.0 >= count) {
            let from_start = called.elapsed().as_secs_f64();
            emit(&json!({
                "phase": "worker",
                "events": applied,
                "seconds": since_first,
                "events_per_s": applied as f64 / since_first,
                "seconds_from_start": from_start,
                "events_per_s_from_start": applied as f64 / from_start,
                "first_to_last_transaction_s": first_to_last,
            }));
            return Ok(());
        }
        if called.elapsed() > TIMEOUT {
            let applied = row.map_or(0, |r| r.0);
            bail!("the worker applied {applied} of {count} events within {TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}
