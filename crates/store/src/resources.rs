//! Current resources: read, create, update (and update-as-create) and delete, each one
//! transaction that also writes the history row, the search index rows of the new
//! current version (or removes them, for a delete) and the uniqueness claims.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};
use fhir_core::reference::LocalReference;
use fhir_core::resource::{format_instant, stamp};
use fhir_core::search::query::TypeQuery;
use fhir_core::{Id, ResourceType, VersionId};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};

use crate::content::resource_type_first;
use crate::integrity::{DANGLING_CTES, DEADLOCK_RETRIES, dangling, distinct_targets, is_deadlock};
use crate::outbox::new_event_id;
use crate::search_index::{
    IndexRows, Indexed, Keys, Statements, TableSet, insert_ctes, replace_ctes,
};
use crate::{Store, StoreError};

/// The current row of a resource.
#[derive(Debug, Clone)]
pub struct Current {
    pub version: VersionId,
    pub last_updated: DateTime<Utc>,
    pub deleted: bool,
    /// The resource as JSON text; `None` when deleted.
    pub content: Option<String>,
}

/// A version just written.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: Id,
    pub version: VersionId,
    pub last_updated: DateTime<Utc>,
    /// The stored resource as JSON text, with the server-owned fields stamped.
    pub content: String,
    /// True when this write brought the resource into existence (201).
    pub created: bool,
}

/// The result of a create, which may be conditional.
#[derive(Debug, Clone)]
pub enum Created {
    /// A new resource was stored.
    New(Stored),
    /// The `If-None-Exist` condition matched this resource; nothing was written.
    Existing { id: Id, current: Current },
}

/// A value the written resource claims under a uniqueness rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub rule: &'static str,
    /// The normalised value (e.g. a lower-cased email).
    pub value: String,
    /// FHIRPath of the element that holds it, for the error message.
    pub expression: String,
}

/// The condition of a conditional interaction: a search of one type
/// (http://hl7.org/fhir/R4/http.html#ccreate).
#[derive(Debug, Clone, Copy)]
pub struct Conditional<'q, 'r> {
    /// The criteria.
    pub query: &'q TypeQuery<'r>,
    /// Their canonical text (`SearchQuery::to_query_string`): writes under equal conditions
    /// take turns, so that two cannot both find no match and both create.
    pub text: &'q str,
}

/// How a version came to be, as history reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Method {
    Post,
    Put,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// A stand-in for `meta.lastUpdated` until the database clock stamps the version: the same
/// width as the real instant, which replaces it in the stored text ([`restamp`]).
pub(crate) fn placeholder_time() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The advisory lock every write transaction takes shared, before anything else, and an
/// export's start takes exclusively (`docs/bulk-export.md`, "Consistency"). A version is
/// stamped with the database clock read while the lock is held, so every version stamped
/// before the instant an export reads (its `transactionTime`, read under the exclusive lock)
/// is committed before that export's snapshot, and every version stamped after it commits
/// after the snapshot.
pub(crate) const WRITE_BARRIER: i64 = 0x6665_7272_756d_0001;

/// Begins the transaction of a plain update or delete, whose statements run with their
/// generic plans, made without sequential scans. PostgreSQL plans a prepared statement for
/// its parameters five times, then keeps its generic plan only when that is estimated no
/// dearer; an update's statement estimates its arrays of index rows at ten each without the
/// parameters and at their length with them, so under load it was planned anew at two
/// executions in three, planning taking as long as running it. Every row these statements
/// touch is found by key, through an index; a generic plan made while a table was still
/// empty would otherwise scan it whole for as long as the plan is kept.
const BEGIN_WRITE: &str = "begin; set local plan_cache_mode = force_generic_plan; \
                           set local enable_seqscan = off";

/// The database clock read under the write barrier ([`WRITE_BARRIER`], held until the
/// transaction on `conn` ends): the `lastUpdated` of the versions the transaction writes.
pub(crate) async fn write_clock(conn: &mut PgConnection) -> Result<DateTime<Utc>, StoreError> {
    // The lock is taken in the subquery, before the clock is read.
    Ok(sqlx::query_scalar(
        "select clock_timestamp() from (select pg_advisory_xact_lock_shared($1)) as barrier",
    )
    .bind(WRITE_BARRIER)
    .fetch_one(&mut *conn)
    .await?)
}

/// `content`, stamped with a [`placeholder_time`], with its `meta.lastUpdated` set to `at`:
/// `meta` leads the stamped text (after `resourceType` and `id`), so its `lastUpdated` is the
/// first, and the instant text has the same width.
fn restamp(content: &mut String, at: DateTime<Utc>) {
    const KEY: &str = "\"lastUpdated\":\"";
    let to = format_instant(at);
    if let Some(start) = content.find(KEY).map(|i| i + KEY.len())
        && content
            .get(start..start + to.len())
            .is_some_and(|old| old.ends_with('Z'))
    {
        content.replace_range(start..start + to.len(), &to);
    }
}

/// The `lastUpdated` of a version that follows one stamped `previous`: the transaction's
/// clock `at`, unless that is not later. A write reads its clock before it waits for the row
/// lock, so a concurrent write that took the lock first can have stamped a later instant;
/// stamped 1 µs after it instead, the versions of a resource stay in time order, and a
/// client that follows `_history?_since=` does not miss the newer one. The write barrier is
/// still held, so an export's `transactionTime` cannot fall between the two instants.
fn after_version(at: DateTime<Utc>, previous: DateTime<Utc>) -> DateTime<Utc> {
    at.max(previous + chrono::Duration::microseconds(1))
}

/// Version 1 of a resource, to insert with [`Store::insert_first`].
pub(crate) struct First<'a> {
    pub(crate) rtype: ResourceType,
    pub(crate) id: &'a Id,
    /// The resource as JSON text, stamped with a [`placeholder_time`] or the transaction's
    /// clock; [`Store::insert_first`] sets the version's `lastUpdated` into it.
    pub(crate) content: String,
    pub(crate) claims: &'a [Claim],
    pub(crate) indexed: Indexed<'a>,
}

