//! The parts of a reference string (http://hl7.org/fhir/R4/references.html#literal):
//! `Type/id`, `Type/id/_history/vid`, the same under an absolute base URL, `#fragment` to a
//! contained resource, or anything else (`urn:uuid:...`, a canonical without a type segment);
//! and the local references of a resource ([`local_references`]), the ones referential
//! integrity is about.

use std::collections::HashSet;

use serde_json::Value;

use crate::{Id, ResourceType};

/// What a `Reference.reference` (or canonical) string points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceTarget<'a> {
    /// A resource by type and id, relative (`base` is `None`) or under an absolute base URL.
    Literal(LiteralReference<'a>),
    /// `#id`: a resource contained in the referring one (`#` alone is the container).
    Contained(&'a str),
    /// A URN or a URL without a `Type/id` tail: only comparable as a whole.
    Opaque(&'a str),
}

/// `[base/]Type/id[/_history/version]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteralReference<'a> {
    /// The service base URL of an absolute reference, without the trailing `/`.
    pub base: Option<&'a str>,
    pub resource_type: &'a str,
    pub id: &'a str,
    pub version: Option<&'a str>,
}

/// Splits a reference string into its parts; never fails (what does not parse is opaque).
pub fn parse_reference(text: &str) -> ReferenceTarget<'_> {
    if let Some(fragment) = text.strip_prefix('#') {
        return ReferenceTarget::Contained(fragment);
    }
    let segments: Vec<&str> = text.split('/').collect();
    let n = segments.len();
    // `[..]/Type/id` or `[..]/Type/id/_history/version`: where the type segment sits.
    let (type_at, version) = if n >= 4 && segments[n - 2] == "_history" {
        (n - 4, Some(segments[n - 1]))
    } else if n >= 2 {
        (n - 2, None)
    } else {
        return ReferenceTarget::Opaque(text);
    };
    let (resource_type, id) = (segments[type_at], segments[type_at + 1]);
    let absolute = text.starts_with("http://") || text.starts_with("https://");
    // Relative: nothing before the type. Absolute: at least `scheme:`, ``, host before it.
    let placed = if absolute { type_at >= 3 } else { type_at == 0 };
    if !(placed && is_type_name(resource_type) && is_id(id) && version.is_none_or(is_id)) {
        return ReferenceTarget::Opaque(text);
    }
    // The base ends where the type segment begins, less the slash between them.
    let base_len: usize = segments[..type_at].iter().map(|s| s.len() + 1).sum();
    ReferenceTarget::Literal(LiteralReference {
        base: absolute.then(|| &text[..base_len.saturating_sub(1)]),
        resource_type,
        id,
        version,
    })
}

/// A reference of a resource to a resource of this server: a served type and an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReference {
    pub target_type: ResourceType,
    pub target_id: Id,
    /// The FHIRPath of the `reference` element that holds it (the first one found), e.g.
    /// `Account.subject[0].reference`.
    pub expression: String,
}

impl LocalReference {
    /// The target as a relative reference, `Type/id`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.target_type, self.target_id)
    }
}

/// The local references of `resource`: every `reference` string, at any depth (contained
/// resources and extensions included), that names a resource of a served type by
/// `Type/id` or `Type/id/_history/vid`, relative or under `server_base` (this server's base
/// URL). References to contained resources (`#id`), URNs, other servers' URLs and types this
/// server does not serve are not local. Each target once.
pub fn local_references(resource: &Value, server_base: Option<&str>) -> Vec<LocalReference> {
    let server_base = server_base.map(|base| base.trim_end_matches('/'));
    let root = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource");
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut path = root.to_owned();
    collect(resource, &mut path, &mut |text, path| {
        let ReferenceTarget::Literal(literal) = parse_reference(text) else {
            return;
        };
        let local = match (literal.base, server_base) {
            (None, _) => true,
            (Some(base), Some(server)) => base == server,
            (Some(_), None) => false,
        };
        let (Ok(target_type), Ok(target_id)) = (
            literal.resource_type.parse::<ResourceType>(),
            literal.id.parse::<Id>(),
        ) else {
            return;
        };
        if local && seen.insert((target_type, literal.id.to_owned())) {
            found.push(LocalReference {
                target_type,
                target_id,
                expression: format!("{path}.reference"),
            });
        }
    });
    found
}

/// Calls `f` with every `reference` string under `value` and the path of the element that
/// holds it (`path` is `value`'s, restored on return).
fn collect(value: &Value, path: &mut String, f: &mut impl FnMut(&str, &str)) {
    let Value::Object(members) = value else {
        return;
    };
    for (name, member) in members {
        match member {
            Value::String(text) if name == "reference" => f(text, path),
            Value::Object(_) => {
                let len = path.len();
                path.push('.');
                path.push_str(name);
                collect(member, path, f);
                path.truncate(len);
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!(".{name}[{i}]"));
                    collect(item, path, f);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
}

/// A resource type name: an upper-case ASCII letter, then ASCII letters.
fn is_type_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase()) && s.chars().all(|c| c.is_ascii_alphabetic())
}

