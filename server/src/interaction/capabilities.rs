//! capabilities: `GET [base]/metadata`, the CapabilityStatement, generated from the type
//! registry and the route table so that it lists exactly what is implemented.
//! http://hl7.org/fhir/R4/http.html#capabilities

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fhir_core::ResourceType;
use fhir_core::resource::format_instant;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::{Negotiated, fhir_body};
use crate::routes::{SYSTEM_INTERACTIONS, SYSTEM_OPERATIONS, TYPE_INTERACTIONS};
use crate::state::AppState;

/// Answers the CapabilityStatement.
pub async fn capabilities(
    State(state): State<AppState>,
    Negotiated(format): Negotiated,
) -> Result<Response, ApiError> {
    fhir_body(StatusCode::OK, format, statement(&state).to_string())
}

/// The CapabilityStatement of this server.
pub fn statement(state: &AppState) -> Value {
    let resources: Vec<Value> = ResourceType::ALL
        .iter()
        .map(|rtype| {
            json!({
                "type": rtype.as_str(),
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{rtype}"),
                "interaction": TYPE_INTERACTIONS.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "full-support",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
            })
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(state.started),
        "publisher": "Ferrum",
        "kind": "instance",
        "software": {"name": "Ferrum", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {
            "description": "Ferrum FHIR R4 server",
            "url": state.base.as_ref(),
        },
        "fhirVersion": "4.0.1",
        "format": ["json", "xml", "application/fhir+json", "application/fhir+xml"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": SYSTEM_INTERACTIONS.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
            "operation": SYSTEM_OPERATIONS
                .iter()
                .map(|(name, definition)| json!({"name": name, "definition": definition}))
                .collect::<Vec<_>>(),
        }],
    })
}
