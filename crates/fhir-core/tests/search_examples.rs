//! Search index extraction over the official R4 examples (package `hl7.fhir.r4.examples`,
//! unpacked in the directory named by `FHIR_R4_EXAMPLES_DIR`; skipped when unset), with
//! values worked out by hand from the example files, and the embedded SearchParameter list
//! against `fhir-profiles/`.

use std::fs;
use std::path::{Path, PathBuf};

use fhir_core::ResourceType;
use fhir_core::search::{IndexOptions, IndexValue, Registry, ResourceIndex, TokenValue};
use serde_json::Value;

fn examples_dir() -> Option<PathBuf> {
    match std::env::var_os("FHIR_R4_EXAMPLES_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            println!(
                "skipped: set FHIR_R4_EXAMPLES_DIR to an unpacked hl7.fhir.r4.examples@4.0.1 package"
            );
            None
        }
    }
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("dir is readable")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn registry() -> &'static Registry {
    Registry::builtin().expect("the built-in definitions load")
}

fn is_served(resource: &Value) -> bool {
    resource["resourceType"]
        .as_str()
        .is_some_and(|t| t.parse::<ResourceType>().is_ok())
}

/// A compact rendering of a value, in the syntax of a search value where there is one.
fn render(value: &IndexValue) -> String {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    match value {
        IndexValue::String(s) => format!("{} ({})", s.normalized, s.exact),
        IndexValue::Token(TokenValue::Code { system, code }) => match system {
            Some(system) => format!("{system}|{code}"),
            None => code.clone(),
        },
        IndexValue::Token(TokenValue::Text(s)) => format!("text:{}", s.normalized),
        IndexValue::Token(TokenValue::OfType {
            system,
            type_system,
            type_code,
            value,
        }) => format!(
            "{}|{value} of-type:{}|{type_code}",
            opt(system),
            opt(type_system)
        ),
        IndexValue::Date(range) => {
            let show = |d: Option<chrono::DateTime<chrono::Utc>>| {
                d.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                    .unwrap_or_default()
            };
            format!("{}..{}", show(range.low), show(range.high))
        }
        IndexValue::Reference(r) => {
            let mut out = match (&r.target_type, &r.id, &r.url) {
                (Some(t), Some(id), None) => format!("{t}/{id}"),
                (t, _, Some(url)) => format!("{url} [{}]", opt(t)),
                (t, _, None) => format!("[{}]", opt(t)),
            };
            if let Some(identifier) = &r.identifier {
                out.push_str(&format!(
                    " identifier:{}|{}",
                    opt(&identifier.system),
                    identifier.value
                ));
            }
            out
        }
        IndexValue::Quantity(q) => {
            format!("{}|{}|{}", q.value.as_str(), opt(&q.system), opt(&q.code))
        }
        IndexValue::Number(n) => n.as_str().to_string(),
        IndexValue::Uri(u) => u.clone(),
        IndexValue::Composite(parts) => parts.iter().map(render).collect::<Vec<_>>().join("$"),
    }
}

/// The values of parameter `code`, rendered.
fn values(index: &ResourceIndex<'_>, code: &str) -> Vec<String> {
    let values = index.values_of_code(registry(), code);
    values.iter().map(render).collect()
}

fn describe_issues(index: &ResourceIndex<'_>) -> Vec<String> {
    index
        .issues
        .iter()
        .map(|i| format!("{}: {}", i.param.code(), i.problem))
        .collect()
}

