//! The consumer side of the change stream: a durable quorum queue bound to the change
//! exchange, with a dead-letter queue for what cannot be processed, and the checks every
//! consumer makes before it trusts an envelope (see `docs/events.md`, "Guarantees").

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::{Action, EXCHANGE, Envelope, SPEC_VERSION, declare_exchange};

/// Deliveries of one message before the broker dead-letters it, unless told otherwise.
pub const DEFAULT_MAX_DELIVERIES: u32 = 10;
/// The longest queue name a consumer may choose: the dead-letter names add a suffix and
/// AMQP names are at most 255 bytes.
pub const MAX_QUEUE_NAME_LEN: usize = 200;
/// The longest resource id FHIR allows.
const MAX_ID_LEN: usize = 64;

/// A consumer's own durable queue on the change exchange: a quorum queue (replicated in a
/// cluster, counts deliveries) that dead-letters a message to `<name>.dead` when the
/// consumer rejects it or after [`DurableQueue::max_deliveries`] deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableQueue {
    /// The topic exchange the queue is bound to ([`EXCHANGE`] unless a test isolates itself).
    pub exchange: String,
    /// The queue name, at most [`MAX_QUEUE_NAME_LEN`] bytes.
    pub name: String,
    /// Routing-key patterns bound, e.g. `Patient.*`.
    pub bindings: Vec<String>,
    /// Deliveries of one message (the first included) before it is dead-lettered; at least 1.
    pub max_deliveries: u32,
}

/// A queue name or binding the broker would refuse, found before talking to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// Empty, longer than [`MAX_QUEUE_NAME_LEN`], or starting with the reserved `amq.`.
    #[error(
        "queue and exchange names must be 1 to {MAX_QUEUE_NAME_LEN} bytes and not start with amq."
    )]
    Name,
    /// No delivery allowed at all.
    #[error("a message must be delivered at least once")]
    MaxDeliveries,
}

impl DurableQueue {
    /// A queue named `name` on [`EXCHANGE`], bound to every change, with
    /// [`DEFAULT_MAX_DELIVERIES`].
    pub fn new(name: impl Into<String>) -> Self {
        DurableQueue {
            exchange: EXCHANGE.to_owned(),
            name: name.into(),
            bindings: vec!["#".to_owned()],
            max_deliveries: DEFAULT_MAX_DELIVERIES,
        }
    }

    /// The fanout exchange dead-lettered messages go through: `<name>.dlx`.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.name)
    }

    /// The queue dead-lettered messages wait in, for a person to look at: `<name>.dead`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.name)
    }

    /// Checks the names and limits, so that declaring cannot fail on them.
    pub fn check(&self) -> Result<(), TopologyError> {
        let valid = |name: &str| {
            !name.is_empty() && name.len() <= MAX_QUEUE_NAME_LEN && !name.starts_with("amq.")
        };
        let bindings_fit = self.bindings.iter().all(|b| b.len() <= 255);
        if !valid(&self.name) || !valid(&self.exchange) || !bindings_fit {
            return Err(TopologyError::Name);
        }
        if self.max_deliveries == 0 {
            return Err(TopologyError::MaxDeliveries);
        }
        Ok(())
    }

    /// Declares the change exchange, the dead-letter exchange and queue, the queue itself,
    /// and its bindings; idempotent. A queue that already exists with other arguments
    /// (e.g. another delivery limit) makes the broker close the channel with
    /// `PRECONDITION_FAILED`: such a change needs a policy or a new queue.
    ///
    /// Call [`DurableQueue::check`] first: names the broker cannot take are refused there
    /// instead of failing here.
    pub async fn declare(&self, channel: &Channel) -> Result<lapin::Queue, lapin::Error> {
        declare_exchange(channel, &self.exchange).await?;
        self.declare_dead_letters(channel).await?;
        let queue = channel
            .queue_declare(self.name.as_str().into(), durable(), self.arguments())
            .await?;
        for binding in &self.bindings {
            channel
                .queue_bind(
                    self.name.as_str().into(),
                    self.exchange.as_str().into(),
                    binding.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(queue)
    }

    async fn declare_dead_letters(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let exchange = self.dead_letter_exchange();
        let queue = self.dead_letter_queue();
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), long_string("quorum"));
        channel
            .queue_declare(queue.as_str().into(), durable(), arguments)
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    /// The quorum queue's arguments. Dead-lettering is at-least-once (the broker keeps a
    /// message until the dead-letter queue has it), which requires `reject-publish` on
    /// overflow; no length limit is set, so publishers are never refused because of it.
    fn arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), long_string("quorum"));
        arguments.insert(
            "x-dead-letter-exchange".into(),
            long_string(&self.dead_letter_exchange()),
        );
        arguments.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
        arguments.insert("x-overflow".into(), long_string("reject-publish"));
        // The broker counts redeliveries: the first delivery is not one of them.
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.max_deliveries.saturating_sub(1))),
        );
        arguments
    }
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Why a message is not a usable envelope. The text names the defect only, never the
/// content: a malformed message may carry patient data anywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not the envelope's shape.
    #[error("not a change event envelope ({category} error at line {line}, column {column})")]
    Json {
        /// `syntax`, `data`, `eof` or `io`.
        category: &'static str,
        /// Where the parser gave up.
        line: usize,
        /// Where the parser gave up.
        column: usize,
    },
    /// A `specVersion` this crate does not read.
    #[error("unknown envelope specVersion {0}")]
    UnknownSpecVersion(u32),
    /// A create or update without its resource.
    #[error("a {0} event without its resource")]
    MissingResource(Action),
    /// The resource's `resourceType` or `id` differs from the envelope's.
    #[error("the resource does not match the envelope's resourceType and id")]
    ResourceMismatch,
    /// A `resourceType` or `id` that is not a FHIR name or id.
    #[error("the envelope's resourceType or id is not valid")]
    InvalidIdentity,
    /// A `versionId` below 1.
    #[error("the envelope's versionId is not positive")]
    InvalidVersion,
}

