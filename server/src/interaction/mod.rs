//! The FHIR RESTful interactions and operations, one file each, named with the spec's words.

pub mod analytics;
pub mod capabilities;
pub mod create;
pub mod delete;
pub mod everything;
pub mod export;
pub mod history;
pub mod patch;
pub mod read;
pub mod search;
pub mod smart_configuration;
pub mod transaction;
pub mod update;
pub mod validate;
pub mod vread;

use fhir_core::resource::{self, Format};
use fhir_core::rules::patient_emails;
use fhir_core::{Issue, IssueCode, ResourceType};
use serde_json::Value;
use store::Claim;

use smart::{Grant, Interaction};

use crate::auth::Principal;
use crate::auth::access::{permits, require};
use crate::error::ApiError;
use crate::http::FhirBody;
use crate::state::AppState;

/// The checks a write (`interaction`) of `resource` to `rtype` passes once parsed: 403
/// unless the caller's scopes grant it on that resource (a patient's compartment: the
/// resource must be in it); then, with `FHIR_VALIDATE_PROFILES`, 422 unless the resource
/// conforms to the profiles it claims that Ferrum knows. Returns the caller's grant.
fn check_write(
    state: &AppState,
    principal: &Principal,
    rtype: ResourceType,
    interaction: Interaction,
    resource: &Value,
) -> Result<Grant, ApiError> {
    let grant = require(principal, rtype, interaction)?;
    let registry = state.store.registry()?;
    if !permits(registry, rtype, &grant, resource, &state.base) {
        return Err(ApiError::Forbidden(format!(
            "the access token does not grant this {} on {rtype}: the resource is outside \
             the patient compartment or the scope's constraints",
            interaction.name()
        )));
    }
    if state.config.validate_profiles {
        let issues = validate::claimed_profile_issues(resource)?;
        if issues
            .iter()
            .any(|i| i.severity == fhir_core::Severity::Error)
        {
            return Err(ApiError::Unprocessable(issues));
        }
    }
    Ok(grant)
}

/// Parses and validates a write's body as a resource of `rtype`.
fn parse_body(body: &FhirBody, rtype: ResourceType) -> Result<Value, ApiError> {
    resource::parse(&body.bytes, body.format, rtype).map_err(ApiError::Invalid)
}

/// The uniqueness claims a resource makes under the rules switched on.
fn claims(state: &AppState, rtype: ResourceType, resource: &Value) -> Vec<Claim> {
    if rtype != ResourceType::Patient || !state.config.unique_patient_email {
        return Vec::new();
    }
    patient_emails(resource)
        .into_iter()
        .map(|u| Claim {
            rule: u.rule,
            value: u.value,
            expression: u.expression,
        })
        .collect()
}

/// Answers a resource read in the negotiated format: JSON as stored, or converted to XML.
fn stored_body(format: Format, content: String) -> Result<axum::response::Response, ApiError> {
    crate::http::fhir_body(axum::http::StatusCode::OK, format, content)
}

/// An `id` in a body that must name the URL's resource.
fn check_body_id(resource: &Value, url_id: &str) -> Result<(), ApiError> {
    match resource::body_id(resource) {
        Some(id) if id == url_id => Ok(()),
        Some(_) => Err(ApiError::Invalid(vec![Issue::at(
            IssueCode::Invalid,
            "id",
            "the id in the body does not match the id in the URL",
        )])),
        None => Err(ApiError::Invalid(vec![Issue::at(
            IssueCode::Required,
            "id",
            "an update must carry the resource id in the body",
        )])),
    }
}
