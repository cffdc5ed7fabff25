//! The token issuer's signing keys, found through OpenID discovery
//! (`<issuer>/.well-known/openid-configuration`, then its `jwks_uri`) on first use, cached,
//! and fetched again when a token names a key id the cache does not hold (at most once per
//! [`REFRESH_INTERVAL`], so that tokens with made-up key ids cannot make the server hammer
//! the issuer).

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, IssuerUrl, JsonWebKeySet, JsonWebKeySetUrl, ProviderMetadata,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

/// The least time between two fetches of the issuer's keys.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// How long a request to the issuer may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Discovery fields beyond OpenID Connect's that SMART clients are told about.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    pub introspection_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The issuer's endpoints, as its discovery document gives them.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub issuer: String,
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub jwks: String,
    pub introspection: Option<String>,
    pub revocation: Option<String>,
}

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The issuer could not be reached or answered nonsense (not the client's fault).
    #[error("the token issuer is unavailable: {0}")]
    Unavailable(String),
    /// The issuer has no key with that id, even after fetching its keys again.
    #[error("unknown signing key")]
    UnknownKey,
}

struct Discovered {
    endpoints: Endpoints,
    /// Where the keys come from; `None` for keys given up front.
    jwks_uri: Option<JsonWebKeySetUrl>,
    keys: HashMap<String, DecodingKey>,
}

/// The HTTP client that talks to the issuer. Where the server reaches the issuer at
/// another address than its public one (a container network: tokens say
/// `http://localhost:8081/...`, the server must call `http://keycloak:8081/...`), requests
/// to the issuer's origin go to the internal one instead; the issuer's identity (its `iss`
/// and its discovery document) stays the public URL.
#[derive(Debug, Clone)]
pub struct IssuerClient {
    http: reqwest::Client,
    /// (public origin, internal origin)
    rewrite: Option<(String, String)>,
}

impl IssuerClient {
    /// `url` with the public origin replaced by the internal one, when it starts with it.
    pub fn target(&self, url: &str) -> String {
        match &self.rewrite {
            Some((public, internal)) => match url.strip_prefix(public.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                    format!("{internal}{rest}")
                }
                _ => url.to_owned(),
            },
            None => url.to_owned(),
        }
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for IssuerClient {
    type Error = <reqwest::Client as openidconnect::AsyncHttpClient<'c>>::Error;
    type Future = <reqwest::Client as openidconnect::AsyncHttpClient<'c>>::Future;

    fn call(&'c self, mut request: openidconnect::HttpRequest) -> Self::Future {
        let target = self.target(&request.uri().to_string());
        if let Ok(uri) = target.parse() {
            *request.uri_mut() = uri;
        }
        self.http.call(request)
    }
}

/// The origin (`scheme://host[:port]`) of a URL.
fn origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    Some(parsed.origin().ascii_serialization()).filter(|o| o != "null")
}

/// The keys of one issuer.
pub struct IssuerKeys {
    issuer: IssuerUrl,
    http: IssuerClient,
    discovered: RwLock<Option<Discovered>>,
    /// When the keys were last fetched (or tried).
    fetched_at: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.issuer.as_str())
            .finish_non_exhaustive()
    }
}

