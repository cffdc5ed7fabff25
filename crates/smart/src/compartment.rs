//! The Patient compartment (<http://hl7.org/fhir/R4/compartmentdefinition-patient.html>) of the
//! types Ferrum serves: what confines a `patient/` scope to the patient in context.
//!
//! | type | in the compartment of patient P when | R4 CompartmentDefinition |
//! |---|---|---|
//! | Patient | its id is P | `link` (not followed, see below) |
//! | Account | `subject` refers to `Patient/P` | `subject` |
//! | Invoice | `subject`, `patient` or `recipient` refers to `Patient/P` | the same |
//! | Group | `member` refers to `Patient/P` | `member` |
//! | Organization | never | no parameter: outside |
//! | Practitioner | never | no parameter: outside |
//!
//! The table is checked against `fhir-profiles/CompartmentDefinition/CompartmentDefinition-patient.json`
//! (the `hl7.fhir.r4.examples` 4.0.1 package) by this module's tests.
//!
//! # Decisions
//!
//! **`Patient.link` is not followed.** R4 puts a Patient whose `link` refers to P in P's
//! compartment, and its description goes further: every record of a linked patient belongs to
//! the target of the link. SMART 2.2 asks a server that supports `Patient.link` to document
//! what it does. Ferrum confines `patient/` scopes to the one Patient record the authorisation
//! server put in the token (`patient` claim) and to the resources that refer to it directly.
//! Links are made by record matching, which the authorisation server never vouched for, and
//! following them one step would show the linked record's demographics but not its Accounts or
//! Invoices: a half-merged view. A client that needs the linked records needs a token for them.
//!
//! **Types outside the compartment** (Organization, Practitioner) hold no patient data, and a
//! patient's own data refers to them (an Invoice's issuer, an Account's owner, a Group's
//! managing entity). SMART 2.2 leaves them to the server ("some EHRs may not enable access to
//! all related resources - for example, Practitioners"). In Ferrum a `patient/` scope on them
//! (or `patient/*`) grants read (`r`) and search (`s`) of every Organization and Practitioner,
//! under the scope's constraints if any, so that a patient app can show who issued a bill.
//! It never grants create, update or delete on them (`c`, `u`, `d` are ignored there): these
//! are shared records, and a change made for one patient would reach every other patient's
//! data. A `patient/` scope grants nothing at all, these types included, when the token
//! carries no patient.
//!
//! **Group** follows R4: a Group is in P's compartment when P is one of its members. A Group
//! lists its other members too (their references, and any `display` text), so a `patient/Group`
//! or `patient/*` scope shows a patient who else is in the groups they belong to. A realm that
//! keeps group membership private should not grant `patient/` scopes on Group.

use fhir_core::ResourceType;

/// How resources of one type belong to a patient's compartment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Membership {
    /// Never in a patient's compartment (Organization, Practitioner).
    Outside,
    /// The Patient whose id is the patient's, and no other Patient.
    Itself,
    /// A resource one of whose reference search parameters (any of them) refers to
    /// `Patient/<id>`.
    Params(&'static [&'static str]),
}

/// How resources of `rtype` belong to a patient's compartment.
pub fn patient_compartment(rtype: ResourceType) -> Membership {
    match rtype {
        ResourceType::Patient => Membership::Itself,
        ResourceType::Account => Membership::Params(&["subject"]),
        ResourceType::Invoice => Membership::Params(&["subject", "patient", "recipient"]),
        ResourceType::Group => Membership::Params(&["member"]),
        ResourceType::Organization | ResourceType::Practitioner => Membership::Outside,
    }
}

/// The reference search parameters that put a resource of `rtype` in the compartment of the
/// patient they refer to (any one suffices). Empty for Organization and Practitioner, which are
/// outside it, and for Patient, which is in its own compartment by id only (see
/// [`patient_compartment`]).
pub fn patient_compartment_params(rtype: ResourceType) -> &'static [&'static str] {
    match patient_compartment(rtype) {
        Membership::Params(params) => params,
        Membership::Itself | Membership::Outside => &[],
    }
}

/// Whether resources of `rtype` can be in a patient's compartment: `patient/` scopes confine
/// them to it.
pub fn in_patient_compartment(rtype: ResourceType) -> bool {
    patient_compartment(rtype) != Membership::Outside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_for_every_served_type() {
        let table = [
            (ResourceType::Account, Membership::Params(&["subject"])),
            (ResourceType::Group, Membership::Params(&["member"])),
            (
                ResourceType::Invoice,
                Membership::Params(&["subject", "patient", "recipient"]),
            ),
            (ResourceType::Organization, Membership::Outside),
            (ResourceType::Patient, Membership::Itself),
            (ResourceType::Practitioner, Membership::Outside),
        ];
        assert_eq!(
            table.map(|(t, _)| t),
            ResourceType::ALL,
            "every served type has a row"
        );
        for (rtype, membership) in table {
            assert_eq!(patient_compartment(rtype), membership, "{rtype}");
        }
        assert_eq!(
            patient_compartment_params(ResourceType::Invoice),
            ["subject", "patient", "recipient"]
        );
        assert_eq!(
            patient_compartment_params(ResourceType::Account),
            ["subject"]
        );
        assert_eq!(patient_compartment_params(ResourceType::Group), ["member"]);
        for rtype in [
            ResourceType::Patient,
            ResourceType::Organization,
            ResourceType::Practitioner,
        ] {
            assert!(patient_compartment_params(rtype).is_empty(), "{rtype}");
        }
        let inside: Vec<_> = ResourceType::ALL
            .into_iter()
            .filter(|t| in_patient_compartment(*t))
            .collect();
        assert_eq!(
            inside,
            [
                ResourceType::Account,
                ResourceType::Group,
                ResourceType::Invoice,
                ResourceType::Patient
            ]
        );
    }

    /// The table agrees with the published R4 CompartmentDefinition, except for the one
    /// documented decision (Patient.link).
    #[test]
    fn the_table_matches_the_r4_compartment_definition() {
        let definition: serde_json::Value = serde_json::from_str(include_str!(
            "../../../fhir-profiles/CompartmentDefinition/CompartmentDefinition-patient.json"
        ))
        .expect("the CompartmentDefinition is JSON");
        assert_eq!(
            definition["url"],
            "http://hl7.org/fhir/CompartmentDefinition/patient"
        );
        assert_eq!(definition["version"], "4.0.1");
        let resources = definition["resource"].as_array().expect("resource[]");
        for rtype in ResourceType::ALL {
            let entry = resources
                .iter()
                .find(|r| r["code"] == rtype.as_str())
                .unwrap_or_else(|| panic!("{rtype} is listed"));
            let params: Vec<&str> = entry["param"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p.as_str()).collect())
                .unwrap_or_default();
            match patient_compartment(rtype) {
                Membership::Params(ours) => assert_eq!(params, ours, "{rtype}"),
                Membership::Outside => assert!(params.is_empty(), "{rtype}"),
                Membership::Itself => {
                    assert_eq!(rtype, ResourceType::Patient);
                    assert_eq!(params, ["link"], "the only parameter Ferrum leaves out");
                }
            }
        }
    }
}
