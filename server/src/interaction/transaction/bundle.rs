//! Reading a `batch` or `transaction` Bundle (http://hl7.org/fhir/R4/bundle.html) into its
//! entries: the Bundle's type, and per entry the method, the URL parsed against the server
//! base, the conditions, and the resource's JSON text. Pure: nothing here touches the
//! database, and nothing here reads a resource beyond finding where it lies.

use fhir_core::{Id, Issue, IssueCode, ResourceType, VersionId};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::http::match_tag;
use crate::interaction::create::condition_params;

/// What the Bundle asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Entries processed one by one, each succeeding or failing on its own.
    Batch,
    /// Entries processed all together or not at all.
    Transaction,
}

impl Kind {
    /// The type of the response Bundle.
    pub fn response_type(self) -> &'static str {
        match self {
            Kind::Batch => "batch-response",
            Kind::Transaction => "transaction-response",
        }
    }
}

/// `Bundle.entry.request.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn parse(text: &str) -> Option<Method> {
        Some(match text {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }
}

/// What `Bundle.entry.request.url` names, relative to the server base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `[type]`, or `[type]?params` (a search, or the condition of a conditional write).
    Type(ResourceType, Vec<(String, String)>),
    /// `[type]/[id]`.
    Instance(ResourceType, Id),
    /// `[type]/[id]/_history/[vid]`.
    Version(ResourceType, Id, VersionId),
    /// `[type]/[id]/_history`, with its parameters.
    InstanceHistory(ResourceType, Id, Vec<(String, String)>),
    /// `[type]/_history`.
    TypeHistory(ResourceType, Vec<(String, String)>),
    /// `_history`.
    SystemHistory(Vec<(String, String)>),
    /// `?params`: a search of every type.
    System(Vec<(String, String)>),
}

/// One entry, read and checked for shape (not its resource's content).
#[derive(Debug)]
pub struct Entry<'a> {
    /// `Bundle.entry.fullUrl`.
    pub full_url: Option<String>,
    pub method: Method,
    pub target: Target,
    /// The resource's JSON text, when the entry has one.
    pub resource: Option<&'a RawValue>,
    /// `request.ifMatch`, parsed.
    pub if_match: Option<VersionId>,
    /// `request.ifNoneExist`, as search parameters.
    pub if_none_exist: Option<Vec<(String, String)>>,
    /// `request.ifNoneMatch`, for a read.
    pub if_none_match: Option<String>,
    /// `request.ifModifiedSince`, for a read.
    pub if_modified_since: Option<String>,
}

/// A Bundle read: its type, and each entry or why it is malformed.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub kind: Kind,
    pub entries: Vec<Result<Entry<'a>, ApiError>>,
}

#[derive(Deserialize)]
struct RawBundle<'a> {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(borrow, default)]
    entry: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(rename = "fullUrl")]
    full_url: Option<String>,
    #[serde(borrow)]
    resource: Option<&'a RawValue>,
    request: Option<RawRequest>,
}

#[derive(Deserialize)]
struct RawRequest {
    method: Option<String>,
    url: Option<String>,
    #[serde(rename = "ifNoneMatch")]
    if_none_match: Option<String>,
    #[serde(rename = "ifModifiedSince")]
    if_modified_since: Option<String>,
    #[serde(rename = "ifMatch")]
    if_match: Option<String>,
    #[serde(rename = "ifNoneExist")]
    if_none_exist: Option<String>,
}

/// A 400 about the Bundle at `expression`.
fn invalid(code: IssueCode, expression: impl Into<String>, diagnostics: &str) -> ApiError {
    ApiError::BadRequest(Issue::at(code, expression, diagnostics))
}

