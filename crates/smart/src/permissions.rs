//! What a token's resource scopes grant: [`Permissions::grants`] answers, for one resource type
//! and [`Interaction`], whether a request may go ahead and on which resources ([`Grant`]).
//!
//! What one scope grants on a type it names, for an interaction it has the letter of:
//!
//! | scope level | type in the Patient compartment (Patient, Account, Invoice, Group) | type outside it (Organization, Practitioner) |
//! |---|---|---|
//! | `system/`, `user/` | every resource | every resource |
//! | `patient/`, patient in context | the resources in that patient's compartment | `r`, `s`: every resource; `c`, `u`, `d`: nothing |
//! | `patient/`, no patient in context | nothing | nothing |
//!
//! The reasons for the second column are in [`compartment`](crate::compartment). On a type
//! Ferrum does not store, which only an operation returns, `system/` and `user/` scopes grant
//! as above and `patient/` scopes nothing ([`Permissions::grants_unstored`]).
//!
//! A scope's `?` constraints narrow what it grants to the resources matching all of them.
//! `user/` means "what the user may see": Ferrum has no per-user access rules beneath the
//! scopes, so the authorisation server decides which users get which `user/` scopes.
//!
//! Scopes are a union. Each granting scope contributes one [`Condition`] (a compartment, its
//! constraints, both, or neither); a resource is granted when it meets any of them. A
//! condition with neither makes the grant [`Grant::Unrestricted`]; a condition implied by
//! another (narrower or equal) is dropped, so `patient/Invoice.rs user/Invoice.rs` is
//! unrestricted and `user/Invoice.s?status=issued user/Invoice.s?status=issued&type=x` keeps
//! only `status=issued`.
//!
//! How the server applies a [`Grant::Restricted`] grant:
//!
//! - search and history: add the conditions to the query (OR between conditions, AND inside
//!   one), in SQL, before paging;
//! - read, vread, instance history: the resource must meet a condition, else answer as if it
//!   did not exist (404), so as not to reveal it;
//! - create: the new resource must meet a condition;
//! - update, patch, delete: the stored resource must meet a condition, and for update and
//!   patch the new content too (else a write could move a resource out of the compartment);
//! - a condition the server cannot evaluate refuses the request; evaluating fewer of the OR'd
//!   conditions is safe (it grants less), ignoring a constraint or a compartment is not.

use fhir_core::{Id, ResourceType};

use crate::compartment::in_patient_compartment;
use crate::interaction::Interaction;
use crate::scope::{Constraint, Level, ResourceScope};

/// One way a resource can be granted: in a patient's compartment, matching constraints, or
/// both. Never neither (that is [`Grant::Unrestricted`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Condition {
    compartment: Option<Id>,
    constraints: Vec<Constraint>,
}

impl Condition {
    /// The patient whose compartment the resource must be in (see
    /// [`patient_compartment`](crate::patient_compartment)); `None`: any resource of the type.
    pub fn compartment(&self) -> Option<&Id> {
        self.compartment.as_ref()
    }

    /// Search criteria the resource must match, all of them (AND); empty: none.
    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    /// Whether every resource meeting `other` meets `self` too: `self` asks for the same
    /// compartment or none, and for a subset of `other`'s constraints.
    fn implied_by(&self, other: &Condition) -> bool {
        let compartment = self.compartment.is_none() || self.compartment == other.compartment;
        compartment
            && self
                .constraints
                .iter()
                .all(|c| other.constraints.contains(c))
    }
}

/// Whether, and on which resources of a type, an interaction is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// No scope grants it: the server answers 403.
    Denied,
    /// Allowed on every resource of the type.
    Unrestricted,
    /// Allowed on the resources that meet at least one of the conditions. Never empty, and no
    /// condition is implied by another.
    Restricted(Vec<Condition>),
}

impl Grant {
    /// Whether the interaction is allowed on at least some resources.
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Grant::Denied)
    }

    /// Whether the interaction is allowed on every resource of the type.
    pub fn is_unrestricted(&self) -> bool {
        matches!(self, Grant::Unrestricted)
    }

    /// The conditions of a restricted grant; empty for the other two.
    pub fn conditions(&self) -> &[Condition] {
        match self {
            Grant::Restricted(conditions) => conditions,
            Grant::Denied | Grant::Unrestricted => &[],
        }
    }

    /// The union of the conditions the granting scopes contribute, reduced: an unconditional
    /// one wins, implied ones go, duplicates go.
    fn union(conditions: impl IntoIterator<Item = Condition>) -> Grant {
        let mut kept: Vec<Condition> = Vec::new();
        for condition in conditions {
            if condition.compartment.is_none() && condition.constraints.is_empty() {
                return Grant::Unrestricted;
            }
            if kept.iter().any(|k| k.implied_by(&condition)) {
                continue;
            }
            kept.retain(|k| !condition.implied_by(k));
            kept.push(condition);
        }
        if kept.is_empty() {
            Grant::Denied
        } else {
            Grant::Restricted(kept)
        }
    }
}

