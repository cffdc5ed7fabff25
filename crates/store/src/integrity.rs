//! Referential integrity (docs/rest.md, "Referential integrity"): the local references a
//! write stores must name current resources, and a delete must leave no current resource
//! referring to what it deletes. Both are checked in the writing transaction, before it
//! commits.
//!
//! Why no concurrent pair of a write and a delete can commit a dangling reference: the
//! write locks each target row `for share` (and fails when the row is missing or deleted);
//! the delete's tombstone is an update of that row, which takes a `for no key update` lock,
//! and the two conflict (a `for key share` lock would not). So either the write locks the
//! target first, and the delete's update waits for the write to commit, then looks for
//! referrers in a statement of its own, which starts after that commit and sees the new
//! reference (409); or the delete updates the row first, and the write's lock waits for
//! the delete to commit, then finds the row deleted (PostgreSQL checks the locked row's
//! newest version against the query) and fails (400), the delete's own look for referrers
//! having run before the write could commit anything.

use std::collections::HashSet;
use std::sync::LazyLock;

use fhir_core::reference::LocalReference;
use fhir_core::{Id, ResourceType};
use sqlx::PgConnection;

use crate::{Store, StoreError};

/// What the store enforces; both on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferentialIntegrity {
    /// A create, update or patch whose local references name resources that do not exist
    /// (or are deleted) is refused ([`StoreError::DanglingReference`]).
    pub writes: bool,
    /// A delete of a resource that current resources refer to is refused
    /// ([`StoreError::Referenced`]).
    pub deletes: bool,
}

impl Default for ReferentialIntegrity {
    fn default() -> Self {
        ReferentialIntegrity {
            writes: true,
            deletes: true,
        }
    }
}

/// The referrers a refused delete names at most.
pub const REFERRERS_NAMED: usize = 10;
/// The referrers a refused delete counts at most (it says "more than" beyond).
pub const REFERRERS_COUNTED: usize = 100;

/// How often a single update is tried again when PostgreSQL broke a deadlock by failing it:
/// two updates of resources that refer to each other lock each other's rows (their own for
/// update, the other's for share).
pub(crate) const DEADLOCK_RETRIES: u32 = 3;

/// Whether `error` is PostgreSQL failing a transaction to break a deadlock.
pub(crate) fn is_deadlock(error: &StoreError) -> bool {
    const DEADLOCK_DETECTED: &str = "40P01";
    match error {
        StoreError::Database(error) => error
            .as_database_error()
            .is_some_and(|db| db.code().as_deref() == Some(DEADLOCK_DETECTED)),
        _ => false,
    }
}

/// Common table expressions over a CTE `refs (ord, res_type, id)`, each after a `, `:
/// `live`, the current resources among the targets, locked `for share` until the
/// transaction ends, and `dangling (ord)`, the first target that is not one (null when
/// all are).
pub(crate) const DANGLING_CTES: &str = ", live as materialized (
        select t.res_type, t.id
        from refs join resources t on t.res_type = refs.res_type and t.id = refs.id
        where not t.deleted
        for share of t
    ), dangling as materialized (
        select min(refs.ord) as ord from refs
        where not exists (select from live where live.res_type = refs.res_type
                                             and live.id = refs.id)
    )";

/// The first of the targets `$1` (types) and `$2` (ids) that is not a current resource
/// (null when all are), the others locked `for share`.
static CHECK_TARGETS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "with refs as (
             select * from unnest($1::text[], $2::text[]) with ordinality as r(res_type, id, ord)
         ){DANGLING_CTES}
         select ord from dangling"
    )
});

/// Checks that the target of each of `references` is a current resource, locking it until
/// the transaction on `conn` ends: the position in `references` of the first that is not,
/// when one is not.
pub(crate) async fn check_targets(
    conn: &mut PgConnection,
    references: &[&LocalReference],
) -> Result<Option<usize>, StoreError> {
    if references.is_empty() {
        return Ok(None);
    }
    let (types, ids): (Vec<&str>, Vec<&str>) = references
        .iter()
        .map(|r| (r.target_type.as_str(), r.target_id.as_str()))
        .unzip();
    let first: Option<i64> = sqlx::query_scalar(&CHECK_TARGETS)
        .bind(types)
        .bind(ids)
        .fetch_one(&mut *conn)
        .await?;
    Ok(first.and_then(|ord| usize::try_from(ord - 1).ok()))
}

