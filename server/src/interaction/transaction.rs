//! batch and transaction: `POST [base]` with a Bundle of type `batch` or `transaction`.
//! http://hl7.org/fhir/R4/http.html#transaction
//!
//! A transaction is all or nothing: its writes run in one database transaction, in the
//! order the specification sets (DELETE, then POST, then PUT and PATCH), after every id is
//! known (conditions searched, new ids assigned) and every reference to another entry's
//! `fullUrl` or a conditional reference is rewritten to the `Type/id` it resolves to. The
//! first entry that fails fails the whole with its status and an OperationOutcome naming it
//! (`Bundle.entry[n]`); nothing is written, no change event is sent. Its GET entries run
//! after the commit, so they see its writes.
//!
//! A batch processes each entry on its own, in the Bundle's order, a write in a database
//! transaction of its own; a failing entry answers its status and an OperationOutcome in
//! its `response`, the others apply.
//!
//! Every entry is the interaction it names: the same validation, the same grants, the same
//! answer as a request of its own would get (docs/rest.md, "Batch and transaction").

mod bundle;
mod references;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use axum::body::to_bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use fhir_core::outcome::operation_outcome;
use fhir_core::patch::Patch;
use fhir_core::resource::{self, Format, format_instant};
use fhir_core::{Id, Issue, IssueCode, ResourceType, VersionId};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use smart::{Grant, Interaction};
use store::{Conditional, NewResource, Stored, Transaction};

use crate::auth::Principal;
use crate::auth::access::{permits_text, require, restrict};
use crate::error::{ApiError, outcome_response};
use crate::http::{
    FhirBody, InstancePath, Negotiated, QueryParams, Return, TypePath, VersionPath, fhir_body,
    match_tag,
};
use crate::interaction::{check_body_id, check_write, claims, history, patch, read, search, vread};
use crate::state::AppState;
use bundle::{Entry, Kind, Method, Target};

/// Processes a `batch` or `transaction` Bundle; answers its `batch-response` or
/// `transaction-response` (200), or, for a transaction that failed, the failing entry's
/// status and OperationOutcome.
pub async fn transaction(
    State(state): State<AppState>,
    principal: Principal,
    Negotiated(format): Negotiated,
    headers: HeaderMap,
    body: FhirBody,
) -> Result<Response, ApiError> {
    let text: Cow<'_, str> = match body.format {
        Format::Json => Cow::Borrowed(std::str::from_utf8(&body.bytes).map_err(|_| {
            ApiError::BadRequest(Issue::error(
                IssueCode::Structure,
                "the body is not valid UTF-8",
            ))
        })?),
        Format::Xml => {
            let text = std::str::from_utf8(&body.bytes).map_err(|_| {
                ApiError::BadRequest(Issue::error(
                    IssueCode::Structure,
                    "the body is not valid UTF-8",
                ))
            })?;
            let value = fhir_core::xml::xml_to_json(text).map_err(ApiError::Invalid)?;
            Cow::Owned(value.to_string())
        }
    };
    let parsed = bundle::parse(&text, &state.base, state.config.bundle_max_entries)?;
    let prefer = Return::asked(&headers);
    let outcomes = match parsed.kind {
        Kind::Transaction => match run_transaction(&state, &principal, parsed.entries).await {
            Ok(outcomes) => outcomes,
            Err(failure) => return Ok(failure.into_response()),
        },
        Kind::Batch => run_batch(&state, &principal, parsed.entries).await,
    };
    let bundle = ResponseBundle {
        resource_type: "Bundle",
        kind: parsed.kind.response_type(),
        entry: outcomes
            .into_iter()
            .map(|outcome| outcome.into_entry(&state.base, prefer))
            .collect::<Result<_, _>>()?,
    };
    let json = serde_json::to_string(&bundle).map_err(|e| ApiError::Internal(e.to_string()))?;
    fhir_body(StatusCode::OK, format, json)
}

// --- Entries ready to run ------------------------------------------------------------

/// Where a write applies.
#[derive(Debug)]
enum Place {
    /// `[type]/[id]`.
    Id(Id),
    /// `[type]?search`: the one match (or, for a delete, the matches).
    Search(Vec<(String, String)>),
}

/// What an entry does, checked and validated; the grant its interaction was given.
#[derive(Debug)]
enum Work<'a> {
    Create {
        resource: Value,
        if_none_exist: Option<Vec<(String, String)>>,
    },
    Update {
        place: Place,
        resource: Value,
        /// The id in the body of a conditional update, when there is one.
        body_id: Option<Id>,
        if_match: Option<VersionId>,
    },
    Patch {
        place: Place,
        patch: Patch,
        if_match: Option<VersionId>,
    },
    Delete {
        place: Place,
        if_match: Option<VersionId>,
        grant: Grant,
    },
    Read(Entry<'a>),
}

