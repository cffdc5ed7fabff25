//! Validation of incoming resources against the base FHIR R4 StructureDefinitions in
//! `fhir-profiles/`, compiled into the binary, with one issue per problem located by FHIRPath.
//!
//! [`validate`] walks the JSON against the element model: JSON representation rules, unknown
//! elements, cardinality, primitive formats (with real calendar dates), choice types, required
//! bindings and contained resources. FHIRPath invariants are not evaluated, except ele-1
//! (no empty objects or arrays) and ext-1 (an extension has a value or nested extensions).
//! [`parse_strict`] is the second gate: the fhirbolt R4 model must accept the resource too.
//!
//! Expressions use FHIRPath with indexes (`Patient.name[0].family`); a choice element is
//! written `Patient.deceased.ofType(dateTime)`, and the extensions of a primitive sent as
//! `_birthDate` sit under the primitive (`Patient.birthDate.extension[0]`). Diagnostics never
//! quote the offending value, as it may be patient data.

mod embedded;
mod model;
mod primitive;
mod terminology;
pub(crate) mod types;
mod walker;

#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use serde_json::Value;

use crate::outcome::{Issue, IssueCode};

/// Built on first use; the definitions are compiled in, so an error here is a defect in
/// `fhir-profiles/` that the unit tests catch, surfaced as an exception issue, not a panic.
static SCHEMA: LazyLock<Result<model::Schema, String>> = LazyLock::new(model::build);

/// Validates a resource of a known, supported type; returns every problem found (empty = valid).
pub fn validate(resource: &Value) -> Vec<Issue> {
    match &*SCHEMA {
        Ok(schema) => {
            let mut walker = walker::Walker::new(schema);
            walker.root(resource);
            walker.issues
        }
        Err(error) => vec![Issue::error(
            IssueCode::Exception,
            format!("the validator's definitions are broken: {error}"),
        )],
    }
}

/// The resource types [`validate`] accepts, sorted (empty if the definitions are broken).
pub fn supported_resource_types() -> Vec<&'static str> {
    match &*SCHEMA {
        Ok(schema) => schema.resource_names(),
        Err(_) => Vec::new(),
    }
}

/// Builds the validator's model now instead of on the first request.
pub fn warm_up() {
    LazyLock::force(&SCHEMA);
}

/// Strict R4 parse with fhirbolt, for what the walker does not cover; Err carries one Issue.
pub fn parse_strict(json_text: &str) -> Result<(), Issue> {
    fhir_codec::check_json(json_text)
        .map_err(|error| Issue::error(IssueCode::Structure, strict_diagnostics(&error)))
}

/// A serde message (from fhirbolt's JSON or XML reader) without the values it quotes
/// (`invalid type: string "Smith"`, `unknown variant `robot``), which may be patient data.
/// Field names stay: they are schema.
pub(crate) fn redact_serde_message(message: &str) -> String {
    const NAMES_ONLY: [&str; 4] = [
        "missing field",
        "missing required field",
        "unknown field",
        "duplicate field",
    ];
    if NAMES_ONLY.iter().any(|prefix| message.starts_with(prefix)) {
        message.to_owned()
    } else if let Some((head, expected)) = message.split_once(", expected ") {
        // Keep the kind of problem and the expectation, drop the value between them.
        let kind = head
            .split([':', '`', '"'])
            .next()
            .unwrap_or_default()
            .trim_end();
        format!("{kind}, expected {expected}")
    } else {
        message
            .split([':', '`', '"'])
            .next()
            .unwrap_or_default()
            .trim_end()
            .to_owned()
    }
}

/// serde_json's message without the values it quotes (`invalid type: string "Smith"`,
/// `unknown variant `robot``), which may be patient data. Field names stay: they are schema.
fn strict_diagnostics(error: &serde_json::Error) -> String {
    let message = error.to_string();
    // serde_json appends " at line L column C"; it is re-added below from the error itself.
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(text, _)| text);
    let text = redact_serde_message(message);
    if error.line() == 0 {
        format!("not valid FHIR R4 JSON: {text}")
    } else {
        format!(
            "not valid FHIR R4 JSON: {text} (line {}, column {})",
            error.line(),
            error.column()
        )
    }
}
