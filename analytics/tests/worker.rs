//! The worker's delivery guarantees against a real PostgreSQL (`#[sqlx::test]`) and
//! RabbitMQ (an exchange and queue per test): malformed messages are dead-lettered and the
//! worker goes on; an event that keeps failing is dead-lettered after the configured number
//! of deliveries; the real binary killed in the middle of a stream and restarted, or
//! stopped with SIGTERM, ends with reports equal to the rebuild; database connections
//! lost in the middle of events are waited out, not held against the events; and a worker
//! whose broker connection is closed reconnects by itself.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use analytics_worker::Config;
use analytics_worker::step::{Disposition, Message, step};
use fhir_core::ResourceType::Patient;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::{Broker, Data, PATIENCE, Worker, assert_equals_rebuild, outbox, processed};
use tokio::process::{Child, Command};
use tokio::sync::watch;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn malformed_messages_are_dead_lettered_and_the_worker_continues(pool: PgPool) {
    let broker = Broker::new(5).await;
    let data = Data::new(&pool);
    let worker = Worker::start(&pool, &broker.config);
    data.put(Patient, "p1", json!({"gender": "female"})).await;
    let first = outbox(&pool).await;
    let envelope: Value = serde_json::from_slice(&first[0].payload).unwrap();
    let changed = |edit: &dyn Fn(&mut Value)| {
        let mut envelope = envelope.clone();
        edit(&mut envelope);
        serde_json::to_vec(&envelope).unwrap()
    };
    let malformed: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        Vec::new(),
        changed(&|e| e["specVersion"] = json!(99)),
        changed(&|e| {
            e.as_object_mut().unwrap().remove("resource");
        }),
        changed(&|e| e["lastUpdated"] = json!("yesterday")),
        changed(&|e| e["resource"]["id"] = json!("someone-else")),
    ];
    for body in &malformed {
        broker.publish_raw("Patient.create", body).await;
    }
    broker.publish(&first).await;
    broker.wait_dead_letters(malformed.len() as u32).await;
    broker.wait_processed(&pool, 1).await;

    // Still consuming.
    data.put(Patient, "p2", json!({"gender": "male"})).await;
    data.put(Patient, "p1", json!({"gender": "other"})).await;
    let events = outbox(&pool).await;
    broker.publish(&events[1..]).await;
    broker.wait_processed(&pool, 3).await;
    worker.stop().await;

    let mut dead = broker.dead_letters().await;
    let mut expected = malformed.clone();
    dead.sort();
    expected.sort();
    assert_eq!(dead, expected, "exactly the malformed messages, unchanged");
    let snapshot = assert_equals_rebuild(&pool).await;
    assert_eq!(snapshot.reports.patients.total, 2);
    broker.remove().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_event_that_keeps_failing_is_dead_lettered_after_max_deliveries(pool: PgPool) {
    let broker = Broker::new(3).await;
    // The database refuses one patient's facts, whatever the worker tries.
    sqlx::raw_sql(
        "create function refuse_poison() returns trigger language plpgsql as $$
         begin
             if new.id = 'poison' then raise exception 'refused'; end if;
             return new;
         end $$;
         create trigger refuse_poison before insert or update on analytics.patient_facts
             for each row execute function refuse_poison();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let data = Data::new(&pool);
    data.put(Patient, "poison", json!({"gender": "female"}))
        .await;
    data.put(Patient, "p1", json!({"gender": "male"})).await;
    let events = outbox(&pool).await;

    // Applied together, the database refuses both; one by one, only the poison.
    let messages: Vec<Message<'_>> = events
        .iter()
        .map(|e| Message {
            body: &e.payload,
            message_id: &e.event_id,
        })
        .collect();
    let (_running, mut stopping) = watch::channel(false);
    let dispositions = step(&pool, &messages, &mut stopping).await;
    assert_eq!(dispositions, [Disposition::Retry, Disposition::Ack]);

    let worker = Worker::start(&pool, &broker.config);
    broker.publish(&events).await;
    broker.wait_dead_letters(1).await;
    broker.wait_processed(&pool, 1).await;
    worker.stop().await;

    assert_eq!(broker.dead_letters().await, [events[0].payload.clone()]);
    let reports = analytics_worker::reports(&pool, support::options())
        .await
        .unwrap();
    assert_eq!(reports.patients.total, 1, "the other patient was applied");

    // Once the cause is gone, a rebuild brings in what was dead-lettered.
    sqlx::raw_sql("drop trigger refuse_poison on analytics.patient_facts")
        .execute(&pool)
        .await
        .unwrap();
    analytics_worker::rebuild(&pool).await.unwrap();
    let reports = analytics_worker::reports(&pool, support::options())
        .await
        .unwrap();
    assert_eq!(reports.patients.total, 2);
    broker.remove().await;
}

/// The real `analytics-worker` binary on the test's database and topology.
struct Process {
    child: Child,
}

impl Process {
    fn start(config: &Config, database_url: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_analytics-worker"))
            .env("DATABASE_URL", database_url)
            .env("RABBITMQ_URL", &config.rabbitmq_url)
            .env("ANALYTICS_EXCHANGE", &config.exchange)
            .env("ANALYTICS_QUEUE", &config.queue)
            .env("ANALYTICS_ACCOUNT_QUEUE", &config.account_queue)
            .env("ANALYTICS_AUTO_ACCOUNT", config.auto_account.to_string())
            .env(
                "ANALYTICS_MAX_DELIVERIES",
                config.max_deliveries.to_string(),
            )
            .env_remove("ANALYTICS_PREFETCH")
            .env_remove("ANALYTICS_CONCURRENCY")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Process { child }
    }

    /// SIGKILL: no chance to finish anything.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, then the exit status.
    async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the worker did not stop on SIGTERM")
            .unwrap()
    }
}

