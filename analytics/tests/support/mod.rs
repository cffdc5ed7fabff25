//! Test support: resources written through the real store (so the outbox holds the real
//! envelopes), a broker topology of the test's own (exchange and queue named uniquely, so
//! tests run in parallel and never see other suites' events), the worker run in-process
//! or as the real binary, and the comparison of incremental results with a rebuild.
//!
//! Environment: `DATABASE_URL` (an admin connection that may create databases, used by
//! `#[sqlx::test]`), `RABBITMQ_URL` (default the local broker) and
//! `RABBITMQ_MANAGEMENT_URL` (default `http://127.0.0.1:15672`).

#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "test support; each test binary uses a part"
)]

use std::str::FromStr;
use std::time::Duration;

use analytics_worker::reports::{ReportOptions, Reports};
use analytics_worker::{Config, rebuild, reports, worker};
use chrono::NaiveDate;
use events::lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use events::lapin::types::FieldTable;
use events::lapin::{BasicProperties, Channel, Connection};
use fhir_core::{Id, ResourceType};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use store::{ReferentialIntegrity, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a test waits for the worker to catch up.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The date the tests compute ages at: fixed, so expected age bands stay true.
pub fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
}

/// Report options with the fixed date and a generous ranking.
pub fn options() -> ReportOptions {
    ReportOptions {
        as_of: as_of(),
        top: 100,
    }
}

pub fn rabbitmq_url() -> String {
    std::env::var("RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A connection of its own to the broker (with a channel), e.g. to look at queues after
/// a test's channel was closed.
pub async fn channel() -> (Connection, Channel) {
    let connection = events::connect(&rabbitmq_url()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// Writes resources through the store, as the server does with referential integrity off
/// (`FHIR_REFERENTIAL_INTEGRITY=false`): the reports must also hold for references to
/// resources that are deleted or were never stored.
#[derive(Debug, Clone)]
pub struct Data {
    pub store: Store,
}

impl Data {
    pub fn new(pool: &PgPool) -> Self {
        let unchecked = ReferentialIntegrity {
            writes: false,
            deletes: false,
        };
        Data {
            store: Store::from_pool(pool.clone()).with_referential_integrity(unchecked),
        }
    }

    /// Creates or updates `type/id` with `resource` (its `resourceType` and `id` added).
    pub async fn put(&self, rtype: ResourceType, id: &str, mut resource: Value) {
        resource["resourceType"] = Value::String(rtype.as_str().to_owned());
        resource["id"] = Value::String(id.to_owned());
        let id: Id = id.parse().unwrap();
        self.store
            .update(rtype, &id, resource, None, &[])
            .await
            .unwrap();
    }

    pub async fn delete(&self, rtype: ResourceType, id: &str) {
        let id: Id = id.parse().unwrap();
        self.store.delete(rtype, &id).await.unwrap();
    }
}

/// One change event as the outbox holds it.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_id: String,
    pub routing_key: String,
    pub payload: Vec<u8>,
}

/// Every event in the outbox, oldest first.
pub async fn outbox(pool: &PgPool) -> Vec<Event> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select event_id::text, routing_key, payload from outbox_envelopes order by id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(event_id, routing_key, payload)| Event {
            event_id,
            routing_key,
            payload: payload.into_bytes(),
        })
        .collect()
}

/// Events the worker recorded as processed.
pub async fn processed(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from analytics.processed_events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A topology of the test's own: an exchange and worker queues named uniquely.
pub struct Broker {
    _connection: Connection,
    pub channel: Channel,
    pub config: Config,
}

impl Broker {
    /// Declares the test's exchange and the worker's queue (as the worker will, so that
    /// nothing published before it starts is dropped), with `max_deliveries`. The
    /// configuration's database is not used by an in-process [`Worker`]. Billing accounts
    /// are switched off; their queue has a unique name too.
    pub async fn new(max_deliveries: u32) -> Self {
        Broker::declared(max_deliveries, false).await
    }

    /// Like [`Broker::new`], with billing accounts switched on and their queue declared.
    pub async fn with_accounts(max_deliveries: u32) -> Self {
        Broker::declared(max_deliveries, true).await
    }

    async fn declared(max_deliveries: u32, accounts: bool) -> Self {
        let unique = format!("test.analytics.{}", uuid::Uuid::new_v4());
        let config = Config::from_lookup(|name| match name {
            "RABBITMQ_URL" => Some(rabbitmq_url()),
            "ANALYTICS_EXCHANGE" | "ANALYTICS_QUEUE" => Some(unique.clone()),
            "ANALYTICS_ACCOUNT_QUEUE" => Some(format!("{unique}.accounts")),
            "ANALYTICS_AUTO_ACCOUNT" => Some(accounts.to_string()),
            "ANALYTICS_MAX_DELIVERIES" => Some(max_deliveries.to_string()),
            _ => None,
        })
        .unwrap();
        let connection = events::connect(&config.rabbitmq_url)
            .await
            .unwrap_or_else(|e| {
                panic!("RabbitMQ is not reachable at RABBITMQ_URL (scripts/services start): {e}")
            });
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        config.durable_queue().declare(&channel).await.unwrap();
        if accounts {
            config
                .account_durable_queue()
                .declare(&channel)
                .await
                .unwrap();
        }
        Broker {
            _connection: connection,
            channel,
            config,
        }
    }

    /// Publishes a body with a routing key and waits for the broker's confirm.
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8]) {
        let confirm = self
            .channel
            .basic_publish(
                self.config.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack(), "the broker refused a message");
    }

    /// Publishes events in the order given, as the relay does.
    pub async fn publish(&self, events: &[Event]) {
        for event in events {
            self.publish_raw(&event.routing_key, &event.payload).await;
        }
    }

    /// Ready (not delivered) messages in queue `name`.
    pub async fn ready(&self, name: &str) -> u32 {
        self.channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    }

    /// Takes every message out of the dead-letter queue.
    pub async fn dead_letters(&self) -> Vec<Vec<u8>> {
        let queue = self.config.durable_queue().dead_letter_queue();
        let mut bodies = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            bodies.push(message.delivery.data.clone());
        }
        bodies
    }

    /// Waits until the dead-letter queue holds `count` messages.
    pub async fn wait_dead_letters(&self, count: u32) {
        let queue = self.config.durable_queue().dead_letter_queue();
        eventually(&format!("{count} dead letters"), || async {
            self.ready(&queue).await == count
        })
        .await;
    }

    /// Waits until `expected` events are processed and the queue is empty.
    pub async fn wait_processed(&self, pool: &PgPool, expected: i64) {
        eventually(&format!("{expected} events processed"), || async {
            processed(pool).await == expected && self.ready(&self.config.queue).await == 0
        })
        .await;
    }

    /// Deletes the test's queues and exchanges.
    pub async fn remove(self) {
        let queue = self.config.durable_queue();
        let accounts = self.config.account_durable_queue();
        for name in [
            queue.name.clone(),
            queue.dead_letter_queue(),
            accounts.name.clone(),
            accounts.dead_letter_queue(),
        ] {
            let _ = self
                .channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for name in [
            queue.exchange.clone(),
            queue.dead_letter_exchange(),
            accounts.dead_letter_exchange(),
        ] {
            let _ = self
                .channel
                .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
}

/// Polls `condition` every 50 ms until it holds, failing the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The worker's consumer loop on the test's pool, in this process.
pub struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Worker {
    pub fn start(pool: &PgPool, config: &Config) -> Self {
        // The worker's logs, shown with a failing test's output (RUST_LOG filters).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_test_writer()
            .try_init();
        let (stop, stopped) = watch::channel(false);
        let pool = pool.clone();
        let config = config.clone();
        let task = tokio::spawn(async move { worker::consume(pool, &config, stopped).await });
        Worker { stop, task }
    }

    /// Stops the worker as SIGTERM does and waits until it has.
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the worker did not stop")
            .unwrap();
    }
}

/// Everything the projections hold, and the reports computed from it.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub reports: Reports,
    pub tables: Vec<Value>,
}

