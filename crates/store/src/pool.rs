//! The connections the request paths use.
//!
//! sqlx's pool pings every connection it takes back: a second round trip to PostgreSQL
//! after every statement, which costs as much as a primary-key read itself. This pool
//! (deadpool, with sqlx connections) hands a connection back as it is when its use ended
//! cleanly ([`Conn::done`]), and settles one whose use ended early instead: an error or a
//! cancelled request can leave replies to drain or a transaction to roll back, which the
//! ping takes care of before anyone else gets the connection. A connection that sat idle
//! is pinged before it is handed out, so one that PostgreSQL dropped meanwhile is
//! replaced rather than failing a request.
//!
//! The connection handed out is the one handed back last (last in, first out): its
//! PostgreSQL backend has just run, so its caches are warm, and the connections a burst
//! opened stay idle once it has passed. Handing them out in turn (first in, first out)
//! woke a cold backend for every statement: after a burst of 16 at once, a single client's
//! creates took twice as long.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{self, Metrics, Object, PoolError, QueueMode, RecycleError, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

/// A connection unused for this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);
/// How long a request waits for a connection, and a connection attempt may take.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long settling a connection may take before it is closed instead.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens and checks the pool's connections.
#[derive(Debug)]
pub(crate) struct Connector {
    options: PgConnectOptions,
}

impl managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        self.options.connect().await
    }

    async fn recycle(
        &self,
        conn: &mut PgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if metrics.last_used() >= PING_WHEN_IDLE_FOR {
            conn.ping().await.map_err(RecycleError::Backend)?;
        }
        Ok(())
    }
}

/// A pool of at most `max_size` connections, opened on demand.
#[derive(Debug, Clone)]
pub(crate) struct Pool(managed::Pool<Connector>);

impl Pool {
    pub(crate) fn new(options: PgConnectOptions, max_size: usize) -> Self {
        let pool = managed::Pool::builder(Connector { options })
            .max_size(max_size)
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(WAIT_TIMEOUT))
            .recycle_timeout(Some(WAIT_TIMEOUT))
            .build()
            // Building fails only for timeouts without a runtime, and the runtime is set.
            .expect("the pool has a runtime for its timeouts");
        Pool(pool)
    }

    /// A connection; wait for one when all are in use.
    pub(crate) async fn get(&self) -> Result<Conn, sqlx::Error> {
        let object = self.0.get().await.map_err(|error| match error {
            PoolError::Backend(error) => error,
            PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
            _ => sqlx::Error::PoolClosed,
        })?;
        Ok(Conn {
            object: Some(object),
            clean: false,
        })
    }
}

/// A connection out of the pool. Dropped after [`Conn::done`] it goes straight back;
/// dropped otherwise it is settled first (or closed when it cannot be).
pub(crate) struct Conn {
    object: Option<Object<Connector>>,
    clean: bool,
}

impl Conn {
    /// Its use ended with every reply read and no transaction open: hand it back as it is.
    pub(crate) fn done(mut self) {
        self.clean = true;
    }
}

impl Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.object.as_deref().expect("present until dropped")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.object.as_deref_mut().expect("present until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(object) = self.object.take() else {
            return;
        };
        if self.clean {
            return; // the object goes back to the pool
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(settle(object));
            }
            Err(_) => drop(Object::take(object)),
        }
    }
}

/// Drains what an interrupted use left (a pending reply, a queued rollback) and puts the
/// connection back; closes it when that fails.
async fn settle(mut object: Object<Connector>) {
    let settled = tokio::time::timeout(SETTLE_TIMEOUT, object.ping()).await;
    if !matches!(settled, Ok(Ok(()))) {
        drop(Object::take(object));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection of `pool` and its PostgreSQL backend's process id.
    async fn backend(pool: &Pool) -> (Conn, i32) {
        let mut conn = pool
            .get()
            .await
            .unwrap_or_else(|e| panic!("connection: {e}"));
        let pid = sqlx::query_scalar("select pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("pid: {e}"));
        (conn, pid)
    }

    #[sqlx::test(migrations = false)]
    async fn hands_out_the_connection_handed_back_last(db: sqlx::PgPool) {
        let pool = Pool::new((*db.connect_options()).clone(), 3);
        let (a, _) = backend(&pool).await;
        let (b, _) = backend(&pool).await;
        let (c, last) = backend(&pool).await;
        a.done();
        b.done();
        c.done();
        let (again, pid) = backend(&pool).await;
        assert_eq!(pid, last, "the connection handed back last");
        again.done();
        let (_, pid) = backend(&pool).await;
        assert_eq!(pid, last, "and again, while the others stay idle");
    }
}
