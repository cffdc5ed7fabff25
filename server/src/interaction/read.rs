//! read: `GET [base]/[type]/[id]`, with conditional read (If-None-Match, If-Modified-Since).
//! http://hl7.org/fhir/R4/http.html#read

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::http::{InstancePath, Negotiated, not_modified, with_version_headers};
use crate::interaction::stored_body;
use crate::state::AppState;

/// Answers the current version; 404 when unknown, 410 when deleted, 304 when unchanged.
pub async fn read(
    State(state): State<AppState>,
    InstancePath(rtype, id): InstancePath,
    Negotiated(format): Negotiated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let current = state
        .store
        .read(rtype, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{rtype}/{id}")))?;
    let Some(content) = current.content.filter(|_| !current.deleted) else {
        return Err(ApiError::Gone(format!("{rtype}/{id}")));
    };
    let response = if not_modified(&headers, current.version, current.last_updated) {
        StatusCode::NOT_MODIFIED.into_response()
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
