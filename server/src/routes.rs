//! The route table: every URL the server answers, and the interactions it therefore
//! declares in its CapabilityStatement.
//!
//! | method | path                              | interaction        |
//! |--------|-----------------------------------|--------------------|
//! | GET    | /                                 | search-system      |
//! | POST   | /                                 | batch, transaction (a Bundle) |
//! | POST   | /_search                          | search-system      |
//! | GET, POST | /$export, /Patient/$export, /Group/[id]/$export | Bulk Data export kick-off |
//! | GET, DELETE | /$export-status/[job]           | export status, cancel |
//! | GET    | /$export-file/[job]/[file]        | an export's NDJSON file |
//! | POST   | /[type]/$validate                 | operation `validate` of a resource sent |
//! | GET, POST | /[type]/[id]/$validate         | operation `validate`: the stored version, or an update or delete |
//! | GET    | /metadata                         | capabilities       |
//! | GET    | /.well-known/smart-configuration  | SMART discovery (JSON) |
//! | GET    | /_history                         | history-system     |
//! | GET    | /$analytics                       | operation `analytics`: MeasureReports (a Bundle) |
//! | GET    | /$analytics.json                  | the same reports as JSON |
//! | GET    | /$analytics.html, /$analytics.js  | the dashboard page and its script |
//! | GET    | /[type]                           | search-type        |
//! | POST   | /[type]                           | create             |
//! | PUT    | /[type]?search                    | conditional update |
//! | DELETE | /[type]?search                    | conditional delete |
//! | GET, POST | /[type]/_search                | search-type        |
//! | GET    | /[type]/_history                  | history-type       |
//! | GET    | /[type]/[id]                      | read               |
//! | PUT    | /[type]/[id]                      | update             |
//! | PATCH  | /[type]/[id]                      | patch (JSON Patch) |
//! | DELETE | /[type]/[id]                      | delete             |
//! | GET    | /[type]/[id]/_history             | history-instance   |
//! | GET    | /[type]/[id]/_history/[vid]       | vread              |
//! | GET, POST | /Patient/$everything, /Patient/[id]/$everything | operation `everything`: a patient's record (a Bundle) |
//!
//! All of them live under the path of `FHIR_BASE_URL`; `/health` sits outside it.
//!
//! Access (for the SMART guard): `/metadata` and `/.well-known/smart-configuration` are public; the analytics reports need read
//! access to `MeasureReport` in a `system/` or `user/` scope
//! ([`analytics::SCOPE_RESOURCE_TYPE`]); the dashboard page and script hold no data;
//! every other route needs the scope of its resource type and interaction.

use std::collections::HashMap;

use axum::Router;
use axum::extract::Path;
use axum::routing::{MethodRouter, get, post};
use fhir_core::ResourceType;

use crate::error::ApiError;
use crate::interaction::{
    analytics, capabilities, create, delete, everything, export, history, patch, read, search,
    smart_configuration, transaction, update, validate, vread,
};
use crate::state::AppState;

/// Type-level interaction codes served for every type in the registry.
pub const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

/// System-level interaction codes served.
pub const SYSTEM_INTERACTIONS: &[&str] =
    &["transaction", "batch", "history-system", "search-system"];

/// System-level operations served: name and the canonical URL of their definition.
pub const SYSTEM_OPERATIONS: &[(&str, &str)] = &[
    ("analytics", "urn:ferrum:OperationDefinition:analytics"),
    (
        "export",
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    ),
];

/// 405 on a known route, but 404 when the path names a type the server does not serve.
async fn method_not_allowed(Path(params): Path<HashMap<String, String>>) -> ApiError {
    match params.get("type") {
        Some(name) if name.parse::<ResourceType>().is_err() => ApiError::UnknownType,
        _ => ApiError::MethodNotAllowed,
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("this URL".into())
}

fn answer_405(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(method_not_allowed)
}

/// The FHIR routes, relative to the base path.
pub fn fhir_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            answer_405(get(search::system_get).post(transaction::transaction)),
        )
        .route(
            "/_search",
            answer_405(get(search::system_get).post(search::system_post)),
        )
        .route(
            "/.well-known/smart-configuration",
            answer_405(get(smart_configuration::smart_configuration)),
        )
        .route(
            "/$export",
            answer_405(get(export::system).post(export::system)),
        )
        .route(
            "/$export-status/{id}",
            answer_405(get(export::status).delete(export::cancel)),
        )
        .route("/$export-file/{id}/{file}", answer_405(get(export::file)))
        .route(
            "/{type}/$export",
            answer_405(get(export::patient).post(export::patient)),
        )
        .route(
            "/{type}/{id}/$export",
            answer_405(get(export::group).post(export::group)),
        )
        .route(
            "/{type}/$everything",
            answer_405(get(everything::type_level).post(everything::type_level)),
        )
        .route(
            "/{type}/{id}/$everything",
            answer_405(get(everything::instance).post(everything::instance)),
        )
        .route("/{type}/$validate", answer_405(post(validate::type_level)))
        .route(
            "/{type}/{id}/$validate",
            answer_405(get(validate::instance_get).post(validate::instance_post)),
        )
        .route("/metadata", answer_405(get(capabilities::capabilities)))
        .route("/_history", answer_405(get(history::system)))
        .route("/$analytics", answer_405(get(analytics::measure_reports)))
        .route("/$analytics.json", answer_405(get(analytics::json)))
        .route("/$analytics.html", answer_405(get(analytics::dashboard)))
        .route(
            "/$analytics.js",
            answer_405(get(analytics::dashboard_script)),
        )
        .route(
            "/{type}",
            answer_405(
                get(search::type_get)
                    .post(create::create)
                    .put(update::conditional)
                    .delete(delete::conditional),
            ),
        )
        .route(
            "/{type}/_search",
            answer_405(get(search::type_get).post(search::type_post)),
        )
        .route("/{type}/_history", answer_405(get(history::type_level)))
        .route(
            "/{type}/{id}",
            answer_405(
                get(read::read)
                    .put(update::update)
                    .patch(patch::patch)
                    .delete(delete::delete),
            ),
        )
        .route("/{type}/{id}/_history", answer_405(get(history::instance)))
        .route("/{type}/{id}/_history/{vid}", answer_405(get(vread::vread)))
        .fallback(not_found)
}
