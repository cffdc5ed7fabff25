//! The Keycloak realm `fhir` (deploy/keycloak/fhir-realm.json, written by
//! scripts/keycloak-realm) issues the tokens that the FHIR server expects, through real
//! grants against the Keycloak that scripts/services provisions (scripts/test starts it,
//! on port 8081):
//! - client_credentials with a secret (ferrum-dev) and with a private_key_jwt assertion
//!   signed RS384 (ferrum-backend): system/ scopes, `aud` = the FHIR base URL;
//! - the password grant (ferrum-dev-password) and the authorization code flow with PKCE
//!   S256 (ferrum-smart-app, its login form driven over HTTP): patient/ and user/ scopes,
//!   the `patient` and `fhirUser` claims of the demo users;
//! - introspection (RFC 7662) by the client ferrum-server;
//! - what the realm refuses: scopes a client was not given, PKCE `plain` or none, a
//!   replayed or wrongly signed assertion, and scopes of another role.
//!
//! The tests decode the tokens without verifying them: checking tokens is the server's
//! business. Without `FHIR_AUTH_ISSUER` (scripts/test sets it) they skip, except in CI.
//! The audience is `FHIR_BASE_URL` (default `http://localhost:8080/fhir`), the value
//! Keycloak imported the realm with.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferrum_tests::TestServer;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

/// Where the SMART app of the realm may be sent back to (one of its redirect URIs).
const REDIRECT_URI: &str = "http://localhost:3000/callback";

/// The realm's endpoints, from its OpenID discovery document.
struct Keycloak {
    issuer: String,
    token_endpoint: String,
    authorization_endpoint: String,
    jwks_uri: String,
    http: reqwest::Client,
}

/// The realm, or `None` (the test skips) when `FHIR_AUTH_ISSUER` is not set.
async fn keycloak() -> Option<Keycloak> {
    let Ok(issuer) = std::env::var("FHIR_AUTH_ISSUER") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs scripts/test, which sets FHIR_AUTH_ISSUER"
        );
        eprintln!("skipped: FHIR_AUTH_ISSUER is not set (scripts/test sets it)");
        return None;
    };
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let discovery: Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("Keycloak at {issuer} does not answer ({e}); start it with scripts/services start keycloak"))
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str());
    let endpoint = |name: &str| discovery[name].as_str().unwrap().to_owned();
    Some(Keycloak {
        token_endpoint: endpoint("token_endpoint"),
        authorization_endpoint: endpoint("authorization_endpoint"),
        jwks_uri: endpoint("jwks_uri"),
        issuer,
        http,
    })
}

impl Keycloak {
    /// POSTs a form to the token endpoint: the status and the JSON answer.
    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(&self.token_endpoint)
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// A token response that must have succeeded: the claims of its access token.
    async fn access_token(&self, form: &[(&str, &str)]) -> (Value, Value) {
        let (status, body) = self.token(form).await;
        assert_eq!(status, 200, "token request {form:?}: {body}");
        (claims(body["access_token"].as_str().unwrap()), body)
    }

    /// The password grant of the development client for a demo user.
    async fn password_grant(&self, user: &str, scope: &str) -> (Value, Value) {
        self.access_token(&[
            ("grant_type", "password"),
            ("client_id", "ferrum-dev-password"),
            ("username", user),
            ("password", user),
            ("scope", scope),
        ])
        .await
    }

    /// The claims every access token of the realm carries.
    #[track_caller]
    fn assert_common_claims(&self, claims: &Value, client: &str) {
        assert_eq!(claims["iss"], self.issuer.as_str(), "{claims}");
        assert!(
            audience(claims).contains(&fhir_base()),
            "aud {:?} lacks {}",
            audience(claims),
            fhir_base()
        );
        assert_eq!(claims["azp"], client, "{claims}");
        assert!(
            claims["sub"].as_str().is_some_and(|s| !s.is_empty()),
            "no sub: {claims}"
        );
        let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert!(
            (1..=300).contains(&lifetime),
            "access tokens live at most 300 s: {lifetime}"
        );
    }
}

/// The FHIR base URL that Keycloak puts in `aud` (scripts/lib.sh: FHIR_BASE_URL).
fn fhir_base() -> String {
    std::env::var("FHIR_BASE_URL").unwrap_or_else(|_| "http://localhost:8080/fhir".to_owned())
}

