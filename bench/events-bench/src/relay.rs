//! Relay throughput: the outbox filled with `EVENTS` change events, then drained by the
//! server's own relay step (`fhir_server::relay::step`, batches of `BATCH_SIZE`, as its
//! loop runs it), between two rounds of a plain publish loop that sends the same bodies,
//! with the same properties, in batches of the same size, each batch waiting for its
//! publisher confirms. Both publish to a durable topic exchange with one durable quorum
//! queue bound, declared alike; the relay's queue is the analytics worker's, which the
//! worker measurement then drains.

use std::path::Path;
use std::time::{Duration, Instant};

use analytics_worker::Config;
use anyhow::{Context, bail, ensure};
use events::lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use events::lapin::types::FieldTable;
use events::lapin::{BasicProperties, Channel, Connection};
use events::{Action, CONTENT_TYPE, DurableQueue, Publisher};
use fhir_server::relay::{BATCH_SIZE, step};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use store::Store;
use uuid::Uuid;

use crate::{emit, env};

/// The plain loop's exchange and queue, beside the change exchange.
const PLAIN: &str = "bench.plain";
/// AMQP delivery mode 2, as the relay publishes.
const PERSISTENT: u8 = 2;
/// Rows inserted per statement when filling the outbox.
const FILL_CHUNK: usize = 1000;

/// One event as the relay reads it from the outbox.
struct Message {
    event_id: Uuid,
    routing_key: String,
    payload: String,
}

pub async fn run(count: usize, patient: &Path) -> anyhow::Result<()> {
    ensure!(count > 0, "EVENTS must be at least 1");
    let patient = crate::patient(patient)?;
    let rabbitmq_url = env("RABBITMQ_URL")?;
    let store = Store::connect(&env("DATABASE_URL")?, 2).await?;
    store.migrate().await?;
    fill_outbox(store.pool(), count, &patient).await?;
    let messages = read_outbox(store.pool()).await?;
    ensure!(
        messages.len() == count,
        "the outbox holds {} events",
        messages.len()
    );
    let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();

    let worker_queue = Config::from_env()?.durable_queue();
    let plain_queue = DurableQueue {
        exchange: PLAIN.to_owned(),
        name: PLAIN.to_owned(),
        ..worker_queue.clone()
    };
    let connection = events::connect(&rabbitmq_url).await?;
    let channel = connection.create_channel().await?;
    worker_queue.declare(&channel).await?;
    ensure!(
        queue_depth(&channel, &worker_queue.name).await? == 0,
        "the queue {} is not empty",
        worker_queue.name
    );

    let plain_before = plain_round(&connection, &plain_queue, &messages).await?;

    let publisher = Publisher::connect(&rabbitmq_url).await?;
    let started = Instant::now();
    let mut published = 0;
    loop {
        let sent = step(&store, &publisher, BATCH_SIZE).await?;
        published += sent;
        if sent < BATCH_SIZE as usize {
            break;
        }
    }
    let relay = started.elapsed();
    publisher.close().await;
    let unsent: i64 = sqlx::query_scalar("select count(*) from outbox where sent_at is null")
        .fetch_one(store.pool())
        .await?;
    ensure!(
        published == count && unsent == 0,
        "relay published {published}, {unsent} left"
    );
    let queued = queue_depth(&channel, &worker_queue.name).await?;
    ensure!(
        queued as usize == count,
        "the queue holds {queued} messages"
    );

    let plain_after = plain_round(&connection, &plain_queue, &messages).await?;
    let _ = connection.close(200, "done".into()).await;

    let rate = |elapsed: Duration| count as f64 / elapsed.as_secs_f64();
    emit(&json!({
        "phase": "relay",
        "events": count,
        "batch": BATCH_SIZE,
        "mean_payload_bytes": bytes / count,
        "relay": {"seconds": relay.as_secs_f64(), "events_per_s": rate(relay)},
        "plain": [
            {"seconds": plain_before.as_secs_f64(), "events_per_s": rate(plain_before)},
            {"seconds": plain_after.as_secs_f64(), "events_per_s": rate(plain_after)},
        ],
    }));
    Ok(())
}

