//! The canonical query string of a parsed query, for the Bundle's self link
//! (http://hl7.org/fhir/R4/search.html#selflink): only what was understood, in a stable order,
//! so that equal searches have equal links.

use super::ast::SearchQuery;
use super::syntax::percent_encode;

/// The name of the paging cursor parameter.
pub const CURSOR_PARAM: &str = "_cursor";

impl SearchQuery<'_> {
    /// The parameters that were understood, in canonical order: `_type`, the criteria sorted
    /// by name (those of one name in the order given), `_include` and `_revinclude` in the
    /// order given, `_sort` (the keys kept), `_count` (the page size in effect), `_total`,
    /// `_summary`, `_elements`, then the cursor. Values are as written (escapes included),
    /// not percent-encoded.
    pub fn canonical_params(&self) -> Vec<(String, String)> {
        let mut params = self.canonical.clone();
        if let Some(cursor) = &self.cursor {
            params.push((CURSOR_PARAM.to_string(), cursor.clone()));
        }
        params
    }

    /// [`Self::canonical_params`] as a percent-encoded query string, without the `?`.
    pub fn to_query_string(&self) -> String {
        self.query_string_with_cursor(self.cursor.as_deref())
    }

    /// The same query with another cursor (`next` and `previous` links), or with none (the
    /// first page).
    pub fn query_string_with_cursor(&self, cursor: Option<&str>) -> String {
        let cursor = cursor.map(|c| (CURSOR_PARAM, c));
        self.canonical
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .chain(cursor)
            .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
            .collect::<Vec<_>>()
            .join("&")
    }
}