/// An entry ready to run: its position in the Bundle, type, `fullUrl` and work.
#[derive(Debug)]
struct Prepared<'a> {
    index: usize,
    rtype: Option<ResourceType>,
    full_url: Option<String>,
    work: Work<'a>,
}

/// An entry that failed: its position and why.
#[derive(Debug)]
struct Failure {
    index: usize,
    rtype: Option<ResourceType>,
    error: ApiError,
}

impl Failure {
    /// The error's issues, each naming the entry: `Bundle.entry[n]`, or the element of its
    /// resource (`Bundle.entry[n].resource.name[0]` for `Patient.name[0]`).
    fn issues(self) -> (StatusCode, Vec<Issue>) {
        let Failure {
            index,
            rtype,
            error,
        } = self;
        if let ApiError::Internal(detail) = &error {
            tracing::error!(error = %detail, entry = index, "a Bundle entry failed");
        }
        let status = error.status();
        let entry = format!("Bundle.entry[{index}]");
        let issues = error
            .issues()
            .into_iter()
            .map(|mut issue| {
                issue.expression = Some(match issue.expression.take() {
                    None => entry.clone(),
                    Some(path) if path.starts_with("Bundle.") => path,
                    Some(path) => {
                        let inner = rtype
                            .and_then(|t| path.strip_prefix(t.as_str()))
                            .filter(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
                            .map_or_else(|| format!(".{path}"), str::to_owned);
                        format!("{entry}.resource{inner}")
                    }
                });
                issue
            })
            .collect();
        (status, issues)
    }

    fn into_response(self) -> Response {
        let (status, issues) = self.issues();
        outcome_response(status, &issues)
    }

    /// The entry's answer in a batch: its status and OperationOutcome.
    fn into_outcome(self) -> Outcome {
        let (status, issues) = self.issues();
        Outcome {
            status,
            outcome: Some(operation_outcome(&issues).to_string()),
            ..Outcome::default()
        }
    }
}

/// Which entry an error is about.
#[derive(Debug, Clone, Copy)]
struct Who {
    index: usize,
    rtype: Option<ResourceType>,
}

impl Prepared<'_> {
    fn who(&self) -> Who {
        Who {
            index: self.index,
            rtype: self.rtype,
        }
    }
}

/// Attaches an entry to an error.
trait AtEntry<T> {
    fn at(self, who: Who) -> Result<T, Failure>;
}

impl<T, E: Into<ApiError>> AtEntry<T> for Result<T, E> {
    fn at(self, who: Who) -> Result<T, Failure> {
        self.map_err(|error| Failure {
            index: who.index,
            rtype: who.rtype,
            error: error.into(),
        })
    }
}

/// Checks an entry as its interaction would be checked: the resource parsed and validated,
/// its id against the URL, the patch read, the caller's grant of the interaction on the type.
/// What depends on the database (conditions, stored versions, compartments after the
/// references are resolved) is checked when the entry runs.
fn prepare<'a>(
    principal: &Principal,
    index: usize,
    entry: Result<Entry<'a>, ApiError>,
) -> Result<Prepared<'a>, Failure> {
    let fail = |rtype: Option<ResourceType>| {
        move |error: ApiError| Failure {
            index,
            rtype,
            error,
        }
    };
    let entry = entry.map_err(fail(None))?;
    let full_url = entry.full_url.clone();
    let (rtype, place) = match &entry.target {
        Target::Type(rtype, params) => (*rtype, Place::Search(params.clone())),
        Target::Instance(rtype, id) => (*rtype, Place::Id(id.clone())),
        _ => {
            return Ok(Prepared {
                index,
                rtype: None,
                full_url,
                work: Work::Read(entry),
            });
        }
    };
    let fail = fail(Some(rtype));
    let resource = |entry: &Entry<'_>| -> Result<Value, ApiError> {
        let text = entry.resource.map_or("", |r| r.get());
        resource::parse(text.as_bytes(), Format::Json, rtype).map_err(ApiError::Invalid)
    };
    let work = match entry.method {
        Method::Get | Method::Head => Work::Read(entry),
        Method::Post => {
            require(principal, rtype, Interaction::Create).map_err(fail)?;
            Work::Create {
                resource: resource(&entry).map_err(fail)?,
                if_none_exist: entry.if_none_exist.clone(),
            }
        }
        Method::Put => {
            require(principal, rtype, Interaction::Update).map_err(fail)?;
            let resource = resource(&entry).map_err(fail)?;
            let body_id = match &place {
                Place::Id(id) => {
                    check_body_id(&resource, id.as_str()).map_err(fail)?;
                    None
                }
                Place::Search(_) => resource::body_id(&resource)
                    .map(|id| {
                        id.parse::<Id>().map_err(|_| {
                            ApiError::Invalid(vec![Issue::at(
                                IssueCode::Value,
                                "id",
                                "not a valid id",
                            )])
                        })
                    })
                    .transpose()
                    .map_err(fail)?,
            };
            Work::Update {
                place,
                resource,
                body_id,
                if_match: entry.if_match,
            }
        }
        Method::Patch => {
            require(principal, rtype, Interaction::Update).map_err(fail)?;
            Work::Patch {
                place,
                patch: read_entry_patch(entry.resource).map_err(fail)?,
                if_match: entry.if_match,
            }
        }
        Method::Delete => Work::Delete {
            place,
            if_match: entry.if_match,
            grant: require(principal, rtype, Interaction::Delete).map_err(fail)?,
        },
    };
    Ok(Prepared {
        index,
        rtype: Some(rtype),
        full_url,
        work,
    })
}

