//! `GET /metadata`: what the CapabilityStatement promises, and that it matches
//! the reviewed snapshot in `conformance/CapabilityStatement.json`.
//!
//! Refresh the snapshot with
//! `UPDATE_SNAPSHOTS=1 cargo test -p ferrum-tests --test capability`.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;
use std::path::PathBuf;

use ferrum_tests::{RESOURCE_TYPES, TestServer, parse};
use serde_json::Value;

/// The base URL written in the snapshot: the server's default public base.
const SNAPSHOT_BASE: &str = "http://localhost:8080/fhir";
/// What every base URL becomes before comparing.
const BASE_PLACEHOLDER: &str = "{base}";

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/CapabilityStatement.json")
}

fn codes(list: &Value, key: &str) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|item| item[key].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn capability_statement_declares_what_the_server_does() {
    let server = TestServer::start().await;
    let resp = server.get("metadata").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(resp.is_fhir_json(), "{}", resp.describe());
    let cs = &resp.json;
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["kind"], "instance");
    assert!(cs["status"].is_string(), "status is required");
    assert!(cs["date"].is_string(), "date is required");
    let formats: Vec<&str> = cs["format"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(formats.contains(&"json"), "format: {formats:?}");
    assert_eq!(cs["implementation"]["url"], server.base);

    let rest = &cs["rest"][0];
    assert_eq!(rest["mode"], "server");
    assert!(
        codes(&rest["interaction"], "code").contains("history-system"),
        "{}",
        rest["interaction"]
    );
    let types = codes(&rest["resource"], "type");
    let expected_types: BTreeSet<String> = RESOURCE_TYPES.iter().map(|t| (*t).to_owned()).collect();
    assert_eq!(types, expected_types);

    let expected_interactions: BTreeSet<String> = [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ]
    .iter()
    .map(|c| (*c).to_owned())
    .collect();
    for resource in rest["resource"].as_array().unwrap() {
        let name = resource["type"].as_str().unwrap();
        assert_eq!(
            codes(&resource["interaction"], "code"),
            expected_interactions,
            "{name}"
        );
        assert_eq!(resource["versioning"], "versioned-update", "{name}");
        assert_eq!(resource["readHistory"], true, "{name}");
        assert_eq!(resource["updateCreate"], true, "{name}");
        assert_eq!(resource["conditionalCreate"], true, "{name}");
        assert_eq!(resource["conditionalRead"], "full-support", "{name}");
        assert_eq!(resource["conditionalUpdate"], true, "{name}");
        assert_eq!(resource["conditionalDelete"], "single", "{name}");
    }
}

fn resource<'a>(rest: &'a Value, name: &str) -> &'a Value {
    rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == name)
        .unwrap_or_else(|| panic!("no rest.resource for {name}"))
}

