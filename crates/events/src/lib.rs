//! Change events: the versioned envelope every committed write is announced with, the
//! RabbitMQ topology it travels on, a publisher with confirms, and the consumer side (a
//! durable quorum queue with a dead-letter queue, the envelope checks). Shared by the
//! server's outbox relay and by consumers (see `docs/events.md`).

mod consumer;

use std::fmt;
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Re-exported so that consumers and tests speak to the broker with the same client.
pub use lapin;

pub use consumer::{
    DEFAULT_MAX_DELIVERIES, DecodeError, DurableQueue, MAX_QUEUE_NAME_LEN, TopologyError,
};

/// The exchange every change event is published to: topic, durable.
pub const EXCHANGE: &str = "fhir.changes";
/// The envelope version this crate writes and reads ([`Envelope::spec_version`]).
pub const SPEC_VERSION: u32 = 1;
/// The content type of every message body.
pub const CONTENT_TYPE: &str = "application/json";
/// AMQP delivery mode 2: the broker writes the message to disk (durable queues keep it).
const PERSISTENT: u8 = 2;
/// A connection attempt that takes longer than this is given up (e.g. a silent firewall).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker may take to confirm a publication.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// What a write did to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The resource came into existence (create, update-as-create, re-creation after delete).
    Create,
    /// A new version of an existing resource.
    Update,
    /// A tombstone: the resource is gone.
    Delete,
}

impl Action {
    /// The name used in the envelope and the routing key.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of one change event, version [`SPEC_VERSION`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The envelope format version; a consumer refuses versions it does not know.
    pub spec_version: u32,
    /// Unique per event (also the AMQP `message_id`): consumers dedupe on it.
    pub event_id: Uuid,
    /// What happened.
    pub action: Action,
    /// The FHIR resource type, e.g. `Patient`.
    pub resource_type: String,
    /// The logical id.
    pub id: String,
    /// The version the write produced (`meta.versionId` as a number).
    pub version_id: i64,
    /// When the version was written (`meta.lastUpdated`).
    pub last_updated: String,
    /// The resource as stored; absent for a delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
}

impl Envelope {
    /// The routing key this event is published with.
    pub fn routing_key(&self) -> String {
        routing_key(&self.resource_type, self.action)
    }
}

/// `<ResourceType>.<create|update|delete>`, e.g. `Patient.update`.
pub fn routing_key(resource_type: &str, action: Action) -> String {
    format!("{resource_type}.{action}")
}

/// Why talking to the broker failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The AMQP client reported an error (connection, channel or protocol).
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker did not answer in time.
    #[error("broker did not answer within {0:?}")]
    Timeout(Duration),
    /// The broker refused to take responsibility for the message.
    #[error("broker refused event {0}")]
    Nacked(Uuid),
}

/// Declares the topology (the durable topic exchange); idempotent.
pub async fn declare(channel: &Channel) -> Result<(), lapin::Error> {
    declare_exchange(channel, EXCHANGE).await
}

/// Declares a durable topic exchange named `name` (at most 255 bytes): [`EXCHANGE`] in
/// production, a name of their own for tests that must not see each other's events.
pub async fn declare_exchange(channel: &Channel, name: &str) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Declares the topology and a server-named queue, exclusive to this connection and gone
/// with it, bound to the exchange with `binding` (e.g. `Patient.*`): a watcher of the
/// change stream. Durable consumers declare their own named queues.
pub async fn watch(channel: &Channel, binding: &str) -> Result<lapin::Queue, lapin::Error> {
    declare(channel).await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            EXCHANGE.into(),
            binding.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(queue)
}

/// Opens a connection to `url` (an `amqp://` URL), giving up after a timeout.
pub async fn connect(url: &str) -> Result<Connection, PublishError> {
    connect_with(url, ConnectionProperties::default()).await
}

/// Like [`connect`], with a connection name the broker shows in its management UI (and
/// that operators can close the connection by).
pub async fn connect_as(url: &str, name: &str) -> Result<Connection, PublishError> {
    connect_with(
        url,
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
}

async fn connect_with(
    url: &str,
    properties: ConnectionProperties,
) -> Result<Connection, PublishError> {
    tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties))
        .await
        .map_err(|_| PublishError::Timeout(CONNECT_TIMEOUT))?
        .map_err(PublishError::from)
}

/// One message to publish: already-serialised envelope and its routing data.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The envelope's event id, sent as `message_id`.
    pub event_id: Uuid,
    /// `<ResourceType>.<action>`.
    pub routing_key: &'a str,
    /// The envelope as JSON.
    pub payload: &'a [u8],
}

/// Publishes to [`EXCHANGE`] on a channel in confirm mode: persistent JSON messages whose
/// `message_id` is the event id.
pub struct Publisher {
    connection: Connection,
    channel: Channel,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("status", &self.connection.status())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects, opens a channel, enables publisher confirms and declares the topology.
    pub async fn connect(url: &str) -> Result<Self, PublishError> {
        let connection = connect(url).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare(&channel).await?;
        Ok(Publisher {
            connection,
            channel,
        })
    }

    /// Publishes every message, then waits until the broker has confirmed all of them.
    /// On `Err` some may have been delivered: the caller retries them all (at least once).
    pub async fn publish_all(&self, messages: &[Outgoing<'_>]) -> Result<(), PublishError> {
        let mut pending: Vec<(Uuid, PublisherConfirm)> = Vec::with_capacity(messages.len());
        for message in messages {
            let properties = BasicProperties::default()
                .with_delivery_mode(PERSISTENT)
                .with_message_id(message.event_id.to_string().into())
                .with_content_type(CONTENT_TYPE.into());
            let confirm = self
                .channel
                .basic_publish(
                    EXCHANGE.into(),
                    message.routing_key.into(),
                    BasicPublishOptions::default(),
                    message.payload,
                    properties,
                )
                .await?;
            pending.push((message.event_id, confirm));
        }
        for (event_id, confirm) in pending {
            let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
                .await
                .map_err(|_| PublishError::Timeout(CONFIRM_TIMEOUT))??;
            if confirmation.is_nack() {
                return Err(PublishError::Nacked(event_id));
            }
        }
        Ok(())
    }

    /// Closes the channel and the connection.
    pub async fn close(self) {
        let _ = self.channel.close(200, "closing".into()).await;
        let _ = self.connection.close(200, "closing".into()).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn envelope_round_trips_in_camel_case() {
        let text = r#"{"specVersion":1,"eventId":"7d0c9a52-3f43-4f57-9a3e-6a4c2f0f1a11","action":"delete","resourceType":"Patient","id":"p1","versionId":3,"lastUpdated":"2026-01-02T03:04:05.123456Z"}"#;
        let envelope: Envelope = serde_json::from_str(text).unwrap();
        assert_eq!(envelope.action, Action::Delete);
        assert_eq!(envelope.resource, None);
        assert_eq!(envelope.routing_key(), "Patient.delete");
        assert_eq!(serde_json::to_string(&envelope).unwrap(), text);
    }
}
