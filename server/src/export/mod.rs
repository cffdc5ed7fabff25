//! Bulk Data export (Bulk Data Access IG 2.0, http://hl7.org/fhir/uv/bulkdata/export.html):
//! what a job exports ([`ExportRequest`], stored with the job) and the queries that select
//! it; [`runner`] runs the jobs, `interaction::export` answers the HTTP side.
//!
//! A job exports, per type, the current resources that
//! - the caller may read and search (the grant of the kick-off's token, applied again when
//!   the job runs: a `patient/` token exports its compartment only);
//! - belong to the level asked for: everything (`[base]/$export`), the patient compartments
//!   (`[base]/Patient/$export`: Patients, and Accounts and Invoices that refer to a Patient),
//!   or the compartments of a Group's members (`[base]/Group/[id]/$export`); at Patient and
//!   Group level also the Organizations and Practitioners ([`REFERENCED_TYPES`]) that those
//!   compartments' resources refer to ([`ExportRequest::referring`]);
//! - changed after `_since`, when given, and match one of the type's `_typeFilter` searches,
//!   when it has some.

pub mod runner;

use chrono::{DateTime, Utc};
use fhir_core::ResourceType;
use fhir_core::search::query::{Condition, SearchQuery, TypeQuery};
use fhir_core::search::{Handling, Registry, SearchOptions};
use serde::{Deserialize, Serialize};
use smart::{Interaction, Permissions, Scopes, patient_compartment_params};

use crate::auth::Principal;
use crate::auth::access::{restrict, restrict_nested};

/// What is exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    /// `[base]/$export`: every resource of the types.
    System,
    /// `[base]/Patient/$export`: the compartments of every Patient.
    Patient,
    /// `[base]/Group/[id]/$export`: the compartments of the Group's member Patients.
    Group(String),
}

/// An export as kicked off, stored with the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportRequest {
    pub level: Level,
    /// The types to export, in the order their files are written.
    pub types: Vec<String>,
    /// `_since`: only resources changed after it.
    pub since: Option<DateTime<Utc>>,
    /// `_typeFilter` values, `Type?query` each.
    pub type_filters: Vec<String>,
    /// The caller's granted scopes and patient in context, applied when the job runs.
    pub scope: String,
    pub patient: Option<String>,
}

/// The types of the Patient compartment: what a Patient- or Group-level export selects by
/// its level.
pub const COMPARTMENT_TYPES: [ResourceType; 3] = [
    ResourceType::Patient,
    ResourceType::Account,
    ResourceType::Invoice,
];

/// The types a Patient- or Group-level export adds when the compartments' resources refer to
/// them (`Patient.managingOrganization`, `Account.owner`, `Invoice.participant.actor`, ...).
pub const REFERENCED_TYPES: [ResourceType; 2] =
    [ResourceType::Organization, ResourceType::Practitioner];

impl Level {
    /// The types an export of this level can hold.
    pub fn types(&self) -> Vec<ResourceType> {
        match self {
            Level::System => ResourceType::ALL.to_vec(),
            Level::Patient | Level::Group(_) => COMPARTMENT_TYPES
                .into_iter()
                .chain(REFERENCED_TYPES)
                .collect(),
        }
    }

    /// Whether `rtype`'s resources are selected by what the level's compartments refer to.
    pub fn is_referenced(&self, rtype: ResourceType) -> bool {
        !matches!(self, Level::System) && REFERENCED_TYPES.contains(&rtype)
    }
}

impl ExportRequest {
    /// The caller's permissions, as at the kick-off.
    pub fn permissions(&self) -> Permissions {
        let patient = self.patient.as_deref().and_then(|p| p.parse().ok());
        Permissions::new(Scopes::parse(&self.scope).into_resource(), patient)
    }

    /// The principal the job acts for.
    pub fn principal(&self) -> Principal {
        Principal {
            client_id: None,
            subject: None,
            fhir_user: None,
            launch_patient: false,
            permissions: self.permissions(),
            scope: self.scope.clone(),
        }
    }

