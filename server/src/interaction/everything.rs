//! Patient `$everything`: `GET`/`POST [base]/Patient/[id]/$everything` and
//! `[base]/Patient/$everything`, a `searchset` Bundle of a patient's record (docs/everything.md).
//! http://hl7.org/fhir/R4/patient-operation-everything.html
//!
//! The record of a patient is the Patient, every resource of its compartment
//! (`smart::patient_compartment`: Accounts, Invoices and Groups that refer to it through
//! their compartment parameters), and the Organizations, Practitioners and Groups those
//! resources refer to. At type level it is the union of the records of every Patient the
//! caller may search, each resource once.
//!
//! The parameters are read as a search reads them (`_type`, `_count`, the cursor, `_since` as
//! `_lastUpdated=ge`), the caller's grants become criteria as they do for a search, and the
//! store finds the records through the search index (`Store::everything`), one page at a
//! time with the search's keyset cursors, signed for this request.
//!
//! Parameters: `_since` (an instant: only resources changed at or after it, the Patient
//! included), `_type` (the types returned), `_count` and the paging cursor. `start` and
//! `end` are not supported; they and any other parameter are left out with a warning, or
//! refused with `Prefer: handling=strict`, as a search does.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use fhir_core::bundle::{Bundle, Entry, EntrySearch, Link};
use fhir_core::outcome::operation_outcome;
use fhir_core::search::query::{Condition, SearchQuery, TypeQuery};
use fhir_core::search::{DateRange, Handling, Registry, SearchOptions};
use fhir_core::{Id, Issue, IssueCode, ResourceType, Severity};
use serde_json::Value;
use serde_json::value::RawValue;
use smart::{Grant, Interaction, patient_compartment_params};
use store::{CompartmentSource, Everything, Found, SearchPage};

use crate::auth::Principal;
use crate::auth::access::{permits_text, require, restriction};
use crate::error::ApiError;
use crate::http::{InstancePath, Negotiated, QueryParams, TypePath, fhir_body};
use crate::interaction::search;
use crate::state::AppState;

/// The name of the operation, and the canonical URL of its definition.
pub const OPERATION: (&str, &str) = (
    "everything",
    "http://hl7.org/fhir/OperationDefinition/Patient-everything",
);

/// The types a record adds when its resources refer to them, whether or not they are in the
/// compartment themselves (a Group can be both).
const REFERENCED_TYPES: [ResourceType; 3] = [
    ResourceType::Organization,
    ResourceType::Practitioner,
    ResourceType::Group,
];

/// The parameters the operation reads; `_format` and `_pretty` shape the response.
const PARAMS: [&str; 6] = ["_since", "_type", "_count", "_cursor", "_format", "_pretty"];

/// Parameters of the operation's definition that Ferrum does not support.
const UNSUPPORTED: [&str; 2] = ["start", "end"];

/// Whose record: one Patient, or every Patient the caller may search.
#[derive(Debug, Clone)]
enum Focus {
    One(Id),
    All,
}

/// `GET`/`POST [base]/Patient/[id]/$everything`.
pub async fn instance(
    State(state): State<AppState>,
    principal: Principal,
    InstancePath(rtype, id): InstancePath,
    negotiated: Negotiated,
    headers: HeaderMap,
    params: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    if rtype != ResourceType::Patient {
        return Err(ApiError::NotFound(format!("{rtype}/{id}/$everything")));
    }
    let params = parameters(params, &headers, &body)?;
    let grant = require(&principal, rtype, Interaction::Read)?;
    let not_found = || ApiError::NotFound(format!("Patient/{id}"));
    let current = state.store.read(rtype, &id).await?.ok_or_else(not_found)?;
    let Some(content) = current.content.filter(|_| !current.deleted) else {
        // As a read: a deletion says nothing about whose the record was, so only a caller
        // with full access learns of it.
        return Err(if grant.is_unrestricted() {
            ApiError::Gone(format!("Patient/{id}"))
        } else {
            not_found()
        });
    };
    if !permits_text(&state, rtype, &grant, &content) {
        return Err(not_found());
    }
    everything(
        &state,
        &principal,
        Focus::One(id),
        negotiated,
        &headers,
        params,
    )
    .await
}

/// `GET`/`POST [base]/Patient/$everything`.
pub async fn type_level(
    State(state): State<AppState>,
    principal: Principal,
    TypePath(rtype): TypePath,
    negotiated: Negotiated,
    headers: HeaderMap,
    params: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    if rtype != ResourceType::Patient {
        return Err(ApiError::NotFound(format!("{rtype}/$everything")));
    }
    let params = parameters(params, &headers, &body)?;
    require(&principal, rtype, Interaction::Search)?;
    everything(&state, &principal, Focus::All, negotiated, &headers, params).await
}

