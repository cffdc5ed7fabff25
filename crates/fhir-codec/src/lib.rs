//! fhirbolt's R4 model behind plain functions, text in and text out.
//!
//! fhirbolt's readers and writers are generic over the model; whichever crate calls them
//! compiles the whole R4 model's (de)serialisation code. Calling them from here, through
//! functions that are not generic and never hand out a model value, keeps that code in
//! this crate, compiled once, instead of in every crate that changes often.

use fhirbolt::FhirReleases;
use fhirbolt::element::Element;
use fhirbolt::model::r4::Resource;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};

pub use fhirbolt::json::Error as JsonError;
pub use fhirbolt::xml::Error as XmlError;

fn config(mode: DeserializationMode) -> Option<DeserializationConfig> {
    Some(DeserializationConfig { mode })
}

/// Whether fhirbolt's strict reader accepts `json` as an R4 resource.
pub fn check_json(json: &str) -> Result<(), JsonError> {
    fhirbolt::json::from_str::<Resource>(json, config(DeserializationMode::Strict)).map(drop)
}

/// An R4 resource in XML, read strictly, written as FHIR JSON.
pub fn xml_to_json(xml: &str) -> Result<Result<String, JsonError>, XmlError> {
    let resource: Resource = fhirbolt::xml::from_str(xml, config(DeserializationMode::Strict))?;
    Ok(fhirbolt::json::to_string(&resource, None))
}

/// An XML document read leniently into fhirbolt's generic element tree and written as
/// JSON: unknown elements are kept, so that a validator can name them. `None` when the
/// document cannot be read even so.
pub fn xml_to_json_lenient(xml: &str) -> Option<String> {
    let element: Element<{ FhirReleases::R4 }> =
        fhirbolt::xml::from_str(xml, config(DeserializationMode::Lax)).ok()?;
    fhirbolt::json::to_string(&element, None).ok()
}

/// An R4 resource in FHIR JSON, written as FHIR XML (with fhirbolt's XML declaration).
pub fn json_to_xml(json: &str) -> Result<Result<String, XmlError>, JsonError> {
    let resource: Resource = fhirbolt::json::from_str(json, None)?;
    Ok(fhirbolt::xml::to_string(&resource, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_both_formats() {
        let json = r#"{"resourceType":"Patient","id":"a","active":true}"#;
        assert!(check_json(json).is_ok());
        assert!(check_json(r#"{"resourceType":"Patient","robot":1}"#).is_err());
        let xml = json_to_xml(json)
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        assert!(xml.contains(r#"<active value="true"/>"#), "{xml}");
        let back = xml_to_json(&xml)
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        assert!(back.contains(r#""active":true"#), "{back}");
        let lenient = xml_to_json_lenient(&xml.replace("active", "robot")).unwrap_or_default();
        assert!(lenient.contains("robot"), "{lenient}");
    }
}
