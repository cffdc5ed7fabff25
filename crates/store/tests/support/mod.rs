//! What the store's test files share.

#![allow(dead_code, reason = "each test file uses part of it")]

use chrono::Utc;
use fhir_core::ResourceType;
use fhir_core::search::query::SearchQuery;
use fhir_core::search::{Registry, SearchOptions};

/// A parsed search of `rtype` on the built-in definitions, from a query string
/// (`identifier=urn:s|v&_count=5`, not percent-encoded).
pub fn search(rtype: Option<ResourceType>, query: &str) -> SearchQuery<'static> {
    let registry = Registry::builtin().unwrap_or_else(|e| panic!("definitions: {e}"));
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let mut options = SearchOptions::new(Utc::now());
    options.handling = fhir_core::search::Handling::Strict;
    SearchQuery::parse(registry, rtype, &pairs, &options)
        .unwrap_or_else(|e| panic!("{query}: {e:?}"))
}

/// A conditional interaction's condition: [`search`] of `rtype`, and its text.
pub struct Condition {
    query: SearchQuery<'static>,
    text: String,
}

impl Condition {
    pub fn new(rtype: ResourceType, query: &str) -> Self {
        let query = search(Some(rtype), query);
        let text = query.to_query_string();
        Condition { query, text }
    }

    pub fn get(&self) -> store::Conditional<'_, 'static> {
        store::Conditional {
            query: &self.query.types[0],
            text: &self.text,
        }
    }
}
