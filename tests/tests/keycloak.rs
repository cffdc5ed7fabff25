//! The Keycloak that the scripts provision issues tokens for this server: a client
//! credentials grant in realm `fhir` gives a token whose issuer is the realm and whose
//! audience is the FHIR base URL.
#![allow(clippy::unwrap_used, reason = "tests")]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

#[tokio::test]
async fn realm_fhir_issues_tokens_for_the_fhir_base() {
    let Ok(issuer) = std::env::var("FHIR_AUTH_ISSUER") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs scripts/test, which sets FHIR_AUTH_ISSUER"
        );
        eprintln!("skipped: FHIR_AUTH_ISSUER is not set (scripts/test sets it)");
        return;
    };
    let client = reqwest::Client::new();
    let discovery: Value = client
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str());
    let token_endpoint = discovery["token_endpoint"].as_str().unwrap();
    let response: Value = client
        .post(token_endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ferrum-dev"),
            ("client_secret", "ferrum-dev-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = response["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["iss"], issuer.as_str());
    let audience = match &claims["aud"] {
        Value::Array(list) => list.clone(),
        single => vec![single.clone()],
    };
    assert!(
        audience.iter().any(|a| a == "http://localhost:8080/fhir"),
        "aud: {audience:?}"
    );
}
