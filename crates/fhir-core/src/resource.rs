//! Turning a request body into a resource Ferrum may store: parse (JSON or XML), check the
//! type, validate against the R4 definitions, and stamp the server-owned fields.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::id::{Id, VersionId};
use crate::members;
use crate::outcome::{Issue, IssueCode};
use crate::resource_type::ResourceType;
use crate::validation;

/// The most issues one OperationOutcome reports.
const MAX_ISSUES: usize = 100;

/// A wire format Ferrum reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// Parses and validates a request body that must hold a resource of type `expected`.
///
/// Returns the resource as JSON (XML input is converted), or every issue found.
pub fn parse(body: &[u8], format: Format, expected: ResourceType) -> Result<Value, Vec<Issue>> {
    let text = utf8(body)?;
    let value = to_json(text, format)?;
    check_type(&value, expected)?;
    let mut issues = validation::validate(&value);
    if !issues.is_empty() {
        // A hostile body can hold any number of faults; the first ones are enough to fix.
        issues.truncate(MAX_ISSUES);
        return Err(issues);
    }
    if format == Format::Json {
        // The walker covers the R4 rules it knows; the strict fhirbolt parse is a second gate.
        validation::parse_strict(text, expected.as_str()).map_err(|issue| vec![issue])?;
    }
    Ok(value)
}

/// Reads a body in `format` as JSON, neither checking its type nor validating it: for bodies
/// that are not resources to store (a FHIRPath Patch's Parameters).
pub fn read(body: &[u8], format: Format) -> Result<Value, Vec<Issue>> {
    to_json(utf8(body)?, format)
}

fn utf8(body: &[u8]) -> Result<&str, Vec<Issue>> {
    std::str::from_utf8(body).map_err(|_| {
        vec![Issue::error(
            IssueCode::Structure,
            "body is not valid UTF-8",
        )]
    })
}

fn to_json(text: &str, format: Format) -> Result<Value, Vec<Issue>> {
    match format {
        Format::Json => parse_json(text),
        Format::Xml => xml_to_json(text),
    }
}

fn parse_json(text: &str) -> Result<Value, Vec<Issue>> {
    let value = serde_json::from_str::<Value>(text).map_err(|e| {
        // Only the position: serde's message could quote the content.
        vec![Issue::error(
            IssueCode::Structure,
            format!(
                "malformed JSON (syntax error at line {}, column {})",
                e.line(),
                e.column()
            ),
        )]
    })?;
    if let Some(path) = members::repeated(text) {
        let root = value.get("resourceType").and_then(Value::as_str);
        let expression = match root {
            Some(root) => format!("{root}{path}"),
            None => path.trim_start_matches('.').to_owned(),
        };
        return Err(vec![Issue::at(
            IssueCode::Structure,
            expression,
            "an element is given twice in one object: FHIR JSON names each member once",
        )]);
    }
    Ok(value)
}

fn xml_to_json(text: &str) -> Result<Value, Vec<Issue>> {
    crate::xml::xml_to_json(text)
}

fn check_type(value: &Value, expected: ResourceType) -> Result<(), Vec<Issue>> {
    let Some(object) = value.as_object() else {
        return Err(vec![Issue::error(
            IssueCode::Structure,
            "a resource must be a JSON object",
        )]);
    };
    match object.get("resourceType").and_then(Value::as_str) {
        Some(name) if name == expected.as_str() => Ok(()),
        Some(_) => Err(vec![Issue::at(
            IssueCode::Invalid,
            "resourceType",
            format!("resourceType does not match the {expected} endpoint"),
        )]),
        None => Err(vec![Issue::at(
            IssueCode::Required,
            "resourceType",
            "resourceType is missing",
        )]),
    }
}

/// The logical id written in a resource body, if any.
pub fn body_id(resource: &Value) -> Option<&str> {
    resource.get("id").and_then(Value::as_str)
}

