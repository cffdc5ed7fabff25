//! One step of the worker: the messages delivered together in, a [`Disposition`] for each
//! out. Malformed messages are refused on their own; the changes are applied together, in
//! one transaction with each one's processed marker; when the database refuses that
//! transaction, each change is tried in a transaction of its own, so that only the one
//! at fault goes back to the queue.
//!
//! Logs name event ids and resource types, never a message's content.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::projection::{Change, apply_all};

pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(500);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A delivered message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The body: an envelope, if well formed.
    pub body: &'a [u8],
    /// The AMQP `message_id` (the event id, when the relay published it), for logs.
    pub message_id: &'a str,
}

/// What becomes of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Applied (or nothing to apply): acknowledge.
    Ack,
    /// Cannot ever be applied: reject, and the broker dead-letters it.
    DeadLetter,
    /// Refused by the database because of its content, maybe not next time: return it to
    /// the queue. The broker counts deliveries and dead-letters it after the configured
    /// number.
    Retry,
    /// The worker is stopping while the database is unavailable: leave it unacknowledged,
    /// the broker delivers it again once the channel is gone.
    Abandon,
}

/// Decodes `messages` and applies their changes. A database that is unavailable
/// (connection lost, pool exhausted, deadlock, shutdown) is waited for with a back-off
/// instead of counting against the messages, until `shutdown` turns true.
pub async fn step(
    pool: &PgPool,
    messages: &[Message<'_>],
    shutdown: &mut watch::Receiver<bool>,
) -> Vec<Disposition> {
    let mut dispositions = vec![Disposition::Ack; messages.len()];
    let mut changes = Vec::with_capacity(messages.len());
    let mut positions = Vec::with_capacity(messages.len());
    for (position, message) in messages.iter().enumerate() {
        match Change::decode(message.body) {
            Ok(Some(change)) => {
                changes.push(change);
                positions.push(position);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, message_id = message.message_id,
                    "dead-lettering a malformed change event");
                dispositions[position] = Disposition::DeadLetter;
            }
        }
    }
    let applied = apply_changes(pool, &changes, shutdown).await;
    for (position, disposition) in positions.into_iter().zip(applied) {
        dispositions[position] = disposition;
    }
    dispositions
}

/// Applies `changes` together, or one by one when the database refuses them together.
async fn apply_changes(
    pool: &PgPool,
    changes: &[Change],
    shutdown: &mut watch::Receiver<bool>,
) -> Vec<Disposition> {
    let disposition = |result: Result<(), Failure>| match result {
        Ok(()) => Disposition::Ack,
        Err(Failure::Refused) => Disposition::Retry,
        Err(Failure::Stopping) => Disposition::Abandon,
    };
    if changes.is_empty() {
        return Vec::new();
    }
    match apply_patiently(pool, changes, shutdown).await {
        Err(Failure::Refused) if changes.len() > 1 => {}
        together => return vec![disposition(together); changes.len()],
    }
    let mut dispositions = Vec::with_capacity(changes.len());
    for change in changes {
        let alone = apply_patiently(pool, std::slice::from_ref(change), shutdown).await;
        dispositions.push(disposition(alone));
    }
    dispositions
}

/// Why changes were not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The database refused them.
    Refused,
    /// The worker is stopping and the database is still unavailable.
    Stopping,
}

/// Applies `changes` in one transaction, waiting out an unavailable database.
async fn apply_patiently(
    pool: &PgPool,
    changes: &[Change],
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Failure> {
    // Named in logs: the first event, and how many were applied together.
    let event_id = changes.first().map(|c| c.event_id.to_string());
    let resource_type = changes.first().map_or("", |c| c.kind.as_str());
    let events = changes.len();
    let mut backoff = MIN_BACKOFF;
    loop {
        let error = match apply_all(pool, changes).await {
            Ok(outcomes) => {
                for (change, outcome) in changes.iter().zip(outcomes) {
                    tracing::debug!(event_id = %change.event_id,
                        resource_type = change.kind.as_str(), outcome = outcome.as_str(),
                        "change event processed");
                }
                return Ok(());
            }
            Err(error) => error,
        };
        let error_text = describe(&error);
        if !is_transient(&error) {
            tracing::warn!(
                error = error_text,
                event_id,
                resource_type,
                events,
                "change events refused by the database"
            );
            return Err(Failure::Refused);
        }
        tracing::warn!(
            error = error_text,
            event_id,
            resource_type,
            events,
            retry_in_ms = backoff.as_millis() as u64,
            "database unavailable; retrying"
        );
        if !pause(backoff, shutdown).await {
            return Err(Failure::Stopping);
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Errors of the system rather than of the message: worth waiting out. A message only
/// causes data (22), integrity (23) and raised (P0) errors; anything else in a database
/// answer is a connection, resource, lock or schema problem.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_none_or(|code| !["22", "23", "P0"].iter().any(|c| code.starts_with(c))),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// A database error by its SQLSTATE only: PostgreSQL messages can quote the values
/// involved, which may be patient data.
pub(crate) fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => {
            format!(
                "database error {}",
                db.code().as_deref().unwrap_or("unknown")
            )
        }
        other => other.to_string(),
    }
}

/// Sleeps for `delay`; false when `shutdown` turned true first.
pub(crate) async fn pause(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = shutdown.wait_for(|stop| *stop) => true,
    };
    !stopped && !*shutdown.borrow()
}
