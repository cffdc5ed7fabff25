//! Recomputing every projection from the stored resources, in one transaction: what the
//! incremental worker must always agree with, and the way to start analytics on a database
//! that already holds data (or to repair it after a dead-lettered event).

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};

use crate::facts::{Facts, Kind};
use crate::projection::{Batch, PROJECTION_LOCK};

/// Current resources read and written per round trip.
const PAGE_SIZE: i64 = 1000;

/// How many fact rows a rebuild wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rebuilt {
    /// Current Patients.
    pub patients: u64,
    /// Current Accounts.
    pub accounts: u64,
    /// Current Invoices.
    pub invoices: u64,
}

/// Replaces the fact tables, the applied versions and the registrations with what the
/// `resources` and `resource_history` tables hold, in one transaction. Readers see the old
/// projections until it commits; the worker's transactions wait for it (and it for them)
/// and then apply only versions newer than the ones the rebuild read. Processed markers
/// are kept: they still name events whose effect is in the data.
pub async fn rebuild(pool: &PgPool) -> Result<Rebuilt, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Waits for the worker's open transactions and holds off new ones until the commit.
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(PROJECTION_LOCK)
        .execute(&mut *tx)
        .await?;
    for table in [
        "analytics.applied_versions",
        "analytics.patient_registrations",
        "analytics.patient_facts",
        "analytics.account_facts",
        "analytics.invoice_facts",
    ] {
        sqlx::query(&format!("delete from {table}"))
            .execute(&mut *tx)
            .await?;
    }
    copy_versions(&mut tx).await?;
    let rebuilt = copy_facts(&mut tx).await?;
    tx.commit().await?;
    Ok(rebuilt)
}

/// The version of every projected resource (deleted ones too, so that their older
/// events stay stale), and the time each Patient's version 1 was written.
async fn copy_versions(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into analytics.applied_versions (res_type, id, version, deleted)
         select res_type, id, version, deleted from resources where res_type = any($1)",
    )
    .bind(kind_names())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "insert into analytics.patient_registrations (id, registered_at)
         select id, last_updated from resource_history
         where res_type = 'Patient' and version = 1",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The facts of every current projected resource, a page at a time.
async fn copy_facts(conn: &mut PgConnection) -> Result<Rebuilt, sqlx::Error> {
    let mut rebuilt = Rebuilt::default();
    let mut after: i64 = 0;
    loop {
        let rows = sqlx::query(
            "select key, res_type, id, content from resources
             where not deleted and res_type = any($1) and key > $2
             order by key limit $3",
        )
        .bind(kind_names())
        .bind(after)
        .bind(PAGE_SIZE)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(rebuilt);
        };
        after = last.try_get("key")?;
        let mut batch = Batch::default();
        for row in &rows {
            let res_type: &str = row.try_get("res_type")?;
            let Some(kind) = Kind::parse(res_type) else {
                continue;
            };
            let content: Value = row.try_get("content")?;
            batch.push(row.try_get("id")?, Facts::of(kind, &content));
        }
        batch.write(conn).await?;
        let [patients, accounts, invoices] = batch.counts();
        rebuilt.patients += patients;
        rebuilt.accounts += accounts;
        rebuilt.invoices += invoices;
    }
}

fn kind_names() -> Vec<&'static str> {
    Kind::ALL.iter().map(|kind| kind.as_str()).collect()
}
