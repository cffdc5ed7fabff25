//! Ferrum: a FHIR R4 server. `router(state)` is the whole application, so tests can drive
//! it without a socket; `run(config)` connects the store, starts the change event relay and
//! serves.

pub mod auth;
pub mod config;
pub mod error;
pub mod export;
pub mod http;
pub mod interaction;
pub mod relay;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod workers;

use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fhir_core::{Issue, IssueCode};
use store::Store;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::map_response_body::MapResponseBodyLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use config::Config;
pub use state::AppState;

use crate::error::{ApiError, outcome_response};

/// How long one request may take before it is answered 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The application: FHIR routes under the base path, `/health`, and the layers every
/// request passes (outermost first): request id, trace span, OperationOutcome for bare
/// errors, panic → 500, timeout, CORS, load shedding (503 past `FHIR_MAX_REQUESTS_IN_FLIGHT`),
/// body limit, authentication.
///
/// The layers form one stack, added to the routes at once: a request clones the stack
/// once, where a layer added on its own would add a boxed service to clone per request.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let base_path = state.config.base_path();
    let fhir = routes::fhir_routes();
    let app = if base_path.is_empty() {
        fhir
    } else {
        Router::new()
            .nest(&base_path, fhir)
            .fallback(|| async { error::ApiError::NotFound("this URL".into()) })
    };
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(telemetry::request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                .on_failure(telemetry::on_failure),
        )
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(axum::middleware::map_response(outcome_for_bare_errors))
        .layer(MapResponseBodyLayer::new(Body::new))
        .layer(CatchPanicLayer::custom(|_| {
            // Not the panic's message: it may quote the data the handler held.
            tracing::error!("a request's handler panicked");
            outcome_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &[Issue::error(IssueCode::Exception, "internal server error")],
            )
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(cors())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            shed_load,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    app.route("/health", get(|| async { "ok" }))
        .layer(layers)
        .with_state(state)
}

/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Cross-origin access for browser apps (SMART apps among them), which send their access
/// token in `Authorization` and read the FHIR headers of the answers; see docs/rest.md.
///
/// Any origin, any method. The headers a preflight asks for are allowed by naming them back:
/// the wildcard `*` does not cover `Authorization`. The answer to any other request is the
/// same whatever the request's origin, so CORS adds nothing to `Vary` (an OPTIONS answer is
/// not stored by HTTP caches, and a browser keys its preflight cache itself).
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::CONTENT_LOCATION,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("x-progress"),
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(PREFLIGHT_MAX_AGE)
        .vary([])
}

/// Answers 503 at once when `FHIR_MAX_REQUESTS_IN_FLIGHT` requests are being answered:
/// under a load the database cannot keep up with, a request that would wait for a
/// connection (up to 10 s, holding its body) is refused instead, and memory stays bounded.
async fn shed_load(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::Busy.into_response(),
    }
}

/// Errors produced below the handlers (timeouts, framework rejections) come without a
/// body: give them an OperationOutcome like every other error.
async fn outcome_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let has_body_type = response.headers().contains_key(header::CONTENT_TYPE);
    if !(status.is_client_error() || status.is_server_error()) || has_body_type {
        return response;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => IssueCode::TooLong,
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_ACCEPTABLE => IssueCode::NotSupported,
        s if s.is_server_error() => IssueCode::Exception,
        _ => IssueCode::Invalid,
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // The only bare 503: the request outlived REQUEST_TIMEOUT.
        tracing::warn!(timeout_s = REQUEST_TIMEOUT.as_secs(), "request timed out");
    }
    let reason = status.canonical_reason().unwrap_or("error");
    outcome_response(status, &[Issue::error(code, reason)]).into_response()
}

/// How long the relay may take to finish its step once the server stopped; a step cut
/// short leaves its events unsent, to be published by the next start.
const RELAY_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects the store, applies migrations, starts the change event relay (unless
/// `FHIR_EVENTS=false`), and serves until SIGINT or SIGTERM. The broker is not needed to
/// start or serve: events wait in the outbox until it can be reached.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database_url, config.database_max_connections)
        .await?
        .with_server_base(&config.base())
        .with_referential_integrity(config.referential_integrity)
        .with_read_lanes(config.database_read_lanes);
    store.migrate().await?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let (stop_relay, relay_stopped) = tokio::sync::watch::channel(false);
    let relay = if config.events {
        Some(relay::spawn(
            &store,
            config.rabbitmq_url.clone(),
            config.outbox_retention,
            relay_stopped,
        )?)
    } else {
        tracing::info!("FHIR_EVENTS is false: change events stay in the outbox");
        None
    };
    let exports = tokio::spawn(export::runner::run(
        store.clone(),
        config.export.clone(),
        stop_relay.subscribe(),
    ));
    tracing::info!(addr = %listener.local_addr()?, base = %config.base(), "listening");
    let workers = config.workers;
    let state = AppState::new(store, config)?;
    let served = workers::serve(listener, state, workers, shutdown_signal()).await;
    let _ = stop_relay.send(true);
    exports.abort();
    if let Some(relay) = relay {
        // Past the timeout the relay's thread ends with the process.
        let _ = tokio::time::timeout(RELAY_STOP_TIMEOUT, relay).await;
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Runs the future `work` makes on a thread named `name`, in a single-threaded runtime built
/// on that thread: the pools, connections and tasks `work` creates belong to that runtime.
pub(crate) fn spawn_with_runtime<F, Fut>(name: String, work: F) -> std::io::Result<JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(work()),
                Err(error) => tracing::error!(%error, thread = name, "a runtime cannot start"),
            }
        })
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