/// The reports and every projection table (applied versions, registrations, facts).
pub async fn snapshot(pool: &PgPool) -> Snapshot {
    let mut tables = Vec::new();
    for (table, order) in [
        ("analytics.applied_versions", "res_type, id"),
        ("analytics.patient_registrations", "id"),
        ("analytics.patient_facts", "id"),
        ("analytics.account_facts", "id"),
        ("analytics.invoice_facts", "id"),
    ] {
        let rows: Value = sqlx::query_scalar(&format!(
            "select coalesce(jsonb_agg(t order by {order}), '[]') from {table} t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        tables.push(rows);
    }
    Snapshot {
        reports: reports(pool, options()).await.unwrap(),
        tables,
    }
}

/// The worker's main property: what it built incrementally is what a rebuild from the
/// stored resources builds. Returns the (equal) snapshot.
pub async fn assert_equals_rebuild(pool: &PgPool) -> Snapshot {
    let incremental = snapshot(pool).await;
    rebuild(pool).await.unwrap();
    let rebuilt = snapshot(pool).await;
    assert_eq!(
        incremental, rebuilt,
        "incremental projections differ from the rebuild"
    );
    rebuilt
}

/// Forgets everything the worker applied (as on a fresh database), keeping the data.
pub async fn reset_projections(pool: &PgPool) {
    sqlx::query(
        "truncate analytics.processed_events, analytics.applied_versions,
                  analytics.patient_registrations, analytics.patient_facts,
                  analytics.account_facts, analytics.invoice_facts",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// A pool of up to `connections` on the database of `pool`, each connection named
/// `name`, so that [`terminate_backends`] can cut them.
pub async fn named_pool(pool: &PgPool, name: &str, connections: u32) -> PgPool {
    let options = PgConnectOptions::from_str(&database_url(pool).await)
        .unwrap()
        .application_name(name);
    PgPoolOptions::new()
        .max_connections(connections)
        .connect_lazy_with(options)
}

/// Cuts every connection named `name` (PostgreSQL's `pg_terminate_backend`), as a
/// database restart would; how many there were.
pub async fn terminate_backends(pool: &PgPool, name: &str) -> usize {
    let terminated: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .unwrap();
    terminated.len()
}

/// The URL of the database `pool` is connected to (a `#[sqlx::test]` database), for a
/// worker process of its own.
pub async fn database_url(pool: &PgPool) -> String {
    let name: String = sqlx::query_scalar("select current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test server");
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// A deterministic shuffle (a linear congruential generator): the same order every run.
pub fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut items = items.to_vec();
    let mut state = seed;
    for i in (1..items.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from((state >> 33) % (i as u64 + 1)).unwrap();
        items.swap(i, j);
    }
    items
}

/// A workload of many versions: patients created, updated, some deleted and some
/// created again; accounts and invoices pointing at them, updated and deleted.
pub async fn churn(data: &Data, patients: usize) {
    use serde_json::json;
    let genders = ["male", "female", "other", "unknown"];
    let states = [
        ("US", "CA"),
        ("US", "NY"),
        ("DE", "Bavaria"),
        ("FR", "Bretagne"),
    ];
    let statuses = ["draft", "issued", "balanced", "cancelled"];
    for n in 0..patients {
        let p = format!("p{n}");
        let (country, state) = states[n % states.len()];
        let birth = format!("{}-0{}-1{}", 1940 + (n * 7) % 80, 1 + n % 9, n % 10);
        let patient = |active: bool, gender: &str| {
            json!({
                "active": active, "gender": gender, "birthDate": birth,
                "address": [{"use": "home", "state": state, "country": country}]
            })
        };
        data.put(ResourceType::Patient, &p, patient(true, genders[n % 4]))
            .await;
        data.put(
            ResourceType::Patient,
            &p,
            patient(n % 3 != 0, genders[(n + 1) % 4]),
        )
        .await;
        let a = format!("a{n}");
        let account = |status: &str| {
            json!({
                "status": status, "subject": [{"reference": format!("Patient/{p}")}],
                "type": {"coding": [{"code": if n % 2 == 0 { "PBILLACCT" } else { "EBILLACCT" }}]}
            })
        };
        data.put(ResourceType::Account, &a, account("active")).await;
        for k in 0..(n % 3 + 1) {
            let i = format!("i{n}-{k}");
            let invoice = |status: &str| {
                json!({
                    "status": status,
                    "date": format!("2025-{:02}-{:02}", 1 + (n + k) % 12, 1 + k),
                    "subject": {"reference": format!("Patient/{p}")},
                    "account": {"reference": format!("Account/{a}")},
                    "totalNet": {"value": 10.25 * (k + 1) as f64, "currency": if k == 2 { "USD" } else { "EUR" }},
                    "totalGross": {"value": 12.2 * (k + 1) as f64, "currency": if k == 2 { "USD" } else { "EUR" }}
                })
            };
            data.put(ResourceType::Invoice, &i, invoice("draft")).await;
            data.put(ResourceType::Invoice, &i, invoice(statuses[(n + k) % 4]))
                .await;
            if (n + k) % 5 == 0 {
                data.delete(ResourceType::Invoice, &i).await;
            }
        }
        if n % 4 == 1 {
            data.put(ResourceType::Account, &a, account("inactive"))
                .await;
        }
        if n % 6 == 5 {
            data.delete(ResourceType::Patient, &p).await;
            data.delete(ResourceType::Account, &a).await;
        }
        if n % 12 == 11 {
            // Deleted, then created again: version 4, a create.
            data.put(ResourceType::Patient, &p, patient(true, "female"))
                .await;
        }
    }
}

/// The broker's management API: `RABBITMQ_MANAGEMENT_URL` (default
/// `http://127.0.0.1:15672`), with the user and password of `RABBITMQ_URL`.
fn management() -> (String, String, String) {
    let base = std::env::var("RABBITMQ_MANAGEMENT_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned());
    let amqp = url::Url::parse(&rabbitmq_url()).unwrap();
    let user = match amqp.username() {
        "" => "guest".to_owned(),
        user => user.to_owned(),
    };
    let password = amqp.password().unwrap_or("guest").to_owned();
    (base.trim_end_matches('/').to_owned(), user, password)
}

/// The broker's names of the open connections called `name` by their client.
pub async fn connections(name: &str) -> Vec<String> {
    let (base, user, password) = management();
    let all: Vec<Value> = reqwest::Client::new()
        .get(format!("{base}/api/connections"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    all.iter()
        .filter(|c| c["client_properties"]["connection_name"].as_str() == Some(name))
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// Closes, from the broker's side, every connection called `name` (waiting until the
/// management API lists one): what a broker restart does to a client.
pub async fn close_connections(name: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let found = loop {
        let found = connections(name).await;
        if !found.is_empty() {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no connection named {name}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (base, user, password) = management();
    for connection in found {
        let mut url = reqwest::Url::parse(&base).unwrap();
        url.path_segments_mut()
            .unwrap()
            .extend(["api", "connections", &connection]);
        reqwest::Client::new()
            .delete(url)
            .basic_auth(&user, Some(&password))
            .header("X-Reason", "test: the broker goes away")
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }
}
