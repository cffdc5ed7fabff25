//! The official R4 examples of the served types round-trip unchanged: stored
//! with PUT at their own id and with POST, each reads back as sent, apart from
//! `meta.versionId` and `meta.lastUpdated` (and the id on POST).
//!
//! Needs `FHIR_R4_EXAMPLES_DIR` (the unpacked `hl7.fhir.r4.examples@4.0.1`).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;

use ferrum_tests::{
    Example, FHIR_JSON, FHIR_XML, RESOURCE_TYPES, Resp, TestServer, json, json_diff, load_examples,
    r4_examples_dir, without_server_meta,
};
use reqwest::Method;
use serde_json::Value;

/// The email addresses (lower-cased) of a Patient.
fn emails(resource: &Value) -> Vec<String> {
    if resource["resourceType"] != "Patient" {
        return Vec::new();
    }
    resource["telecom"]
        .as_array()
        .map(|telecom| {
            telecom
                .iter()
                .filter(|t| t["system"] == "email")
                .filter_map(|t| t["value"].as_str())
                .map(str::to_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

/// Starts a server for writing `examples` once each: with the email rule on,
/// unless two of the Patients share an address (then the rule would refuse
/// the second one, which is not what this test is about).
async fn server_for(examples: &[Example]) -> TestServer {
    let mut owners: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for example in examples {
        for email in emails(&example.resource) {
            owners.entry(email).or_default().push(&example.file);
        }
    }
    let shared: Vec<_> = owners.iter().filter(|(_, files)| files.len() > 1).collect();
    // The examples refer to resources the package does not hold (`Organization/hl7`,
    // `Patient/pat1`) and are stored one by one in any order: referential integrity is off.
    let integrity = ("FHIR_REFERENTIAL_INTEGRITY", "false");
    if shared.is_empty() {
        TestServer::start_with_env(&[integrity]).await
    } else {
        eprintln!("examples share email addresses, so the email rule is off: {shared:?}");
        TestServer::start_with_env(&[("FHIR_UNIQUE_PATIENT_EMAIL", "false"), integrity]).await
    }
}

fn examples() -> Option<Vec<Example>> {
    let dir = r4_examples_dir()?;
    let examples = load_examples(&dir, &RESOURCE_TYPES);
    for rtype in RESOURCE_TYPES {
        assert!(
            examples.iter().any(|e| e.resource_type == rtype),
            "no {rtype} example in {}",
            dir.display()
        );
    }
    Some(examples)
}

fn file_text(example: &Example) -> String {
    let dir = r4_examples_dir().unwrap();
    std::fs::read_to_string(dir.join(&example.file)).unwrap()
}

fn check(failures: &mut Vec<String>, what: &str, expected: &Value, actual: &Value) {
    let diff = json_diff(&without_server_meta(expected), &without_server_meta(actual));
    if !diff.is_empty() {
        failures.push(format!("{what}:\n      {}", diff.join("\n      ")));
    }
}

/// PUTs an example at its own id; its path and the answer, or why the server did not answer 201.
async fn put_example(server: &TestServer, example: &Example) -> Result<(String, Resp), String> {
    let rtype = &example.resource_type;
    let id = example.resource["id"].as_str().unwrap();
    let path = format!("{rtype}/{id}");
    let resp = server
        .send(
            server
                .request(Method::PUT, &path)
                .header("content-type", FHIR_JSON)
                .body(file_text(example)),
        )
        .await;
    if resp.status == 201 {
        Ok((path, resp))
    } else {
        Err(format!(
            "PUT {path} ({}): {}",
            example.file,
            resp.describe()
        ))
    }
}

#[tokio::test]
async fn every_example_round_trips_through_update() {
    let Some(examples) = examples() else {
        return;
    };
    let server = server_for(&examples).await;
    let mut failures = Vec::new();
    for example in &examples {
        let (path, resp) = match put_example(&server, example).await {
            Ok(put) => put,
            Err(failure) => {
                failures.push(failure);
                continue;
            }
        };
        if resp.json["meta"]["versionId"] != "1" || !resp.json["meta"]["lastUpdated"].is_string() {
            failures.push(format!(
                "PUT {path}: meta not set by the server: {}",
                resp.json["meta"]
            ));
        }
        check(
            &mut failures,
            &format!("PUT {path} answer"),
            &example.resource,
            &resp.json,
        );
        let read = server.get(&path).await;
        if read.status != 200 {
            failures.push(format!("GET {path}: {}", read.describe()));
            continue;
        }
        check(
            &mut failures,
            &format!("GET {path}"),
            &example.resource,
            &read.json,
        );
        let vread = server.get(&format!("{path}/_history/1")).await;
        check(
            &mut failures,
            &format!("GET {path}/_history/1"),
            &example.resource,
            &vread.json,
        );
    }
    assert!(
        failures.is_empty(),
        "{} problems with {} examples:\n  {}",
        failures.len(),
        examples.len(),
        failures.join("\n  ")
    );
    eprintln!("{} examples round-tripped through PUT", examples.len());
}

#[tokio::test]
async fn every_example_round_trips_through_create() {
    let Some(examples) = examples() else {
        return;
    };
    let server = server_for(&examples).await;
    let mut failures = Vec::new();
    for example in &examples {
        let rtype = &example.resource_type;
        let resp = server
            .send(
                server
                    .request(Method::POST, rtype)
                    .header("content-type", FHIR_JSON)
                    .body(file_text(example)),
            )
            .await;
        if resp.status != 201 {
            failures.push(format!(
                "POST {rtype} ({}): {}",
                example.file,
                resp.describe()
            ));
            continue;
        }
        let Some(id) = resp.id().map(str::to_owned) else {
            failures.push(format!(
                "POST {rtype} ({}): no id: {}",
                example.file,
                resp.describe()
            ));
            continue;
        };
        let mut expected = example.resource.clone();
        expected["id"] = json!(id);
        check(
            &mut failures,
            &format!("POST {rtype} ({}) answer", example.file),
            &expected,
            &resp.json,
        );
        let read = server.get(&format!("{rtype}/{id}")).await;
        if read.status != 200 {
            failures.push(format!("GET {rtype}/{id}: {}", read.describe()));
            continue;
        }
        check(
            &mut failures,
            &format!("GET {rtype}/{id} ({})", example.file),
            &expected,
            &read.json,
        );
    }
    assert!(
        failures.is_empty(),
        "{} problems with {} examples:\n  {}",
        failures.len(),
        examples.len(),
        failures.join("\n  ")
    );
    eprintln!("{} examples round-tripped through POST", examples.len());
}

/// Each example read as XML and written back as XML is the same resource.
#[tokio::test]
async fn every_example_survives_an_xml_round_trip() {
    let Some(examples) = examples() else {
        return;
    };
    let server = server_for(&examples).await;
    let mut failures = Vec::new();
    for example in &examples {
        let (path, _) = match put_example(&server, example).await {
            Ok(put) => put,
            Err(failure) => {
                failures.push(failure);
                continue;
            }
        };
        let xml = server.get_with(&path, &[("accept", FHIR_XML)]).await;
        if xml.status != 200 || !xml.content_type().starts_with(FHIR_XML) {
            failures.push(format!("GET {path} as XML: {}", xml.describe()));
            continue;
        }
        let back = server
            .send(
                server
                    .request(Method::PUT, &path)
                    .header("content-type", FHIR_XML)
                    .body(xml.text.clone()),
            )
            .await;
        if back.status != 200 {
            failures.push(format!("PUT {path} as XML: {}", back.describe()));
            continue;
        }
        check(
            &mut failures,
            &format!("{path} after XML"),
            &example.resource,
            &back.json,
        );
    }
    assert!(
        failures.is_empty(),
        "{} problems with {} examples:\n  {}",
        failures.len(),
        examples.len(),
        failures.join("\n  ")
    );
}