/// The payload of a JWT, decoded without checking anything.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The header of a JWT.
fn jwt_header(jwt: &str) -> Value {
    let header = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// `aud`, a string or a list of strings.
fn audience(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::Array(list) => list
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect(),
        Value::String(one) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// The granted scopes of a token (`scope`, space-separated).
fn scopes(claims: &Value) -> Vec<String> {
    claims["scope"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// deploy/keycloak/fhir-realm.json.
fn realm_file() -> Value {
    let text = std::fs::read_to_string(repo_file("deploy/keycloak/fhir-realm.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn realm_client(realm: &Value, client_id: &str) -> Value {
    realm["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == client_id)
        .unwrap_or_else(|| panic!("no client {client_id} in the realm file"))
        .clone()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A client assertion for ferrum-backend (SMART backend services), signed with its
/// development key (deploy/keycloak/dev/) under the kid that the realm's JWKS lists.
fn backend_assertion(kc: &Keycloak, alg: Algorithm, claims: &Value) -> String {
    let realm = realm_file();
    let jwks: Value = serde_json::from_str(
        realm_client(&realm, "ferrum-backend")["attributes"]["jwks.string"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = Some(jwks["keys"][0]["kid"].as_str().unwrap().to_owned());
    let pem = std::fs::read(repo_file("deploy/keycloak/dev/ferrum-backend.key")).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut claims = claims.clone();
    for (name, value) in [
        ("iss", json!("ferrum-backend")),
        ("sub", json!("ferrum-backend")),
        ("aud", json!(kc.token_endpoint)),
        ("jti", json!(uuid::Uuid::new_v4().to_string())),
    ] {
        if claims.get(name).is_none() {
            claims[name] = value;
        }
    }
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

async fn backend_grant(kc: &Keycloak, assertion: &str, scope: &str) -> (u16, Value) {
    kc.token(&[
        ("grant_type", "client_credentials"),
        ("scope", scope),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ])
    .await
}

/// PKCE: a verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The query parameters of a redirect to the SMART app.
fn redirect_params(resp: &reqwest::Response) -> Vec<(String, String)> {
    redirect_params_to(resp, REDIRECT_URI)
}

/// The query parameters of a redirect (the `Location` of a 302) to `target`.
fn redirect_params_to(resp: &reqwest::Response, target: &str) -> Vec<(String, String)> {
    assert_eq!(resp.status().as_u16(), 302, "expected a redirect");
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(target), "redirected to {location}");
    Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The authorization request of the SMART app (`aud` as SMART requires it).
async fn authorize(
    kc: &Keycloak,
    http: &reqwest::Client,
    scope: &str,
    state: &str,
    pkce: &[(&str, &str)],
) -> reqwest::Response {
    let base = fhir_base();
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", "ferrum-smart-app"),
        ("redirect_uri", REDIRECT_URI),
        ("scope", scope),
        ("state", state),
        ("aud", base.as_str()),
    ];
    query.extend_from_slice(pkce);
    http.get(&kc.authorization_endpoint)
        .query(&query)
        .send()
        .await
        .unwrap()
}

/// The `action` of Keycloak's login form (`<form id="kc-form-login" ... action="...">`).
fn login_form_action(html: &str) -> String {
    let at = html
        .find("id=\"kc-form-login\"")
        .unwrap_or_else(|| panic!("no login form in {html}"));
    let start = html[..at].rfind("<form").unwrap();
    let tag = &html[start..start + html[start..].find('>').unwrap()];
    let value = &tag[tag.find("action=\"").unwrap() + "action=\"".len()..];
    value[..value.find('"').unwrap()].replace("&amp;", "&")
}

#[tokio::test]
async fn client_credentials_with_a_secret_gives_a_system_token_for_the_fhir_base() {
    let Some(kc) = keycloak().await else { return };
    let (claims, body) = kc
        .access_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ferrum-dev"),
            ("client_secret", "ferrum-dev-secret"),
            ("scope", "system/*.rs"),
        ])
        .await;
    kc.assert_common_claims(&claims, "ferrum-dev");
    assert_eq!(scopes(&claims), ["system/*.rs"], "{claims}");
    assert_eq!(body["scope"], "system/*.rs");
    assert!(body["expires_in"].as_i64().unwrap() <= 300);
    // No user, no patient context.
    assert!(claims.get("patient").is_none() && claims.get("fhirUser").is_none());

    // Signed with a key of the realm's JWKS, by an algorithm the server accepts.
    let token = body["access_token"].as_str().unwrap();
    let header = jwt_header(token);
    assert_eq!(header["alg"], "RS256");
    let jwks: Value = kc
        .http
        .get(&kc.jwks_uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"]),
        "kid {} not in {jwks}",
        header["kid"]
    );

    // Several system/ scopes at once, v1 and v2.
    let (claims, _) = kc
        .access_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ferrum-dev"),
            ("client_secret", "ferrum-dev-secret"),
            (
                "scope",
                "system/Patient.cruds system/Invoice.read system/*.*",
            ),
        ])
        .await;
    let mut granted = scopes(&claims);
    granted.sort();
    assert_eq!(
        granted,
        ["system/*.*", "system/Invoice.read", "system/Patient.cruds"]
    );

    // A wrong secret is no client.
    let (status, body) = kc
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ferrum-dev"),
            ("client_secret", "wrong"),
            ("scope", "system/*.rs"),
        ])
        .await;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("unauthorized_client")),
        "{body}"
    );
}

#[tokio::test]
async fn private_key_jwt_rs384_gives_a_backend_service_token() {
    let Some(kc) = keycloak().await else { return };
    let t = now();
    let assertion = backend_assertion(&kc, Algorithm::RS384, &json!({"iat": t, "exp": t + 240}));
    assert_eq!(jwt_header(&assertion)["typ"], "JWT");
    let (status, body) =
        backend_grant(&kc, &assertion, "system/Patient.rs system/Invoice.rs").await;
    assert_eq!(status, 200, "{body}");
    let claims = claims(body["access_token"].as_str().unwrap());
    kc.assert_common_claims(&claims, "ferrum-backend");
    let mut granted = scopes(&claims);
    granted.sort();
    assert_eq!(granted, ["system/Invoice.rs", "system/Patient.rs"]);
    assert!(body["expires_in"].as_i64().unwrap() <= 300);

    // The same assertion again (same jti): a replay.
    let (status, body) = backend_grant(&kc, &assertion, "system/Patient.rs").await;
    assert!(
        matches!(status, 400 | 401) && body["error"] == "invalid_client",
        "replayed assertion: {status} {body}"
    );
}

#[tokio::test]
async fn backend_assertions_follow_the_smart_rules() {
    let Some(kc) = keycloak().await else { return };
    let t = now();

    // Without iat (as some SMART clients send them), up to 5 minutes ahead is fine...
    let assertion = backend_assertion(&kc, Algorithm::RS384, &json!({"exp": t + 290}));
    let (status, body) = backend_grant(&kc, &assertion, "system/*.rs").await;
    assert_eq!(status, 200, "assertion without iat, exp in 290 s: {body}");
    // ...but not more.
    let assertion = backend_assertion(&kc, Algorithm::RS384, &json!({"exp": t + 600}));
    let (status, body) = backend_grant(&kc, &assertion, "system/*.rs").await;
    assert_eq!(
        body["error"], "invalid_client",
        "exp in 600 s: {status} {body}"
    );

    // The client is registered for RS384 only.
    let assertion = backend_assertion(&kc, Algorithm::RS256, &json!({"iat": t, "exp": t + 240}));
    let (status, body) = backend_grant(&kc, &assertion, "system/*.rs").await;
    assert_eq!(
        body["error"], "invalid_client",
        "RS256 assertion: {status} {body}"
    );

    // Audience must be the token endpoint.
    let assertion = backend_assertion(
        &kc,
        Algorithm::RS384,
        &json!({"iat": t, "exp": t + 240, "aud": fhir_base()}),
    );
    let (status, body) = backend_grant(&kc, &assertion, "system/*.rs").await;
    assert_eq!(
        body["error"], "invalid_client",
        "wrong aud: {status} {body}"
    );

    // Backend services get system/ scopes only.
    let assertion = backend_assertion(&kc, Algorithm::RS384, &json!({"iat": t, "exp": t + 240}));
    let (status, body) = backend_grant(&kc, &assertion, "patient/Patient.rs").await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_scope")),
        "{body}"
    );
}

#[tokio::test]
async fn password_grant_gives_patient_a_her_patient_context() {
    let Some(kc) = keycloak().await else { return };
    let (claims, body) = kc
        .password_grant(
            "patient-a",
            "openid fhirUser launch/patient patient/Patient.rs patient/Invoice.read",
        )
        .await;
    kc.assert_common_claims(&claims, "ferrum-dev-password");
    assert_eq!(claims["patient"], "demo-patient-a", "{claims}");
    assert_eq!(claims["fhirUser"], "Patient/demo-patient-a", "{claims}");
    let granted = scopes(&claims);
    for scope in [
        "openid",
        "fhirUser",
        "launch/patient",
        "patient/Patient.rs",
        "patient/Invoice.read",
    ] {
        assert!(
            granted.iter().any(|s| s == scope),
            "{scope} not in {granted:?}"
        );
    }
    // The id token names the user too (SMART: fhirUser in the id token).
    let id_token = claims_of(&body, "id_token");
    assert_eq!(id_token["fhirUser"], "Patient/demo-patient-a");
    assert_eq!(id_token["sub"], claims["sub"]);

    // Without launch/patient there is no patient context.
    let (claims, _) = kc.password_grant("patient-a", "patient/Patient.rs").await;
    assert!(claims.get("patient").is_none(), "{claims}");
    assert_eq!(scopes(&claims), ["patient/Patient.rs"]);

    // A patient is not granted user/ scopes (the realm role clinician is): Keycloak
    // leaves them out of the token rather than refusing the request.
    let (claims, _) = kc
        .password_grant(
            "patient-a",
            "launch/patient patient/*.rs user/*.rs user/Patient.cruds",
        )
        .await;
    let mut granted = scopes(&claims);
    granted.sort();
    assert_eq!(granted, ["launch/patient", "patient/*.rs"], "{claims}");

    // Patient B gets her own context.
    let (claims, _) = kc
        .password_grant("patient-b", "launch/patient patient/*.cruds")
        .await;
    assert_eq!(claims["patient"], "demo-patient-b");
}

fn claims_of(body: &Value, token: &str) -> Value {
    claims(
        body[token]
            .as_str()
            .unwrap_or_else(|| panic!("no {token} in {body}")),
    )
}

#[tokio::test]
async fn password_grant_gives_the_clinician_user_scopes() {
    let Some(kc) = keycloak().await else { return };
    let (claims, body) = kc
        .password_grant(
            "clinician",
            "openid fhirUser user/*.cruds user/Patient.rs user/Invoice.write launch/patient patient/Patient.rs",
        )
        .await;
    kc.assert_common_claims(&claims, "ferrum-dev-password");
    assert_eq!(claims["fhirUser"], "Practitioner/demo-clinician");
    assert_eq!(
        claims_of(&body, "id_token")["fhirUser"],
        "Practitioner/demo-clinician"
    );
    // patient/ scopes and launch/patient belong to the role patient: left out.
    assert!(claims.get("patient").is_none(), "{claims}");
    let mut granted = scopes(&claims);
    granted.sort();
    assert_eq!(
        granted,
        [
            "fhirUser",
            "openid",
            "user/*.cruds",
            "user/Invoice.write",
            "user/Patient.rs"
        ]
    );
}

#[tokio::test]
async fn authorization_code_flow_with_pkce_for_patient_b() {
    let Some(kc) = keycloak().await else { return };
    let browser = browser();
    let (verifier, challenge) = pkce();
    let state = uuid::Uuid::new_v4().to_string();
    let scope = "openid fhirUser launch/patient patient/*.rs patient/Invoice.cruds offline_access";
    let page = authorize(
        &kc,
        &browser,
        scope,
        &state,
        &[
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(page.status().as_u16(), 200, "the login page");
    let action = login_form_action(&page.text().await.unwrap());
    let login = browser
        .post(&action)
        .form(&[
            ("username", "patient-b"),
            ("password", "patient-b"),
            ("credentialId", ""),
        ])
        .send()
        .await
        .unwrap();
    let params = redirect_params(&login);
    assert_eq!(param(&params, "state"), Some(state.as_str()));
    assert_eq!(param(&params, "iss"), Some(kc.issuer.as_str()));
    let code = param(&params, "code").unwrap_or_else(|| panic!("no code: {params:?}"));

    // The code without the right verifier is worth nothing (and spent: codes are
    // single-use)...
    let kc = &kc;
    let exchange = |code: String, verifier: String| async move {
        kc.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", "ferrum-smart-app"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
        ])
        .await
    };
    let (status, body) = exchange(code.to_owned(), format!("{verifier}-not")).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_grant")),
        "{body}"
    );
    // ...so ask again; Keycloak's session (its cookie) skips the login form this time.
    let again = authorize(
        kc,
        &browser,
        scope,
        &state,
        &[
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let code = param(&redirect_params(&again), "code").unwrap().to_owned();
    let (status, body) = exchange(code, verifier).await;
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(&body, "access_token");
    kc.assert_common_claims(&claims, "ferrum-smart-app");
    assert_eq!(claims["patient"], "demo-patient-b", "{claims}");
    assert_eq!(claims["fhirUser"], "Patient/demo-patient-b");
    let granted = scopes(&claims);
    for scope in scope.split(' ') {
        assert!(
            granted.iter().any(|s| s == scope),
            "{scope} not in {granted:?}"
        );
    }
    assert!(body["refresh_token"].is_string(), "offline_access: {body}");
    assert_eq!(
        claims_of(&body, "id_token")["fhirUser"],
        "Patient/demo-patient-b"
    );
}

/// A browser: a cookie store (Keycloak's login session; its cookies are `Secure`,
/// which cookie stores accept from http://localhost) and no automatic redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The authorization code flow with PKCE for any client of the realm: the token response.
async fn browser_login(
    kc: &Keycloak,
    client_id: &str,
    redirect_uri: &str,
    user: &str,
    scope: &str,
) -> Value {
    let browser = browser();
    let (verifier, challenge) = pkce();
    let page = browser
        .get(&kc.authorization_endpoint)
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("state", "state"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200, "the login page");
    let action = login_form_action(&page.text().await.unwrap());
    let login = browser
        .post(&action)
        .form(&[("username", user), ("password", user), ("credentialId", "")])
        .send()
        .await
        .unwrap();
    let params = redirect_params_to(&login, redirect_uri);
    let code = param(&params, "code").unwrap_or_else(|| panic!("no code: {params:?}"));
    let (status, body) = kc
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The server may also ask Keycloak about a token (RFC 7662) as the client ferrum-server:
/// the answer has the claims of the token.
#[tokio::test]
async fn the_server_client_may_introspect_tokens() {
    let Some(kc) = keycloak().await else { return };
    let (_, body) = kc
        .password_grant("patient-a", "openid launch/patient patient/*.rs")
        .await;
    let token = body["access_token"].as_str().unwrap();
    let introspect = |client: &'static str, secret: &'static str| {
        let kc = &kc;
        async move {
            let resp = kc
                .http
                .post(format!(
                    "{}/protocol/openid-connect/token/introspect",
                    kc.issuer
                ))
                .basic_auth(client, Some(secret))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, answer) = introspect("ferrum-server", "ferrum-server-secret").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["patient"], "demo-patient-a");
    assert_eq!(answer["iss"], kc.issuer.as_str());
    assert!(audience(&answer).contains(&fhir_base()), "{answer}");
    assert!(
        scopes(&answer).iter().any(|s| s == "patient/*.rs"),
        "{answer}"
    );
    // Any other client is not in the token's audience: Keycloak says inactive.
    let (_, answer) = introspect("ferrum-dev", "ferrum-dev-secret").await;
    assert_eq!(answer["active"], false, "{answer}");
    // A wrong secret is no client.
    let (status, answer) = introspect("ferrum-server", "wrong").await;
    assert_eq!(
        (status, &answer["error"]),
        (401, &json!("invalid_client")),
        "{answer}"
    );
    // ferrum-server gets no tokens of its own.
    let (status, body) = kc
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ferrum-server"),
            ("client_secret", "ferrum-server-secret"),
        ])
        .await;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("unauthorized_client")),
        "{body}"
    );
}