/// The patch of a PATCH entry: a FHIRPath Patch (a Parameters resource), or a JSON Patch in
/// a Binary resource (`contentType` `application/json-patch+json`, `data` the patch in
/// base64).
fn read_entry_patch(resource: Option<&RawValue>) -> Result<Patch, ApiError> {
    use base64::Engine;
    let not_a_patch = || {
        ApiError::BadRequest(Issue::at(
            IssueCode::NotSupported,
            "resource",
            "a PATCH entry's resource must be a Parameters (FHIRPath Patch) or a Binary \
             holding a JSON Patch (contentType application/json-patch+json, the patch in data)",
        ))
    };
    let resource: Value = resource
        .and_then(|r| serde_json::from_str(r.get()).ok())
        .ok_or_else(not_a_patch)?;
    if resource["resourceType"] == "Parameters" {
        return patch::fhirpath(&resource);
    }
    let content_type = resource["contentType"]
        .as_str()
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    if resource["resourceType"] != "Binary" || content_type.as_deref() != Some(patch::JSON_PATCH) {
        return Err(not_a_patch());
    }
    let data = resource["data"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(Issue::at(
                IssueCode::Value,
                "Binary.data",
                "the patch is not valid base64",
            ))
        })?;
    patch::json(&data)
}

/// Prepares every entry, with the checks across entries of a transaction: each `fullUrl`
/// once.
fn prepare_all<'a>(
    principal: &Principal,
    entries: Vec<Result<Entry<'a>, ApiError>>,
) -> Result<Vec<Prepared<'a>>, Failure> {
    let mut full_urls: HashMap<String, usize> = HashMap::new();
    let mut prepared = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let entry = prepare(principal, index, entry)?;
        if let Some(url) = &entry.full_url
            && let Some(first) = full_urls.insert(url.clone(), index)
        {
            return Err(Failure {
                index,
                rtype: entry.rtype,
                error: ApiError::BadRequest(Issue::at(
                    IssueCode::Duplicate,
                    format!("Bundle.entry[{index}].fullUrl"),
                    format!("entries {first} and {index} have the same fullUrl"),
                )),
            });
        }
        prepared.push(entry);
    }
    Ok(prepared)
}

// --- Running -----------------------------------------------------------------------

/// A transaction: prepare everything, write everything in one database transaction, commit,
/// then read.
async fn run_transaction(
    state: &AppState,
    principal: &Principal,
    entries: Vec<Result<Entry<'_>, ApiError>>,
) -> Result<Vec<Outcome>, Failure> {
    let mut prepared = prepare_all(principal, entries)?;
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(prepared.len());
    outcomes.resize_with(prepared.len(), Outcome::default);
    if prepared.iter().any(|p| !matches!(p.work, Work::Read(_))) {
        let first = prepared.first().map_or(0, |p| p.index);
        let begin = |error: store::StoreError| Failure {
            index: first,
            rtype: None,
            error: error.into(),
        };
        let mut tx = state.store.begin().await.map_err(begin)?;
        for (index, outcome) in write(state, principal, &mut tx, &mut prepared).await? {
            outcomes[index] = outcome;
        }
        tx.commit().await.map_err(begin)?;
    }
    for entry in prepared {
        if let Work::Read(read) = entry.work {
            outcomes[entry.index] = match dispatch(state, principal, read).await {
                Ok(outcome) => outcome,
                // The writes are committed: a read that fails reports it in its entry.
                Err(error) => Failure {
                    index: entry.index,
                    rtype: None,
                    error,
                }
                .into_outcome(),
            };
        }
    }
    Ok(outcomes)
}

