//! HTTP plumbing shared by the interactions: extractors that parse the path, headers and
//! body into domain types (rejecting bad input before any SQL), and response builders.
//! (http://hl7.org/fhir/R4/http.html)

use std::collections::HashMap;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use fhir_core::outcome::operation_outcome;
use fhir_core::resource::{Format, json_to_xml};
use fhir_core::{Id, Issue, IssueCode, ResourceType, VersionId};

use crate::error::{ApiError, FHIR_JSON};

const FHIR_XML: &str = "application/fhir+xml; charset=utf-8";

/// `[type]` in the path, parsed.
#[derive(Debug, Clone, Copy)]
pub struct TypePath(pub ResourceType);

/// `[type]/[id]` in the path, parsed.
#[derive(Debug, Clone)]
pub struct InstancePath(pub ResourceType, pub Id);

/// `[type]/[id]/_history/[vid]` in the path, parsed.
#[derive(Debug, Clone)]
pub struct VersionPath(pub ResourceType, pub Id, pub VersionId);

async fn path_params(parts: &mut Parts) -> Result<HashMap<String, String>, ApiError> {
    Path::<HashMap<String, String>>::from_request_parts(parts, &())
        .await
        .map(|Path(params)| params)
        .map_err(|_| ApiError::bad_request("malformed path"))
}

fn parse_type(params: &HashMap<String, String>) -> Result<ResourceType, ApiError> {
    params
        .get("type")
        .and_then(|t| t.parse().ok())
        .ok_or(ApiError::UnknownType)
}

fn parse_id(params: &HashMap<String, String>) -> Result<Id, ApiError> {
    params
        .get("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ApiError::bad_request("the id in the URL is not a valid FHIR id"))
}

impl<S: Send + Sync> FromRequestParts<S> for TypePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(TypePath(parse_type(&path_params(parts).await?)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for InstancePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts).await?;
        Ok(InstancePath(parse_type(&params)?, parse_id(&params)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VersionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts).await?;
        let rtype = parse_type(&params)?;
        let id = parse_id(&params)?;
        // No version Ferrum issued looks like this: it cannot exist.
        let version = params
            .get("vid")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::NotFound(format!("{rtype}/{id} at that version")))?;
        Ok(VersionPath(rtype, id, version))
    }
}

/// The query string as name/value pairs, in order (parameters may repeat).
#[derive(Debug, Clone, Default)]
pub struct QueryParams(pub Vec<(String, String)>);

impl QueryParams {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(QueryParams(
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}

/// The response format the client accepts: `_format` wins over `Accept`.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated(pub Format);

fn format_of_mime(mime: &str) -> Option<Format> {
    match mime {
        "application/fhir+json"
        | "application/json"
        | "application/json+fhir"
        | "json"
        | "*/*"
        | "application/*" => Some(Format::Json),
        "application/fhir+xml"
        | "application/xml"
        | "application/xml+fhir"
        | "text/xml"
        | "xml" => Some(Format::Xml),
        _ => None,
    }
}

/// Picks the best format of an `Accept` header by quality; `None` when nothing offered fits.
fn negotiate_accept(accept: &str) -> Option<Format> {
    let mut best: Option<(f32, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let mime = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if let Some(format) = format_of_mime(&mime).filter(|_| quality > 0.0)
            && best.is_none_or(|(q, _)| quality > q)
        {
            best = Some((quality, format));
        }
    }
    best.map(|(_, format)| format)
}

impl<S: Send + Sync> FromRequestParts<S> for Negotiated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = QueryParams::from_request_parts(parts, state).await?;
        if let Some(format) = query.get("_format") {
            let mime = format
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            return format_of_mime(&mime)
                .map(Negotiated)
                .ok_or(ApiError::NotAcceptable);
        }
        match parts.headers.get(header::ACCEPT).map(HeaderValue::to_str) {
            None => Ok(Negotiated(Format::Json)),
            Some(Ok(accept)) if accept.trim().is_empty() => Ok(Negotiated(Format::Json)),
            Some(Ok(accept)) => negotiate_accept(accept)
                .map(Negotiated)
                .ok_or(ApiError::NotAcceptable),
            Some(Err(_)) => Err(ApiError::NotAcceptable),
        }
    }
}

/// A request body holding a resource, with the format its `Content-Type` names.
#[derive(Debug)]
pub struct FhirBody {
    pub format: Format,
    pub bytes: Bytes,
}

/// The media type of the body: `Content-Type` without its parameters, in lower case.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

/// The FHIR format a body's media type (as [`media_type`] gives it) names.
pub fn body_format(media_type: &str) -> Option<Format> {
    match media_type {
        "application/fhir+json" | "application/json" | "application/json+fhir" => {
            Some(Format::Json)
        }
        "application/fhir+xml" | "application/xml" | "application/xml+fhir" | "text/xml" => {
            Some(Format::Xml)
        }
        _ => None,
    }
}

impl<S: Send + Sync> FromRequest<S> for FhirBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let format = media_type(req.headers())
            .as_deref()
            .and_then(body_format)
            .ok_or(ApiError::UnsupportedMediaType)?;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest(Issue::error(
                    IssueCode::Structure,
                    "the body could not be read",
                ))
            }
        })?;
        Ok(FhirBody { format, bytes })
    }
}

/// A body that may be absent: no `Content-Type` and nothing sent is `None` (an operation
/// whose input can come from the query alone).
impl<S: Send + Sync> OptionalFromRequest<S> for FhirBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if req.headers().contains_key(header::CONTENT_TYPE) {
            return <FhirBody as FromRequest<S>>::from_request(req, state)
                .await
                .map(Some);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::UnsupportedMediaType)?;
        if bytes.is_empty() {
            Ok(None)
        } else {
            Err(ApiError::UnsupportedMediaType)
        }
    }
}