    /// The query of `rtype`: its `_typeFilter`s (a resource is exported when it matches one;
    /// every resource when the type has none), limited to the level and to the caller's
    /// grant. `Err` names what does not parse or is no longer granted.
    pub fn query<'r>(
        &self,
        registry: &'r Registry,
        rtype: ResourceType,
        server_base: &str,
    ) -> Result<TypeQuery<'r>, String> {
        let mut queries = self.queries(registry, rtype, server_base)?;
        if queries.len() == 1
            && let Some(query) = queries.pop()
        {
            return Ok(query);
        }
        // Several filters: one read of their union, so a resource matching two is read once.
        Ok(TypeQuery {
            resource_type: rtype,
            criteria: vec![Condition::Any(
                queries.into_iter().map(|q| q.criteria).collect(),
            )],
            sort: Vec::new(),
        })
    }

    /// At Patient and Group level, the resources whose references select the
    /// [`REFERENCED_TYPES`]: the [`query`](Self::query) of each compartment type the caller
    /// may read and search, whether `_type` names it or not (`_type` picks the files, not
    /// what they refer to). `None` at system level.
    pub fn referring<'r>(
        &self,
        registry: &'r Registry,
        server_base: &str,
    ) -> Result<Option<Vec<TypeQuery<'r>>>, String> {
        if self.level == Level::System {
            return Ok(None);
        }
        let permissions = self.permissions();
        COMPARTMENT_TYPES
            .into_iter()
            .filter(|rtype| {
                permissions.allows(*rtype, Interaction::Read)
                    && permissions.allows(*rtype, Interaction::Search)
            })
            .map(|rtype| self.query(registry, rtype, server_base))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The queries of `rtype`: one per `_typeFilter` of the type (a resource is exported
    /// when it matches one), or one without filter; each limited to the level and the
    /// caller's grant. `Err` names what does not parse.
    pub fn queries<'r>(
        &self,
        registry: &'r Registry,
        rtype: ResourceType,
        server_base: &str,
    ) -> Result<Vec<TypeQuery<'r>>, String> {
        let principal = self.principal();
        let filters: Vec<&str> = self
            .type_filters
            .iter()
            .filter_map(|f| f.strip_prefix(rtype.as_str())?.strip_prefix('?'))
            .collect();
        let filters = if filters.is_empty() {
            vec![""]
        } else {
            filters
        };
        let level = level_criteria(registry, rtype, &self.level, server_base)?;
        let read = principal.permissions.grants(rtype, Interaction::Read);
        let search = principal.permissions.grants(rtype, Interaction::Search);
        if !read.is_allowed() || !search.is_allowed() {
            return Err(format!("the access token no longer grants reading {rtype}"));
        }
        filters
            .into_iter()
            .map(|filter| {
                let mut query = parse(registry, rtype, filter, server_base)
                    .map_err(|e| format!("_typeFilter for {rtype}: {e}"))?;
                query.criteria.extend(level.iter().cloned());
                restrict_nested(&principal, registry, server_base, &mut query.criteria).map_err(
                    |_| format!("_typeFilter for {rtype} searches what the token cannot"),
                )?;
                restrict(registry, server_base, &mut query, &search);
                Ok(query)
            })
            .collect()
    }
}

/// A search of `rtype` from a query string (not percent-decoded yet), strictly parsed.
pub fn parse<'r>(
    registry: &'r Registry,
    rtype: ResourceType,
    query: &str,
    server_base: &str,
) -> Result<TypeQuery<'r>, String> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let mut options = SearchOptions::new(Utc::now());
    options.handling = Handling::Strict;
    options.server_base = Some(server_base);
    let parsed =
        SearchQuery::parse(registry, Some(rtype), &pairs, &options).map_err(|e| e.to_string())?;
    if parsed.include.len() + parsed.revinclude.len() > 0 || parsed.types.len() != 1 {
        return Err("only search criteria may filter an export".into());
    }
    parsed
        .types
        .into_iter()
        .next()
        .ok_or_else(|| "no query".into())
}

/// What the level adds to a query of `rtype` (nothing for a type the level selects by
/// references: see [`ExportRequest::referring`]).
fn level_criteria<'r>(
    registry: &'r Registry,
    rtype: ResourceType,
    level: &Level,
    server_base: &str,
) -> Result<Vec<Condition<'r>>, String> {
    if level.is_referenced(rtype) {
        return Ok(Vec::new());
    }
    let patient_criterion = |tail: &str| -> Result<Condition<'r>, String> {
        if rtype == ResourceType::Patient {
            let query = parse(registry, rtype, tail.trim_start_matches('.'), server_base)?;
            return Ok(Condition::Any(vec![query.criteria]));
        }
        let alternatives = patient_compartment_params(rtype)
            .iter()
            .map(|param| {
                parse(
                    registry,
                    rtype,
                    &format!("{param}:Patient{tail}"),
                    server_base,
                )
                .map(|q| q.criteria)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Condition::Any(alternatives))
    };
    match level {
        Level::System => Ok(Vec::new()),
        Level::Patient => Ok(vec![patient_criterion("._id:missing=false")?]),
        Level::Group(id) => {
            let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
            Ok(vec![patient_criterion(&format!(
                "._has:Group:member:_id={id}"
            ))?])
        }
    }
}