/// What one insert of versions 1 did.
struct Inserted {
    /// Their `lastUpdated`.
    at: DateTime<Utc>,
    /// The positions (from 1) of those inserted: not those whose id was taken.
    positions: Vec<i64>,
}

/// What [`Store::create_new_all`] did with one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewOutcome {
    /// Written as version 1, with its `create` event.
    Written,
    /// A resource with its id exists or existed (or the id came earlier in the same
    /// call): nothing written.
    IdTaken,
    /// One of its local references names no current resource: nothing written.
    DanglingReference,
}

/// The first claim that a resource of `new` makes after another one of them made it, with
/// the resource's position: the statement would refuse it without saying which.
fn claimed_twice(new: &[First<'_>]) -> Option<(usize, StoreError)> {
    let mut claimants: HashMap<(&str, &str), usize> = HashMap::new();
    for (position, first) in new.iter().enumerate() {
        for claim in first.claims {
            let claimant = *claimants
                .entry((claim.rule, claim.value.as_str()))
                .or_insert(position);
            if claimant != position {
                return Some((
                    position,
                    StoreError::Duplicate {
                        rule: claim.rule,
                        expression: claim.expression.clone(),
                    },
                ));
            }
        }
    }
    None
}

/// Inserts version 1 of each resource of the arrays `$3` (types), `$4` (ids) and `$5`
/// (contents) unless its id exists, with its history row (method `$2`), search index rows
/// and reference records (from `$12`, by position: [`Keys::Placed`]; for one resource,
/// [`Keys::Cur`]; the tables each resource has rows in, `resources.index_tables`, in the
/// array after them), claims (`$7`-`$9`, by position) and `create` event (ids `$6`), in the
/// arrays' order. Their `lastUpdated` is `$1` (the clock a transaction read under the write
/// barrier) or, when null, the database clock read under the write barrier (taken here, so
/// that a create is one statement); it is set into `meta.lastUpdated` of each content, the
/// `last_updated` columns and the events, and returned. The resources named by `$10` (types)
/// and `$11` (ids), but those the statement inserts, must be current (their rows are locked
/// `for share`, see [`crate::integrity`]): when one is not, nothing is inserted and its
/// position is returned.
///
/// One statement per [`Inserts`] shape: the check of the targets and the insert of the
/// claims are left out when there are none, since each part costs the statement its start
/// and its end even with no rows (a Patient's create without them: about 8 % less of
/// PostgreSQL's time).
static INSERT_FIRST: [Statements; 8] = [
    Statements::new(insert_first::<false, false, false>),
    Statements::new(insert_first::<false, false, true>),
    Statements::new(insert_first::<false, true, false>),
    Statements::new(insert_first::<false, true, true>),
    Statements::new(insert_first::<true, false, false>),
    Statements::new(insert_first::<true, false, true>),
    Statements::new(insert_first::<true, true, false>),
    Statements::new(insert_first::<true, true, true>),
];

/// What an insert of [`INSERT_FIRST`] holds besides its resources and their index rows.
#[derive(Debug, Clone, Copy)]
struct Inserts {
    /// Several resources ([`Keys::Placed`]) or one ([`Keys::Cur`]: its index rows take its
    /// key from `cur`, without joining each table's rows to the resources by position).
    several: bool,
    /// Targets to check (`$10`, `$11`).
    targets: bool,
    /// Claims (`$7`-`$9`).
    claims: bool,
}

impl Inserts {
    fn keys(self) -> Keys {
        if self.several {
            Keys::Placed
        } else {
            Keys::Cur
        }
    }

    fn statement(self, tables: TableSet) -> &'static str {
        let shape = usize::from(self.several) << 2
            | usize::from(self.targets) << 1
            | usize::from(self.claims);
        INSERT_FIRST[shape].get(tables)
    }
}

