//! search: `GET [base]/[type]?...`, `POST [base]/[type]/_search` (form body), and the same at
//! system level (`[base]?_type=...`, `[base]/_search`), answered with a `searchset` Bundle.
//! http://hl7.org/fhir/R4/search.html, http://hl7.org/fhir/R4/http.html#search
//!
//! The parameters are parsed against the store's SearchParameter registry
//! (`fhir_core::search::query`), run by the store one page at a time, and the page is written
//! out with its links: `self` (the parameters understood, in canonical order), `next` and
//! `previous` (the same with a signed cursor). Parameters left out under lenient handling are
//! reported in an OperationOutcome entry (`search.mode = outcome`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::Utc;
use fhir_core::bundle::{Bundle, Entry, EntrySearch, Link};
use fhir_core::outcome::operation_outcome;
use fhir_core::search::query::{SearchQuery, Summary};
use fhir_core::search::{Handling, SearchOptions};
use fhir_core::subset::{Subset, subset};
use fhir_core::{Issue, IssueCode, ResourceType, Severity};
use serde_json::value::RawValue;
use store::{Found, MAX_INCLUDED, SearchPage};

use smart::Interaction;

use crate::auth::Principal;
use crate::auth::access::{permits_text, require, restrict, restrict_nested};
use crate::error::ApiError;
use crate::http::{Negotiated, QueryParams, TypePath, fhir_body};
use crate::state::AppState;

/// Parameters about the response format, not the search.
const FORMAT_PARAMS: [&str; 2] = ["_format", "_pretty"];

/// The most criteria (AND) one search may have per type, beyond which it is refused as too
/// costly: each is a subquery to plan and run, and hundreds take the planner minutes.
pub const MAX_CRITERIA: usize = 32;

/// The parameters a search understands: format parameters left out. A NUL character cannot
/// be stored or matched (PostgreSQL text has none): such a search is malformed.
fn search_params(params: &[(String, String)]) -> Result<Vec<(&str, &str)>, ApiError> {
    if params
        .iter()
        .any(|(name, value)| name.contains('\0') || value.contains('\0'))
    {
        return Err(ApiError::bad_request(
            "a search parameter holds a NUL character",
        ));
    }
    Ok(params
        .iter()
        .filter(|(name, _)| !FORMAT_PARAMS.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect())
}

/// Refuses a query with more than [`MAX_CRITERIA`] criteria on a type.
fn check_cost(query: &SearchQuery<'_>) -> Result<(), ApiError> {
    if query.types.iter().any(|t| t.criteria.len() > MAX_CRITERIA) {
        return Err(ApiError::BadRequest(Issue::error(
            IssueCode::TooCostly,
            format!("a search may combine at most {MAX_CRITERIA} criteria"),
        )));
    }
    Ok(())
}

/// `GET [base]/[type]?...`
pub async fn type_get(
    State(state): State<AppState>,
    principal: Principal,
    TypePath(rtype): TypePath,
    negotiated: Negotiated,
    headers: HeaderMap,
    params: QueryParams,
) -> Result<Response, ApiError> {
    search(
        &state,
        &principal,
        Some(rtype),
        negotiated,
        &headers,
        params.0,
    )
    .await
}

/// `POST [base]/[type]/_search`, parameters in the query string and the form body.
pub async fn type_post(
    State(state): State<AppState>,
    principal: Principal,
    TypePath(rtype): TypePath,
    negotiated: Negotiated,
    headers: HeaderMap,
    params: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = with_form(params, &headers, &body)?;
    search(
        &state,
        &principal,
        Some(rtype),
        negotiated,
        &headers,
        params,
    )
    .await
}

/// `GET [base]?...` (usually with `_type`).
pub async fn system_get(
    State(state): State<AppState>,
    principal: Principal,
    negotiated: Negotiated,
    headers: HeaderMap,
    params: QueryParams,
) -> Result<Response, ApiError> {
    search(&state, &principal, None, negotiated, &headers, params.0).await
}

/// `POST [base]/_search`.
pub async fn system_post(
    State(state): State<AppState>,
    principal: Principal,
    negotiated: Negotiated,
    headers: HeaderMap,
    params: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = with_form(params, &headers, &body)?;
    search(&state, &principal, None, negotiated, &headers, params).await
}

/// The query string's parameters, then the form body's (an empty body may have any or no
/// content type; a non-empty one must be `application/x-www-form-urlencoded`).
pub(crate) fn with_form(
    params: QueryParams,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut params = params.0;
    if body.is_empty() {
        return Ok(params);
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(ApiError::UnsupportedMediaType);
    }
    params.extend(url::form_urlencoded::parse(body).into_owned());
    Ok(params)
}

/// The search options of a request: `Prefer: handling=`, the configured page sizes.
pub fn options<'a>(state: &'a AppState, headers: &HeaderMap) -> SearchOptions<'a> {
    let handling = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(Handling::from_prefer)
        .find(|h| *h == Handling::Strict)
        .unwrap_or_default();
    SearchOptions {
        handling,
        default_count: state.config.default_page_size,
        max_count: state.config.max_page_size,
        server_base: Some(&state.base),
        now: Utc::now(),
    }
}