/// Inserts `count` change events of Patients `relay-<n>`: a create and an update each,
/// with the history rows they name, as the server writes them.
async fn fill_outbox(
    pool: &PgPool,
    count: usize,
    patient: &serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let last_updated = now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let mut events = Vec::with_capacity(FILL_CHUNK);
    let mut keys = Vec::with_capacity(FILL_CHUNK);
    let mut ids = Vec::with_capacity(FILL_CHUNK);
    let mut versions = Vec::with_capacity(FILL_CHUNK);
    let mut contents = Vec::with_capacity(FILL_CHUNK);
    for n in 0..count {
        let id = format!("relay-{}", n / 2);
        let version = (n % 2) as i64 + 1;
        let action = if version == 1 {
            Action::Create
        } else {
            Action::Update
        };
        let mut resource = patient.clone();
        resource.insert("id".into(), json!(id));
        resource.insert(
            "meta".into(),
            json!({"versionId": version.to_string(), "lastUpdated": last_updated}),
        );
        events.push(Uuid::new_v4().to_string());
        keys.push(format!("Patient.{}", action.as_str()));
        ids.push(id);
        versions.push(version);
        contents.push(serde_json::to_string(&resource)?);
        if events.len() == FILL_CHUNK || n + 1 == count {
            sqlx::query(
                "with hist as (
                     insert into resource_history
                         (res_type, id, version, last_updated, method, status, content)
                     select 'Patient', id, version, $6,
                            case version when 1 then 'POST' else 'PUT' end,
                            case version when 1 then 201 else 200 end, content::jsonb
                     from unnest($3::text[], $4::int8[], $5::text[]) as t(id, version, content)
                 )
                 insert into outbox (event_id, routing_key, res_type, res_id, version)
                 select event_id::uuid, routing_key, 'Patient', id, version
                 from unnest($1::text[], $2::text[], $3::text[], $4::int8[])
                      as t(event_id, routing_key, id, version)",
            )
            .bind(&events)
            .bind(&keys)
            .bind(&ids)
            .bind(&versions)
            .bind(&contents)
            .bind(now)
            .execute(pool)
            .await?;
            for column in [&mut events, &mut keys, &mut ids, &mut contents] {
                column.clear();
            }
            versions.clear();
        }
    }
    sqlx::query("vacuum analyze outbox").execute(pool).await?;
    sqlx::query("vacuum analyze resource_history")
        .execute(pool)
        .await?;
    Ok(())
}

/// The unsent events as the relay reads them, so that the plain loop sends the same bytes.
async fn read_outbox(pool: &PgPool) -> anyhow::Result<Vec<Message>> {
    let rows = sqlx::query(
        "select event_id::text as event_id, routing_key, payload
         from outbox_envelopes where sent_at is null order by id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Message {
                event_id: row.get::<String, _>("event_id").parse()?,
                routing_key: row.get("routing_key"),
                payload: row.get("payload"),
            })
        })
        .collect()
}

/// Publishes every message to the plain queue's exchange on a fresh confirm channel, in
/// batches of the relay's size, waiting for each batch's confirms; returns the time taken.
/// The queue is declared empty before and deleted after.
async fn plain_round(
    connection: &Connection,
    queue: &DurableQueue,
    messages: &[Message],
) -> anyhow::Result<Duration> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    queue.declare(&channel).await?;
    channel
        .queue_purge(queue.name.as_str().into(), Default::default())
        .await?;
    let started = Instant::now();
    for batch in messages.chunks(BATCH_SIZE as usize) {
        let mut confirms = Vec::with_capacity(batch.len());
        for message in batch {
            let properties = BasicProperties::default()
                .with_delivery_mode(PERSISTENT)
                .with_message_id(message.event_id.to_string().into())
                .with_content_type(CONTENT_TYPE.into());
            confirms.push(
                channel
                    .basic_publish(
                        queue.exchange.as_str().into(),
                        message.routing_key.as_str().into(),
                        BasicPublishOptions::default(),
                        message.payload.as_bytes(),
                        properties,
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            if confirm.await?.is_nack() {
                bail!("the broker refused a message of the plain loop");
            }
        }
    }
    let elapsed = started.elapsed();
    let queued = queue_depth(&channel, &queue.name).await?;
    ensure!(
        queued as usize == messages.len(),
        "the plain queue holds {queued} messages"
    );
    channel
        .queue_delete(queue.name.as_str().into(), QueueDeleteOptions::default())
        .await
        .context("deleting the plain queue")?;
    let _ = channel.close(200, "done".into()).await;
    Ok(elapsed)
}

/// Messages ready in `queue` (a passive declaration).
async fn queue_depth(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(declared.message_count())
}
