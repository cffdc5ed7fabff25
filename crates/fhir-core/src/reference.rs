//! The parts of a reference string (http://hl7.org/fhir/R4/references.html#literal):
//! `Type/id`, `Type/id/_history/vid`, the same under an absolute base URL, `#fragment` to a
//! contained resource, or anything else (`urn:uuid:...`, a canonical without a type segment).

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
    fn fragments_and_urns() {
        assert_eq!(parse_reference("#p1"), ReferenceTarget::Contained("p1"));
        let urn = "urn:uuid:04121321-4af5-424c-a0e1-ed3aab1c349d";
        assert_eq!(parse_reference(urn), ReferenceTarget::Opaque(urn));
    }
}