/// Reads `text`, a Bundle's JSON: 400 unless it is a Bundle of type `batch` or `transaction`,
/// 413 ([`ApiError::TooManyEntries`]) with more than `max_entries` entries. Entries that are
/// malformed are returned as their error, each naming its place (`Bundle.entry[3]...`).
pub fn parse<'a>(text: &'a str, base: &str, max_entries: usize) -> Result<Parsed<'a>, ApiError> {
    let raw: RawBundle<'a> = serde_json::from_str(text).map_err(|e| {
        // Only the position: serde's message can quote the content.
        ApiError::BadRequest(Issue::error(
            IssueCode::Structure,
            format!(
                "the body is not a Bundle (at line {}, column {})",
                e.line(),
                e.column()
            ),
        ))
    })?;
    if raw.resource_type.as_deref() != Some("Bundle") {
        return Err(invalid(
            IssueCode::Invalid,
            "resourceType",
            "a batch or transaction is a Bundle",
        ));
    }
    let kind = match raw.kind.as_deref() {
        Some("transaction") => Kind::Transaction,
        Some("batch") => Kind::Batch,
        Some(_) => {
            return Err(invalid(
                IssueCode::Value,
                "Bundle.type",
                "the server processes Bundles of type transaction or batch only",
            ));
        }
        None => {
            return Err(invalid(
                IssueCode::Required,
                "Bundle.type",
                "Bundle.type is required (transaction or batch)",
            ));
        }
    };
    if raw.entry.len() > max_entries {
        return Err(ApiError::TooManyEntries { max: max_entries });
    }
    let entries = raw
        .entry
        .iter()
        .enumerate()
        .map(|(n, entry)| parse_entry(n, entry, base))
        .collect();
    Ok(Parsed { kind, entries })
}

fn parse_entry<'a>(n: usize, raw: &'a RawValue, base: &str) -> Result<Entry<'a>, ApiError> {
    let at = |path: &str| format!("Bundle.entry[{n}]{path}");
    let entry: RawEntry<'a> = serde_json::from_str(raw.get()).map_err(|_| {
        invalid(
            IssueCode::Structure,
            at(""),
            "the entry is not a Bundle entry (an element has the wrong type)",
        )
    })?;
    let request = entry.request.ok_or_else(|| {
        invalid(
            IssueCode::Required,
            at(".request"),
            "every entry of a batch or transaction needs a request",
        )
    })?;
    let method = request
        .method
        .as_deref()
        .ok_or_else(|| {
            invalid(
                IssueCode::Required,
                at(".request.method"),
                "request.method is required",
            )
        })
        .and_then(|m| {
            Method::parse(m).ok_or_else(|| {
                invalid(
                    IssueCode::Value,
                    at(".request.method"),
                    "request.method must be GET, HEAD, POST, PUT, PATCH or DELETE",
                )
            })
        })?;
    let url = request.url.as_deref().ok_or_else(|| {
        invalid(
            IssueCode::Required,
            at(".request.url"),
            "request.url is required",
        )
    })?;
    let target =
        parse_url(url, base).map_err(|why| invalid(IssueCode::Value, at(".request.url"), why))?;
    check_target(method, &target)
        .map_err(|why| invalid(IssueCode::Value, at(".request.url"), why))?;
    let resource = entry.resource.filter(|r| r.get() != "null");
    if matches!(method, Method::Post | Method::Put | Method::Patch) && resource.is_none() {
        return Err(invalid(
            IssueCode::Required,
            at(".resource"),
            "a POST, PUT or PATCH entry needs a resource",
        ));
    }
    let if_match = request
        .if_match
        .as_deref()
        .map(|tag| {
            match_tag(tag).ok_or_else(|| {
                invalid(
                    IssueCode::Value,
                    at(".request.ifMatch"),
                    "ifMatch must be an ETag such as W/\"1\"",
                )
            })
        })
        .transpose()?;
    Ok(Entry {
        full_url: entry.full_url,
        method,
        target,
        resource,
        if_match,
        if_none_exist: request.if_none_exist.as_deref().map(condition_params),
        if_none_match: request.if_none_match,
        if_modified_since: request.if_modified_since,
    })
}

/// Which URLs each method may have.
fn check_target(method: Method, target: &Target) -> Result<(), &'static str> {
    match (method, target) {
        (Method::Get | Method::Head, _) => Ok(()),
        (Method::Post, Target::Type(_, params)) if params.is_empty() => Ok(()),
        (Method::Post, _) => Err("a POST entry creates: its url is the resource type"),
        (Method::Put | Method::Patch | Method::Delete, Target::Instance(..)) => Ok(()),
        (Method::Put | Method::Patch | Method::Delete, Target::Type(_, params))
            if !params.is_empty() =>
        {
            Ok(())
        }
        (Method::Put | Method::Patch | Method::Delete, _) => {
            Err("a PUT, PATCH or DELETE entry names [type]/[id], or [type]?search")
        }
    }
}

