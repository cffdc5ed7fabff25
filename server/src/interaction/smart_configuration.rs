//! SMART discovery: `GET [base]/.well-known/smart-configuration` (SMART App Launch 2.2,
//! http://hl7.org/fhir/smart-app-launch/conformance.html). Always `application/json`, public.
//! The endpoints are the token issuer's, from its OpenID discovery document; the rest
//! describes what this server and its realm support. Written here rather than relayed:
//! Keycloak's own document offers PKCE `plain`, which SMART forbids.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_core::ResourceType;
use serde_json::{Value, json};
use smart::Level;

use crate::auth::Auth;
use crate::auth::keys::Endpoints;
use crate::error::ApiError;
use crate::state::AppState;

/// The SMART capabilities of this server with its realm.
pub const CAPABILITIES: &[&str] = &[
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-standalone-patient",
    "permission-offline",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "sso-openid-connect",
];

/// Answers the discovery document; 404 when authorisation is off (there is nothing to
/// discover), 503 when the issuer cannot be reached.
pub async fn smart_configuration(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Auth::Tokens(validator) = &state.auth else {
        return Err(ApiError::NotFound(
            "SMART configuration (authorisation is off)".into(),
        ));
    };
    let endpoints = validator.keys().endpoints().await.map_err(|error| {
        tracing::warn!(%error, "cannot discover the token issuer");
        ApiError::AuthUnavailable
    })?;
    let mut response = (StatusCode::OK, document(&endpoints).to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The document for an issuer with `endpoints`.
pub fn document(endpoints: &Endpoints) -> Value {
    let mut doc = json!({
        "issuer": endpoints.issuer,
        "jwks_uri": endpoints.jwks,
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported":
            ["private_key_jwt", "client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": scopes_supported(),
        "capabilities": CAPABILITIES,
    });
    let mut put = |name: &str, value: &Option<String>| {
        if let Some(value) = value {
            doc[name] = json!(value);
        }
    };
    put("authorization_endpoint", &endpoints.authorization);
    put("token_endpoint", &endpoints.token);
    put("introspection_endpoint", &endpoints.introspection);
    put("revocation_endpoint", &endpoints.revocation);
    doc
}

/// The scopes the realm offers: the context scopes, then for each level, `*` and each
/// served type, SMART v2 `.rs` and `.cruds` and v1 `.read`, `.write`, `.*`.
pub fn scopes_supported() -> Vec<String> {
    let mut scopes: Vec<String> = ["openid", "fhirUser", "launch/patient", "offline_access"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let targets = std::iter::once("*").chain(ResourceType::ALL.iter().map(|t| t.as_str()));
    let targets: Vec<&str> = targets.collect();
    for level in Level::ALL {
        for target in &targets {
            for permissions in ["rs", "cruds", "read", "write", "*"] {
                scopes.push(format!("{level}/{target}.{permissions}"));
            }
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_offers_s256_only_and_every_scope_parses() {
        let doc = document(&Endpoints {
            issuer: "http://kc/realms/fhir".into(),
            authorization: Some("http://kc/auth".into()),
            token: Some("http://kc/token".into()),
            jwks: "http://kc/certs".into(),
            introspection: None,
            revocation: Some("http://kc/revoke".into()),
        });
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["token_endpoint"], "http://kc/token");
        assert!(doc.get("introspection_endpoint").is_none());
        let scopes = scopes_supported();
        assert!(scopes.contains(&"patient/Patient.rs".to_owned()));
        assert!(scopes.contains(&"system/*.read".to_owned()));
        let parsed = smart::Scopes::parse(&scopes.join(" "));
        assert!(parsed.ignored().is_empty(), "{:?}", parsed.ignored());
    }
}
