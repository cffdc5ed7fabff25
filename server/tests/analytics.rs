//! The analytics reports over HTTP, driven in-process on a fresh database per test: the
//! JSON is what `analytics_worker::reports` computes, the `$analytics` operation answers a
//! Bundle of valid summary MeasureReports carrying the same numbers (JSON or XML), the
//! dashboard page and script are served with their own content types, bad parameters are
//! 400 OperationOutcomes, and the CapabilityStatement declares the operation.

use analytics_worker::reports::ReportOptions;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::NaiveDate;
use fhir_core::validation;
use fhir_server::{AppState, Config, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use store::Store;
use tower::ServiceExt;

fn app(pool: PgPool) -> Router {
    let config = Config::from_lookup(|name| match name {
        "FHIR_BASE_URL" => Some("http://fhir.test/fhir".into()),
        // These tests are about the API; authorisation has its own.
        "FHIR_AUTH" => Some("none".into()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("test config: {e}"));
    router(
        AppState::new(Store::from_pool(pool), config).unwrap_or_else(|e| panic!("test state: {e}")),
    )
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, String) {
    let mut builder = Request::builder().method(method).uri(uri);
    if body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/fhir+json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let request = builder
        .body(body)
        .unwrap_or_else(|e| panic!("request: {e}"));
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

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Three patients, two accounts and three invoices, written through the API; then the
/// facts rebuilt from them (what the worker keeps up to date from the change events).
async fn load(app: &Router, pool: &PgPool) {
    let writes = [
        (
            "Patient/p1",
            json!({"resourceType": "Patient", "id": "p1", "gender": "female",
            "birthDate": "1980-05-01", "address": [{"use": "home", "state": "BY", "country": "DE"}]}),
        ),
        (
            "Patient/p2",
            json!({"resourceType": "Patient", "id": "p2", "gender": "female",
            "birthDate": "2015-01-01", "deceasedBoolean": true}),
        ),
        (
            "Patient/p3",
            json!({"resourceType": "Patient", "id": "p3", "gender": "male", "active": false}),
        ),
        (
            "Account/a1",
            json!({"resourceType": "Account", "id": "a1", "status": "active",
            "subject": [{"reference": "Patient/p1"}]}),
        ),
        (
            "Account/a2",
            json!({"resourceType": "Account", "id": "a2", "status": "inactive"}),
        ),
        (
            "Invoice/i1",
            json!({"resourceType": "Invoice", "id": "i1", "status": "issued",
            "date": "2025-11-03", "subject": {"reference": "Patient/p1"},
            "account": {"reference": "Account/a1"},
            "totalNet": {"value": 100.10, "currency": "EUR"},
            "totalGross": {"value": 119.12, "currency": "EUR"}}),
        ),
        (
            "Invoice/i2",
            json!({"resourceType": "Invoice", "id": "i2", "status": "balanced",
            "date": "2025-11-20", "subject": {"reference": "Patient/p1"},
            "totalNet": {"value": 50.00, "currency": "EUR"},
            "totalGross": {"value": 59.50, "currency": "EUR"}}),
        ),
        (
            "Invoice/i3",
            json!({"resourceType": "Invoice", "id": "i3", "status": "draft"}),
        ),
    ];
    for (path, body) in writes {
        let (status, _, text) = send(app, "PUT", &format!("/fhir/{path}"), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {text}");
    }
    analytics_worker::rebuild(pool)
        .await
        .unwrap_or_else(|e| panic!("rebuild: {e}"));
}

fn options() -> ReportOptions {
    ReportOptions {
        as_of: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
        top: 5,
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_json_is_the_reports(pool: PgPool) {
    let app = app(pool.clone());
    load(&app, &pool).await;
    let (status, headers, text) = send(
        &app,
        "GET",
        "/fhir/$analytics.json?asOf=2026-01-01&top=5",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(content_type(&headers), "application/json");
    assert_eq!(
        headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let expected = analytics_worker::reports(&pool, options())
        .await
        .unwrap_or_else(|e| panic!("reports: {e}"));
    assert_eq!(
        json_of(&text),
        serde_json::to_value(&expected).unwrap_or_default()
    );
    let served = json_of(&text);
    assert_eq!(served["asOf"], "2026-01-01");
    assert_eq!(served["patients"]["total"], 3);
    assert_eq!(served["patients"]["deceased"], 1);
    assert_eq!(served["accounts"]["total"], 2);
    assert_eq!(served["invoices"]["total"], 3);
    // Exact decimals, as PostgreSQL summed them.
    assert!(text.contains(r#""billed":178.62"#), "{text}");
}

/// The stratum of stratifier `code` in group `group` of `report` whose value text is `key`.
fn stratum<'a>(report: &'a Value, group: &str, code: &str, key: &str) -> &'a Value {
    let groups = report["group"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let group = groups
        .iter()
        .find(|g| g["code"]["coding"][0]["code"] == group)
        .unwrap_or_else(|| panic!("no group {group}"));
    let stratifiers = group["stratifier"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let stratifier = stratifiers
        .iter()
        .find(|s| s["code"][0]["coding"][0]["code"] == code)
        .unwrap_or_else(|| panic!("no stratifier {code}"));
    let strata = stratifier["stratum"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    strata
        .iter()
        .find(|s| s["value"]["text"] == key || s["component"][0]["value"]["text"] == key)
        .unwrap_or_else(|| panic!("no stratum {key} in {code}"))
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_operation_answers_valid_measure_reports(pool: PgPool) {
    let app = app(pool.clone());
    load(&app, &pool).await;
    let (status, headers, text) = send(&app, "GET", "/fhir/$analytics?asOf=2026-01-01", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        content_type(&headers),
        "application/fhir+json; charset=utf-8"
    );
    let bundle = json_of(&text);
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    validation::parse_strict(&text, "Bundle").unwrap_or_else(|issue| panic!("{issue:?}"));
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 3);
    let supported = validation::supported_resource_types();
    for entry in &entries {
        let report = &entry["resource"];
        assert_eq!(report["resourceType"], "MeasureReport");
        assert_eq!(report["type"], "summary");
        assert_eq!(report["period"]["end"], "2026-01-01");
        validation::parse_strict(&report.to_string(), "MeasureReport")
            .unwrap_or_else(|issue| panic!("{issue:?}"));
        if supported.contains(&"MeasureReport") {
            assert_eq!(validation::validate(report), Vec::new());
        }
    }
    let (patients, accounts, invoices) = (
        &entries[0]["resource"],
        &entries[1]["resource"],
        &entries[2]["resource"],
    );
    assert_eq!(patients["measure"], "urn:ferrum:Measure:patients");
    assert_eq!(patients["group"][0]["population"][0]["count"], 3);
    assert_eq!(
        stratum(patients, "patients", "gender", "female")["population"][0]["count"],
        2
    );
    assert_eq!(
        stratum(patients, "patients", "age-band", "0-17")["population"][0]["count"],
        1
    );
    assert_eq!(
        stratum(patients, "patients", "deceased", "deceased")["population"][0]["count"],
        1
    );
    assert_eq!(
        stratum(accounts, "accounts", "status", "inactive")["population"][0]["count"],
        1
    );
    let issued = stratum(invoices, "invoice-total-gross", "status", "issued");
    assert_eq!(issued["measureScore"]["code"], "EUR");
    assert!(
        issued["measureScore"].to_string().contains("119.12"),
        "{issued}"
    );

    // XML like any FHIR response.
    let (status, headers, xml) = send(&app, "GET", "/fhir/$analytics?_format=xml", None).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert_eq!(
        content_type(&headers),
        "application/fhir+xml; charset=utf-8"
    );
    assert!(xml.contains("<MeasureReport"), "{xml}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_empty_database_has_empty_reports(pool: PgPool) {
    let app = app(pool);
    let (status, _, text) = send(&app, "GET", "/fhir/$analytics.json", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(json_of(&text)["patients"]["total"], 0);
    let (status, _, text) = send(&app, "GET", "/fhir/$analytics", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    validation::parse_strict(&text, "Bundle").unwrap_or_else(|issue| panic!("{issue:?}"));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn bad_parameters_and_methods_are_client_errors(pool: PgPool) {
    let app = app(pool);
    for uri in [
        "/fhir/$analytics.json?asOf=2026-02-30",
        "/fhir/$analytics.json?asOf=yesterday",
        "/fhir/$analytics?top=0",
        "/fhir/$analytics?top=100000",
    ] {
        let (status, headers, text) = send(&app, "GET", uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {text}");
        assert_eq!(
            content_type(&headers),
            "application/fhir+json; charset=utf-8"
        );
        assert_eq!(json_of(&text)["resourceType"], "OperationOutcome", "{uri}");
    }
    let (status, _, _) = send(&app, "GET", "/fhir/$analytics?_format=text/csv", None).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    for uri in [
        "/fhir/$analytics",
        "/fhir/$analytics.json",
        "/fhir/$analytics.html",
    ] {
        let (status, _, text) = send(&app, "POST", uri, Some(json!({}))).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{uri}: {text}");
        assert_eq!(json_of(&text)["resourceType"], "OperationOutcome");
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_dashboard_is_a_page_and_a_script(pool: PgPool) {
    let app = app(pool);
    let (status, headers, html) = send(&app, "GET", "/fhir/$analytics.html", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type(&headers), "text/html; charset=utf-8");
    let policy = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(html.contains(r#"<script src="$analytics.js""#), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external resource"
    );

    let (status, headers, script) = send(&app, "GET", "/fhir/$analytics.js", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type(&headers), "text/javascript; charset=utf-8");
    assert!(
        script.contains("'$analytics.json'"),
        "the script reads the JSON reports"
    );
    let external = script
        .match_indices("http")
        .filter(|(at, _)| !script[*at..].starts_with("http://www.w3.org/2000/svg"))
        .count();
    assert_eq!(external, 0, "no external resource but the SVG namespace");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_capability_statement_declares_the_operation(pool: PgPool) {
    let app = app(pool);
    let (status, _, text) = send(&app, "GET", "/fhir/metadata", None).await;
    assert_eq!(status, StatusCode::OK);
    let statement = json_of(&text);
    let operations = statement["rest"][0]["operation"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        operations.contains(
            &json!({"name": "analytics", "definition": "urn:ferrum:OperationDefinition:analytics"})
        ),
        "{operations:?}"
    );
}