impl IssuerKeys {
    /// Keys of `issuer`, fetched on first use; from `internal_origin` instead of the
    /// issuer's own origin when given.
    pub fn new(issuer: &str, internal_origin: Option<&str>) -> Result<Self, KeyError> {
        let rewrite = match internal_origin {
            Some(internal) => Some((
                origin(issuer)
                    .ok_or_else(|| KeyError::Unavailable("issuer URL has no origin".into()))?,
                internal.trim_end_matches('/').to_owned(),
            )),
            None => None,
        };
        let issuer = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| KeyError::Unavailable(format!("issuer URL: {e}")))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| KeyError::Unavailable(e.to_string()))?;
        Ok(IssuerKeys {
            issuer,
            http: IssuerClient { http, rewrite },
            discovered: RwLock::new(None),
            fetched_at: Mutex::new(None),
        })
    }

    /// Keys given up front, never fetched (in-process tests sign their own tokens).
    pub fn fixed(issuer: &str, keys: HashMap<String, DecodingKey>) -> Result<Self, KeyError> {
        let fixed = IssuerKeys::new(issuer, None)?;
        *fixed
            .discovered
            .try_write()
            .map_err(|e| KeyError::Unavailable(e.to_string()))? = Some(Discovered {
            endpoints: Endpoints {
                issuer: issuer.to_owned(),
                authorization: None,
                token: None,
                jwks: String::new(),
                introspection: None,
                revocation: None,
            },
            jwks_uri: None,
            keys,
        });
        Ok(fixed)
    }

    /// The HTTP client that talks to the issuer.
    pub fn http(&self) -> &IssuerClient {
        &self.http
    }

    /// The key `kid` names.
    pub async fn key(&self, kid: &str) -> Result<DecodingKey, KeyError> {
        if let Some(key) = self.cached(kid).await {
            return Ok(key);
        }
        self.refresh().await?;
        self.cached(kid).await.ok_or(KeyError::UnknownKey)
    }

    /// The issuer's endpoints (discovering them when needed).
    pub async fn endpoints(&self) -> Result<Endpoints, KeyError> {
        if let Some(discovered) = self.discovered.read().await.as_ref() {
            return Ok(discovered.endpoints.clone());
        }
        self.refresh().await?;
        self.discovered
            .read()
            .await
            .as_ref()
            .map(|d| d.endpoints.clone())
            .ok_or_else(|| KeyError::Unavailable("not discovered yet".into()))
    }

    async fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.discovered
            .read()
            .await
            .as_ref()
            .and_then(|d| d.keys.get(kid).cloned())
    }

    /// Discovers the issuer (first time) or fetches its keys again, unless that was done
    /// less than [`REFRESH_INTERVAL`] ago.
    async fn refresh(&self) -> Result<(), KeyError> {
        let mut fetched_at = self.fetched_at.lock().await;
        let have = self.discovered.read().await.is_some();
        if have && fetched_at.is_some_and(|at| at.elapsed() < REFRESH_INTERVAL) {
            return Ok(());
        }
        *fetched_at = Some(Instant::now());
        let jwks_uri = self
            .discovered
            .read()
            .await
            .as_ref()
            .map(|d| d.jwks_uri.clone());
        match jwks_uri {
            Some(None) => {}
            Some(Some(uri)) => {
                let set: JsonWebKeySet<CoreJsonWebKey> =
                    JsonWebKeySet::fetch_async(&uri, &self.http)
                        .await
                        .map_err(|e| KeyError::Unavailable(e.to_string()))?;
                let keys = decoding_keys(&set);
                if let Some(discovered) = self.discovered.write().await.as_mut() {
                    discovered.keys = keys;
                }
            }
            None => {
                let metadata = Metadata::discover_async(self.issuer.clone(), &self.http)
                    .await
                    .map_err(|e| KeyError::Unavailable(e.to_string()))?;
                let extra = metadata.additional_metadata();
                let endpoints = Endpoints {
                    issuer: metadata.issuer().as_str().to_owned(),
                    authorization: Some(metadata.authorization_endpoint().as_str().to_owned()),
                    token: metadata.token_endpoint().map(|t| t.as_str().to_owned()),
                    jwks: metadata.jwks_uri().as_str().to_owned(),
                    introspection: extra.introspection_endpoint.clone(),
                    revocation: extra.revocation_endpoint.clone(),
                };
                *self.discovered.write().await = Some(Discovered {
                    endpoints,
                    jwks_uri: Some(metadata.jwks_uri().clone()),
                    keys: decoding_keys(metadata.jwks()),
                });
            }
        }
        Ok(())
    }
}

/// The verification keys of a key set, by key id: keys without an id, or that do not
/// convert (an unknown type), are left out.
fn decoding_keys(set: &JsonWebKeySet<CoreJsonWebKey>) -> HashMap<String, DecodingKey> {
    let Ok(serde_json::Value::Object(set)) = serde_json::to_value(set) else {
        return HashMap::new();
    };
    let Some(serde_json::Value::Array(keys)) = set.get("keys") else {
        return HashMap::new();
    };
    keys.iter()
        .filter_map(|key| serde_json::from_value::<Jwk>(key.clone()).ok())
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some((kid, key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_issuers_origin_is_redirected() {
        let keys = IssuerKeys::new(
            "http://localhost:8081/realms/fhir",
            Some("http://keycloak:8081/"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let http = keys.http();
        assert_eq!(
            http.target("http://localhost:8081/realms/fhir/.well-known/openid-configuration"),
            "http://keycloak:8081/realms/fhir/.well-known/openid-configuration"
        );
        assert_eq!(
            http.target("http://localhost:80811/x"),
            "http://localhost:80811/x"
        );
        assert_eq!(http.target("https://elsewhere/x"), "https://elsewhere/x");
        let plain = IssuerKeys::new("http://localhost:8081/realms/fhir", None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            plain.http().target("http://localhost:8081/realms/fhir"),
            "http://localhost:8081/realms/fhir"
        );
    }
}