/// The query string's parameters, then the body's: a form, or a `Parameters` resource (JSON
/// or XML) whose parameters carry primitive values.
fn parameters(
    params: QueryParams,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let resource = match media.as_str() {
        _ if body.is_empty() => return search::with_form(params, headers, body),
        "application/fhir+json" | "application/json" | "application/json+fhir" => {
            serde_json::from_slice::<Value>(body).ok()
        }
        "application/fhir+xml" | "application/xml" | "application/xml+fhir" | "text/xml" => {
            std::str::from_utf8(body)
                .ok()
                .and_then(|text| fhir_core::xml::xml_to_json(text).ok())
        }
        _ => return search::with_form(params, headers, body),
    };
    let resource = resource
        .filter(|r| r["resourceType"] == "Parameters")
        .ok_or_else(|| ApiError::bad_request("the body must be a Parameters resource or a form"))?;
    let mut pairs = params.0;
    for parameter in resource["parameter"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().unwrap_or_default();
        let value = parameter
            .as_object()
            .into_iter()
            .flatten()
            .find_map(|(key, value)| match value {
                _ if !key.starts_with("value") => None,
                Value::String(text) => Some(text.clone()),
                Value::Number(number) => Some(number.to_string()),
                Value::Bool(flag) => Some(flag.to_string()),
                _ => None,
            })
            .ok_or_else(|| {
                ApiError::bad_request(format!("parameter {} has no primitive value", cut(name)))
            })?;
        pairs.push((name.to_owned(), value));
    }
    Ok(pairs)
}

/// A parameter name as quoted in a message: at most 100 characters.
fn cut(name: &str) -> String {
    name.chars().take(100).collect()
}

/// The operation's parameters, read.
struct Request {
    /// The search the operation runs, without the record's criteria yet.
    query_pairs: Vec<(String, String)>,
    /// `_since`, as given.
    since: Option<String>,
    /// Whether `_type` was given: a type it names that the caller may not search is 403.
    typed: bool,
    /// What was left out (lenient handling).
    ignored: Vec<Issue>,
}

/// Reads the operation's parameters. Unknown and unsupported ones are left out with a
/// warning, or refused in strict handling.
fn read_params(params: &[(String, String)], handling: Handling) -> Result<Request, ApiError> {
    if params
        .iter()
        .any(|(name, value)| name.contains('\0') || value.contains('\0'))
    {
        return Err(ApiError::bad_request("a parameter holds a NUL character"));
    }
    let mut request = Request {
        query_pairs: Vec::new(),
        since: None,
        typed: false,
        ignored: Vec::new(),
    };
    let mut types = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "_since" if request.since.is_some() => {
                return Err(ApiError::bad_request("_since may be given once"));
            }
            "_since" => {
                if DateRange::parse(value.trim()).is_none() {
                    return Err(ApiError::bad_request("_since must be an instant"));
                }
                request.since = Some(value.trim().to_owned());
            }
            "_type" => {
                request.typed = true;
                types.push(value.as_str());
            }
            "_count" | "_cursor" => request.query_pairs.push((name.clone(), value.clone())),
            _ if PARAMS.contains(&name.as_str()) => {}
            _ => {
                let problem = if UNSUPPORTED.contains(&name.as_str()) {
                    format!("$everything does not support the parameter {name}")
                } else {
                    format!("unknown parameter {}", cut(name))
                };
                let mut issue = Issue::error(IssueCode::NotSupported, problem);
                if handling == Handling::Strict {
                    return Err(ApiError::BadRequest(issue));
                }
                issue.severity = Severity::Warning;
                request.ignored.push(issue);
            }
        }
    }
    if request.typed {
        request.query_pairs.push(("_type".into(), types.join(",")));
    }
    if let Some(since) = &request.since {
        request
            .query_pairs
            .push(("_lastUpdated".into(), format!("ge{since}")));
    }
    Ok(request)
}

