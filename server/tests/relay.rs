//! The relay step against a real PostgreSQL (`#[sqlx::test]`) and RabbitMQ (`RABBITMQ_URL`,
//! default the local broker): claimed events reach the exchange and are marked sent.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use events::lapin::options::BasicConsumeOptions;
use events::lapin::types::FieldTable;
use events::{Envelope, Publisher};
use fhir_core::ResourceType;
use fhir_server::relay;
use futures::StreamExt;
use serde_json::json;
use sqlx::PgPool;
use store::{Created, Store};

fn rabbitmq_url() -> String {
    std::env::var("RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_step_publishes_a_batch_and_marks_it_sent(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let connection = events::connect(&rabbitmq_url()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = events::watch(&channel, "Patient.create").await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = store
            .create(
                ResourceType::Patient,
                json!({"resourceType": "Patient"}),
                &[],
                None,
            )
            .await
            .unwrap();
        let Created::New(stored) = created else {
            panic!("not created")
        };
        ids.push(stored.id.to_string());
    }

    let publisher = Publisher::connect(&rabbitmq_url()).await.unwrap();
    assert_eq!(relay::step(&store, &publisher, 2).await.unwrap(), 2);
    assert_eq!(relay::step(&store, &publisher, 2).await.unwrap(), 1);
    assert_eq!(relay::step(&store, &publisher, 2).await.unwrap(), 0);
    let unsent: i64 = sqlx::query_scalar("select count(*) from outbox where sent_at is null")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(unsent, 0);

    // Other tests publish to the same broker: keep only this test's resources.
    let mut received = Vec::new();
    while received.len() < ids.len() {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let envelope: Envelope = serde_json::from_slice(&delivery.data).unwrap();
        if ids.contains(&envelope.id) {
            received.push(envelope.id);
        }
    }
    assert_eq!(received, ids, "published oldest first");
    publisher.close().await;
}
