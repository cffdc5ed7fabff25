//! PATCH with JSON Patch (RFC 6902): `PATCH [type]/[id]`, `application/json-patch+json`
//! (http://hl7.org/fhir/R4/http.html#patch).

#![allow(clippy::unwrap_used, reason = "tests")]

use ferrum_tests::{Resp, TestServer, assert_outcome, json};
use reqwest::Method;
use serde_json::Value;

const JSON_PATCH: &str = "application/json-patch+json";

async fn patch(server: &TestServer, path: &str, body: &Value, if_match: Option<&str>) -> Resp {
    let mut request = server
        .request(Method::PATCH, path)
        .header("content-type", JSON_PATCH)
        .body(body.to_string());
    if let Some(etag) = if_match {
        request = request.header("if-match", etag);
    }
    server.send(request).await
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

    // Not a JSON Patch, or not declared as one.
    assert_outcome(
        &patch(&server, &path, &json!({"op": "add"}), None).await,
        400,
    );
    let wrong_type = server
        .send(
            server
                .request(Method::PATCH, &path)
                .header("content-type", "application/fhir+json")
                .body("[]"),
        )
        .await;
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
