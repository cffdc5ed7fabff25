//! PLACEHOLDER (to be replaced by the profile-driven validator).
use crate::outcome::Issue;
pub fn validate(_resource: &serde_json::Value) -> Vec<Issue> {
    Vec::new()
}
pub fn parse_strict(json_text: &str) -> Result<fhirbolt::model::r4::Resource, Issue> {
    let config = fhirbolt::serde::DeserializationConfig {
        mode: fhirbolt::serde::DeserializationMode::Strict,
    };
    fhirbolt::json::from_str(json_text, Some(config))
        .map_err(|_| Issue::error(crate::outcome::IssueCode::Structure, "invalid"))
}
