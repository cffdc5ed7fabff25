//! Support for `smart.rs`: tokens from the real Keycloak realm through real grants, a
//! server that requires them, requests carrying a token, and the forging of *invalid*
//! tokens from real ones (the end-to-end tier never mints a valid token itself).
//!
//! The Keycloak helpers are the minimal pieces of `keycloak.rs` (which shares none): the
//! same skip rule (no `FHIR_AUTH_ISSUER`, no test, except in CI), the same clients and demo
//! users (README, "Keycloak realm and demo users").

#![allow(dead_code, reason = "each test uses a part of the helpers")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferrum_tests::{FHIR_JSON, Resp, TestServer, assert_outcome, entries};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use reqwest::redirect::Policy;
use serde_json::{Value, json};

/// Serialises the password grants of this test binary (see [`Keycloak::user_token`]).
static LOGINS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The realm, from its OpenID discovery document.
pub struct Keycloak {
    /// `FHIR_AUTH_ISSUER`, e.g. `http://localhost:8081/realms/fhir`.
    pub issuer: String,
    /// The realm's own `.well-known/openid-configuration`.
    pub discovery: Value,
    pub token_endpoint: String,
    pub http: reqwest::Client,
}

/// The realm, or `None` (the test skips) when `FHIR_AUTH_ISSUER` is not set.
pub async fn keycloak() -> Option<Keycloak> {
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
    Some(Keycloak {
        token_endpoint: discovery["token_endpoint"].as_str().unwrap().to_owned(),
        discovery,
        issuer,
        http,
    })
}

/// The FHIR base URL that Keycloak puts in `aud` (scripts/lib.sh: FHIR_BASE_URL), fixed
/// when the realm was imported.
pub fn fhir_base() -> String {
    std::env::var("FHIR_BASE_URL").unwrap_or_else(|_| "http://localhost:8080/fhir".to_owned())
}

impl Keycloak {
    /// Keycloak itself (`http://localhost:8081`) and the realm's name.
    pub fn split_issuer(&self) -> (String, String) {
        let (base, realm) = self
            .issuer
            .split_once("/realms/")
            .unwrap_or_else(|| panic!("{} is not a Keycloak realm URL", self.issuer));
        (base.to_owned(), realm.trim_end_matches('/').to_owned())
    }

