//! `$validate` on every type and instance
//! (http://hl7.org/fhir/R4/resource-operation-validate.html), and the profile check every
//! write passes.
//!
//! - `POST [type]/$validate` with the resource, or a `Parameters` body (`resource`, `mode`,
//!   `profile`); `mode` and `profile` may also be query parameters;
//! - `POST [type]/[id]/$validate`: the same, `mode` `update` by default, so the body's id must
//!   be the URL's; `mode=delete` needs no resource and checks that there is one to delete;
//! - `GET [type]/[id]/$validate`: the stored current version.
//!
//! The answer is 200 with an OperationOutcome whether the resource is valid or not: its
//! issues are what the write would be refused for (errors), or one information issue. The
//! checks are those of a write: the R4 definitions, then the profiles (the `profile` parameter,
//! which must be one Ferrum knows, or else the known ones the resource claims in
//! `meta.profile`). A request the operation cannot run (no resource, an unknown profile, a
//! bad mode) is 400.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use fhir_core::resource::{self, Format};
use fhir_core::validation::{self, Profile};
use fhir_core::{Issue, IssueCode, ResourceType};
use serde_json::Value;
use smart::Interaction;

use crate::auth::Principal;
use crate::auth::access::{permits_text, require};
use crate::error::{ApiError, outcome_response};
use crate::http::{FhirBody, InstancePath, TypePath};
use crate::interaction::check_body_id;
use crate::state::AppState;

/// The operation's name and the canonical url of its definition.
pub const OPERATION: (&str, &str) = (
    "validate",
    "http://hl7.org/fhir/OperationDefinition/Resource-validate",
);

/// What a validation is asked for (`ResourceValidationMode`, plus general validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    General,
    Create,
    Update,
    Delete,
}

impl Mode {
    fn parse(code: &str) -> Result<Self, ApiError> {
        match code {
            "create" => Ok(Mode::Create),
            "update" => Ok(Mode::Update),
            "delete" => Ok(Mode::Delete),
            _ => Err(bad_parameter("mode", "create, update or delete")),
        }
    }
}

/// The operation's input, from a Parameters body or the query.
#[derive(Debug, Default)]
struct Input {
    resource: Option<Value>,
    mode: Option<String>,
    profile: Option<String>,
}

/// `POST [type]/$validate`.
pub async fn type_level(
    principal: Principal,
    TypePath(rtype): TypePath,
    RawQuery(query): RawQuery,
    body: FhirBody,
) -> Result<Response, ApiError> {
    let input = input(query.as_deref(), Some(&body))?;
    let mode = input
        .mode
        .as_deref()
        .map_or(Ok(Mode::General), Mode::parse)?;
    if mode == Mode::Delete {
        return Err(ApiError::bad_request(
            "mode delete validates the deletion of an existing resource: \
             use [type]/[id]/$validate",
        ));
    }
    let interaction = if mode == Mode::Update {
        Interaction::Update
    } else {
        Interaction::Create
    };
    require(&principal, rtype, interaction)?;
    let profile = requested_profile(input.profile.as_deref())?;
    let resource = input
        .resource
        .ok_or_else(|| ApiError::bad_request("no resource to validate"))?;
    let mut issues = check(rtype, &resource, profile)?;
    if mode == Mode::Update && resource::body_id(&resource).is_none() {
        issues.push(Issue::at(
            IssueCode::Required,
            "id",
            "an update must carry the resource id in the body",
        ));
    }
    Ok(answer(issues))
}

/// `POST [type]/[id]/$validate`.
pub async fn instance_post(
    State(state): State<AppState>,
    principal: Principal,
    InstancePath(rtype, id): InstancePath,
    RawQuery(query): RawQuery,
    body: Option<FhirBody>,
) -> Result<Response, ApiError> {
    let input = input(query.as_deref(), body.as_ref())?;
    let mode = input
        .mode
        .as_deref()
        .map_or(Ok(Mode::Update), Mode::parse)?;
    let profile = requested_profile(input.profile.as_deref())?;
    if mode == Mode::Delete {
        let grant = require(&principal, rtype, Interaction::Delete)?;
        let found = state
            .store
            .read(rtype, &id)
            .await?
            .and_then(|current| current.content.filter(|_| !current.deleted))
            .is_some_and(|content| permits_text(&state, rtype, &grant, &content));
        return if found {
            Ok(answer(Vec::new()))
        } else {
            Err(ApiError::NotFound(format!("{rtype}/{id}")))
        };
    }
    let interaction = if mode == Mode::Create {
        Interaction::Create
    } else {
        Interaction::Update
    };
    require(&principal, rtype, interaction)?;
    let resource = input
        .resource
        .ok_or_else(|| ApiError::bad_request("no resource to validate"))?;
    let mut issues = check(rtype, &resource, profile)?;
    if mode != Mode::Create
        && let Err(ApiError::Invalid(mismatch)) = check_body_id(&resource, id.as_str())
    {
        issues.extend(mismatch);
    }
    Ok(answer(issues))
}

