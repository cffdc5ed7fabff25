//! Authorisation, in process: the router with a token validator that trusts one local test key
//! (`fixtures/token-signing-key.pem`, ES256), tokens minted here, a fresh PostgreSQL database
//! per test (`#[sqlx::test]`). The end-to-end tier (tests/tests/smart.rs) uses Keycloak's
//! real tokens instead.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fhir_server::auth::Auth;
use fhir_server::auth::token::TokenValidator;
use fhir_server::{AppState, Config, router};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::PgPool;
use store::Store;
use tower::ServiceExt;

const ISSUER: &str = "https://issuer.test/realms/fhir";
const BASE: &str = "http://fhir.test/fhir";
const KID: &str = "test-key";
const PRIVATE_KEY: &[u8] = include_bytes!("fixtures/token-signing-key.pem");
const PUBLIC_KEY: &[u8] = include_bytes!("fixtures/token-signing-key.pub.pem");

fn app(pool: PgPool) -> Router {
    let config = Config::from_lookup(|name| match name {
        "FHIR_BASE_URL" => Some(BASE.into()),
        "FHIR_AUTH_ISSUER" => Some(ISSUER.into()),
        _ => None,
    })
    .unwrap();
    let state = AppState::new(Store::from_pool(pool), config).unwrap();
    let keys = HashMap::from([(
        KID.to_owned(),
        DecodingKey::from_ec_pem(PUBLIC_KEY).unwrap(),
    )]);
    router(state.with_auth(Auth::Tokens(Arc::new(
        TokenValidator::with_keys(ISSUER, BASE, keys).unwrap(),
    ))))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Valid claims with `scope`, and `patient` when given.
fn claims(scope: &str, patient: Option<&str>) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": [BASE, "account"], "exp": now() + 300, "iat": now(),
        "sub": "user-1", "azp": "test-client", "scope": scope,
    });
    if let Some(patient) = patient {
        claims["patient"] = json!(patient);
    }
    claims
}

fn sign(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KID.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(PRIVATE_KEY).unwrap(),
    )
    .unwrap()
}

