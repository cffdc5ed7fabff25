//! Conditional update (`PUT [type]?search`) and conditional delete (`DELETE [type]?search`)
//! with any search (http://hl7.org/fhir/R4/http.html#cond-update,
//! http://hl7.org/fhir/R4/http.html#cdelete).

#![allow(clippy::unwrap_used, reason = "tests")]

use ferrum_tests::{TestServer, assert_outcome, entries, json, unique};
use serde_json::Value;

fn patient(family: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": mrn}],
        "name": [{"family": family}],
        "birthDate": "1961-07-04"
    })
}

/// The ids of the current Patients an `identifier` search finds.
async fn ids_with(server: &TestServer, mrn: &str) -> Vec<String> {
    let bundle = server
        .get(&format!("Patient?identifier=urn:test:mrn|{mrn}"))
        .await;
    entries(&bundle.json)
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn conditional_update_creates_then_updates_the_one_match() {
    let server = TestServer::start().await;
    let mrn = unique("mrn");
    let path = format!("Patient?identifier=urn:test:mrn|{mrn}&birthdate=1961");

    let created = server.put(&path, &patient("First", &mrn)).await;
    assert_eq!(created.status, 201, "{}", created.describe());
    let id = created.id().unwrap().to_owned();
    assert!(created.header("location").unwrap().contains(&id));

    let updated = server.put(&path, &patient("Second", &mrn)).await;
    assert_eq!(updated.status, 200, "{}", updated.describe());
    assert_eq!(updated.id(), Some(id.as_str()));
    assert_eq!(updated.version_id(), Some("2"));
    assert_eq!(updated.json["name"][0]["family"], "Second");

    // The body may carry the match's id, but no other.
    let mut with_id = patient("Third", &mrn);
    with_id["id"] = json!(id);
    assert_eq!(server.put(&path, &with_id).await.status, 200);
    with_id["id"] = json!("someone-else");
    assert_outcome(&server.put(&path, &with_id).await, 400);
    assert_eq!(ids_with(&server, &mrn).await, [id]);
}

#[tokio::test]
async fn conditional_update_without_a_match_takes_the_body_id() {
    let server = TestServer::start().await;
    let mrn = unique("mrn");
    let mut body = patient("Chosen", &mrn);
    let id = unique("chosen");
    body["id"] = json!(id);
    let resp = server
        .put(&format!("Patient?identifier=urn:test:mrn|{mrn}"), &body)
        .await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    assert_eq!(resp.id(), Some(id.as_str()));
}

#[tokio::test]
async fn conditional_update_refuses_several_matches_and_bad_conditions() {
    let server = TestServer::start().await;
    let family = unique("Twin");
    for n in 0..2 {
        server
            .create(&patient(&family, &format!("{family}-{n}")))
            .await;
    }
    let several = server
        .put(&format!("Patient?family={family}"), &patient(&family, "x"))
        .await;
    assert_outcome(&several, 412);
    // No criteria, an unknown parameter, a malformed value: 400, nothing written.
    for query in ["", "?_count=5", "?fruit=banana", "?birthdate=zz"] {
        let resp = server
            .put(&format!("Patient{query}"), &patient(&family, "y"))
            .await;
        assert_outcome(&resp, 400);
    }
    let all = server.get(&format!("Patient?family={family}")).await;
    assert_eq!(entries(&all.json).len(), 2);
}

#[tokio::test]
async fn conditional_delete_removes_the_one_match_and_refuses_several() {
    let server = TestServer::start().await;
    let mrn = unique("mrn");
    let created = server.create(&patient("Gone", &mrn)).await;
    let id = created["id"].as_str().unwrap();

    let resp = server
        .delete(&format!("Patient?identifier=urn:test:mrn|{mrn}"))
        .await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    assert_eq!(server.get(&format!("Patient/{id}")).await.status, 410);
    // Nothing matches any more: still 204.
    let again = server
        .delete(&format!("Patient?identifier=urn:test:mrn|{mrn}"))
        .await;
    assert_eq!(again.status, 204);

    let family = unique("Pair");
    for n in 0..2 {
        server
            .create(&patient(&family, &format!("{family}-{n}")))
            .await;
    }
    let several = server.delete(&format!("Patient?family={family}")).await;
    assert_outcome(&several, 412);
    let left = server.get(&format!("Patient?family={family}")).await;
    assert_eq!(
        entries(&left.json).len(),
        2,
        "a refused delete deletes nothing"
    );
    assert_outcome(&server.delete("Patient").await, 400);
}

#[tokio::test]
async fn conditional_delete_of_several_when_configured() {
    let server = TestServer::start_with_env(&[("FHIR_CONDITIONAL_DELETE_MAX", "3")]).await;
    let family = unique("Many");
    for n in 0..3 {
        server
            .create(&patient(&family, &format!("{family}-{n}")))
            .await;
    }
    let resp = server.delete(&format!("Patient?family={family}")).await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    let left = server.get(&format!("Patient?family={family}")).await;
    assert!(entries(&left.json).is_empty());

    for n in 0..4 {
        server
            .create(&patient(&family, &format!("{family}-{n}")))
            .await;
    }
    let too_many = server.delete(&format!("Patient?family={family}")).await;
    assert_outcome(&too_many, 412);
}
