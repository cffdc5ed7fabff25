//! Change events: every committed write reaches the `fhir.changes` exchange, in order, with
//! its envelope; events written while the broker is unreachable are delivered later.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use events::lapin::message::Delivery;
use events::lapin::options::BasicConsumeOptions;
use events::lapin::types::FieldTable;
use events::lapin::{Connection, Consumer};
use events::{Action, Envelope};
use ferrum_tests::{TestServer, json, rabbitmq_url, unique};
use futures::StreamExt;
use serde_json::Value;

/// An exclusive, auto-deleted queue bound to the change exchange. Other tests publish to
/// the same broker concurrently, so events are filtered by the resource id under test.
struct Subscription {
    _connection: Connection,
    consumer: Consumer,
}

impl Subscription {
    async fn bind(binding: &str) -> Self {
        let connection = events::connect(&rabbitmq_url()).await.unwrap_or_else(|e| {
            panic!("RabbitMQ is not reachable at RABBITMQ_URL (scripts/services start): {e}")
        });
        let channel = connection.create_channel().await.unwrap();
        let queue = events::watch(&channel, binding).await.unwrap();
        let consumer = channel
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
        Subscription {
            _connection: connection,
            consumer,
        }
    }

    /// The next event about `id` (others are skipped), within `patience`.
    async fn next_for(&mut self, id: &str, patience: Duration) -> (Delivery, Envelope) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let delivery = tokio::time::timeout_at(deadline, self.consumer.next())
                .await
                .unwrap_or_else(|_| panic!("no event about {id} within {patience:?}"))
                .expect("the consumer ended")
                .unwrap();
            let envelope: Envelope = serde_json::from_slice(&delivery.data).unwrap();
            if envelope.id == id {
                return (delivery, envelope);
            }
        }
    }
}

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "active": true, "name": [{"family": family}]})
}

#[track_caller]
fn check_delivery(delivery: &Delivery, envelope: &Envelope, key: &str) {
    assert_eq!(delivery.routing_key.as_str(), key);
    let properties = &delivery.properties;
    assert_eq!(
        properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned()),
        Some(envelope.event_id.to_string())
    );
    assert_eq!(
        properties.content_type().as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert_eq!(envelope.spec_version, 1);
    assert_eq!(envelope.resource_type, "Patient");
}

#[tokio::test]
async fn create_update_delete_are_published_in_order() {
    let mut events = Subscription::bind("Patient.*").await;
    let server = TestServer::start().await;
    let family = unique("Events");

    let created = server.post("Patient", &patient(&family)).await;
    assert_eq!(created.status, 201, "{}", created.describe());
    let id = created.id().unwrap().to_owned();
    let mut changed = patient(&family);
    changed["id"] = json!(id);
    changed["active"] = json!(false);
    let updated = server.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(updated.status, 200, "{}", updated.describe());
    let deleted = server
        .send(server.request(reqwest::Method::DELETE, &format!("Patient/{id}")))
        .await;
    assert!(
        deleted.status == 200 || deleted.status == 204,
        "{}",
        deleted.describe()
    );

    let patience = Duration::from_secs(30);
    let (delivery, create) = events.next_for(&id, patience).await;
    check_delivery(&delivery, &create, "Patient.create");
    assert_eq!(create.action, Action::Create);
    assert_eq!(create.version_id, 1);
    assert_eq!(create.resource.as_ref(), Some(&created.json));
    assert_eq!(
        Some(create.last_updated.as_str()),
        created.json["meta"]["lastUpdated"].as_str()
    );

    let (delivery, update) = events.next_for(&id, patience).await;
    check_delivery(&delivery, &update, "Patient.update");
    assert_eq!(update.action, Action::Update);
    assert_eq!(update.version_id, 2);
    assert_eq!(update.resource.as_ref().unwrap()["active"], false);
    assert_eq!(update.resource.as_ref(), Some(&updated.json));

    let (delivery, delete) = events.next_for(&id, patience).await;
    check_delivery(&delivery, &delete, "Patient.delete");
    assert_eq!(delete.action, Action::Delete);
    assert_eq!(delete.version_id, 3);
    assert_eq!(delete.resource, None);
    let raw: Value = serde_json::from_slice(&delivery.data).unwrap();
    assert!(raw.get("resource").is_none(), "{raw}");

    let ids = [create.event_id, update.event_id, delete.event_id];
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
}

#[tokio::test]
async fn events_written_during_a_broker_outage_are_delivered_later() {
    let mut events = Subscription::bind("Patient.create").await;
    // Nothing listens on port 1: the relay cannot connect, writes must still succeed.
    let mut server =
        TestServer::start_with_env(&[("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1/%2f")]).await;
    let created = server.post("Patient", &patient(&unique("Outage"))).await;
    assert_eq!(created.status, 201, "{}", created.describe());
    let id = created.id().unwrap().to_owned();
    assert_eq!(server.get(&format!("Patient/{id}")).await.status, 200);

    server.set_env("RABBITMQ_URL", &rabbitmq_url());
    server.restart().await;
    let (delivery, envelope) = events.next_for(&id, Duration::from_secs(30)).await;
    check_delivery(&delivery, &envelope, "Patient.create");
    assert_eq!(envelope.version_id, 1);
    assert_eq!(envelope.resource.as_ref(), Some(&created.json));
}