/// A batch: each entry on its own, in order.
async fn run_batch(
    state: &AppState,
    principal: &Principal,
    entries: Vec<Result<Entry<'_>, ApiError>>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let outcome = match prepare(principal, index, entry) {
            Err(failure) => failure.into_outcome(),
            Ok(prepared) => match prepared.work {
                Work::Read(read) => match dispatch(state, principal, read).await {
                    Ok(outcome) => outcome,
                    Err(error) => Failure {
                        index,
                        rtype: prepared.rtype,
                        error,
                    }
                    .into_outcome(),
                },
                _ => match write_one(state, principal, prepared).await {
                    Ok(outcome) => outcome,
                    Err(failure) => failure.into_outcome(),
                },
            },
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// One write of a batch, in a database transaction of its own.
async fn write_one(
    state: &AppState,
    principal: &Principal,
    prepared: Prepared<'_>,
) -> Result<Outcome, Failure> {
    let who = prepared.who();
    let mut entries = [prepared];
    let mut tx = state.store.begin().await.at(who)?;
    let mut written = write(state, principal, &mut tx, &mut entries).await?;
    tx.commit().await.at(who)?;
    Ok(written
        .pop()
        .map(|(_, outcome)| outcome)
        .unwrap_or_default())
}

/// The ids a write resolved to.
#[derive(Debug, Clone)]
enum Resolved {
    /// A create under this new id.
    New(Id),
    /// A conditional create that matched this resource: nothing is written.
    Existing(Id),
    /// An update or patch of this id.
    Target(Id),
}

/// Runs the writes among `entries` in `tx`: deletes; then every id resolved (new ids,
/// conditions searched) and checked for overlaps; references rewritten; creates; updates
/// and patches; then referential integrity over all of them. Returns each write's outcome
/// with its index in `entries`.
async fn write(
    state: &AppState,
    principal: &Principal,
    tx: &mut Transaction<'_>,
    entries: &mut [Prepared<'_>],
) -> Result<Vec<(usize, Outcome)>, Failure> {
    let mut outcomes = Vec::with_capacity(entries.len());
    // Every resource a write touches, and the entry that touches it.
    let mut touched: HashMap<(ResourceType, Id), usize> = HashMap::new();
    let mut overlap = |who: Who, rtype: ResourceType, id: &Id| match touched
        .insert((rtype, id.clone()), who.index)
    {
        Some(first) if first != who.index => Err(ApiError::BadRequest(Issue::at(
            IssueCode::Invalid,
            format!("Bundle.entry[{}]", who.index),
            format!(
                "entries {first} and {} both write {rtype}/{id}: a transaction may \
                     touch a resource once",
                who.index
            ),
        )))
        .at(who),
        _ => Ok(()),
    };
    let mut resolved: Vec<Option<Resolved>> = vec![None; entries.len()];

    // 1. DELETE.
    for (n, entry) in entries.iter().enumerate() {
        let who = entry.who();
        let Work::Delete {
            place,
            if_match,
            grant,
        } = &entry.work
        else {
            continue;
        };
        let rtype = entry.rtype.unwrap_or(ResourceType::Patient);
        let ids = match place {
            Place::Id(id) => vec![id.clone()],
            Place::Search(params) => {
                let max = state.config.conditional_delete_max;
                let limit = i64::try_from(max).unwrap_or(i64::MAX).saturating_add(1);
                let found = search_condition(
                    state,
                    principal,
                    tx,
                    rtype,
                    params,
                    Some(grant),
                    limit,
                    true,
                )
                .await
                .at(who)?;
                if found.len() > max {
                    return Err(store::StoreError::MultipleMatches).at(who);
                }
                found
            }
        };
        let mut tombstone = None;
        for id in &ids {
            overlap(who, rtype, id)?;
            check_stored(state, tx, rtype, id, grant).await.at(who)?;
            if let Some(done) = tx.delete(rtype, id, *if_match).await.at(who)? {
                tombstone = Some(done);
            }
        }
        let (version, at) = tombstone.unzip();
        outcomes.push((
            n,
            Outcome {
                status: StatusCode::NO_CONTENT,
                version,
                last_modified: at,
                message: format!("deleted {} {rtype}", ids.len()),
                ..Outcome::default()
            },
        ));
    }

    // 2. Every id the other writes will have, before any of them is written.
    let mut conditions: HashMap<(ResourceType, String), usize> = HashMap::new();
    for (n, entry) in entries.iter().enumerate() {
        let who = entry.who();
        let rtype = entry.rtype.unwrap_or(ResourceType::Patient);
        let target = match &entry.work {
            Work::Create {
                if_none_exist: None,
                ..
            } => Resolved::New(Id::generate()),
            Work::Create {
                if_none_exist: Some(params),
                ..
            } => {
                // Two creates under one condition would both find nothing and both create.
                let text = condition_text(state, principal, rtype, params).at(who)?;
                if let Some(first) = conditions.insert((rtype, text), entry.index) {
                    return Err(ApiError::BadRequest(Issue::at(
                        IssueCode::Duplicate,
                        format!("Bundle.entry[{}].request.ifNoneExist", entry.index),
                        format!(
                            "entries {first} and {} create under the same condition",
                            entry.index
                        ),
                    )))
                    .at(who);
                }
                let found = search_condition(state, principal, tx, rtype, params, None, 2, true)
                    .await
                    .at(who)?;
                match found.as_slice() {
                    [] => Resolved::New(Id::generate()),
                    [id] => Resolved::Existing(id.clone()),
                    _ => return Err(store::StoreError::MultipleMatches).at(who),
                }
            }
            Work::Update {
                place: Place::Id(id),
                ..
            }
            | Work::Patch {
                place: Place::Id(id),
                ..
            } => Resolved::Target(id.clone()),
            Work::Update {
                place: Place::Search(params),
                body_id,
                ..
            } => {
                let grant = require(principal, rtype, Interaction::Update).at(who)?;
                let found =
                    search_condition(state, principal, tx, rtype, params, Some(&grant), 2, true)
                        .await
                        .at(who)?;
                match (found.as_slice(), body_id) {
                    ([], Some(id)) => Resolved::Target(id.clone()),
                    ([], None) => Resolved::Target(Id::generate()),
                    ([found], Some(id)) if found != id => {
                        return Err(store::StoreError::ConditionalIdMismatch).at(who);
                    }
                    ([found], _) => Resolved::Target(found.clone()),
                    _ => return Err(store::StoreError::MultipleMatches).at(who),
                }
            }
            Work::Patch {
                place: Place::Search(params),
                ..
            } => {
                let grant = require(principal, rtype, Interaction::Update).at(who)?;
                let found =
                    search_condition(state, principal, tx, rtype, params, Some(&grant), 2, true)
                        .await
                        .at(who)?;
                match found.as_slice() {
                    [id] => Resolved::Target(id.clone()),
                    [] => {
                        return Err(ApiError::NotFound(format!(
                            "a {rtype} matching the PATCH condition"
                        )))
                        .at(who);
                    }
                    _ => return Err(store::StoreError::MultipleMatches).at(who),
                }
            }
            Work::Delete { .. } | Work::Read(_) => continue,
        };
        match &target {
            Resolved::Existing(id) | Resolved::Target(id) => overlap(who, rtype, id)?,
            Resolved::New(_) => {}
        }
        resolved[n] = Some(target);
    }

    // 3. What other entries' references resolve to: `fullUrl`s, then conditional references.
    let mut targets: HashMap<String, String> = HashMap::new();
    for (entry, resolved) in entries.iter().zip(&resolved) {
        let (Some(rtype), Some(Resolved::New(id) | Resolved::Existing(id) | Resolved::Target(id))) =
            (entry.rtype, resolved)
        else {
            continue;
        };
        let local = format!("{rtype}/{id}");
        if let Some(url) = &entry.full_url {
            // A URL under this server's base also stands for its relative form.
            if let Some(relative) = url
                .strip_prefix(state.base.as_ref())
                .and_then(|rest| rest.strip_prefix('/'))
                && relative != local
            {
                targets.insert(relative.to_owned(), local.clone());
            }
            if *url != local {
                targets.insert(url.clone(), local);
            }
        }
    }
    for entry in entries.iter_mut() {
        let (Work::Create { resource, .. } | Work::Update { resource, .. }) = &mut entry.work
        else {
            continue;
        };
        let wanted = references::conditional(resource);
        resolve_conditional(state, principal, tx, wanted, &mut targets)
            .await
            .map_err(|error| Failure {
                index: entry.index,
                rtype: entry.rtype,
                error,
            })?;
        references::rewrite(resource, &targets);
    }

    // 4. POST: the creates checked in order, then written together (one statement); a
    // create the caller may not make fails the unit after the ones before it are written, so
    // that the first entry that fails is the one reported.
    let mut creates: Vec<(usize, Who, ResourceType)> = Vec::new();
    let mut new = Vec::new();
    let mut refused = None;
    for (n, entry) in entries.iter_mut().enumerate() {
        let who = entry.who();
        let rtype = entry.rtype.unwrap_or(ResourceType::Patient);
        let (Work::Create { resource, .. }, Some(Resolved::New(id))) =
            (&mut entry.work, &resolved[n])
        else {
            continue;
        };
        let resource = std::mem::take(resource);
        if let Err(failure) =
            check_write(state, principal, rtype, Interaction::Create, &resource).at(who)
        {
            refused = Some(failure);
            break;
        }
        let claims = claims(state, rtype, &resource);
        creates.push((n, who, rtype));
        new.push(NewResource {
            rtype,
            id: id.clone(),
            resource,
            claims,
        });
    }
    if !new.is_empty() {
        let stored = tx.create_all(new).await.map_err(|(position, error)| {
            // The position is one of `creates`'.
            let who = creates.get(position).or(creates.first()).map(|c| c.1);
            Failure {
                index: who.map_or(0, |who| who.index),
                rtype: who.and_then(|who| who.rtype),
                error: error.into(),
            }
        })?;
        for ((n, _, rtype), stored) in creates.into_iter().zip(stored) {
            outcomes.push((
                n,
                Outcome::stored(rtype, stored, format!("created {rtype}")),
            ));
        }
    }
    if let Some(failure) = refused {
        return Err(failure);
    }
    for (n, entry) in entries.iter_mut().enumerate() {
        let who = entry.who();
        let rtype = entry.rtype.unwrap_or(ResourceType::Patient);
        let Work::Create { .. } = &entry.work else {
            continue;
        };
        let outcome = match &resolved[n] {
            Some(Resolved::Existing(id)) => {
                let current = tx
                    .read(rtype, id)
                    .await
                    .at(who)?
                    .ok_or_else(|| ApiError::Internal(format!("{rtype} match vanished")))
                    .at(who)?;
                Outcome {
                    status: StatusCode::OK,
                    id: Some((rtype, id.clone())),
                    version: Some(current.version),
                    last_modified: Some(current.last_updated),
                    resource: current.content,
                    message: format!(
                        "a {rtype} already matches the condition; nothing was created"
                    ),
                    ..Outcome::default()
                }
            }
            _ => continue,
        };
        outcomes.push((n, outcome));
    }

    // 5. PUT and PATCH.
    for (n, entry) in entries.iter_mut().enumerate() {
        let who = entry.who();
        let rtype = entry.rtype.unwrap_or(ResourceType::Patient);
        let Some(Resolved::Target(id)) = &resolved[n] else {
            continue;
        };
        let stored = match &mut entry.work {
            Work::Update {
                resource, if_match, ..
            } => {
                let if_match = *if_match;
                let mut resource = std::mem::take(resource);
                if let Some(object) = resource.as_object_mut() {
                    object.insert("id".into(), Value::String(id.to_string()));
                }
                let grant =
                    check_write(state, principal, rtype, Interaction::Update, &resource).at(who)?;
                check_stored(state, tx, rtype, id, &grant).await.at(who)?;
                let claims = claims(state, rtype, &resource);
                tx.update(rtype, id, resource, if_match, &claims)
                    .await
                    .at(who)?
            }
            Work::Patch {
                patch: entry_patch,
                if_match,
                ..
            } => {
                let if_match = *if_match;
                let current = tx
                    .read(rtype, id)
                    .await
                    .at(who)?
                    .ok_or_else(|| ApiError::NotFound(format!("{rtype}/{id}")))
                    .at(who)?;
                let Some(content) = current.content.filter(|_| !current.deleted) else {
                    return Err(ApiError::Gone(format!("{rtype}/{id}"))).at(who);
                };
                if if_match.is_some_and(|v| v != current.version) {
                    return Err(store::StoreError::VersionConflict {
                        current: Some(current.version),
                    })
                    .at(who);
                }
                let mut resource = patch::apply(rtype, id, &content, entry_patch).at(who)?;
                let wanted = references::conditional(&mut resource);
                resolve_conditional(state, principal, tx, wanted, &mut targets)
                    .await
                    .at(who)?;
                references::rewrite(&mut resource, &targets);
                let grant =
                    check_write(state, principal, rtype, Interaction::Update, &resource).at(who)?;
                if !permits_text(state, rtype, &grant, &content) {
                    return Err(ApiError::Forbidden(format!(
                        "the access token does not grant writing {rtype}/{id}"
                    )))
                    .at(who);
                }
                let claims = claims(state, rtype, &resource);
                tx.update(rtype, id, resource, Some(current.version), &claims)
                    .await
                    .at(who)?
            }
            _ => continue,
        };
        let version = stored.version;
        outcomes.push((
            n,
            Outcome::stored(
                rtype,
                stored,
                format!("{rtype} is now at version {version}"),
            ),
        ));
    }

    // 6. Referential integrity, once every write is done: references between the unit's
    // resources hold whatever the order of its entries (docs/rest.md).
    if let Err((resource, error)) = tx.check_integrity().await {
        let created = entries
            .iter()
            .zip(&resolved)
            .filter_map(|(entry, resolved)| match (entry.rtype, resolved) {
                (Some(rtype), Some(Resolved::New(id))) => Some(((rtype, id.clone()), entry.index)),
                _ => None,
            });
        let writers: HashMap<(ResourceType, Id), usize> =
            touched.into_iter().chain(created).collect();
        let who = resource
            .and_then(|(rtype, id)| {
                let index = *writers.get(&(rtype, id))?;
                Some(Who {
                    index,
                    rtype: Some(rtype),
                })
            })
            .or_else(|| entries.first().map(Prepared::who));
        return Err(Failure {
            index: who.map_or(0, |who| who.index),
            rtype: who.and_then(|who| who.rtype),
            error: error.into(),
        });
    }
    Ok(outcomes)
}

/// The canonical text of a condition (what conditional writes take turns by).
fn condition_text(
    state: &AppState,
    principal: &Principal,
    rtype: ResourceType,
    params: &[(String, String)],
) -> Result<String, ApiError> {
    let registry = state.store.registry()?;
    search::condition(state, principal, registry, rtype, params).map(|(_, text)| text)
}

/// Searches a condition in `tx`: the ids of at most `limit` matches among what the caller
/// may search (and, with `grant`, what that grant covers). With `lock`, conditional writes
/// under the same condition elsewhere wait until `tx` ends.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one conditional search"
)]
async fn search_condition(
    state: &AppState,
    principal: &Principal,
    tx: &mut Transaction<'_>,
    rtype: ResourceType,
    params: &[(String, String)],
    grant: Option<&Grant>,
    limit: i64,
    lock: bool,
) -> Result<Vec<Id>, ApiError> {
    let registry = state.store.registry()?;
    let (mut query, text) = search::condition(state, principal, registry, rtype, params)?;
    if let Some(grant) = grant {
        restrict(registry, &state.base, &mut query.types[0], grant);
    }
    if lock {
        let condition = Conditional {
            query: &query.types[0],
            text: &text,
        };
        tx.lock_condition(rtype, condition).await?;
    }
    Ok(tx.matching(&query.types[0], limit).await?)
}

