//! The search index, write side: the values the SearchParameter registry extracts from the
//! current version of each resource, stored as rows of narrow typed tables (one per kind
//! of value, see `migrations/20261128000002_search_index.sql` and docs/search.md) in the
//! same statement or transaction as the resource row, and rebuilt in batches when the
//! definitions change ([`reindex`]). Beside them, the record of each current resource's
//! local references (`resource_references`, docs/rest.md "Referential integrity"), written
//! and rebuilt with them.

mod params;
mod reindex;
mod rows;
pub(crate) mod terms;

use fhir_core::ResourceType;
use fhir_core::reference::{LocalReference, local_references};
use fhir_core::search::{IndexOptions, Registry, RegistryError, ResourceIndex};
use serde_json::Value;
use tokio::sync::OnceCell;

pub(crate) use params::ParamIds;
pub use reindex::Reindexed;
pub(crate) use rows::{
    IndexRows, Keys, Statements, TableSet, delete_ctes, insert_ctes, replace_ctes,
};

use crate::{Store, StoreError};

/// The definitions a store indexes by, and the ids of their parameters.
#[derive(Debug)]
pub(crate) struct SearchIndex {
    registry: Result<&'static Registry, &'static RegistryError>,
    /// This server's base URL: references under it are local.
    server_base: Option<String>,
    /// Read (and `search_params` brought up to date) on first use.
    params: OnceCell<ParamIds>,
}

impl SearchIndex {
    /// An index by the built-in definitions (`fhir-profiles/`).
    pub(crate) fn builtin() -> Self {
        Self::new(Registry::builtin(), None)
    }

    /// An index by `registry` (or the error it failed to load with), references under
    /// `server_base` being local.
    pub(crate) fn new(
        registry: Result<&'static Registry, &'static RegistryError>,
        server_base: Option<String>,
    ) -> Self {
        SearchIndex {
            registry,
            server_base,
            params: OnceCell::new(),
        }
    }

    /// The definitions; an error when the built-in ones did not load.
    pub(crate) fn registry(&self) -> Result<&'static Registry, StoreError> {
        self.registry
            .map_err(|error| StoreError::Definitions(error.clone()))
    }

    /// The definitions as given, for a copy of this index with another server base.
    pub(crate) fn registry_result(&self) -> Result<&'static Registry, &'static RegistryError> {
        self.registry
    }

    /// This server's base URL, when known.
    pub(crate) fn server_base(&self) -> Option<&str> {
        self.server_base.as_deref()
    }

    /// The index values of `resource` (as stored: id and meta stamped).
    fn values(&self, resource: &Value) -> Result<ResourceIndex<'static>, StoreError> {
        let options = IndexOptions {
            server_base: self.server_base.as_deref(),
        };
        Ok(self.registry()?.index(resource, options))
    }

    /// The local references of `resource`: relative, or under this server's base.
    fn references(&self, resource: &Value) -> Vec<LocalReference> {
        local_references(resource, self.server_base.as_deref())
    }
}

/// The index values of one resource about to be written, with the ids to write them by.
#[derive(Debug)]
pub(crate) struct Indexed<'s> {
    params: &'s ParamIds,
    rtype: ResourceType,
    values: ResourceIndex<'static>,
    /// Its local references, each target once: the reference record's rows, and what
    /// referential integrity checks.
    pub(crate) references: Vec<LocalReference>,
}

impl Indexed<'_> {
    /// The rows, for a statement that takes the resource key from `cur`.
    pub(crate) fn rows(&self) -> IndexRows<'_> {
        let mut rows = IndexRows::default();
        push_rows(&mut rows, self.params, self.rtype, 0, &self.values);
        rows.push_references(0, &self.references);
        rows
    }

    /// Adds the rows to `rows`, for a statement that writes several resources and takes
    /// their keys by position (`Keys::Placed`): this resource's is `position`.
    pub(crate) fn push_placed<'v>(&'v self, rows: &mut IndexRows<'v>, position: i64) {
        push_rows(rows, self.params, self.rtype, position, &self.values);
        rows.push_references(position, &self.references);
    }
}

/// Adds the rows of `values`, the index of resource `key` of type `rtype`, to `rows`.
/// A value of a parameter without an id (see [`params::sync`]) is left out.
fn push_rows<'v>(
    rows: &mut IndexRows<'v>,
    params: &ParamIds,
    rtype: ResourceType,
    key: i64,
    values: &'v ResourceIndex<'static>,
) {
    for entry in &values.entries {
        if let Some(param) = params.get(rtype, entry.code()) {
            rows.push(key, param, entry);
        }
    }
}

impl Store {
    /// The ids of the indexed parameters; on first use, `search_params` is brought up to
    /// date with this store's definitions.
    pub(crate) async fn param_ids(&self) -> Result<&ParamIds, StoreError> {
        let registry = self.index.registry()?;
        self.index
            .params
            .get_or_try_init(|| params::sync(&self.pool, registry))
            .await
    }

    /// The index values of `resource` of type `rtype`, as it is about to be stored. Values
    /// that cannot be indexed are logged by parameter code (never the value) and left out;
    /// they never fail the write.
    pub(crate) async fn index_values(
        &self,
        rtype: ResourceType,
        resource: &Value,
    ) -> Result<Indexed<'_>, StoreError> {
        let params = self.param_ids().await?;
        let values = self.index.values(resource)?;
        for issue in &values.issues {
            tracing::warn!(
                resource_type = %rtype,
                param = issue.param.code(),
                problem = %issue.problem,
                "a value was not indexed"
            );
        }
        Ok(Indexed {
            params,
            rtype,
            values,
            references: self.index.references(resource),
        })
    }
}
