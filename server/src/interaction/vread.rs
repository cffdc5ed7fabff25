//! vread: `GET [base]/[type]/[id]/_history/[vid]`.
//! http://hl7.org/fhir/R4/http.html#vread

use axum::extract::State;
use axum::response::Response;

use crate::error::ApiError;
use crate::http::{Negotiated, VersionPath, with_version_headers};
use crate::interaction::stored_body;
use crate::state::AppState;

/// Answers one version; 404 when unknown, 410 when that version is a deletion.
pub async fn vread(
    State(state): State<AppState>,
    VersionPath(rtype, id, version): VersionPath,
    Negotiated(format): Negotiated,
) -> Result<Response, ApiError> {
    let row = state
        .store
        .vread(rtype, &id, version)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{rtype}/{id} version {version}")))?;
    let Some(content) = row.content else {
        return Err(ApiError::Gone(format!("{rtype}/{id} version {version}")));
    };
    Ok(with_version_headers(
        stored_body(format, content)?,
        row.version,
        row.last_updated,
        None,
    ))
}
