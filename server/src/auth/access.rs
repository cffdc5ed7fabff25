//! Applying a caller's grants (docs/authorization.md, "Enforcement").
//!
//! [`require`] turns "no scope grants this" into 403. A grant restricted to a patient's
//! compartment or to a scope's constraints is applied in one of two ways:
//!
//! - as search criteria ([`restriction`]): a [`Condition::Any`] added to the query of a
//!   search, a history or a conditional interaction, so that the store never returns what
//!   the caller may not see, and paging stays exact;
//! - on one resource in memory ([`permits`]): reads, writes, history entries and included
//!   resources. Only the compartment can be checked there; a condition with constraints
//!   (`patient/Invoice.rs?status=issued`) does not grant a resource checked in memory: it
//!   grants less, never more.

use fhir_core::ResourceType;
use fhir_core::search::query::{Condition, SearchQuery, TypeQuery};
use fhir_core::search::{Handling, IndexOptions, IndexValue, Registry, SearchOptions};
use serde_json::Value;
use smart::{Grant, Interaction, Membership, patient_compartment};

use super::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// The grant of `interaction` on `rtype`; 403 when nothing grants it.
pub fn require(
    principal: &Principal,
    rtype: ResourceType,
    interaction: Interaction,
) -> Result<Grant, ApiError> {
    let grant = principal.permissions.grants(rtype, interaction);
    if grant.is_allowed() {
        Ok(grant)
    } else {
        Err(ApiError::Forbidden(format!(
            "the access token grants no {} on {rtype}",
            interaction.name()
        )))
    }
}

/// The criteria a restricted grant adds to a query of `rtype`; `None` for an unrestricted
/// grant. A condition whose constraints do not parse as a search of the type is left out
/// (it grants less).
pub fn restriction<'r>(
    registry: &'r Registry,
    rtype: ResourceType,
    grant: &Grant,
    server_base: &str,
) -> Option<Condition<'r>> {
    let Grant::Restricted(conditions) = grant else {
        return match grant {
            Grant::Denied => Some(Condition::Any(Vec::new())),
            _ => None,
        };
    };
    let alternatives = conditions
        .iter()
        .filter_map(|condition| {
            let mut criteria = Vec::new();
            if let Some(patient) = condition.compartment() {
                criteria.push(compartment(registry, rtype, patient.as_str(), server_base)?);
            }
            if !condition.constraints().is_empty() {
                let pairs: Vec<(&str, &str)> = condition
                    .constraints()
                    .iter()
                    .map(|c| (c.name(), c.value()))
                    .collect();
                match parse(registry, rtype, &pairs, server_base) {
                    Some(more) => criteria.extend(more),
                    None => {
                        tracing::warn!(resource_type = %rtype,
                            "a scope's constraints are not a search of the type; it grants nothing");
                        return None;
                    }
                }
            }
            Some(criteria)
        })
        .collect();
    Some(Condition::Any(alternatives))
}

/// "In the compartment of Patient `patient`", as criteria on `rtype`.
fn compartment<'r>(
    registry: &'r Registry,
    rtype: ResourceType,
    patient: &str,
    server_base: &str,
) -> Option<Condition<'r>> {
    match patient_compartment(rtype) {
        Membership::Outside => None,
        Membership::Itself => {
            let mut criteria = parse(registry, rtype, &[("_id", patient)], server_base)?;
            criteria.pop()
        }
        Membership::Params(params) => {
            let target = format!("Patient/{patient}");
            let alternatives = params
                .iter()
                .map(|param| parse(registry, rtype, &[(*param, target.as_str())], server_base))
                .collect::<Option<Vec<_>>>()?;
            Some(Condition::Any(alternatives))
        }
    }
}

/// The criteria of a search of `rtype` with `pairs`, strictly parsed.
fn parse<'r>(
    registry: &'r Registry,
    rtype: ResourceType,
    pairs: &[(&str, &str)],
    server_base: &str,
) -> Option<Vec<Condition<'r>>> {
    let mut options = SearchOptions::new(chrono::Utc::now());
    options.handling = Handling::Strict;
    options.server_base = Some(server_base);
    let query = SearchQuery::parse(registry, Some(rtype), pairs, &options).ok()?;
    query.types.into_iter().next().map(|t| t.criteria)
}

