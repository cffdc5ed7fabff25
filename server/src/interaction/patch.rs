//! patch: `PATCH [base]/[type]/[id]` with a JSON Patch (RFC 6902,
//! `application/json-patch+json`), http://hl7.org/fhir/R4/http.html#patch.
//!
//! The patch applies to the current version, all of it or nothing; the result goes through
//! the validation of any write, keeps its type and id, and is stored as the next version,
//! with `If-Match` honoured. A patch that cannot apply (a `test` that fails, a path that is
//! not there) or whose result is not a valid resource is 422; a body that is not a JSON
//! Patch is 400. Concurrent writes between the read and the write are detected (the write
//! expects the version the patch was applied to) and the patch is applied again.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use fhir_core::resource::{self, Format};
use fhir_core::{Id, Issue, IssueCode, ResourceType};
use serde_json::Value;
use smart::Interaction;
use store::StoreError;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::{InstancePath, Negotiated, Return, if_match};
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
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() != Some(JSON_PATCH) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let operations = operations(&body)?;
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
        let resource = apply(rtype, &id, &content, &operations)?;
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

/// Reads a JSON Patch document: 400 when it is not one.
pub(crate) fn operations(body: &[u8]) -> Result<json_patch::Patch, ApiError> {
    serde_json::from_slice(body).map_err(|_| {
        ApiError::BadRequest(Issue::error(
            IssueCode::Structure,
            "the body is not a JSON Patch (an array of operations)",
        ))
    })
}

/// Applies `operations` to `content`, the stored version of `rtype/id`: the result, checked
/// as any write is, without the server-owned `meta.versionId` and `meta.lastUpdated`; 422
/// when the patch does not apply, changes the type or id, or leaves an invalid resource.
pub(crate) fn apply(
    rtype: ResourceType,
    id: &Id,
    content: &str,
    operations: &json_patch::Patch,
) -> Result<Value, ApiError> {
    let mut resource: Value =
        serde_json::from_str(content).map_err(|e| ApiError::Internal(e.to_string()))?;
    json_patch::patch(&mut resource, operations).map_err(|error| {
        ApiError::Unprocessable(vec![Issue::error(
            IssueCode::Processing,
            format!("the patch does not apply: {}", describe(&error)),
        )])
    })?;
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

/// What went wrong, without quoting values (they may be patient data): the operation's
/// position and the kind of failure.
fn describe(error: &json_patch::PatchError) -> String {
    format!("operation {} failed: {}", error.operation, error.kind)
}
