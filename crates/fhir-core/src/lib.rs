//! Pure FHIR R4 domain, no I/O: the resource-type registry, ids, validation of incoming
//! resources, the FHIRPath subset and the SearchParameter registry that turns resources into
//! search index values, JSON Patch and FHIRPath Patch, and the OperationOutcome and Bundle
//! builders.

pub mod bundle;
pub mod fhirpath;
pub mod id;
mod members;
pub mod outcome;
pub mod patch;
pub mod reference;
pub mod resource;
pub mod resource_type;
pub mod rules;
pub mod search;
pub mod subset;
pub mod validation;
pub mod xml;

pub use id::{Id, VersionId};
pub use outcome::{Issue, IssueCode, Severity};
pub use resource_type::ResourceType;