async fn everything(
    state: &AppState,
    principal: &Principal,
    focus: Focus,
    Negotiated(format): Negotiated,
    headers: &HeaderMap,
    params: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let registry = state.store.registry()?;
    let options = search::options(state, headers);
    let request = read_params(&params, options.handling)?;
    // `_type`, `_count`, the cursor and `_since` (as `_lastUpdated=ge`) read as a search
    // reads them, so that they mean the same and fail the same.
    let mut query = SearchQuery::parse(registry, None, &request.query_pairs, &options)
        .map_err(|e| ApiError::BadRequest(e.to_issue()))?;
    let base = state.base.as_ref();

    // The types returned: a type the caller may not search is left out, or refused when
    // `_type` names it (as a system-level search does).
    let mut refused = None;
    query.types.retain_mut(|type_query| {
        let rtype = type_query.resource_type;
        let grant = grant(principal, &focus, rtype);
        if !grant.is_allowed() {
            refused.get_or_insert(rtype);
            return false;
        }
        type_query
            .criteria
            .extend(restriction(registry, rtype, &grant, base));
        true
    });
    if let Some(rtype) = refused.filter(|_| request.typed) {
        require(principal, rtype, Interaction::Search)?;
    }

    let (patients, few): (Vec<Condition<'_>>, bool) = match &focus {
        Focus::One(id) => (by_id(registry, id)?, true),
        Focus::All => {
            let grant = grant(principal, &focus, ResourceType::Patient);
            // A patient-level grant confines the Patients to the one in context.
            let few = match &grant {
                Grant::Restricted(conditions) => {
                    conditions.iter().all(|c| c.compartment().is_some())
                }
                _ => false,
            };
            let patients = restriction(registry, ResourceType::Patient, &grant, base);
            (patients.into_iter().collect(), few)
        }
    };
    // What the record's resources refer to counts only through resources the caller may
    // see: a reference would tell something about them.
    let sources: Vec<CompartmentSource<'_>> = ResourceType::ALL
        .into_iter()
        .filter_map(|rtype| {
            let params = patient_compartment_params(rtype);
            let grant = grant(principal, &focus, rtype);
            (!params.is_empty() && grant.is_allowed()).then(|| CompartmentSource {
                query: TypeQuery {
                    resource_type: rtype,
                    criteria: restriction(registry, rtype, &grant, base)
                        .into_iter()
                        .collect(),
                    sort: Vec::new(),
                },
                params,
            })
        })
        .collect();

    let path = match &focus {
        Focus::One(id) => format!("Patient/{id}/$everything"),
        Focus::All => "Patient/$everything".to_owned(),
    };
    let link = |cursor: Option<&str>| {
        let mut text = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in query.canonical_params() {
            match name.as_str() {
                "_lastUpdated" => {
                    text.append_pair("_since", request.since.as_deref().unwrap_or_default())
                }
                "_cursor" => &mut text,
                _ => text.append_pair(&name, &value),
            };
        }
        if let Some(cursor) = cursor {
            text.append_pair("_cursor", cursor);
        }
        format!("{base}/{path}?{}", text.finish())
    };
    let scope = link(None);
    let page = state
        .store
        .everything(&Everything {
            patients: &patients,
            sources: &sources,
            referenced: &REFERENCED_TYPES,
            types: &query.types,
            few,
            count: query.count,
            cursor: query.cursor.as_deref(),
            scope: &scope,
        })
        .await?;

    let mut links = vec![Link {
        relation: "self",
        url: link(query.cursor.as_deref()),
    }];
    for (relation, cursor) in [("next", &page.next), ("previous", &page.previous)] {
        if let Some(cursor) = cursor {
            links.push(Link {
                relation,
                url: link(Some(cursor)),
            });
        }
    }
    let mut warnings = request.ignored;
    warnings.extend(query.ignored.iter().map(|e| e.to_warning()));
    let bundle = bundle(base, links, page, &warnings)?;
    let json = serde_json::to_string(&bundle).map_err(|e| ApiError::Internal(e.to_string()))?;
    fhir_body(StatusCode::OK, format, json)
}

/// The caller's grant on the resources of `rtype` in a record: the Patient of an
/// instance-level request was read, and checked, already; the rest is searched.
fn grant(principal: &Principal, focus: &Focus, rtype: ResourceType) -> Grant {
    match (focus, rtype) {
        (Focus::One(_), ResourceType::Patient) => Grant::Unrestricted,
        _ => principal.permissions.grants(rtype, Interaction::Search),
    }
}

/// `_id=[id]` on a Patient, as a search reads it.
fn by_id<'r>(registry: &'r Registry, id: &Id) -> Result<Vec<Condition<'r>>, ApiError> {
    let mut options = SearchOptions::new(chrono::Utc::now());
    options.handling = Handling::Strict;
    SearchQuery::parse(
        registry,
        Some(ResourceType::Patient),
        &[("_id", id.as_str())],
        &options,
    )
    .ok()
    .and_then(|query| query.types.into_iter().next())
    .map(|query| query.criteria)
    .filter(|criteria| !criteria.is_empty())
    .ok_or_else(|| ApiError::Internal("_id does not parse as a search of Patient".into()))
}

/// The Bundle of one page: its resources as matches, then the warnings, if any.
fn bundle(
    base: &str,
    links: Vec<Link>,
    page: SearchPage,
    warnings: &[Issue],
) -> Result<Bundle, ApiError> {
    let mut entries = Vec::with_capacity(page.matches.len() + 1);
    for Found {
        resource_type,
        id,
        content,
        ..
    } in page.matches
    {
        entries.push(Entry {
            full_url: format!("{base}/{resource_type}/{id}"),
            resource: Some(raw(content)?),
            search: Some(EntrySearch { mode: "match" }),
            request: None,
            response: None,
        });
    }
    if !warnings.is_empty() {
        entries.push(Entry {
            full_url: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            resource: Some(raw(operation_outcome(warnings).to_string())?),
            search: Some(EntrySearch { mode: "outcome" }),
            request: None,
            response: None,
        });
    }
    Ok(Bundle::searchset(page.total, links, entries))
}

fn raw(json: String) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(json).map_err(|e| ApiError::Internal(e.to_string()))
}