/// Whether `grant` lets the caller have `resource` (of `rtype`), checked in memory.
pub fn permits(
    registry: &Registry,
    rtype: ResourceType,
    grant: &Grant,
    resource: &Value,
    server_base: &str,
) -> bool {
    match grant {
        Grant::Denied => false,
        Grant::Unrestricted => true,
        Grant::Restricted(conditions) => conditions.iter().any(|condition| {
            condition.constraints().is_empty()
                && condition.compartment().is_some_and(|patient| {
                    in_compartment(registry, rtype, resource, patient.as_str(), server_base)
                })
        }),
    }
}

/// Whether `resource` is in the compartment of Patient `patient`.
fn in_compartment(
    registry: &Registry,
    rtype: ResourceType,
    resource: &Value,
    patient: &str,
    server_base: &str,
) -> bool {
    match patient_compartment(rtype) {
        Membership::Outside => false,
        Membership::Itself => resource.get("id").and_then(Value::as_str) == Some(patient),
        Membership::Params(params) => {
            let options = IndexOptions {
                server_base: Some(server_base),
            };
            let index = registry.index_codes(resource, options, params);
            index.entries.iter().any(|entry| {
                matches!(&entry.value, IndexValue::Reference(r)
                        if r.url.is_none()
                            && r.target_type.as_deref() == Some("Patient")
                            && r.id.as_deref() == Some(patient))
            })
        }
    }
}

/// [`permits`] on stored JSON text, with the server's registry and base.
pub fn permits_text(state: &AppState, rtype: ResourceType, grant: &Grant, content: &str) -> bool {
    if grant.is_unrestricted() {
        return true;
    }
    let Ok(registry) = state.store.registry() else {
        return false;
    };
    serde_json::from_str::<Value>(content)
        .is_ok_and(|resource| permits(registry, rtype, grant, &resource, &state.base))
}

/// Adds a restricted grant's criteria to a query of its type (nothing for full access).
pub fn restrict<'r>(
    registry: &'r Registry,
    server_base: &str,
    query: &mut TypeQuery<'r>,
    grant: &Grant,
) {
    if let Some(condition) = restriction(registry, query.resource_type, grant, server_base) {
        query.criteria.push(condition);
    }
}

/// Limits the chains and `_has` of `criteria` to what the caller may search: a chain into a
/// type, or a `_has` from one, is a search of that type (it can tell what its resources
/// hold), so it needs that type's `s` grant (403 otherwise) and meets its restriction.
pub fn restrict_nested<'r>(
    principal: &Principal,
    registry: &'r Registry,
    server_base: &str,
    criteria: &mut [Condition<'r>],
) -> Result<(), ApiError> {
    for condition in criteria {
        match condition {
            Condition::Chain { targets, .. } => {
                for target in targets {
                    let rtype = target.resource_type;
                    restrict_inner(
                        principal,
                        registry,
                        server_base,
                        rtype,
                        &mut target.condition,
                    )?;
                }
            }
            Condition::Has {
                source, condition, ..
            } => {
                restrict_inner(principal, registry, server_base, *source, condition)?;
            }
            Condition::Match { .. } | Condition::Any(_) => {}
        }
    }
    Ok(())
}

/// `condition`, on resources of `rtype`, limited to what the caller may search of them.
fn restrict_inner<'r>(
    principal: &Principal,
    registry: &'r Registry,
    server_base: &str,
    rtype: ResourceType,
    condition: &mut Condition<'r>,
) -> Result<(), ApiError> {
    let grant = require(principal, rtype, Interaction::Search)?;
    restrict_nested(
        principal,
        registry,
        server_base,
        std::slice::from_mut(condition),
    )?;
    if let Some(restriction) = restriction(registry, rtype, &grant, server_base) {
        let inner = std::mem::replace(condition, Condition::Any(Vec::new()));
        *condition = Condition::Any(vec![vec![inner, restriction]]);
    }
    Ok(())
}