/// Resolves each conditional reference of `wanted` not yet in `targets` by a search in `tx`:
/// exactly one match, or 404 (none) or 412 (several), as HAPI FHIR answers.
async fn resolve_conditional(
    state: &AppState,
    principal: &Principal,
    tx: &mut Transaction<'_>,
    wanted: BTreeSet<String>,
    targets: &mut HashMap<String, String>,
) -> Result<(), ApiError> {
    for reference in wanted {
        if targets.contains_key(&reference) {
            continue;
        }
        let Some((name, query)) = reference.split_once('?') else {
            continue;
        };
        let rtype: ResourceType = name.parse().map_err(|_| {
            ApiError::BadRequest(Issue::error(
                IssueCode::NotSupported,
                "a conditional reference names a resource type this server does not serve",
            ))
        })?;
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let found = search_condition(state, principal, tx, rtype, &params, None, 2, false).await?;
        match found.as_slice() {
            [id] => {
                targets.insert(reference, format!("{rtype}/{id}"));
            }
            [] => {
                return Err(ApiError::NotFound(format!(
                    "the {rtype} of a conditional reference"
                )));
            }
            _ => {
                return Err(ApiError::PreconditionFailed(format!(
                    "a conditional reference matches more than one {rtype}"
                )));
            }
        }
    }
    Ok(())
}

