//! A unit of work: several reads and writes in one database transaction, for the FHIR
//! `transaction` interaction (http://hl7.org/fhir/R4/http.html#transaction).
//!
//! The writes are the single interactions' own ([`Store::insert_first`],
//! [`Store::update_in`], [`Store::delete_in`]): each writes its current row, history row,
//! search index rows, claims and outbox event, so a unit that commits announces every change
//! and one that does not leaves nothing, events included (the relay only sees committed
//! outbox rows). Creates can go together ([`Transaction::create_all`]): the create's one
//! statement then writes all of them, one round trip for the lot. A [`Transaction`] dropped
//! without [`Transaction::commit`] rolls back.
//!
//! Referential integrity is checked once every write of the unit is done
//! ([`Transaction::check_integrity`], at the latest by the commit): a resource may refer to
//! one the unit creates later, and the unit may delete a resource together with the ones
//! that refer to it.

use chrono::{DateTime, Utc};
use fhir_core::reference::LocalReference;
use fhir_core::resource::stamp;
use fhir_core::search::query::TypeQuery;
use fhir_core::{Id, ResourceType, VersionId};
use serde_json::Value;
use sqlx::TransactionManager;
use sqlx::postgres::PgTransactionManager;

use crate::integrity::{check_targets, check_unreferenced, dangling, distinct_targets};
use crate::pool::Conn;
use crate::resources::{First, Method, lock_condition, read_current, write_clock};
use crate::{Claim, Conditional, Current, Store, StoreError, Stored};

/// An open database transaction on one connection. Dropped without [`Transaction::commit`],
/// it rolls back (the rollback is sent before the connection serves anyone else).
pub struct Transaction<'s> {
    store: &'s Store,
    /// `Some` until committed.
    conn: Option<Conn>,
    /// The database clock read under the write barrier when the unit began: the
    /// `lastUpdated` of every version it writes.
    at: DateTime<Utc>,
    /// The resources created or updated since the last integrity check, with their local
    /// references.
    written: Vec<(ResourceType, Id, Vec<LocalReference>)>,
    /// The resources deleted since the last integrity check.
    deleted: Vec<(ResourceType, Id)>,
    /// Whether the unit wrote any change event (its commit announces them).
    has_events: bool,
}

/// A resource for [`Transaction::create_all`].
#[derive(Debug, Clone)]
pub struct NewResource {
    pub rtype: ResourceType,
    /// New (`Id::generate`), picked by the caller so that other resources can refer to it.
    pub id: Id,
    /// The resource to store; its `id` and `meta` are stamped.
    pub resource: Value,
    /// What it claims under the uniqueness rules.
    pub claims: Vec<Claim>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("open", &self.conn.is_some())
            .finish()
    }
}

impl Store {
    /// Begins a unit of work. The search parameter ids are read first (once per store), so
    /// that no row lock is held while they load.
    pub async fn begin(&self) -> Result<Transaction<'_>, StoreError> {
        self.param_ids().await?;
        let mut conn = self.conn().await?;
        PgTransactionManager::begin(&mut conn, None).await?;
        let at = match write_clock(&mut conn).await {
            Ok(at) => at,
            Err(error) => {
                PgTransactionManager::start_rollback(&mut conn);
                return Err(error);
            }
        };
        Ok(Transaction {
            store: self,
            conn: Some(conn),
            at,
            written: Vec::new(),
            deleted: Vec::new(),
            has_events: false,
        })
    }
}