fn insert_first<const SEVERAL: bool, const TARGETS: bool, const CLAIMS: bool>(
    tables: TableSet,
) -> String {
    let shape = Inserts {
        several: SEVERAL,
        targets: TARGETS,
        claims: CLAIMS,
    };
    let (index, masks) = insert_ctes(shape.keys(), 12, tables);
    let (targets, checked, dangling) = if TARGETS {
        (
            format!(
                ", refs as (
             select * from unnest($10::text[], $11::text[]) with ordinality as r(res_type, id, ord)
             where not exists (select from new where new.res_type = r.res_type
                                                 and new.id = r.id)
         ){DANGLING_CTES}"
            ),
            "where (select ord from dangling) is null",
            "(select ord from dangling)",
        )
    } else {
        (String::new(), "", "null::int8")
    };
    let claims = if CLAIMS {
        ", claims as (
             insert into unique_claims (rule, value, res_type, res_id)
             select c.rule, c.value, placed.res_type, placed.id
             from placed join unnest($7::int8[], $8::text[], $9::text[]) as c(pos, rule, value)
                  using (pos)
         )"
    } else {
        ""
    };
    format!(
        "with clock as materialized (
             select coalesce($1::timestamptz, clock_timestamp()) as at
             from (select pg_advisory_xact_lock_shared({WRITE_BARRIER})) as barrier
         ), new as (
             select * from unnest($3::text[], $4::text[], $5::text[], $6::uuid[],
                                  ${masks}::int4[])
                 with ordinality as new(res_type, id, content, event_id, index_tables, pos)
         ){targets}, cur as (
             insert into resources (res_type, id, version, last_updated, index_tables, content)
             select new.res_type, new.id, 1, clock.at, new.index_tables, jsonb_set(new.content::jsonb,
                 '{{meta,lastUpdated}}',
                 to_jsonb(to_char(clock.at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')))
             from new, clock
             {checked}
             order by new.pos
             on conflict (res_type, id) do nothing
             returning key, res_type, id, content, last_updated
         ), placed as (
             select new.pos, new.event_id, cur.key, cur.res_type, cur.id, cur.content,
                    cur.last_updated
             from cur join new on new.res_type = cur.res_type and new.id = cur.id
         ){index}, hist as (
             insert into resource_history (res_type, id, version, last_updated, method, status, content)
             select res_type, id, 1, last_updated, $2, 201, content from placed order by pos
         ){claims}, event as (
             insert into outbox (event_id, routing_key, res_key, res_type, res_id, version)
             select event_id, res_type || '.create', key, res_type, id, 1
             from placed
             order by pos
         )
         select (select count(*) from cur), (select at from clock), {dangling},
                (select array_agg(pos) from placed)"
    )
}

/// Replaces the current version of resource `$1` by a new one, with its history row,
/// search index rows (made those from `$8`, see [`replace_ctes`]; the tables they are in
/// recorded in `resources.index_tables`, the placeholder after the claims), claims (the
/// rules and values of the two arrays after the index rows' ones) and event. Returns how many
/// of the claims the resource holds: a claim another resource holds is left to it, so fewer
/// than were bound means a duplicate. One text per set of tables to replace rows in: those
/// of the new version and those the current one recorded; tables outside it are left alone.
static UPDATE_CURRENT: Statements =
    Statements::new(|replaced: TableSet| update_current(replaced, TableSet::NONE));

/// [`UPDATE_CURRENT`] of a resource whose current version recorded no tables
/// (`index_tables` null): rows are replaced in the new version's tables and deleted from
/// every other.
static UPDATE_UNRECORDED: Statements =
    Statements::new(|replaced: TableSet| update_current(replaced, TableSet::ALL));

fn update_current(replaced: TableSet, cleared: TableSet) -> String {
    let (index, next) = replace_ctes(8, replaced, cleared);
    let (rules, values, tables) = (next, next + 1, next + 2);
    format!(
        "with cur as (
             update resources
             set version = $2, last_updated = $3, deleted = false, content = $4::jsonb,
                 index_tables = ${tables}::int4
             where key = $1
             returning key, res_type, id, content
         ){index}, hist as (
             insert into resource_history (res_type, id, version, last_updated, method, status, content)
             select res_type, id, $2, $3, 'PUT', $5, content from cur
         ), event as (
             insert into outbox (event_id, routing_key, res_key, res_type, res_id, version)
             select $6::uuid, res_type || '.' || $7::text, key, res_type, id, $2
             from cur
         ), claims_gone as (
             delete from unique_claims u using cur
             where u.res_type = cur.res_type and u.res_id = cur.id
             and (u.rule, u.value) not in
                 (select * from unnest(${rules}::text[], ${values}::text[]))
         ), claimed as (
             insert into unique_claims (rule, value, res_type, res_id)
             select c.rule, c.value, cur.res_type, cur.id
             from cur, unnest(${rules}::text[], ${values}::text[]) as c(rule, value)
             on conflict (rule, value) do update set rule = excluded.rule
             where unique_claims.res_type = excluded.res_type
               and unique_claims.res_id = excluded.res_id
             returning 1
         )
         select (select count(*) from claimed) as claimed"
    )
}

/// Removes the search index rows of resource `$1` from the tables it recorded (one text
/// per set). The record stays as it was: it may name tables without rows, never the other
/// way round, and a resource brought back replaces rows in those tables too.
static DELETE_INDEX: Statements = Statements::new(|recorded: TableSet| {
    let (deletes, _) = replace_ctes(2, TableSet::NONE, recorded);
    format!("with {} select 1", deletes.trim_start_matches(", "))
});

/// Runs a write `attempt` until it gives its result: again when it gives `None` (an
/// update-as-create lost the insert race to a concurrent one of the same new id: the next
/// attempt finds that row and updates it), and up to [`DEADLOCK_RETRIES`] more times when
/// PostgreSQL failed it to break a deadlock.
async fn retrying<T, F>(mut attempt: impl FnMut() -> F) -> Result<T, StoreError>
where
    F: Future<Output = Result<Option<T>, StoreError>>,
{
    let mut deadlocks = 0;
    loop {
        match attempt().await {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(error) if is_deadlock(&error) && deadlocks < DEADLOCK_RETRIES => deadlocks += 1,
            Err(error) => return Err(error),
        }
    }
}

const UNIQUE_VIOLATION: &str = "23505";

fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some(UNIQUE_VIOLATION) && db.constraint() == Some(constraint)
        }
        _ => false,
    }
}

impl Store {
    /// The current row of `type/id`, if it ever existed, read with a statement of its own.
    pub(crate) async fn read_alone(
        &self,
        rtype: ResourceType,
        id: &Id,
    ) -> Result<Option<Current>, StoreError> {
        let mut conn = self.conn().await?;
        let current = read_current(&mut conn, rtype, id, false).await?;
        conn.done();
        Ok(current)
    }

