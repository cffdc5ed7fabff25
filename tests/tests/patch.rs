//! PATCH (http://hl7.org/fhir/R4/http.html#patch): `PATCH [type]/[id]` with a JSON Patch
//! (RFC 6902, `application/json-patch+json`) or a FHIRPath Patch (a Parameters resource,
//! `application/fhir+json` or `application/fhir+xml`, http://hl7.org/fhir/R4/fhirpatch.html),
//! on its own and as a transaction entry.

#![allow(clippy::unwrap_used, reason = "tests")]

use ferrum_tests::{Resp, TestServer, assert_outcome, json};
use reqwest::Method;
use serde_json::Value;

const JSON_PATCH: &str = "application/json-patch+json";
const FHIR_JSON: &str = "application/fhir+json";
const FHIR_XML: &str = "application/fhir+xml";

async fn send_patch(
    server: &TestServer,
    path: &str,
    content_type: &str,
    body: String,
    if_match: Option<&str>,
) -> Resp {
    let mut request = server
        .request(Method::PATCH, path)
        .header("content-type", content_type)
        .body(body);
    if let Some(etag) = if_match {
        request = request.header("if-match", etag);
    }
    server.send(request).await
}

/// PATCH with a JSON Patch.
async fn patch(server: &TestServer, path: &str, body: &Value, if_match: Option<&str>) -> Resp {
    send_patch(server, path, JSON_PATCH, body.to_string(), if_match).await
}

/// PATCH with a FHIRPath Patch in FHIR JSON.
async fn fhirpath_patch(
    server: &TestServer,
    path: &str,
    parameters: &Value,
    if_match: Option<&str>,
) -> Resp {
    send_patch(server, path, FHIR_JSON, parameters.to_string(), if_match).await
}

/// A FHIRPath Patch: a Parameters with one `operation` parameter per operation.
fn parameters(operations: &[Value]) -> Value {
    json!({"resourceType": "Parameters", "parameter": operations})
}

/// A transaction Bundle.
fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// An `operation` parameter: its type, path, and other parts (`{"name": ..., "value[x]": ...}`).
fn operation(kind: &str, path: &str, parts: &[Value]) -> Value {
    let mut all = vec![
        json!({"name": "type", "valueCode": kind}),
        json!({"name": "path", "valueString": path}),
    ];
    all.extend_from_slice(parts);
    json!({"name": "operation", "part": all})
}

async fn patient(server: &TestServer) -> String {
    let created = server
        .create(&json!({
            "resourceType": "Patient",
            "active": true,
            "name": [{"family": "Before", "given": ["Ann"]}],
            "gender": "female",
            "birthDate": "1980-01-02"
        }))
        .await;
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_patch_applies_to_the_current_version() {
    let server = TestServer::start().await;
    let id = patient(&server).await;
    let path = format!("Patient/{id}");
    let ops = json!([
        {"op": "test", "path": "/name/0/family", "value": "Before"},
        {"op": "replace", "path": "/name/0/family", "value": "After"},
        {"op": "add", "path": "/name/0/given/-", "value": "Marie"},
        {"op": "remove", "path": "/active"},
        {"op": "replace", "path": "/meta/versionId", "value": "99"}
    ]);
    let resp = patch(&server, &path, &ops, None).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.version_id(), Some("2"));
    assert_eq!(resp.json["name"][0]["family"], "After");
    assert_eq!(resp.json["name"][0]["given"], json!(["Ann", "Marie"]));
    assert!(resp.json.get("active").is_none());
    let read = server.read_json("Patient", &id).await;
    assert_eq!(read["name"][0]["family"], "After");
    assert_eq!(read["meta"]["versionId"], "2");

    // If-Match: the current version applies, another is 412.
    let rename = json!([{"op": "replace", "path": "/name/0/family", "value": "Again"}]);
    assert_outcome(&patch(&server, &path, &rename, Some("W/\"1\"")).await, 412);
    let resp = patch(&server, &path, &rename, Some("W/\"2\"")).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.version_id(), Some("3"));
}

