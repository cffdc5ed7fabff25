//! delete: `DELETE [base]/[type]/[id]`, a versioned tombstone.
//! http://hl7.org/fhir/R4/http.html#delete

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::http::{InstancePath, etag};
use crate::state::AppState;

/// Deletes the resource: 204 whether it existed, was deleted already, or never existed
/// (deleting is idempotent). A new tombstone version carries an `ETag`.
pub async fn delete(
    State(state): State<AppState>,
    InstancePath(rtype, id): InstancePath,
) -> Result<Response, ApiError> {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some((version, _)) = state.store.delete(rtype, &id).await?
        && let Ok(value) = HeaderValue::from_str(&etag(version))
    {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}