    /// Creates a resource with a server-assigned id. With `condition` (If-None-Exist), an
    /// existing match is returned instead; the check and the insert are serialised per
    /// condition so two concurrent conditional creates cannot both insert. With the write
    /// check on, the insert statement itself checks the local references
    /// ([`StoreError::DanglingReference`]): a create stays one round trip.
    pub async fn create(
        &self,
        rtype: ResourceType,
        mut resource: Value,
        claims: &[Claim],
        condition: Option<Conditional<'_, '_>>,
    ) -> Result<Created, StoreError> {
        let id = Id::generate();
        stamp(&mut resource, &id, VersionId::FIRST, placeholder_time());
        let content =
            serde_json::to_string(&resource).map_err(|e| sqlx::Error::Encode(e.into()))?;
        let indexed = self.index_values(rtype, &resource).await?;
        let first = First {
            rtype,
            id: &id,
            content,
            claims,
            indexed,
        };

        let Some(condition) = condition else {
            let mut conn = self.conn().await?;
            let stored = self.insert_created(&mut conn, first).await?;
            conn.done();
            self.events_committed();
            return Ok(Created::New(stored));
        };

        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        write_clock(&mut tx).await?;
        lock_condition(&mut tx, rtype, condition).await?;
        let matches = self.matching(&mut tx, condition.query, 2).await?;
        match matches.as_slice() {
            [] => {
                let stored = self.insert_created(&mut tx, first).await?;
                tx.commit().await?;
                conn.done();
                self.events_committed();
                Ok(Created::New(stored))
            }
            [existing] => {
                tx.commit().await?;
                conn.done();
                let existing: Id = existing
                    .parse()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                let current = self
                    .read(rtype, &existing)
                    .await?
                    .ok_or(StoreError::MultipleMatches)?;
                Ok(Created::Existing {
                    id: existing,
                    current,
                })
            }
            _ => Err(StoreError::MultipleMatches),
        }
    }

    /// Creates each `type/id` of `resources` (client-assigned ids, as an update-as-create
    /// does) unless a resource with that id exists or ever existed, or came earlier in
    /// `resources`: one statement (and one commit) for all, checking their references when
    /// the store checks writes; what it did with each, in their order. A resource whose
    /// references dangle is left out and the others are written by the statement run
    /// again. Of concurrent calls for one id, one writes and the others wait for its commit
    /// and find it taken.
    pub async fn create_new_all(
        &self,
        rtype: ResourceType,
        mut resources: Vec<(Id, Value)>,
    ) -> Result<Vec<NewOutcome>, StoreError> {
        let mut outcomes = vec![NewOutcome::IdTaken; resources.len()];
        let mut seen = HashSet::new();
        let mut firsts = Vec::with_capacity(resources.len());
        // The position in `resources` of each of `firsts`.
        let mut places = Vec::with_capacity(resources.len());
        // Inserted in id order: concurrent calls with ids in common wait for each other in
        // one order, never in a circle.
        let mut in_order: Vec<(usize, &mut (Id, Value))> =
            resources.iter_mut().enumerate().collect();
        in_order.sort_by(|a, b| a.1.0.as_str().cmp(b.1.0.as_str()).then(a.0.cmp(&b.0)));
        for (place, (id, resource)) in in_order {
            if !seen.insert(id.as_str()) {
                continue;
            }
            stamp(resource, id, VersionId::FIRST, placeholder_time());
            let content =
                serde_json::to_string(resource).map_err(|e| sqlx::Error::Encode(e.into()))?;
            firsts.push(First {
                rtype,
                id,
                content,
                claims: &[],
                indexed: self.index_values(rtype, resource).await?,
            });
            places.push(place);
        }
        let mut conn = self.conn().await?;
        while !firsts.is_empty() {
            let check = self.integrity.writes;
            match self
                .insert_rows(&mut conn, None, Method::Put, &firsts, check)
                .await
            {
                Ok(inserted) => {
                    for position in inserted.positions {
                        if let Some(&place) = usize::try_from(position - 1)
                            .ok()
                            .and_then(|p| places.get(p))
                        {
                            outcomes[place] = NewOutcome::Written;
                        }
                    }
                    break;
                }
                Err((position, StoreError::DanglingReference { .. }))
                    if position < firsts.len() =>
                {
                    outcomes[places[position]] = NewOutcome::DanglingReference;
                    firsts.remove(position);
                    places.remove(position);
                }
                Err((_, error)) => return Err(error),
            }
        }
        conn.done();
        if outcomes.contains(&NewOutcome::Written) {
            self.events_committed();
        }
        Ok(outcomes)
    }