/// Parameters that shape the answer's format, not what is read.
const FORMAT_PARAMS: [&str; 2] = ["_format", "_pretty"];

/// Parses `url`, relative to the server base (or absolute under it).
fn parse_url(url: &str, base: &str) -> Result<Target, &'static str> {
    let relative = match url.strip_prefix(base) {
        Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => rest,
        _ if url.starts_with("http://") || url.starts_with("https://") => {
            return Err("an absolute url must be under this server's base");
        }
        _ => url,
    };
    let relative = relative.trim_start_matches('/');
    let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let segments: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    let rtype = |s: &str| -> Result<ResourceType, &'static str> {
        s.parse()
            .map_err(|_| "the url does not start with a resource type this server serves")
    };
    let id = |s: &str| -> Result<Id, &'static str> {
        s.parse()
            .map_err(|_| "the url holds an id that is not valid")
    };
    let no_query = |target: Target| {
        if params
            .iter()
            .all(|(name, _)| FORMAT_PARAMS.contains(&name.as_str()))
        {
            Ok(target)
        } else {
            Err("this url takes no search parameters")
        }
    };
    match segments.as_slice() {
        [] => Ok(Target::System(params)),
        ["_history"] => Ok(Target::SystemHistory(params)),
        [t] => Ok(Target::Type(rtype(t)?, params)),
        [t, "_history"] => Ok(Target::TypeHistory(rtype(t)?, params)),
        [t, i] if !i.starts_with(['_', '$']) => no_query(Target::Instance(rtype(t)?, id(i)?)),
        [t, i, "_history"] => Ok(Target::InstanceHistory(rtype(t)?, id(i)?, params)),
        [t, i, "_history", v] => {
            let version = v
                .parse()
                .map_err(|_| "the url holds a version that is not valid")?;
            no_query(Target::Version(rtype(t)?, id(i)?, version))
        }
        _ => Err("the url is not one a batch or transaction entry may have"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://h/fhir";

    fn rt(name: &str) -> ResourceType {
        name.parse().unwrap_or(ResourceType::Patient)
    }

    fn id(text: &str) -> Id {
        text.parse().unwrap_or_else(|_| Id::generate())
    }

    #[test]
    fn urls_name_what_the_rest_api_serves() {
        let pairs = |n: &str, v: &str| vec![(n.to_owned(), v.to_owned())];
        assert_eq!(
            parse_url("Patient", BASE),
            Ok(Target::Type(rt("Patient"), vec![]))
        );
        assert_eq!(
            parse_url("Patient?identifier=a%7Cb", BASE),
            Ok(Target::Type(rt("Patient"), pairs("identifier", "a|b")))
        );
        assert_eq!(
            parse_url("/Patient/p1", BASE),
            Ok(Target::Instance(rt("Patient"), id("p1")))
        );
        assert_eq!(
            parse_url("http://h/fhir/Account/a1", BASE),
            Ok(Target::Instance(rt("Account"), id("a1")))
        );
        assert_eq!(
            parse_url("Patient/p1/_history/2", BASE),
            Ok(Target::Version(rt("Patient"), id("p1"), VersionId::new(2)))
        );
        assert_eq!(
            parse_url("Patient/p1/_history?_count=2", BASE),
            Ok(Target::InstanceHistory(
                rt("Patient"),
                id("p1"),
                pairs("_count", "2")
            ))
        );
        assert_eq!(
            parse_url("Invoice/_history", BASE),
            Ok(Target::TypeHistory(rt("Invoice"), vec![]))
        );
        assert_eq!(
            parse_url("_history", BASE),
            Ok(Target::SystemHistory(vec![]))
        );
        assert_eq!(
            parse_url("?_type=Patient", BASE),
            Ok(Target::System(pairs("_type", "Patient")))
        );
        for bad in [
            "Observation/1",
            "patient/1",
            "Patient/not valid",
            "Patient/p1/_history/x",
            "Patient/_search",
            "Patient/p1?name=x",
            "http://other/fhir/Patient/1",
            "http://h/fhirx/Patient/1",
            "Patient/p1/_history/2/more",
            "metadata",
        ] {
            assert!(parse_url(bad, BASE).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods_take_the_urls_of_their_interaction() {
        let patient = Target::Type(rt("Patient"), vec![]);
        let search = Target::Type(rt("Patient"), vec![("name".into(), "x".into())]);
        let one = Target::Instance(rt("Patient"), id("p"));
        assert!(check_target(Method::Post, &patient).is_ok());
        assert!(check_target(Method::Post, &search).is_err());
        assert!(check_target(Method::Post, &one).is_err());
        for method in [Method::Put, Method::Patch, Method::Delete] {
            assert!(check_target(method, &one).is_ok());
            assert!(check_target(method, &search).is_ok());
            assert!(check_target(method, &patient).is_err());
        }
        assert!(check_target(Method::Get, &search).is_ok());
    }

    fn status_of(text: &str) -> u16 {
        match parse(text, BASE, 2) {
            Ok(parsed) => match parsed.entries.into_iter().find_map(Result::err) {
                Some(error) => error.status().as_u16(),
                None => 200,
            },
            Err(error) => error.status().as_u16(),
        }
    }

    #[test]
    fn malformed_bundles_and_entries_are_400() {
        let entry =
            |e: &str| format!(r#"{{"resourceType":"Bundle","type":"batch","entry":[{e}]}}"#);
        for (what, text) in [
            ("not JSON", "{".to_owned()),
            ("an array", "[]".to_owned()),
            ("no type", r#"{"resourceType":"Bundle"}"#.to_owned()),
            (
                "a document",
                r#"{"resourceType":"Bundle","type":"document"}"#.to_owned(),
            ),
            (
                "not a Bundle",
                r#"{"resourceType":"Patient","type":"batch"}"#.to_owned(),
            ),
            (
                "entry not an array",
                r#"{"resourceType":"Bundle","type":"batch","entry":{}}"#.to_owned(),
            ),
            (
                "no request",
                entry(r#"{"resource":{"resourceType":"Patient"}}"#),
            ),
            ("no method", entry(r#"{"request":{"url":"Patient"}}"#)),
            (
                "unknown method",
                entry(r#"{"request":{"method":"COPY","url":"Patient"}}"#),
            ),
            (
                "lower-case method",
                entry(r#"{"request":{"method":"get","url":"Patient"}}"#),
            ),
            ("no url", entry(r#"{"request":{"method":"GET"}}"#)),
            (
                "bad url",
                entry(r#"{"request":{"method":"GET","url":"Nope/1"}}"#),
            ),
            (
                "url not a string",
                entry(r#"{"request":{"method":"GET","url":1}}"#),
            ),
            (
                "POST without resource",
                entry(r#"{"request":{"method":"POST","url":"Patient"}}"#),
            ),
            (
                "PUT without resource",
                entry(r#"{"request":{"method":"PUT","url":"Patient/1"}}"#),
            ),
            (
                "bad ifMatch",
                entry(r#"{"request":{"method":"DELETE","url":"Patient/1","ifMatch":"1"}}"#),
            ),
        ] {
            assert_eq!(status_of(&text), 400, "{what}");
        }
        let three = entry(&[r#"{"request":{"method":"GET","url":"Patient"}}"#; 3].join(","));
        assert_eq!(status_of(&three), 413);
        assert_eq!(
            status_of(&entry(r#"{"request":{"method":"GET","url":"Patient"}}"#)),
            200
        );
    }

    #[test]
    fn entries_keep_their_resource_text_and_conditions() {
        let text = r#"{"resourceType":"Bundle","type":"transaction","entry":[
            {"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient", "active":true},
             "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=a|b"}},
            {"request":{"method":"DELETE","url":"Patient/p","ifMatch":"W/\"3\""}}]}"#;
        let parsed = parse(text, BASE, 10).ok();
        let kind = parsed.as_ref().map(|p| p.kind);
        assert_eq!(kind, Some(Kind::Transaction));
        let entries: Vec<Entry<'_>> = parsed
            .into_iter()
            .flat_map(|p| p.entries)
            .filter_map(Result::ok)
            .collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].full_url.as_deref(), Some("urn:uuid:1"));
        assert_eq!(
            entries[0].resource.map(RawValue::get),
            Some(r#"{"resourceType":"Patient", "active":true}"#)
        );
        assert_eq!(
            entries[0].if_none_exist,
            Some(vec![("identifier".to_owned(), "a|b".to_owned())])
        );
        assert_eq!(entries[1].method, Method::Delete);
        assert_eq!(entries[1].if_match, Some(VersionId::new(3)));
    }
}