/// The patient link is for administrators to set: a patient who could edit it in
/// Keycloak's account console could read anyone's records. (This also checks that
/// Keycloak's own clients kept their client scopes: the console's token needs `sub`
/// and the account roles.)
#[tokio::test]
async fn a_patient_cannot_change_her_patient_link() {
    let Some(kc) = keycloak().await else { return };
    let account = format!("{}/account/", kc.issuer);
    let body = browser_login(&kc, "account-console", &account, "patient-a", "openid").await;
    let token = body["access_token"].as_str().unwrap();
    let claims = claims(token);
    assert!(claims["sub"].is_string(), "{claims}");
    assert!(
        claims["resource_access"]["account"]["roles"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == "manage-account")),
        "{claims}"
    );
    let me: Value = kc
        .http
        .get(&account)
        .bearer_auth(token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["attributes"]["patient_id"],
        json!(["demo-patient-a"]),
        "{me}"
    );
    let mut changed = me.clone();
    changed["attributes"]["patient_id"] = json!(["demo-patient-b"]);
    changed["attributes"]["fhir_user"] = json!(["Patient/demo-patient-b"]);
    let resp = kc
        .http
        .post(&account)
        .bearer_auth(token)
        .json(&changed)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("error-user-attribute-read-only"), "{text}");
    let (claims, _) = kc.password_grant("patient-a", "launch/patient").await;
    assert_eq!(claims["patient"], "demo-patient-a");
}

