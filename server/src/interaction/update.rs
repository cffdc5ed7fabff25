//! update: `PUT [base]/[type]/[id]`, update-as-create for a new id, and `If-Match`.
//! http://hl7.org/fhir/R4/http.html#update

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::error::ApiError;
use crate::http::{
    FhirBody, InstancePath, Negotiated, Return, if_match, with_version_headers, write_response,
};
use crate::interaction::{check_body_id, claims, parse_body};
use crate::state::AppState;

/// Stores a new version (200), or the first one under the client's id (201).
pub async fn update(
    State(state): State<AppState>,
    InstancePath(rtype, id): InstancePath,
    Negotiated(format): Negotiated,
    prefer: Return,
    headers: HeaderMap,
    body: FhirBody,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let resource = parse_body(&body, rtype)?;
    check_body_id(&resource, id.as_str())?;
    let claims = claims(&state, rtype, &resource);
    let stored = state
        .store
        .update(rtype, &id, resource, expected, &claims)
        .await?;
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
