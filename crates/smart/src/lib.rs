//! The pure core of SMART on FHIR authorisation (SMART App Launch 2.2,
//! <http://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html>): a token's `scope`
//! claim parsed into [`Scopes`], the [`Permissions`] they grant per resource type and
//! [`Interaction`], and the Patient compartment that confines `patient/` scopes. No I/O: the
//! server validates the token, then asks [`Permissions::grants`] before each interaction.
//!
//! ```
//! use fhir_core::ResourceType;
//! use smart::{Grant, Interaction, Permissions, RestInteraction, Scopes};
//!
//! let scopes = Scopes::parse("openid launch/patient patient/*.rs patient/Invoice.x");
//! assert_eq!(scopes.ignored().len(), 1); // `.x` is not a permission
//! let patient = "p1".parse().ok();
//! let permissions = Permissions::new(scopes.into_resource(), patient);
//!
//! let vread = RestInteraction::Vread.interaction();
//! match permissions.grants(ResourceType::Invoice, vread) {
//!     Grant::Denied => unreachable!("patient/*.rs reads Invoices"),
//!     Grant::Unrestricted => unreachable!("only the patient's own"),
//!     Grant::Restricted(conditions) => {
//!         assert_eq!(conditions[0].compartment().map(|id| id.as_str()), Some("p1"));
//!     }
//! }
//! assert!(!permissions.allows(ResourceType::Invoice, Interaction::Create));
//! ```
//!
//! The rules and their reasons are in `docs/authorization.md` and the module documentation:
//! [`scope`] (grammar), [`interaction`] (letters), [`permissions`] (union, levels,
//! constraints), [`compartment`] (which resources belong to a patient).

pub mod compartment;
pub mod interaction;
pub mod permissions;
pub mod scope;

pub use compartment::{
    Membership, in_patient_compartment, patient_compartment, patient_compartment_params,
};
pub use interaction::{Interaction, RestInteraction, UnknownInteraction};
pub use permissions::{Condition, Grant, Permissions};
pub use scope::{
    Constraint, ContextScope, Cruds, IgnoredScope, Level, ResourceScope, Scope, ScopeError, Scopes,
    Target,
};
