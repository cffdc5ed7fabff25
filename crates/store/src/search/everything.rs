//! Patient `$everything`, query side: the records of some Patients, one page at a time
//! (docs/everything.md).
//!
//! A record is found from its Patients through the search index, in one statement per page:
//!
//! ```sql
//! with pat as (                -- the Patients: `_id`, or every one the caller may search
//!     select r.key, r.id from resources r where r.res_type = 'Patient' and not r.deleted and ...
//! ), src as (                  -- them, and their compartment: the reference rows of the
//!     select key from pat      -- compartment parameters (`Account.subject`, ...) that
//!     union                    -- point at them, one branch per type the caller may search
//!     select r.key from pat join search_reference x on left(x.target_id, 256) = pat.id ...
//!         join resources r on r.key = x.res_key where x.param in (<ids>) and ...
//! ), m as (                    -- and what those refer to (Organizations, Practitioners, Groups)
//!     select key from src union
//!     select t.key from src join search_reference x on x.res_key = src.key join resources t ...
//! )
//! select ... from m join resources r on r.key = m.key
//! where <the type's criteria: _type, _since, the caller's grant> and <after the cursor>
//! order by m.key limit _count + 1
//! ```
//!
//! Every step starts from the rows the previous one found and reads an index
//! (`search_reference_target` from a Patient to what points at it, `search_reference_res`
//! from a resource to what it points at, the `(res_type, id)` key to the target), so a
//! patient's record costs a few index lookups per resource in it, whatever the size of the
//! database. `union` keeps each resource once. Paging is the search's: a keyset on
//! `resources.key` with a signed cursor, no offset.

use fhir_core::ResourceType;
use fhir_core::search::query::{Condition, TypeQuery};
use fhir_core::search::{Registry, SearchParamType};

use super::criteria::{Sql, write_criteria};
use super::order::{order_by, write_keyset};
use super::{SearchPage, found, turn_page};
use crate::search_index::ParamIds;
use crate::{Store, StoreError};

/// The records of the Patients that meet `patients`, as far as the caller may see them.
#[derive(Debug, Clone, Copy)]
pub struct Everything<'a, 'r> {
    /// Criteria on a Patient: the Patients whose records these are (`_id` for one, the
    /// caller's grant for all of them).
    pub patients: &'a [Condition<'r>],
    /// The compartment types that belong to the records, each with the caller's grant on
    /// it as criteria: what they refer to is in the records too. The Patients always are.
    pub sources: &'a [CompartmentSource<'r>],
    /// The types added when a resource of the records refers to one of them.
    pub referenced: &'a [ResourceType],
    /// The types returned, each with its criteria (`_since`, the caller's grant).
    pub types: &'a [TypeQuery<'r>],
    /// Whether `patients` selects a few Patients (one id, or the one of a patient-level
    /// grant): the records are then found from them; otherwise by walking the resources in
    /// key order, each tested for being in a record, so that a page costs what it holds.
    pub few: bool,
    /// The page size.
    pub count: u32,
    /// The paging cursor, as given.
    pub cursor: Option<&'a str>,
    /// What a cursor is bound to: the request, in canonical form, without its cursor.
    pub scope: &'a str,
}

/// A compartment type of a record.
#[derive(Debug, Clone)]
pub struct CompartmentSource<'r> {
    /// The type, and the criteria its resources must meet.
    pub query: TypeQuery<'r>,
    /// The reference parameters that put a resource of the type in the compartment of the
    /// Patient they point at (any one).
    pub params: &'static [&'static str],
}