/// Sets the fields the server owns: `id`, `meta.versionId` and `meta.lastUpdated`.
/// Everything else in `meta` (profile, security, tag, source) is kept as sent.
pub fn stamp(resource: &mut Value, id: &Id, version: VersionId, last_updated: DateTime<Utc>) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let mut meta = match object.remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.insert("versionId".into(), Value::String(version.to_string()));
    meta.insert(
        "lastUpdated".into(),
        Value::String(format_instant(last_updated)),
    );
    // resourceType, id and meta lead, as in the specification's examples.
    let mut stamped = Map::with_capacity(object.len() + 2);
    if let Some(rtype) = object.remove("resourceType") {
        stamped.insert("resourceType".into(), rtype);
    }
    object.remove("id");
    stamped.insert("id".into(), Value::String(id.to_string()));
    stamped.insert("meta".into(), Value::Object(meta));
    stamped.append(object);
    *object = stamped;
}

/// An R4 `instant` with microseconds, as stored.
pub fn format_instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Converts a stored JSON resource to FHIR XML.
pub fn json_to_xml(json: &str) -> Result<String, Issue> {
    crate::xml::json_to_xml(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap_or_default()
    }

    #[test]
    fn accepts_a_valid_patient() {
        let body = bytes(&json!({"resourceType": "Patient", "gender": "female"}));
        assert!(parse(&body, Format::Json, ResourceType::Patient).is_ok());
    }

    #[test]
    fn refuses_an_element_given_twice() {
        let body = br#"{"resourceType": "Patient", "name": [{"family": "A", "family": "B"}]}"#;
        let issues = parse(body, Format::Json, ResourceType::Patient).err();
        let issue = &issues.unwrap_or_default()[0];
        assert_eq!(issue.code, IssueCode::Structure);
        assert_eq!(issue.expression.as_deref(), Some("Patient.name[0].family"));
        let body = br#"{"resourceType": "Parameters", "parameter": [], "parameter": []}"#;
        let issues = read(body, Format::Json).err();
        let issue = &issues.unwrap_or_default()[0];
        assert_eq!(issue.expression.as_deref(), Some("Parameters.parameter"));
    }

    #[test]
    fn rejects_a_type_mismatch() {
        let body = bytes(&json!({"resourceType": "Patient"}));
        let issues = parse(&body, Format::Json, ResourceType::Account).err();
        assert_eq!(issues.unwrap_or_default()[0].code, IssueCode::Invalid);
    }

    #[test]
    fn malformed_json_reports_only_the_position() {
        let issues = parse(
            br#"{"resourceType": "Patient", "name": [{"family": "Secret"#,
            Format::Json,
            ResourceType::Patient,
        )
        .err()
        .unwrap_or_default();
        assert_eq!(issues[0].code, IssueCode::Structure);
        assert!(!issues[0].diagnostics.contains("Secret"));
    }

    #[test]
    fn stamp_replaces_server_fields_and_keeps_the_rest() {
        let mut r = json!({"resourceType": "Patient", "id": "old",
            "meta": {"versionId": "9", "profile": ["http://example.org/p"]}});
        let at = DateTime::from_timestamp(0, 0).unwrap_or_default();
        stamp(
            &mut r,
            &"new".parse().unwrap_or_else(|_| Id::generate()),
            VersionId::new(2),
            at,
        );
        assert_eq!(r["id"], "new");
        assert_eq!(r["meta"]["versionId"], "2");
        assert_eq!(r["meta"]["lastUpdated"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(r["meta"]["profile"][0], "http://example.org/p");
    }

    #[test]
    fn xml_round_trip() {
        let xml = r#"<Patient xmlns="http://hl7.org/fhir"><id value="x"/><gender value="male"/></Patient>"#;
        let value = parse(xml.as_bytes(), Format::Xml, ResourceType::Patient).unwrap_or_default();
        assert_eq!(value["gender"], "male");
        let back = json_to_xml(&value.to_string()).unwrap_or_default();
        assert!(
            back.contains("<Patient xmlns=\"http://hl7.org/fhir\">"),
            "{back}"
        );
    }
}
