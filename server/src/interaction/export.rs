//! Bulk Data export over HTTP (Bulk Data Access IG 2.0,
//! http://hl7.org/fhir/uv/bulkdata/export.html):
//!
//! | request | answer |
//! |---|---|
//! | `GET`/`POST [base]/$export`, `[base]/Patient/$export`, `[base]/Group/[id]/$export` | 202, `Content-Location: [base]/$export-status/[job]` |
//! | `GET [base]/$export-status/[job]` | 202 with `X-Progress` and `Retry-After` while it runs; 200 with the manifest; 429 when asked sooner than `FHIR_EXPORT_POLL_INTERVAL_MS` after the previous time |
//! | `DELETE [base]/$export-status/[job]` | 202; the job is cancelled and then unknown (404) |
//! | `GET [base]/$export-file/[job]/[file]` | the NDJSON file (`application/fhir+ndjson`) |
//!
//! The kick-off takes `_outputFormat`, `_since`, `_type` and `_typeFilter` (as query
//! parameters, or a `Parameters` body with `POST`); anything else is 400 unless
//! `Prefer: handling=lenient`, when it is reported in the manifest's `error` instead. It
//! needs `Prefer: respond-async`. Status and files need a token of the client that kicked
//! the export off (when authorisation is on).

use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fhir_core::resource::format_instant;
use fhir_core::{Issue, IssueCode, ResourceType};
use serde_json::{Value, json};
use smart::Interaction;
use store::{JobStatus, NewExport};
use uuid::Uuid;

use crate::auth::{Auth, Principal};
use crate::error::ApiError;
use crate::export::{ExportRequest, Level};
use crate::http::QueryParams;
use crate::state::AppState;

/// The output formats accepted, all meaning NDJSON.
const OUTPUT_FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// `[base]/$export`.
pub async fn system(
    State(state): State<AppState>,
    principal: Principal,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    params: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    let kick = KickOff {
        uri,
        headers,
        params,
        body,
    };
    kick_off(&state, &principal, Level::System, kick).await
}

/// `[base]/Patient/$export` (the `{type}` segment must be `Patient`).
pub async fn patient(
    State(state): State<AppState>,
    principal: Principal,
    Path(rtype): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    params: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    if rtype != "Patient" {
        return Err(ApiError::NotFound(format!("{rtype}/$export")));
    }
    let kick = KickOff {
        uri,
        headers,
        params,
        body,
    };
    kick_off(&state, &principal, Level::Patient, kick).await
}

/// `[base]/Group/[id]/$export`.
pub async fn group(
    State(state): State<AppState>,
    principal: Principal,
    Path((rtype, id)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    params: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    if rtype != "Group" {
        return Err(ApiError::NotFound(format!("{rtype}/{id}/$export")));
    }
    let gid = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("Group/{id}")))?;
    let grant = crate::auth::access::require(&principal, ResourceType::Group, Interaction::Read)?;
    let group = state.store.read(ResourceType::Group, &gid).await?;
    let visible = group
        .and_then(|g| g.content.filter(|_| !g.deleted))
        .is_some_and(|content| {
            crate::auth::access::permits_text(&state, ResourceType::Group, &grant, &content)
        });
    if !visible {
        return Err(ApiError::NotFound(format!("Group/{id}")));
    }
    let kick = KickOff {
        uri,
        headers,
        params,
        body,
    };
    kick_off(&state, &principal, Level::Group(id), kick).await
}

/// A kick-off request.
struct KickOff {
    uri: axum::http::Uri,
    headers: HeaderMap,
    params: QueryParams,
    body: Bytes,
}

/// The kick-off parameters, from the query string and, for `POST`, a `Parameters` body.
fn parameters(params: QueryParams, body: &Bytes) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = params.0;
    if body.is_empty() {
        return Ok(pairs);
    }
    let parameters: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("the kick-off body must be a Parameters resource"))?;
    if parameters["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request(
            "the kick-off body must be a Parameters resource",
        ));
    }
    for parameter in parameters["parameter"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().unwrap_or_default().to_owned();
        let value = ["valueString", "valueInstant", "valueCode", "valueDateTime"]
            .iter()
            .find_map(|key| parameter[*key].as_str())
            .ok_or_else(|| ApiError::bad_request(format!("parameter {name} has no value")))?;
        pairs.push((name, value.to_owned()));
    }
    Ok(pairs)
}

/// Whether a `Prefer` header asks for `preference` (`respond-async`, `handling=lenient`).
fn prefers(headers: &HeaderMap, preference: &str) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case(preference))
}