    /// The issuer URL of another realm of the same Keycloak.
    pub fn realm_issuer(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.split_issuer().0)
    }

    /// A server that requires tokens of this realm, for the audience Keycloak writes in
    /// them, with `extra` settings on top (later entries win).
    pub async fn server(&self, extra: &[(&str, &str)]) -> TestServer {
        let audience = fhir_base();
        let mut env = vec![
            ("FHIR_AUTH", "smart"),
            ("FHIR_AUTH_ISSUER", self.issuer.as_str()),
            ("FHIR_AUTH_AUDIENCE", audience.as_str()),
        ];
        for (name, value) in extra {
            env.retain(|(n, _)| n != name);
            env.push((name, value));
        }
        TestServer::start_with_env(&env).await
    }

    /// POSTs a form to the token endpoint: the status and the JSON answer.
    pub async fn token_response(&self, form: &[(&str, &str)]) -> (u16, Value) {
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

    /// An access token from a token request that must succeed and grant every scope asked
    /// for (Keycloak silently drops a scope the user may not have).
    pub async fn access_token(&self, form: &[(&str, &str)]) -> String {
        let (status, body) = self.token_response(form).await;
        granted_token(form, status, &body)
    }

    /// client_credentials with a secret (ferrum-dev: any system/ scope).
    pub async fn system_token(&self, scope: &str) -> String {
        self.access_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ferrum-dev"),
            ("client_secret", "ferrum-dev-secret"),
            ("scope", scope),
        ])
        .await
    }

    /// The password grant of the development client for a demo user (password = name).
    pub async fn user_token(&self, user: &str, scope: &str) -> String {
        let form = [
            ("grant_type", "password"),
            ("client_id", "ferrum-dev-password"),
            ("username", user),
            ("password", user),
            ("scope", scope),
        ];
        // Keycloak 26 with brute-force detection on refuses a login that runs while another
        // of the same user does ("user_temporarily_disabled", answered as invalid
        // credentials): the tests of this file log in one at a time, and retry briefly for
        // logins of other processes.
        let _one_at_a_time = LOGINS.lock().await;
        let mut attempts = 0;
        loop {
            let (status, body) = self.token_response(&form).await;
            attempts += 1;
            if status == 400 && body["error"] == "invalid_grant" && attempts < 10 {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                continue;
            }
            return granted_token(&form, status, &body);
        }
    }

    /// SMART backend services: client_credentials with a private_key_jwt assertion signed
    /// RS384 with ferrum-backend's development key (deploy/keycloak/dev/).
    pub async fn backend_token(&self, scope: &str) -> String {
        let realm = realm_file();
        let client = realm["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["clientId"] == "ferrum-backend")
            .expect("no client ferrum-backend in the realm file");
        let jwks: Value =
            serde_json::from_str(client["attributes"]["jwks.string"].as_str().unwrap()).unwrap();
        let mut header = Header::new(Algorithm::RS384);
        header.kid = Some(jwks["keys"][0]["kid"].as_str().unwrap().to_owned());
        let t = now();
        let assertion = jsonwebtoken::encode(
            &header,
            &json!({
                "iss": "ferrum-backend",
                "sub": "ferrum-backend",
                "aud": self.token_endpoint,
                "jti": uuid::Uuid::new_v4().to_string(),
                "iat": t,
                "exp": t + 240,
            }),
            &backend_key(),
        )
        .unwrap();
        self.access_token(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ])
        .await
    }

    /// An administrator's token from the realm `master` (scripts/lib.sh:
    /// KEYCLOAK_ADMIN_USER / KEYCLOAK_ADMIN_PASSWORD, admin/admin by default).
    pub async fn admin_token(&self) -> Result<String, String> {
        let user = std::env::var("KEYCLOAK_ADMIN_USER").unwrap_or_else(|_| "admin".to_owned());
        let password =
            std::env::var("KEYCLOAK_ADMIN_PASSWORD").unwrap_or_else(|_| "admin".to_owned());
        let resp = self
            .http
            .post(format!(
                "{}/protocol/openid-connect/token",
                self.realm_issuer("master")
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", user.as_str()),
                ("password", password.as_str()),
            ])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        match body["access_token"].as_str() {
            Some(token) if status == 200 => Ok(token.to_owned()),
            _ => Err(format!("HTTP {status}: {body}")),
        }
    }

    /// The realm's signing keys (its JWKS).
    pub async fn jwks(&self) -> Value {
        self.http
            .get(self.discovery["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A caller of the server: every request carries `Authorization: Bearer <token>`.
pub struct Caller<'a> {
    pub server: &'a TestServer,
    pub token: String,
}

impl<'a> Caller<'a> {
    pub fn new(server: &'a TestServer, token: &str) -> Self {
        Caller {
            server,
            token: token.to_owned(),
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Resp {
        self.send_with(method, path, body, &[]).await
    }

    /// A request with extra headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        // `?query` and `` are the base itself (the server does not serve `[base]/`).
        let path = if path.is_empty() || path.starts_with('?') {
            format!("{}{path}", self.server.base)
        } else {
            path.to_owned()
        };
        let mut req = self.server.request(method, &path).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.header("content-type", FHIR_JSON).body(body.to_string());
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.server.send(req).await
    }

    /// `POST path` with a form body (a search by POST).
    pub async fn post_form(&self, path: &str, form: &str) -> Resp {
        let url = if path.is_empty() {
            self.server.base.clone()
        } else {
            self.server.url(path)
        };
        let req = self
            .server
            .request(Method::POST, &url)
            .bearer_auth(&self.token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        self.server.send(req).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None).await
    }

    /// `GET path`, which must answer a Bundle: its entries' `Type/id`.
    #[track_caller]
    pub fn ids_of(resp: &Resp, what: &str) -> BTreeSet<String> {
        assert_eq!(resp.status, 200, "{what}: {}", resp.describe());
        assert_eq!(
            resp.json["resourceType"],
            "Bundle",
            "{what}: {}",
            resp.describe()
        );
        bundle_ids(&resp.json)
    }

    /// Every `Type/id` of a search or history (one page: the tests' data is small).
    pub async fn ids(&self, path: &str) -> BTreeSet<String> {
        let resp = self.get(path).await;
        assert!(
            ferrum_tests::link(&resp.json, "next").is_none(),
            "{path}: more than one page"
        );
        Self::ids_of(&resp, path)
    }
}

/// The `Type/id` of each entry of a Bundle: its resource's, or (a deletion in a history)
/// the one its `request.url` names.
pub fn bundle_ids(bundle: &Value) -> BTreeSet<String> {
    entries(bundle)
        .iter()
        .filter_map(|e| {
            let r = &e["resource"];
            if let (Some(rtype), Some(id)) = (r["resourceType"].as_str(), r["id"].as_str()) {
                return Some(format!("{rtype}/{id}"));
            }
            let url = e["request"]["url"].as_str()?;
            let mut parts = url.split(['/', '?']);
            Some(format!("{}/{}", parts.next()?, parts.next()?))
        })
        .collect()
}

/// A 401 as SMART and RFC 6750 want it: `WWW-Authenticate: Bearer ... error="invalid_token"`
/// and an OperationOutcome.
#[track_caller]
pub fn assert_401(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 401, "{what}: {}", resp.describe());
    let challenge = resp
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: 401 without WWW-Authenticate: {}", resp.describe()));
    assert!(
        challenge.starts_with("Bearer ") || challenge == "Bearer",
        "{what}: WWW-Authenticate {challenge:?} is not a Bearer challenge"
    );
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{what}: WWW-Authenticate {challenge:?} lacks error=\"invalid_token\""
    );
    assert_outcome(resp, 401);
}

/// A 403 OperationOutcome whose issue is `forbidden`.
#[track_caller]
pub fn assert_403(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 403, "{what}: {}", resp.describe());
    let issue = assert_outcome(resp, 403);
    assert_eq!(issue["code"], "forbidden", "{what}: {}", resp.describe());
}

