//! Structured logs. Spans carry the matched route and the request id, never the raw URI
//! (its query string can hold patient data), headers or bodies.

use axum::extract::MatchedPath;
use axum::http::Request;
use std::io::IsTerminal as _;
use tracing::Span;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), text or JSON lines,
/// coloured only on a terminal (a log file or collector gets plain text).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

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
