//! update: `PUT [base]/[type]/[id]`, update-as-create for a new id, and `If-Match`; and
//! conditional update, `PUT [base]/[type]?search`.
//! http://hl7.org/fhir/R4/http.html#update

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir_core::resource;
use fhir_core::{Id, Issue, IssueCode};
use smart::{Grant, Interaction};
use store::Conditional;

use crate::auth::Principal;
use crate::auth::access::{permits_text, restrict};
use crate::error::ApiError;
use crate::http::{
    FhirBody, InstancePath, Negotiated, QueryParams, Return, TypePath, if_match,
    with_version_headers, write_response,
};
use crate::interaction::{check_body_id, check_write, claims, parse_body, search};
use crate::state::AppState;

/// Stores a new version (200), or the first one under the client's id (201).
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    InstancePath(rtype, id): InstancePath,
    Negotiated(format): Negotiated,
    prefer: Return,
    headers: HeaderMap,
    body: FhirBody,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let resource = parse_body(&body, rtype)?;
    check_body_id(&resource, id.as_str())?;
    let grant = check_write(&state, &principal, rtype, Interaction::Update, &resource)?;
    check_stored(&state, rtype, &id, &grant).await?;
    let claims = claims(&state, rtype, &resource);
    let stored = state
        .store
        .update(rtype, &id, resource, expected, &claims)
        .await?;
    stored_response(&state, rtype, stored, format, prefer)
}

/// Conditional update, `PUT [base]/[type]?search` (http://hl7.org/fhir/R4/http.html#cond-update):
/// no match creates (201, under the body's id when it has one), one match is updated (200;
/// a body id must be the match's), several are 412.
#[expect(
    clippy::too_many_arguments,
    reason = "an axum handler: one per extractor"
)]
pub async fn conditional(
    State(state): State<AppState>,
    principal: Principal,
    TypePath(rtype): TypePath,
    Negotiated(format): Negotiated,
    prefer: Return,
    headers: HeaderMap,
    params: QueryParams,
    body: FhirBody,
) -> Result<Response, ApiError> {
    let registry = state.store.registry()?;
    let (mut query, text) = search::condition(&state, &principal, registry, rtype, &params.0)?;
    let expected = if_match(&headers)?;
    let resource = parse_body(&body, rtype)?;
    let grant = check_write(&state, &principal, rtype, Interaction::Update, &resource)?;
    // The match is updated: it must be granted too.
    restrict(registry, &state.base, &mut query.types[0], &grant);
    let body_id = resource::body_id(&resource)
        .map(|id| {
            id.parse::<Id>().map_err(|_| {
                ApiError::Invalid(vec![Issue::at(IssueCode::Value, "id", "not a valid id")])
            })
        })
        .transpose()?;
    let claims = claims(&state, rtype, &resource);
    let condition = Conditional {
        query: &query.types[0],
        text: &text,
    };
    let stored = state
        .store
        .update_conditional(rtype, condition, resource, body_id, expected, &claims)
        .await?;
    stored_response(&state, rtype, stored, format, prefer)
}

/// The answer to an update: 201 with `Location` when it created the resource, else 200;
/// the body as `Prefer: return=` asks; `ETag` and `Last-Modified`.
pub(super) fn stored_response(
    state: &AppState,
    rtype: fhir_core::ResourceType,
    stored: store::Stored,
    format: fhir_core::resource::Format,
    prefer: Return,
) -> Result<Response, ApiError> {
    let id = &stored.id;
    let (status, location) = if stored.created {
        (
            StatusCode::CREATED,
            Some(format!(
                "{}/{rtype}/{id}/_history/{}",
                state.base, stored.version
            )),
        )
    } else {
        (StatusCode::OK, None)
    };
    let response = write_response(
        status,
        format,
        prefer,
        stored.content,
        &format!("{rtype}/{id} is now at version {}", stored.version),
    )?;
    Ok(with_version_headers(
        response,
        stored.version,
        stored.last_updated,
        location,
    ))
}

/// With access limited by a grant, the stored version of `rtype/id` (when there is one) must
/// be granted too: a write could otherwise take over a resource outside the compartment.
pub(super) async fn check_stored(
    state: &AppState,
    rtype: fhir_core::ResourceType,
    id: &Id,
    grant: &Grant,
) -> Result<(), ApiError> {
    if grant.is_unrestricted() {
        return Ok(());
    }
    let current = state.store.read(rtype, id).await?;
    match current.and_then(|c| c.content.filter(|_| !c.deleted)) {
        Some(content) if !permits_text(state, rtype, grant, &content) => Err(ApiError::Forbidden(
            format!("the access token does not grant writing {rtype}/{id}"),
        )),
        _ => Ok(()),
    }
}