/// The resource scopes of one token, with the patient in context: what the token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    scopes: Vec<ResourceScope>,
    patient: Option<Id>,
}

impl Permissions {
    /// The permissions of a token carrying `scopes` ([`Scopes::resource`](crate::Scopes::resource))
    /// and, for `patient/` scopes, the patient in context (the token response's `patient`,
    /// which Ferrum reads from a claim).
    pub fn new(scopes: impl IntoIterator<Item = ResourceScope>, patient: Option<Id>) -> Self {
        Permissions {
            scopes: scopes.into_iter().collect(),
            patient,
        }
    }

    /// The patient in context, if any.
    pub fn patient(&self) -> Option<&Id> {
        self.patient.as_ref()
    }

    /// The resource scopes the permissions were built from.
    pub fn scopes(&self) -> &[ResourceScope] {
        &self.scopes
    }

    /// Whether, and on which resources, `interaction` is allowed on `rtype`.
    pub fn grants(&self, rtype: ResourceType, interaction: Interaction) -> Grant {
        Grant::union(
            self.scopes
                .iter()
                .filter(|scope| scope.covers(rtype, interaction))
                .filter_map(|scope| self.condition(scope, rtype, interaction)),
        )
    }

    /// Whether `interaction` is allowed on at least some resources of `rtype`.
    pub fn allows(&self, rtype: ResourceType, interaction: Interaction) -> bool {
        self.grants(rtype, interaction).is_allowed()
    }

    /// What the token grants on a type Ferrum does not store but an operation returns, by name
    /// (`MeasureReport` from `$analytics`). Only `system/` and `user/` scopes count, `*`
    /// included: whether such resources belong to a patient is unknown, so `patient/` scopes
    /// grant nothing on them. Constraints are kept as conditions. For the name of a stored
    /// type this is [`Permissions::grants`].
    pub fn grants_unstored(&self, type_name: &str, interaction: Interaction) -> Grant {
        if let Ok(rtype) = type_name.parse() {
            return self.grants(rtype, interaction);
        }
        Grant::union(
            self.scopes
                .iter()
                .filter(|scope| {
                    scope.level() != Level::Patient
                        && scope.target().covers_name(type_name)
                        && scope.cruds().contains(interaction)
                })
                .map(|scope| Condition {
                    compartment: None,
                    constraints: scope.constraints().to_vec(),
                }),
        )
    }

    /// The types a system-level search or history may return, each with its search grant, in
    /// [`ResourceType::ALL`] order. Types left out must not appear in the results; with none, the
    /// request is refused.
    pub fn types_searchable(&self) -> Vec<(ResourceType, Grant)> {
        ResourceType::ALL
            .into_iter()
            .map(|rtype| (rtype, self.grants(rtype, Interaction::Search)))
            .filter(|(_, grant)| grant.is_allowed())
            .collect()
    }

    /// The types a bulk export (`$export`) may write out: those on which both read and search
    /// are unrestricted (e.g. `system/*.rs`), in [`ResourceType::ALL`] order. Patient-level and
    /// constrained grants do not allow export.
    pub fn exportable_types(&self) -> Vec<ResourceType> {
        ResourceType::ALL
            .into_iter()
            .filter(|&rtype| {
                self.grants(rtype, Interaction::Read).is_unrestricted()
                    && self.grants(rtype, Interaction::Search).is_unrestricted()
            })
            .collect()
    }

