//! Business rules that go beyond the R4 definitions.
//!
//! - A Patient's email (telecom with system `email`) is unique among current Patients: a
//!   rule carried over from the patient service Ferrum replaces.

use serde_json::Value;

/// The name of the Patient email uniqueness rule, as stored with its claims.
pub const PATIENT_EMAIL: &str = "Patient.email";

/// A value a resource claims under a uniqueness rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueValue {
    pub rule: &'static str,
    /// Normalised: trimmed and lower-cased, so `A@x.org` and `a@x.org` collide.
    pub value: String,
    /// FHIRPath of the element holding it.
    pub expression: String,
}

/// The email addresses of a Patient, each once, with the element that holds it.
pub fn patient_emails(patient: &Value) -> Vec<UniqueValue> {
    let mut found: Vec<UniqueValue> = Vec::new();
    let telecoms = patient.get("telecom").and_then(Value::as_array);
    for (i, telecom) in telecoms.into_iter().flatten().enumerate() {
        if telecom.get("system").and_then(Value::as_str) != Some("email") {
            continue;
        }
        let Some(value) = telecom.get("value").and_then(Value::as_str) else {
            continue;
        };
        let value = value.trim().to_lowercase();
        if !value.is_empty() && !found.iter().any(|f| f.value == value) {
            found.push(UniqueValue {
                rule: PATIENT_EMAIL,
                value,
                expression: format!("Patient.telecom[{i}].value"),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_each_email_once_normalised() {
        let patient = json!({"resourceType": "Patient", "telecom": [
            {"system": "phone", "value": "555"},
            {"system": "email", "value": " Ann@Example.org "},
            {"system": "email", "value": "ann@example.org"},
            {"system": "email"},
        ]});
        let emails = patient_emails(&patient);
        assert_eq!(emails.len(), 1);
        assert_eq!(emails[0].value, "ann@example.org");
        assert_eq!(emails[0].expression, "Patient.telecom[1].value");
    }
}
