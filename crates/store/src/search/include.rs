//! `_include` and `_revinclude` (http://hl7.org/fhir/R4/search.html#include): the resources
//! a page's matches point at, and those that point at them, through the reference index.
//!
//! The first round starts from the matches and applies every include; each further round
//! starts from what the previous one added and applies the `:iterate` ones, until nothing new
//! comes, [`MAX_ROUNDS`] rounds have run, or [`MAX_INCLUDED`] resources were added (the rest
//! are left out and the page says so).

use std::collections::HashSet;

use fhir_core::search::query::{Include, SearchQuery};
use sqlx::{PgConnection, Row};

use super::criteria::Sql;
use super::{Found, MAX_INCLUDED, found};
use crate::StoreError;
use crate::search_index::ParamIds;

/// How many times `:iterate` includes are applied to what the previous round added.
pub const MAX_ROUNDS: usize = 4;

/// A resource reached, with its key.
struct Reached {
    key: i64,
    found: Found,
}

/// The resources `query`'s includes add to a page with `matches` (of keys `keys`), and
/// whether some were left out.
pub(super) async fn included(
    conn: &mut PgConnection,
    ids: &ParamIds,
    query: &SearchQuery<'_>,
    matches: &[Found],
    keys: Vec<i64>,
) -> Result<(Vec<Found>, bool), StoreError> {
    let mut seen: HashSet<i64> = keys.iter().copied().collect();
    let mut frontier: Vec<(i64, String, String)> = keys
        .into_iter()
        .zip(matches)
        .map(|(key, m)| (key, m.resource_type.to_string(), m.id.clone()))
        .collect();
    let mut out: Vec<Found> = Vec::new();
    for round in 0..=MAX_ROUNDS {
        if frontier.is_empty() {
            break;
        }
        let applies = |inc: &&Include<'_>| round == 0 || inc.iterate;
        let mut reached = Vec::new();
        for inc in query.include.iter().filter(applies) {
            reached.extend(targets(conn, ids, inc, &frontier).await?);
        }
        for inc in query.revinclude.iter().filter(applies) {
            reached.extend(sources(conn, ids, inc, &frontier).await?);
        }
        frontier.clear();
        for r in reached {
            if !seen.insert(r.key) {
                continue;
            }
            if out.len() == MAX_INCLUDED {
                return Ok((out, true));
            }
            frontier.push((r.key, r.found.resource_type.to_string(), r.found.id.clone()));
            out.push(r.found);
        }
    }
    Ok((out, false))
}

const COLUMNS: &str =
    "t.key, t.res_type, t.id, t.version, t.last_updated, t.content::text as content";

/// The ids of `inc`'s parameters.
fn param_ids(ids: &ParamIds, inc: &Include<'_>) -> Vec<i32> {
    inc.params
        .iter()
        .filter_map(|p| ids.get(inc.source_type, p.code()))
        .collect()
}

/// `_include`: what the `frontier` resources point at through `inc`.
async fn targets(
    conn: &mut PgConnection,
    ids: &ParamIds,
    inc: &Include<'_>,
    frontier: &[(i64, String, String)],
) -> Result<Vec<Reached>, StoreError> {
    let keys: Vec<i64> = frontier
        .iter()
        .filter(|(_, rtype, _)| rtype == inc.source_type.as_str())
        .map(|(key, _, _)| *key)
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(
        ids,
        format!(
            "select distinct on (t.key) {COLUMNS} from search_reference x \
             join resources t on t.res_type = left(x.target_type, 256) and t.id = left(x.target_id, 256) \
             where not t.deleted and x.target_id is not null and x.url is null and x.res_key = any("
        )
        .as_str(),
    );
    sql.bind(keys)
        .push(") and x.param = any(")
        .bind(param_ids(ids, inc))
        .push(")");
    if let Some(target) = inc.target_type {
        sql.push(" and t.res_type = ")
            .bind(target.as_str().to_owned());
    }
    sql.push(format_args!(" order by t.key limit {}", MAX_INCLUDED + 1));
    fetch(sql, conn).await
}

/// `_revinclude`: what points at the `frontier` resources through `inc`.
async fn sources(
    conn: &mut PgConnection,
    ids: &ParamIds,
    inc: &Include<'_>,
    frontier: &[(i64, String, String)],
) -> Result<Vec<Reached>, StoreError> {
    let (types, names): (Vec<String>, Vec<String>) = frontier
        .iter()
        .filter(|(_, rtype, _)| inc.target_type.is_none_or(|t| t.as_str() == rtype))
        .map(|(_, rtype, id)| (rtype.clone(), id.clone()))
        .unzip();
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(
        ids,
        format!("select distinct on (t.key) {COLUMNS} from unnest(").as_str(),
    );
    sql.bind(types)
        .push("::text[], ")
        .bind(names)
        .push(
            "::text[]) as m(res_type, id) \
             join search_reference x on left(x.target_id, 256) = m.id \
             and left(x.target_type, 256) = m.res_type and x.target_id is not null \
             and x.url is null and x.param = any(",
        )
        .bind(param_ids(ids, inc))
        .push(format_args!(
            ") join resources t on t.key = x.res_key order by t.key limit {}",
            MAX_INCLUDED + 1
        ));
    fetch(sql, conn).await
}

/// Runs a statement whose rows are resources reached.
async fn fetch(mut sql: Sql<'_>, conn: &mut PgConnection) -> Result<Vec<Reached>, StoreError> {
    let rows = sql
        .builder
        .build()
        .persistent(false)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Reached {
                key: row.get("key"),
                found: found(row)?,
            })
        })
        .collect()
}
