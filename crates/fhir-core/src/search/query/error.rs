//! Why a search parameter was refused or left out. An error names the parameter as written
//! (`subject:Patient.name`) and never quotes its value: values can hold patient data.
//!
//! | problem | lenient | strict | issue code |
//! |---|---|---|---|
//! | `UnknownParameter`, `UnsupportedParameter`, `UnknownModifier`, `UnsupportedModifier`, `UnservedType` | ignored, listed | 400 | `not-supported` |
//! | `EmptyValue` | ignored, listed | 400 | `value` |
//! | `InvalidValue` | 400 | 400 | `value` |
//! | `Invalid`, `Repeated` | 400 | 400 | `invalid` |

use crate::outcome::{Issue, IssueCode, Severity};
use crate::resource_type::ResourceType;

/// Longest parameter name quoted in a message; longer names are cut.
const MAX_NAME: usize = 100;

/// A search parameter that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("search parameter `{param}`: {problem}")]
pub struct SearchError {
    /// The parameter name as written, with its modifiers and chain (at most 100 characters).
    pub param: String,
    pub problem: Problem,
}

/// What is wrong with a parameter. Every text a variant holds comes from the parameter's
/// name or from the registry, never from its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// No such parameter on the type (for a system-level search: on one of the types).
    #[error("unknown search parameter{}", on_type(*resource_type))]
    UnknownParameter { resource_type: Option<ResourceType> },
    /// A parameter this server knows but does not implement (`_text`, `_filter`,
    /// `_contained`, ...), or one that cannot be sorted by.
    #[error("not supported by this server")]
    UnsupportedParameter,
    /// A modifier no parameter of this type has.
    #[error("unknown modifier `:{modifier}`")]
    UnknownModifier { modifier: String },
    /// A modifier of the specification this server does not implement for this parameter
    /// (`:in`, `:below` on tokens).
    #[error("modifier `:{modifier}` is not supported on this parameter")]
    UnsupportedModifier { modifier: String },
    /// A resource type this server does not store (in `_type`, a chain, `_has` or an
    /// include).
    #[error("names a resource type this server does not store")]
    UnservedType,
    /// No value.
    #[error("no value")]
    EmptyValue,
    /// A value that does not parse as the parameter's type.
    #[error("malformed value: expected {expected}")]
    InvalidValue { expected: &'static str },
    /// A chain, `_has` or target type that cannot be resolved.
    #[error("{reason}")]
    Invalid { reason: String },
    /// A result parameter that may be given once, given more than once.
    #[error("given more than once")]
    Repeated,
}

fn on_type(resource_type: Option<ResourceType>) -> String {
    resource_type
        .map(|t| format!(" on {t}"))
        .unwrap_or_default()
}

impl Problem {
    /// Whether lenient handling leaves the parameter out instead of failing.
    pub fn is_ignorable(&self) -> bool {
        matches!(
            self,
            Problem::UnknownParameter { .. }
                | Problem::UnsupportedParameter
                | Problem::UnknownModifier { .. }
                | Problem::UnsupportedModifier { .. }
                | Problem::UnservedType
                | Problem::EmptyValue
        )
    }

    /// The OperationOutcome issue code.
    pub fn issue_code(&self) -> IssueCode {
        match self {
            Problem::EmptyValue | Problem::InvalidValue { .. } => IssueCode::Value,
            Problem::Invalid { .. } | Problem::Repeated => IssueCode::Invalid,
            _ => IssueCode::NotSupported,
        }
    }
}

impl SearchError {
    pub(super) fn new(param: &str, problem: Problem) -> Self {
        let param = match param.char_indices().nth(MAX_NAME) {
            Some((at, _)) => format!("{}…", &param[..at]),
            None => param.to_string(),
        };
        SearchError { param, problem }
    }

    /// Whether lenient handling leaves the parameter out instead of failing.
    pub fn is_ignorable(&self) -> bool {
        self.problem.is_ignorable()
    }

    /// The issue of a 400 response.
    pub fn to_issue(&self) -> Issue {
        Issue::error(self.problem.issue_code(), self.to_string())
    }

    /// The warning for a parameter lenient handling left out.
    pub fn to_warning(&self) -> Issue {
        Issue {
            severity: Severity::Warning,
            code: self.problem.issue_code(),
            diagnostics: format!("{self}; the parameter was ignored"),
            expression: None,
        }
    }
}