fn search_param<'a>(params: &'a Value, name: &str) -> &'a Value {
    params
        .as_array()
        .unwrap_or_else(|| panic!("searchParam is not an array: {params}"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no searchParam {name} in {params}"))
}

fn strings(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|item| item.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn capability_statement_lists_search_support() {
    let server = TestServer::start().await;
    let resp = server.get("metadata").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let rest = &resp.json["rest"][0];

    let patient = resource(rest, "Patient");
    for (name, kind, definition) in [
        (
            "family",
            "string",
            "http://hl7.org/fhir/SearchParameter/individual-family",
        ),
        (
            "birthdate",
            "date",
            "http://hl7.org/fhir/SearchParameter/individual-birthdate",
        ),
        (
            "identifier",
            "token",
            "http://hl7.org/fhir/SearchParameter/Patient-identifier",
        ),
        (
            "general-practitioner",
            "reference",
            "http://hl7.org/fhir/SearchParameter/Patient-general-practitioner",
        ),
        (
            "_id",
            "token",
            "http://hl7.org/fhir/SearchParameter/Resource-id",
        ),
        (
            "_lastUpdated",
            "date",
            "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
        ),
    ] {
        let param = search_param(&patient["searchParam"], name);
        assert_eq!(param["type"], kind, "{param}");
        assert_eq!(param["definition"], definition, "{param}");
    }
    let family = search_param(&patient["searchParam"], "family");
    let doc = family["documentation"].as_str().unwrap();
    assert!(
        doc.contains("`:exact`") && doc.contains("`:missing`"),
        "{doc}"
    );
    let birthdate = search_param(&patient["searchParam"], "birthdate");
    let doc = birthdate["documentation"].as_str().unwrap();
    assert!(doc.contains("`ge`") && doc.contains("`_sort`"), "{doc}");
    let gp = search_param(&patient["searchParam"], "general-practitioner");
    let doc = gp["documentation"].as_str().unwrap();
    assert!(doc.contains("Practitioner"), "{doc}");

    let invoice = resource(rest, "Invoice");
    let line_item = search_param(&invoice["searchParam"], "line-item-code");
    assert_eq!(line_item["type"], "token", "{line_item}");
    assert_eq!(
        line_item["definition"], "urn:ferrum:SearchParameter:Invoice-line-item-code",
        "{line_item}"
    );
    assert!(
        strings(&invoice["searchInclude"]).contains("Invoice:subject"),
        "{}",
        invoice["searchInclude"]
    );
    assert!(
        strings(&patient["searchRevInclude"]).contains("Invoice:subject"),
        "{}",
        patient["searchRevInclude"]
    );

    // Every type: the common parameters, and every entry complete. FHIR JSON has no
    // empty arrays or strings.
    for resource in rest["resource"].as_array().unwrap() {
        let name = resource["type"].as_str().unwrap();
        let params = resource["searchParam"].as_array().unwrap();
        assert!(!params.is_empty(), "{name}");
        let mut seen = BTreeSet::new();
        for param in params {
            for key in ["name", "definition", "type", "documentation"] {
                assert!(
                    param[key].as_str().is_some_and(|v| !v.is_empty()),
                    "{name}: {key} of {param}"
                );
            }
            assert!(
                seen.insert(param["name"].as_str().unwrap()),
                "{name}: {param} twice"
            );
        }
        for common in ["_id", "_lastUpdated"] {
            assert!(seen.contains(common), "{name}: no {common}");
        }
        for key in ["searchInclude", "searchRevInclude"] {
            let values = resource[key].as_array().unwrap();
            assert!(!values.is_empty(), "{name}: {key}");
            assert!(
                values
                    .iter()
                    .all(|v| v.as_str().is_some_and(|v| !v.is_empty())),
                "{name}: {key}"
            );
        }
    }

    // All types: the common parameters with their definitions, then the control
    // parameters, which R4 defines no SearchParameter for.
    let system = &rest["searchParam"];
    for param in system.as_array().unwrap() {
        for key in ["name", "type", "documentation"] {
            assert!(
                param[key].as_str().is_some_and(|v| !v.is_empty()),
                "{key} of {param}"
            );
        }
        let name = param["name"].as_str().unwrap();
        if ["_id", "_lastUpdated"].contains(&name) {
            assert!(param["definition"].is_string(), "{param}");
        }
    }
    let names = codes(system, "name");
    for name in [
        "_id",
        "_lastUpdated",
        "_type",
        "_count",
        "_sort",
        "_include",
    ] {
        assert!(names.contains(name), "no {name} in {system}");
    }
    assert!(!names.contains("family"), "{system}");
    assert_eq!(search_param(system, "_count")["type"], "number");
}

/// Drops the volatile fields and writes every base URL as a placeholder.
fn normalise(statement: &Value, base: &str) -> Value {
    let mut copy = statement.clone();
    let obj = copy.as_object_mut().unwrap();
    obj.remove("date");
    let mut drop_implementation = false;
    if let Some(implementation) = obj.get_mut("implementation").and_then(Value::as_object_mut) {
        implementation.remove("url");
        drop_implementation = implementation.is_empty();
    }
    if drop_implementation {
        obj.remove("implementation");
    }
    replace_base(&mut copy, base);
    copy
}

fn replace_base(value: &mut Value, base: &str) {
    match value {
        Value::String(text) if text.contains(base) => {
            *text = text.replace(base, BASE_PLACEHOLDER);
        }
        Value::Array(items) => items.iter_mut().for_each(|v| replace_base(v, base)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_base(v, base)),
        _ => {}
    }
}

fn replace_text(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(text) if text.contains(from) => *text = text.replace(from, to),
        Value::Array(items) => items.iter_mut().for_each(|v| replace_text(v, from, to)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_text(v, from, to)),
        _ => {}
    }
}

#[tokio::test]
async fn capability_statement_matches_the_snapshot() {
    let server = TestServer::start().await;
    let resp = server.get("metadata").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let live = resp.json;
    let path = snapshot_path();

    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        let mut snapshot = live.clone();
        replace_text(&mut snapshot, &server.base, SNAPSHOT_BASE);
        let mut text = serde_json::to_string_pretty(&snapshot).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }

    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the snapshot {}: {e}; create it with UPDATE_SNAPSHOTS=1 cargo test -p ferrum-tests --test capability",
            path.display()
        )
    });
    let snapshot = parse(&text);
    // The snapshot's own base: the one it names, else the default public base.
    let snapshot_base = snapshot["implementation"]["url"]
        .as_str()
        .unwrap_or(SNAPSHOT_BASE)
        .trim_end_matches('/')
        .to_owned();
    let expected = normalise(&snapshot, &snapshot_base);
    let actual = normalise(&live, &server.base);
    assert!(
        expected == actual,
        "GET /metadata differs from {} (refresh it with UPDATE_SNAPSHOTS=1 cargo test -p ferrum-tests --test capability if the change is intended)\n--- snapshot (normalised)\n{}\n--- server (normalised)\n{}",
        path.display(),
        serde_json::to_string_pretty(&expected).unwrap(),
        serde_json::to_string_pretty(&actual).unwrap()
    );
}
