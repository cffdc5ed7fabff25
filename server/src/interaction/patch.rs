//! patch: `PATCH [base]/[type]/[id]` with a JSON Patch (RFC 6902,
//! `application/json-patch+json`) or a FHIRPath Patch (a Parameters resource,
//! `application/fhir+json` or `application/fhir+xml`), http://hl7.org/fhir/R4/http.html#patch
//! and http://hl7.org/fhir/R4/fhirpatch.html.
//!
//! Both kinds take one way ([`fhir_core::patch`] reads and applies them): the patch applies
//! to the current version, all of it or nothing; the result goes through the validation of
//! any write, keeps its type and id, and is stored as the next version, with `If-Match`
//! honoured. Concurrent writes between the read and the write are detected (the write
//! expects the version the patch was applied to) and the patch is applied again.
//!
//! What a patch that fails is answered with:
//!
//! - 415: a `Content-Type` that names neither kind;
//! - 400: a body that is not a patch of the kind its `Content-Type` names (not a JSON Patch
//!   array; not a Parameters, or one whose parameters are not FHIRPath Patch operations; a
//!   path outside the FHIRPath subset);
//! - 422: an operation that does not apply (a failed `test`, a JSON Pointer to nothing; a
//!   FHIRPath that selects no element, or several, where one is needed, an index outside the
//!   list, a value of the wrong type), or a result that changes the type or id or is not a
//!   valid resource.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use fhir_core::patch::{Patch, PatchError};
use fhir_core::resource::{self, Format};
use fhir_core::{Id, Issue, IssueCode, ResourceType};
use serde_json::Value;
use smart::Interaction;
use store::StoreError;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::{InstancePath, Negotiated, Return, body_format, if_match, media_type};
use crate::interaction::update::{check_stored, stored_response};
use crate::interaction::{check_write, claims};
use crate::state::AppState;

/// The media type of a JSON Patch.
pub const JSON_PATCH: &str = "application/json-patch+json";

/// How often a patch is applied again when another write came first.
const ATTEMPTS: usize = 3;

/// Applies the patch in the body to the current version.
pub async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    InstancePath(rtype, id): InstancePath,
    Negotiated(format): Negotiated,
    prefer: Return,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = read(&headers, &body)?;
    let expected = if_match(&headers)?;
    for _ in 0..ATTEMPTS {
        let current = state
            .store
            .read(rtype, &id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("{rtype}/{id}")))?;
        let Some(content) = current.content.filter(|_| !current.deleted) else {
            return Err(ApiError::Gone(format!("{rtype}/{id}")));
        };
        if expected.is_some_and(|v| v != current.version) {
            return Err(ApiError::from(StoreError::VersionConflict {
                current: Some(current.version),
            }));
        }
        let resource = apply(rtype, &id, &content, &patch)?;
        let grant = check_write(&state, &principal, rtype, Interaction::Update, &resource)?;
        check_stored(&state, rtype, &id, &grant).await?;
        let claims = claims(&state, rtype, &resource);
        let stored = match state
            .store
            .update(rtype, &id, resource, Some(current.version), &claims)
            .await
        {
            Ok(stored) => stored,
            // Another write came between the read and this one: patch that version.
            Err(StoreError::VersionConflict { .. }) if expected.is_none() => continue,
            Err(error) => return Err(error.into()),
        };
        return stored_response(&state, rtype, stored, format, prefer);
    }
    Err(ApiError::Conflict(Issue::error(
        IssueCode::Conflict,
        "the resource kept changing while the patch was applied; retry",
    )))
}

/// Reads the body as the kind of patch its `Content-Type` names.
fn read(headers: &HeaderMap, body: &[u8]) -> Result<Patch, ApiError> {
    let media = media_type(headers);
    if media.as_deref() == Some(JSON_PATCH) {
        return Ok(Patch::json(body)?);
    }
    let format = media
        .as_deref()
        .and_then(body_format)
        .ok_or(ApiError::UnsupportedMediaType)?;
    let parameters = resource::read(body, format).map_err(ApiError::Invalid)?;
    fhirpath(&parameters)
}

/// Reads a FHIRPath Patch from its Parameters resource.
pub(crate) fn fhirpath(parameters: &Value) -> Result<Patch, ApiError> {
    Ok(Patch::fhirpath(parameters)?)
}

/// Reads a JSON Patch document.
pub(crate) fn json(body: &[u8]) -> Result<Patch, ApiError> {
    Ok(Patch::json(body)?)
}

/// Applies `patch` to `content`, the stored version of `rtype/id`: the result, checked as any
/// write is, without the server-owned `meta.versionId` and `meta.lastUpdated`; 422 when the
/// patch does not apply, changes the type or id, or leaves an invalid resource.
pub(crate) fn apply(
    rtype: ResourceType,
    id: &Id,
    content: &str,
    patch: &Patch,
) -> Result<Value, ApiError> {
    let mut resource: Value =
        serde_json::from_str(content).map_err(|e| ApiError::Internal(e.to_string()))?;
    patch.apply(&mut resource)?;
    if resource["resourceType"] != rtype.as_str() || resource["id"] != id.as_str() {
        return Err(ApiError::Unprocessable(vec![Issue::error(
            IssueCode::Processing,
            "a patch may not change the resource's type or id",
        )]));
    }
    // Server-owned: the next version is stamped anew.
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty()
            && let Some(object) = resource.as_object_mut()
        {
            object.remove("meta");
        }
    }
    let bytes = serde_json::to_vec(&resource).map_err(|e| ApiError::Internal(e.to_string()))?;
    resource::parse(&bytes, Format::Json, rtype).map_err(ApiError::Unprocessable)
}

/// A patch that cannot be read is a bad request (400); one that does not apply cannot be
/// processed (422). The messages name operations and paths, never values.
impl From<PatchError> for ApiError {
    fn from(error: PatchError) -> Self {
        match error {
            PatchError::Invalid {
                at: Some(at),
                message,
            } => ApiError::BadRequest(Issue::at(IssueCode::Invalid, at, message)),
            PatchError::Invalid { at: None, message } => {
                ApiError::BadRequest(Issue::error(IssueCode::Structure, message))
            }
            not_applicable @ PatchError::NotApplicable { .. } => {
                ApiError::Unprocessable(vec![Issue::error(
                    IssueCode::Processing,
                    format!("the patch does not apply: {not_applicable}"),
                )])
            }
        }
    }
}
