//! fhirbolt's R4 model behind plain functions, text in and text out.
//!
//! fhirbolt's readers and writers are generic over the model; whichever crate calls them
//! compiles the whole R4 model's (de)serialisation code. Calling them from here, through
//! functions that are not generic and never hand out a model value, keeps that code in
//! this crate, compiled once, instead of in every crate that changes often.

use fhirbolt::FhirReleases;
use fhirbolt::element::Element;
use fhirbolt::model::r4::Resource;
use fhirbolt::model::r4::resources::{
    Account, Group, Invoice, Organization, Patient, Practitioner,
};
use fhirbolt::serde::{DeserializationConfig, DeserializationMode, DeserializeResourceOwned};

pub use fhirbolt::json::Error as JsonError;
pub use fhirbolt::xml::Error as XmlError;

fn config(mode: DeserializationMode) -> Option<DeserializationConfig> {
    Some(DeserializationConfig { mode })
}

/// Whether fhirbolt's strict reader accepts `json` as an R4 resource. `resource_type` must be
/// the type its `resourceType` names (the caller has checked it): it picks the reader.
///
/// The verdict is that of the reader of the enum of every resource type, which copies the
/// whole document into a generic tree to find its type before reading it: five times the
/// work for a Patient. A document of a type Ferrum stores is therefore first read by the
/// model of its type, in one pass, and accepted when that succeeds. That reader refuses
/// what the enum's refuses, and more: a `decimal` written as a JSON number, a member given
/// twice. What it refuses is read again through the enum, whose verdict stands.
pub fn check_json(json: &str, resource_type: &str) -> Result<(), JsonError> {
    let direct = match resource_type {
        "Account" => check::<Account>(json),
        "Group" => check::<Group>(json),
        "Invoice" => check::<Invoice>(json),
        "Organization" => check::<Organization>(json),
        "Patient" => check::<Patient>(json),
        "Practitioner" => check::<Practitioner>(json),
        _ => return check::<Resource>(json),
    };
    direct.or_else(|_| check::<Resource>(json))
}

fn check<T: DeserializeResourceOwned>(json: &str) -> Result<(), JsonError> {
    fhirbolt::json::from_str::<T>(json, config(DeserializationMode::Strict)).map(drop)
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
    fn stored_types_get_the_verdict_of_the_enum_reader() {
        let cases = [
            (r#"{"resourceType":"Account","status":"active"}"#, true),
            (r#"{"resourceType":"Account"}"#, false),
            (
                r#"{"resourceType":"Group","type":"person","actual":true,"quantity":3}"#,
                true,
            ),
            (
                r#"{"resourceType":"Group","type":"person","actual":"yes"}"#,
                false,
            ),
            (
                r#"{"resourceType":"Invoice","status":"draft","totalNet":{"value":12.50}}"#,
                true,
            ),
            (
                r#"{"resourceType":"Invoice","status":"draft","totalNet":{"value":true}}"#,
                false,
            ),
            (r#"{"resourceType":"Organization","name":null}"#, false),
            (
                r#"{"resourceType":"Patient","birthDate":"1980","_birthDate":{"id":"b"}}"#,
                true,
            ),
            (
                r#"{"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"id":"g"}]}]}"#,
                true,
            ),
            (r#"{"resourceType":"Patient","robot":1}"#, false),
            (
                r#"{"resourceType":"Patient","active":true,"active":false}"#,
                true,
            ),
            (r#"{"resourceType":"Practitioner","gender":"male"}"#, true),
            (r#"{"resourceType":"Practitioner","gender":1}"#, false),
            (r#"{"resourceType":"Practitioner","active":"true"}"#, true),
            (r#"{"resourceType":"Practitioner","active":"maybe"}"#, false),
        ];
        for (json, valid) in cases {
            let rtype = json.split('"').nth(3).unwrap_or_default();
            let verdict = check_json(json, rtype).is_ok();
            let through_enum = check::<Resource>(json).is_ok();
            assert_eq!((verdict, through_enum), (valid, valid), "{json}");
        }
        // Other types are read through the enum.
        assert!(check_json(r#"{"resourceType":"Basic","code":{"text":"x"}}"#, "Basic").is_ok());
        assert!(check_json(r#"{"resourceType":"Basic"}"#, "Basic").is_err());
    }

    #[test]
    fn reads_and_writes_both_formats() {
        let json = r#"{"resourceType":"Patient","id":"a","active":true}"#;
        assert!(check_json(json, "Patient").is_ok());
        assert!(check_json(r#"{"resourceType":"Patient","robot":1}"#, "Patient").is_err());
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
