//! `$validate` (http://hl7.org/fhir/R4/resource-operation-validate.html) and Ferrum's
//! profiles, checked on `$validate` and on writes that claim them.

#![allow(clippy::unwrap_used, reason = "tests")]

use ferrum_tests::{Resp, TestServer, assert_outcome, json};
use reqwest::Method;
use serde_json::Value;

const PATIENT_PROFILE: &str = "urn:ferrum:StructureDefinition:ferrum-patient";
const INVOICE_PROFILE: &str = "urn:ferrum:StructureDefinition:ferrum-invoice";

/// A Patient that meets the Patient profile, claiming it.
fn profiled_patient() -> Value {
    json!({
        "resourceType": "Patient",
        "meta": {"profile": [PATIENT_PROFILE]},
        "identifier": [{"system": "urn:oid:1.2.3", "value": "77"}],
        "telecom": [{"system": "email", "value": "ann@example.org"}],
        "name": [{"family": "Profiled"}]
    })
}

/// A billed Invoice that meets the Invoice profile, claiming it.
fn profiled_invoice() -> Value {
    json!({
        "resourceType": "Invoice",
        "meta": {"profile": [INVOICE_PROFILE]},
        "status": "issued",
        "subject": {"reference": "Patient/p1"},
        "totalNet": {"value": 100.00, "currency": "EUR"},
        "totalGross": {"value": 119.00, "currency": "EUR"}
    })
}

/// (severity, code, expression) of every issue of a 200 `$validate` answer.
fn issues(resp: &Resp) -> Vec<(String, String, String)> {
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.json["resourceType"], "OperationOutcome");
    resp.json["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|issue| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&issue["severity"]),
                text(&issue["code"]),
                text(&issue["expression"][0]),
            )
        })
        .collect()
}

fn valid(resp: &Resp) -> bool {
    issues(resp)
        .iter()
        .all(|(severity, _, _)| severity == "information")
}

fn parameters(resource: Value, profile: Option<&str>, mode: Option<&str>) -> Value {
    let mut parameter = vec![json!({"name": "resource", "resource": resource})];
    if let Some(profile) = profile {
        parameter.push(json!({"name": "profile", "valueUri": profile}));
    }
    if let Some(mode) = mode {
        parameter.push(json!({"name": "mode", "valueCode": mode}));
    }
    json!({"resourceType": "Parameters", "parameter": parameter})
}

#[tokio::test]
async fn validate_reports_what_a_write_would_be_refused_for() {
    let server = TestServer::start().await;
    let good = json!({"resourceType": "Patient", "gender": "female"});
    assert!(valid(&server.post("Patient/$validate", &good).await));

    // The R4 definitions: the same checks as a create, answered 200 with the issues.
    let bad = json!({"resourceType": "Patient", "gender": "robot", "birthDate": "2020-02-30"});
    let found = issues(&server.post("Patient/$validate", &bad).await);
    assert!(
        found.contains(&(
            "error".into(),
            "code-invalid".into(),
            "Patient.gender".into()
        )),
        "{found:?}"
    );
    assert!(
        found.iter().any(|(_, _, e)| e == "Patient.birthDate"),
        "{found:?}"
    );
    let created = server.get("Patient?_summary=count").await;
    assert_eq!(created.json["total"], 0, "validation writes nothing");

    // A Parameters body, and a resource of another type.
    let resp = server
        .post("Patient/$validate", &parameters(good.clone(), None, None))
        .await;
    assert!(valid(&resp));
    let account = json!({"resourceType": "Account", "status": "active"});
    let found = issues(&server.post("Patient/$validate", &account).await);
    assert_eq!(
        found,
        [("error".into(), "invalid".into(), "resourceType".into())]
    );

    // A body that is not FHIR JSON (here a member named twice, which a JSON reader would
    // quietly drop) is refused as a create would refuse it: 400.
    let twice = r#"{"resourceType": "Parameters", "parameter": [{"name": "resource",
        "resource": {"resourceType": "Patient", "gender": "female", "gender": "male"}}]}"#;
    let resp = server.post_text("Patient/$validate", twice).await;
    let issue = assert_outcome(&resp, 400);
    assert_eq!(
        issue["expression"][0],
        "Parameters.parameter[0].resource.gender"
    );
}

