//! capabilities: `GET [base]/metadata`, the CapabilityStatement, generated from the type
//! registry, the search parameter registry and the route table so that it lists exactly
//! what is implemented.
//! http://hl7.org/fhir/R4/http.html#capabilities
//!
//! Search support is read from the functions the search parser itself is checked against
//! ([`supported_params`], [`supported_includes`], [`supported_revincludes`],
//! [`CONTROL_PARAMETERS`]), over the built-in registry the store indexes by:
//!
//! - `rest.resource.searchParam`: every parameter a type can be searched by, its own and
//!   the common ones (`_id`, `_lastUpdated`, ...), with its definition's url and type; the
//!   documentation is the definition's description (the part for this type, when one
//!   definition covers several), then what the parser accepts: modifiers, prefixes, the
//!   types a chain can continue into, whether `_sort` takes it.
//! - `rest.resource.searchInclude` / `searchRevInclude`: the `_include` and `_revinclude`
//!   values a search of the type accepts.
//! - `rest.searchParam`: what a search of every type accepts: the common parameters that
//!   have a definition (those usable in a system search without `_type`), then the control
//!   parameters (`_count`, `_sort`, `_include`, `_type`, ...). R4 publishes no
//!   SearchParameter for the control parameters, so they have no `definition`; their
//!   `type` is the one that describes their values (`number` for `_count`, `token` for
//!   the coded ones, `special` for those with their own syntax).
//!
//! The registry never fails to load in a running server (the store refuses to start
//! without it); if it did, the statement would list no search support rather than fail.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fhir_core::ResourceType;
use fhir_core::resource::format_instant;
use fhir_core::search::query::{
    CONTROL_PARAMETERS, SupportedParam, supported_includes, supported_params, supported_revincludes,
};
use fhir_core::search::{Registry, SearchParamType};
use serde_json::{Map, Value, json};

use crate::auth::Auth;
use crate::auth::keys::Endpoints;
use crate::error::ApiError;
use crate::http::{Negotiated, fhir_body};
use crate::interaction::patch::JSON_PATCH;
use crate::interaction::{everything, validate};
use crate::routes::{SYSTEM_INTERACTIONS, SYSTEM_OPERATIONS, TYPE_INTERACTIONS};
use crate::state::AppState;

/// Answers the CapabilityStatement.
pub async fn capabilities(
    State(state): State<AppState>,
    Negotiated(format): Negotiated,
) -> Result<Response, ApiError> {
    let mut statement = statement(&state);
    if let Auth::Tokens(validator) = &state.auth {
        // Without the issuer's endpoints the statement still says SMART is required.
        let endpoints = validator.keys().endpoints().await.ok();
        statement["rest"][0]["security"] = security(endpoints.as_ref());
    }
    fhir_body(StatusCode::OK, format, statement.to_string())
}

/// `rest.security` when tokens are required: the SMART-on-FHIR service and the issuer's
/// OAuth endpoints (http://hl7.org/fhir/smart-app-launch/conformance.html).
pub fn security(endpoints: Option<&Endpoints>) -> Value {
    let mut security = json!({
        "cors": true,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
            }],
            "text": "OAuth 2 bearer tokens of the SMART on FHIR authorisation server",
        }],
        "description": "Every request but /metadata and /.well-known/smart-configuration \
            needs a bearer token; SMART scopes (v1 and v2; patient/, user/, system/) decide \
            what it may read and write.",
    });
    let uris: Vec<Value> = endpoints
        .map(|e| {
            [
                ("authorize", &e.authorization),
                ("token", &e.token),
                ("introspect", &e.introspection),
                ("revoke", &e.revocation),
            ]
            .into_iter()
            .filter_map(|(name, uri)| {
                uri.as_ref()
                    .map(|uri| json!({"url": name, "valueUri": uri}))
            })
            .collect()
        })
        .unwrap_or_default();
    if !uris.is_empty() {
        security["extension"] = json!([{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": uris,
        }]);
    }
    security
}