/// The error for a reference whose target is not a current resource.
pub(crate) fn dangling(reference: &LocalReference) -> StoreError {
    StoreError::DanglingReference {
        target: reference.target(),
        expression: reference.expression.clone(),
    }
}

/// Checks that no current resource refers to any of `deleted` (just deleted in the
/// transaction on `conn`, their own reference records gone with them). `Err` with the
/// position in `deleted` of the first that is still referred to, and the error naming
/// its referrers.
pub(crate) async fn check_unreferenced(
    conn: &mut PgConnection,
    deleted: &[(ResourceType, &Id)],
) -> Result<(), (usize, StoreError)> {
    if deleted.is_empty() {
        return Ok(());
    }
    let (types, ids): (Vec<&str>, Vec<&str>) = deleted
        .iter()
        .map(|(rtype, id)| (rtype.as_str(), id.as_str()))
        .unzip();
    let limit = i64::try_from(REFERRERS_COUNTED + 1).unwrap_or(i64::MAX);
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "select d.ord, referrer.name
         from unnest($1::text[], $2::text[]) with ordinality as d(res_type, id, ord)
         cross join lateral (
             select r.res_type || '/' || r.id as name
             from resource_references x join resources r on r.key = x.res_key
             where x.target_id = d.id and x.target_type = d.res_type and not r.deleted
             order by x.res_key
             limit $3
         ) as referrer
         order by d.ord",
    )
    .bind(types)
    .bind(ids)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| (0, e.into()))?;
    let Some(&(first, _)) = rows.first() else {
        return Ok(());
    };
    let referrers: Vec<String> = rows
        .into_iter()
        .filter(|(ord, _)| *ord == first)
        .map(|(_, name)| name)
        .collect();
    let position = usize::try_from(first - 1).unwrap_or(0);
    let target = deleted
        .get(position)
        .map_or_else(String::new, |(rtype, id)| format!("{rtype}/{id}"));
    Err((
        position,
        StoreError::Referenced {
            target,
            count: referrers.len().min(REFERRERS_COUNTED),
            more: referrers.len() > REFERRERS_COUNTED,
            referrers: referrers.into_iter().take(REFERRERS_NAMED).collect(),
        },
    ))
}

/// The references of several resources, each target once (the first resource that names
/// it keeps it), with the position of the resource that names it.
pub(crate) fn distinct_targets<'r>(
    written: impl IntoIterator<Item = &'r [LocalReference]>,
) -> Vec<(usize, &'r LocalReference)> {
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    for (position, references) in written.into_iter().enumerate() {
        for reference in references {
            if seen.insert((reference.target_type, reference.target_id.as_str())) {
                targets.push((position, reference));
            }
        }
    }
    targets
}

impl Store {
    /// With the write check on, fails unless each of `references`, those of a resource just
    /// written on `tx`, names a current resource (locked until `tx` ends).
    pub(crate) async fn check_written(
        &self,
        tx: &mut PgConnection,
        references: &[LocalReference],
    ) -> Result<(), StoreError> {
        if !self.integrity.writes {
            return Ok(());
        }
        let references: Vec<&LocalReference> = references.iter().collect();
        match check_targets(tx, &references)
            .await?
            .and_then(|position| references.get(position))
        {
            Some(reference) => Err(dangling(reference)),
            None => Ok(()),
        }
    }

    /// With the delete check on, fails when a current resource refers to one of `deleted`,
    /// just deleted on `tx`.
    pub(crate) async fn check_deleted(
        &self,
        tx: &mut PgConnection,
        deleted: &[(ResourceType, &Id)],
    ) -> Result<(), StoreError> {
        if !self.integrity.deletes {
            return Ok(());
        }
        check_unreferenced(tx, deleted)
            .await
            .map_err(|(_, error)| error)
    }
}