/// Parses `params` as a search of `rtype` (all types when `None`).
pub fn parse<'r>(
    state: &AppState,
    registry: &'r fhir_core::search::Registry,
    rtype: Option<ResourceType>,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<SearchQuery<'r>, ApiError> {
    let params = search_params(params)?;
    let query = SearchQuery::parse(registry, rtype, &params, &options(state, headers))
        .map_err(|e| ApiError::BadRequest(e.to_issue()))?;
    check_cost(&query)?;
    Ok(query)
}

/// The search of a conditional interaction (`If-None-Exist`, `PUT [type]?...`,
/// `DELETE [type]?...`): strict, since a parameter left out would widen what matches, and
/// with at least one criterion; limited to what the caller may search, so that a match the
/// caller could not find stays out of the decision. Returns the query and its canonical
/// text.
pub fn condition<'r>(
    state: &AppState,
    principal: &Principal,
    registry: &'r fhir_core::search::Registry,
    rtype: ResourceType,
    params: &[(String, String)],
) -> Result<(SearchQuery<'r>, String), ApiError> {
    let params = search_params(params)?;
    let mut options = options(state, &HeaderMap::new());
    options.handling = Handling::Strict;
    let mut query = SearchQuery::parse(registry, Some(rtype), &params, &options)
        .map_err(|e| ApiError::BadRequest(e.to_issue()))?;
    check_cost(&query)?;
    if query.types.iter().all(|t| t.criteria.is_empty()) {
        return Err(ApiError::bad_request(
            "a conditional interaction needs search criteria",
        ));
    }
    let text = query.query_string_with_cursor(None);
    let grant = require(principal, rtype, Interaction::Search)?;
    for type_query in &mut query.types {
        restrict_nested(principal, registry, &state.base, &mut type_query.criteria)?;
        restrict(registry, &state.base, type_query, &grant);
    }
    Ok((query, text))
}

async fn search(
    state: &AppState,
    principal: &Principal,
    rtype: Option<ResourceType>,
    Negotiated(format): Negotiated,
    headers: &HeaderMap,
    params: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let registry = state.store.registry()?;
    let mut query = parse(state, registry, rtype, headers, &params)?;
    authorize(state, principal, registry, &mut query, &params)?;
    let mut page = state.store.search(&query).await?;
    page.included.retain(|found| {
        let grant = principal
            .permissions
            .grants(found.resource_type, Interaction::Read);
        permits_text(state, found.resource_type, &grant, &found.content)
    });
    let bundle = searchset(&state.base, &query, page)?;
    let json = serde_json::to_string(&bundle).map_err(|e| ApiError::Internal(e.to_string()))?;
    fhir_body(StatusCode::OK, format, json)
}

