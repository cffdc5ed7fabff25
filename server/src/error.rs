//! The API error: every failure a request can meet, and how it is answered.
//!
//! | variant              | status | issue code      |
//! |----------------------|--------|-----------------|
//! | `Invalid`            | 400    | from validation (structure, required, value, code-invalid, invalid) |
//! | `BadRequest`         | 400    | invalid / value; not-found (a reference to a resource that does not exist) |
//! | `Unprocessable`      | 422    | processing, or from validation |
//! | `Unauthorized`       | 401    | login (with `WWW-Authenticate: Bearer error="invalid_token"`) |
//! | `Forbidden`          | 403    | forbidden       |
//! | `NotFound`           | 404    | not-found       |
//! | `UnknownType`        | 404    | not-supported   |
//! | `MethodNotAllowed`   | 405    | not-supported   |
//! | `NotAcceptable`      | 406    | not-supported   |
//! | `Conflict`           | 409    | duplicate; conflict (a delete of a resource others refer to) |
//! | `Gone`               | 410    | deleted         |
//! | `PreconditionFailed` | 412    | conflict        |
//! | `TooLarge`           | 413    | too-long        |
//! | `TooManyEntries`     | 413    | too-long (a batch or transaction Bundle over `FHIR_BUNDLE_MAX_ENTRIES`) |
//! | `TooManyRequests`    | 429    | throttled       |
//! | `UnsupportedMediaType` | 415  | not-supported   |
//! | `Busy`, `AuthUnavailable` | 503 | throttled, transient (with `Retry-After`; `Busy` also for a transaction PostgreSQL failed to break a deadlock) |
//! | `ExportFailed`       | 500    | exception (the job's reason: a bulk export the server could not finish) |
//! | `Internal`           | 500    | exception (details logged, never sent) |
//!
//! Diagnostics never repeat request content: it may be patient data.
//!
//! What is logged: an `Internal` error with its details (ERROR); the `Busy` answers as one
//! WARN line per `BUSY_LOG_INTERVAL` at most, with how many there were (under overload, a
//! line per refused request would cost CPU when it is shortest and flood the log).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_core::outcome::operation_outcome;
use fhir_core::{Issue, IssueCode};
use store::StoreError;

/// An error answered with an OperationOutcome.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid resource")]
    Invalid(Vec<Issue>),
    /// A request well-formed but impossible to carry out (a PATCH that does not apply, or
    /// whose result is invalid).
    #[error("unprocessable")]
    Unprocessable(Vec<Issue>),
    #[error("bad request")]
    BadRequest(Issue),
    /// No valid access token.
    #[error("unauthorized")]
    Unauthorized(&'static str),
    /// The access token does not grant the request.
    #[error("forbidden")]
    Forbidden(String),
    #[error("not found")]
    NotFound(String),
    #[error("unknown resource type")]
    UnknownType,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("not acceptable")]
    NotAcceptable,
    #[error("conflict")]
    Conflict(Issue),
    #[error("gone")]
    Gone(String),
    #[error("precondition failed")]
    PreconditionFailed(String),
    #[error("payload too large")]
    TooLarge,
    /// A batch or transaction Bundle with more entries than the configured limit.
    #[error("too many entries")]
    TooManyEntries { max: usize },
    /// Too many requests of a kind (exports running, status polled too soon).
    #[error("too many requests")]
    TooManyRequests(String),
    /// A bulk export job failed: the reason is for the client.
    #[error("export failed")]
    ExportFailed(String),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// Every database connection stayed busy for the wait limit: answered 503 with
    /// Retry-After, as load a client may retry after.
    #[error("busy")]
    Busy,
    /// The token issuer could not be reached to check a token.
    #[error("token issuer unavailable")]
    AuthUnavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

/// The FHIR JSON media type every response body carries unless XML was asked for.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

impl ApiError {
    /// A 400 about a request parameter or header (not the body).
    pub fn bad_request(diagnostics: impl Into<String>) -> Self {
        ApiError::BadRequest(Issue::error(IssueCode::Value, diagnostics))
    }