fn token(scope: &str, patient: Option<&str>) -> String {
    sign(&claims(scope, patient))
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let mut builder = Request::builder()
        .method(method)
        .uri(if path.starts_with('?') {
            format!("/fhir{path}")
        } else {
            format!("/fhir/{path}")
        });
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            builder = builder.header(header::CONTENT_TYPE, "application/fhir+json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    answer(app, builder.body(body).unwrap()).await
}

/// `request` sent to `app`, and its answer.
async fn answer(app: &Router, request: Request<Body>) -> Answer {
    let response = app
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// The ids of a Bundle's entries of `mode`, as `Type/id`, sorted.
fn ids(bundle: &Value, mode: &str) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == mode || mode.is_empty())
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap(),
                        e["resource"]["id"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn requests_without_a_valid_token_are_401(pool: PgPool) {
    let app = app(pool);
    let good = claims("system/*.rs", None);
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 120);
    let mut early = good.clone();
    early["nbf"] = json!(now() + 600);
    let mut other_issuer = good.clone();
    other_issuer["iss"] = json!("https://elsewhere.test/realms/fhir");
    let mut other_audience = good.clone();
    other_audience["aud"] = json!("http://other.test/fhir");
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let valid = sign(&good);
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let mut richer = good.clone();
    richer["scope"] = json!("system/*.cruds");
    let tampered = format!("{head}.{}.{signature}", b64(&richer));
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let mut unknown_kid = Header::new(Algorithm::ES256);
    unknown_kid.kid = Some("another-key".into());
    let unknown_kid = jsonwebtoken::encode(
        &unknown_kid,
        &good,
        &EncodingKey::from_ec_pem(PRIVATE_KEY).unwrap(),
    )
    .unwrap();
    let cases = [
        ("no token", None),
        ("garbage", Some("not-a-jwt".to_owned())),
        ("expired", Some(sign(&expired))),
        ("not yet valid", Some(sign(&early))),
        ("another issuer", Some(sign(&other_issuer))),
        ("another audience", Some(sign(&other_audience))),
        ("no exp", Some(sign(&no_exp))),
        ("tampered", Some(tampered)),
        ("alg none", Some(alg_none)),
        ("HMAC", Some(hmac)),
        ("unknown kid", Some(unknown_kid)),
    ];
    for (case, token) in cases {
        let answer = call(&app, "GET", "Patient", token.as_deref(), None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{case}");
        let challenge = answer.headers.get(header::WWW_AUTHENTICATE).unwrap();
        assert!(
            challenge
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_token""#),
            "{case}"
        );
        assert_eq!(answer.body["resourceType"], "OperationOutcome", "{case}");
        assert_eq!(answer.body["issue"][0]["code"], "login", "{case}");
    }
    assert_eq!(
        call(&app, "GET", "Patient", Some(&valid), None)
            .await
            .status,
        StatusCode::OK
    );
    // Public: the CapabilityStatement says how to get a token.
    let metadata = call(&app, "GET", "metadata", None, None).await;
    assert_eq!(metadata.status, StatusCode::OK);
    assert_eq!(
        metadata.body["rest"][0]["security"]["service"][0]["coding"][0]["code"],
        "SMART-on-FHIR"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn each_interaction_needs_its_scope(pool: PgPool) {
    let app = app(pool);
    let admin = token("system/*.cruds", None);
    let patient = json!({"resourceType": "Patient", "id": "p1", "gender": "female"});
    assert_eq!(
        call(&app, "PUT", "Patient/p1", Some(&admin), Some(&patient))
            .await
            .status,
        StatusCode::CREATED
    );
    // (request, the letter it needs)
    let requests: [(&str, &str, Option<&Value>, char); 6] = [
        ("POST", "Patient", Some(&patient), 'c'),
        ("GET", "Patient/p1", None, 'r'),
        ("GET", "Patient/p1/_history", None, 'r'),
        ("PUT", "Patient/p1", Some(&patient), 'u'),
        ("GET", "Patient?gender=female", None, 's'),
        ("DELETE", "Patient/p1", None, 'd'),
    ];
    for (method, path, body, letter) in requests {
        let without: String = "cruds".chars().filter(|c| *c != letter).collect();
        for scope in [
            format!("user/Patient.{without}"),
            "user/Account.cruds".to_owned(),
        ] {
            let answer = call(&app, method, path, Some(&token(&scope, None)), body).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{method} {path} with {scope}"
            );
            assert_eq!(answer.body["issue"][0]["code"], "forbidden");
        }
        for scope in [
            format!("user/Patient.{letter}"),
            "system/*.cruds".to_owned(),
        ] {
            let answer = call(&app, method, path, Some(&token(&scope, None)), body).await;
            assert!(
                answer.status.is_success(),
                "{method} {path} with {scope}: {}",
                answer.status
            );
        }
    }
    // SMART v1: .read is rs, .write is cud.
    let read = token("user/Patient.read", None);
    assert_eq!(
        call(&app, "GET", "Patient?gender=female", Some(&read), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "POST", "Patient", Some(&read), Some(&patient))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let write = token("user/Patient.write", None);
    assert_eq!(
        call(&app, "POST", "Patient", Some(&write), Some(&patient))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&app, "GET", "Patient/p1", Some(&write), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

/// Patients a and b, each with an Account and an Invoice; an Organization issuing both.
async fn two_patients(app: &Router) {
    let admin = token("system/*.cruds", None);
    let mut resources =
        vec![json!({"resourceType": "Organization", "id": "org", "name": "Clinic"})];
    for p in ["a", "b"] {
        resources.push(json!({"resourceType": "Patient", "id": p, "name": [{"family": p}]}));
        resources.push(
            json!({"resourceType": "Account", "id": format!("acc-{p}"), "status": "active",
            "subject": [{"reference": format!("Patient/{p}")}]}),
        );
        resources.push(
            json!({"resourceType": "Invoice", "id": format!("inv-{p}"), "status": "issued",
            "subject": {"reference": format!("Patient/{p}")},
            "account": {"reference": format!("Account/acc-{p}")},
            "issuer": {"reference": "Organization/org"}}),
        );
    }
    for resource in resources {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let answer = call(app, "PUT", &path, Some(&admin), Some(&resource)).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{path}");
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_patient_sees_and_writes_only_their_compartment(pool: PgPool) {
    let app = app(pool);
    two_patients(&app).await;
    let a = token("patient/*.cruds launch/patient", Some("a"));
    let get = |path: &'static str| {
        let app = app.clone();
        let a = a.clone();
        async move { call(&app, "GET", path, Some(&a), None).await }
    };
    assert_eq!(get("Patient/a").await.status, StatusCode::OK);
    for path in [
        "Patient/b",
        "Invoice/inv-b",
        "Account/acc-b",
        "Invoice/inv-b/_history/1",
    ] {
        assert_eq!(get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(ids(&get("Invoice").await.body, "match"), ["Invoice/inv-a"]);
    assert_eq!(ids(&get("Patient").await.body, "match"), ["Patient/a"]);
    assert!(ids(&get("Patient?_id=b").await.body, "").is_empty());
    assert_eq!(
        ids(&get("?_type=Invoice,Patient,Account").await.body, "match"),
        ["Account/acc-a", "Invoice/inv-a", "Patient/a"]
    );
    // Organizations hold no patient data: readable, and includes stay in the compartment.
    let orgs = get("Organization?_revinclude=Invoice:issuer").await.body;
    assert_eq!(ids(&orgs, "match"), ["Organization/org"]);
    assert_eq!(ids(&orgs, "include"), ["Invoice/inv-a"]);
    let invoices = get("Invoice?_include=Invoice:subject&_include=Invoice:issuer")
        .await
        .body;
    assert_eq!(ids(&invoices, "include"), ["Organization/org", "Patient/a"]);
    // History: only the compartment's versions.
    assert!(ids(&get("Patient/b/_history").await.body, "").is_empty());
    assert_eq!(
        ids(&get("Invoice/_history").await.body, ""),
        ["Invoice/inv-a"]
    );
    assert_eq!(
        ids(&get("_history").await.body, "").len(),
        4,
        "org, a, acc-a, inv-a"
    );

    // Writes: in the compartment only, before and after.
    let invoice_for = |p: &str| json!({"resourceType": "Invoice", "status": "draft", "subject": {"reference": format!("Patient/{p}")}});
    let create = |p: &'static str| {
        let app = app.clone();
        let a = a.clone();
        let body = invoice_for(p);
        async move {
            call(&app, "POST", "Invoice", Some(&a), Some(&body))
                .await
                .status
        }
    };
    assert_eq!(create("b").await, StatusCode::FORBIDDEN);
    assert_eq!(create("a").await, StatusCode::CREATED);
    let mut moved = invoice_for("a");
    moved["id"] = json!("inv-b");
    assert_eq!(
        call(&app, "PUT", "Invoice/inv-b", Some(&a), Some(&moved))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let mut away = invoice_for("b");
    away["id"] = json!("inv-a");
    assert_eq!(
        call(&app, "PUT", "Invoice/inv-a", Some(&a), Some(&away))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, "DELETE", "Invoice/inv-b", Some(&a), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            "POST",
            "Organization",
            Some(&a),
            Some(&json!({"resourceType": "Organization"}))
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // A conditional delete only sees the compartment: one match, a's.
    let answer = call(&app, "DELETE", "Invoice?status=issued", Some(&a), None).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let admin = token("system/*.rs", None);
    let left = call(&app, "GET", "Invoice?status=issued", Some(&admin), None).await;
    assert_eq!(ids(&left.body, "match"), ["Invoice/inv-b"]);

    // patient/ scopes without a patient in context grant nothing.
    let no_patient = token("patient/*.cruds", None);
    assert_eq!(
        call(&app, "GET", "Patient/a", Some(&no_patient), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn constrained_scopes_add_their_criteria(pool: PgPool) {
    let app = app(pool);
    two_patients(&app).await;
    let admin = token("system/*.cruds", None);
    let draft = json!({"resourceType": "Invoice", "id": "inv-d", "status": "draft"});
    call(&app, "PUT", "Invoice/inv-d", Some(&admin), Some(&draft)).await;
    let issued_only = token("user/Invoice.rs?status=issued", None);
    let found = call(&app, "GET", "Invoice", Some(&issued_only), None).await;
    assert_eq!(
        ids(&found.body, "match"),
        ["Invoice/inv-a", "Invoice/inv-b"]
    );
    // A constraint cannot be checked on one resource in memory: it grants no read.
    let read = call(&app, "GET", "Invoice/inv-a", Some(&issued_only), None).await;
    assert_eq!(read.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn reports_need_system_or_user_access_to_measure_reports(pool: PgPool) {
    let app = app(pool);
    for (scope, status) in [
        ("system/*.rs", StatusCode::OK),
        ("user/MeasureReport.read", StatusCode::OK),
        ("patient/*.cruds launch/patient", StatusCode::FORBIDDEN),
        ("system/Patient.rs", StatusCode::FORBIDDEN),
    ] {
        let answer = call(
            &app,
            "GET",
            "$analytics.json",
            Some(&token(scope, Some("a"))),
            None,
        )
        .await;
        assert_eq!(answer.status, status, "{scope}");
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn chains_and_has_are_searches_of_their_types(pool: PgPool) {
    let app = app(pool);
    two_patients(&app).await;
    // Chaining into Patient searches Patients: it needs their scope.
    let invoices_only = token("user/Invoice.rs", None);
    let chained = call(
        &app,
        "GET",
        "Invoice?subject:Patient.name=b",
        Some(&invoices_only),
        None,
    )
    .await;
    assert_eq!(chained.status, StatusCode::FORBIDDEN);
    let both = token("user/Invoice.rs user/Patient.rs", None);
    let chained = call(
        &app,
        "GET",
        "Invoice?subject:Patient.name=b",
        Some(&both),
        None,
    )
    .await;
    assert_eq!(ids(&chained.body, "match"), ["Invoice/inv-b"]);
    // A patient cannot learn about another patient through a record they share.
    let a = token("patient/*.rs launch/patient", Some("a"));
    for (path, expected) in [
        (
            "Organization?_has:Invoice:issuer:subject=Patient/b",
            Vec::<&str>::new(),
        ),
        (
            "Organization?_has:Invoice:issuer:subject=Patient/a",
            vec!["Organization/org"],
        ),
        ("Invoice?subject:Patient.name=b", vec![]),
    ] {
        let answer = call(&app, "GET", path, Some(&a), None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(ids(&answer.body, "match"), expected, "{path}");
    }
}

/// A request of a browser app on another origin, with `headers` besides `Origin`.
async fn from_browser(app: &Router, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("/fhir/{path}"))
        .header(header::ORIGIN, "https://app.example");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    answer(app, builder.body(Body::empty()).unwrap()).await
}

fn header_text<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A SMART app in a browser on another origin: its preflight for a write with a bearer token
/// is allowed (the `*` wildcard would not cover `Authorization`: the headers asked for are
/// named back), without a token and before any check of one; its requests' answers, refusals
/// included, can be read, with the FHIR headers it needs.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn browser_apps_on_other_origins_may_call_with_their_tokens(pool: PgPool) {
    let app = app(pool);
    let preflight = from_browser(
        &app,
        "OPTIONS",
        "Patient/p1",
        &[
            ("access-control-request-method", "PUT"),
            (
                "access-control-request-headers",
                "authorization,content-type,if-match",
            ),
        ],
    )
    .await;
    assert_eq!(preflight.status, StatusCode::OK);
    assert_eq!(header_text(&preflight, "access-control-allow-origin"), "*");
    assert_eq!(header_text(&preflight, "access-control-allow-methods"), "*");
    assert_eq!(
        header_text(&preflight, "access-control-allow-headers"),
        "authorization,content-type,if-match"
    );
    assert_eq!(header_text(&preflight, "access-control-max-age"), "600");

    let token = token("system/*.cruds", None);
    let body = json!({"resourceType": "Patient", "id": "p1"});
    let written = call(&app, "PUT", "Patient/p1", Some(&token), Some(&body)).await;
    assert_eq!(written.status, StatusCode::CREATED);
    let bearer = format!("Bearer {token}");
    let read = from_browser(&app, "GET", "Patient/p1", &[("authorization", &bearer)]).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["id"], "p1");
    assert_eq!(header_text(&read, "access-control-allow-origin"), "*");
    let exposed = header_text(&read, "access-control-expose-headers");
    for name in [
        "etag",
        "location",
        "content-location",
        "x-progress",
        "www-authenticate",
    ] {
        assert!(
            exposed.split(',').any(|e| e.trim() == name),
            "{name}: {exposed}"
        );
    }
    // The answer is the same for every origin: it varies with `Accept` alone.
    assert_eq!(header_text(&read, "vary"), "accept");

    let refused = from_browser(&app, "GET", "Patient/p1", &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(header_text(&refused, "access-control-allow-origin"), "*");
    assert!(refused.headers.contains_key(header::WWW_AUTHENTICATE));
}