/// The payload of a JWT, decoded without checking anything.
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The header of a JWT.
pub fn jwt_header(jwt: &str) -> Value {
    let header = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// The granted scopes of a token.
pub fn scopes(claims: &Value) -> Vec<String> {
    claims["scope"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn encode_part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A real token with its payload replaced and its signature kept (so: no longer valid).
pub fn with_payload(jwt: &str, payload: &Value) -> String {
    let mut parts = jwt.split('.');
    let header = parts.next().unwrap();
    let _ = parts.next();
    let signature = parts.next().unwrap();
    format!("{header}.{}.{signature}", encode_part(payload))
}

/// A real token's claims as an unsigned JWT (`alg: none`, empty signature).
pub fn unsigned(jwt: &str) -> String {
    let mut header = jwt_header(jwt);
    header["alg"] = json!("none");
    format!("{}.{}.", encode_part(&header), encode_part(&claims(jwt)))
}

/// A real token's claims signed HS256 with `secret`, under the real key id.
pub fn hmac_signed(jwt: &str, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = jwt_header(jwt)["kid"].as_str().map(str::to_owned);
    jsonwebtoken::encode(&header, &claims(jwt), &EncodingKey::from_secret(secret)).unwrap()
}

/// A real token's claims signed RS256 with an RSA key that is not the realm's (the backend
/// client's development key), under key id `kid`.
pub fn foreign_rsa_signed(jwt: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims(jwt), &backend_key()).unwrap()
}

/// The header and payload of `jwt` with the signature of `other`.
pub fn with_signature_of(jwt: &str, other: &str) -> String {
    let (signed, _) = jwt.rsplit_once('.').unwrap();
    let (_, signature) = other.rsplit_once('.').unwrap();
    format!("{signed}.{signature}")
}

fn backend_key() -> EncodingKey {
    let pem = std::fs::read(repo_file("deploy/keycloak/dev/ferrum-backend.key")).unwrap();
    EncodingKey::from_rsa_pem(&pem).unwrap()
}

pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// deploy/keycloak/fhir-realm.json.
pub fn realm_file() -> Value {
    let text = std::fs::read_to_string(repo_file("deploy/keycloak/fhir-realm.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The demo resources of deploy/demo/ (`NN-Type-id.json`), in file order.
pub fn demo_resources() -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(repo_file("deploy/demo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            serde_json::from_str(&text).unwrap()
        })
        .collect()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The access token of a token response that must have succeeded and granted every scope
/// asked for (Keycloak silently drops a scope the user may not have).
fn granted_token(form: &[(&str, &str)], status: u16, body: &Value) -> String {
    assert_eq!(status, 200, "token request {form:?}: {body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let asked = form
        .iter()
        .find(|(name, _)| *name == "scope")
        .map(|(_, scope)| *scope)
        .unwrap_or("");
    let granted = scopes(&claims(&token));
    for scope in asked.split_whitespace() {
        assert!(
            granted.iter().any(|s| s == scope),
            "{scope} asked for but not granted: {granted:?}"
        );
    }
    token
}