async fn kick_off(
    state: &AppState,
    principal: &Principal,
    level: Level,
    kick: KickOff,
) -> Result<Response, ApiError> {
    let KickOff {
        uri,
        headers,
        params,
        body,
    } = kick;
    let headers = &headers;
    let body = &body;
    if !prefers(headers, "respond-async") {
        return Err(ApiError::bad_request(
            "an export needs the header Prefer: respond-async",
        ));
    }
    let lenient = prefers(headers, "handling=lenient");
    let mut ignored = Vec::new();
    let mut types: Option<Vec<ResourceType>> = None;
    let mut since = None;
    let mut type_filters = Vec::new();
    for (name, value) in parameters(params, body)? {
        match name.as_str() {
            "_outputFormat" => {
                if !OUTPUT_FORMATS.contains(&value.as_str()) {
                    return Err(ApiError::bad_request(
                        "_outputFormat must be application/fhir+ndjson",
                    ));
                }
            }
            "_since" => since = Some(parse_instant(&value)?),
            "_type" => {
                let mut list = types.take().unwrap_or_default();
                for name in value.split(',').map(str::trim) {
                    match name.parse::<ResourceType>() {
                        Ok(rtype) if !list.contains(&rtype) => list.push(rtype),
                        Ok(_) => {}
                        Err(_) if lenient => ignored.push(format!("_type {name}")),
                        Err(_) => {
                            return Err(ApiError::bad_request(format!(
                                "_type: {name} is not a type this server exports"
                            )));
                        }
                    }
                }
                types = Some(list);
            }
            "_typeFilter" => type_filters.extend(value.split(',').map(str::to_owned)),
            "_format" | "_pretty" => {}
            other if lenient => ignored.push(other.to_owned()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other} is not a parameter of $export (Prefer: handling=lenient ignores it)"
                )));
            }
        }
    }
    let allowed = level.types();
    let exportable = |rtype: &ResourceType| {
        principal.permissions.allows(*rtype, Interaction::Read)
            && principal.permissions.allows(*rtype, Interaction::Search)
    };
    let types = match types {
        Some(asked) => {
            for rtype in &asked {
                if !allowed.contains(rtype) {
                    return Err(ApiError::bad_request(format!(
                        "{rtype} is not in the patient compartment: a Patient or Group export \
                         holds Patient, Account and Invoice, and the Organization and \
                         Practitioner they refer to"
                    )));
                }
                if !exportable(rtype) {
                    return Err(ApiError::Forbidden(format!(
                        "the access token does not grant reading and searching {rtype}"
                    )));
                }
            }
            asked
        }
        None => allowed.into_iter().filter(exportable).collect(),
    };
    if types.is_empty() {
        return Err(ApiError::Forbidden(
            "the access token grants no type to export".into(),
        ));
    }
    let request = ExportRequest {
        level,
        types: types.iter().map(|t| t.as_str().to_owned()).collect(),
        since,
        type_filters,
        scope: principal.scope.clone(),
        patient: principal
            .permissions
            .patient()
            .map(|p| p.as_str().to_owned()),
    };
    // Every filter must be a search of a type exported, now rather than when the job runs.
    let registry = state.store.registry()?;
    for filter in &request.type_filters {
        let Some((name, _)) = filter.split_once('?') else {
            return Err(ApiError::bad_request("_typeFilter must be Type?search"));
        };
        let rtype: ResourceType = name.parse().map_err(|_| {
            ApiError::bad_request("_typeFilter names a type this server does not store")
        })?;
        if !types.contains(&rtype) {
            return Err(ApiError::bad_request(format!(
                "_typeFilter for {rtype}, which is not exported"
            )));
        }
        request
            .queries(registry, rtype, &state.base)
            .map_err(|e| ApiError::BadRequest(Issue::error(IssueCode::Invalid, e)))?;
    }
    let mut stored =
        serde_json::to_value(&request).map_err(|e| ApiError::Internal(e.to_string()))?;
    if !ignored.is_empty() {
        stored["ignored"] = json!(ignored);
    }
    let new = NewExport {
        request: stored,
        request_url: request_url(state, &uri),
        owner: owner(state, principal),
        requires_token: matches!(state.auth, Auth::Tokens(_)),
    };
    let Some(id) = state
        .store
        .create_export(&new, state.config.export.max_jobs)
        .await?
    else {
        return Err(too_many(state));
    };
    let mut response = StatusCode::ACCEPTED.into_response();
    let location = format!("{}/$export-status/{id}", state.base);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(header::CONTENT_LOCATION, value);
    }
    Ok(response)
}

/// The kick-off URL for the manifest: the server's origin, then the path and query as
/// requested.
fn request_url(state: &AppState, uri: &axum::http::Uri) -> String {
    let base_path = state.config.base_path();
    let origin = state.base.strip_suffix(&base_path).unwrap_or(&state.base);
    let path = uri.path_and_query().map_or("", |p| p.as_str());
    format!("{origin}{path}")
}

/// Whose job it is: the client and the subject of the token (none without authorisation),
/// so that another user of the same client (another patient of one app) cannot see it.
fn owner(state: &AppState, principal: &Principal) -> Option<String> {
    match state.auth {
        Auth::Off => None,
        Auth::Tokens(_) => Some(format!(
            "{} {}",
            principal.client_id.as_deref().unwrap_or_default(),
            principal.subject.as_deref().unwrap_or_default()
        )),
    }
}