    /// Inserts version 1 of each of `new`, with their history rows, search index rows,
    /// reference records, claims and `create` events, in one statement and one round trip.
    /// The version's `lastUpdated` is `at` (a transaction's clock) or, when `None`, the
    /// database clock read under the write barrier; it replaces the placeholder in each
    /// content and is returned. With `check_references`, the same statement checks that
    /// their local references name current resources (or resources of `new`), and writes
    /// nothing when one does not ([`StoreError::DanglingReference`]). `None` when one of the
    /// ids exists: that resource is not written (the others are, so a caller of several rolls
    /// back). An error comes with the position in `new` of the resource it is about (the
    /// first for an error of the statement as a whole).
    pub(crate) async fn insert_first(
        &self,
        conn: &mut PgConnection,
        at: Option<DateTime<Utc>>,
        method: Method,
        new: &mut [First<'_>],
        check_references: bool,
    ) -> Result<Option<DateTime<Utc>>, (usize, StoreError)> {
        let inserted = self
            .insert_rows(conn, at, method, new, check_references)
            .await?;
        if inserted.positions.len() != new.len() {
            return Ok(None);
        }
        for first in new.iter_mut() {
            restamp(&mut first.content, inserted.at);
        }
        Ok(Some(inserted.at))
    }

    /// The statement of [`Store::insert_first`]: which of `new` it inserted (none when a
    /// reference dangles, which is an error).
    async fn insert_rows(
        &self,
        conn: &mut PgConnection,
        at: Option<DateTime<Utc>>,
        method: Method,
        new: &[First<'_>],
        check_references: bool,
    ) -> Result<Inserted, (usize, StoreError)> {
        if let Some(duplicate) = claimed_twice(new) {
            return Err(duplicate);
        }
        let targets: Vec<(usize, &LocalReference)> = if check_references {
            distinct_targets(new.iter().map(|f| f.indexed.references.as_slice()))
        } else {
            Vec::new()
        };
        let result = {
            let mut rows = IndexRows::default();
            let (mut claimants, mut rules, mut values) = (Vec::new(), Vec::new(), Vec::new());
            // Positions count from 1, as `with ordinality` does.
            for (position, first) in (1_i64..).zip(new.iter()) {
                first.indexed.push_placed(&mut rows, position);
                for claim in first.claims {
                    claimants.push(position);
                    rules.push(claim.rule);
                    values.push(claim.value.as_str());
                }
            }
            // The tables each resource has rows in (for one, those of the statement).
            let masks: Vec<i32> = match new {
                [_] => vec![rows.tables().bits()],
                _ => new
                    .iter()
                    .map(|f| f.indexed.rows().tables().bits())
                    .collect(),
            };
            let types: Vec<&str> = new.iter().map(|f| f.rtype.as_str()).collect();
            let ids: Vec<&str> = new.iter().map(|f| f.id.as_str()).collect();
            let contents: Vec<&str> = new.iter().map(|f| f.content.as_str()).collect();
            let events: Vec<String> = new.iter().map(|_| new_event_id()).collect();
            let (target_types, target_ids): (Vec<&str>, Vec<&str>) = targets
                .iter()
                .map(|(_, r)| (r.target_type.as_str(), r.target_id.as_str()))
                .unzip();
            let shape = Inserts {
                several: new.len() > 1,
                targets: !targets.is_empty(),
                claims: !claimants.is_empty(),
            };
            let query = sqlx::query(shape.statement(rows.tables()))
                .bind(at)
                .bind(method.as_str())
                .bind(types)
                .bind(ids)
                .bind(contents)
                .bind(events)
                .bind(claimants)
                .bind(rules)
                .bind(values)
                .bind(target_types)
                .bind(target_ids);
            rows.bind(query, shape.keys())
                .bind(masks)
                .fetch_one(&mut *conn)
                .await
        };
        let missing = result.as_ref().ok().and_then(|row| {
            let ord: Option<i64> = row.get(2);
            targets.get(usize::try_from(ord? - 1).ok()?)
        });
        if let Some(&(position, reference)) = missing {
            return Err((position, dangling(reference)));
        }
        match result {
            Ok(row) => Ok(Inserted {
                at: row.get(1),
                positions: row.get::<Option<Vec<i64>>, _>(3).unwrap_or_default(),
            }),
            Err(e) if is_unique_violation(&e, "unique_claims_pkey") => {
                let claims: Vec<&[Claim]> = new.iter().map(|f| f.claims).collect();
                Err(self.duplicate_among(&claims).await)
            }
            Err(e) => Err((0, e.into())),
        }
    }

    /// [`Store::insert_first`] of one resource.
    /// Inserts `first`, a resource with a fresh server-assigned id, as its version 1
    /// (`POST`, its references checked when the store checks writes).
    async fn insert_created(
        &self,
        conn: &mut PgConnection,
        mut first: First<'_>,
    ) -> Result<Stored, StoreError> {
        let at = self
            .insert_one(conn, None, Method::Post, &mut first, self.integrity.writes)
            .await?
            .ok_or_else(|| {
                StoreError::Database(sqlx::Error::Protocol("a fresh UUID collided".into()))
            })?;
        Ok(Stored {
            id: first.id.clone(),
            version: VersionId::FIRST,
            last_updated: at,
            content: first.content,
            created: true,
        })
    }

    async fn insert_one(
        &self,
        conn: &mut PgConnection,
        at: Option<DateTime<Utc>>,
        method: Method,
        first: &mut First<'_>,
        check_references: bool,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.insert_first(
            conn,
            at,
            method,
            std::slice::from_mut(first),
            check_references,
        )
        .await
        .map_err(|(_, error)| error)
    }

    /// Updates `type/id`, or creates it with that id when it does not exist (or was
    /// deleted). `if_match` makes it fail unless the current version is that one.
    /// The row lock taken first serialises concurrent updates: none is lost. With the write
    /// check on, the local references of the version written are checked before the commit
    /// (one more statement when it has any; [`StoreError::DanglingReference`]). Two updates
    /// of resources that refer to each other can deadlock on those locks; PostgreSQL fails
    /// one, which is tried again (a few times).
    pub async fn update(
        &self,
        rtype: ResourceType,
        id: &Id,
        resource: Value,
        if_match: Option<VersionId>,
        claims: &[Claim],
    ) -> Result<Stored, StoreError> {
        // The parameter ids are read before any row lock is taken (once per store).
        self.param_ids().await?;
        let resource = &resource;
        retrying(|| async move {
            let mut conn = self.conn().await?;
            let mut tx = conn.begin_with(BEGIN_WRITE).await?;
            let Some((stored, references)) = self
                .update_in(&mut tx, rtype, id, resource.clone(), if_match, claims, None)
                .await?
            else {
                return Ok(None);
            };
            self.check_written(&mut tx, &references).await?;
            tx.commit().await?;
            conn.done();
            self.events_committed();
            Ok(Some(stored))
        })
        .await
    }

    /// Conditional update (`PUT [type]?search`, http://hl7.org/fhir/R4/http.html#cond-update):
    /// no match creates the resource (under the body's id, or a new one), one match is
    /// updated (the body's id, when given, must be its id), several are
    /// [`StoreError::MultipleMatches`]. Conditional writes under equal conditions take turns.
    pub async fn update_conditional(
        &self,
        rtype: ResourceType,
        condition: Conditional<'_, '_>,
        resource: Value,
        body_id: Option<Id>,
        if_match: Option<VersionId>,
        claims: &[Claim],
    ) -> Result<Stored, StoreError> {
        self.param_ids().await?;
        let (resource, body_id) = (&resource, &body_id);
        retrying(|| async move {
            let mut conn = self.conn().await?;
            let mut tx = conn.begin().await?;
            let at = write_clock(&mut tx).await?;
            lock_condition(&mut tx, rtype, condition).await?;
            let matches = self.matching(&mut tx, condition.query, 2).await?;
            let id = match (matches.as_slice(), body_id) {
                ([], Some(id)) => id.clone(),
                ([], None) => Id::generate(),
                ([found], Some(id)) if found != id.as_str() => {
                    return Err(StoreError::ConditionalIdMismatch);
                }
                ([found], _) => found
                    .parse()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                _ => return Err(StoreError::MultipleMatches),
            };
            let Some((stored, references)) = self
                .update_in(
                    &mut tx,
                    rtype,
                    &id,
                    resource.clone(),
                    if_match,
                    claims,
                    Some(at),
                )
                .await?
            else {
                return Ok(None);
            };
            self.check_written(&mut tx, &references).await?;
            tx.commit().await?;
            conn.done();
            self.events_committed();
            Ok(Some(stored))
        })
        .await
    }

    /// The update of [`Store::update`] in `tx`, with the local references of the version
    /// written (for the caller to check); `None` when a concurrent create of the same id won
    /// the insert (the caller retries in a new transaction).
    #[expect(
        clippy::too_many_arguments,
        reason = "an update, and the clock of its transaction"
    )]
    pub(crate) async fn update_in(
        &self,
        tx: &mut PgConnection,
        rtype: ResourceType,
        id: &Id,
        mut resource: Value,
        if_match: Option<VersionId>,
        claims: &[Claim],
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<(Stored, Vec<LocalReference>)>, StoreError> {
        // Without the transaction's clock, the clock is read under the write barrier in the
        // statement that locks the row (or, for a new resource, in the insert's).
        let current = sqlx::query(
            "select key, version, deleted, last_updated, index_tables,
                    case when $3 then (select clock_timestamp()
                        from (select pg_advisory_xact_lock_shared($4)) as barrier) end as clock
             from resources where res_type = $1 and id = $2 for update",
        )
        .bind(rtype.as_str())
        .bind(id.as_str())
        .bind(at.is_none())
        .bind(WRITE_BARRIER)
        .fetch_optional(&mut *tx)
        .await?;

        let Some(current) = current else {
            if if_match.is_some() {
                return Err(StoreError::VersionConflict { current: None });
            }
            stamp(
                &mut resource,
                id,
                VersionId::FIRST,
                at.unwrap_or_else(placeholder_time),
            );
            let content =
                serde_json::to_string(&resource).map_err(|e| sqlx::Error::Encode(e.into()))?;
            let indexed = self.index_values(rtype, &resource).await?;
            let mut first = First {
                rtype,
                id,
                content,
                claims,
                indexed,
            };
            let inserted = self
                .insert_one(tx, at, Method::Put, &mut first, false)
                .await?;
            return Ok(inserted.map(|at| {
                let stored = Stored {
                    id: id.clone(),
                    version: VersionId::FIRST,
                    last_updated: at,
                    content: first.content,
                    created: true,
                };
                (stored, first.indexed.references)
            }));
        };

        let key: i64 = current.get("key");
        let version = VersionId::new(current.get("version"));
        let was_deleted: bool = current.get("deleted");
        if if_match.is_some_and(|expected| expected != version) {
            return Err(StoreError::VersionConflict {
                current: Some(version),
            });
        }
        let clock = at
            .or_else(|| current.get("clock"))
            .ok_or_else(|| StoreError::Database(sqlx::Error::Protocol("no clock read".into())))?;
        let at = after_version(clock, current.get("last_updated"));
        let next = version.next();
        stamp(&mut resource, id, next, at);
        let content =
            serde_json::to_string(&resource).map_err(|e| sqlx::Error::Encode(e.into()))?;
        let status: i16 = if was_deleted { 201 } else { 200 };
        // Bringing a deleted resource back is a create for consumers, as it is for HTTP.
        let action = if was_deleted { "create" } else { "update" };
        // The row lock is held: no re-index batch can write this resource's index rows
        // until the transaction ends, and this statement sees every committed one.
        let indexed = self.index_values(rtype, &resource).await?;
        let rows = indexed.rows();
        let written = rows.tables();
        let (statement, replaced) = match current.get::<Option<i32>, _>("index_tables") {
            Some(bits) => (
                &UPDATE_CURRENT,
                written.union(TableSet::recorded(Some(bits))),
            ),
            None => (&UPDATE_UNRECORDED, written),
        };
        let query = sqlx::query(statement.get(replaced))
            .bind(key)
            .bind(next.get())
            .bind(at)
            .bind(&content)
            .bind(status)
            .bind(new_event_id())
            .bind(action);
        let (rules, values): (Vec<&str>, Vec<&str>) =
            claims.iter().map(|c| (c.rule, c.value.as_str())).unzip();
        let held = rows
            .bind_tables(query, Keys::Cur, replaced)
            .bind(&rules)
            .bind(&values)
            .bind(written.bits())
            .fetch_one(&mut *tx)
            .await;
        match held {
            Ok(row) if row.get::<i64, _>("claimed") == claims.len() as i64 => {}
            Ok(_) => return Err(self.duplicate(claims).await),
            Err(e) if is_unique_violation(&e, "unique_claims_pkey") => {
                return Err(self.duplicate(claims).await);
            }
            Err(e) => return Err(e.into()),
        }
        let stored = Stored {
            id: id.clone(),
            version: next,
            last_updated: at,
            content,
            created: was_deleted,
        };
        Ok(Some((stored, indexed.references)))
    }

    /// Deletes `type/id`: a tombstone version, its `delete` event, and the removal of its
    /// search index rows and reference record. Returns the tombstone's version and time, or
    /// `None` when there was nothing to delete (unknown or already deleted). With the delete
    /// check on, a resource that current resources refer to is not deleted
    /// ([`StoreError::Referenced`]).
    pub async fn delete(
        &self,
        rtype: ResourceType,
        id: &Id,
    ) -> Result<Option<(VersionId, DateTime<Utc>)>, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin_with(BEGIN_WRITE).await?;
        let at = write_clock(&mut tx).await?;
        let deleted = self.delete_in(&mut tx, rtype, id.as_str(), at).await?;
        if deleted.is_some() {
            self.check_deleted(&mut tx, &[(rtype, id)]).await?;
        }
        tx.commit().await?;
        conn.done();
        if deleted.is_some() {
            self.events_committed();
        }
        Ok(deleted)
    }

