//! The outbox relay: publishes committed change events from the outbox to the broker and
//! marks them sent. A broker outage only delays events: unconfirmed rows stay unsent and
//! are retried. Logs name event ids, never payloads (they hold patient data).

use std::time::Duration;

use events::{Outgoing, PublishError, Publisher};
use sqlx::postgres::PgListener;
use store::{Store, StoreError};
use tokio::sync::{oneshot, watch};

/// Events claimed, published and marked sent together.
pub const BATCH_SIZE: i64 = 100;
/// How often the outbox is looked at when no notification arrives (a lost `NOTIFY`, a
/// listener that is reconnecting, rows another replica released).
const POLL_INTERVAL: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// How often sent events older than the retention are deleted, and how many at a time.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
const PRUNE_BATCH: i64 = 10_000;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a relay step did not complete; its events stay in the outbox.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed or refused.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// One step: claims a batch of unsent events, publishes each, waits for the broker's
/// confirms, marks them sent and commits. Returns how many were published. On error the
/// claim is rolled back and the events stay unsent (some may have reached the broker: they
/// are published again, which consumers tolerate by deduplicating on the event id).
pub async fn step(store: &Store, publisher: &Publisher, limit: i64) -> Result<usize, RelayError> {
    let batch = store.claim_outbox(limit).await?;
    let count = batch.events().len();
    if count == 0 {
        return Ok(0);
    }
    {
        let messages: Vec<Outgoing<'_>> = batch
            .events()
            .iter()
            .map(|e| Outgoing {
                event_id: e.event_id,
                routing_key: &e.routing_key,
                payload: e.payload.as_bytes(),
            })
            .collect();
        if let Err(error) = publisher.publish_all(&messages).await {
            let first = batch.events().first().map(|e| e.event_id.to_string());
            tracing::warn!(%error, count, first_event = first.as_deref().unwrap_or(""),
                "change events not confirmed by the broker; they stay in the outbox");
            if let Err(error) = batch.release().await {
                // The connection is gone, and the claim with it.
                tracing::warn!(%error, "could not roll back a relay's claim");
            }
            return Err(error.into());
        }
    }
    batch.mark_sent().await?;
    tracing::debug!(count, "change events published");
    Ok(count)
}

/// Publishes until the outbox is empty, connecting first when needed.
async fn drain(
    store: &Store,
    url: &str,
    publisher: &mut Option<Publisher>,
) -> Result<(), RelayError> {
    let publisher = match publisher {
        Some(publisher) => publisher,
        None => {
            let connected = Publisher::connect(url).await?;
            tracing::info!("connected to the message broker");
            publisher.insert(connected)
        }
    };
    // A short batch does not mean the outbox is empty: later changes of a resource in the
    // batch wait for the next one.
    while step(store, publisher, BATCH_SIZE).await? > 0 {}
    Ok(())
}

/// Waits for a notification, the poll interval, or (after a failure) the back-off.
async fn wait(listener: &mut Option<PgListener>, backoff: Option<Duration>) {
    if let Some(delay) = backoff {
        tokio::time::sleep(delay).await;
        return;
    }
    let Some(active) = listener.as_mut() else {
        tokio::time::sleep(POLL_INTERVAL).await;
        return;
    };
    match tokio::time::timeout(POLL_INTERVAL, active.recv()).await {
        // The drain that follows covers every notification already received too.
        Ok(Ok(_)) => while active.next_buffered().is_some() {},
        Ok(Err(error)) => {
            tracing::warn!(%error, "outbox notifications interrupted; polling");
            *listener = None;
        }
        Err(_) => {}
    }
}

/// Deletes sent events older than `retention`, a batch at a time; failures are logged and
/// retried at the next interval.
async fn prune(store: &Store, retention: Duration) {
    loop {
        match store.prune_outbox(retention, PRUNE_BATCH).await {
            Ok(deleted) if deleted == PRUNE_BATCH as u64 => continue,
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::debug!(deleted, "sent change events pruned from the outbox");
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "pruning the outbox failed; retrying later");
                return;
            }
        }
    }
}

/// Starts [`run`] on a thread of its own, with its own runtime and `store` on connections
/// of its own ([`Store::with_own_connections`]); the receiver completes once it has stopped
/// (with an error if its runtime could not start).
///
/// Not a task of the server's runtime: under load that runtime has hundreds of requests to
/// poll, and a relay that was one task among them fell behind them (at 650 writes a second
/// on two cores, a backlog of about a thousand events and a second of lag, while the relay
/// alone publishes 10,000 events a second). The operating system shares the cores between
/// the relay's thread and the server's, whatever the server's queue.
pub fn spawn(
    store: &Store,
    url: String,
    retention: Duration,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<oneshot::Receiver<()>> {
    let (stopped, done) = oneshot::channel();
    let store = store.clone();
    crate::spawn_with_runtime("relay".into(), move || async move {
        run(store.with_own_connections(1), url, retention, shutdown).await;
        let _ = stopped.send(());
    })?;
    Ok(done)
}

/// Runs the relay until `shutdown` turns true (or its sender is dropped); every
/// [`PRUNE_INTERVAL`] it deletes events sent more than `retention` ago.
pub async fn run(
    store: Store,
    url: String,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut publisher: Option<Publisher> = None;
    let mut listener: Option<PgListener> = None;
    let mut backoff = MIN_BACKOFF;
    let mut pruned_at = tokio::time::Instant::now();
    while !*shutdown.borrow() {
        if pruned_at.elapsed() >= PRUNE_INTERVAL {
            prune(&store, retention).await;
            pruned_at = tokio::time::Instant::now();
        }
        if listener.is_none() {
            match store.listen_outbox().await {
                Ok(active) => listener = Some(active),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for outbox notifications; polling");
                }
            }
        }
        let delay = match drain(&store, &url, &mut publisher).await {
            Ok(()) => {
                backoff = MIN_BACKOFF;
                None
            }
            Err(error) => {
                // A broker failure may leave the connection half-open: start afresh.
                let broken = match error {
                    RelayError::Publish(_) => publisher.take(),
                    RelayError::Store(_) => None,
                };
                if let Some(broken) = broken {
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(MIN_BACKOFF, broken.close()).await;
                    });
                }
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64,
                    "change events delayed; they stay in the outbox");
                let delay = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                Some(delay)
            }
        };
        tokio::select! {
            changed = shutdown.changed() => {
                // The sender is gone: nobody can stop the relay any more, so stop now.
                if changed.is_err() {
                    break;
                }
            }
            () = wait(&mut listener, delay) => {}
        }
    }
    if let Some(publisher) = publisher {
        let _ = tokio::time::timeout(Duration::from_secs(2), publisher.close()).await;
    }
    tracing::info!("change event relay stopped");
}