impl Transaction<'_> {
    fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Database(sqlx::Error::PoolClosed))
    }

    /// Checks referential integrity (see [`Transaction::check_integrity`]), then commits
    /// every write of the unit.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.check_integrity().await.map_err(|(_, error)| error)?;
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        PgTransactionManager::commit(&mut conn).await?;
        conn.done();
        if self.has_events {
            self.store.events_committed();
        }
        Ok(())
    }

    /// Checks the referential integrity of the writes since the last check, as the store is
    /// configured to: the local references of the resources created and updated must name
    /// current resources (which stay locked until the unit ends), then no current resource
    /// may refer to one deleted. Run after every write of the unit, so that the references
    /// between its resources count whatever the order of the writes. `Err` names the
    /// resource that fails: the one whose reference dangles
    /// ([`StoreError::DanglingReference`]), or the one deleted that is still referred to
    /// ([`StoreError::Referenced`]); none for a database error.
    pub async fn check_integrity(
        &mut self,
    ) -> Result<(), (Option<(ResourceType, Id)>, StoreError)> {
        let integrity = self.store.referential_integrity();
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        if integrity.writes {
            let written = &self.written;
            let targets = distinct_targets(written.iter().map(|(_, _, refs)| refs.as_slice()));
            let references: Vec<&LocalReference> = targets.iter().map(|(_, r)| *r).collect();
            let missing = check_targets(conn, &references)
                .await
                .map_err(|error| (None, error))?;
            if let Some(&(position, reference)) = missing.and_then(|m| targets.get(m)) {
                let resource = written
                    .get(position)
                    .map(|(rtype, id, _)| (*rtype, id.clone()));
                return Err((resource, dangling(reference)));
            }
        }
        if integrity.deletes {
            let deleted = &self.deleted;
            let targets: Vec<(ResourceType, &Id)> =
                deleted.iter().map(|(rtype, id)| (*rtype, id)).collect();
            if let Err((position, error)) = check_unreferenced(conn, &targets).await {
                let resource = match &error {
                    StoreError::Referenced { .. } => deleted.get(position).cloned(),
                    _ => None,
                };
                return Err((resource, error));
            }
        }
        // Checked: a later check (the commit's) looks at later writes only. A failed check
        // keeps them, so that a commit after it fails too.
        self.written.clear();
        self.deleted.clear();
        Ok(())
    }

    /// The current row of `type/id`, as this transaction sees it, locked until it ends
    /// (a write of it may follow).
    pub async fn read(
        &mut self,
        rtype: ResourceType,
        id: &Id,
    ) -> Result<Option<Current>, StoreError> {
        read_current(self.conn()?, rtype, id, true).await
    }

    /// The ids of at most `limit` current resources that meet `query`, as this transaction
    /// sees them (its own writes included).
    pub async fn matching(
        &mut self,
        query: &TypeQuery<'_>,
        limit: i64,
    ) -> Result<Vec<Id>, StoreError> {
        let store = self.store;
        let ids = store.matching(self.conn()?, query, limit).await?;
        ids.into_iter()
            .map(|id| {
                id.parse()
                    .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))
            })
            .collect()
    }

    /// Makes conditional writes under `condition` in other transactions wait until this one
    /// ends (see [`Store::create`]): two cannot both find no match and both create.
    pub async fn lock_condition(
        &mut self,
        rtype: ResourceType,
        condition: Conditional<'_, '_>,
    ) -> Result<(), StoreError> {
        lock_condition(self.conn()?, rtype, condition).await
    }

    /// Creates `type/id` at version 1. `id` is new (`Id::generate`): the caller picks it
    /// before the write so that other resources of the unit can refer to it.
    pub async fn create(
        &mut self,
        rtype: ResourceType,
        id: &Id,
        resource: Value,
        claims: &[Claim],
    ) -> Result<Stored, StoreError> {
        let new = NewResource {
            rtype,
            id: id.clone(),
            resource,
            claims: claims.to_vec(),
        };
        let mut stored = self
            .create_all(vec![new])
            .await
            .map_err(|(_, error)| error)?;
        stored
            .pop()
            .ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Creates every resource of `new` at version 1, in one statement (one round trip for
    /// all their rows: resources, history, search index, claims, one event each), stamped
    /// with the unit's clock. Returns them as stored, in `new`'s order; an error comes with
    /// the position in `new` of the resource it is about (the first for an error of the
    /// statement as a whole).
    pub async fn create_all(
        &mut self,
        new: Vec<NewResource>,
    ) -> Result<Vec<Stored>, (usize, StoreError)> {
        let (store, at) = (self.store, self.at);
        let mut firsts = Vec::with_capacity(new.len());
        for (position, item) in new.iter().enumerate() {
            let mut resource = item.resource.clone();
            stamp(&mut resource, &item.id, VersionId::FIRST, at);
            let content = serde_json::to_string(&resource)
                .map_err(|e| (position, sqlx::Error::Encode(e.into()).into()))?;
            let indexed = store
                .index_values(item.rtype, &resource)
                .await
                .map_err(|e| (position, e))?;
            firsts.push(First {
                rtype: item.rtype,
                id: &item.id,
                content,
                claims: &item.claims,
                indexed,
            });
        }
        let conn = self.conn().map_err(|e| (0, e))?;
        let Some(at) = store
            .insert_first(conn, Some(at), Method::Post, &mut firsts, false)
            .await?
        else {
            // Only a caller that did not generate the ids can get here.
            return Err((
                0,
                StoreError::Database(sqlx::Error::Protocol("an id to create is taken".to_owned())),
            ));
        };
        self.has_events = true;
        let mut stored = Vec::with_capacity(firsts.len());
        for first in firsts {
            let id = first.id.clone();
            self.written
                .push((first.rtype, id.clone(), first.indexed.references));
            stored.push(Stored {
                id,
                version: VersionId::FIRST,
                last_updated: at,
                content: first.content,
                created: true,
            });
        }
        Ok(stored)
    }

    /// Updates `type/id`, or creates it under that id (see [`Store::update`]); `if_match`
    /// makes it fail unless the current version is that one.
    pub async fn update(
        &mut self,
        rtype: ResourceType,
        id: &Id,
        resource: Value,
        if_match: Option<VersionId>,
        claims: &[Claim],
    ) -> Result<Stored, StoreError> {
        let (store, at) = (self.store, self.at);
        loop {
            // `None`: a concurrent create of the same id won the insert and committed; this
            // transaction's next statement sees its row, and updates it.
            if let Some((stored, references)) = store
                .update_in(
                    self.conn()?,
                    rtype,
                    id,
                    resource.clone(),
                    if_match,
                    claims,
                    Some(at),
                )
                .await?
            {
                self.written.push((rtype, id.clone(), references));
                self.has_events = true;
                return Ok(stored);
            }
        }
    }

    /// Deletes `type/id` (see [`Store::delete`]): the tombstone's version and time, or
    /// `None` when there was nothing to delete. With `if_match`, the current version must
    /// be that one (a resource that never existed has none: a conflict).
    pub async fn delete(
        &mut self,
        rtype: ResourceType,
        id: &Id,
        if_match: Option<VersionId>,
    ) -> Result<Option<(VersionId, DateTime<Utc>)>, StoreError> {
        let store = self.store;
        if let Some(expected) = if_match {
            let current = read_current(self.conn()?, rtype, id, true).await?;
            match current {
                Some(current) if current.version == expected => {}
                current => {
                    return Err(StoreError::VersionConflict {
                        current: current.map(|c| c.version),
                    });
                }
            }
        }
        let at = self.at;
        let deleted = store
            .delete_in(self.conn()?, rtype, id.as_str(), at)
            .await?;
        if deleted.is_some() {
            self.deleted.push((rtype, id.clone()));
            self.has_events = true;
        }
        Ok(deleted)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            // Queued on the connection; sent when the pool settles it (the connection is
            // dropped without `done`), before anyone else may use it.
            PgTransactionManager::start_rollback(conn);
        }
    }
}
