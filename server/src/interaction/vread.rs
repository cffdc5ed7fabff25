//! vread: `GET [base]/[type]/[id]/_history/[vid]`.
//! http://hl7.org/fhir/R4/http.html#vread

use axum::extract::State;
use axum::response::Response;

use smart::Interaction;

use crate::auth::Principal;
use crate::auth::access::{permits_text, require};
use crate::error::ApiError;
use crate::http::{Negotiated, VersionPath, with_version_headers};
use crate::interaction::stored_body;
use crate::state::AppState;

/// Answers one version; 404 when unknown (or not granted to the caller), 410 when that
/// version is a deletion.
pub async fn vread(
    State(state): State<AppState>,
    principal: Principal,
    VersionPath(rtype, id, version): VersionPath,
    Negotiated(format): Negotiated,
) -> Result<Response, ApiError> {
    let grant = require(&principal, rtype, Interaction::Read)?;
    let not_found = || ApiError::NotFound(format!("{rtype}/{id} version {version}"));
    let row = state
        .store
        .vread(rtype, &id, version)
        .await?
        .ok_or_else(not_found)?;
    let Some(content) = row.content else {
        return Err(if grant.is_unrestricted() {
            ApiError::Gone(format!("{rtype}/{id} version {version}"))
        } else {
            not_found()
        });
    };
    if !permits_text(&state, rtype, &grant, &content) {
        return Err(not_found());
    }
    Ok(with_version_headers(
        stored_body(format, content)?,
        row.version,
        row.last_updated,
        None,
    ))
}
