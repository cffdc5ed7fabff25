//! Patches of a resource's JSON (http://hl7.org/fhir/R4/http.html#patch): JSON Patch
//! (RFC 6902) and FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html), read from a request
//! and applied all of it or nothing.
//!
//! Reading fails with [`PatchError::Invalid`] when the document is not a patch of its kind;
//! applying fails with [`PatchError::NotApplicable`] when an operation does not fit the
//! resource at hand. Neither quotes a value of the patch or of the resource (either may be
//! patient data): they name the operation by its position and, for FHIRPath Patch, its path.
//! The patched resource is not checked here: the caller validates it as any write.
//!
//! FHIRPath Patch, as applied here:
//!
//! - the path is an expression of the FHIRPath subset of [`crate::fhirpath`]; it must select
//!   elements of the resource (not computed values);
//! - `add` needs the path to select one complex element (or the resource), and adds the
//!   element `name` to it: appended when it repeats, set when it does not and has no value
//!   yet; a choice element (`deceased`) takes the JSON name of the value's type
//!   (`deceasedBoolean`);
//! - `insert` and `move` need the path to select items of one list (a repeating element,
//!   `Patient.identifier`); the index counts in that whole list, 0-based; `insert` accepts an
//!   index up to the list's length, `move` takes the item out of `source` and puts it at
//!   `destination`;
//! - `replace` needs the path to select one element, and replaces it whole (its `id` and
//!   extensions too);
//! - `delete` removes the one element the path selects; a path that selects nothing deletes
//!   nothing (the specification makes this the one operation for which no match is not an
//!   error). An element left empty by a delete is removed too;
//! - the value is a `value[x]` (with its `_value[x]` for a primitive's id and extensions), a
//!   `resource`, or, for any complex element and for anonymous elements
//!   (`Patient.contact`), `part`s named after its child elements, each holding a value the
//!   same way. A complex value must be of the element's type (or a specialisation: `Age`
//!   for `Quantity`). A primitive value goes into an element of its own type (for a choice
//!   element, the type it names) or into any element of a single primitive type
//!   (`valueString` for `Narrative.div`); its format is checked with the rest of the result;
//! - a primitive's extensions live in its `_name` companion, kept aligned with the list
//!   items when items are inserted, moved or deleted.
//!
//! Elements the FHIRPath subset cannot select (a primitive that has only extensions) cannot
//! be the target of an operation.

mod apply;
mod parameters;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::fhirpath::EvalError;

pub use parameters::FhirPathPatch;

/// A patch read from a request, ready to apply.
#[derive(Debug, Clone)]
pub enum Patch {
    /// A JSON Patch document (RFC 6902, `application/json-patch+json`).
    Json(json_patch::Patch),
    /// A FHIRPath Patch (a Parameters resource).
    FhirPath(FhirPathPatch),
}

/// A patch that cannot be read, or does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The document is not a patch of its kind: a request to refuse (400). `at` is where in
    /// the document, as a FHIRPath (`Parameters.parameter[1].part[0]`), when it is known.
    #[error("{}{message}", at.as_ref().map(|at| format!("{at}: ")).unwrap_or_default())]
    Invalid { at: Option<String>, message: String },
    /// Operation `operation` (0-based) does not apply to the resource (422). `path` is the
    /// operation's FHIRPath, for a FHIRPath Patch.
    #[error(
        "operation {operation}{}: {failure}",
        path.as_ref().map(|path| format!(" (`{path}`)")).unwrap_or_default()
    )]
    NotApplicable {
        operation: usize,
        path: Option<String>,
        failure: Failure,
    },
}

/// Why an operation does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// `add`, `insert`, `replace` or `move` whose path selects nothing.
    #[error("the path selects no element")]
    NoMatch,
    /// An operation on one element whose path selects several.
    #[error("the path selects more than one element")]
    SeveralMatches,
    /// The path selects a computed value (`exists()`, a literal), not an element.
    #[error("the path selects something that is not an element of the resource")]
    NotAnElement,
    /// `insert` or `move` whose path selects a non-repeating element.
    #[error("the path does not select the items of a list (a repeating element)")]
    NotAList,
    /// `insert` or `move` whose path selects items of two lists.
    #[error("the path selects the items of more than one list")]
    SeveralLists,
    /// An `index`, `source` or `destination` beyond the list.
    #[error("the index is outside the list")]
    IndexOutOfRange,
    /// `add` of a non-repeating element that already has a value.
    #[error("the element to add does not repeat and already has a value")]
    AlreadyPresent,
    /// `add` of an element (or a value part) the target's definition does not have.
    #[error("the element named is not defined there")]
    UnknownElement,
    /// A value whose type does not fit the element.
    #[error("the value's type does not fit the element")]
    WrongType,
    /// `delete` or `replace` of the resource itself.
    #[error("the resource itself cannot be deleted or replaced")]
    WholeResource,
    /// `add` to a primitive element.
    #[error("the path selects a primitive element, which has no child elements")]
    Primitive,
    /// The element's type is not one the definitions describe.
    #[error("the definition of the element is not known")]
    Undefined,
    /// The path cannot be evaluated on the resource.
    #[error(transparent)]
    Eval(EvalError),
    /// A JSON Patch operation failed; the reason as the `json-patch` crate gives it (it
    /// quotes no values).
    #[error("{0}")]
    JsonPatch(String),
}

impl Patch {
    /// Reads a JSON Patch document.
    pub fn json(body: &[u8]) -> Result<Self, PatchError> {
        serde_json::from_slice(body)
            .map(Patch::Json)
            .map_err(|_| PatchError::Invalid {
                at: None,
                message: "the body is not a JSON Patch (an array of operations)".into(),
            })
    }

    /// Reads a FHIRPath Patch from its Parameters resource.
    pub fn fhirpath(parameters: &Value) -> Result<Self, PatchError> {
        FhirPathPatch::from_parameters(parameters).map(Patch::FhirPath)
    }

    /// Applies the patch to `resource`: every operation, in order, or none (on error
    /// `resource` is left as it was).
    pub fn apply(&self, resource: &mut Value) -> Result<(), PatchError> {
        match self {
            Patch::Json(operations) => {
                json_patch::patch(resource, operations).map_err(|error| PatchError::NotApplicable {
                    operation: error.operation,
                    path: None,
                    failure: Failure::JsonPatch(error.kind.to_string()),
                })
            }
            Patch::FhirPath(patch) => patch.apply(resource),
        }
    }
}