    /// The HTTP status of the answer.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::UnknownType => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::TooLarge | ApiError::TooManyEntries { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ExportFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Busy | ApiError::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The issues of the answer's OperationOutcome.
    pub(crate) fn issues(self) -> Vec<Issue> {
        use IssueCode as C;
        match self {
            ApiError::Invalid(issues) | ApiError::Unprocessable(issues) => issues,
            ApiError::BadRequest(issue) | ApiError::Conflict(issue) => vec![issue],
            ApiError::Unauthorized(why) => vec![Issue::error(C::Login, why)],
            ApiError::Forbidden(why) => vec![Issue::error(C::Forbidden, why)],
            ApiError::NotFound(what) => {
                vec![Issue::error(C::NotFound, format!("{what} is not known"))]
            }
            ApiError::UnknownType => vec![Issue::error(
                C::NotSupported,
                "this server does not serve that resource type",
            )],
            ApiError::MethodNotAllowed => vec![Issue::error(
                C::NotSupported,
                "this interaction is not supported here",
            )],
            ApiError::NotAcceptable => vec![Issue::error(
                C::NotSupported,
                "the server produces application/fhir+json and application/fhir+xml",
            )],
            ApiError::Gone(what) => {
                vec![Issue::error(C::Deleted, format!("{what} has been deleted"))]
            }
            ApiError::PreconditionFailed(why) => vec![Issue::error(C::Conflict, why)],
            ApiError::TooLarge => vec![Issue::error(C::TooLong, "the request body is too large")],
            ApiError::TooManyEntries { max } => vec![Issue::error(
                C::TooLong,
                format!("a batch or transaction Bundle may hold at most {max} entries"),
            )],
            ApiError::TooManyRequests(why) => vec![Issue::error(C::Throttled, why)],
            ApiError::ExportFailed(why) => vec![Issue::error(C::Exception, why)],
            ApiError::UnsupportedMediaType => vec![Issue::error(
                C::NotSupported,
                "send application/fhir+json or application/fhir+xml",
            )],
            ApiError::Busy => vec![Issue::error(
                C::Throttled,
                "the server is busy; retry the request shortly",
            )],
            ApiError::AuthUnavailable => vec![Issue::error(
                C::Transient,
                "the access token cannot be checked now; retry the request shortly",
            )],
            ApiError::Internal(_) => vec![Issue::error(C::Exception, "internal server error")],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(error = %detail, "request failed"),
            ApiError::Busy => {
                if let Some(count) = BUSY_ANSWERS.count(process_millis()) {
                    // `answered_503`: since the previous line of this kind, at most one
                    // per `at_most_every_s`.
                    tracing::warn!(
                        answered_503 = count,
                        at_most_every_s = BUSY_LOG_INTERVAL.as_secs(),
                        "busy: requests answered 503 to retry (too many in flight, no database \
                         connection free in time, or a deadlock broken)"
                    );
                }
            }
            _ => {}
        }
        let status = self.status();
        let retry = matches!(
            self,
            ApiError::Busy | ApiError::AuthUnavailable | ApiError::TooManyRequests(_)
        );
        let unauthorized = matches!(self, ApiError::Unauthorized(_));
        let mut response = outcome_response(status, &self.issues());
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="fhir", error="invalid_token""#),
            );
        }
        response
    }
}

/// At most one log line about `Busy` answers per this interval.
const BUSY_LOG_INTERVAL: Duration = Duration::from_secs(10);

static BUSY_ANSWERS: Throttled = Throttled::new(BUSY_LOG_INTERVAL);

/// Milliseconds since the first call (a clock for [`Throttled`]).
fn process_millis() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// Counts events and says when to report them: at the first one, then at most once per
/// interval, with how many there were since the last report.
struct Throttled {
    interval_ms: u64,
    count: AtomicU64,
    /// When the last report was made (`NEVER`: no report yet).
    reported_ms: AtomicU64,
}

const NEVER: u64 = u64::MAX;

impl Throttled {
    const fn new(interval: Duration) -> Self {
        Throttled {
            interval_ms: interval.as_millis() as u64,
            count: AtomicU64::new(0),
            reported_ms: AtomicU64::new(NEVER),
        }
    }

    /// Counts an event at `now_ms`; the number to report, when a report is due.
    fn count(&self, now_ms: u64) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let reported = self.reported_ms.load(Ordering::Relaxed);
        let due = reported == NEVER || now_ms.saturating_sub(reported) >= self.interval_ms;
        // One caller wins the report; the others' events are in its count or the next one.
        if due
            && self
                .reported_ms
                .compare_exchange(reported, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.count.swap(0, Ordering::Relaxed))
        } else {
            None
        }
    }
}