    /// Conditional delete (`DELETE [type]?search`,
    /// http://hl7.org/fhir/R4/http.html#cdelete): deletes the matches in one transaction and
    /// returns their ids. More than `max` matches is [`StoreError::MultipleMatches`] and
    /// deletes nothing (`max` 1: single deletes only); so is a match that current resources
    /// refer to, with the delete check on ([`StoreError::Referenced`]).
    pub async fn delete_conditional(
        &self,
        condition: Conditional<'_, '_>,
        max: usize,
    ) -> Result<Vec<Id>, StoreError> {
        let rtype = condition.query.resource_type;
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let at = write_clock(&mut tx).await?;
        lock_condition(&mut tx, rtype, condition).await?;
        let limit = i64::try_from(max).unwrap_or(i64::MAX).saturating_add(1);
        let matches = self.matching(&mut tx, condition.query, limit).await?;
        if matches.len() > max {
            return Err(StoreError::MultipleMatches);
        }
        let mut deleted: Vec<Id> = Vec::with_capacity(matches.len());
        for id in matches {
            if self.delete_in(&mut tx, rtype, &id, at).await?.is_some() {
                deleted.push(id.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?);
            }
        }
        let targets: Vec<(ResourceType, &Id)> = deleted.iter().map(|id| (rtype, id)).collect();
        self.check_deleted(&mut tx, &targets).await?;
        tx.commit().await?;
        conn.done();
        if !deleted.is_empty() {
            self.events_committed();
        }
        Ok(deleted)
    }