    /// What one scope that names `rtype` and has the letter for `interaction` grants, or
    /// `None` when it grants nothing after all (the rules of the module documentation).
    fn condition(
        &self,
        scope: &ResourceScope,
        rtype: ResourceType,
        interaction: Interaction,
    ) -> Option<Condition> {
        let compartment = match scope.level() {
            Level::System | Level::User => None,
            Level::Patient => {
                // Patient-level scopes mean nothing without a patient.
                let patient = self.patient.as_ref()?;
                if in_patient_compartment(rtype) {
                    Some(patient.clone())
                } else if matches!(interaction, Interaction::Read | Interaction::Search) {
                    None
                } else {
                    return None;
                }
            }
        };
        Some(Condition {
            compartment,
            constraints: scope.constraints().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::scope::Scopes;
    use Interaction::*;
    use ResourceType::*;

    fn id(text: &str) -> Id {
        text.parse().unwrap()
    }

    fn permissions(scope: &str, patient: Option<&str>) -> Permissions {
        let scopes = Scopes::parse(scope);
        assert!(scopes.ignored().is_empty(), "{:?}", scopes.ignored());
        Permissions::new(scopes.into_resource(), patient.map(id))
    }

    /// A condition as (compartment, [(name, value)]), for readable assertions.
    type Readable<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>);

    fn conditions(grant: &Grant) -> Vec<Readable<'_>> {
        assert!(matches!(grant, Grant::Restricted(_)), "{grant:?}");
        grant
            .conditions()
            .iter()
            .map(|c| {
                (
                    c.compartment().map(Id::as_str),
                    c.constraints()
                        .iter()
                        .map(|k| (k.name(), k.value()))
                        .collect(),
                )
            })
            .collect()
    }

    fn compartment_only(patient: &str) -> Vec<Readable<'_>> {
        vec![(Some(patient), vec![])]
    }

    #[test]
    fn no_scopes_grant_nothing() {
        let none = permissions("", Some("p1"));
        for rtype in ResourceType::ALL {
            for interaction in Interaction::ALL {
                assert_eq!(none.grants(rtype, interaction), Grant::Denied);
                assert!(!none.allows(rtype, interaction));
            }
        }
        assert!(none.types_searchable().is_empty());
        assert!(none.exportable_types().is_empty());
    }

    #[test]
    fn user_and_system_scopes_are_unrestricted() {
        for level in ["user", "system"] {
            let p = permissions(&format!("{level}/Invoice.rs"), Some("p1"));
            assert_eq!(p.grants(Invoice, Read), Grant::Unrestricted);
            assert_eq!(p.grants(Invoice, Search), Grant::Unrestricted);
            for interaction in [Create, Update, Delete] {
                assert_eq!(p.grants(Invoice, interaction), Grant::Denied);
            }
            assert_eq!(p.grants(Account, Read), Grant::Denied);
            // No patient needed.
            let p = permissions(&format!("{level}/Invoice.rs"), None);
            assert!(p.grants(Invoice, Read).is_unrestricted());
        }
    }

    #[test]
    fn patient_scopes_confine_compartment_types_to_the_patient() {
        let p = permissions("patient/*.cruds", Some("p1"));
        assert_eq!(p.patient(), Some(&id("p1")));
        for rtype in [Patient, Account, Invoice, Group] {
            for interaction in Interaction::ALL {
                assert_eq!(
                    conditions(&p.grants(rtype, interaction)),
                    compartment_only("p1"),
                    "{rtype} {interaction}"
                );
            }
        }
    }

    #[test]
    fn patient_scopes_read_and_search_types_outside_the_compartment() {
        let p = permissions("patient/*.cruds", Some("p1"));
        for rtype in [Organization, Practitioner] {
            assert_eq!(p.grants(rtype, Read), Grant::Unrestricted, "{rtype}");
            assert_eq!(p.grants(rtype, Search), Grant::Unrestricted, "{rtype}");
            for interaction in [Create, Update, Delete] {
                assert_eq!(p.grants(rtype, interaction), Grant::Denied, "{rtype}");
            }
        }
        let p = permissions("patient/Organization.rs?active=true", Some("p1"));
        assert_eq!(
            conditions(&p.grants(Organization, Search)),
            vec![(None, vec![("active", "true")])]
        );
        assert_eq!(p.grants(Practitioner, Search), Grant::Denied);
    }

    #[test]
    fn patient_scopes_without_a_patient_grant_nothing() {
        let p = permissions("patient/*.cruds launch/patient", None);
        for rtype in ResourceType::ALL {
            for interaction in Interaction::ALL {
                assert_eq!(p.grants(rtype, interaction), Grant::Denied);
            }
        }
        // Other levels in the same token still count.
        let p = permissions("patient/*.rs user/Account.r", None);
        assert_eq!(p.grants(Account, Read), Grant::Unrestricted);
        assert_eq!(p.grants(Account, Search), Grant::Denied);
    }