/// Limits a search to what the caller may search: a type without a grant is refused (named
/// in `_type` or searched at type level) or left out (a system-level search without
/// `_type`); a restricted grant adds its criteria.
fn authorize<'r>(
    state: &AppState,
    principal: &Principal,
    registry: &'r fhir_core::search::Registry,
    query: &mut SearchQuery<'r>,
    params: &[(String, String)],
) -> Result<(), ApiError> {
    let named = query.resource_type.is_some() || params.iter().any(|(name, _)| name == "_type");
    let mut refused = None;
    query.types.retain_mut(|type_query| {
        let grant = principal
            .permissions
            .grants(type_query.resource_type, Interaction::Search);
        if !grant.is_allowed() {
            refused.get_or_insert(type_query.resource_type);
            return false;
        }
        restrict(registry, &state.base, type_query, &grant);
        true
    });
    for type_query in &mut query.types {
        restrict_nested(principal, registry, &state.base, &mut type_query.criteria)?;
    }
    match refused {
        Some(rtype) if named => require(principal, rtype, Interaction::Search).map(|_| ()),
        _ if query.types.is_empty() => Err(ApiError::Forbidden(
            "the access token grants no search on any type".into(),
        )),
        _ => Ok(()),
    }
}

/// The Bundle of one page.
fn searchset(base: &str, query: &SearchQuery<'_>, page: SearchPage) -> Result<Bundle, ApiError> {
    let path = match query.resource_type {
        Some(rtype) => format!("{base}/{rtype}"),
        None => base.to_owned(),
    };
    let link = |relation: &'static str, cursor: Option<&str>| {
        let query = query.query_string_with_cursor(cursor);
        Link {
            relation,
            url: if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{query}")
            },
        }
    };
    let mut links = vec![link("self", query.cursor.as_deref())];
    if let Some(next) = &page.next {
        links.push(link("next", Some(next)));
    }
    if let Some(previous) = &page.previous {
        links.push(link("previous", Some(previous)));
    }

    let shape = match (&query.elements, query.summary) {
        (Some(elements), _) => Some(Subset::Elements(elements)),
        (None, Some(summary)) if summary != Summary::False => Some(Subset::Summary(summary)),
        _ => None,
    };
    let mut entries = Vec::with_capacity(page.matches.len() + page.included.len() + 1);
    for found in page.matches {
        entries.push(entry(base, found, "match", shape)?);
    }
    for found in page.included {
        entries.push(entry(base, found, "include", shape)?);
    }
    let mut warnings: Vec<Issue> = query.ignored.iter().map(|e| e.to_warning()).collect();
    if page.included_truncated {
        warnings.push(Issue {
            severity: Severity::Warning,
            code: IssueCode::TooCostly,
            diagnostics: format!(
                "_include and _revinclude add at most {MAX_INCLUDED} resources to a page; \
                 the rest were left out (ask for smaller pages)"
            ),
            expression: None,
        });
    }
    if !warnings.is_empty() {
        let outcome = operation_outcome(&warnings).to_string();
        entries.push(Entry {
            full_url: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            resource: Some(raw(outcome)?),
            search: Some(EntrySearch { mode: "outcome" }),
            request: None,
            response: None,
        });
    }
    Ok(Bundle::searchset(page.total, links, entries))
}

fn entry(
    base: &str,
    found: Found,
    mode: &'static str,
    shape: Option<Subset<'_>>,
) -> Result<Entry, ApiError> {
    let content = match shape {
        None => found.content,
        Some(shape) => {
            let resource: serde_json::Value = serde_json::from_str(&found.content)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            subset(&resource, shape).to_string()
        }
    };
    Ok(Entry {
        full_url: format!("{base}/{}/{}", found.resource_type, found.id),
        resource: Some(raw(content)?),
        search: Some(EntrySearch { mode }),
        request: None,
        response: None,
    })
}

fn raw(json: String) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(json).map_err(|e| ApiError::Internal(e.to_string()))
}
