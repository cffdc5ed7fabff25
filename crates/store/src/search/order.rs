//! The order of search results and keyset paging over it.
//!
//! Results are ordered by the `_sort` keys, then by `resources.key` (the order resources
//! were first written in, which never changes): a total order, so a page boundary is one
//! position and the next page is "the rows after it", whatever was written meanwhile. A
//! resource sorts by its lowest value of an ascending key and its highest of a descending
//! one (a date by its range's low or high end); one without a value sorts last either way.

use fhir_core::ResourceType;
use fhir_core::search::SearchParamType;
use fhir_core::search::query::SortKey;

use super::criteria::{Sql, Terms};
use super::cursor::Cursor;
use crate::search_index::terms::Mark;

/// One sort key as SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Column {
    pub(super) descending: bool,
    /// The SQL type cursor values are cast back to.
    pub(super) cast: &'static str,
}

/// The value `key` sorts a resource row `r` of `rtype` by, and its SQL type.
pub(super) fn sort_value(
    sql: &Sql<'_>,
    rtype: ResourceType,
    key: &SortKey<'_>,
) -> (String, &'static str) {
    let param = key.param;
    match param.code() {
        "_id" => return ("r.id".to_owned(), "text"),
        "_lastUpdated" => return ("r.last_updated".to_owned(), "timestamptz"),
        _ => {}
    }
    let pick = if key.descending { "max" } else { "min" };
    let (table, value, cast) = match param.kind() {
        SearchParamType::String => {
            return (lexeme_value(sql, rtype, key, Mark::Normalized), "text");
        }
        SearchParamType::Token => return (lexeme_value(sql, rtype, key, Mark::Code), "text"),
        SearchParamType::Date if key.descending => ("search_date", "high", "timestamptz"),
        SearchParamType::Date => ("search_date", "low", "timestamptz"),
        SearchParamType::Number => ("search_number", "value", "numeric"),
        SearchParamType::Quantity => ("search_quantity", "value", "numeric"),
        SearchParamType::Reference => (
            "search_reference",
            "coalesce(target_type || '/' || target_id, url, identifier_value)",
            "text",
        ),
        SearchParamType::Uri => ("search_uri", "uri", "text"),
        SearchParamType::Composite | SearchParamType::Special => {
            ("search_composite", "components::text", "text")
        }
    };
    let of = sql.param_rows(rtype, param, "x");
    // The value is over the columns of the one table in the subquery: they need no alias.
    (
        format!("(select {pick}({value}) from {table} x where x.res_key = r.key and {of})"),
        cast,
    )
}

/// The lowest (highest, descending) value of `key`'s lexemes of `mark` of resource row `r`,
/// in byte order: what follows the mark, up to the next separator.
fn lexeme_value(sql: &Sql<'_>, rtype: ResourceType, key: &SortKey<'_>, mark: Mark) -> String {
    let pick = if key.descending { "max" } else { "min" };
    let (starts, end) = Terms::of(sql.ids(), rtype, key.param).starts(mark);
    // The starts are a parameter id, a part and a mark: nothing to quote.
    format!(
        "(select {pick}(split_part(substr(l, strpos(l, '{end}') + 1), E'\\x01', 1) collate \"C\") \
         from search_terms x, unnest(tsvector_to_array(x.terms)) l \
         where x.res_key = r.key and l ^@ any('{{{}}}'::text[]))",
        starts.join(",")
    )
}

/// `order by` over the page's columns `s0, s1, ...` and `key` of `alias`, forwards or
/// backwards (a `previous` page is read backwards, then reversed).
pub(super) fn order_by(columns: &[Column], alias: &str, backwards: bool) -> String {
    let mut terms: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(n, column)| {
            let direction = match (column.descending, backwards) {
                (false, false) => "asc nulls last",
                (true, false) => "desc nulls last",
                (false, true) => "desc nulls first",
                (true, true) => "asc nulls first",
            };
            format!("{alias}.s{n} {direction}")
        })
        .collect();
    terms.push(format!(
        "{alias}.key {}",
        if backwards { "desc" } else { "asc" }
    ));
    terms.join(", ")
}

/// Writes the condition "strictly after the cursor's row" (or before it, for a `previous`
/// cursor) in the order of `columns`, over `alias.s0, ...` and `alias.key`.
pub(super) fn write_keyset(sql: &mut Sql<'_>, columns: &[Column], alias: &str, cursor: &Cursor) {
    let value = |n: usize| cursor.values.get(n).cloned().flatten();
    sql.push("(");
    for i in 0..=columns.len() {
        if i > 0 {
            sql.push(" or ");
        }
        sql.push("(true");
        for (j, column) in columns.iter().enumerate().take(i) {
            match value(j) {
                None => sql.push(format_args!(" and {alias}.s{j} is null")),
                Some(v) => sql
                    .push(format_args!(" and {alias}.s{j} = "))
                    .bind(v)
                    .push(format_args!("::{}", column.cast)),
            };
        }
        match columns.get(i) {
            Some(column) => {
                let beyond = if column.descending != cursor.before {
                    "<"
                } else {
                    ">"
                };
                match (value(i), cursor.before) {
                    // Nothing sorts after "no value"; everything with one sorts before it.
                    (None, false) => {
                        sql.push(" and false");
                    }
                    (None, true) => {
                        sql.push(format_args!(" and {alias}.s{i} is not null"));
                    }
                    (Some(v), false) => {
                        sql.push(format_args!(" and ({alias}.s{i} {beyond} "))
                            .bind(v)
                            .push(format_args!("::{} or {alias}.s{i} is null)", column.cast));
                    }
                    (Some(v), true) => {
                        sql.push(format_args!(" and {alias}.s{i} {beyond} "))
                            .bind(v)
                            .push(format_args!("::{}", column.cast));
                    }
                }
            }
            None => {
                let beyond = if cursor.before { "<" } else { ">" };
                sql.push(format_args!(" and {alias}.key {beyond} "))
                    .bind(cursor.key);
            }
        }
        sql.push(")");
    }
    sql.push(")");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backwards_reverses_every_key_and_the_nulls() {
        let columns = [
            Column {
                descending: false,
                cast: "text",
            },
            Column {
                descending: true,
                cast: "numeric",
            },
        ];
        assert_eq!(
            order_by(&columns, "p", false),
            "p.s0 asc nulls last, p.s1 desc nulls last, p.key asc"
        );
        assert_eq!(
            order_by(&columns, "p", true),
            "p.s0 desc nulls first, p.s1 asc nulls first, p.key desc"
        );
    }
}
