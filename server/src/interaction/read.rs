//! read: `GET [base]/[type]/[id]`, with conditional read (If-None-Match, If-Modified-Since).
//! http://hl7.org/fhir/R4/http.html#read

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use smart::Interaction;

use crate::auth::Principal;
use crate::auth::access::{permits_text, require};
use crate::error::ApiError;
use crate::http::{
    InstancePath, Negotiated, not_modified, not_modified_response, with_version_headers,
};
use crate::interaction::stored_body;
use crate::state::AppState;

/// Answers the current version; 404 when unknown (or not granted to the caller), 410 when
/// deleted, 304 when unchanged.
pub async fn read(
    State(state): State<AppState>,
    principal: Principal,
    InstancePath(rtype, id): InstancePath,
    Negotiated(format): Negotiated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let grant = require(&principal, rtype, Interaction::Read)?;
    let not_found = || ApiError::NotFound(format!("{rtype}/{id}"));
    let current = state.store.read(rtype, &id).await?.ok_or_else(not_found)?;
    let Some(content) = current.content.filter(|_| !current.deleted) else {
        // A deletion says nothing about whose the resource was: only for full access.
        return Err(if grant.is_unrestricted() {
            ApiError::Gone(format!("{rtype}/{id}"))
        } else {
            not_found()
        });
    };
    if !permits_text(&state, rtype, &grant, &content) {
        return Err(not_found());
    }
    let response = if not_modified(&headers, current.version, current.last_updated) {
        not_modified_response()
    } else {
        stored_body(format, content)?
    };
    Ok(with_version_headers(
        response,
        current.version,
        current.last_updated,
        None,
    ))
}