/// The CapabilityStatement of this server.
pub fn statement(state: &AppState) -> Value {
    let registry = state.store.registry().ok();
    let conditional_delete = if state.config.conditional_delete_max > 1 {
        "multiple"
    } else {
        "single"
    };
    // Literal references; `enforced` (they always resolve) with both referential integrity
    // checks on (docs/rest.md, "Referential integrity").
    let integrity = state.config.referential_integrity;
    let reference_policy: &'static [&'static str] = if integrity.writes && integrity.deletes {
        &["literal", "enforced"]
    } else {
        &["literal"]
    };
    let resources: Vec<Value> = ResourceType::ALL
        .iter()
        .map(|&rtype| resource(registry, rtype, conditional_delete, reference_policy))
        .collect();
    // In the order of the R4 definition.
    let mut rest = Map::new();
    rest.insert("mode".into(), json!("server"));
    rest.insert("resource".into(), Value::Array(resources));
    rest.insert(
        "interaction".into(),
        SYSTEM_INTERACTIONS
            .iter()
            .map(|code| json!({"code": code}))
            .collect(),
    );
    rest.insert("searchParam".into(), system_search_params(registry).into());
    rest.insert(
        "operation".into(),
        SYSTEM_OPERATIONS
            .iter()
            .map(|(name, definition)| json!({"name": name, "definition": definition}))
            .collect(),
    );
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
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "fhirVersion": "4.0.1",
        "format": ["json", "xml", "application/fhir+json", "application/fhir+xml"],
        // JSON Patch, and FHIRPath Patch in either FHIR format (interaction/patch.rs).
        "patchFormat": [JSON_PATCH, "application/fhir+json", "application/fhir+xml"],
        "rest": [rest],
    })
}

/// `rest.resource` for `rtype`.
fn resource(
    registry: Option<&Registry>,
    rtype: ResourceType,
    conditional_delete: &'static str,
    reference_policy: &'static [&'static str],
) -> Value {
    let mut entry = json!({
        "type": rtype.as_str(),
        "profile": format!("http://hl7.org/fhir/StructureDefinition/{rtype}"),
        "interaction": TYPE_INTERACTIONS.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
        "versioning": "versioned-update",
        "readHistory": true,
        "updateCreate": true,
        "conditionalCreate": true,
        "conditionalRead": "full-support",
        "conditionalUpdate": true,
        "conditionalDelete": conditional_delete,
        "referencePolicy": reference_policy,
    });
    let export = match rtype {
        ResourceType::Patient => Some("patient-export"),
        ResourceType::Group => Some("group-export"),
        _ => None,
    };
    let mut operations = Vec::new();
    if let Some(definition) = export {
        operations.push(json!({
            "name": "export",
            "definition": format!("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{definition}"),
        }));
    }
    if rtype == ResourceType::Patient {
        let (name, definition) = everything::OPERATION;
        operations.push(json!({"name": name, "definition": definition}));
    }
    let (name, definition) = validate::OPERATION;
    operations.push(json!({"name": name, "definition": definition}));
    entry["operation"] = Value::Array(operations);
    let profiles: Vec<&str> = fhir_core::validation::profiles()
        .map(|profiles| profiles.all())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.resource_type == rtype.as_str())
        .map(|p| p.url.as_str())
        .collect();
    if !profiles.is_empty() {
        entry["supportedProfile"] = json!(profiles);
    }
    let Some(registry) = registry else {
        return entry;
    };
    let params: Vec<Value> = supported_params(registry, rtype)
        .iter()
        .map(|supported| search_param(supported, rtype.as_str()))
        .collect();
    // FHIR JSON has no empty arrays: a key is left out rather than given `[]`.
    let lists = [
        (
            "searchInclude",
            string_values(supported_includes(registry, rtype)),
        ),
        (
            "searchRevInclude",
            string_values(supported_revincludes(registry, rtype)),
        ),
        ("searchParam", params),
    ];
    if let Some(map) = entry.as_object_mut() {
        for (key, list) in lists {
            if !list.is_empty() {
                map.insert(key.into(), Value::Array(list));
            }
        }
    }
    entry
}

fn string_values(values: Vec<String>) -> Vec<Value> {
    values.into_iter().map(Value::String).collect()
}

/// `rest.searchParam`: the common parameters every served type can be searched by, then
/// the control parameters.
fn system_search_params(registry: Option<&Registry>) -> Vec<Value> {
    let mut out: Vec<Value> = registry
        .map(|registry| {
            let per_type: Vec<Vec<SupportedParam<'_>>> = ResourceType::ALL
                .iter()
                .map(|&rtype| supported_params(registry, rtype))
                .collect();
            let (first, others) = per_type.split_first()?;
            // Those of the first type that every other type has too (by definition).
            Some(
                first
                    .iter()
                    .filter(|p| {
                        others
                            .iter()
                            .all(|params| params.iter().any(|o| o.param.url() == p.param.url()))
                    })
                    .map(|p| search_param(p, p.param.base()))
                    .collect::<Vec<_>>(),
            )
        })
        .unwrap_or_default()
        .unwrap_or_default();
    out.extend(CONTROL_PARAMETERS.iter().map(|&name| {
        let (kind, documentation) = control_parameter(name).unwrap_or((
            SearchParamType::Special,
            "A search result parameter: see http://hl7.org/fhir/R4/search.html.",
        ));
        json!({"name": name, "type": kind.as_str(), "documentation": documentation})
    }));
    out
}

