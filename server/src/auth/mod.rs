//! Who is calling, and what they may do: SMART on FHIR with an OAuth 2 authorisation server
//! (Keycloak) as the token issuer (docs/authorization.md).
//!
//! [`authenticate`] runs before every route but the public ones ([`is_public`]): it takes the
//! bearer token, checks it ([`token`]) and puts the caller's [`Principal`] in the request;
//! handlers take the `Principal` and ask it for a [`smart::Grant`] per resource type and
//! interaction ([`access`]). With `FHIR_AUTH=none` every request gets a principal that may do
//! everything.

pub mod access;
pub mod introspection;
pub mod keys;
pub mod token;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use smart::{Permissions, Scopes};

use crate::error::ApiError;
use crate::state::AppState;
use token::{TokenError, TokenValidator};

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `FHIR_AUTH=none`: no token needed, everything allowed (local experiments only).
    Off,
    /// Bearer tokens of the configured issuer.
    Tokens(Arc<TokenValidator>),
}

/// The caller of a request, as its access token describes them.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `azp` (or `client_id`): the client the token was issued to.
    pub client_id: Option<String>,
    /// `sub`: the user, or the client's service account.
    pub subject: Option<String>,
    /// `fhirUser`: the FHIR resource of the user, when the token names one.
    pub fhir_user: Option<String>,
    /// Whether the token was issued with `launch/patient`.
    pub launch_patient: bool,
    /// What its resource scopes grant, with the patient in context.
    pub permissions: Permissions,
    /// The `scope` claim as granted (a bulk export applies it again when it runs).
    pub scope: String,
}

impl Principal {
    /// The scope of the caller when authentication is off.
    pub const ALL: &str = "system/*.cruds";

    /// The caller when authentication is off: every interaction on every resource.
    pub fn unrestricted() -> Self {
        Principal {
            client_id: None,
            subject: None,
            fhir_user: None,
            launch_patient: false,
            permissions: Permissions::new(Scopes::parse(Self::ALL).into_resource(), None),
            scope: Self::ALL.to_owned(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("no principal: the auth layer did not run".into()))
    }
}

/// The caller of every request when authentication is off, parsed once.
static UNRESTRICTED: std::sync::LazyLock<Principal> =
    std::sync::LazyLock::new(Principal::unrestricted);

/// Routes anyone may call: the CapabilityStatement, SMART discovery, the health check, and
/// the analytics dashboard's page and script (they hold no data; the data they fetch is
/// guarded).
pub fn is_public(base_path: &str, path: &str) -> bool {
    if path == "/health" {
        return true;
    }
    let Some(rest) = path.strip_prefix(base_path) else {
        return false;
    };
    matches!(
        rest.trim_end_matches('/'),
        "/metadata" | "/.well-known/smart-configuration" | "/$analytics.html" | "/$analytics.js"
    )
}

/// The authentication layer: a valid bearer token, or 401.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match &state.auth {
        Auth::Off => UNRESTRICTED.clone(),
        Auth::Tokens(validator) => {
            if is_public(&state.config.base_path(), request.uri().path()) {
                return next.run(request).await;
            }
            let Some(token) = bearer(&request) else {
                return ApiError::Unauthorized("an access token is required").into_response();
            };
            match validator.validate(token).await {
                Ok(principal) => principal,
                Err(TokenError::Unavailable) => return ApiError::AuthUnavailable.into_response(),
                Err(error) => {
                    tracing::info!(reason = %error, "access token refused");
                    return ApiError::Unauthorized("the access token is not valid").into_response();
                }
            }
        }
    };
    let span = tracing::Span::current();
    span.record("client_id", principal.client_id.as_deref().unwrap_or(""));
    span.record("subject", principal.subject.as_deref().unwrap_or(""));
    span.record(
        "patient",
        principal
            .permissions
            .patient()
            .map(|p| p.as_str())
            .unwrap_or(""),
    );
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The token of an `Authorization: Bearer` header.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn only_discovery_and_health_are_public() {
        for path in [
            "/fhir/metadata",
            "/fhir/.well-known/smart-configuration",
            "/health",
            "/fhir/$analytics.html",
        ] {
            assert!(is_public("/fhir", path), "{path}");
        }
        for path in [
            "/fhir/Patient",
            "/fhir/metadata/x",
            "/fhir/$analytics",
            "/fhir/$analytics.json",
            "/metadata",
            "/fhirmetadata",
        ] {
            assert!(!is_public("/fhir", path), "{path}");
        }
        assert!(is_public("", "/metadata"));
    }
}
