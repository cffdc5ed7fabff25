//! JSON → XML → JSON round trip of the official R4 examples of the supported resource types
//! (package `hl7.fhir.r4.examples`, unpacked in the directory named by `FHIR_R4_EXAMPLES_DIR`;
//! skipped when unset): the narratives must come back exactly.

use std::fs;
use std::path::PathBuf;

use fhir_core::xml::{json_to_xml, xml_to_json};
use serde_json::Value;

const TYPES: [&str; 6] = [
    "Account",
    "Group",
    "Invoice",
    "Organization",
    "Patient",
    "Practitioner",
];

fn examples() -> Option<Vec<PathBuf>> {
    let Some(dir) = std::env::var_os("FHIR_R4_EXAMPLES_DIR") else {
        println!(
            "skipped: set FHIR_R4_EXAMPLES_DIR to an unpacked hl7.fhir.r4.examples@4.0.1 package"
        );
        return None;
    };
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) => panic!("cannot read {}: {error}", PathBuf::from(dir).display()),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default();
            name.ends_with(".json")
                && TYPES.iter().any(|t| {
                    name.strip_prefix(t)
                        .is_some_and(|rest| rest.starts_with('-'))
                })
        })
        .collect();
    files.sort();
    Some(files)
}

/// Every `text.div` of a resource and its contained resources, by where it sits.
fn narratives(resource: &Value) -> Vec<(String, Value)> {
    let mut found = vec![("text.div".to_owned(), resource["text"]["div"].clone())];
    if let Some(contained) = resource["contained"].as_array() {
        for (index, inner) in contained.iter().enumerate() {
            found.push((
                format!("contained[{index}].text.div"),
                inner["text"]["div"].clone(),
            ));
        }
    }
    found
}

#[test]
fn official_examples_keep_their_narratives_through_xml() {
    let Some(files) = examples() else { return };
    let mut failures = Vec::new();
    let mut with_narrative = 0;
    for path in &files {
        let name = path.display().to_string();
        let text = fs::read_to_string(path).unwrap_or_default();
        let original: Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(error) => panic!("{name}: not JSON: {error}"),
        };
        let xml = match json_to_xml(&text) {
            Ok(xml) => xml,
            Err(issue) => {
                failures.push(format!("{name}: not written as XML: {}", issue.diagnostics));
                continue;
            }
        };
        let back = match xml_to_json(&xml) {
            Ok(value) => value,
            Err(issues) => {
                failures.push(format!("{name}: XML not read back: {issues:?}"));
                continue;
            }
        };
        if original["text"]["div"].is_string() {
            with_narrative += 1;
        }
        for ((at, before), (_, after)) in narratives(&original).iter().zip(narratives(&back)) {
            if *before != after {
                failures.push(format!("{name}: {at} differs:\n  {before}\n  {after}"));
            }
        }
        if original != back {
            failures.push(format!("{name}: the resource differs after the round trip"));
        }
    }
    println!(
        "{} examples, {with_narrative} with a narrative, round-tripped through XML",
        files.len()
    );
    assert!(
        files.len() >= 56,
        "expected the 56 examples, found {}",
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