/// The type and documentation of a control parameter (search.html, "Search result
/// parameters" and "Chaining"): what the parser accepts for it.
fn control_parameter(name: &str) -> Option<(SearchParamType, &'static str)> {
    use SearchParamType as T;
    let described = match name {
        "_count" => (
            T::Number,
            "The number of entries per page: a whole number, 0 or more (0 answers only the \
             total). Larger values are lowered to the server's maximum page size.",
        ),
        "_cursor" => (
            T::Special,
            "The position of a page, as written in the `next` and `previous` links of a \
             search result Bundle. It is opaque: use the links, do not compose it.",
        ),
        "_elements" => (
            T::Special,
            "The elements to return, comma separated: element names (`identifier`), or \
             element names of one type (`Patient.name`); the entries are marked SUBSETTED.",
        ),
        "_has" => (
            T::Special,
            "Reverse chaining: `_has:Type:reference:parameter=value` selects the resources \
             that a resource of `Type`, matching `parameter=value`, points at through its \
             reference parameter `reference`. The links may nest.",
        ),
        "_include" => (
            T::Special,
            "Adds the resources the matches point at: `Type:parameter`, \
             `Type:parameter:TargetType` or `Type:*`; `_include:iterate` applies it to the \
             included resources too. The values each type accepts are its searchInclude.",
        ),
        "_revinclude" => (
            T::Special,
            "Adds the resources that point at the matches: `Type:parameter`, \
             `Type:parameter:TargetType` or `Type:*`; `_revinclude:iterate` applies it to \
             the included resources too. The values each type accepts are its \
             searchRevInclude.",
        ),
        "_sort" => (
            T::Special,
            "The order of the matches: parameter codes, comma separated, each preceded by \
             `-` for descending order. Every parameter of the searched types but the \
             composite ones is accepted (see each searchParam).",
        ),
        "_summary" => (
            T::Token,
            "Returns a summary of each match: `true` (the summary elements), `text`, \
             `data`, `count` (only the total) or `false`.",
        ),
        "_total" => (
            T::Token,
            "How the total number of matches is given: `none`, `estimate` or `accurate`.",
        ),
        "_type" => (
            T::Token,
            "System-level search only: the resource types to search, comma separated. \
             Without it every served type is searched, and only the parameters listed here \
             apply.",
        ),
        _ => return None,
    };
    Some(described)
}

/// A `searchParam` entry for `supported` on the type `rtype` (for the common parameters
/// at system level, their base, `Resource`).
fn search_param(supported: &SupportedParam<'_>, rtype: &str) -> Value {
    let param = supported.param;
    let mut entry = json!({
        "name": param.code(),
        "definition": param.url(),
        "type": param.kind().as_str(),
    });
    let documentation = documentation(supported, rtype);
    if let Some(map) = entry.as_object_mut() {
        map.insert("documentation".into(), Value::String(documentation));
    }
    entry
}

/// The definition's description for `rtype`, then what the parser accepts.
fn documentation(supported: &SupportedParam<'_>, rtype: &str) -> String {
    let mut sentences: Vec<String> = Vec::new();
    if let Some(description) = supported.param.description() {
        let description = description_for(description, rtype).trim();
        if !description.is_empty() {
            let stop = if description.ends_with('.') { "" } else { "." };
            sentences.push(format!("{description}{stop}"));
        }
    }
    if !supported.modifiers.is_empty() {
        let modifiers: Vec<String> = supported
            .modifiers
            .iter()
            .map(|m| format!("`:{m}`"))
            .collect();
        sentences.push(format!("Modifiers: {}.", modifiers.join(", ")));
    }
    if !supported.prefixes.is_empty() {
        let prefixes: Vec<String> = supported
            .prefixes
            .iter()
            .map(|p| format!("`{p}`"))
            .collect();
        sentences.push(format!("Prefixes: {}.", prefixes.join(", ")));
    }
    if !supported.chain_targets.is_empty() {
        let targets: Vec<&str> = supported.chain_targets.iter().map(|t| t.as_str()).collect();
        sentences.push(format!(
            "Chains (`{}.parameter`, `{}:Type.parameter`) into: {}.",
            supported.param.code(),
            supported.param.code(),
            targets.join(", ")
        ));
    }
    sentences.push(if supported.sortable {
        "Accepted by `_sort`.".to_string()
    } else {
        "Not accepted by `_sort`.".to_string()
    });
    sentences.join(" ")
}

