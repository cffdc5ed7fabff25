//! References between the entries of a transaction
//! (http://hl7.org/fhir/R4/http.html#trules, "Conditional references"): every `reference`
//! element of a resource, at any depth (contained resources and extensions included), that
//! names another entry's `fullUrl` (`urn:uuid:...`, `urn:oid:...`, or a URL) or is a
//! conditional reference (`Patient?identifier=...`) is replaced by the `Type/id` it resolves
//! to. Pure: the resolution of conditional references is the caller's.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// Calls `f` with every `reference` string of `value`, at any depth.
fn each_reference(value: &mut Value, f: &mut impl FnMut(&mut String)) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                match member {
                    Value::String(text) if name == "reference" => f(text),
                    Value::Object(_) | Value::Array(_) => each_reference(member, f),
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                each_reference(item, f);
            }
        }
        _ => {}
    }
}

/// Replaces each `reference` of `resource` that is a key of `targets` by its value.
/// Returns how many were replaced.
pub fn rewrite(resource: &mut Value, targets: &HashMap<String, String>) -> usize {
    if targets.is_empty() {
        return 0;
    }
    let mut replaced = 0;
    each_reference(resource, &mut |text| {
        if let Some(target) = targets.get(text.as_str()) {
            text.clone_from(target);
            replaced += 1;
        }
    });
    replaced
}

/// Whether `reference` is a conditional reference: `[type]?[search]`, the type a name (not
/// a URL: an absolute reference with a query is left as it is).
pub fn is_conditional(reference: &str) -> bool {
    reference.split_once('?').is_some_and(|(rtype, _)| {
        rtype.starts_with(|c: char| c.is_ascii_uppercase())
            && rtype.chars().all(|c| c.is_ascii_alphabetic())
    })
}

/// The conditional references of `resource`, each once, in order.
pub fn conditional(resource: &mut Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    each_reference(resource, &mut |text| {
        if is_conditional(text) {
            found.insert(text.clone());
        }
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_references_at_any_depth() {
        let mut invoice = json!({
            "resourceType": "Invoice",
            "subject": {"reference": "urn:uuid:p"},
            "participant": [{"actor": {"reference": "urn:oid:1.2.3", "display": "urn:uuid:p"}}],
            "contained": [{"resourceType": "Organization", "partOf": {"reference": "urn:uuid:p"}}],
            "extension": [{"url": "x", "valueReference": {"reference": "http://other/Patient/1"}}],
            "lineItem": [{"chargeItemReference": {"reference": "urn:uuid:unknown"}}],
            "note": [{"text": "urn:uuid:p"}],
            "identifier": [{"value": "urn:uuid:p"}],
            "reference": {"reference": "urn:uuid:p"}
        });
        let targets = HashMap::from([
            ("urn:uuid:p".to_owned(), "Patient/1".to_owned()),
            ("urn:oid:1.2.3".to_owned(), "Practitioner/2".to_owned()),
            ("http://other/Patient/1".to_owned(), "Patient/3".to_owned()),
        ]);
        assert_eq!(rewrite(&mut invoice, &targets), 5);
        assert_eq!(invoice["subject"]["reference"], "Patient/1");
        assert_eq!(
            invoice["participant"][0]["actor"]["reference"],
            "Practitioner/2"
        );
        // Only `reference` elements: display texts, notes and identifiers stay as written.
        assert_eq!(invoice["participant"][0]["actor"]["display"], "urn:uuid:p");
        assert_eq!(invoice["note"][0]["text"], "urn:uuid:p");
        assert_eq!(invoice["identifier"][0]["value"], "urn:uuid:p");
        assert_eq!(invoice["contained"][0]["partOf"]["reference"], "Patient/1");
        assert_eq!(
            invoice["extension"][0]["valueReference"]["reference"],
            "Patient/3"
        );
        assert_eq!(invoice["reference"]["reference"], "Patient/1");
        // What names no entry is kept.
        assert_eq!(
            invoice["lineItem"][0]["chargeItemReference"]["reference"],
            "urn:uuid:unknown"
        );
    }

    #[test]
    fn finds_conditional_references() {
        let mut account = json!({
            "resourceType": "Account",
            "subject": [
                {"reference": "Patient?identifier=http://a|1"},
                {"reference": "Patient?identifier=http://a|1"},
                {"reference": "Patient/1"},
                {"reference": "http://other/fhir/Patient?identifier=x"}
            ],
            "owner": {"reference": "Organization?name=x&active=true"}
        });
        let found: Vec<String> = conditional(&mut account).into_iter().collect();
        assert_eq!(
            found,
            [
                "Organization?name=x&active=true",
                "Patient?identifier=http://a|1"
            ]
        );
        assert!(!is_conditional("?name=x"));
        assert!(!is_conditional("patient?name=x"));
        assert!(!is_conditional("urn:uuid:1"));
    }
}
