//! Store errors: the business outcomes a caller must tell apart, and everything else.

use fhir_core::VersionId;
use fhir_core::search::RegistryError;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `If-Match` named another version than the current one (or the resource is absent).
    #[error("version conflict")]
    VersionConflict { current: Option<VersionId> },
    /// A value that must be unique is held by another resource.
    #[error("duplicate value for rule {rule}")]
    Duplicate {
        rule: &'static str,
        /// FHIRPath of the element in the submitted resource.
        expression: String,
    },
    /// A write refers to a resource of this server that does not exist or is deleted
    /// (referential integrity).
    #[error("a reference names a resource that does not exist")]
    DanglingReference {
        /// The target, `Type/id`.
        target: String,
        /// FHIRPath of the `reference` element in the written resource.
        expression: String,
    },
    /// A delete of a resource that current resources refer to (referential integrity).
    #[error("the resource is referred to by other resources")]
    Referenced {
        /// The resource to delete, `Type/id`.
        target: String,
        /// How many current resources refer to it, counted up to
        /// [`crate::REFERRERS_COUNTED`].
        count: usize,
        /// More than `count` refer to it.
        more: bool,
        /// The first of them, `Type/id`, at most [`crate::REFERRERS_NAMED`].
        referrers: Vec<String>,
    },
    /// A conditional interaction matched more than one resource.
    #[error("the condition matched several resources")]
    MultipleMatches,
    /// A conditional update matched a resource other than the one the body's id names.
    #[error("the condition matched a resource with another id")]
    ConditionalIdMismatch,
    /// A search paging cursor this database's servers did not issue for that search.
    #[error("the paging cursor is not valid for this search")]
    BadCursor,
    /// The search parameter definitions do not load.
    #[error("search parameter definitions: {0}")]
    Definitions(#[source] RegistryError),
    /// Schema migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}
