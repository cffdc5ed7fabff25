//! What search supports, per resource type, for the CapabilityStatement
//! (`rest.resource.searchParam`, `searchInclude`, `searchRevInclude`): read from the same
//! registry and modifier table the parser uses, so it cannot promise what the parser refuses.

use super::ast::Prefix;
use super::modifiers::{served_targets, supported_modifiers};
use crate::ResourceType;
use crate::search::{Registry, SearchParamType, SearchParameter};

/// The parameters search understands besides the registry's, for every type.
pub const CONTROL_PARAMETERS: [&str; 10] = [
    "_count",
    "_cursor",
    "_elements",
    "_has",
    "_include",
    "_revinclude",
    "_sort",
    "_summary",
    "_total",
    "_type",
];

/// A search parameter as it can be used on one type.
#[derive(Debug, Clone, PartialEq)]
pub struct SupportedParam<'r> {
    /// The definition: code, type, url, description.
    pub param: &'r SearchParameter,
    /// The modifiers it takes, as written after the colon (`missing`, `exact`, `Patient`).
    pub modifiers: Vec<String>,
    /// The comparison prefixes its values take (number, date and quantity parameters).
    pub prefixes: Vec<Prefix>,
    /// For a reference parameter: the types a chain through it can continue into (the
    /// served types it may point at).
    pub chain_targets: Vec<ResourceType>,
    /// Whether `_sort` accepts it.
    pub sortable: bool,
}

/// Every parameter that can be searched on `resource_type`: its own, then the common ones.
/// Definitions without an expression (`_text`, `_content`, `_query`, `_filter`) are left
/// out: the server does not implement them.
pub fn supported_params(
    registry: &Registry,
    resource_type: ResourceType,
) -> Vec<SupportedParam<'_>> {
    registry
        .for_type(resource_type.as_str())
        .filter(|p| p.expression().is_some() && p.kind() != SearchParamType::Special)
        .map(|param| SupportedParam {
            param,
            modifiers: supported_modifiers(param),
            prefixes: match param.kind() {
                SearchParamType::Number | SearchParamType::Date | SearchParamType::Quantity => {
                    Prefix::ALL.to_vec()
                }
                _ => Vec::new(),
            },
            chain_targets: match param.kind() {
                SearchParamType::Reference if param.target().is_empty() => {
                    ResourceType::ALL.to_vec()
                }
                SearchParamType::Reference => served_targets(param),
                _ => Vec::new(),
            },
            sortable: param.kind() != SearchParamType::Composite,
        })
        .collect()
}

/// The `_include` values for searches of `resource_type`: `Type:parameter` for each of its
/// reference parameters, then `*`.
pub fn supported_includes(registry: &Registry, resource_type: ResourceType) -> Vec<String> {
    let mut out: Vec<String> = references(registry, resource_type)
        .map(|p| format!("{resource_type}:{}", p.code()))
        .collect();
    out.push("*".to_string());
    out
}

/// The `_revinclude` values for searches of `resource_type`: `Type:parameter` for each
/// reference parameter of a served type that can point at it, then `*`.
pub fn supported_revincludes(registry: &Registry, resource_type: ResourceType) -> Vec<String> {
    let mut out: Vec<String> = ResourceType::ALL
        .into_iter()
        .flat_map(|source| {
            references(registry, source)
                .filter(|p| {
                    p.target().is_empty() || p.target().iter().any(|t| t == resource_type.as_str())
                })
                .map(move |p| format!("{source}:{}", p.code()))
        })
        .collect();
    out.push("*".to_string());
    out
}

fn references(
    registry: &Registry,
    resource_type: ResourceType,
) -> impl Iterator<Item = &SearchParameter> {
    registry
        .for_type(resource_type.as_str())
        .filter(|p| p.kind() == SearchParamType::Reference && p.expression().is_some())
}
