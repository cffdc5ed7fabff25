//! create: `POST [base]/[type]`, with conditional create (`If-None-Exist`).
//! http://hl7.org/fhir/R4/http.html#create

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir_core::ResourceType;
use store::{Created, Criteria};

use crate::error::ApiError;
use crate::http::{FhirBody, Negotiated, Return, with_version_headers, write_response};
use crate::interaction::{claims, parse_body};
use crate::state::AppState;

/// Stores a new resource under a server-assigned id (any id in the body is replaced).
/// With `If-None-Exist`, an existing match is answered with 200 and nothing is written.
pub async fn create(
    State(state): State<AppState>,
    crate::http::TypePath(rtype): crate::http::TypePath,
    Negotiated(format): Negotiated,
    prefer: Return,
    headers: HeaderMap,
    body: FhirBody,
) -> Result<Response, ApiError> {
    let condition = headers
        .get("if-none-exist")
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::bad_request("If-None-Exist is not valid text"))
                .and_then(parse_condition)
        })
        .transpose()?;
    let resource = parse_body(&body, rtype)?;
    let claims = claims(&state, rtype, &resource);
    let created = state
        .store
        .create(rtype, resource, &claims, condition.as_deref())
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

/// Parses an `If-None-Exist` query (`identifier=[system|]value`, `_id=x`, joined with `&`).
/// Other parameters are refused: without search a condition on them could not be honoured.
pub fn parse_condition(query: &str) -> Result<Vec<Criteria>, ApiError> {
    let query = query.trim_start_matches('?');
    let query = query
        .split_once('?')
        .filter(|(path, _)| path.parse::<ResourceType>().is_ok())
        .map_or(query, |(_, q)| q);
    let mut criteria = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let criterion = match name.as_ref() {
            "_id" => Criteria::Id(
                value
                    .parse()
                    .map_err(|_| ApiError::bad_request("If-None-Exist: _id is not a valid id"))?,
            ),
            "identifier" => {
                let (system, value) = match value.split_once('|') {
                    Some((system, value)) => (Some(system.to_owned()), value.to_owned()),
                    None => (None, value.into_owned()),
                };
                if value.is_empty() {
                    return Err(ApiError::bad_request(
                        "If-None-Exist: identifier needs a value",
                    ));
                }
                Criteria::Identifier { system, value }
            }
            _ => {
                return Err(ApiError::bad_request(
                    "If-None-Exist supports the parameters identifier and _id",
                ));
            }
        };
        criteria.push(criterion);
    }
    if criteria.is_empty() {
        return Err(ApiError::bad_request("If-None-Exist names no condition"));
    }
    Ok(criteria)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_identifier_and_id_conditions() {
        let criteria = parse_condition("identifier=http://a.org|123&_id=x").unwrap_or_default();
        assert_eq!(criteria.len(), 2);
        assert!(
            matches!(&criteria[0], Criteria::Identifier { system: Some(s), value } if s == "http://a.org" && value == "123")
        );
        assert!(matches!(
            parse_condition("Patient?identifier=123")
                .unwrap_or_default()
                .as_slice(),
            [Criteria::Identifier { system: None, .. }]
        ));
        assert!(matches!(
            parse_condition("identifier=|123").unwrap_or_default().as_slice(),
            [Criteria::Identifier { system: Some(s), .. }] if s.is_empty()
        ));
    }

    #[test]
    fn refuses_other_conditions() {
        assert!(parse_condition("name=peter").is_err());
        assert!(parse_condition("").is_err());
        assert!(parse_condition("identifier=").is_err());
        assert!(parse_condition("_id=a_b").is_err());
    }
}
