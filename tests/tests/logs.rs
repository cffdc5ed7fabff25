//! No patient data in the server's logs: the names, birth date, identifier and email of a
//! Patient, sent in bodies and in query strings of requests that succeed, are refused or
//! fail, and the access tokens of requests, never appear in what the server writes, even at
//! `debug`; and a log that goes to a file is plain text, without terminal colours.

#![allow(clippy::unwrap_used, reason = "tests")]

use ferrum_tests::{TestServer, json, unique};
use reqwest::Method;

/// Everything the server wrote so far.
fn log_of(server: &TestServer) -> String {
    server.log_tail(usize::MAX)
}

#[track_caller]
fn assert_absent(log: &str, values: &[&str]) {
    assert!(!log.is_empty(), "the server logged nothing at debug");
    for value in values {
        assert!(!log.contains(value), "the log holds {value:?}");
    }
    assert!(!log.contains('\u{1b}'), "the log holds terminal escapes");
}

#[tokio::test]
async fn patient_data_sent_to_the_server_stays_out_of_its_log() {
    let server = TestServer::start_with_env(&[("RUST_LOG", "debug")]).await;
    let family = unique("Zqfamily");
    let given = unique("Zqgiven");
    let identifier = unique("ZQID");
    let email = format!("{}@example.org", unique("zqmail"));
    let birth = "1931-07-19";
    let patient = json!({
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "birthDate": birth,
        "identifier": [{"system": "urn:zq", "value": identifier}],
        "telecom": [{"system": "email", "value": email}]
    });

    let created = server.create(&patient).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("Patient/{id}");
    assert_eq!(server.get(&path).await.status, 200);
    let mut changed = created.clone();
    changed["gender"] = json!("female");
    assert_eq!(server.put(&path, &changed).await.status, 200);

    // Searches with the values in the query string, good and malformed.
    for query in [
        format!("Patient?family={family}&birthdate={birth}"),
        format!("Patient?identifier=urn:zq|{identifier}&email={email}"),
        format!("Patient?given={given}&birthdate=not-{birth}"),
        format!("Patient?_has:Account:subject:name={family}"),
    ] {
        server.get(&query).await;
    }
    let form = server
        .request(Method::POST, "Patient/_search")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("family={family}&birthdate={birth}"));
    assert_eq!(server.send(form).await.status, 200);

    // Refused writes: a second Patient with the same email, an impossible date next to the
    // name, a body that is not JSON, a conditional create on the identifier.
    assert_eq!(server.post("Patient", &patient).await.status, 409);
    let mut impossible = patient.clone();
    impossible["birthDate"] = json!(format!("{family}-02-30"));
    assert_eq!(server.post("Patient", &impossible).await.status, 400);
    let broken = format!("{{\"resourceType\": \"Patient\", \"name\": [{{\"family\": \"{family}\"");
    assert_eq!(server.post_text("Patient", &broken).await.status, 400);
    let conditional = server
        .request(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", format!("identifier=urn:zq|{identifier}"))
        .body(patient.to_string());
    assert_eq!(server.send(conditional).await.status, 200);

    assert_eq!(server.delete(&path).await.status, 204);
    server.get(&format!("{path}/_history")).await;

    assert_absent(
        &log_of(&server),
        &[&family, &given, &identifier, &email, birth],
    );
}

#[tokio::test]
async fn access_tokens_stay_out_of_the_log() {
    let Ok(issuer) = std::env::var("FHIR_AUTH_ISSUER") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs scripts/test, which sets FHIR_AUTH_ISSUER"
        );
        eprintln!("skipped: FHIR_AUTH_ISSUER is not set (scripts/test sets it)");
        return;
    };
    let server = TestServer::start_with_env(&[
        ("RUST_LOG", "debug"),
        ("FHIR_AUTH", "smart"),
        ("FHIR_AUTH_ISSUER", &issuer),
    ])
    .await;
    let family = unique("Zqfamily");
    // A token of the JWT shape that no issuer signed, and one of no shape at all.
    let forged = format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.c2lnbmF0dXJl",
        unique("eyJzdWIiOiJ6cSJ9")
    );
    let opaque = unique("zqopaque");
    for token in [&forged, &opaque] {
        let request = server
            .request(Method::GET, &format!("Patient?family={family}"))
            .header("authorization", format!("Bearer {token}"));
        assert_eq!(server.send(request).await.status, 401);
    }
    assert_absent(&log_of(&server), &[&forged, &opaque, &family]);
}
