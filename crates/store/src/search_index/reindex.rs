//! Re-indexing: the index rows of current resources rebuilt from their stored content,
//! for the types whose definitions differ from the ones they were indexed with (at
//! start-up, in the background) or for every type (`fhir-server reindex`).
//!
//! A type is re-indexed in batches of resources in key order, each batch one transaction
//! that first locks the type's row in `search_index_state`, then its resources' rows
//! (`for update`, in key order). A write locks the resource row before it replaces the
//! resource's index rows, so a write racing with a batch either commits first (and the
//! batch, once it has the lock, indexes the new content) or waits for the batch (and then
//! replaces the batch's rows). Reads never wait. The state row records the last key done:
//! a re-index that was interrupted resumes there at the next start.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fhir_core::ResourceType;
use fhir_core::reference::LocalReference;
use fhir_core::search::ResourceIndex;
use serde_json::Value;
use sqlx::Connection;

use super::{
    IndexRows, Keys, ParamIds, Statements, TableSet, delete_ctes, insert_ctes, params, push_rows,
};
use crate::{Store, StoreError};

/// Resources per batch: a write to one of them waits for the batch at most.
const BATCH_SIZE: i64 = 250;
/// A background re-index that fails (the database went away) is tried this often.
const ATTEMPTS: u32 = 5;
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// What a re-index did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reindexed {
    /// The types whose index rows were rebuilt.
    pub types: Vec<ResourceType>,
    /// The current resources re-indexed.
    pub resources: u64,
}

/// Which types to re-index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every type.
    All,
    /// The types indexed with other definitions, or whose re-index was interrupted.
    Stale,
}

/// The statement that replaces a batch's rows and records the batch done: `$1` the keys,
/// `$2` the type, `$3` the last key, the rows from `$4`. The resources' record of the tables
/// their rows are in is cleared (`index_tables` null: any table), so that their next update
/// looks in every table.
static REPLACE_BATCH: Statements = Statements::new(|tables: TableSet| {
    let (inserts, _) = insert_ctes(Keys::Bound, 4, tables);
    format!(
        "with state as (
             update search_index_state set reindexed_to = $3 where res_type = $2
         ), recorded as (
             update resources set index_tables = null where key = any($1)
         ){deletes}{inserts}
         select 1",
        deletes = delete_ctes("= any($1)"),
    )
});

/// An error for the log: a database message can quote the data it choked on, so of
/// those only the SQLSTATE.
fn describe(error: &StoreError) -> String {
    match error {
        StoreError::Database(sqlx_error) => match sqlx_error.as_database_error() {
            Some(db) => format!(
                "database error (SQLSTATE {})",
                db.code().unwrap_or_default()
            ),
            None => sqlx_error.to_string(),
        },
        other => other.to_string(),
    }
}

/// Values not indexed during a re-index, by parameter code: logged once per type.
type Problems = BTreeMap<&'static str, u64>;

impl Store {
    /// Re-indexes every current resource of every type, whatever definitions they were
    /// indexed with; returns when done. Reads and writes go on meanwhile.
    pub async fn reindex_all(&self) -> Result<Reindexed, StoreError> {
        self.reindex(Scope::All).await
    }

    /// Re-indexes the types whose search parameter definitions changed since they were
    /// indexed (a definition added, removed or edited; another server base), and finishes
    /// re-indexes that were interrupted. Returns when done.
    pub async fn reindex_stale(&self) -> Result<Reindexed, StoreError> {
        self.reindex(Scope::Stale).await
    }

    /// Runs [`Store::reindex_stale`] in a background task, trying again a few times when it
    /// fails.
    pub(crate) fn spawn_reindex(&self) {
        let store = self.clone();
        tokio::spawn(async move { store.reindex_in_background().await });
    }

