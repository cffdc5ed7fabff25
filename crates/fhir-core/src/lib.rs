//! Pure FHIR R4 domain, no I/O: the resource-type registry, ids, validation of incoming
//! resources, and the OperationOutcome and Bundle builders.

pub mod bundle;
pub mod id;
pub mod outcome;
pub mod resource;
pub mod resource_type;
pub mod rules;
pub mod validation;
pub mod xml;

pub use id::{Id, VersionId};
pub use outcome::{Issue, IssueCode, Severity};
pub use resource_type::ResourceType;
