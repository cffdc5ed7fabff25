//! Reaching the issuer, against the real Keycloak: token introspection (RFC 7662) — with
//! `FHIR_AUTH_INTROSPECT_ALL=true` the server asks the realm about every token (with its
//! `ferrum-server` client), so a token revoked at Keycloak is refused at once, and an
//! opaque token the realm does not know is 401 — and an issuer reached at an internal
//! address. Skips without `FHIR_AUTH_ISSUER`, except in CI.

#![allow(clippy::unwrap_used, reason = "tests")]

mod smart_support;

use ferrum_tests::assert_outcome;
use smart_support::keycloak;

#[tokio::test]
async fn introspected_tokens_are_refused_once_revoked() {
    let Some(kc) = keycloak().await else {
        return;
    };
    let server = kc
        .server(&[
            ("FHIR_AUTH_INTROSPECTION_CLIENT_ID", "ferrum-server"),
            (
                "FHIR_AUTH_INTROSPECTION_CLIENT_SECRET",
                "ferrum-server-secret",
            ),
            ("FHIR_AUTH_INTROSPECT_ALL", "true"),
        ])
        .await;
    let token = kc.system_token("system/*.rs").await;
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

    let revocation = kc.discovery["revocation_endpoint"].as_str().unwrap();
    let revoked = kc
        .http
        .post(revocation)
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
    assert_outcome(&search(token).await, 401);

    // Opaque tokens the realm never issued.
    assert_outcome(&search("opaque-and-unknown".into()).await, 401);
    // A fresh token still works, and its scopes still count.
    let fresh = kc.system_token("system/*.rs").await;
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

/// A server that reaches the issuer at another address than the one its tokens name (as in
/// a container network: `FHIR_AUTH_ISSUER_INTERNAL_URL`) still checks them against the
/// public issuer.
#[tokio::test]
async fn the_issuer_can_be_reached_at_an_internal_address() {
    let Some(kc) = keycloak().await else {
        return;
    };
    let (public, _) = kc.split_issuer();
    let internal = public.replace("localhost", "127.0.0.1");
    let server = kc
        .server(&[("FHIR_AUTH_ISSUER_INTERNAL_URL", internal.as_str())])
        .await;
    let token = kc.system_token("system/*.rs").await;
    let resp = server
        .get_with("Patient", &[("authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    // Not a reachable issuer at all: the token cannot be checked (503), never accepted.
    let unreachable = kc
        .server(&[("FHIR_AUTH_ISSUER_INTERNAL_URL", "http://127.0.0.1:9")])
        .await;
    let resp = unreachable
        .get_with("Patient", &[("authorization", &format!("Bearer {token}"))])
        .await;
    assert_outcome(&resp, 503);
}