#[tokio::test]
async fn the_smart_app_requires_pkce_s256() {
    let Some(kc) = keycloak().await else { return };
    let http = &kc.http;
    let (_, challenge) = pkce();
    let state = uuid::Uuid::new_v4().to_string();
    for (pkce, what) in [
        (
            vec![
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "plain"),
            ],
            "plain",
        ),
        (vec![("code_challenge", challenge.as_str())], "no method"),
        (vec![], "no PKCE"),
    ] {
        let resp = authorize(&kc, http, "openid patient/Patient.rs", &state, &pkce).await;
        let params = redirect_params(&resp);
        assert_eq!(
            param(&params, "error"),
            Some("invalid_request"),
            "{what}: {params:?}"
        );
        assert!(param(&params, "code").is_none());
    }
}

#[tokio::test]
async fn scopes_a_client_was_not_given_are_invalid_scope() {
    let Some(kc) = keycloak().await else { return };
    // system/ scopes are for the backend clients only...
    let (status, body) = kc
        .token(&[
            ("grant_type", "password"),
            ("client_id", "ferrum-dev-password"),
            ("username", "clinician"),
            ("password", "clinician"),
            ("scope", "openid system/*.rs"),
        ])
        .await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_scope")),
        "{body}"
    );
    let state = uuid::Uuid::new_v4().to_string();
    let (_, challenge) = pkce();
    let resp = authorize(
        &kc,
        &kc.http,
        "openid system/Patient.rs",
        &state,
        &[
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(
        param(&redirect_params(&resp), "error"),
        Some("invalid_scope")
    );
    // ...and the backend clients get nothing else.
    for scope in [
        "patient/Patient.rs",
        "user/*.cruds",
        "launch/patient",
        "no-such-scope",
    ] {
        let (status, body) = kc
            .token(&[
                ("grant_type", "client_credentials"),
                ("client_id", "ferrum-dev"),
                ("client_secret", "ferrum-dev-secret"),
                ("scope", scope),
            ])
            .await;
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("invalid_scope")),
            "{scope}: {body}"
        );
    }
    // Only the development client has the password grant; only backends have
    // client_credentials.
    let (status, body) = kc
        .token(&[
            ("grant_type", "password"),
            ("client_id", "ferrum-smart-app"),
            ("username", "patient-a"),
            ("password", "patient-a"),
        ])
        .await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("unauthorized_client")),
        "{body}"
    );
    let (status, body) = kc
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ferrum-smart-app"),
        ])
        .await;
    assert!(matches!(status, 400 | 401), "{status} {body}");
}