/// `Prefer: return=...`: what a write answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

impl<S: Send + Sync> FromRequestParts<S> for Return {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Return::asked(&parts.headers).unwrap_or_default())
    }
}

impl Return {
    /// The first `return=` preference of the `Prefer` headers, when there is one (a value
    /// other than `minimal` and `OperationOutcome` is `representation`).
    pub fn asked(headers: &HeaderMap) -> Option<Return> {
        let asked = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']))
            .find_map(|p| p.trim().strip_prefix("return="))?;
        Some(match asked.trim().trim_matches('"') {
            "minimal" => Return::Minimal,
            "OperationOutcome" => Return::OperationOutcome,
            _ => Return::Representation,
        })
    }
}

/// Parses an entity tag naming a version: `W/"3"` or `"3"`.
pub fn parse_etag(value: &str) -> Option<VersionId> {
    let value = value.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    value.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// The `ETag` of a version.
pub fn etag(version: VersionId) -> String {
    format!("W/\"{version}\"")
}

/// `If-Match`, parsed: `None` when absent; 400 when malformed. A well-formed tag of a
/// version that cannot exist (`W/"0"`) is kept: it fails the comparison, so 412.
pub fn if_match(headers: &HeaderMap) -> Result<Option<VersionId>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(match_tag)
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("If-Match must be an ETag such as W/\"1\""))
}

/// The version an `If-Match` value (or a Bundle entry's `request.ifMatch`) names: `W/"3"`
/// or `"3"`; `None` when malformed.
pub fn match_tag(value: &str) -> Option<VersionId> {
    let value = value.trim();
    value
        .strip_prefix("W/")
        .unwrap_or(value)
        .strip_prefix('"')?
        .strip_suffix('"')?
        .parse::<u32>()
        .ok()
        .map(|n| VersionId::new(i64::from(n)))
}

/// An HTTP date (`Last-Modified`).
pub fn http_date(at: DateTime<Utc>) -> String {
    httpdate::fmt_http_date(SystemTime::from(at))
}

/// Whether a conditional read may answer 304 Not Modified.
pub fn not_modified(headers: &HeaderMap, version: VersionId, last_updated: DateTime<Utc>) -> bool {
    if let Some(value) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return value
            .split(',')
            .any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(version));
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since| SystemTime::from(last_updated.trunc_to_seconds()) <= since)
}

trait TruncToSeconds {
    fn trunc_to_seconds(self) -> Self;
}

impl TruncToSeconds for DateTime<Utc> {
    fn trunc_to_seconds(self) -> Self {
        DateTime::from_timestamp(self.timestamp(), 0).unwrap_or(self)
    }
}

/// A body in the negotiated format. `json` is FHIR JSON text; XML is converted from it.
pub fn fhir_body(status: StatusCode, format: Format, json: String) -> Result<Response, ApiError> {
    let (content_type, body) = match format {
        Format::Json => (FHIR_JSON, json),
        Format::Xml => (
            FHIR_XML,
            json_to_xml(&json).map_err(|issue| ApiError::Internal(issue.diagnostics))?,
        ),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::VARY, VARY_ACCEPT);
    Ok(response)
}

/// An answer in the format the request's `Accept` chose says so, so that an HTTP cache does
/// not hand a JSON answer to a request for XML.
const VARY_ACCEPT: HeaderValue = HeaderValue::from_static("accept");

/// 304 Not Modified, with the `Vary` of the answer it stands for.
pub fn not_modified_response() -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    response.headers_mut().insert(header::VARY, VARY_ACCEPT);
    response
}

/// The answer to a write, shaped by `Prefer: return=`.
pub fn write_response(
    status: StatusCode,
    format: Format,
    prefer: Return,
    content: String,
    message: &str,
) -> Result<Response, ApiError> {
    match prefer {
        Return::Minimal => Ok(status.into_response()),
        Return::Representation => fhir_body(status, format, content),
        Return::OperationOutcome => fhir_body(
            status,
            format,
            operation_outcome(&[Issue::information(message)]).to_string(),
        ),
    }
}

/// Adds `ETag` and `Last-Modified` (and `Location` when given) to a response.
pub fn with_version_headers(
    mut response: Response,
    version: VersionId,
    last_updated: DateTime<Utc>,
    location: Option<String>,
) -> Response {
    let headers = response.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(header::ETAG, etag(version));
    set(header::LAST_MODIFIED, http_date(last_updated));
    if let Some(location) = location {
        set(header::LOCATION, location);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_best_supported_format() {
        assert!(matches!(
            negotiate_accept("application/fhir+json"),
            Some(Format::Json)
        ));
        assert!(matches!(
            negotiate_accept("application/fhir+xml"),
            Some(Format::Xml)
        ));
        assert!(matches!(
            negotiate_accept("text/html,application/xml;q=0.9,*/*;q=0.8"),
            Some(Format::Xml)
        ));
        assert!(matches!(
            negotiate_accept("application/json;q=0.5, application/fhir+xml;q=0.7"),
            Some(Format::Xml)
        ));
        assert!(negotiate_accept("text/plain").is_none());
        assert!(negotiate_accept("application/json;q=0").is_none());
    }

    #[test]
    fn etags_parse_weak_and_strong() {
        assert_eq!(parse_etag("W/\"3\""), Some(VersionId::new(3)));
        assert_eq!(parse_etag("\"3\""), Some(VersionId::new(3)));
        assert_eq!(parse_etag("3"), None);
        assert_eq!(parse_etag("W/\"x\""), None);
    }
}