/// `GET [type]/[id]/$validate`: the stored current version.
pub async fn instance_get(
    State(state): State<AppState>,
    principal: Principal,
    InstancePath(rtype, id): InstancePath,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let input = input(query.as_deref(), None)?;
    if input.mode.is_some() {
        return Err(ApiError::bad_request(
            "mode needs a resource: POST it to [type]/[id]/$validate",
        ));
    }
    let profile = requested_profile(input.profile.as_deref())?;
    let grant = require(&principal, rtype, Interaction::Read)?;
    let not_found = || ApiError::NotFound(format!("{rtype}/{id}"));
    let current = state.store.read(rtype, &id).await?.ok_or_else(not_found)?;
    let content = current
        .content
        .filter(|_| !current.deleted)
        .filter(|content| permits_text(&state, rtype, &grant, content))
        .ok_or_else(not_found)?;
    let resource: Value = serde_json::from_str(&content)
        .map_err(|e| ApiError::Internal(format!("stored resource is not JSON: {e}")))?;
    Ok(answer(check(rtype, &resource, profile)?))
}

/// The issues of a write of `resource` to `rtype`: the R4 definitions first; when those
/// hold, `profile`, or else the known profiles the resource claims.
fn check(
    rtype: ResourceType,
    resource: &Value,
    profile: Option<&Profile>,
) -> Result<Vec<Issue>, ApiError> {
    let text = resource.to_string();
    if let Err(issues) = resource::parse(text.as_bytes(), Format::Json, rtype) {
        return Ok(issues);
    }
    match profile {
        Some(profile) => Ok(profile.check(resource)),
        None => claimed_profile_issues(resource),
    }
}

/// The issues of `resource` against the profiles it claims in `meta.profile` that Ferrum
/// knows (a claim of an unknown profile is not checked). Internal error when the profile
/// definitions are broken.
pub(crate) fn claimed_profile_issues(resource: &Value) -> Result<Vec<Issue>, ApiError> {
    let Some(claims) = resource.pointer("/meta/profile").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let profiles = validation::profiles().map_err(|e| ApiError::Internal(e.diagnostics))?;
    Ok(claims
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|url| profiles.get(url))
        .flat_map(|profile| profile.check(resource))
        .collect())
}

/// The profile named by the `profile` parameter; 400 when Ferrum does not know it.
fn requested_profile(url: Option<&str>) -> Result<Option<&'static Profile>, ApiError> {
    let Some(url) = url else {
        return Ok(None);
    };
    let profiles = validation::profiles().map_err(|e| ApiError::Internal(e.diagnostics))?;
    profiles.get(url).map(Some).ok_or_else(|| {
        ApiError::BadRequest(Issue::at(
            IssueCode::NotSupported,
            "profile",
            "the profile is not one this server can validate against",
        ))
    })
}

/// The operation's input: the body (a `Parameters` resource, or the resource itself) and the
/// query (`mode`, `profile`; a body's parameters win).
fn input(query: Option<&str>, body: Option<&FhirBody>) -> Result<Input, ApiError> {
    let mut input = Input::default();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "mode" => input.mode = Some(value.into_owned()),
            "profile" => input.profile = Some(value.into_owned()),
            // Formatting parameters of the response, as on every interaction.
            "_format" | "_pretty" => {}
            _ => return Err(bad_parameter(&name, "mode or profile")),
        }
    }
    let Some(body) = body.filter(|b| !b.bytes.is_empty()) else {
        return Ok(input);
    };
    // XML carries the resource itself (Parameters are read as JSON only).
    let value = resource::read(&body.bytes, body.format).map_err(ApiError::Invalid)?;
    if value.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        input.resource = Some(value);
        return Ok(input);
    }
    for parameter in value
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| parameter.get(*k).and_then(Value::as_str))
                .map(str::to_owned)
        };
        match parameter.get("name").and_then(Value::as_str) {
            Some("resource") => {
                input.resource = Some(
                    parameter
                        .get("resource")
                        .cloned()
                        .ok_or_else(|| bad_parameter("resource", "a resource"))?,
                );
            }
            Some("mode") => {
                input.mode =
                    Some(text(&["valueCode"]).ok_or_else(|| bad_parameter("mode", "a code"))?);
            }
            Some("profile") => {
                input.profile = Some(
                    text(&["valueUri", "valueCanonical"])
                        .ok_or_else(|| bad_parameter("profile", "a uri"))?,
                );
            }
            _ => return Err(bad_parameter("parameter", "resource, mode or profile")),
        }
    }
    Ok(input)
}

fn bad_parameter(name: &str, expected: &str) -> ApiError {
    ApiError::BadRequest(Issue::at(
        IssueCode::Invalid,
        name.to_owned(),
        format!("$validate takes {expected} here"),
    ))
}

/// 200 with the issues, or with one information issue when there are none.
fn answer(issues: Vec<Issue>) -> Response {
    if issues.is_empty() {
        outcome_response(
            StatusCode::OK,
            &[Issue::information("the resource is valid")],
        )
    } else {
        outcome_response(StatusCode::OK, &issues)
    }
}