/// The part of a description that concerns `rtype`. A definition with several bases has
/// one description for all of them: `Multiple Resources:` and a bullet per base,
/// `* [Patient](patient.html): A portion of the family name of the patient`.
fn description_for<'d>(description: &'d str, rtype: &str) -> &'d str {
    if !description.starts_with("Multiple Resources") {
        return description;
    }
    let bullet = format!("* [{rtype}](");
    description
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix(bullet.as_str())?;
            let (_, text) = rest.split_once("):")?;
            Some(text)
        })
        .unwrap_or(description)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn security_names_smart_and_the_oauth_endpoints() {
        let endpoints = Endpoints {
            issuer: "http://kc/realms/fhir".into(),
            authorization: Some("http://kc/auth".into()),
            token: Some("http://kc/token".into()),
            jwks: "http://kc/certs".into(),
            introspection: Some("http://kc/introspect".into()),
            revocation: None,
        };
        let with_uris = security(Some(&endpoints));
        assert_eq!(
            with_uris["service"][0]["coding"][0]["code"],
            "SMART-on-FHIR"
        );
        let uris = &with_uris["extension"][0];
        assert_eq!(
            uris["url"],
            "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
        );
        let names: Vec<&str> = uris["extension"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["url"].as_str())
            .collect();
        assert_eq!(names, ["authorize", "token", "introspect"]);
        assert!(security(None).get("extension").is_none());
    }

    #[test]
    fn every_control_parameter_is_documented() {
        for name in CONTROL_PARAMETERS {
            assert!(
                control_parameter(name).is_some(),
                "{name} has no documentation of its own"
            );
        }
    }

    #[test]
    fn a_shared_description_is_cut_to_the_type() {
        let shared = "Multiple Resources: \r\n\r\n* [Patient](patient.html): A portion of the family name of the patient\r\n* [Practitioner](practitioner.html): A portion of the family name\r\n";
        assert_eq!(
            description_for(shared, "Patient").trim(),
            "A portion of the family name of the patient"
        );
        assert_eq!(
            description_for(shared, "Practitioner").trim(),
            "A portion of the family name"
        );
        assert_eq!(description_for(shared, "Invoice"), shared);
        assert_eq!(description_for("Logical id", "Patient"), "Logical id");
    }

    #[test]
    fn search_support_is_listed_per_type() {
        let registry = Registry::builtin().ok();
        assert!(registry.is_some());
        let patient = resource(registry, ResourceType::Patient, "single", &["literal"]);
        let params = patient["searchParam"].as_array().unwrap();
        let family = params.iter().find(|p| p["name"] == "family").unwrap();
        assert_eq!(family["type"], "string");
        assert_eq!(
            family["definition"],
            "http://hl7.org/fhir/SearchParameter/individual-family"
        );
        let doc = family["documentation"].as_str().unwrap();
        assert!(
            doc.starts_with("A portion of the family name of the patient."),
            "{doc}"
        );
        assert!(doc.contains("`:exact`"), "{doc}");
        assert!(doc.contains("Accepted by `_sort`."), "{doc}");
        let gp = params
            .iter()
            .find(|p| p["name"] == "general-practitioner")
            .unwrap();
        assert!(
            gp["documentation"].as_str().unwrap().contains("into: "),
            "{gp}"
        );
        let system = system_search_params(registry);
        let names: Vec<&str> = system.iter().filter_map(|p| p["name"].as_str()).collect();
        for name in ["_id", "_lastUpdated", "_count", "_type", "_sort"] {
            assert!(names.contains(&name), "{names:?}");
        }
        assert!(!names.contains(&"family"), "{names:?}");
    }

    #[test]
    fn without_a_registry_no_search_support_is_listed() {
        let patient = resource(None, ResourceType::Patient, "single", &["literal"]);
        assert!(patient.get("searchParam").is_none());
        assert!(patient.get("searchInclude").is_none());
        let system = system_search_params(None);
        assert_eq!(system.len(), CONTROL_PARAMETERS.len());
    }
}