    #[test]
    fn scopes_are_a_union_per_interaction() {
        let p = permissions("patient/Patient.r user/Patient.s", Some("p1"));
        assert_eq!(conditions(&p.grants(Patient, Read)), compartment_only("p1"));
        assert_eq!(p.grants(Patient, Search), Grant::Unrestricted);
        assert_eq!(p.grants(Patient, Update), Grant::Denied);

        // `rs` is the same as `r` plus `s`.
        let split = permissions("user/Invoice.r user/Invoice.s", None);
        let joined = permissions("user/Invoice.rs", None);
        for interaction in Interaction::ALL {
            assert_eq!(
                split.grants(Invoice, interaction),
                joined.grants(Invoice, interaction)
            );
        }

        // v1 and v2 forms mix.
        let p = permissions("patient/Invoice.read user/Invoice.c", Some("p1"));
        assert_eq!(
            conditions(&p.grants(Invoice, Search)),
            compartment_only("p1")
        );
        assert_eq!(p.grants(Invoice, Create), Grant::Unrestricted);
        assert_eq!(p.grants(Invoice, Delete), Grant::Denied);
    }

    #[test]
    fn the_least_restrictive_grant_wins() {
        for scope in [
            "patient/Invoice.rs user/Invoice.rs",
            "user/Invoice.rs patient/Invoice.rs",
            "patient/Invoice.rs?status=issued system/*.rs",
            "user/Invoice.rs?status=issued user/Invoice.r",
        ] {
            let p = permissions(scope, Some("p1"));
            assert_eq!(p.grants(Invoice, Read), Grant::Unrestricted, "{scope}");
        }
    }

    #[test]
    fn wildcard_scopes_cover_every_type() {
        let p = permissions("system/*.rs", None);
        for rtype in ResourceType::ALL {
            assert!(p.grants(rtype, Read).is_unrestricted());
            assert!(p.grants(rtype, Search).is_unrestricted());
            assert!(!p.allows(rtype, Create));
        }
        // A typed scope adds to a wildcard one.
        let p = permissions("user/*.r user/Group.u", None);
        assert!(p.allows(Group, Update));
        assert!(!p.allows(Account, Update));
        assert!(p.allows(Account, Read));
    }

    #[test]
    fn constraints_restrict_what_a_scope_grants() {
        let p = permissions("patient/Invoice.rs?status=issued", Some("p1"));
        assert_eq!(
            conditions(&p.grants(Invoice, Search)),
            vec![(Some("p1"), vec![("status", "issued")])]
        );
        assert_eq!(
            conditions(&p.grants(Invoice, Read)),
            vec![(Some("p1"), vec![("status", "issued")])]
        );
        assert_eq!(p.grants(Invoice, Update), Grant::Denied);

        let p = permissions("user/Invoice.s?status=issued&type=x", None);
        assert_eq!(
            conditions(&p.grants(Invoice, Search)),
            vec![(None, vec![("status", "issued"), ("type", "x")])]
        );
    }

    #[test]
    fn constrained_scopes_combine_with_or() {
        // Either constraint suffices.
        let p = permissions(
            "user/Invoice.rs?status=issued user/Invoice.rs?status=draft",
            None,
        );
        assert_eq!(
            conditions(&p.grants(Invoice, Search)),
            vec![
                (None, vec![("status", "issued")]),
                (None, vec![("status", "draft")]),
            ]
        );

        // The compartment or the constraint: two different conditions.
        let p = permissions(
            "patient/Invoice.rs user/Invoice.rs?status=issued",
            Some("p1"),
        );
        assert_eq!(
            conditions(&p.grants(Invoice, Read)),
            vec![(Some("p1"), vec![]), (None, vec![("status", "issued")])]
        );
    }

    #[test]
    fn implied_conditions_are_dropped() {
        // A narrower constraint set is implied by a broader one, in either order.
        for scope in [
            "user/Invoice.s?status=issued user/Invoice.s?status=issued&type=x",
            "user/Invoice.s?status=issued&type=x user/Invoice.s?status=issued",
            "user/Invoice.s?status=issued user/Invoice.s?status=issued",
            "user/Invoice.s?status=issued patient/Invoice.s?type=x&status=issued",
        ] {
            let p = permissions(scope, Some("p1"));
            assert_eq!(
                conditions(&p.grants(Invoice, Search)),
                vec![(None, vec![("status", "issued")])],
                "{scope}"
            );
        }
        // The bare compartment implies the compartment with constraints.
        let p = permissions(
            "patient/Invoice.rs?status=issued patient/Invoice.rs",
            Some("p1"),
        );
        assert_eq!(conditions(&p.grants(Invoice, Read)), compartment_only("p1"));
        // Unrelated constraints both stay.
        let p = permissions(
            "patient/Invoice.rs?status=issued user/Invoice.rs?type=x",
            Some("p1"),
        );
        assert_eq!(
            conditions(&p.grants(Invoice, Read)),
            vec![
                (Some("p1"), vec![("status", "issued")]),
                (None, vec![("type", "x")]),
            ]
        );
    }

