//! Consumer queues against a real RabbitMQ (`RABBITMQ_URL`, default the local broker): a
//! rejected message is dead-lettered at once, a message returned to the queue is
//! dead-lettered after `max_deliveries` deliveries. Each test uses an exchange and queue of
//! its own.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use events::DurableQueue;
use events::lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicRejectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use events::lapin::types::FieldTable;
use events::lapin::{BasicProperties, Channel, Connection};
use futures::StreamExt;

fn rabbitmq_url() -> String {
    std::env::var("RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

async fn open(max_deliveries: u32) -> (Connection, Channel, DurableQueue) {
    let connection = events::connect(&rabbitmq_url()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let unique = uuid::Uuid::new_v4();
    let queue = DurableQueue {
        exchange: format!("test.events.{unique}"),
        name: format!("test.events.{unique}"),
        bindings: vec!["Patient.*".into()],
        max_deliveries,
    };
    queue.check().unwrap();
    queue.declare(&channel).await.unwrap();
    // Declaring again with the same arguments is a no-op.
    queue.declare(&channel).await.unwrap();
    (connection, channel, queue)
}

async fn publish(channel: &Channel, queue: &DurableQueue, body: &[u8]) {
    channel
        .basic_publish(
            queue.exchange.as_str().into(),
            "Patient.create".into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Ready messages in `name`.
async fn ready(channel: &Channel, name: &str) -> u32 {
    channel
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

/// Waits until `name` holds `count` ready messages.
async fn wait_ready(channel: &Channel, name: &str, count: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ready(channel, name).await != count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never held {count} messages"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn remove(channel: &Channel, queue: &DurableQueue) {
    for name in [queue.name.clone(), queue.dead_letter_queue()] {
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for name in [queue.exchange.clone(), queue.dead_letter_exchange()] {
        let _ = channel
            .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}

#[tokio::test]
async fn a_rejected_message_is_dead_lettered_at_once() {
    let (_connection, channel, queue) = open(5).await;
    publish(&channel, &queue, b"poison").await;
    wait_ready(&channel, &queue.name, 1).await;
    let message = channel
        .basic_get(queue.name.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("the message was routed to the queue");
    message
        .delivery
        .acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    wait_ready(&channel, &queue.dead_letter_queue(), 1).await;
    let dead = channel
        .basic_get(
            queue.dead_letter_queue().as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.delivery.data, b"poison");
    assert_eq!(dead.delivery.routing_key.as_str(), "Patient.create");
    assert_eq!(ready(&channel, &queue.name).await, 0);
    remove(&channel, &queue).await;
}

#[tokio::test]
async fn a_message_returned_too_often_is_dead_lettered() {
    let (_connection, channel, queue) = open(3).await;
    publish(&channel, &queue, b"fails every time").await;
    let mut consumer = channel
        .basic_consume(
            queue.name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut deliveries = 0;
    while let Ok(Some(delivery)) =
        tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
    {
        deliveries += 1;
        delivery
            .unwrap()
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .unwrap();
    }
    assert_eq!(deliveries, queue.max_deliveries);
    wait_ready(&channel, &queue.dead_letter_queue(), 1).await;
    remove(&channel, &queue).await;
}