/// With access limited by a grant, the stored version of `rtype/id` must be granted too (see
/// `update::check_stored`), read in `tx`.
async fn check_stored(
    state: &AppState,
    tx: &mut Transaction<'_>,
    rtype: ResourceType,
    id: &Id,
    grant: &Grant,
) -> Result<(), ApiError> {
    if grant.is_unrestricted() {
        return Ok(());
    }
    let current = tx.read(rtype, id).await?;
    match current.and_then(|c| c.content.filter(|_| !c.deleted)) {
        Some(content) if !permits_text(state, rtype, grant, &content) => Err(ApiError::Forbidden(
            format!("the access token does not grant writing {rtype}/{id}"),
        )),
        _ => Ok(()),
    }
}

/// A GET or HEAD entry, answered by the interaction it names as if it were a request of its
/// own (JSON; conditional reads by `ifNoneMatch` and `ifModifiedSince`).
async fn dispatch(
    state: &AppState,
    principal: &Principal,
    entry: Entry<'_>,
) -> Result<Outcome, ApiError> {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::IF_NONE_MATCH, &entry.if_none_match),
        (header::IF_MODIFIED_SINCE, &entry.if_modified_since),
    ] {
        if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
    let json = Negotiated(Format::Json);
    let (s, p) = (State(state.clone()), principal.clone());
    let response = match entry.target {
        Target::Instance(rtype, id) => {
            read::read(s, p, InstancePath(rtype, id), json, headers).await?
        }
        Target::Version(rtype, id, version) => {
            vread::vread(s, p, VersionPath(rtype, id, version), json).await?
        }
        Target::Type(rtype, params) => {
            search::type_get(s, p, TypePath(rtype), json, headers, QueryParams(params)).await?
        }
        Target::System(params) => {
            search::system_get(s, p, json, headers, QueryParams(params)).await?
        }
        Target::InstanceHistory(rtype, id, params) => {
            history::instance(s, p, InstancePath(rtype, id), json, QueryParams(params)).await?
        }
        Target::TypeHistory(rtype, params) => {
            history::type_level(s, p, TypePath(rtype), json, QueryParams(params)).await?
        }
        Target::SystemHistory(params) => history::system(s, p, json, QueryParams(params)).await?,
    };
    let status = response.status();
    let version = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(match_tag);
    let last_modified = response
        .headers()
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .map(DateTime::<Utc>::from);
    let body = to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resource = (!body.is_empty() && entry.method == Method::Get)
        .then(|| String::from_utf8(body.to_vec()))
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Outcome {
        status,
        version,
        last_modified,
        resource,
        always_resource: true,
        ..Outcome::default()
    })
}