#[tokio::test]
async fn validate_checks_a_named_profile_and_the_claimed_ones() {
    let server = TestServer::start().await;
    let bare = json!({"resourceType": "Patient", "name": [{"family": "Bare"}]});
    // Without a profile: valid R4.
    assert!(valid(&server.post("Patient/$validate", &bare).await));
    // Against the Patient profile: an identifier and an email are missing.
    let query = format!("Patient/$validate?profile={PATIENT_PROFILE}");
    let found = issues(&server.post(&query, &bare).await);
    assert_eq!(
        found,
        [
            ("error".into(), "invariant".into(), "Patient".into()),
            (
                "error".into(),
                "required".into(),
                "Patient.identifier".into()
            ),
            ("error".into(), "required".into(), "Patient.telecom".into()),
        ]
    );
    let resp = server
        .post(
            "Patient/$validate",
            &parameters(bare.clone(), Some(PATIENT_PROFILE), None),
        )
        .await;
    assert_eq!(issues(&resp).len(), 3);
    // A profile the resource claims is checked without being named.
    let mut claiming = bare.clone();
    claiming["meta"] = json!({"profile": [PATIENT_PROFILE]});
    assert_eq!(
        issues(&server.post("Patient/$validate", &claiming).await).len(),
        3
    );
    assert!(valid(
        &server.post("Patient/$validate", &profiled_patient()).await
    ));

    // An Invoice in draft, totals in two currencies.
    let mut invoice = profiled_invoice();
    invoice["status"] = json!("draft");
    invoice["totalNet"]["currency"] = json!("USD");
    let found = issues(&server.post("Invoice/$validate", &invoice).await);
    assert_eq!(
        found,
        [
            ("error".into(), "invariant".into(), "Invoice".into()),
            (
                "error".into(),
                "code-invalid".into(),
                "Invoice.status".into()
            ),
        ]
    );
    assert!(valid(
        &server.post("Invoice/$validate", &profiled_invoice()).await
    ));

    // A profile this server does not know cannot be validated against: 400.
    let resp = server
        .post(
            "Patient/$validate?profile=http://example.org/unknown",
            &bare,
        )
        .await;
    assert_outcome(&resp, 400);
    // A profile for another type: the resource does not conform.
    let query = format!("Patient/$validate?profile={INVOICE_PROFILE}");
    assert!(!valid(&server.post(&query, &bare).await));
}

