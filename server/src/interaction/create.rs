//! create: `POST [base]/[type]`, with conditional create (`If-None-Exist`).
//! http://hl7.org/fhir/R4/http.html#create

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir_core::ResourceType;
use store::{Conditional, Created};

use smart::Interaction;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::{FhirBody, Negotiated, Return, with_version_headers, write_response};
use crate::interaction::{check_write, claims, parse_body, search};
use crate::state::AppState;

/// Stores a new resource under a server-assigned id (any id in the body is replaced).
/// With `If-None-Exist`, an existing match is answered with 200 and nothing is written.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    crate::http::TypePath(rtype): crate::http::TypePath,
    Negotiated(format): Negotiated,
    prefer: Return,
    headers: HeaderMap,
    body: FhirBody,
) -> Result<Response, ApiError> {
    let registry = state.store.registry()?;
    let condition = headers
        .get("if-none-exist")
        .map(|value| {
            let value = value
                .to_str()
                .map_err(|_| ApiError::bad_request("If-None-Exist is not valid text"))?;
            search::condition(
                &state,
                &principal,
                registry,
                rtype,
                &condition_params(value),
            )
        })
        .transpose()?;
    let resource = parse_body(&body, rtype)?;
    check_write(&state, &principal, rtype, Interaction::Create, &resource)?;
    let claims = claims(&state, rtype, &resource);
    let condition = condition.as_ref().map(|(query, text)| Conditional {
        query: &query.types[0],
        text,
    });
    let created = state
        .store
        .create(rtype, resource, &claims, condition)
        .await?;
    match created {
        Created::New(stored) => {
            let location = format!(
                "{}/{rtype}/{}/_history/{}",
                state.base, stored.id, stored.version
            );
            let response = write_response(
                StatusCode::CREATED,
                format,
                prefer,
                stored.content,
                &format!("created {rtype}/{}", stored.id),
            )?;
            Ok(with_version_headers(
                response,
                stored.version,
                stored.last_updated,
                Some(location),
            ))
        }
        Created::Existing { id, current } => {
            let location = format!("{}/{rtype}/{id}/_history/{}", state.base, current.version);
            let response = write_response(
                StatusCode::OK,
                format,
                prefer,
                current.content.unwrap_or_default(),
                &format!("{rtype}/{id} already matches the condition; nothing was created"),
            )?;
            Ok(with_version_headers(
                response,
                current.version,
                current.last_updated,
                Some(location),
            ))
        }
    }
}

/// The parameters of an `If-None-Exist` header: a query string, optionally written as
/// `[type]?query` or with a leading `?`.
pub fn condition_params(header: &str) -> Vec<(String, String)> {
    let query = header.trim().trim_start_matches('?');
    let query = query
        .split_once('?')
        .filter(|(path, _)| path.parse::<ResourceType>().is_ok())
        .map_or(query, |(_, q)| q);
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_exist_may_name_the_type_or_start_with_a_question_mark() {
        let pairs = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];
        assert_eq!(
            condition_params("identifier=http://a.org|123"),
            pairs("identifier", "http://a.org|123")
        );
        assert_eq!(condition_params("Patient?name=x"), pairs("name", "x"));
        assert_eq!(condition_params("?name=a%20b"), pairs("name", "a b"));
        assert!(condition_params("").is_empty());
    }
}