// --- The answer ----------------------------------------------------------------------

/// What one entry came to.
#[derive(Debug, Default)]
struct Outcome {
    status: StatusCode,
    /// The resource written or matched (for `location` and `fullUrl`).
    id: Option<(ResourceType, Id)>,
    version: Option<VersionId>,
    last_modified: Option<DateTime<Utc>>,
    /// The resource as JSON text.
    resource: Option<String>,
    /// A read's answer: its resource goes in whatever `Prefer` says.
    always_resource: bool,
    /// What `Prefer: return=OperationOutcome` reports.
    message: String,
    /// An error's OperationOutcome (JSON text).
    outcome: Option<String>,
}

impl Outcome {
    fn stored(rtype: ResourceType, stored: Stored, message: String) -> Self {
        Outcome {
            status: if stored.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            id: Some((rtype, stored.id)),
            version: Some(stored.version),
            last_modified: Some(stored.last_updated),
            resource: Some(stored.content),
            message,
            ..Outcome::default()
        }
    }

    /// The response entry; `prefer` (`Prefer: return=`) decides what a write's entry holds:
    /// nothing besides `response` when absent or `minimal`, the resource for
    /// `representation`, an OperationOutcome for `OperationOutcome`.
    fn into_entry(self, base: &str, prefer: Option<Return>) -> Result<ResponseEntry, ApiError> {
        let raw = |json: String| {
            RawValue::from_string(json).map_err(|e| ApiError::Internal(e.to_string()))
        };
        let resource = match (self.always_resource, prefer) {
            (true, _) | (false, Some(Return::Representation)) => self.resource,
            _ => None,
        };
        let outcome = match (self.outcome, prefer) {
            (Some(outcome), _) => Some(outcome),
            (None, Some(Return::OperationOutcome)) if !self.always_resource => {
                Some(operation_outcome(&[Issue::information(self.message)]).to_string())
            }
            _ => None,
        };
        let reason = self.status.canonical_reason().unwrap_or("");
        Ok(ResponseEntry {
            full_url: self
                .id
                .as_ref()
                .map(|(rtype, id)| format!("{base}/{rtype}/{id}")),
            resource: resource.map(raw).transpose()?,
            response: ResponseStatus {
                status: format!("{} {reason}", self.status.as_u16()),
                location: self
                    .id
                    .as_ref()
                    .zip(self.version)
                    .filter(|_| self.status == StatusCode::CREATED)
                    .map(|((rtype, id), version)| format!("{rtype}/{id}/_history/{version}")),
                etag: self.version.map(crate::http::etag),
                last_modified: self.last_modified.map(format_instant),
                outcome: outcome.map(raw).transpose()?,
            },
        })
    }
}

/// A `batch-response` or `transaction-response` Bundle.
#[derive(Debug, Serialize)]
struct ResponseBundle {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<ResponseEntry>,
}

#[derive(Debug, Serialize)]
struct ResponseEntry {
    #[serde(rename = "fullUrl", skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Box<RawValue>>,
    response: ResponseStatus,
}

#[derive(Debug, Serialize)]
struct ResponseStatus {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(rename = "lastModified", skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Box<RawValue>>,
}
