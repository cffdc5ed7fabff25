//! Access tokens: a JWT signed by the configured issuer with one of its current keys, for
//! this server (`aud`), not expired. What it says about the caller becomes a [`Principal`].
//!
//! Accepted algorithms: RS256, RS384, ES256, ES384. `none` and the HMAC ones are refused
//! (an HMAC key would be a secret the server shares with the issuer; RFC 8725 §3.1).
//! `exp` is required; `exp` and `nbf` are checked with [`LEEWAY_SECONDS`] of clock skew.
//! A token that is not a JWT is introspected when that is configured
//! ([`super::introspection`]), and refused otherwise.

use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::Deserialize;
use smart::{ContextScope, Permissions, Scopes};

use super::Principal;
use super::introspection::{Credentials, introspect};
use super::keys::{IssuerKeys, KeyError};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 30;
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Why a token was refused. The reasons are fixed texts: they never quote the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is not a well-formed JWT")]
    Malformed,
    #[error("the access token's signing algorithm is not accepted")]
    Algorithm,
    #[error("the access token is signed by an unknown key")]
    UnknownKey,
    #[error("the access token is expired, not yet valid, or not for this server")]
    Invalid,
    /// The issuer could not be asked for its keys: not the client's fault.
    #[error("the token issuer cannot be reached")]
    Unavailable,
}

/// The claims Ferrum reads (from a JWT, or an introspection answer).
#[derive(Debug, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub scope: Option<String>,
    /// SMART's patient context (a claim the realm adds from the user's attribute).
    #[serde(default)]
    pub patient: Option<String>,
    #[serde(default, rename = "fhirUser")]
    pub fhir_user: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    /// Seconds since the epoch (required in a JWT).
    #[serde(default)]
    pub exp: Option<i64>,
}

/// How many checked tokens are remembered; when full, the memory starts afresh.
const CHECKED_CAPACITY: usize = 10_000;

/// JWTs checked already, with what they grant, until they expire: a client sends the same
/// token with each request, and checking a signature costs tens of microseconds.
#[derive(Debug, Default)]
struct Checked {
    tokens: std::sync::RwLock<std::collections::HashMap<String, (Principal, i64)>>,
}

impl Checked {
    fn get(&self, token: &str) -> Option<Principal> {
        let tokens = self.tokens.read().ok()?;
        let (principal, exp) = tokens.get(token)?;
        let now = chrono::Utc::now().timestamp();
        (now <= exp.saturating_add(LEEWAY_SECONDS as i64)).then(|| principal.clone())
    }

    fn put(&self, token: &str, principal: &Principal, exp: i64) {
        if let Ok(mut tokens) = self.tokens.write() {
            if tokens.len() >= CHECKED_CAPACITY {
                tokens.clear();
            }
            tokens.insert(token.to_owned(), (principal.clone(), exp));
        }
    }
}

/// Checks tokens of one issuer, for one audience.
#[derive(Debug)]
pub struct TokenValidator {
    keys: IssuerKeys,
    issuer: String,
    audience: String,
    /// Set: tokens that are not JWTs are introspected with these credentials.
    introspection: Option<Credentials>,
    /// Introspect JWTs too, instead of checking them locally.
    introspect_all: bool,
    checked: Checked,
}

impl TokenValidator {
    /// A validator of `issuer`'s tokens for `audience`; the issuer is reached at
    /// `internal_origin` when given (see [`super::keys::IssuerClient`]).
    pub fn new(
        issuer: &str,
        audience: &str,
        internal_origin: Option<&str>,
    ) -> Result<Self, KeyError> {
        Ok(TokenValidator {
            keys: IssuerKeys::new(issuer, internal_origin)?,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            introspection: None,
            introspect_all: false,
            checked: Checked::default(),
        })
    }

    /// The same validator, introspecting opaque tokens (and JWTs too, with `all`) with
    /// `credentials`.
    pub fn with_introspection(mut self, credentials: Credentials, all: bool) -> Self {
        self.introspection = Some(credentials);
        self.introspect_all = all;
        self
    }

    /// A validator with keys given up front (in-process tests sign their own tokens).
    pub fn with_keys(
        issuer: &str,
        audience: &str,
        keys: std::collections::HashMap<String, jsonwebtoken::DecodingKey>,
    ) -> Result<Self, KeyError> {
        Ok(TokenValidator {
            keys: IssuerKeys::fixed(issuer, keys)?,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            introspection: None,
            introspect_all: false,
            checked: Checked::default(),
        })
    }

    /// The issuer's keys and endpoints.
    pub fn keys(&self) -> &IssuerKeys {
        &self.keys
    }

    /// Who `token` speaks for, when it is valid.
    pub async fn validate(&self, token: &str) -> Result<Principal, TokenError> {
        if !self.introspect_all
            && let Some(principal) = self.checked.get(token)
        {
            return Ok(principal);
        }
        let header = match (decode_header(token), &self.introspection) {
            (_, Some(credentials)) if self.introspect_all => {
                return self.introspect(credentials, token).await;
            }
            (Ok(header), _) => header,
            (Err(_), Some(credentials)) => return self.introspect(credentials, token).await,
            (Err(_), None) => return Err(TokenError::Malformed),
        };
        if !ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.key(&kid).await.map_err(|e| match e {
            KeyError::UnknownKey => TokenError::UnknownKey,
            KeyError::Unavailable(reason) => {
                tracing::warn!(%reason, "cannot fetch the token issuer's keys");
                TokenError::Unavailable
            }
        })?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        let claims = decode::<Claims>(token, &key, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        let exp = claims.exp.unwrap_or_default();
        let principal = principal(claims);
        self.checked.put(token, &principal, exp);
        Ok(principal)
    }

    /// An opaque token, as the issuer's introspection endpoint describes it.
    async fn introspect(
        &self,
        credentials: &Credentials,
        token: &str,
    ) -> Result<Principal, TokenError> {
        let endpoints = self
            .keys
            .endpoints()
            .await
            .map_err(|_| TokenError::Unavailable)?;
        let Some(url) = endpoints.introspection else {
            return Err(TokenError::Malformed);
        };
        let claims = introspect(
            self.keys.http(),
            &url,
            credentials,
            &self.issuer,
            &self.audience,
            token,
        )
        .await?;
        Ok(principal(claims))
    }
}

/// The caller a valid token's claims describe.
fn principal(claims: Claims) -> Principal {
    let scope = claims.scope.unwrap_or_default();
    let scopes = Scopes::parse(&scope);
    let patient = claims
        .patient
        .as_deref()
        .and_then(|p| p.trim_start_matches("Patient/").parse().ok());
    Principal {
        client_id: claims.azp.or(claims.client_id),
        subject: claims.sub,
        fhir_user: claims.fhir_user,
        launch_patient: scopes.has(ContextScope::LaunchPatient),
        permissions: Permissions::new(scopes.into_resource(), patient),
        scope,
    }
}
