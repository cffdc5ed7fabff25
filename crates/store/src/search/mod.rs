//! Search, query side: a parsed [`SearchQuery`] run against the index tables, one page at a
//! time (docs/search.md, "Queries").
//!
//! A page is one statement: the matching keys of each type searched (`union all` at system
//! level) with their sort values, the rows after the cursor in the sort order, the first
//! `_count + 1` of them (one more tells whether there is a next page), joined to their
//! content. No `offset`: a deep page costs what the first one does. Totals, `_include` and
//! `_revinclude` are statements of their own, run only when asked for.
//!
//! Search statements are sent unnamed (not prepared for reuse): PostgreSQL then plans each
//! one with its values. A prepared statement switches to a plan made without them after a
//! few runs, and for a search that plan is often far worse (the value decides which index
//! is selective).

pub(crate) mod criteria;
mod cursor;
mod everything;
mod include;
mod order;

use chrono::{DateTime, Utc};
use fhir_core::search::query::{SearchQuery, Summary, Total, TypeQuery};
use fhir_core::{ResourceType, VersionId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use tokio::sync::OnceCell;

use crate::content::resource_type_first;
use crate::search_index::ParamIds;
use crate::{Store, StoreError};
use criteria::{Sql, write_criteria};
use cursor::{Cursor, CursorKey};
pub use everything::{CompartmentSource, Everything};
use order::{Column, order_by, sort_value, write_keyset};

/// A current resource found by a search.
#[derive(Debug, Clone)]
pub struct Found {
    pub resource_type: ResourceType,
    pub id: String,
    pub version: VersionId,
    pub last_updated: DateTime<Utc>,
    /// The resource as JSON text, `resourceType` first.
    pub content: String,
}

/// One page of a search.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    /// The matches on this page, in order (none for `_summary=count`).
    pub matches: Vec<Found>,
    /// What `_include` and `_revinclude` add, each resource once, none of them a match.
    pub included: Vec<Found>,
    /// Set when more than [`MAX_INCLUDED`] resources would have been included: the rest
    /// were left out.
    pub included_truncated: bool,
    /// The number of matches, when asked for (`_total=accurate`, `_summary=count`), estimated
    /// (`_total=estimate`), or known anyway (a first page that holds every match).
    pub total: Option<u64>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
    /// The cursor of the previous page, when there is one.
    pub previous: Option<String>,
}

/// The most resources `_include` and `_revinclude` add to one page.
pub const MAX_INCLUDED: usize = 1000;

/// Search state a store shares between its clones.
#[derive(Debug, Default)]
pub(crate) struct SearchState {
    cursor_key: OnceCell<CursorKey>,
}

impl Store {
    /// One page of `query`'s results. A cursor that this database's servers did not issue
    /// for this very query is [`StoreError::BadCursor`].
    pub async fn search(&self, query: &SearchQuery<'_>) -> Result<SearchPage, StoreError> {
        let ids = self.param_ids().await?;
        let scope = cursor_scope(query);
        let cursor = match &query.cursor {
            Some(text) => Some(
                self.cursor_key()
                    .await?
                    .open(&scope, text)
                    .ok_or(StoreError::BadCursor)?,
            ),
            None => None,
        };
        let columns = columns(query);
        let mut conn = self.conn().await?;
        let mut page = SearchPage::default();

        let counting = query.summary == Some(Summary::Count);
        if !counting {
            let start = if estimates_poorly(query) {
                "with m as materialized ("
            } else {
                "with m as ("
            };
            let mut sql = Sql::new(ids, start);
            write_matches(&mut sql, query, &columns);
            sql.push("), p as (select * from m");
            let backwards = cursor.as_ref().is_some_and(|c| c.before);
            if let Some(cursor) = &cursor {
                sql.push(" where ");
                write_keyset(&mut sql, &columns, "m", cursor);
            }
            sql.push(format_args!(
                " order by {} limit {}) select r.key, r.res_type, r.id, r.version, r.last_updated, \
                 r.content::text as content",
                order_by(&columns, "m", backwards),
                i64::from(query.count) + 1,
            ));
            for n in 0..columns.len() {
                sql.push(format_args!(", p.s{n}::text as s{n}"));
            }
            sql.push(format_args!(
                " from p join resources r on r.key = p.key order by {}",
                order_by(&columns, "p", backwards)
            ));
            let mut rows = sql
                .builder
                .build()
                .persistent(false)
                .fetch_all(&mut *conn)
                .await?;
            let key = self.cursor_key().await?;
            let more = turn_page(
                &mut rows,
                query.count,
                cursor.as_ref(),
                columns.len(),
                |position| key.seal(&scope, position),
                &mut page,
            );
            if cursor.is_none() && !more && query.total != Some(Total::None) {
                page.total = Some(rows.len() as u64);
            }
            let keys: Vec<i64> = rows.iter().map(|row| row.get("key")).collect();
            page.matches = rows.iter().map(found).collect::<Result<_, _>>()?;
            if !query.include.is_empty() || !query.revinclude.is_empty() {
                let (included, truncated) =
                    include::included(&mut conn, ids, query, &page.matches, keys).await?;
                page.included = included;
                page.included_truncated = truncated;
            }
        }

        if counting || query.total == Some(Total::Accurate) {
            page.total = Some(count(&mut conn, ids, query).await?);
        } else if query.total == Some(Total::Estimate) && page.total.is_none() {
            page.total = Some(estimate(&mut conn, ids, query).await?);
        }
        conn.done();
        Ok(page)
    }