/// An OperationOutcome response with `status`.
pub fn outcome_response(status: StatusCode, issues: &[Issue]) -> Response {
    let body = operation_outcome(issues).to_string();
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::VersionConflict { current: Some(v) } => ApiError::PreconditionFailed(
                format!("If-Match does not name the current version ({v})"),
            ),
            StoreError::VersionConflict { current: None } => ApiError::PreconditionFailed(
                "If-Match given for a resource that does not exist".into(),
            ),
            StoreError::Duplicate { rule, expression } => ApiError::Conflict(Issue::at(
                IssueCode::Duplicate,
                expression,
                format!("the value must be unique ({rule}): another resource already has it"),
            )),
            StoreError::DanglingReference { target, expression } => {
                ApiError::BadRequest(Issue::at(
                    IssueCode::NotFound,
                    expression,
                    format!(
                        "the reference {target} names a resource that does not exist on this \
                         server (never created, or deleted)"
                    ),
                ))
            }
            StoreError::Referenced {
                target,
                count,
                more,
                referrers,
            } => {
                let how_many = match (count, more) {
                    (_, true) => format!("more than {count} resources refer"),
                    (1, false) => "1 resource refers".to_owned(),
                    (n, false) => format!("{n} resources refer"),
                };
                let named = if referrers.len() < count {
                    format!("{}, ...", referrers.join(", "))
                } else {
                    referrers.join(", ")
                };
                ApiError::Conflict(Issue::error(
                    IssueCode::Conflict,
                    format!(
                        "{target} cannot be deleted: {how_many} to it ({named}); delete them \
                         or remove their references first"
                    ),
                ))
            }
            StoreError::MultipleMatches => {
                ApiError::PreconditionFailed("the condition matches more than one resource".into())
            }
            StoreError::ConditionalIdMismatch => ApiError::BadRequest(Issue::at(
                IssueCode::Invalid,
                "id",
                "the condition matches a resource with another id than the body's",
            )),
            StoreError::BadCursor => ApiError::BadRequest(Issue::error(
                IssueCode::Invalid,
                "_cursor is not a paging cursor of this search: follow the links of its Bundle",
            )),
            StoreError::Database(sqlx::Error::PoolTimedOut) => ApiError::Busy,
            // PostgreSQL failed the transaction to break a deadlock with another one (writes
            // that lock rows the other holds, e.g. references in both directions): transient.
            StoreError::Database(sqlx_err)
                if sqlx_err
                    .as_database_error()
                    .and_then(|db| db.code())
                    .as_deref()
                    == Some("40P01") =>
            {
                ApiError::Busy
            }
            // A database message can quote the data it choked on: log only its SQLSTATE.
            StoreError::Database(sqlx_err) => {
                ApiError::Internal(match sqlx_err.as_database_error() {
                    Some(db) => format!(
                        "database error (SQLSTATE {})",
                        db.code().unwrap_or_default()
                    ),
                    None => sqlx_err.to_string(),
                })
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_answers_are_reported_at_once_then_at_most_once_per_interval() {
        let throttled = Throttled::new(Duration::from_secs(10));
        assert_eq!(throttled.count(5), Some(1));
        assert_eq!(throttled.count(6), None);
        assert_eq!(throttled.count(10_004), None);
        // Every event since the last report, this one included.
        assert_eq!(throttled.count(10_005), Some(3));
        assert_eq!(throttled.count(10_006), None);
        assert_eq!(throttled.count(60_000), Some(2));
    }

    #[test]
    fn an_exhausted_pool_is_a_503_to_retry() {
        let response =
            ApiError::from(StoreError::Database(sqlx::Error::PoolTimedOut)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static(FHIR_JSON))
        );
    }

    #[test]
    fn a_delete_of_a_referenced_resource_names_its_referrers() {
        let issues = ApiError::from(StoreError::Referenced {
            target: "Organization/o1".into(),
            count: 12,
            more: false,
            referrers: (0..10).map(|i| format!("Patient/p{i}")).collect(),
        })
        .issues();
        assert_eq!(issues[0].code, IssueCode::Conflict);
        assert_eq!(
            issues[0].diagnostics,
            "Organization/o1 cannot be deleted: 12 resources refer to it (Patient/p0, \
             Patient/p1, Patient/p2, Patient/p3, Patient/p4, Patient/p5, Patient/p6, \
             Patient/p7, Patient/p8, Patient/p9, ...); delete them or remove their \
             references first"
        );
        let many = ApiError::from(StoreError::Referenced {
            target: "Patient/p".into(),
            count: 100,
            more: true,
            referrers: vec!["Account/a".into()],
        });
        assert_eq!(many.status(), StatusCode::CONFLICT);
        assert!(
            many.issues()[0]
                .diagnostics
                .contains("more than 100 resources refer to it (Account/a, ...)")
        );
    }

    #[test]
    fn other_database_failures_stay_internal() {
        let response =
            ApiError::from(StoreError::Database(sqlx::Error::RowNotFound)).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