impl Envelope {
    /// Parses a message body and checks what every consumer relies on: a known
    /// `specVersion`, a well-formed resource type, id and version, and, for create and
    /// update, a resource that is the one the envelope names.
    pub fn decode(body: &[u8]) -> Result<Envelope, DecodeError> {
        let envelope: Envelope = serde_json::from_slice(body).map_err(json_error)?;
        if envelope.spec_version != SPEC_VERSION {
            return Err(DecodeError::UnknownSpecVersion(envelope.spec_version));
        }
        if !is_resource_type(&envelope.resource_type) || !is_id(&envelope.id) {
            return Err(DecodeError::InvalidIdentity);
        }
        if envelope.version_id < 1 {
            return Err(DecodeError::InvalidVersion);
        }
        match (&envelope.resource, envelope.action) {
            (None, Action::Create | Action::Update) => {
                Err(DecodeError::MissingResource(envelope.action))
            }
            (Some(resource), _)
                if resource["resourceType"].as_str() != Some(envelope.resource_type.as_str())
                    || resource["id"].as_str() != Some(envelope.id.as_str()) =>
            {
                Err(DecodeError::ResourceMismatch)
            }
            _ => Ok(envelope),
        }
    }
}

fn json_error(error: serde_json::Error) -> DecodeError {
    let category = match error.classify() {
        serde_json::error::Category::Io => "io",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "data",
        serde_json::error::Category::Eof => "eof",
    };
    DecodeError::Json {
        category,
        line: error.line(),
        column: error.column(),
    }
}

/// A FHIR resource type name: an upper-case letter, then letters.
fn is_resource_type(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphabetic())
        && name.len() <= MAX_ID_LEN
}

/// A FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const PATIENT: &str = r#"{"specVersion":1,"eventId":"7d0c9a52-3f43-4f57-9a3e-6a4c2f0f1a11","action":"create","resourceType":"Patient","id":"p1","versionId":1,"lastUpdated":"2026-01-02T03:04:05.123456Z","resource":{"resourceType":"Patient","id":"p1"}}"#;

    #[test]
    fn a_well_formed_envelope_decodes() {
        let envelope = Envelope::decode(PATIENT.as_bytes()).unwrap();
        assert_eq!(envelope.id, "p1");
        assert_eq!(envelope.action, Action::Create);
    }

    #[test]
    fn json_errors_name_the_place_not_the_content() {
        let error = Envelope::decode(br#"{"specVersion":"Jane Doe"}"#).unwrap_err();
        assert!(matches!(
            error,
            DecodeError::Json {
                category: "data",
                ..
            }
        ));
        assert!(!error.to_string().contains("Jane"), "{error}");
        assert!(matches!(
            Envelope::decode(b"not json").unwrap_err(),
            DecodeError::Json {
                category: "syntax",
                ..
            }
        ));
    }

    #[test]
    fn envelopes_consumers_cannot_trust_are_refused() {
        let with = |from: &str, to: &str| PATIENT.replace(from, to).into_bytes();
        assert_eq!(
            Envelope::decode(&with(r#""specVersion":1"#, r#""specVersion":2"#)),
            Err(DecodeError::UnknownSpecVersion(2))
        );
        assert_eq!(
            Envelope::decode(&with(r#""versionId":1"#, r#""versionId":0"#)),
            Err(DecodeError::InvalidVersion)
        );
        assert_eq!(
            Envelope::decode(&with(r#""id":"p1","v"#, r#""id":"p 1","v"#)),
            Err(DecodeError::InvalidIdentity)
        );
        assert_eq!(
            Envelope::decode(&with(r#""id":"p1"}"#, r#""id":"p2"}"#)),
            Err(DecodeError::ResourceMismatch)
        );
        let no_resource = PATIENT
            .split_once(r#","resource":"#)
            .map(|(head, _)| format!("{head}}}"))
            .unwrap();
        assert_eq!(
            Envelope::decode(no_resource.as_bytes()),
            Err(DecodeError::MissingResource(Action::Create))
        );
        let delete = no_resource.replace(r#""action":"create""#, r#""action":"delete""#);
        assert!(Envelope::decode(delete.as_bytes()).is_ok());
    }

    #[test]
    fn names_are_checked_before_the_broker_sees_them() {
        let mut queue = DurableQueue::new("analytics.changes");
        assert_eq!(queue.check(), Ok(()));
        assert_eq!(queue.dead_letter_queue(), "analytics.changes.dead");
        queue.name = "x".repeat(MAX_QUEUE_NAME_LEN + 1);
        assert_eq!(queue.check(), Err(TopologyError::Name));
        queue.name = "amq.mine".into();
        assert_eq!(queue.check(), Err(TopologyError::Name));
        queue.name = "ok".into();
        queue.max_deliveries = 0;
        assert_eq!(queue.check(), Err(TopologyError::MaxDeliveries));
    }
}
