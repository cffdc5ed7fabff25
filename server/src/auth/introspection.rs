//! Opaque access tokens: asked about at the issuer's introspection endpoint (RFC 7662), when
//! configured (`FHIR_AUTH_INTROSPECTION_CLIENT_ID` and `_SECRET`: a confidential client of
//! the issuer allowed to introspect). Only tokens that are not JWTs are introspected; an
//! introspected token must be `active`, from the configured issuer (when the answer names
//! one), for this server (when it names an audience), and not expired. Each such request
//! costs one call to the issuer: nothing is cached.

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenResponse, BasicTokenType,
};
use oauth2::{
    AccessToken, Client, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields,
    IntrospectionUrl, StandardRevocableToken, StandardTokenIntrospectionResponse,
    TokenIntrospectionResponse,
};
use serde::{Deserialize, Serialize};

use super::token::{Claims, TokenError};

/// The SMART fields of an introspection answer beyond RFC 7662's.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SmartFields {
    #[serde(default)]
    patient: Option<String>,
    #[serde(default, rename = "fhirUser")]
    fhir_user: Option<String>,
    #[serde(default)]
    azp: Option<String>,
}

impl ExtraTokenFields for SmartFields {}

type Answer = StandardTokenIntrospectionResponse<SmartFields, BasicTokenType>;
type IntrospectionClient = Client<
    BasicErrorResponse,
    BasicTokenResponse,
    Answer,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
>;

/// The credentials Ferrum introspects with.
#[derive(Clone)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Asks the issuer about `token` at `url`; the claims of an active token for `audience`.
pub async fn introspect(
    http: &super::keys::IssuerClient,
    url: &str,
    credentials: &Credentials,
    issuer: &str,
    audience: &str,
    token: &str,
) -> Result<Claims, TokenError> {
    let url = IntrospectionUrl::new(url.to_owned()).map_err(|_| TokenError::Unavailable)?;
    let client: IntrospectionClient = Client::new(ClientId::new(credentials.client_id.clone()))
        .set_client_secret(ClientSecret::new(credentials.client_secret.clone()))
        .set_introspection_url(url);
    let token = AccessToken::new(token.to_owned());
    let answer: Answer = client
        .introspect(&token)
        .request_async(http)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "token introspection failed");
            TokenError::Unavailable
        })?;
    let now = chrono::Utc::now();
    let valid = answer.active()
        && answer.iss().is_none_or(|iss| iss == issuer)
        && answer
            .aud()
            .is_none_or(|aud| aud.iter().any(|a| a == audience))
        && answer.exp().is_none_or(|exp| exp > now)
        && answer.nbf().is_none_or(|nbf| nbf <= now);
    if !valid {
        return Err(TokenError::Invalid);
    }
    let extra = answer.extra_fields();
    Ok(Claims {
        scope: answer.scopes().map(|scopes| {
            scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        }),
        patient: extra.patient.clone(),
        fhir_user: extra.fhir_user.clone(),
        azp: extra.azp.clone(),
        client_id: answer.client_id().map(|c| c.as_str().to_owned()),
        sub: answer.sub().map(str::to_owned),
        exp: answer.exp().map(|exp| exp.timestamp()),
    })
}
