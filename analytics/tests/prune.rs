//! Old processed markers are deleted, recent ones kept (against a real PostgreSQL).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use sqlx::PgPool;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn markers_older_than_the_retention_are_deleted(pool: PgPool) {
    sqlx::query(
        "insert into analytics.processed_events (event_id, processed_at)
         select gen_random_uuid(), now() - make_interval(days => d)
         from unnest(array[0, 1, 6, 8, 30]) as d",
    )
    .execute(&pool)
    .await
    .unwrap();
    let week = Duration::from_secs(7 * 86_400);
    let deleted = analytics_worker::prune::prune_once(&pool, week)
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let left: Vec<i32> = sqlx::query_scalar(
        "select extract(day from now() - processed_at)::int from analytics.processed_events
         order by processed_at desc",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(left, [0, 1, 6]);
}