    /// The delete of [`Store::delete`] in `tx`.
    pub(crate) async fn delete_in(
        &self,
        tx: &mut PgConnection,
        rtype: ResourceType,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(VersionId, DateTime<Utc>)>, StoreError> {
        let row = sqlx::query(
            "with cur as (
                 update resources
                 set version = version + 1, deleted = true, content = null,
                     last_updated = greatest($3, last_updated + interval '1 microsecond')
                 where res_type = $1 and id = $2 and not deleted
                 returning key, version, last_updated, index_tables
             ), hist as (
                 insert into resource_history (res_type, id, version, last_updated, method, status)
                 select $1, $2, version, last_updated, 'DELETE', 204 from cur
             ), event as (
                 insert into outbox (event_id, routing_key, res_key, res_type, res_id, version)
                 select $4::uuid, $1::text || '.delete', key, $1, $2, version
                 from cur
             ), claims_gone as (
                 delete from unique_claims u using cur
                 where u.res_type = $1 and u.res_id = $2
             )
             select key, version, last_updated, index_tables from cur",
        )
        .bind(rtype.as_str())
        .bind(id)
        .bind(at)
        .bind(new_event_id())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let at: DateTime<Utc> = row.get("last_updated");
        // A statement of its own, after the row lock was taken: it sees the rows a
        // re-index batch committed while this delete waited for that lock.
        let recorded = TableSet::recorded(row.get("index_tables"));
        if recorded != TableSet::NONE {
            sqlx::query(DELETE_INDEX.get(recorded))
                .bind(row.get::<i64, _>("key"))
                .execute(&mut *tx)
                .await?;
        }
        Ok(Some((VersionId::new(row.get("version")), at)))
    }

    /// Names the first claim that another resource holds (for the 409 message).
    async fn duplicate(&self, claims: &[Claim]) -> StoreError {
        self.duplicate_among(&[claims]).await.1
    }

    /// Names the first claim of several resources' `claims` that another resource holds,
    /// with the position of the resource that makes it.
    async fn duplicate_among(&self, claims: &[&[Claim]]) -> (usize, StoreError) {
        let (rules, values): (Vec<&str>, Vec<&str>) = claims
            .iter()
            .flat_map(|claims| claims.iter())
            .map(|c| (c.rule, c.value.as_str()))
            .unzip();
        let held: Vec<(String, String)> = sqlx::query_as(
            "select rule, value from unique_claims
             where (rule, value) in (select * from unnest($1::text[], $2::text[]))",
        )
        .bind(&rules)
        .bind(&values)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default();
        let mut claimed = claims
            .iter()
            .enumerate()
            .flat_map(|(position, claims)| claims.iter().map(move |claim| (position, claim)));
        let first = claimed
            .clone()
            .find(|(_, c)| held.iter().any(|(r, v)| r == c.rule && v == &c.value))
            .or_else(|| claimed.next());
        match first {
            Some((position, claim)) => (
                position,
                StoreError::Duplicate {
                    rule: claim.rule,
                    expression: claim.expression.clone(),
                },
            ),
            None => (
                0,
                StoreError::Duplicate {
                    rule: "",
                    expression: String::new(),
                },
            ),
        }
    }
}

/// The current row of `type/id` on `conn`, if it ever existed; with `for_update`, locked
/// until the transaction ends.
pub(crate) async fn read_current(
    conn: &mut PgConnection,
    rtype: ResourceType,
    id: &Id,
    for_update: bool,
) -> Result<Option<Current>, StoreError> {
    const READ: &str = "select version, last_updated, deleted, content::text as content
                        from resources where res_type = $1 and id = $2";
    const READ_FOR_UPDATE: &str = "select version, last_updated, deleted, content::text as content
                                   from resources where res_type = $1 and id = $2 for update";
    let row = sqlx::query(if for_update { READ_FOR_UPDATE } else { READ })
        .bind(rtype.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(current_from_row))
}

/// A [`Current`] from a row with `version`, `last_updated`, `deleted` and `content` (text).
pub(crate) fn current_from_row(row: &PgRow) -> Current {
    Current {
        version: VersionId::new(row.get("version")),
        last_updated: row.get("last_updated"),
        deleted: row.get("deleted"),
        content: row
            .get::<Option<String>, _>("content")
            .map(resource_type_first),
    }
}