    /// The ids of at most `limit` current resources of `query`'s type that meet its
    /// criteria (conditional interactions: none, one or several).
    pub(crate) async fn matching(
        &self,
        conn: &mut PgConnection,
        query: &TypeQuery<'_>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let ids = self.param_ids().await?;
        let mut sql = Sql::new(ids, "select r.id from resources r where r.res_type = ");
        sql.bind(query.resource_type.as_str().to_owned())
            .push(" and not r.deleted");
        write_criteria(&mut sql, query.resource_type, "r", &query.criteria);
        sql.push(" limit ").bind(limit);
        let rows = sql
            .builder
            .build()
            .persistent(false)
            .fetch_all(&mut *conn)
            .await?;
        Ok(rows.into_iter().map(|row| row.get("id")).collect())
    }

    async fn cursor_key(&self) -> Result<&CursorKey, StoreError> {
        self.search
            .cursor_key
            .get_or_try_init(|| CursorKey::load(&self.pool))
            .await
    }
}

/// Cuts the rows of a page statement (at most `count + 1`, read in the page's direction,
/// each with its `key` and sort values `s0, s1, ...`) to the page, in order, and gives the
/// page its `next` and `previous` cursors, sealed by `seal`. Returns whether the statement
/// found more rows than the page holds.
fn turn_page(
    rows: &mut Vec<PgRow>,
    count: u32,
    cursor: Option<&Cursor>,
    columns: usize,
    seal: impl Fn(&Cursor) -> String,
    page: &mut SearchPage,
) -> bool {
    let more = rows.len() > count as usize;
    rows.truncate(count as usize);
    if cursor.is_some_and(|c| c.before) {
        rows.reverse();
    }
    let position = |row: &PgRow, before: bool| Cursor {
        before,
        values: (0..columns)
            .map(|n| row.get::<Option<String>, _>(format!("s{n}").as_str()))
            .collect(),
        key: row.get("key"),
    };
    let (has_next, has_previous) = match cursor {
        None => (more, false),
        Some(c) if c.before => (true, more),
        Some(_) => (more, true),
    };
    page.next = rows
        .last()
        .filter(|_| has_next)
        .map(|row| seal(&position(row, false)));
    page.previous = rows
        .first()
        .filter(|_| has_previous)
        .map(|row| seal(&position(row, true)));
    more
}

/// Whether the query has a condition PostgreSQL estimates poorly: a range on dates, numbers
/// or quantities (bounds on two columns it takes as independent, no statistics on the
/// ranges), a composite, or a chain or `_has` around one. Such a search computes its
/// matches first (`materialized`): with an estimate of thousands of matches for what are a
/// few, the planner otherwise reads the whole type in key order to find the first page
/// (measured: `Invoice?status=issued&date=ge2023-12-25&date=lt2023-12-26` took 37 ms at
/// 100,000 patients that way, under 1 ms from the index). A search that really matches
/// many pays for computing all its matches; without such conditions the planner's
/// estimates hold and the first page stops early.
fn estimates_poorly(query: &SearchQuery<'_>) -> bool {
    fn poorly(condition: &fhir_core::search::query::Condition<'_>) -> bool {
        use fhir_core::search::query::{Condition, Test};
        match condition {
            Condition::Match { test, .. } => matches!(
                test,
                Test::Date(_) | Test::Number(_) | Test::Quantity(_) | Test::Composite(_)
            ),
            Condition::Chain { targets, .. } => targets.iter().any(|t| poorly(&t.condition)),
            Condition::Has { condition, .. } => poorly(condition),
            Condition::Any(alternatives) => alternatives.iter().flatten().any(poorly),
        }
    }
    query
        .types
        .iter()
        .any(|t| t.sort.is_empty() && t.criteria.iter().any(poorly))
}