/// The demo resources that scripts/quickstart loads (deploy/demo/NN-Type-id.json) are
/// valid, and every demo user of the realm points at one of them.
#[tokio::test]
async fn the_demo_users_are_linked_to_demo_resources() {
    // (No tokens here: this is about the data.)
    let server = TestServer::start_with_env(&[("FHIR_AUTH", "none")]).await;
    let mut files: Vec<_> = std::fs::read_dir(repo_file("deploy/demo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in &files {
        let stem = file.file_stem().unwrap().to_str().unwrap();
        // NN-Type-id
        let (_, rest) = stem.split_once('-').unwrap();
        let (rtype, id) = rest.split_once('-').unwrap();
        let body = std::fs::read_to_string(file).unwrap();
        let resp = server.put_text(&format!("{rtype}/{id}"), &body).await;
        assert!(
            matches!(resp.status, 200 | 201),
            "{}: {}",
            file.display(),
            resp.describe()
        );
    }
    let realm = realm_file();
    let users = realm["users"].as_array().unwrap();
    assert_eq!(users.len(), 3);
    for user in users {
        let name = user["username"].as_str().unwrap();
        let attributes = &user["attributes"];
        let fhir_user = attributes["fhir_user"][0].as_str().unwrap();
        assert_eq!(
            server.get(fhir_user).await.status,
            200,
            "{name}: {fhir_user}"
        );
        if let Some(patient) = attributes["patient_id"][0].as_str() {
            assert_eq!(fhir_user, format!("Patient/{patient}"));
        }
    }
    let patients: Vec<_> = users
        .iter()
        .filter_map(|u| u["attributes"]["patient_id"][0].as_str())
        .collect();
    assert_eq!(patients, ["demo-patient-a", "demo-patient-b"]);
}
