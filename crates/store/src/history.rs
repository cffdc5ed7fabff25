//! Versions of resources, newest first: vread, and history at instance, type and system
//! level with keyset paging (the cursor is the last row's sequence number, never an OFFSET).

use chrono::{DateTime, Utc};
use fhir_core::{Id, ResourceType, VersionId};
use sqlx::{Postgres, QueryBuilder, Row};

use crate::content::resource_type_first;
use crate::{Store, StoreError};

/// One stored version.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// Position in the global order of versions (the paging cursor).
    pub seq: i64,
    pub res_type: String,
    pub id: String,
    pub version: VersionId,
    pub last_updated: DateTime<Utc>,
    /// `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// The HTTP status the write was answered with.
    pub status: i16,
    /// The resource as JSON text; `None` for a deletion.
    pub content: Option<String>,
}

/// Which versions a history request covers.
#[derive(Debug, Clone)]
pub enum HistoryScope {
    Instance(ResourceType, Id),
    Type(ResourceType),
    System,
}

/// A history request: scope, `_since`, the page cursor and the page size.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub scope: HistoryScope,
    pub since: Option<DateTime<Utc>>,
    /// Only versions older than this cursor (from the previous page's `next` link).
    pub before: Option<i64>,
    pub count: u32,
}

/// A page of history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub rows: Vec<HistoryRow>,
    /// The cursor of the next page, when there is one.
    pub next: Option<i64>,
    /// The number of matching versions (instance level only: elsewhere it costs a scan).
    pub total: Option<u64>,
}

const COLUMNS: &str = "select seq, res_type, id, version, last_updated, method, status, \
     content::text as content from resource_history where true";

fn push_filters(
    query: &mut QueryBuilder<'_, Postgres>,
    scope: &HistoryScope,
    since: Option<DateTime<Utc>>,
) {
    match scope {
        HistoryScope::Instance(rtype, id) => {
            query.push(" and res_type = ").push_bind(rtype.as_str());
            query.push(" and id = ").push_bind(id.as_str().to_owned());
        }
        HistoryScope::Type(rtype) => {
            query.push(" and res_type = ").push_bind(rtype.as_str());
        }
        HistoryScope::System => {}
    }
    if let Some(since) = since {
        query.push(" and last_updated >= ").push_bind(since);
    }
}

fn to_row(row: sqlx::postgres::PgRow) -> HistoryRow {
    HistoryRow {
        seq: row.get("seq"),
        res_type: row.get("res_type"),
        id: row.get("id"),
        version: VersionId::new(row.get("version")),
        last_updated: row.get("last_updated"),
        method: row.get("method"),
        status: row.get("status"),
        content: row
            .get::<Option<String>, _>("content")
            .map(resource_type_first),
    }
}

impl Store {
    /// One version of `type/id`.
    pub async fn vread(
        &self,
        rtype: ResourceType,
        id: &Id,
        version: VersionId,
    ) -> Result<Option<HistoryRow>, StoreError> {
        let mut conn = self.conn().await?;
        let row = sqlx::query(&format!(
            "{COLUMNS} and res_type = $1 and id = $2 and version = $3"
        ))
        .bind(rtype.as_str())
        .bind(id.as_str())
        .bind(version.get())
        .fetch_optional(&mut *conn)
        .await?;
        conn.done();
        Ok(row.map(to_row))
    }

    /// A page of history, newest first.
    pub async fn history(&self, request: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let mut conn = self.conn().await?;
        let mut query = QueryBuilder::new(COLUMNS);
        push_filters(&mut query, &request.scope, request.since);
        if let Some(before) = request.before {
            query.push(" and seq < ").push_bind(before);
        }
        query
            .push(" order by seq desc limit ")
            .push_bind(i64::from(request.count) + 1);
        let mut rows: Vec<HistoryRow> = query
            .build()
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(to_row)
            .collect();
        let next = if rows.len() > request.count as usize {
            rows.truncate(request.count as usize);
            rows.last().map(|row| row.seq)
        } else {
            None
        };

        let total = match &request.scope {
            HistoryScope::Instance(..) => {
                let mut count =
                    QueryBuilder::new("select count(*) from resource_history where true");
                push_filters(&mut count, &request.scope, request.since);
                let n: i64 = count.build().fetch_one(&mut *conn).await?.get(0);
                Some(u64::try_from(n).unwrap_or_default())
            }
            _ => None,
        };
        conn.done();
        Ok(HistoryPage { rows, next, total })
    }
}