/// Polls `processed` every few milliseconds until it exceeds `floor`.
async fn processed_beyond(pool: &PgPool, floor: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let count = processed(pool).await;
        if count > floor {
            return count;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing processed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_binary_killed_or_stopped_mid_stream_ends_equal_to_the_rebuild(pool: PgPool) {
    let broker = Broker::new(5).await;
    let data = Data::new(&pool);
    support::churn(&data, 160).await;
    let events = outbox(&pool).await;
    let total = events.len() as i64;
    broker.publish(&events).await;
    let url = support::database_url(&pool).await;

    let first = Process::start(&broker.config, &url);
    processed_beyond(&pool, 0).await;
    first.kill().await;
    let at_kill = processed(&pool).await;
    assert!(at_kill < total, "killed mid-stream ({at_kill} of {total})");

    let second = Process::start(&broker.config, &url);
    processed_beyond(&pool, at_kill).await;
    let status = second.terminate().await;
    assert!(status.success(), "SIGTERM ends the worker with 0: {status}");
    let at_stop = processed(&pool).await;

    let third = Process::start(&broker.config, &url);
    broker.wait_processed(&pool, total).await;
    assert!(third.terminate().await.success());
    assert!(
        at_stop < total,
        "stopped mid-stream too ({at_stop} of {total})"
    );
    println!("killed at {at_kill}, stopped at {at_stop} of {total} events");
    assert_equals_rebuild(&pool).await;
    broker.remove().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_worker_reconnects_when_the_broker_closes_its_connection(pool: PgPool) {
    let broker = Broker::new(5).await;
    let data = Data::new(&pool);
    let worker = Worker::start(&pool, &broker.config);
    data.put(Patient, "p1", json!({"gender": "female"})).await;
    broker.publish(&outbox(&pool).await).await;
    broker.wait_processed(&pool, 1).await;

    let name = analytics_worker::worker::connection_name(&broker.config);
    support::close_connections(&name).await;

    data.put(Patient, "p2", json!({"gender": "male"})).await;
    data.put(Patient, "p1", json!({"gender": "other"})).await;
    let events = outbox(&pool).await;
    broker.publish(&events[1..]).await;
    broker.wait_processed(&pool, 3).await;
    worker.stop().await;
    let snapshot = assert_equals_rebuild(&pool).await;
    assert_eq!(snapshot.reports.patients.total, 2);
    broker.remove().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn lost_database_connections_are_retried_not_dead_lettered(pool: PgPool) {
    // One delivery only: an event held against the message would be dead-lettered at once.
    let broker = Broker::new(1).await;
    let data = Data::new(&pool);
    support::churn(&data, 60).await;
    let events = outbox(&pool).await;
    let total = events.len() as i64;
    const NAME: &str = "analytics-worker-under-test";
    let worker_pool = support::named_pool(&pool, NAME, broker.config.database_connections()).await;
    let worker = Worker::start(&worker_pool, &broker.config);
    let terminate = || support::terminate_backends(&pool, NAME);
    // A first event, so that the worker holds connections; they are all cut before the
    // rest arrives, so that it meets lost connections however fast it is.
    broker.publish(&events[..1]).await;
    broker.wait_processed(&pool, 1).await;
    let mut cut = terminate().await;
    broker.publish(&events[1..]).await;

    while processed(&pool).await < total && cut < 20 {
        cut += terminate().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.wait_processed(&pool, total).await;
    worker.stop().await;

    assert!(cut > 0, "no connection was cut");
    let dead_letters = broker.config.durable_queue().dead_letter_queue();
    assert_eq!(broker.ready(&dead_letters).await, 0);
    assert_equals_rebuild(&pool).await;
    broker.remove().await;
}
