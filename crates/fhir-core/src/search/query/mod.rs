//! Search requests parsed into a typed, validated query (http://hl7.org/fhir/R4/search.html):
//! the pure half of search. A store translates a [`SearchQuery`] into SQL over its typed index
//! tables without parsing any text again; the server renders its self link and its
//! CapabilityStatement from the same code.
//!
//! [`SearchQuery::parse`] takes the type searched (or none, for a system-level search), the
//! request's (name, value) pairs in order, the [`Registry`](crate::search::Registry) and
//! [`SearchOptions`] (handling, page sizes, server base, the time of the request). It gives:
//!
//! - one [`TypeQuery`] per type searched, whose criteria are an AND-list of [`Condition`]s:
//!   a [`Test`] on one parameter's index values (an OR-list of values typed per parameter
//!   type), a chain into the types a reference points at, or a reverse chain (`_has`);
//! - the result parameters: [`Include`]s, [`SortKey`]s, page size, [`Total`], [`Summary`],
//!   `_elements` and the opaque paging cursor;
//! - what was set aside in lenient handling, as [`SearchError`]s.
//!
//! Names resolve against the registry link by link, values are checked by type. An error
//! names the parameter and never quotes its value.
//!
//! | parameter type | values | modifiers |
//! |---|---|---|
//! | string | normalised, or as written for `:exact`; phonetic codes for phonetic parameters | `:exact`, `:contains` |
//! | token | `code`, `system\|code`, `\|code`, `system\|` | `:not`, `:text`, `:of-type` (`system\|code\|value`) |
//! | date | prefix and the `[low, high)` the written precision covers | |
//! | number | prefix and the exact interval of matching values | |
//! | quantity | as number, with `\|system\|code` or `\|\|code` | |
//! | reference | `id`, `Type/id`, absolute URL or URN; chains; `_has` | `:Type`, `:identifier` |
//! | uri | as written | `:below`, `:above` |
//! | composite | one value per component, `$`-separated | |
//!
//! `:missing` applies to every type. Commas separate OR values, and `\,`, `\|`, `\$`, `\\`
//! escape the separators and the backslash.

mod ast;
mod capability;
mod decimal;
mod error;
mod modifiers;
mod parse;
mod render;
mod result;
mod syntax;
mod values;

#[cfg(test)]
mod tests;

pub use ast::{
    ChainTarget, ComponentValue, Condition, DateSearch, Handling, Include, NumberSearch,
    OfTypeSearch, Prefix, QuantitySearch, QuantityUnit, ReferenceSearch, SearchOptions,
    SearchQuery, SortKey, StringMatch, Summary, Test, TokenSearch, Total, TypeQuery, UriMatch,
};
pub use capability::{
    CONTROL_PARAMETERS, SupportedParam, supported_includes, supported_params, supported_revincludes,
};
pub use error::{Problem, SearchError};
pub use modifiers::supported_modifiers;
pub use render::CURSOR_PARAM;