impl Store {
    /// One page of the records `request` describes, in the order the resources were first
    /// written. A cursor that was not issued for this very request is
    /// [`StoreError::BadCursor`].
    pub async fn everything(&self, request: &Everything<'_, '_>) -> Result<SearchPage, StoreError> {
        let ids = self.param_ids().await?;
        let key = self.cursor_key().await?;
        let cursor = match request.cursor {
            Some(text) => Some(key.open(request.scope, text).ok_or(StoreError::BadCursor)?),
            None => None,
        };
        let (mut sql, alias) = if request.few {
            (from_patients(ids, request), "m")
        } else {
            (in_key_order(ids, self.registry()?, request), "r")
        };
        if let Some(cursor) = &cursor {
            sql.push(" and ");
            write_keyset(&mut sql, &[], alias, cursor);
        }
        let backwards = cursor.as_ref().is_some_and(|c| c.before);
        sql.push(format_args!(
            " order by {} limit {}",
            order_by(&[], alias, backwards),
            i64::from(request.count) + 1
        ));

        let mut conn = self.conn().await?;
        let mut rows = sql
            .builder
            .build()
            .persistent(false)
            .fetch_all(&mut *conn)
            .await?;
        conn.done();
        let mut page = SearchPage::default();
        let more = turn_page(
            &mut rows,
            request.count,
            cursor.as_ref(),
            0,
            |position| key.seal(request.scope, position),
            &mut page,
        );
        if cursor.is_none() && !more {
            page.total = Some(rows.len() as u64);
        }
        page.matches = rows.iter().map(found).collect::<Result<_, _>>()?;
        Ok(page)
    }
}

/// Ends an `exists` of the walk in key order so that it runs for each row the walk reaches,
/// stopping at the first row it finds. Without it PostgreSQL turns the `exists` into a hashed
/// set of every match, which it builds whole, over the population, before the first row
/// (measured: 119 ms against 2.4 ms for a page of 50 at 5,000 patients). An `offset` keeps
/// a subquery as written; it pages nothing.
const PER_ROW: &str = " offset 0";

/// The page statement, up to its keyset, found from the Patients: `m` holds the records'
/// keys.
fn from_patients<'p>(ids: &'p ParamIds, request: &Everything<'_, '_>) -> Sql<'p> {
    let mut sql = Sql::new(
        ids,
        "with pat as (select r.key, r.id from resources r \
         where r.res_type = 'Patient' and not r.deleted",
    );
    write_criteria(&mut sql, ResourceType::Patient, "r", request.patients);
    sql.push("), src as (select pat.key from pat");
    for source in request.sources {
        let rtype = source.query.resource_type;
        // The `left(.., 256)`s are those of the reference index.
        sql.push(format_args!(
            " union select r.key from pat join search_reference x \
             on left(x.target_id, 256) = pat.id and left(x.target_type, 256) = 'Patient' \
             join resources r on r.key = x.res_key \
             where x.param in ({}) and x.url is null \
             and r.res_type = '{rtype}' and not r.deleted",
            param_ids(ids, rtype, source.params.iter().copied())
        ));
        write_criteria(&mut sql, rtype, "r", &source.query.criteria);
    }
    sql.push("), m as (select src.key from src");
    if !request.referenced.is_empty() {
        let types: Vec<String> = request
            .referenced
            .iter()
            .map(|rtype| rtype.as_str().to_owned())
            .collect();
        sql.push(
            " union select t.key from src join search_reference x on x.res_key = src.key \
             join resources t on t.res_type = left(x.target_type, 256) \
             and t.id = left(x.target_id, 256) \
             where x.target_id is not null and x.url is null \
             and left(x.target_type, 256) = any(",
        )
        .bind(types)
        .push(") and not t.deleted");
    }
    sql.push(
        ") select m.key, r.res_type, r.id, r.version, r.last_updated, \
         r.content::text as content from m join resources r on r.key = m.key \
         where not r.deleted",
    );
    write_types(&mut sql, request, |_, _, _| {});
    sql
}

/// The page statement, up to its keyset, walking the resources in key order and keeping
/// those in the records: for many Patients, a page then costs what it holds (a few index
/// lookups per resource), not the whole population.
fn in_key_order<'p>(
    ids: &'p ParamIds,
    registry: &Registry,
    request: &Everything<'_, '_>,
) -> Sql<'p> {
    let mut sql = Sql::new(
        ids,
        "select r.key, r.res_type, r.id, r.version, r.last_updated, \
         r.content::text as content from resources r where not r.deleted",
    );
    write_types(&mut sql, request, |sql, rtype, alias| {
        sql.push(" and (false");
        if rtype == ResourceType::Patient {
            sql.push(" or (true");
            write_criteria(sql, rtype, alias, request.patients);
            sql.push(")");
        }
        if let Some(source) = request
            .sources
            .iter()
            .find(|s| s.query.resource_type == rtype)
        {
            sql.push(" or ");
            write_member(sql, ids, source, alias, request.patients);
        }
        if request.referenced.contains(&rtype) {
            sql.push(" or ");
            write_referenced(sql, ids, registry, rtype, alias, request);
        }
        sql.push(")");
    });
    sql
}