/// Makes conditional writes under the same condition take turns (until `tx` ends), so that
/// two cannot both find no match and both create.
pub(crate) async fn lock_condition(
    tx: &mut PgConnection,
    rtype: ResourceType,
    condition: Conditional<'_, '_>,
) -> Result<(), StoreError> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("conditional {rtype}?{}", condition.text))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    /// Plans of the statements on `conn` whose text starts with `start`: (generic, custom).
    async fn plans(conn: &mut PgConnection, start: &str) -> (i64, i64) {
        sqlx::query_as(
            "select coalesce(sum(generic_plans), 0)::int8, coalesce(sum(custom_plans), 0)::int8
             from pg_prepared_statements where statement like $1 || '%'",
        )
        .bind(start)
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("plans: {e}"))
    }

    /// Sequential scans of the store's tables so far, as seen after `conn`'s statistics
    /// are flushed.
    async fn seq_scans(conn: &mut PgConnection) -> i64 {
        let flushed = sqlx::query("select pg_stat_force_next_flush()")
            .execute(&mut *conn)
            .await;
        assert!(flushed.is_ok(), "{flushed:?}");
        sqlx::query_scalar("select sum(seq_scan)::int8 from pg_stat_user_tables")
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("statistics: {e}"))
    }

    /// With statistics taken while some tables were empty: were the statements planned for
    /// their parameters, or generic plans made from those statistics allowed to read a table
    /// whole, they would keep doing so as it grows.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn updates_and_deletes_run_generic_plans_that_find_rows_by_key(
        options: PgPoolOptions,
        connect: PgConnectOptions,
    ) {
        let pool = options.max_connections(1).connect_lazy_with(connect);
        let store = Store::from_pool(pool);
        let patient = |n: usize, family: &str| {
            let resource = serde_json::json!({"resourceType": "Patient",
                "name": [{"family": family}], "gender": "female", "birthDate": "1970-01-01",
                "telecom": [{"system": "email", "value": format!("p{n}@example.org")}]});
            let claims = [Claim {
                rule: "Patient.email",
                value: format!("p{n}@example.org"),
                expression: "Patient.telecom[0].value".into(),
            }];
            (resource, claims)
        };
        let ids: Vec<Id> = (0..12)
            .map(|n| format!("p{n}").parse().unwrap_or_else(|_| unreachable!()))
            .collect();
        for (n, id) in ids.iter().enumerate() {
            let (resource, claims) = patient(n, "Alpha");
            let created = store.update(ResourceType::Patient, id, resource, None, &claims);
            assert!(created.await.is_ok());
        }
        let mut conn = store.conn().await.unwrap_or_else(|e| panic!("{e}"));
        // Statistics that say so of the tables still empty (reference rows, ...).
        let analysed = sqlx::query("analyze").execute(&mut *conn).await;
        assert!(analysed.is_ok(), "{analysed:?}");
        let before = seq_scans(&mut conn).await;
        conn.done();

        for (n, id) in ids.iter().enumerate() {
            for family in ["Beta", "Gamma"] {
                let (resource, claims) = patient(n, family);
                let updated = store.update(ResourceType::Patient, id, resource, None, &claims);
                assert!(updated.await.is_ok());
            }
            assert!(store.delete(ResourceType::Patient, id).await.is_ok());
        }

        let mut conn = store.conn().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seq_scans(&mut conn).await, before, "no table read whole");
        let (generic, custom) = plans(&mut conn, "with cur as (").await;
        assert_eq!(custom, 0, "never planned for its parameters");
        assert!(
            generic >= 36,
            "24 updates and 12 deletes: {generic} generic plans"
        );
        conn.done();
    }

    #[test]
    fn a_create_has_steps_for_targets_and_claims_only_when_it_has_them() {
        for shape in 0..8 {
            let inserts = Inserts {
                several: shape & 4 != 0,
                targets: shape & 2 != 0,
                claims: shape & 1 != 0,
            };
            let text = inserts.statement(TableSet::ALL);
            assert_eq!(text.contains("refs as"), inserts.targets, "{inserts:?}");
            assert_eq!(text.contains("for share"), inserts.targets, "{inserts:?}");
            assert_eq!(text.contains("$10"), inserts.targets, "{inserts:?}");
            assert_eq!(
                text.contains("unique_claims"),
                inserts.claims,
                "{inserts:?}"
            );
            assert_eq!(text.contains("$7"), inserts.claims, "{inserts:?}");
            assert_eq!(
                text.contains("placed join unnest($12::int8[]"),
                inserts.several,
                "{inserts:?}"
            );
            // The index rows' arrays are numbered the same in every shape.
            assert!(text.contains("$12::"), "{inserts:?}");
        }
    }

    #[test]
    fn restamp_replaces_the_placeholder_of_meta_only() {
        let placeholder: DateTime<Utc> = "2026-01-02T03:04:05.000006Z".parse().unwrap_or_default();
        let at: DateTime<Utc> = "2026-01-02T03:04:05.123456Z".parse().unwrap_or_default();
        let mut resource = serde_json::json!({"resourceType": "Patient",
            "meta": {"source": "x", "lastUpdated": "1999-01-01T00:00:00Z"},
            "extension": [{"url": "u", "valueInstant": format_instant(placeholder)}]});
        let id: Id = "a".parse().unwrap_or_else(|_| unreachable!());
        stamp(&mut resource, &id, VersionId::FIRST, placeholder);
        let mut content = resource.to_string();
        restamp(&mut content, at);
        let stored: Value = serde_json::from_str(&content).unwrap_or_default();
        assert_eq!(stored["meta"]["lastUpdated"], format_instant(at));
        assert_eq!(stored["meta"]["source"], "x");
        assert_eq!(
            stored["extension"][0]["valueInstant"],
            format_instant(placeholder)
        );
    }
}
