//! OperationOutcome: the one shape every error and warning takes on the wire
//! (http://hl7.org/fhir/R4/operationoutcome.html).

use serde_json::{Value, json};

/// `OperationOutcome.issue.severity` (required binding `issue-severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code` (required binding `issue-type`): the subset Ferrum reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    /// Content invalid against the specification or a profile.
    Invalid,
    /// A structural issue: unknown element, wrong JSON type, malformed JSON.
    Structure,
    /// A required element is missing.
    Required,
    /// An element or header value is invalid.
    Value,
    /// A code is not in the value set it is bound to.
    CodeInvalid,
    /// The resource or interaction is not supported.
    NotSupported,
    /// The resource was not found.
    NotFound,
    /// The resource was deleted.
    Deleted,
    /// Too much content (body over the size limit).
    TooLong,
    /// A version conflict or a business-rule conflict.
    Conflict,
    /// Duplicate value where uniqueness is required.
    Duplicate,
    /// A precondition failed (If-Match).
    BusinessRule,
    /// An unexpected internal error.
    Exception,
    /// The content is processed, with information for the client.
    Informational,
    /// Too costly or too many matches.
    TooCostly,
    /// Not allowed by security settings.
    Forbidden,
    /// Authentication failed or is missing.
    Login,
    /// Refused for load: try again later.
    Throttled,
    /// A transient problem (a service the server needs is unreachable): try again later.
    Transient,
    /// The request could not be carried out (a patch that does not apply).
    Processing,
    /// An invariant (a FHIRPath constraint of a definition or profile) does not hold.
    Invariant,
}

impl IssueCode {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Throttled => "throttled",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::NotSupported => "not-supported",
            IssueCode::NotFound => "not-found",
            IssueCode::Deleted => "deleted",
            IssueCode::TooLong => "too-long",
            IssueCode::Conflict => "conflict",
            IssueCode::Duplicate => "duplicate",
            IssueCode::BusinessRule => "business-rule",
            IssueCode::Exception => "exception",
            IssueCode::Informational => "informational",
            IssueCode::TooCostly => "too-costly",
            IssueCode::Forbidden => "forbidden",
            IssueCode::Login => "login",
            IssueCode::Transient => "transient",
            IssueCode::Processing => "processing",
            IssueCode::Invariant => "invariant",
        }
    }
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    /// Human-readable text; never contains patient data from the request.
    pub diagnostics: String,
    /// FHIRPath of the element at fault (`Patient.name[0].family`), when there is one.
    pub expression: Option<String>,
}

impl Issue {
    /// An error issue without an element.
    pub fn error(code: IssueCode, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    /// An error issue at an element, given as a FHIRPath expression.
    pub fn at(
        code: IssueCode,
        expression: impl Into<String>,
        diagnostics: impl Into<String>,
    ) -> Self {
        Issue {
            expression: Some(expression.into()),
            ..Issue::error(code, diagnostics)
        }
    }

    /// An informational issue.
    pub fn information(diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Information,
            code: IssueCode::Informational,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity.code(),
            "code": self.code.code(),
            "diagnostics": self.diagnostics,
        });
        if let Some(expression) = &self.expression {
            issue["expression"] = json!([expression]);
        }
        issue
    }
}

/// An OperationOutcome resource holding `issues`.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_carries_expression_as_a_list() {
        let outcome = operation_outcome(&[Issue::at(
            IssueCode::Value,
            "Patient.birthDate",
            "not a valid date",
        )]);
        assert_eq!(
            outcome["issue"][0]["expression"],
            json!(["Patient.birthDate"])
        );
        assert_eq!(outcome["issue"][0]["code"], "value");
    }
}
