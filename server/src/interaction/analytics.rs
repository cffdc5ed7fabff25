//! `$analytics`: the analytics reports (`docs/analytics.md`), read from the fact tables the
//! analytics worker keeps, in three forms:
//!
//! - `GET [base]/$analytics`: the system-level operation, a `collection` Bundle of
//!   `summary` MeasureReports (http://hl7.org/fhir/R4/measurereport.html), JSON or XML;
//! - `GET [base]/$analytics.json`: the same reports as plain JSON (`analytics_worker::Reports`);
//! - `GET [base]/$analytics.html` and `$analytics.js`: the dashboard, a static page whose
//!   script fetches `$analytics.json` and draws the charts as SVG.
//!
//! Parameters (the JSON and the operation): `asOf` (`YYYY-MM-DD`, the date ages are
//! computed at and the MeasureReports' period; default today, UTC) and `top` (rows of
//! each ranking, 1 to [`MAX_TOP`], default 10). Other parameters are ignored.
//!
//! Access: the reports are population data. The SMART guard requires read access to
//! [`SCOPE_RESOURCE_TYPE`] in a `system/` or `user/` scope for the operation and the JSON;
//! `patient/` scopes never reach them. The page and its script hold no data.

use analytics_worker::measure_report;
use analytics_worker::reports::{self, ReportOptions, Reports};
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use smart::Interaction;
use store::StoreError;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::{Negotiated, QueryParams, fhir_body};
use crate::state::AppState;

/// The resource type whose read access the analytics routes require: a token needs
/// `system/MeasureReport.read` or `user/MeasureReport.read` (SMART v1), `.rs` (v2), or a
/// wildcard covering them.
pub const SCOPE_RESOURCE_TYPE: &str = "MeasureReport";
/// The most rows a ranking may be asked for.
pub const MAX_TOP: i64 = 1000;

const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../../assets/dashboard.js");

/// The page may run its own script, fetch from this server, and nothing else.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// `GET [base]/$analytics`: the reports as a Bundle of MeasureReports.
pub async fn measure_reports(
    State(state): State<AppState>,
    principal: Principal,
    Negotiated(format): Negotiated,
    params: QueryParams,
) -> Result<Response, ApiError> {
    require_reports(&principal)?;
    let reports = read(&state, &params).await?;
    let bundle = measure_report::bundle(&reports, Utc::now());
    let mut response = fhir_body(StatusCode::OK, format, bundle.to_string())?;
    no_store(&mut response);
    Ok(response)
}

/// `GET [base]/$analytics.json`: the reports as JSON.
pub async fn json(
    State(state): State<AppState>,
    principal: Principal,
    params: QueryParams,
) -> Result<Response, ApiError> {
    require_reports(&principal)?;
    let reports = read(&state, &params).await?;
    let body = serde_json::to_string(&reports).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = with_type(body, "application/json");
    no_store(&mut response);
    Ok(response)
}

/// `GET [base]/$analytics.html`: the dashboard page.
pub async fn dashboard() -> Response {
    let mut response = with_type(DASHBOARD_HTML.to_owned(), "text/html; charset=utf-8");
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DASHBOARD_CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET [base]/$analytics.js`: the dashboard's script.
pub async fn dashboard_script() -> Response {
    with_type(DASHBOARD_JS.to_owned(), "text/javascript; charset=utf-8")
}

/// Reports aggregate every patient: only read access to [`SCOPE_RESOURCE_TYPE`] at system or
/// user level grants them.
fn require_reports(principal: &Principal) -> Result<(), ApiError> {
    let grant = principal
        .permissions
        .grants_unstored(SCOPE_RESOURCE_TYPE, Interaction::Read);
    if grant.is_unrestricted() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the reports need read access to {SCOPE_RESOURCE_TYPE} (a system/ or user/ scope)"
        )))
    }
}

/// The parameters, then the reports in one snapshot.
async fn read(state: &AppState, params: &QueryParams) -> Result<Reports, ApiError> {
    let options = options(params)?;
    reports::reports(&state.analytics, options)
        .await
        .map_err(|e| ApiError::from(StoreError::Database(e)))
}

/// `asOf` and `top`, checked.
fn options(params: &QueryParams) -> Result<ReportOptions, ApiError> {
    let mut options = ReportOptions::today();
    if let Some(as_of) = params.get("asOf") {
        options.as_of = NaiveDate::parse_from_str(as_of, "%Y-%m-%d")
            .ok()
            .filter(|_| as_of.len() == 10)
            .ok_or_else(|| ApiError::bad_request("asOf must be a date such as 2026-01-31"))?;
    }
    if let Some(top) = params.get("top") {
        options.top = top
            .parse::<i64>()
            .ok()
            .filter(|top| (1..=MAX_TOP).contains(top))
            .ok_or_else(|| {
                ApiError::bad_request(format!("top must be a whole number from 1 to {MAX_TOP}"))
            })?;
    }
    Ok(options)
}

fn with_type(body: String, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Reports are patient-derived: no cache keeps them.
fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> QueryParams {
        QueryParams(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn options_are_checked() {
        let given = options(&params(&[("asOf", "2026-01-31"), ("top", "3"), ("x", "y")]));
        assert!(given.is_ok_and(|o| o.top == 3 && o.as_of.to_string() == "2026-01-31"));
        for bad in [
            ("asOf", "2026-02-30"),
            ("asOf", "2026-1-3"),
            ("asOf", "tomorrow"),
            ("top", "0"),
            ("top", "1001"),
            ("top", "ten"),
        ] {
            assert!(options(&params(&[bad])).is_err(), "{bad:?}");
        }
        assert!(options(&params(&[])).is_ok_and(|o| o.top == reports::DEFAULT_TOP));
    }
}
