//! history: `GET [base]/[type]/[id]/_history`, `[base]/[type]/_history`, `[base]/_history`,
//! with `_since`, `_count` and keyset paging through `next` links.
//! http://hl7.org/fhir/R4/http.html#history

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use fhir_core::bundle::{Bundle, Entry, EntryRequest, EntryResponse, Link};
use fhir_core::resource::format_instant;
use serde_json::value::RawValue;
use store::{HistoryQuery, HistoryRow, HistoryScope};

use smart::{Grant, Interaction};

use crate::auth::Principal;
use crate::auth::access::{permits_text, require};
use crate::error::ApiError;
use crate::http::{InstancePath, Negotiated, QueryParams, TypePath, etag, fhir_body};
use crate::state::AppState;

/// The paging cursor parameter of `next` links.
const CURSOR: &str = "_cursor";

/// History of one resource.
pub async fn instance(
    State(state): State<AppState>,
    principal: Principal,
    InstancePath(rtype, id): InstancePath,
    negotiated: Negotiated,
    params: QueryParams,
) -> Result<Response, ApiError> {
    require(&principal, rtype, Interaction::Read)?;
    let path = format!("{rtype}/{id}/_history");
    let scope = HistoryScope::Instance(rtype, id);
    history(state, &principal, scope, &path, negotiated, params).await
}

/// History of every resource of a type.
pub async fn type_level(
    State(state): State<AppState>,
    principal: Principal,
    TypePath(rtype): TypePath,
    negotiated: Negotiated,
    params: QueryParams,
) -> Result<Response, ApiError> {
    require(&principal, rtype, Interaction::Search)?;
    let path = format!("{rtype}/_history");
    let scope = HistoryScope::Type(rtype);
    history(state, &principal, scope, &path, negotiated, params).await
}

/// History of every resource on the server.
pub async fn system(
    State(state): State<AppState>,
    principal: Principal,
    negotiated: Negotiated,
    params: QueryParams,
) -> Result<Response, ApiError> {
    if principal.permissions.types_searchable().is_empty() {
        return Err(ApiError::Forbidden(
            "the access token grants no search on any type".into(),
        ));
    }
    let scope = HistoryScope::System;
    history(state, &principal, scope, "_history", negotiated, params).await
}

/// The versions a caller may see of a page: all of them with full access; with access
/// limited to a patient's compartment, those in it (deletions, which hold no content, are
/// left out). A page may thus hold fewer entries than `_count`.
fn visible(
    state: &AppState,
    principal: &Principal,
    scope: &HistoryScope,
    row: &HistoryRow,
) -> bool {
    let interaction = match scope {
        HistoryScope::Instance(..) => Interaction::Read,
        _ => Interaction::Search,
    };
    let Ok(rtype) = row.res_type.parse() else {
        return false;
    };
    match principal.permissions.grants(rtype, interaction) {
        Grant::Unrestricted => true,
        Grant::Denied => false,
        grant => row
            .content
            .as_deref()
            .is_some_and(|content| permits_text(state, rtype, &grant, content)),
    }
}

async fn history(
    state: AppState,
    principal: &Principal,
    scope: HistoryScope,
    path: &str,
    Negotiated(format): Negotiated,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let count = match params.get("_count") {
        None => state.config.default_page_size,
        Some(count) => count
            .parse::<u32>()
            .map_err(|_| ApiError::bad_request("_count must be a whole number"))?
            .min(state.config.max_page_size),
    };
    let since = params.get("_since").map(parse_since).transpose()?;
    let before = params
        .get(CURSOR)
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request("_cursor is not valid"))
        })
        .transpose()?;

    let query = HistoryQuery {
        scope,
        since,
        before,
        count,
    };
    let mut page = state.store.history(&query).await?;
    let shown = page.rows.len();
    page.rows
        .retain(|row| visible(&state, principal, &query.scope, row));
    if page.rows.len() < shown {
        page.total = None;
    }

    let base = &state.base;
    let mut query = format!("_count={count}");
    if let Some(since) = params.get("_since") {
        query.push_str("&_since=");
        query.extend(url::form_urlencoded::byte_serialize(since.as_bytes()));
    }
    let mut links = vec![Link {
        relation: "self",
        url: match before {
            Some(before) => format!("{base}/{path}?{query}&{CURSOR}={before}"),
            None => format!("{base}/{path}?{query}"),
        },
    }];
    if let Some(next) = page.next {
        links.push(Link {
            relation: "next",
            url: format!("{base}/{path}?{query}&{CURSOR}={next}"),
        });
    }
    let entries = page
        .rows
        .into_iter()
        .map(|row| entry(base, row))
        .collect::<Result<Vec<_>, _>>()?;
    let bundle = Bundle::history(page.total, links, entries);
    let json = serde_json::to_string(&bundle).map_err(|e| ApiError::Internal(e.to_string()))?;
    fhir_body(StatusCode::OK, format, json)
}

fn entry(base: &str, row: HistoryRow) -> Result<Entry, ApiError> {
    let resource = row
        .content
        .map(RawValue::from_string)
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (method, url) = match row.method.as_str() {
        "POST" => ("POST", row.res_type.clone()),
        "DELETE" => ("DELETE", format!("{}/{}", row.res_type, row.id)),
        _ => ("PUT", format!("{}/{}", row.res_type, row.id)),
    };
    Ok(Entry {
        full_url: format!("{base}/{}/{}", row.res_type, row.id),
        resource,
        search: None,
        request: Some(EntryRequest { method, url }),
        response: Some(EntryResponse {
            status: row.status.to_string(),
            etag: Some(etag(row.version)),
            last_modified: Some(format_instant(row.last_updated)),
        }),
    })
}

/// `_since` is an instant; a plain date (or dateTime without zone, read as UTC) is accepted too.
fn parse_since(value: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        && let Some(at) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(at.and_utc());
    }
    Err(ApiError::bad_request(
        "_since must be an instant such as 2024-01-01T00:00:00Z",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_instants_and_dates() {
        assert!(parse_since("2024-01-02T03:04:05Z").is_ok());
        assert!(parse_since("2024-01-02T03:04:05.123+02:00").is_ok());
        assert!(parse_since("2024-01-02").is_ok());
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("2024-13-01").is_err());
    }
}
