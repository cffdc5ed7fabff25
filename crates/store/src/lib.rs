//! PostgreSQL JSONB persistence: the only crate that holds SQL.
//!
//! Every write is one transaction that touches the current row, the history row, the
//! search index rows and reference record, the uniqueness claims and the outbox event
//! together, and checks referential integrity before it commits ([`ReferentialIntegrity`]),
//! so a failed write leaves nothing behind and a committed one always has its event.

mod content;
mod error;
mod export;
mod history;
mod integrity;
mod outbox;
mod pool;
mod reads;
mod resources;
mod search;
mod search_index;
mod transaction;

use std::sync::Arc;
use std::time::Duration;

use fhir_core::search::Registry;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use error::StoreError;
pub use export::{
    BATCH, Batch, EXPORT_CHANNEL, ExportJob, ExportRead, JobStatus, NewExport, Rows, Snapshot,
};
pub use history::{HistoryPage, HistoryQuery, HistoryRow, HistoryScope};
pub use integrity::{REFERRERS_COUNTED, REFERRERS_NAMED, ReferentialIntegrity};
pub use outbox::{OUTBOX_CHANNEL, OutboxBatch, OutboxEvent};
pub use resources::{Claim, Conditional, Created, Current, NewOutcome, Stored};
pub use search::{CompartmentSource, Everything, Found, MAX_INCLUDED, SearchPage};
pub use search_index::Reindexed;
pub use transaction::{NewResource, Transaction};

/// The schema migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// The resource store: a cheap-to-clone handle on its connections.
#[derive(Debug, Clone)]
pub struct Store {
    /// The request paths' connections.
    conns: pool::Pool,
    /// Migrations, the outbox relay and its listener (sqlx's pool).
    pool: PgPool,
    /// The search parameter definitions the writes index by.
    index: Arc<search_index::SearchIndex>,
    /// What searches share (the cursor key).
    search: Arc<search::SearchState>,
    /// The referential integrity writes and deletes are held to.
    integrity: ReferentialIntegrity,
    /// Wakes the relays after a commit with events.
    announcer: outbox::Announcer,
    /// The lanes of reads by id on `conns` (see [`reads`]).
    reads: Arc<reads::Gather>,
}

/// Connections of [`Store::pool`], beside the request paths' ones.
const SIDE_CONNECTIONS: u32 = 3;

/// Reads by id run at most this many statements at a time unless told otherwise
/// ([`Store::with_read_lanes`]); more reads wait and are answered together.
pub const DEFAULT_READ_LANES: usize = 2;

/// The pool of [`Store::pool`], opened on first use.
fn side_pool(options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(SIDE_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options)
}

impl Store {
    /// Connects to `database_url`: at most `max_connections` for requests, plus a few
    /// for migrations and the outbox relay. Fails when PostgreSQL cannot be reached, or
    /// when the built-in search parameter definitions do not load.
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options: PgConnectOptions = database_url.parse()?;
        let pool = side_pool(options.clone());
        let store = Store {
            conns: pool::Pool::new(options, max_connections as usize),
            pool,
            index: Arc::new(search_index::SearchIndex::builtin()),
            search: Arc::default(),
            integrity: ReferentialIntegrity::default(),
            announcer: outbox::Announcer::default(),
            reads: Arc::new(reads::Gather::new(DEFAULT_READ_LANES)),
        };
        store.index.registry()?;
        store.conn().await?.done();
        Ok(store)
    }

    /// The same store (definitions, settings) on connections of its own, opened on first
    /// use: `request_connections` for requests, and a few beside them. Made on a thread
    /// with a runtime of its own, its connections belong to that runtime.
    pub fn with_own_connections(&self, request_connections: usize) -> Self {
        let options = (*self.pool.connect_options()).clone();
        Store {
            conns: pool::Pool::new(options.clone(), request_connections),
            pool: side_pool(options),
            index: Arc::clone(&self.index),
            search: Arc::clone(&self.search),
            integrity: self.integrity,
            announcer: outbox::Announcer::default(),
            reads: Arc::new(reads::Gather::new(self.reads.lanes())),
        }
    }

    /// A store on the database of an existing pool, with as many request connections
    /// (tests). Writes fail if the built-in search parameter definitions do not load.
    pub fn from_pool(pool: PgPool) -> Self {
        let options = (*pool.connect_options()).clone();
        let size = pool.options().get_max_connections() as usize;
        Store {
            conns: pool::Pool::new(options, size),
            pool,
            index: Arc::new(search_index::SearchIndex::builtin()),
            search: Arc::default(),
            integrity: ReferentialIntegrity::default(),
            announcer: outbox::Announcer::default(),
            reads: Arc::new(reads::Gather::new(DEFAULT_READ_LANES)),
        }
    }

    /// The same store, indexing absolute references under `base` (this server's FHIR
    /// base URL) as local ones. Changing it re-indexes at the next start.
    pub fn with_server_base(mut self, base: &str) -> Self {
        let base = base.trim_end_matches('/').to_owned();
        self.index = Arc::new(search_index::SearchIndex::new(
            self.index.registry_result(),
            Some(base),
        ));
        self
    }

    /// The same store, holding writes and deletes to `integrity` (both checks are on by
    /// default).
    pub fn with_referential_integrity(mut self, integrity: ReferentialIntegrity) -> Self {
        self.integrity = integrity;
        self
    }

    /// The same store, running reads by id at most `lanes` statements at a time (at least
    /// one); reads beyond wait and are answered together (see [`reads`]).
    pub fn with_read_lanes(mut self, lanes: usize) -> Self {
        self.reads = Arc::new(reads::Gather::new(lanes));
        self
    }

    /// The referential integrity writes and deletes are held to.
    pub fn referential_integrity(&self) -> ReferentialIntegrity {
        self.integrity
    }

    /// The same store, indexing by `registry` instead of the built-in definitions.
    pub fn with_registry(mut self, registry: &'static Registry) -> Self {
        let base = self.index.server_base().map(str::to_owned);
        self.index = Arc::new(search_index::SearchIndex::new(Ok(registry), base));
        self
    }

    /// The search parameter definitions this store indexes by (searches must be parsed with
    /// the same ones).
    pub fn registry(&self) -> Result<&'static Registry, StoreError> {
        self.index.registry()
    }

    /// This store's server base URL, under which references are local, when set.
    pub fn server_base(&self) -> Option<&str> {
        self.index.server_base()
    }

    /// A connection for a request; see [`pool::Conn::done`].
    async fn conn(&self) -> Result<pool::Conn, sqlx::Error> {
        self.conns.get().await
    }

    /// Applies pending migrations, then starts re-indexing, in a background task, the
    /// resource types whose search parameter definitions changed since they were indexed
    /// (see [`Store::reindex_stale`]); reads and writes go on meanwhile.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(StoreError::Migrate)?;
        self.spawn_reindex();
        Ok(())
    }

    /// sqlx's pool on the same database: migrations, the outbox relay, and tests that
    /// look at the tables.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
