//! The transactional outbox: change events written with each write (see `resources.rs`),
//! claimed by the relay in batches, marked sent once the broker confirmed them.

use std::sync::{Arc, OnceLock};

use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row, Transaction};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{Store, StoreError};

/// The `LISTEN`/`NOTIFY` channel on which committed events are announced, so that the
/// relays (of every process) wake as soon as there is something to publish.
pub const OUTBOX_CHANNEL: &str = "fhir_outbox";

/// Announces committed events on [`OUTBOX_CHANNEL`], after the commit and outside the
/// write's transaction: a `NOTIFY` takes a database-wide lock at its transaction's commit
/// and holds it until the commit is flushed, so that writes notifying in their own
/// transactions commit one at a time (a plain insert: 13,700 commits/s at 8 clients
/// without, 5,600 with). Commits announced while an announcement is under way, or in the
/// [`ANNOUNCE_INTERVAL`] after it, share the next one. An announcement lost with its
/// process costs a relay one poll interval; the events themselves are in the outbox.
#[derive(Debug, Clone, Default)]
pub(crate) struct Announcer {
    /// Set at the first announcement (it needs a runtime to run on).
    pending: Arc<OnceLock<mpsc::Sender<()>>>,
}

impl Announcer {
    /// Announces the events of a transaction that has just committed.
    pub(crate) fn committed(&self, pool: &PgPool) {
        let pending = self.pending.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(1);
            tokio::spawn(announce((*pool.connect_options()).clone(), receiver));
            sender
        });
        // Full: an announcement not yet begun covers this commit too.
        let _ = pending.try_send(());
    }
}

/// The least time between two announcements. Each is a transaction of its own, which costs
/// the server and PostgreSQL about as much as a tenth of a create: sent for every commit,
/// they took 7 to 23 % of the creates a second at 8 clients (`bench/run`'s create, with
/// and without announcements). A relay hears of a commit this much later at most.
const ANNOUNCE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// Sends one `NOTIFY` per announcement asked for, at most one per [`ANNOUNCE_INTERVAL`],
/// until every store handle is gone, on a connection of its own: one round trip each, where a pooled one adds a ping when taken
/// and another when given back. Its commit does not wait for the disk: a notification lost
/// in a crash, or to a connection that failed (it is opened again for the next one), is
/// made up for by the relays' polling.
async fn announce(options: PgConnectOptions, mut pending: mpsc::Receiver<()>) {
    let mut connection: Option<PgConnection> = None;
    while pending.recv().await.is_some() {
        let open = match connection {
            Some(ref mut open) => open,
            None => match PgConnection::connect_with(&options).await {
                Ok(opened) => connection.insert(opened),
                Err(error) => {
                    tracing::debug!(%error, "committed events not announced; the relays will poll");
                    continue;
                }
            },
        };
        let sent =
            sqlx::query("select set_config('synchronous_commit', 'off', true), pg_notify($1, '')")
                .bind(OUTBOX_CHANNEL)
                .execute(&mut *open)
                .await;
        if let Err(error) = sent {
            tracing::debug!(%error, "committed events not announced; the relays will poll");
            connection = None;
        }
        tokio::time::sleep(ANNOUNCE_INTERVAL).await;
    }
}

/// A fresh event id, as text: the SQL casts it to `uuid`.
pub(crate) fn new_event_id() -> String {
    Uuid::new_v4().to_string()
}

/// How many of the oldest unsent events a claim looks at, per event it may take.
const CLAIM_SCAN: i64 = 2;

/// The claim of [`Store::claim_outbox`]: up to `$1` events, oldest first and not locked by
/// another relay, among the `$2` oldest unsent ones (`prefix`), each the oldest of its
/// resource there (`heads`).
/// An older unsent event of the same resource has a smaller id, so it is in the prefix
/// whenever the newer one is: looking at the prefix alone is enough to keep each resource's
/// events in order. Each step reads a bounded number of rows by index, whatever the
/// backlog and however stale the table's statistics: a burst of writes can leave them
/// saying that nothing is unsent, and a claim written as one `not exists` join over the
/// unsent rows was then planned as a scan of every unsent row per row taken, which took
/// over a second per batch once the backlog reached tens of thousands and made the relay
/// fall further behind. The last step locks by primary key only (no condition on
/// `sent_at`, so no partial index is a candidate), and a row another relay marked sent
/// meanwhile comes back with `unsent` false. The envelopes of the rows it locked are built
/// from their versions' history rows (`outbox_envelopes`), which are read, not locked.
const CLAIM: &str = "
    with prefix as materialized (
        select id, res_key from outbox where sent_at is null order by id limit $2
    ), heads as materialized (
        select id
        from (select id, res_key, min(id) over (partition by res_key) as head from prefix) p
        where res_key is null or id = head
    ), claimed as (
        select id, sent_at is null as unsent
        from outbox
        where id = any(array(select id from heads))
        order by id limit $1
        for update skip locked
    )
    select id, e.event_id::text as event_id, e.routing_key, e.payload, c.unsent
    from claimed c join outbox_envelopes e using (id)
    order by id";