#[tokio::test]
async fn instance_validation_update_delete_and_stored() {
    let server = TestServer::start().await;
    let created = server.create(&profiled_patient()).await;
    let id = created["id"].as_str().unwrap();

    // The stored version, against the profile it claims and a named one.
    assert!(valid(&server.get(&format!("Patient/{id}/$validate")).await));
    let query = format!("Patient/{id}/$validate?profile={INVOICE_PROFILE}");
    assert!(!valid(&server.get(&query).await));
    assert_outcome(&server.get("Patient/nobody/$validate").await, 404);

    // mode update (the default): the body's id must be the URL's.
    let mut update = profiled_patient();
    update["id"] = json!(id);
    assert!(valid(
        &server
            .post(&format!("Patient/{id}/$validate"), &update)
            .await
    ));
    update["id"] = json!("someone-else");
    let found = issues(
        &server
            .post(&format!("Patient/{id}/$validate"), &update)
            .await,
    );
    assert_eq!(found, [("error".into(), "invalid".into(), "id".into())]);

    // mode delete: no resource; 404 when there is nothing to delete.
    let delete = server.send(
        server
            .request(Method::POST, &format!("Patient/{id}/$validate?mode=delete"))
            .header("content-length", "0"),
    );
    assert!(valid(&delete.await));
    let delete = server.send(server.request(Method::POST, "Patient/nobody/$validate?mode=delete"));
    assert_outcome(&delete.await, 404);

    // Requests the operation cannot run: 400.
    for (path, body) in [
        (format!("Patient/{id}/$validate?mode=merge"), json!({})),
        (
            "Patient/$validate?mode=delete".to_owned(),
            profiled_patient(),
        ),
        (
            "Patient/$validate?colour=red".to_owned(),
            profiled_patient(),
        ),
        (
            "Patient/$validate".to_owned(),
            json!({"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "create"}]}),
        ),
    ] {
        assert_outcome(&server.post(&path, &body).await, 400);
    }
    assert_outcome(&server.get("Patient/$validate").await, 405);
}

#[tokio::test]
async fn writes_claiming_a_profile_must_conform() {
    // The Invoice refers to `Patient/p1`, which is not stored.
    let server = TestServer::start_with_env(&[("FHIR_REFERENTIAL_INTEGRITY", "false")]).await;
    // Conforming: stored.
    let created = server.post("Patient", &profiled_patient()).await;
    assert_eq!(created.status, 201, "{}", created.describe());
    let invoice = server.post("Invoice", &profiled_invoice()).await;
    assert_eq!(invoice.status, 201, "{}", invoice.describe());

    // Not conforming: 422, with the profile's issues, and nothing stored.
    let mut bare = profiled_patient();
    bare.as_object_mut().unwrap().remove("identifier");
    let resp = server.post("Patient", &bare).await;
    let issue = assert_outcome(&resp, 422);
    assert_eq!(issue["expression"][0], "Patient.identifier", "{issue}");
    let mut draft = profiled_invoice();
    draft["status"] = json!("draft");
    assert_outcome(&server.post("Invoice", &draft).await, 422);
    assert_eq!(server.get("Patient?_summary=count").await.json["total"], 1);
    assert_eq!(server.get("Invoice?_summary=count").await.json["total"], 1);

    // An update that breaks the profile is refused too; one without the claim is not checked.
    let id = created.id().unwrap().to_owned();
    bare["id"] = json!(id);
    assert_outcome(&server.put(&format!("Patient/{id}"), &bare).await, 422);
    bare.as_object_mut().unwrap().remove("meta");
    let resp = server.put(&format!("Patient/{id}"), &bare).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());

    // A claim of a profile this server does not know is not checked.
    let unknown = json!({"resourceType": "Patient",
        "meta": {"profile": ["http://example.org/StructureDefinition/other"]}});
    assert_eq!(server.post("Patient", &unknown).await.status, 201);
}

#[tokio::test]
async fn profile_checks_on_writes_can_be_switched_off() {
    let server = TestServer::start_with_env(&[("FHIR_VALIDATE_PROFILES", "false")]).await;
    let mut bare = profiled_patient();
    bare.as_object_mut().unwrap().remove("identifier");
    assert_eq!(server.post("Patient", &bare).await.status, 201);
    // $validate still checks.
    assert!(!valid(&server.post("Patient/$validate", &bare).await));
}

#[tokio::test]
async fn the_capability_statement_lists_the_profiles_and_the_operation() {
    let server = TestServer::start().await;
    let capabilities = server.get("metadata").await.json;
    let resources = capabilities["rest"][0]["resource"].as_array().unwrap();
    for resource in resources {
        let operations: Vec<&str> = resource["operation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert!(operations.contains(&"validate"), "{resource}");
        let profiles = &resource["supportedProfile"];
        match resource["type"].as_str().unwrap() {
            "Patient" => assert_eq!(profiles, &json!([PATIENT_PROFILE])),
            "Invoice" => assert_eq!(profiles, &json!([INVOICE_PROFILE])),
            _ => assert!(profiles.is_null()),
        }
    }
}