/// Writes ` and (false or (r.res_type = '<type>' <its criteria> <more>) ...)`: one of the
/// types returned, meeting its criteria and what `more` writes about row `r`.
fn write_types(
    sql: &mut Sql<'_>,
    request: &Everything<'_, '_>,
    mut more: impl FnMut(&mut Sql<'_>, ResourceType, &str),
) {
    sql.push(" and (false");
    for query in request.types {
        sql.push(format_args!(" or (r.res_type = '{}'", query.resource_type));
        write_criteria(sql, query.resource_type, "r", &query.criteria);
        more(sql, query.resource_type, "r");
        sql.push(")");
    }
    sql.push(")");
}

/// Writes "row `alias` (of `source`'s type) is in the compartment of one of the Patients".
fn write_member(
    sql: &mut Sql<'_>,
    ids: &ParamIds,
    source: &CompartmentSource<'_>,
    alias: &str,
    patients: &[Condition<'_>],
) {
    let rtype = source.query.resource_type;
    let (x, p) = (sql.alias("mx"), sql.alias("mp"));
    let params = param_ids(ids, rtype, source.params.iter().copied());
    sql.push(format_args!(
        "exists (select 1 from search_reference {x} join resources {p} \
         on {p}.res_type = 'Patient' and {p}.id = left({x}.target_id, 256) \
         where {x}.res_key = {alias}.key and {x}.param in ({params}) \
         and left({x}.target_type, 256) = 'Patient' and {x}.url is null and not {p}.deleted"
    ));
    write_criteria(sql, ResourceType::Patient, &p, patients);
    sql.push(format_args!("{PER_ROW})"));
}

/// Writes "a resource of the records refers to row `alias` of `rtype`": one of the
/// Patients, or a resource of a compartment type in one of their compartments that meets
/// the type's criteria.
fn write_referenced(
    sql: &mut Sql<'_>,
    ids: &ParamIds,
    registry: &Registry,
    rtype: ResourceType,
    alias: &str,
    request: &Everything<'_, '_>,
) {
    let (y, s) = (sql.alias("ry"), sql.alias("rs"));
    let sources = std::iter::once(ResourceType::Patient)
        .chain(request.sources.iter().map(|s| s.query.resource_type));
    let params: Vec<String> = sources
        .map(|source| {
            let codes = registry
                .for_type(source.as_str())
                .filter(|p| p.kind() == SearchParamType::Reference)
                .map(|p| p.code());
            param_ids(ids, source, codes)
        })
        .filter(|list| !list.is_empty())
        .collect();
    sql.push(format_args!(
        "exists (select 1 from search_reference {y} join resources {s} on {s}.key = {y}.res_key \
         where {y}.param in ({}) and left({y}.target_id, 256) = {alias}.id \
         and left({y}.target_type, 256) = '{rtype}' and {y}.url is null and not {s}.deleted \
         and (({s}.res_type = 'Patient'",
        if params.is_empty() {
            "-1".to_owned()
        } else {
            params.join(", ")
        }
    ));
    write_criteria(sql, ResourceType::Patient, &s, request.patients);
    sql.push(")");
    for source in request.sources {
        sql.push(format_args!(
            " or ({s}.res_type = '{}'",
            source.query.resource_type
        ));
        write_criteria(sql, source.query.resource_type, &s, &source.query.criteria);
        sql.push(" and ");
        write_member(sql, ids, source, &s, request.patients);
        sql.push(")");
    }
    sql.push(format_args!("){PER_ROW})"));
}

/// The ids of the parameters `codes` of `rtype`, comma-separated (-1 for one not indexed,
/// which matches nothing).
fn param_ids<'c>(
    ids: &ParamIds,
    rtype: ResourceType,
    codes: impl Iterator<Item = &'c str>,
) -> String {
    codes
        .map(|code| ids.get(rtype, code).unwrap_or(-1).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