    #[test]
    fn system_search_is_limited_to_searchable_types() {
        let p = permissions(
            "patient/Patient.rs patient/Invoice.r user/Organization.s",
            Some("p1"),
        );
        let searchable: Vec<_> = p.types_searchable().into_iter().map(|(t, _)| t).collect();
        assert_eq!(searchable, [Organization, Patient]);
        let grants: Vec<_> = p.types_searchable().into_iter().map(|(_, g)| g).collect();
        assert_eq!(grants[0], Grant::Unrestricted);
        assert_eq!(conditions(&grants[1]), compartment_only("p1"));

        let all = permissions("user/*.s", None);
        assert_eq!(all.types_searchable().len(), ResourceType::ALL.len());
    }

    #[test]
    fn export_needs_unrestricted_read_and_search() {
        assert_eq!(
            permissions("system/*.rs", None).exportable_types(),
            ResourceType::ALL
        );
        assert_eq!(
            permissions("system/*.read", None).exportable_types(),
            ResourceType::ALL
        );
        assert_eq!(
            permissions("system/Patient.r system/Patient.s system/Account.r", None)
                .exportable_types(),
            [Patient]
        );
        assert!(
            permissions("patient/*.rs", Some("p1"))
                .exportable_types()
                .iter()
                .all(|t| !in_patient_compartment(*t))
        );
        assert!(
            permissions("system/*.rs?_lastUpdated=gt2024", None)
                .exportable_types()
                .is_empty()
        );
    }

    #[test]
    fn types_not_stored_grant_nothing_stored() {
        let p = permissions("system/Observation.cruds user/MeasureReport.rs", Some("p1"));
        for rtype in ResourceType::ALL {
            for interaction in Interaction::ALL {
                assert_eq!(p.grants(rtype, interaction), Grant::Denied);
            }
        }
        assert!(p.types_searchable().is_empty());
    }

    /// `$analytics` needs read of MeasureReport at system or user level (docs/analytics.md).
    #[test]
    fn unstored_types_by_name() {
        for scope in [
            "system/MeasureReport.read",
            "user/MeasureReport.rs",
            "system/*.rs",
            "user/*.*",
            "patient/MeasureReport.rs system/MeasureReport.r",
        ] {
            let p = permissions(scope, Some("p1"));
            assert_eq!(
                p.grants_unstored("MeasureReport", Read),
                Grant::Unrestricted,
                "{scope}"
            );
        }
        for scope in [
            "",
            "patient/MeasureReport.rs",
            "patient/*.cruds",
            "system/MeasureReport.s",
            "system/Observation.rs",
            "user/Patient.rs",
        ] {
            let p = permissions(scope, Some("p1"));
            assert_eq!(
                p.grants_unstored("MeasureReport", Read),
                Grant::Denied,
                "{scope}"
            );
        }
        let p = permissions("user/MeasureReport.r?status=complete", None);
        assert_eq!(
            conditions(&p.grants_unstored("MeasureReport", Read)),
            vec![(None, vec![("status", "complete")])]
        );
        // A stored type's name answers as `grants` does.
        let p = permissions("patient/Invoice.rs", Some("p1"));
        for interaction in Interaction::ALL {
            assert_eq!(
                p.grants_unstored("Invoice", interaction),
                p.grants(Invoice, interaction)
            );
        }
    }

    #[test]
    fn grant_accessors() {
        assert!(!Grant::Denied.is_allowed());
        assert!(Grant::Unrestricted.is_allowed());
        assert!(Grant::Unrestricted.is_unrestricted());
        assert!(Grant::Denied.conditions().is_empty());
        assert!(Grant::Unrestricted.conditions().is_empty());
        let p = permissions("patient/Group.r", Some("p1"));
        let grant = p.grants(Group, Read);
        assert!(grant.is_allowed());
        assert!(!grant.is_unrestricted());
        assert_eq!(p.scopes().len(), 1);
    }
}