/// One unsent event.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// The outbox row; marks it sent.
    pub id: i64,
    /// The envelope's `eventId`.
    pub event_id: Uuid,
    /// `<ResourceType>.<action>`.
    pub routing_key: String,
    /// The envelope as JSON text.
    pub payload: String,
}

/// Unsent events claimed by one relay: their rows stay locked (other relays skip them)
/// until the batch is marked sent or released unsent. Dropping it releases them too, but
/// only once its connection is next used: [`OutboxBatch::release`] does it at once.
#[derive(Debug)]
pub struct OutboxBatch {
    tx: Transaction<'static, Postgres>,
    events: Vec<OutboxEvent>,
}

impl OutboxBatch {
    /// The claimed events, oldest first.
    pub fn events(&self) -> &[OutboxEvent] {
        &self.events
    }

    /// Marks every claimed event sent and commits, releasing the locks.
    pub async fn mark_sent(mut self) -> Result<(), StoreError> {
        let ids: Vec<i64> = self.events.iter().map(|e| e.id).collect();
        if !ids.is_empty() {
            sqlx::query("update outbox set sent_at = now() where id = any($1)")
                .bind(&ids)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }

    /// Rolls the claim back: the events stay unsent, and the next claim can take them.
    pub async fn release(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl Store {
    /// Announces that a transaction which wrote events has committed ([`Announcer`]).
    pub(crate) fn events_committed(&self) {
        self.announcer.committed(&self.pool);
    }

    /// Claims up to `limit` unsent events, oldest first, skipping rows another relay holds,
    /// and taking no event of a resource that has an older unsent one (held by another
    /// relay, or in this batch): the changes of one resource are published one batch after
    /// the other, in version order, however many relays run.
    /// The returned batch holds a transaction (and a pooled connection) until it is marked
    /// sent or dropped.
    pub async fn claim_outbox(&self, limit: i64) -> Result<OutboxBatch, StoreError> {
        // Marks lost in a crash only publish their events again (at least once), so the
        // commit does not wait for the disk. The mark's `id = any($1)` is estimated at ten
        // rows without its array and at its length with it: planned for each batch unless
        // told to keep the generic plan, made without sequential scans (rows by key).
        let mut tx = self
            .pool
            .begin_with(
                "begin; set local synchronous_commit = off; \
                 set local plan_cache_mode = force_generic_plan; set local enable_seqscan = off",
            )
            .await?;
        let rows = sqlx::query(CLAIM)
            .bind(limit)
            .bind(limit.saturating_mul(CLAIM_SCAN))
            .fetch_all(&mut *tx)
            .await?;
        let events = rows
            .into_iter()
            // Sent by another relay since this statement's snapshot: locked, but not ours.
            .filter(|row| row.get::<bool, _>("unsent"))
            .map(|row| {
                let event_id: String = row.get("event_id");
                Ok(OutboxEvent {
                    id: row.get("id"),
                    event_id: event_id
                        .parse()
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    routing_key: row.get("routing_key"),
                    payload: row.get("payload"),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(OutboxBatch { tx, events })
    }

    /// Deletes at most `limit` events the broker confirmed more than `retention` ago, oldest
    /// first; returns how many. Sent events are kept a while to look into, not for
    /// delivery: the resource history keeps every version.
    pub async fn prune_outbox(
        &self,
        retention: std::time::Duration,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "delete from outbox where id in (
                 select id from outbox
                 where sent_at < now() - make_interval(secs => $1)
                 order by id limit $2
             )",
        )
        .bind(retention.as_secs_f64())
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// A listener on [`OUTBOX_CHANNEL`], on a connection of its own.
    pub async fn listen_outbox(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(OUTBOX_CHANNEL).await?;
        Ok(listener)
    }
}