/// A FHIR id: 1 to 64 of `[A-Za-z0-9\-.]`.
fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal<'a>(
        base: Option<&'a str>,
        resource_type: &'a str,
        id: &'a str,
        version: Option<&'a str>,
    ) -> ReferenceTarget<'a> {
        ReferenceTarget::Literal(LiteralReference {
            base,
            resource_type,
            id,
            version,
        })
    }

    #[test]
    fn relative_references() {
        assert_eq!(
            parse_reference("Patient/123"),
            literal(None, "Patient", "123", None)
        );
        assert_eq!(
            parse_reference("Patient/123/_history/2"),
            literal(None, "Patient", "123", Some("2"))
        );
        assert_eq!(
            parse_reference("patient/123"),
            ReferenceTarget::Opaque("patient/123")
        );
        assert_eq!(
            parse_reference("Patient"),
            ReferenceTarget::Opaque("Patient")
        );
        assert_eq!(
            parse_reference("Patient/a b"),
            ReferenceTarget::Opaque("Patient/a b")
        );
    }

    #[test]
    fn absolute_references() {
        assert_eq!(
            parse_reference("http://example.org/fhir/Patient/123"),
            literal(Some("http://example.org/fhir"), "Patient", "123", None)
        );
        assert_eq!(
            parse_reference("https://example.org/fhir/Patient/123/_history/4"),
            literal(
                Some("https://example.org/fhir"),
                "Patient",
                "123",
                Some("4")
            )
        );
        assert_eq!(
            parse_reference("http://example.org/Patient/1"),
            literal(Some("http://example.org"), "Patient", "1", None)
        );
        assert_eq!(
            parse_reference("http://hl7.org/fhir/StructureDefinition/Patient"),
            literal(
                Some("http://hl7.org/fhir"),
                "StructureDefinition",
                "Patient",
                None
            )
        );
        assert_eq!(
            parse_reference("http://example.org/fhir/"),
            ReferenceTarget::Opaque("http://example.org/fhir/")
        );
        assert_eq!(
            parse_reference("http://x"),
            ReferenceTarget::Opaque("http://x")
        );
    }

    #[test]
    fn local_references_at_any_depth_with_their_paths() {
        let account = serde_json::json!({
            "resourceType": "Account",
            "id": "a1",
            "subject": [
                {"reference": "Patient/p1"},
                {"reference": "Patient/p1/_history/2"},
                {"reference": "http://me.example/fhir/Patient/p2"},
                {"reference": "http://other.example/fhir/Patient/p3"},
                {"reference": "#c1"},
                {"reference": "urn:uuid:04121321-4af5-424c-a0e1-ed3aab1c349d"},
                {"reference": "Observation/o1"},
                {"display": "Patient/p9"}
            ],
            "owner": {"reference": "Organization/o1", "display": "Organization/o9"},
            "contained": [{"resourceType": "Organization", "id": "c1",
                           "partOf": {"reference": "Organization/o2"}}],
            "extension": [{"url": "x", "valueReference": {"reference": "Practitioner/d1"}}],
            "guarantor": [{"party": {"reference": "Account/a1"}}],
            "name": "Patient/p8"
        });
        let found: Vec<(String, String)> =
            local_references(&account, Some("http://me.example/fhir/"))
                .iter()
                .map(|r| (r.target(), r.expression.clone()))
                .collect();
        let expected = [
            ("Patient/p1", "Account.subject[0].reference"),
            ("Patient/p2", "Account.subject[2].reference"),
            ("Organization/o1", "Account.owner.reference"),
            ("Organization/o2", "Account.contained[0].partOf.reference"),
            (
                "Practitioner/d1",
                "Account.extension[0].valueReference.reference",
            ),
            ("Account/a1", "Account.guarantor[0].party.reference"),
        ];
        let mut found_sorted = found.clone();
        found_sorted.sort();
        let mut expected: Vec<(String, String)> = expected
            .iter()
            .map(|(t, e)| ((*t).to_owned(), (*e).to_owned()))
            .collect();
        expected.sort();
        assert_eq!(found_sorted, expected);
        // Without a server base, absolute references are never local.
        assert!(
            local_references(&account, None)
                .iter()
                .all(|r| r.target() != "Patient/p2")
        );
    }

    #[test]
    fn fragments_and_urns() {
        assert_eq!(parse_reference("#p1"), ReferenceTarget::Contained("p1"));
        let urn = "urn:uuid:04121321-4af5-424c-a0e1-ed3aab1c349d";
        assert_eq!(parse_reference(urn), ReferenceTarget::Opaque(urn));
    }
}
