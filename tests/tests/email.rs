//! The business rule: no two current Patients share an email address
//! (compared without regard to case).

#![allow(clippy::unwrap_used, reason = "tests")]

use ferrum_tests::{Resp, TestServer, assert_outcome, json, unique};
use futures::future::join_all;
use serde_json::Value;

fn patient_with_email(email: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"family": "Mailer"}],
        "telecom": [
            {"system": "phone", "value": "+1 555 0100"},
            {"system": "email", "value": email, "use": "home"}
        ]
    })
}

fn with_id(mut resource: Value, id: &str) -> Value {
    resource["id"] = json!(id);
    resource
}

fn email() -> String {
    format!("{}@example.org", unique("someone"))
}

#[track_caller]
fn assert_conflict(resp: &Resp) {
    let issue = assert_outcome(resp, 409);
    assert!(issue["code"].is_string());
}

#[tokio::test]
async fn a_second_patient_with_the_same_email_is_409() {
    let server = TestServer::start().await;
    let address = email();
    let first = server.create(&patient_with_email(&address)).await;

    assert_conflict(&server.post("Patient", &patient_with_email(&address)).await);
    assert_conflict(
        &server
            .post("Patient", &patient_with_email(&address.to_uppercase()))
            .await,
    );
    let id = unique("mail");
    assert_conflict(
        &server
            .put(
                &format!("Patient/{id}"),
                &with_id(patient_with_email(&address), &id),
            )
            .await,
    );
    // Nothing but the first Patient was written.
    let history = server.history("Patient/_history").await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["resource"]["id"], first["id"]);
}

#[tokio::test]
async fn a_patient_keeps_its_own_email_on_update() {
    let server = TestServer::start().await;
    let address = email();
    let first = server.create(&patient_with_email(&address)).await;
    let id = first["id"].as_str().unwrap();
    let mut changed = with_id(patient_with_email(&address), id);
    changed["active"] = json!(false);
    let resp = server.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    // Changing only the case is still its own address.
    let resp = server
        .put(
            &format!("Patient/{id}"),
            &with_id(patient_with_email(&address.to_uppercase()), id),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
}

#[tokio::test]
async fn updating_to_an_email_taken_by_another_patient_is_409() {
    let server = TestServer::start().await;
    let taken = email();
    server.create(&patient_with_email(&taken)).await;
    let second = server.create(&patient_with_email(&email())).await;
    let id = second["id"].as_str().unwrap();
    let resp = server
        .put(
            &format!("Patient/{id}"),
            &with_id(patient_with_email(&taken), id),
        )
        .await;
    assert_conflict(&resp);
    let current = server.read_json("Patient", id).await;
    assert_eq!(current, second, "the refused update changed nothing");
}

#[tokio::test]
async fn deleting_or_changing_the_holder_frees_the_email() {
    let server = TestServer::start().await;
    let address = email();
    let holder = server.create(&patient_with_email(&address)).await;
    let holder_id = holder["id"].as_str().unwrap();
    assert_eq!(
        server.delete(&format!("Patient/{holder_id}")).await.status,
        204
    );
    let taker = server.create(&patient_with_email(&address)).await;
    let taker_id = taker["id"].as_str().unwrap().to_owned();

    // Re-creating the deleted holder with the address it had is now refused.
    let resp = server
        .put(
            &format!("Patient/{holder_id}"),
            &with_id(patient_with_email(&address), holder_id),
        )
        .await;
    assert_conflict(&resp);

    // Moving to another address frees the old one.
    let other = email();
    let resp = server
        .put(
            &format!("Patient/{taker_id}"),
            &with_id(patient_with_email(&other), &taker_id),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let resp = server.post("Patient", &patient_with_email(&address)).await;
    assert_eq!(
        resp.status,
        201,
        "the old address is free: {}",
        resp.describe()
    );
    assert_conflict(&server.post("Patient", &patient_with_email(&other)).await);
}

#[tokio::test]
async fn only_email_contact_points_of_patients_count() {
    let server = TestServer::start().await;
    let address = email();
    server.create(&patient_with_email(&address)).await;

    // The same text as a phone number or an url is no email.
    let mut not_email = patient_with_email(&email());
    not_email["telecom"] = json!([
        {"system": "other", "value": address},
        {"system": "url", "value": format!("mailto:{address}")}
    ]);
    server.create(&not_email).await;
    // Other resource types may use it.
    let practitioner = json!({
        "resourceType": "Practitioner",
        "telecom": [{"system": "email", "value": address}]
    });
    server.create(&practitioner).await;
    let organization = json!({
        "resourceType": "Organization",
        "name": "Mail Inc",
        "telecom": [{"system": "email", "value": address}]
    });
    server.create(&organization).await;
    // A Patient may list its own address twice.
    let mut twice = patient_with_email(&email());
    let own = twice["telecom"][1].clone();
    twice["telecom"].as_array_mut().unwrap().push(own);
    server.create(&twice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_with_one_email_have_one_winner() {
    let server = TestServer::start().await;
    let address = email();
    let answers = join_all((0..16).map(|_| {
        let body = patient_with_email(&address);
        let server = &server;
        async move { server.post("Patient", &body).await }
    }))
    .await;
    let created = answers.iter().filter(|r| r.status == 201).count();
    assert_eq!(
        created,
        1,
        "statuses: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for resp in answers.iter().filter(|r| r.status != 201) {
        assert_conflict(resp);
    }
    assert_eq!(server.history("Patient/_history").await.len(), 1);
}

#[tokio::test]
async fn the_rule_can_be_switched_off() {
    let server = TestServer::start_with_env(&[("FHIR_UNIQUE_PATIENT_EMAIL", "false")]).await;
    let address = email();
    server.create(&patient_with_email(&address)).await;
    server.create(&patient_with_email(&address)).await;
}

#[tokio::test]
async fn the_rule_holds_after_a_restart() {
    let mut server = TestServer::start().await;
    let address = email();
    server.create(&patient_with_email(&address)).await;
    server.restart().await;
    assert_conflict(&server.post("Patient", &patient_with_email(&address)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_updates_to_one_email_have_one_winner() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        let created = server.create(&patient_with_email(&email())).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let address = email();
    let answers = join_all(ids.iter().map(|id| {
        let body = with_id(patient_with_email(&address), id);
        let server = &server;
        async move { server.put(&format!("Patient/{id}"), &body).await }
    }))
    .await;
    let winners = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        winners,
        1,
        "statuses: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for resp in answers.iter().filter(|r| r.status != 200) {
        assert_conflict(resp);
    }
}