/// 429, retry later.
fn too_many(state: &AppState) -> ApiError {
    ApiError::TooManyRequests(format!(
        "{} exports are running already; retry later",
        state.config.export.max_jobs
    ))
}

/// `_since`: an instant (a date or a dateTime without zone is read as UTC).
fn parse_instant(value: &str) -> Result<DateTime<Utc>, ApiError> {
    let range = fhir_core::search::DateRange::parse(value.trim())
        .ok_or_else(|| ApiError::bad_request("_since must be an instant"))?;
    range
        .low
        .ok_or_else(|| ApiError::bad_request("_since must be an instant"))
}

/// The job of `id`, when the caller may see it.
async fn job_for(
    state: &AppState,
    principal: &Principal,
    id: &str,
    record_poll: bool,
) -> Result<store::ExportJob, ApiError> {
    let not_found = || ApiError::NotFound("this export".into());
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let job = if record_poll {
        state.store.poll_export(id).await?
    } else {
        state.store.export_job(id).await?
    };
    let job = job.ok_or_else(not_found)?;
    if job.status == JobStatus::Cancelled || job.owner != owner(state, principal) {
        return Err(not_found());
    }
    Ok(job)
}

/// `GET [base]/$export-status/[job]`.
pub async fn status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = job_for(&state, &principal, &id, true).await?;
    let interval = state.config.export.poll_interval;
    let retry_after = interval.as_secs().max(1).to_string();
    if let Some(previous) = job.polled_at {
        let since = Utc::now().signed_duration_since(previous);
        if since.to_std().is_ok_and(|since| since < interval) {
            let mut response =
                ApiError::TooManyRequests("polled too soon: wait for Retry-After".into())
                    .into_response();
            if let Ok(value) = HeaderValue::from_str(&retry_after) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Ok(response);
        }
    }
    match job.status {
        JobStatus::Accepted | JobStatus::Running => {
            let mut response = StatusCode::ACCEPTED.into_response();
            let progress = job.progress.as_deref().unwrap_or(match job.status {
                JobStatus::Accepted => "waiting to start",
                _ => "running",
            });
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(progress) {
                headers.insert("x-progress", value);
            }
            if let Ok(value) = HeaderValue::from_str(&retry_after) {
                headers.insert(header::RETRY_AFTER, value);
            }
            Ok(response)
        }
        JobStatus::Failed => Err(ApiError::ExportFailed(
            job.error.unwrap_or_else(|| "the export failed".into()),
        )),
        JobStatus::Cancelled => Err(ApiError::NotFound("this export".into())),
        JobStatus::Completed => Ok(manifest(&state, &job)),
    }
}

/// The completion manifest: the files of the exported types in `output`, those of
/// OperationOutcomes (what lenient handling ignored) in `error`.
fn manifest(state: &AppState, job: &store::ExportJob) -> Response {
    let (errors, files): (Vec<&Value>, Vec<&Value>) = job
        .output
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .partition(|file| file["type"] == "OperationOutcome");
    let entry = |file: &Value| {
        json!({
            "type": file["type"],
            "url": format!(
                "{}/$export-file/{}/{}",
                state.base,
                job.id,
                file["file"].as_str().unwrap_or_default()
            ),
            "count": file["count"],
        })
    };
    let body = json!({
        "transactionTime": job.transaction_time.map(format_instant),
        "request": job.request_url,
        "requiresAccessToken": job.requires_token,
        "output": files.into_iter().map(entry).collect::<Vec<_>>(),
        "error": errors.into_iter().map(entry).collect::<Vec<_>>(),
    });
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(expires) = job.expires_at
        && let Ok(value) = HeaderValue::from_str(&crate::http::http_date(expires))
    {
        headers.insert(header::EXPIRES, value);
    }
    response
}

/// `DELETE [base]/$export-status/[job]`.
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = job_for(&state, &principal, &id, false).await?;
    if !state.store.cancel_export(job.id).await? {
        return Err(ApiError::NotFound("this export".into()));
    }
    let _ = tokio::fs::remove_dir_all(state.config.export.dir.join(job.id.to_string())).await;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET [base]/$export-file/[job]/[file]`: streamed from disk.
pub async fn file(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let job = job_for(&state, &principal, &id, false).await?;
    let listed = job
        .output
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|files| files.iter().any(|f| f["file"] == name.as_str()));
    if job.status != JobStatus::Completed || !listed {
        return Err(ApiError::NotFound("this file".into()));
    }
    let path = state.config.export.dir.join(job.id.to_string()).join(&name);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::NotFound("this file".into()))?;
    let stream = tokio_util::io::ReaderStream::new(file);
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+ndjson"),
    );
    Ok(response)
}
