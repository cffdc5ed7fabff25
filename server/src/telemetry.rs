//! Structured logs. Spans carry the matched route and the request id, never the raw URI
//! (its query string can hold patient data), headers or bodies.

use axum::extract::MatchedPath;
use axum::http::Request;
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