#[tokio::test]
async fn a_patch_that_cannot_apply_changes_nothing() {
    let server = TestServer::start().await;
    let id = patient(&server).await;
    let path = format!("Patient/{id}");
    let failing = [
        // A failed test stops the whole patch, the replace before it included.
        json!([
            {"op": "replace", "path": "/gender", "value": "male"},
            {"op": "test", "path": "/name/0/family", "value": "Other"}
        ]),
        json!([{"op": "remove", "path": "/telecom"}]),
        json!([{"op": "replace", "path": "/id", "value": "someone-else"}]),
        json!([{"op": "replace", "path": "/resourceType", "value": "Account"}]),
        // The result must be a valid Patient.
        json!([{"op": "replace", "path": "/gender", "value": "robot"}]),
        json!([{"op": "add", "path": "/unknownElement", "value": 1}]),
    ];
    for ops in &failing {
        let resp = patch(&server, &path, ops, None).await;
        assert_outcome(&resp, 422);
    }
    let read = server.read_json("Patient", &id).await;
    assert_eq!(read["meta"]["versionId"], "1");
    assert_eq!(read["gender"], "female");

    // Not a JSON Patch; a JSON Patch sent as FHIR JSON (not a Parameters); neither kind.
    assert_outcome(
        &patch(&server, &path, &json!({"op": "add"}), None).await,
        400,
    );
    let as_fhir = json!([{"op": "remove", "path": "/active"}]);
    assert_outcome(&fhirpath_patch(&server, &path, &as_fhir, None).await, 400);
    let wrong_type = send_patch(&server, &path, "text/plain", "[]".into(), None).await;
    assert_outcome(&wrong_type, 415);
    // Unknown and deleted resources.
    let noop = json!([]);
    assert_outcome(
        &patch(&server, "Patient/unknown-id", &noop, None).await,
        404,
    );
    server.delete(&path).await;
    assert_outcome(&patch(&server, &path, &noop, None).await, 410);
}

#[tokio::test]
async fn a_fhirpath_patch_applies_to_the_current_version() {
    let server = TestServer::start().await;
    let id = patient(&server).await;
    let path = format!("Patient/{id}");
    let patch = parameters(&[
        operation(
            "replace",
            "Patient.name[0].family",
            &[json!({"name": "value", "valueString": "After"})],
        ),
        operation(
            "insert",
            "Patient.name[0].given",
            &[
                json!({"name": "index", "valueInteger": 0}),
                json!({"name": "value", "valueString": "Marie"}),
            ],
        ),
        operation("delete", "Patient.active", &[]),
        operation(
            "add",
            "Patient",
            &[
                json!({"name": "name", "valueString": "contact"}),
                json!({"name": "value", "part": [
                    {"name": "name", "valueHumanName": {"family": "Next"}},
                    {"name": "gender", "valueCode": "male"}
                ]}),
            ],
        ),
        operation(
            "add",
            "Patient",
            &[
                json!({"name": "name", "valueString": "deceased"}),
                json!({"name": "value", "valueBoolean": false}),
            ],
        ),
    ]);
    let resp = fhirpath_patch(&server, &path, &patch, None).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.version_id(), Some("2"));
    let read = server.read_json("Patient", &id).await;
    assert_eq!(read["meta"]["versionId"], "2");
    assert_eq!(read["name"][0]["family"], "After");
    assert_eq!(read["name"][0]["given"], json!(["Marie", "Ann"]));
    assert!(read.get("active").is_none());
    assert_eq!(
        read["contact"],
        json!([{"name": {"family": "Next"}, "gender": "male"}])
    );
    assert_eq!(read["deceasedBoolean"], false);

    // If-Match: another version is 412, the current one applies.
    let rename = parameters(&[operation(
        "replace",
        "Patient.name[0].family",
        &[json!({"name": "value", "valueString": "Again"})],
    )]);
    assert_outcome(
        &fhirpath_patch(&server, &path, &rename, Some("W/\"1\"")).await,
        412,
    );
    let resp = fhirpath_patch(&server, &path, &rename, Some("W/\"2\"")).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.version_id(), Some("3"));

    // The same in FHIR XML.
    let xml = r#"<Parameters xmlns="http://hl7.org/fhir">
        <parameter>
          <name value="operation"/>
          <part><name value="type"/><valueCode value="replace"/></part>
          <part><name value="path"/><valueString value="Patient.gender"/></part>
          <part><name value="value"/><valueCode value="male"/></part>
        </parameter>
      </Parameters>"#;
    let resp = send_patch(&server, &path, FHIR_XML, xml.into(), None).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.version_id(), Some("4"));
    assert_eq!(server.read_json("Patient", &id).await["gender"], "male");
}