    async fn reindex_in_background(self) {
        for attempt in 1..=ATTEMPTS {
            match self.reindex_stale().await {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(error = %describe(&error), attempt, "re-indexing failed");
                    tokio::time::sleep(RETRY_DELAY * attempt).await;
                }
            }
        }
        tracing::error!("re-indexing failed: the next start resumes it");
    }

    async fn reindex(&self, scope: Scope) -> Result<Reindexed, StoreError> {
        let params = self.param_ids().await?;
        let fingerprints = params::type_fingerprints(&self.pool, self.index.server_base()).await?;
        let mut done = Reindexed::default();
        for (rtype, fingerprint) in fingerprints {
            if self.start_reindex(rtype, &fingerprint, scope).await? {
                done.resources += self.reindex_type(rtype, &fingerprint, params).await?;
                done.types.push(rtype);
            }
        }
        Ok(done)
    }

    /// Re-indexes `rtype` batch by batch; returns the number of resources.
    async fn reindex_type(
        &self,
        rtype: ResourceType,
        fingerprint: &str,
        params: &ParamIds,
    ) -> Result<u64, StoreError> {
        let started = Instant::now();
        let mut problems = Problems::new();
        let mut resources = 0;
        while let Some(n) = self
            .reindex_batch(rtype, fingerprint, params, &mut problems)
            .await?
        {
            if resources == 0 {
                tracing::info!(resource_type = %rtype, "re-indexing");
            }
            resources += n;
        }
        for (param, count) in problems {
            tracing::warn!(resource_type = %rtype, param, count, "values not indexed");
        }
        if resources > 0 {
            tracing::info!(
                resource_type = %rtype,
                resources,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "re-indexed"
            );
        }
        Ok(resources)
    }

    /// Records that `rtype` is being re-indexed to `fingerprint`, from the start when the
    /// scope is every type or the fingerprint changed; false when there is nothing to do
    /// (indexed with these definitions, and complete).
    async fn start_reindex(
        &self,
        rtype: ResourceType,
        fingerprint: &str,
        scope: Scope,
    ) -> Result<bool, StoreError> {
        let run: bool = sqlx::query_scalar(
            "with started as (
                 insert into search_index_state (res_type, fingerprint, reindexed_to)
                 values ($1, $2, 0)
                 on conflict (res_type) do update
                 set fingerprint = excluded.fingerprint, reindexed_to = 0
                 where $3 or search_index_state.fingerprint <> excluded.fingerprint
                 returning 1
             )
             select exists (select 1 from started)
                 or exists (select 1 from search_index_state
                            where res_type = $1 and fingerprint = $2 and reindexed_to is not null)",
        )
        .bind(rtype.as_str())
        .bind(fingerprint)
        .bind(scope == Scope::All)
        .fetch_one(&self.pool)
        .await?;
        Ok(run)
    }

    /// Re-indexes the next batch of `rtype`; `None` when the type is done (or another
    /// server now re-indexes it to other definitions).
    async fn reindex_batch(
        &self,
        rtype: ResourceType,
        fingerprint: &str,
        params: &ParamIds,
        problems: &mut Problems,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let cursor: Option<Option<i64>> = sqlx::query_scalar(
            "select reindexed_to from search_index_state
             where res_type = $1 and fingerprint = $2 for update",
        )
        .bind(rtype.as_str())
        .bind(fingerprint)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(Some(cursor)) = cursor else {
            tx.commit().await?;
            conn.done();
            return Ok(None);
        };
        let batch: Vec<(i64, String)> = sqlx::query_as(
            "select key, content::text from resources
             where res_type = $1 and key > $2 and not deleted
             order by key limit $3
             for update",
        )
        .bind(rtype.as_str())
        .bind(cursor)
        .bind(BATCH_SIZE)
        .fetch_all(&mut *tx)
        .await?;
        let Some(&(last, _)) = batch.last() else {
            sqlx::query("update search_index_state set reindexed_to = null where res_type = $1")
                .bind(rtype.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            conn.done();
            return Ok(None);
        };
        let indexes = self.index_batch(&batch, problems)?;
        let mut rows = IndexRows::default();
        for (key, values, references) in &indexes {
            push_rows(&mut rows, params, rtype, *key, values);
            rows.push_references(*key, references);
        }
        let keys: Vec<i64> = batch.iter().map(|(key, _)| *key).collect();
        let query = sqlx::query(REPLACE_BATCH.get(rows.tables()))
            .bind(keys)
            .bind(rtype.as_str())
            .bind(last);
        rows.bind(query, Keys::Bound).execute(&mut *tx).await?;
        tx.commit().await?;
        conn.done();
        Ok(Some(batch.len() as u64))
    }

    /// The index values and local references of each resource of a batch (key, content),
    /// problems counted.
    fn index_batch(
        &self,
        batch: &[(i64, String)],
        problems: &mut Problems,
    ) -> Result<Vec<(i64, ResourceIndex<'static>, Vec<LocalReference>)>, StoreError> {
        let mut indexes = Vec::with_capacity(batch.len());
        for (key, content) in batch {
            // Stored content is JSON that PostgreSQL wrote; a resource that would not parse
            // keeps no rows.
            let Ok(resource) = serde_json::from_str::<Value>(content) else {
                *problems.entry("(content)").or_default() += 1;
                continue;
            };
            let values = self.index.values(&resource)?;
            for issue in &values.issues {
                *problems.entry(issue.param.code()).or_default() += 1;
            }
            indexes.push((*key, values, self.index.references(&resource)));
        }
        Ok(indexes)
    }
}
