//! In-process API tests: the router driven without a socket, on a fresh PostgreSQL database
//! per test (`#[sqlx::test]`; DATABASE_URL names the server).

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fhir_server::{AppState, Config, router};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::PgPool;
use store::Store;
use tower::ServiceExt;

fn app(pool: PgPool) -> Router {
    let config = Config::from_lookup(|name| match name {
        "FHIR_BASE_URL" => Some("http://fhir.test/fhir".into()),
        // These tests are about the API; authorisation has its own.
        "FHIR_AUTH" => Some("none".into()),
        "FHIR_MAX_BODY_BYTES" => Some("4096".into()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("test config: {e}"));
    router(
        AppState::new(Store::from_pool(pool), config).unwrap_or_else(|e| panic!("test state: {e}")),
    )
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn request(method: &str, uri: &str, content_type: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder
        .body(Body::from(body.to_owned()))
        .unwrap_or_else(|e| panic!("request: {e}"))
}

fn outcome_code(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert_eq!(value["resourceType"], "OperationOutcome", "{body}");
    value["issue"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn framework_errors_are_operation_outcomes(pool: PgPool) {
    let app = app(pool);
    let (status, _, body) = send(&app, request("PUT", "/fhir/Patient/_history", None, "")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(outcome_code(&body), "not-supported");
    let (status, _, body) = send(&app, request("POST", "/fhir/metadata", None, "")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(outcome_code(&body), "not-supported");
    let (status, _, body) = send(&app, request("GET", "/elsewhere", None, "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    outcome_code(&body);
    let (status, _, body) = send(&app, request("GET", "/fhir/Observation", None, "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(outcome_code(&body), "not-supported");
    let (status, _, body) = send(&app, request("GET", "/fhir/Observation/x", None, "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(outcome_code(&body), "not-supported");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn every_response_carries_a_request_id(pool: PgPool) {
    let app = app(pool);
    let (_, headers, _) = send(&app, request("GET", "/fhir/metadata", None, "")).await;
    assert!(headers.contains_key("x-request-id"));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn oversized_bodies_get_413_before_parsing(pool: PgPool) {
    let app = app(pool);
    let body = format!(
        r#"{{"resourceType":"Patient","name":[{{"text":"{}"}}]}}"#,
        "x".repeat(5000)
    );
    let (status, _, body) = send(
        &app,
        request(
            "POST",
            "/fhir/Patient",
            Some("application/fhir+json"),
            &body,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(outcome_code(&body), "too-long");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn xml_in_and_out(pool: PgPool) {
    let app = app(pool);
    let xml = r#"<Patient xmlns="http://hl7.org/fhir"><id value="x1"/><gender value="female"/></Patient>"#;
    let (status, headers, body) = send(
        &app,
        request("PUT", "/fhir/Patient/x1", Some("application/fhir+xml"), xml),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        headers[header::LOCATION],
        "http://fhir.test/fhir/Patient/x1/_history/1"
    );
    let (status, headers, body) = send(
        &app,
        request("GET", "/fhir/Patient/x1?_format=xml", None, ""),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|t| t.starts_with("application/fhir+xml"))
    );
    assert!(body.contains(r#"<gender value="female"/>"#), "{body}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn reads_put_resource_type_first(pool: PgPool) {
    let app = app(pool);
    let json = r#"{"resourceType":"Patient","id":"a","gender":"male","active":true}"#;
    let (status, _, _) = send(
        &app,
        request(
            "PUT",
            "/fhir/Patient/a",
            Some("application/fhir+json"),
            json,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, _, body) = send(&app, request("GET", "/fhir/Patient/a", None, "")).await;
    assert!(
        body.starts_with(r#"{"resourceType": "Patient", "#),
        "{body}"
    );
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(value["gender"], "male");
    assert_eq!(value["meta"]["versionId"], "1");
}