#[tokio::test]
async fn a_fhirpath_patch_that_cannot_apply_or_is_malformed_changes_nothing() {
    let server = TestServer::start().await;
    let id = patient(&server).await;
    let path = format!("Patient/{id}");
    let value = |v: Value| {
        let mut part = v;
        part["name"] = json!("value");
        part
    };
    let does_not_apply = [
        // A path that selects nothing, or several elements where one is needed.
        operation(
            "replace",
            "Patient.contact.gender",
            &[value(json!({"valueCode": "male"}))],
        ),
        operation(
            "replace",
            "Patient.name.given | Patient.name.family",
            &[value(json!({"valueString": "X"}))],
        ),
        // An index beyond the list.
        operation(
            "insert",
            "Patient.name",
            &[
                json!({"name": "index", "valueInteger": 5}),
                value(json!({"valueHumanName": {"family": "X"}})),
            ],
        ),
        // A non-repeating element that has a value.
        operation(
            "add",
            "Patient",
            &[
                json!({"name": "name", "valueString": "birthDate"}),
                value(json!({"valueDate": "1990-01-01"})),
            ],
        ),
        // A value of another type.
        operation(
            "replace",
            "Patient.name[0]",
            &[value(json!({"valueIdentifier": {"value": "X"}}))],
        ),
        // A result that is not a valid Patient, or another resource.
        operation(
            "replace",
            "Patient.gender",
            &[value(json!({"valueCode": "robot"}))],
        ),
        operation(
            "replace",
            "Patient.id",
            &[value(json!({"valueId": "other"}))],
        ),
    ];
    for operation in does_not_apply {
        // After a change that would apply: all or nothing.
        let patch = parameters(&[self::operation("delete", "Patient.active", &[]), operation]);
        assert_outcome(&fhirpath_patch(&server, &path, &patch, None).await, 422);
    }

    let malformed = [
        json!({"resourceType": "Patient", "active": false}),
        parameters(&[operation("remove", "Patient.active", &[])]),
        parameters(&[operation("delete", "Patient.name[", &[])]),
        parameters(&[operation("replace", "Patient.gender", &[])]),
        parameters(&[json!({"name": "op", "part": []})]),
    ];
    for body in &malformed {
        assert_outcome(&fhirpath_patch(&server, &path, body, None).await, 400);
    }
    let broken = send_patch(&server, &path, FHIR_JSON, "{\"resourceType\":".into(), None).await;
    assert_outcome(&broken, 400);
    let broken = send_patch(&server, &path, FHIR_XML, "<Parameters".into(), None).await;
    assert_outcome(&broken, 400);

    let read = server.read_json("Patient", &id).await;
    assert_eq!(read["meta"]["versionId"], "1");
    assert_eq!(read["active"], true);
}

#[tokio::test]
async fn a_fhirpath_patch_is_a_transaction_entry() {
    let server = TestServer::start().await;
    let id = patient(&server).await;
    let url = format!("Patient/{id}");
    let entry = |patch: Value, if_match: &str| {
        json!({
            "resource": patch,
            "request": {"method": "PATCH", "url": url, "ifMatch": if_match}
        })
    };
    let other = json!({
        "fullUrl": "urn:uuid:6f1c2b3a-0c1d-4c8e-9a39-0d3c2a1b4e5f",
        "resource": {"resourceType": "Patient", "active": false},
        "request": {"method": "POST", "url": "Patient"}
    });
    let rename = parameters(&[operation(
        "replace",
        "Patient.name[0].family",
        &[json!({"name": "value", "valueString": "InBundle"})],
    )]);
    let resp = server
        .post(
            &server.base,
            &transaction(vec![other.clone(), entry(rename, "W/\"1\"")]),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.json["entry"][1]["response"]["status"], "200 OK");
    let read = server.read_json("Patient", &id).await;
    assert_eq!(read["meta"]["versionId"], "2");
    assert_eq!(read["name"][0]["family"], "InBundle");

    // One that does not apply fails the transaction, at its entry; so does a malformed one.
    let missing = parameters(&[operation(
        "replace",
        "Patient.contact.gender",
        &[json!({"name": "value", "valueCode": "male"})],
    )]);
    let malformed = parameters(&[operation("remove", "Patient.name", &[])]);
    for (patch, status) in [(missing, 422), (malformed, 400)] {
        let resp = server
            .post(
                &server.base,
                &transaction(vec![other.clone(), entry(patch, "W/\"2\"")]),
            )
            .await;
        let issue = assert_outcome(&resp, status);
        let at = issue["expression"][0].as_str().unwrap_or_default();
        assert!(at.starts_with("Bundle.entry[1]"), "{}", resp.describe());
    }
    assert_eq!(
        server.read_json("Patient", &id).await["meta"]["versionId"],
        "2"
    );
}
