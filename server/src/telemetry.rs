//! Structured logs. Spans carry the matched route and the request id, never the raw URI
//! (its query string can hold patient data), headers or bodies.

use std::time::Duration;

use axum::extract::MatchedPath;
use axum::http::Request;
use tower_http::classify::ServerErrorsFailureClass;
use tracing::Span;

pub use logging::init;

/// The span of one request: method, matched route, request id, and the caller (client,
/// subject, patient in context: ids, never patient data).
pub fn request_span<B>(request: &Request<B>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // The caller, recorded once the access token is checked (`auth::authenticate`).
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id,
        client_id = tracing::field::Empty,
        subject = tracing::field::Empty,
        patient = tracing::field::Empty,
    )
}

/// A failed answer, as the trace layer sees it. An answer with a 5xx status is logged where
/// it is made (an internal error with its details, a panic, a timeout, and the busy answers
/// at most once per interval: see `error::ApiError`), so not again here; an answer whose body
/// failed while being sent is logged nowhere else.
pub fn on_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &Span) {
    if let ServerErrorsFailureClass::Error(error) = class {
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        tracing::error!(%error, latency_ms, "an answer failed while being sent");
    }
}