/// Every example of a served type, as a file or inside an example Bundle, indexes without
/// an issue.
#[test]
fn every_example_of_a_served_type_indexes_cleanly() {
    let Some(dir) = examples_dir() else { return };
    let mut resources = 0;
    let mut entries = 0;
    let mut failures = Vec::new();
    for path in json_files(&dir) {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Ok(value) = serde_json::from_str::<Value>(&fs::read_to_string(&path).expect("read"))
        else {
            continue;
        };
        let mut found: Vec<(String, &Value)> = Vec::new();
        if is_served(&value) {
            found.push((name.clone(), &value));
        }
        if value["resourceType"] == "Bundle" {
            for (i, entry) in value["entry"].as_array().into_iter().flatten().enumerate() {
                if is_served(&entry["resource"]) {
                    found.push((format!("{name} entry[{i}]"), &entry["resource"]));
                }
            }
        }
        for (name, resource) in found {
            let index = registry().index(resource, IndexOptions::default());
            resources += 1;
            entries += index.entries.len();
            let issues = describe_issues(&index);
            if !issues.is_empty() {
                failures.push(format!("{name}: {issues:?}"));
            }
        }
    }
    println!("indexed {resources} resources into {entries} values");
    assert!(resources > 56, "{resources} resources");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn example(dir: &Path, file: &str) -> ResourceIndex<'static> {
    let text = fs::read_to_string(dir.join(file)).expect("example is present");
    let value: Value = serde_json::from_str(&text).expect("valid JSON");
    let index = registry().index(&value, IndexOptions::default());
    assert_eq!(describe_issues(&index), Vec::<String>::new(), "{file}");
    index
}

#[test]
fn patient_example_values() {
    let Some(dir) = examples_dir() else { return };
    let index = example(&dir, "Patient-example.json");
    assert_eq!(
        values(&index, "family"),
        ["chalmers (Chalmers)", "windsor (Windsor)"]
    );
    assert_eq!(
        values(&index, "given"),
        ["peter (Peter)", "james (James)", "jim (Jim)"]
    );
    assert_eq!(
        values(&index, "birthdate"),
        ["1974-12-25T00:00:00Z..1974-12-26T00:00:00Z"]
    );
    assert_eq!(
        values(&index, "gender"),
        ["http://hl7.org/fhir/administrative-gender|male"]
    );
    assert_eq!(values(&index, "active"), ["true"]);
    assert_eq!(values(&index, "deceased"), ["false"]);
    assert_eq!(
        values(&index, "identifier"),
        [
            "urn:oid:1.2.36.146.595.217.0.1|12345 of-type:http://terminology.hl7.org/CodeSystem/v2-0203|MR"
        ]
    );
    assert_eq!(
        values(&index, "phone"),
        ["(03) 5555 6473", "(03) 3410 5613", "(03) 5555 8834"]
    );
    assert_eq!(values(&index, "email"), Vec::<String>::new());
    assert_eq!(
        values(&index, "address-city"),
        ["pleasantville (PleasantVille)"]
    );
    assert_eq!(
        values(&index, "address-use"),
        ["http://hl7.org/fhir/address-use|home"]
    );
    assert_eq!(values(&index, "organization"), ["Organization/1"]);
    assert_eq!(values(&index, "_id"), ["example"]);

    let index = example(&dir, "Patient-pat3.json");
    // deceasedDateTime 2015-02-14T13:42:00+10:00, to the second.
    assert_eq!(
        values(&index, "death-date"),
        ["2015-02-14T03:42:00Z..2015-02-14T03:42:01Z"]
    );
    assert_eq!(values(&index, "deceased"), ["true"]);

    let index = example(&dir, "Patient-f001.json");
    assert_eq!(values(&index, "family"), ["van de heuvel (van de Heuvel)"]);
    assert_eq!(values(&index, "email"), ["p.heuvel@gmail.com"]);
    assert_eq!(
        values(&index, "language"),
        ["urn:ietf:bcp:47|nl", "text:dutch", "text:nederlands"]
    );
    assert_eq!(
        values(&index, "identifier"),
        ["urn:oid:2.16.840.1.113883.2.4.6.3|738472983"]
    );
}

