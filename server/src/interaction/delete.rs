//! delete: `DELETE [base]/[type]/[id]`, a versioned tombstone; and conditional delete,
//! `DELETE [base]/[type]?search`.
//! http://hl7.org/fhir/R4/http.html#delete

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use store::Conditional;

use smart::Interaction;

use crate::auth::Principal;
use crate::auth::access::{require, restrict};
use crate::error::ApiError;
use crate::http::{InstancePath, QueryParams, TypePath, etag};
use crate::interaction::search;
use crate::interaction::update::check_stored;
use crate::state::AppState;

/// Deletes the resource: 204 whether it existed, was deleted already, or never existed
/// (deleting is idempotent). A new tombstone version carries an `ETag`.
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    InstancePath(rtype, id): InstancePath,
) -> Result<Response, ApiError> {
    let grant = require(&principal, rtype, Interaction::Delete)?;
    check_stored(&state, rtype, &id, &grant).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some((version, _)) = state.store.delete(rtype, &id).await?
        && let Ok(value) = HeaderValue::from_str(&etag(version))
    {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// Conditional delete, `DELETE [base]/[type]?search` (http://hl7.org/fhir/R4/http.html#cdelete):
/// deletes the matches, at most `FHIR_CONDITIONAL_DELETE_MAX` of them (more: 412, nothing
/// deleted); 204 also when nothing matched.
pub async fn conditional(
    State(state): State<AppState>,
    principal: Principal,
    TypePath(rtype): TypePath,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let registry = state.store.registry()?;
    let grant = require(&principal, rtype, Interaction::Delete)?;
    let (mut query, text) = search::condition(&state, &principal, registry, rtype, &params.0)?;
    restrict(registry, &state.base, &mut query.types[0], &grant);
    let condition = Conditional {
        query: &query.types[0],
        text: &text,
    };
    state
        .store
        .delete_conditional(condition, state.config.conditional_delete_max)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