/// What a cursor is bound to: the type searched and the canonical parameters.
fn cursor_scope(query: &SearchQuery<'_>) -> String {
    let rtype = query.resource_type.map_or("", ResourceType::as_str);
    format!("{rtype}?{}", query.query_string_with_cursor(None))
}

/// The sort keys as columns `s0, s1, ...`: as the first type searched has them (every type
/// of a system-level search resolves the same `_sort` names).
fn columns(query: &SearchQuery<'_>) -> Vec<Column> {
    let Some(first) = query.types.first() else {
        return Vec::new();
    };
    first
        .sort
        .iter()
        .enumerate()
        .map(|(n, key)| {
            let kinds_differ = query.types.iter().any(|t| {
                t.sort
                    .get(n)
                    .is_none_or(|other| other.param.kind() != key.param.kind())
            });
            Column {
                descending: key.descending,
                cast: if kinds_differ { "text" } else { cast_of(key) },
            }
        })
        .collect()
}

fn cast_of(key: &fhir_core::search::query::SortKey<'_>) -> &'static str {
    use fhir_core::search::SearchParamType::{Date, Number, Quantity};
    match (key.param.code(), key.param.kind()) {
        ("_lastUpdated", _) | (_, Date) => "timestamptz",
        (_, Number | Quantity) => "numeric",
        _ => "text",
    }
}

/// Writes the matches of every type searched: `key` and the sort values `s0, s1, ...` (none
/// without `columns`).
fn write_matches(sql: &mut Sql<'_>, query: &SearchQuery<'_>, columns: &[Column]) {
    if query.types.is_empty() {
        sql.push("select null::bigint as key");
        for (n, column) in columns.iter().enumerate() {
            sql.push(format_args!(", null::{} as s{n}", column.cast));
        }
        sql.push(" where false");
    }
    for (n, type_query) in query.types.iter().enumerate() {
        if n > 0 {
            sql.push(" union all ");
        }
        sql.push("select r.key");
        for (i, column) in columns.iter().enumerate() {
            match type_query.sort.get(i) {
                Some(key) => {
                    let (value, cast) = sort_value(sql, type_query.resource_type, key);
                    if cast == column.cast {
                        sql.push(format_args!(", {value} as s{i}"));
                    } else {
                        sql.push(format_args!(", ({value})::{} as s{i}", column.cast));
                    }
                }
                None => {
                    sql.push(format_args!(", null::{} as s{i}", column.cast));
                }
            }
        }
        sql.push(format_args!(
            " from resources r where r.res_type = '{}' and not r.deleted",
            type_query.resource_type
        ));
        write_criteria(sql, type_query.resource_type, "r", &type_query.criteria);
    }
}

/// The number of matches.
async fn count(
    conn: &mut PgConnection,
    ids: &ParamIds,
    query: &SearchQuery<'_>,
) -> Result<u64, StoreError> {
    let mut sql = Sql::new(ids, "with m as (");
    write_matches(&mut sql, query, &[]);
    sql.push(") select count(*) from m");
    let total: i64 = sql
        .builder
        .build()
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?
        .get(0);
    Ok(total.max(0) as u64)
}

/// The planner's estimate of the number of matches.
async fn estimate(
    conn: &mut PgConnection,
    ids: &ParamIds,
    query: &SearchQuery<'_>,
) -> Result<u64, StoreError> {
    let mut sql = Sql::new(ids, "explain (format json) with m as (");
    write_matches(&mut sql, query, &[]);
    sql.push(") select key from m");
    let plan: serde_json::Value = sql
        .builder
        .build()
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?
        .get(0);
    let rows = plan
        .pointer("/0/Plan/Plan Rows")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    Ok(rows.max(0.0).round() as u64)
}

/// A found resource from a row with `res_type`, `id`, `version`, `last_updated`, `content`.
fn found(row: &PgRow) -> Result<Found, StoreError> {
    let rtype: String = row.get("res_type");
    let resource_type = rtype
        .parse()
        .map_err(|_| sqlx::Error::Decode(format!("unknown resource type {rtype}").into()))?;
    Ok(Found {
        resource_type,
        id: row.get("id"),
        version: VersionId::new(row.get("version")),
        last_updated: row.get("last_updated"),
        content: resource_type_first(row.get::<Option<String>, _>("content").unwrap_or_default()),
    })
}