#[test]
fn account_example_values() {
    let Some(dir) = examples_dir() else { return };
    let index = example(&dir, "Account-example.json");
    assert_eq!(values(&index, "subject"), ["Patient/example"]);
    assert_eq!(values(&index, "patient"), ["Patient/example"]);
    assert_eq!(values(&index, "owner"), ["Organization/hl7"]);
    // servicePeriod 2016-01-01 to 2016-06-30: through the end of the last day.
    assert_eq!(
        values(&index, "period"),
        ["2016-01-01T00:00:00Z..2016-07-01T00:00:00Z"]
    );
    assert_eq!(
        values(&index, "status"),
        ["http://hl7.org/fhir/account-status|active"]
    );
    assert_eq!(
        values(&index, "name"),
        [
            "hacc funded billing for peter james chalmers (HACC Funded Billing for Peter James Chalmers)"
        ]
    );
}

#[test]
fn invoice_example_values() {
    let Some(dir) = examples_dir() else { return };
    let index = example(&dir, "Invoice-example.json");
    assert_eq!(
        values(&index, "totalgross"),
        ["48|urn:iso:std:iso:4217|EUR"]
    );
    assert_eq!(values(&index, "totalnet"), ["40|urn:iso:std:iso:4217|EUR"]);
    // 2017-01-25T08:00:00+01:00, to the second.
    assert_eq!(
        values(&index, "date"),
        ["2017-01-25T07:00:00Z..2017-01-25T07:00:01Z"]
    );
    assert_eq!(values(&index, "subject"), ["Patient/example"]);
    assert_eq!(values(&index, "patient"), ["Patient/example"]);
    assert_eq!(values(&index, "participant"), ["Practitioner/example"]);
    assert_eq!(
        values(&index, "participant-role"),
        ["http://snomed.info/sct|17561000", "text:cardiologist"]
    );
    assert_eq!(
        values(&index, "issuer"),
        ["[] identifier:http://myhospital/NamingSystem/departments|CARD_INTERMEDIATE_CARE"]
    );
    assert_eq!(values(&index, "account"), ["Account/example"]);
    assert_eq!(
        values(&index, "status"),
        ["http://hl7.org/fhir/invoice-status|issued"]
    );
    assert_eq!(
        values(&index, "identifier"),
        ["http://myHospital.org/Invoices|654321"]
    );
    assert_eq!(values(&index, "line-item-code"), Vec::<String>::new());
}

#[test]
fn group_and_organization_example_values() {
    let Some(dir) = examples_dir() else { return };
    let index = example(&dir, "Group-101.json");
    assert_eq!(values(&index, "actual"), ["true"]);
    assert_eq!(
        values(&index, "type"),
        ["http://hl7.org/fhir/group-type|animal"]
    );
    assert_eq!(
        values(&index, "characteristic-value"),
        ["text:gender$text:mixed", "text:owner$text:john smith"]
    );
    assert_eq!(values(&index, "exclude"), ["false"]);

    let index = example(&dir, "Organization-hl7.json");
    assert_eq!(
        values(&index, "name"),
        [
            "health level seven international (Health Level Seven International)",
            "hl7 international (HL7 International)"
        ]
    );
}

#[test]
fn embedded_search_list_matches_fhir_profiles() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listing =
        fs::read_to_string(crate_dir.join("src/search/embedded.rs")).expect("embedded.rs");
    let mut embedded: Vec<String> = listing
        .lines()
        .filter_map(|line| line.trim().strip_prefix("profile!(\""))
        .filter_map(|rest| rest.strip_suffix("\"),"))
        .map(str::to_string)
        .collect();
    embedded.sort();
    let profiles = crate_dir.join("../../fhir-profiles");
    let mut on_disk = Vec::new();
    for dir in ["SearchParameter", "custom/SearchParameter"] {
        for path in json_files(&profiles.join(dir)) {
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            on_disk.push(format!("{dir}/{file}"));
        }
    }
    on_disk.sort();
    assert_eq!(
        embedded, on_disk,
        "rerun scripts/update-profiles --embedded-only"
    );
}
