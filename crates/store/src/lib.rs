//! PostgreSQL JSONB persistence: the only crate that holds SQL.
//!
//! Every write is one transaction that touches the current row, the history row, the
//! uniqueness claims and the outbox event together, so a failed write leaves nothing behind
//! and a committed one is always announced.

mod error;
mod history;
mod outbox;
mod resources;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

pub use error::StoreError;
pub use history::{HistoryPage, HistoryQuery, HistoryRow, HistoryScope};
pub use outbox::{OUTBOX_CHANNEL, OutboxBatch, OutboxEvent};
pub use resources::{Claim, Created, Criteria, Current, Stored};

/// A stored resource as JSON text with `resourceType` first, as FHIR JSON is written:
/// `jsonb` keeps keys sorted by length, which would put it in the middle.
const CONTENT_TEXT: &str =
    "('{\"resourceType\":' || to_json(content ->> 'resourceType')::text || ','
     || substr((content - 'resourceType')::text, 2))";

/// The schema migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// The resource store: a cheap-to-clone handle on the connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects a pool of at most `max_connections` to `database_url`.
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(database_url)
            .await?;
        Ok(Store { pool })
    }

    /// Wraps an existing pool (tests).
    pub fn from_pool(pool: PgPool) -> Self {
        Store { pool }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(StoreError::Migrate)
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
