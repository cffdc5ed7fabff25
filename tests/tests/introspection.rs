//! Token introspection (RFC 7662) against the real Keycloak: with
//! `FHIR_AUTH_INTROSPECT_ALL=true` the server asks the realm about every token (with its
//! `ferrum-server` client), so a token revoked at Keycloak is refused at once; an opaque
//! token the realm does not know is 401. Skips without `FHIR_AUTH_ISSUER`, except in CI.

#![allow(clippy::unwrap_used, reason = "tests")]

use ferrum_tests::{TestServer, assert_outcome};
use serde_json::Value;

/// The audience Keycloak puts in its tokens (the FHIR base URL the realm was imported with).
const AUDIENCE: &str = "http://localhost:8080/fhir";

fn issuer() -> Option<String> {
    let Ok(issuer) = std::env::var("FHIR_AUTH_ISSUER") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs scripts/test, which sets FHIR_AUTH_ISSUER"
        );
        eprintln!("skipped: FHIR_AUTH_ISSUER is not set (scripts/test sets it)");
        return None;
    };
    Some(issuer)
}

/// A `ferrum-dev` access token with `scope` (client credentials).
async fn dev_token(http: &reqwest::Client, issuer: &str, scope: &str) -> String {
    let answer: Value = http
        .post(format!("{issuer}/protocol/openid-connect/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ferrum-dev"),
            ("client_secret", "ferrum-dev-secret"),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {answer}"))
        .to_owned()
}

#[tokio::test]
async fn introspected_tokens_are_refused_once_revoked() {
    let Some(issuer) = issuer() else {
        return;
    };
    let server = TestServer::start_with_env(&[
        ("FHIR_AUTH", "smart"),
        ("FHIR_AUTH_ISSUER", &issuer),
        ("FHIR_AUTH_AUDIENCE", AUDIENCE),
        ("FHIR_AUTH_INTROSPECTION_CLIENT_ID", "ferrum-server"),
        (
            "FHIR_AUTH_INTROSPECTION_CLIENT_SECRET",
            "ferrum-server-secret",
        ),
        ("FHIR_AUTH_INTROSPECT_ALL", "true"),
    ])
    .await;
    let http = reqwest::Client::new();
    let token = dev_token(&http, &issuer, "system/*.rs").await;
    let search = |token: String| {
        let server = &server;
        async move {
            server
                .get_with("Patient", &[("authorization", &format!("Bearer {token}"))])
                .await
        }
    };
    let allowed = search(token.clone()).await;
    assert_eq!(allowed.status, 200, "{}", allowed.describe());

    let revoked = http
        .post(format!("{issuer}/protocol/openid-connect/revoke"))
        .form(&[
            ("token", token.as_str()),
            ("token_type_hint", "access_token"),
            ("client_id", "ferrum-dev"),
            ("client_secret", "ferrum-dev-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        revoked.status().is_success(),
        "revocation: {}",
        revoked.status()
    );
    let refused = search(token).await;
    assert_outcome(&refused, 401);

    // Opaque tokens the realm never issued.
    assert_outcome(&search("opaque-and-unknown".into()).await, 401);
    // A fresh token still works, and its scopes still count.
    let fresh = dev_token(&http, &issuer, "system/*.rs").await;
    assert_eq!(search(fresh.clone()).await.status, 200);
    let create = server
        .send(
            server
                .request(reqwest::Method::POST, "Patient")
                .header("authorization", format!("Bearer {fresh}"))
                .header("content-type", "application/fhir+json")
                .body(r#"{"resourceType":"Patient"}"#),
        )
        .await;
    assert_outcome(&create, 403);
}
