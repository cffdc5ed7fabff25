//! Search criteria as SQL: each [`Condition`] on a resource row becomes a condition over the
//! typed index tables (see `migrations/20261128000002_search_index.sql` and
//! docs/search.md, "Queries"), or for strings and tokens over the lexemes of `search_terms`
//! (a `tsquery`, [`Terms`]).
//!
//! A positive test is `alias.key in (select x.res_key from <table> x where x.param = <id>
//! and <values>)`: uncorrelated, so the planner may start from the index (a selective value)
//! or from the resources (a selective other condition). Tests that hold when a resource has
//! *no* matching row (`:missing=true`, `:not`) are `not exists` anti-joins on the
//! `(res_key, param)` indexes. Chains and `_has` join `search_reference` to `resources` on
//! `(res_type, id)` and nest the rest of the condition on the joined row.
//!
//! Values are bound; parameter ids (integers from `search_params`) are written as literals so
//! that the text of a statement only depends on the shape of the query.

use std::ops::Bound;

use chrono::{DateTime, Utc};
use fhir_core::ResourceType;
use fhir_core::search::query::{
    ComponentValue, Condition, DateSearch, NumberSearch, Prefix, QuantitySearch, QuantityUnit,
    ReferenceSearch, StringMatch, Test, TokenSearch, UriMatch,
};
use fhir_core::search::{Keeping, Part, SearchParamType, SearchParameter, normalize};
use serde_json::{Map, Value};
use sqlx::{Postgres, QueryBuilder};

use crate::search_index::ParamIds;
use crate::search_index::terms::{self, AnyOf, Mark};

/// How many characters of a text value the indexes hold (`left(column, 256)`).
const INDEXED_CHARS: usize = 256;

/// A statement being written: its text and its bound values.
pub(crate) struct Sql<'p> {
    pub(crate) builder: QueryBuilder<'static, Postgres>,
    ids: &'p ParamIds,
    aliases: usize,
}

impl<'p> Sql<'p> {
    pub(crate) fn new(ids: &'p ParamIds, start: &str) -> Self {
        Sql {
            builder: QueryBuilder::new(start),
            ids,
            aliases: 0,
        }
    }

    /// The ids of the indexed parameters.
    pub(crate) fn ids(&self) -> &'p ParamIds {
        self.ids
    }

    pub(crate) fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        self.builder.push(sql);
        self
    }

    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'static + sqlx::Encode<'static, Postgres> + sqlx::Type<Postgres> + Send,
    {
        self.builder.push_bind(value);
        self
    }

    /// A fresh table alias.
    pub(super) fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    /// The condition on the rows of parameter `param` of `rtype` in the index table aliased
    /// `x`: `x.param = <id>` (-1, no rows, when it is not indexed); when its values are kept
    /// in another parameter's ([`SearchParameter::kept_in`]), that one's id and
    /// `x.part = <part>`, or `x.sound is not null` for its phonetic codes.
    pub(super) fn param_rows(
        &self,
        rtype: ResourceType,
        param: &SearchParameter,
        x: &str,
    ) -> String {
        let id = |code: &str| self.ids.get(rtype, code).unwrap_or(-1);
        match param.kept_in() {
            Some((owner, Keeping::Part(part))) => {
                format!("{x}.param = {} and {x}.part = {}", id(owner), part.code())
            }
            Some((owner, Keeping::Sound)) => {
                format!("{x}.param = {} and {x}.sound is not null", id(owner))
            }
            None => format!("{x}.param = {}", id(param.code())),
        }
    }
}

/// Where the lexemes of a string or token parameter are (`search_terms`,
/// crates/store/src/search_index/terms.rs): under the id of the parameter whose values hold
/// them, in some parts, or as the phonetic codes of that parameter's values.
#[derive(Debug, Clone)]
pub(super) struct Terms {
    id: i32,
    /// `None`: the phonetic codes (`~`), which have no part.
    parts: Option<Vec<i16>>,
}

impl Terms {
    /// The lexemes of `param` of `rtype`, a string or token parameter.
    pub(super) fn of(ids: &ParamIds, rtype: ResourceType, param: &SearchParameter) -> Terms {
        let id = |code: &str| ids.get(rtype, code).unwrap_or(-1);
        match param.kept_in() {
            Some((owner, Keeping::Part(part))) => Terms {
                id: id(owner),
                parts: Some(vec![part.code()]),
            },
            Some((owner, Keeping::Sound)) => Terms {
                id: id(owner),
                parts: None,
            },
            None => Terms {
                id: id(param.code()),
                parts: Some(parts_of(param)),
            },
        }
    }

    /// Adds the lexeme of `value` (of `mark`) in each part to `query`.
    fn lexemes(&self, query: &mut AnyOf, mark: Mark, value: &str) {
        for part in self.parts.iter().flatten() {
            query.lexeme(&terms::lexeme(self.id, *part, mark, value));
        }
    }

    /// Adds the lexemes of the phonetic code `code` to `query`: a kept code, or the
    /// normalized value of a phonetic parameter of its own.
    fn phonetic(&self, query: &mut AnyOf, code: &str) {
        match &self.parts {
            Some(_) => self.prefixes(query, Mark::Normalized, &format!("{code}{}", terms::SEP)),
            None => {
                query.lexeme(&terms::sound(self.id, code));
            }
        }
    }

    /// Adds the lexemes (of `mark`) starting with `prefix` in each part to `query`.
    fn prefixes(&self, query: &mut AnyOf, mark: Mark, prefix: &str) {
        for part in self.parts.iter().flatten() {
            query.prefix(&terms::prefix(self.id, *part, mark, prefix));
        }
    }

    /// What every lexeme of `mark` starts with, one per part, and the character that ends
    /// it (the value follows it).
    pub(super) fn starts(&self, mark: Mark) -> (Vec<String>, char) {
        match &self.parts {
            Some(parts) => (
                parts
                    .iter()
                    .map(|part| terms::part_start(self.id, *part, mark))
                    .collect(),
                mark.char(),
            ),
            None => (vec![format!("{}~", self.id)], '~'),
        }
    }
}

/// The parts a parameter's values can be of: those of the types its expression selects, or
/// when they are not known, every part a string (whole, name and address parts) or a token
/// (whole, contact point systems) can have.
fn parts_of(param: &SearchParameter) -> Vec<i16> {
    let types: Vec<&str> = match param.element_types() {
        Some(types) => types.iter().map(String::as_str).collect(),
        None if param.kind() == SearchParamType::Token => vec!["ContactPoint"],
        None => vec!["HumanName", "Address", "string"],
    };
    let mut parts: Vec<i16> = types
        .into_iter()
        .flat_map(|t| Part::of_type(t).iter().map(|part| part.code()))
        .collect();
    parts.sort_unstable();
    parts.dedup();
    parts
}

/// Writes ` and <condition>` for each criterion on the resource row `alias` of `rtype`.
/// Ordered tests (date, number, quantity) repeated on a single-valued parameter
/// (`birthdate=ge1961-07-10&birthdate=lt1961-07-13`) are one subquery whose row meets all of
/// them: the resource has one such value, so this is the same condition, and the index sees
/// both bounds at once.
pub(crate) fn write_criteria(
    sql: &mut Sql<'_>,
    rtype: ResourceType,
    alias: &str,
    criteria: &[Condition<'_>],
) {
    let mut done = vec![false; criteria.len()];
    for (i, condition) in criteria.iter().enumerate() {
        if done[i] {
            continue;
        }
        sql.push(" and ");
        let Some((param, _)) = ordered_on_single_value(condition) else {
            write_condition(sql, rtype, alias, condition);
            continue;
        };
        let mut tests = Vec::new();
        for (j, other) in criteria.iter().enumerate().skip(i) {
            if let Some((other_param, test)) = ordered_on_single_value(other)
                && std::ptr::eq(param, other_param)
            {
                tests.push(test);
                done[j] = true;
            }
        }
        let x = sql.alias("x");
        let of = sql.param_rows(rtype, param, &x);
        // A window closed on both sides is computed first, its keys then probed: PostgreSQL
        // cannot estimate a window of one parameter in the range index all date parameters
        // share (open-ended periods of another overlap any window), and would otherwise
        // join it by hash with every resource of the type (bench/README.md, "Search").
        let closed = matches!(window(&tests), Some((Some(_), Some(_))));
        let (open, close) = if closed {
            ("= any(array(select", "))")
        } else {
            ("in (select", ")")
        };
        sql.push(format_args!(
            "{alias}.key {open} {x}.res_key from {} {x} where {of}",
            table(param.kind())
        ));
        if !date_window(sql, &x, &tests) {
            for test in tests {
                sql.push(" and (");
                ordered_values(sql, &x, test);
                sql.push(")");
            }
        }
        sql.push(close);
    }
}

/// The parameter and test of a date, number or quantity test on a single-valued parameter.
fn ordered_on_single_value<'c, 'r>(
    condition: &'c Condition<'r>,
) -> Option<(&'r SearchParameter, &'c Test)> {
    match condition {
        Condition::Match { param, test }
            if param.is_single_valued()
                && !matches!(param.code(), "_id" | "_lastUpdated")
                && matches!(test, Test::Date(_) | Test::Number(_) | Test::Quantity(_)) =>
        {
            Some((param, test))
        }
        _ => None,
    }
}

/// The values of a date, number or quantity test (OR) against the index row `x`.
fn ordered_values(sql: &mut Sql<'_>, x: &str, test: &Test) {
    match test {
        Test::Date(values) => any_of(sql, values, |sql, value| date_row(sql, x, value)),
        Test::Number(values) => any_of(sql, values, |sql, value| {
            number(sql, &format!("{x}.value"), value)
        }),
        Test::Quantity(values) => any_of(sql, values, |sql, value| quantity(sql, x, value)),
        _ => {
            sql.push("false");
        }
    }
}

/// Writes one condition on the resource row `alias` of `rtype`.
fn write_condition(sql: &mut Sql<'_>, rtype: ResourceType, alias: &str, condition: &Condition<'_>) {
    match condition {
        Condition::Match { param, test } => write_test(sql, rtype, alias, param, test),
        Condition::Chain { param, targets } => {
            let x = sql.alias("x");
            let t = sql.alias("t");
            let of = sql.param_rows(rtype, param, &x);
            sql.push(format_args!(
                "{alias}.key in (select {x}.res_key from search_reference {x} \
                 join resources {t} on {t}.res_type = left({x}.target_type, 256) \
                 and {t}.id = left({x}.target_id, 256) \
                 where {of} and {x}.target_id is not null and {x}.url is null \
                 and not {t}.deleted and ("
            ));
            for (n, target) in targets.iter().enumerate() {
                if n > 0 {
                    sql.push(" or ");
                }
                sql.push(format_args!(
                    "({t}.res_type = '{}' and ",
                    target.resource_type
                ));
                write_condition(sql, target.resource_type, &t, &target.condition);
                sql.push(")");
            }
            sql.push("))");
        }
        Condition::Any(alternatives) => {
            sql.push("(false");
            for criteria in alternatives {
                sql.push(" or (true");
                write_criteria(sql, rtype, alias, criteria);
                sql.push(")");
            }
            sql.push(")");
        }
        Condition::Has {
            source,
            param,
            condition,
        } => {
            let x = sql.alias("x");
            let s = sql.alias("s");
            let of = sql.param_rows(*source, param, &x);
            sql.push(format_args!(
                "{alias}.id in (select left({x}.target_id, 256) from search_reference {x} \
                 join resources {s} on {s}.key = {x}.res_key \
                 where {of} and {x}.target_id is not null and {x}.url is null \
                 and left({x}.target_type, 256) = '{rtype}' and "
            ));
            write_condition(sql, *source, &s, condition);
            sql.push(")");
        }
    }
}

/// The index table of a parameter type's values.
fn table(kind: SearchParamType) -> &'static str {
    match kind {
        SearchParamType::Date => "search_date",
        SearchParamType::Reference => "search_reference",
        SearchParamType::Quantity => "search_quantity",
        SearchParamType::Number => "search_number",
        SearchParamType::Uri => "search_uri",
        SearchParamType::Composite => "search_composite",
        // Strings and tokens are lexemes ([`terms_match`]), never rows of a table; parameters
        // without index rows: nothing matches.
        SearchParamType::String | SearchParamType::Token | SearchParamType::Special => {
            "(select null::bigint as res_key, null::int as param)"
        }
    }
}

/// Writes a test of one parameter's index values.
fn write_test(
    sql: &mut Sql<'_>,
    rtype: ResourceType,
    alias: &str,
    param: &SearchParameter,
    test: &Test,
) {
    match param.code() {
        "_id" => return id_test(sql, alias, test),
        "_lastUpdated" => return last_updated_test(sql, alias, test),
        _ => {}
    }
    let x = sql.alias("x");
    let of = sql.param_rows(rtype, param, &x);
    let rows = |sql: &mut Sql<'_>, table: &str, exists: bool| {
        let not = if exists { "" } else { "not " };
        sql.push(format_args!(
            "{not}exists (select 1 from {table} {x} where {x}.res_key = {alias}.key and {of})"
        ));
    };
    // A positive test: the keys of the rows whose values pass.
    let open = |sql: &mut Sql<'_>, table: &str| {
        sql.push(format_args!(
            "{alias}.key in (select {x}.res_key from {table} {x} where {of} and ("
        ));
    };
    // Only string and token tests look at lexemes.
    let ids = sql.ids;
    let terms = || Terms::of(ids, rtype, param);
    match test {
        Test::Missing(missing) if is_term(param.kind()) => {
            let terms = terms();
            let mut query = AnyOf::default();
            for mark in [Mark::Normalized, Mark::Code] {
                for start in terms.starts(mark).0 {
                    query.prefix(&start);
                }
            }
            terms_match(sql, alias, query, !missing);
        }
        Test::Missing(missing) => rows(sql, table(param.kind()), !missing),
        Test::String {
            matching: StringMatch::Contains,
            values,
        } => contains(sql, alias, &terms(), values),
        Test::String { matching, values } => {
            let terms = terms();
            let mut query = AnyOf::default();
            for value in values {
                if *matching == StringMatch::Exact {
                    let both = terms::string(&normalize(value), value);
                    terms.lexemes(&mut query, Mark::Normalized, &both);
                } else {
                    terms.prefixes(&mut query, Mark::Normalized, value);
                }
            }
            terms_match(sql, alias, query, true);
        }
        Test::TokenText(values) => {
            let terms = terms();
            let mut query = AnyOf::default();
            for value in values {
                terms.prefixes(&mut query, Mark::Normalized, value);
            }
            terms_match(sql, alias, query, true);
        }
        Test::Phonetic(values) => {
            let terms = terms();
            // Every code of one value among the resource's codes: a condition per code (a
            // resource's lexemes may be in several rows).
            sql.push("(false");
            for codes in values {
                sql.push(" or (true");
                for code in codes {
                    let mut query = AnyOf::default();
                    terms.phonetic(&mut query, code);
                    sql.push(" and ");
                    terms_match(sql, alias, query, true);
                }
                sql.push(")");
            }
            sql.push(")");
        }
        Test::Token { negated, values } => {
            let terms = terms();
            let mut query = AnyOf::default();
            for value in values {
                token_lexemes(&terms, &mut query, value);
            }
            terms_match(sql, alias, query, !negated);
        }
        Test::OfType(values) => {
            let terms = terms();
            let mut query = AnyOf::default();
            for value in values {
                let system = value.type_system.as_deref();
                let typed = terms::of_type(&value.type_code, &value.value, system);
                if system.is_some() {
                    terms.lexemes(&mut query, Mark::OfType, &typed);
                } else {
                    terms.prefixes(&mut query, Mark::OfType, &typed);
                }
            }
            terms_match(sql, alias, query, true);
        }
        Test::Date(_) | Test::Number(_) | Test::Quantity(_) => {
            open(sql, table(param.kind()));
            ordered_values(sql, &x, test);
            sql.push("))");
        }
        Test::Reference(values) => {
            open(sql, "search_reference");
            any_of(sql, values, |sql, value| reference(sql, &x, value));
            sql.push("))");
        }
        Test::Uri { matching, values } => {
            open(sql, "search_uri");
            any_of(sql, values, |sql, value| {
                uri(sql, &format!("{x}.uri"), *matching, value)
            });
            sql.push("))");
        }
        Test::Composite(values) => {
            open(sql, "search_composite");
            any_of(sql, values, |sql, parts| composite(sql, &x, parts));
            sql.push("))");
        }
    }
}

/// Whether a parameter type's values are lexemes of `search_terms`.
fn is_term(kind: SearchParamType) -> bool {
    matches!(kind, SearchParamType::String | SearchParamType::Token)
}

/// `alias.key in (<the resources with a lexeme query matches>)`, or (`matches` false) the
/// resources without one.
fn terms_match(sql: &mut Sql<'_>, alias: &str, query: AnyOf, matches: bool) {
    if query.is_empty() {
        sql.push(if matches { "false" } else { "true" });
        return;
    }
    let x = sql.alias("x");
    if matches {
        sql.push(format_args!(
            "{alias}.key in (select {x}.res_key from search_terms {x} where {x}.terms @@ "
        ));
    } else {
        sql.push(format_args!(
            "not exists (select 1 from search_terms {x} where {x}.res_key = {alias}.key \
             and {x}.terms @@ "
        ));
    }
    sql.bind(query.into_text()).push("::tsquery)");
}

/// A string `:contains` test: a normalized value of the resource holds one of `values`. No
/// index finds a substring: the lexemes of each resource the other conditions leave are
/// read.
fn contains(sql: &mut Sql<'_>, alias: &str, terms: &Terms, values: &[String]) {
    let (starts, mark) = terms.starts(Mark::Normalized);
    let x = sql.alias("x");
    sql.push(format_args!(
        "exists (select 1 from search_terms {x}, unnest(tsvector_to_array({x}.terms)) l \
         where {x}.res_key = {alias}.key and l ^@ any("
    ))
    .bind(starts)
    .push(") and (false");
    for value in values {
        sql.push(format_args!(
            " or strpos(split_part(substr(l, strpos(l, '{mark}') + 1), E'\\x01', 1), "
        ))
        .bind(value.clone())
        .push(") > 0");
    }
    sql.push("))");
}

/// Adds the lexemes a token search value matches to `query`.
fn token_lexemes(terms: &Terms, query: &mut AnyOf, value: &TokenSearch) {
    match value {
        TokenSearch::Code(code) => terms.prefixes(query, Mark::Code, &terms::code(code, None)),
        TokenSearch::SystemCode { system, code } => {
            terms.lexemes(query, Mark::Code, &terms::code(code, Some(system)));
        }
        TokenSearch::CodeWithoutSystem(code) => {
            terms.lexemes(query, Mark::Code, &terms::code(code, None));
        }
        TokenSearch::System(system) => terms.lexemes(query, Mark::System, system),
    }
}

/// `_id`, on `resources.id`: a token without a system.
fn id_test(sql: &mut Sql<'_>, alias: &str, test: &Test) {
    match test {
        Test::Missing(missing) => {
            sql.push(if *missing { "false" } else { "true" });
        }
        Test::Token { negated, values } => {
            let ids: Vec<String> = values
                .iter()
                .filter_map(|value| match value {
                    TokenSearch::Code(id) | TokenSearch::CodeWithoutSystem(id) => Some(id.clone()),
                    TokenSearch::SystemCode { .. } | TokenSearch::System(_) => None,
                })
                .collect();
            let not = if *negated { "not " } else { "" };
            sql.push(format_args!("{not}{alias}.id = any("))
                .bind(ids)
                .push(")");
        }
        // `:text`, `:of-type`: an id has neither.
        _ => {
            sql.push("false");
        }
    }
}

/// `_lastUpdated`, on `resources.last_updated`: an instant `t`, kept to the microsecond,
/// which covers `[t, t + 1 µs)`. Against a search range `[low, high)` (whole microseconds)
/// every prefix of [`date`] becomes bounds on `t` alone, which the
/// `(res_type, last_updated)` index answers: `t + 1 µs <= x` is `t < x`, `t + 1 µs > x` is
/// `t >= x`.
fn last_updated_test(sql: &mut Sql<'_>, alias: &str, test: &Test) {
    let t = format!("{alias}.last_updated");
    match test {
        Test::Missing(missing) => {
            sql.push(if *missing { "false" } else { "true" });
        }
        Test::Date(values) => any_of(sql, values, |sql, value| {
            let (low, high) = (value.low, value.high);
            match value.prefix {
                Prefix::Eq | Prefix::Ap => {
                    sql.push(format_args!("{t} >= "))
                        .bind(low)
                        .push(format_args!(" and {t} < "))
                        .bind(high);
                }
                Prefix::Ne => {
                    sql.push(format_args!("not ({t} >= "))
                        .bind(low)
                        .push(format_args!(" and {t} < "))
                        .bind(high)
                        .push(")");
                }
                Prefix::Gt | Prefix::Sa => {
                    sql.push(format_args!("{t} >= ")).bind(high);
                }
                Prefix::Ge => {
                    sql.push(format_args!("{t} >= ")).bind(low);
                }
                Prefix::Lt | Prefix::Eb => {
                    sql.push(format_args!("{t} < ")).bind(low);
                }
                Prefix::Le => {
                    sql.push(format_args!("{t} < ")).bind(high);
                }
            }
        }),
        _ => {
            sql.push("false");
        }
    }
}

/// Writes `(a) or (b) or ...`, one per value (false for none).
fn any_of<T>(sql: &mut Sql<'_>, values: &[T], mut write: impl FnMut(&mut Sql<'_>, &T)) {
    if values.is_empty() {
        sql.push("false");
    }
    for (n, value) in values.iter().enumerate() {
        if n > 0 {
            sql.push(" or ");
        }
        sql.push("(");
        write(sql, value);
        sql.push(")");
    }
}

/// `column = value`, through the indexed `left(column, 256)`.
fn text_equals(sql: &mut Sql<'_>, column: &str, value: &str) {
    sql.push(format_args!("left({column}, 256) = "));
    if value.chars().count() < INDEXED_CHARS {
        sql.bind(value.to_owned());
    } else {
        sql.push("left(")
            .bind(value.to_owned())
            .push(format_args!(", 256) and {column} = "))
            .bind(value.to_owned());
    }
}

/// `column` starts with `prefix`, as a range over the indexed `left(column, 256)`.
fn text_starts_with(sql: &mut Sql<'_>, column: &str, prefix: &str) {
    if prefix.chars().count() >= INDEXED_CHARS {
        let head: String = prefix.chars().take(INDEXED_CHARS).collect();
        sql.push(format_args!("left({column}, 256) = "))
            .bind(head)
            .push(format_args!(" and starts_with({column}, "))
            .bind(prefix.to_owned())
            .push(")");
        return;
    }
    sql.push(format_args!("left({column}, 256) >= "))
        .bind(prefix.to_owned());
    if let Some(next) = next_prefix(prefix) {
        sql.push(format_args!(" and left({column}, 256) < "))
            .bind(next);
    }
}

/// The smallest string greater than every string starting with `prefix`, in code point
/// (byte) order: the last character that can be, incremented.
fn next_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut code = u32::from(last) + 1;
        while code <= 0x10FFFF {
            if let Some(next) = char::from_u32(code) {
                chars.push(next);
                return Some(chars.into_iter().collect());
            }
            code += 1;
        }
    }
    None
}

/// One token value against a code and a system column.
fn token(sql: &mut Sql<'_>, code: &str, system: &str, value: &TokenSearch) {
    match value {
        TokenSearch::Code(c) => text_equals(sql, code, c),
        TokenSearch::SystemCode { system: s, code: c } => {
            text_equals(sql, code, c);
            sql.push(format_args!(" and {system} = ")).bind(s.clone());
        }
        TokenSearch::CodeWithoutSystem(c) => {
            text_equals(sql, code, c);
            sql.push(format_args!(" and {system} is null"));
        }
        TokenSearch::System(s) => {
            sql.push(format_args!("{system} = ")).bind(s.clone());
        }
    }
}

/// The range a `search_date` row covers, as its GiST index holds it.
fn date_range(x: &str) -> String {
    format!("tstzrange(least({x}.low, {x}.high), greatest({x}.low, {x}.high), '[]')")
}

/// The range a row must overlap to match a date search value: `(from, to)`, `None` being
/// unbounded; `None` for `ne`, which implies none.
type Overlap = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn implied_overlap(value: &DateSearch) -> Option<Overlap> {
    let (vl, vh) = (value.low, value.high);
    match value.prefix {
        Prefix::Eq | Prefix::Ap => Some((Some(vl), Some(vh))),
        Prefix::Gt | Prefix::Sa => Some((Some(vh), None)),
        Prefix::Ge => Some((Some(vl), None)),
        Prefix::Lt | Prefix::Eb => Some((None, Some(vl))),
        Prefix::Le => Some((None, Some(vh))),
        Prefix::Ne => None,
    }
}

/// `the row's range overlaps (from, to)`, what the GiST index answers.
fn write_overlap(sql: &mut Sql<'_>, x: &str, (from, to): Overlap) {
    sql.push(format_args!("{} && tstzrange(", date_range(x)))
        .bind(from)
        .push("::timestamptz, ")
        .bind(to)
        .push("::timestamptz, '[]')");
}

/// A date search value against the `[low, high)` of a `search_date` row `x`: first the
/// range the prefix implies the row overlaps (what the GiST index answers), then the exact
/// condition of [`date`].
fn date_row(sql: &mut Sql<'_>, x: &str, value: &DateSearch) {
    if let Some(overlap) = implied_overlap(value) {
        write_overlap(sql, x, overlap);
        sql.push(" and ");
    }
    date(sql, &format!("{x}.low"), &format!("{x}.high"), value);
}

/// Single date values (no OR list) of tests on one row, all of which must hold: one overlap
/// with the intersection of their implied ranges (a bounded range the index and the planner's
/// statistics see at once), then each exact condition. `false` when they were not all single
/// date values with an implied range: the caller writes them one by one.
fn date_window(sql: &mut Sql<'_>, x: &str, tests: &[&Test]) -> bool {
    let Some(window) = window(tests) else {
        return false;
    };
    let values = tests.iter().filter_map(|test| match test {
        Test::Date(list) => list.first(),
        _ => None,
    });
    sql.push(" and ");
    match window {
        // Disjoint bounds (`ge2020&lt2019`): nothing matches (and no empty range is built).
        (Some(from), Some(to)) if from > to => {
            sql.push("false");
        }
        window => write_overlap(sql, x, window),
    }
    for value in values {
        sql.push(" and (");
        date(sql, &format!("{x}.low"), &format!("{x}.high"), value);
        sql.push(")");
    }
    true
}

/// The window the date `tests` (one value each, each implying an overlap) leave together:
/// the latest start and the earliest end; `None` when a test is not such a date test.
fn window(tests: &[&Test]) -> Option<Overlap> {
    let mut window: Overlap = (None, None);
    for test in tests {
        let Test::Date(list) = test else {
            return None;
        };
        let [value] = list.as_slice() else {
            return None;
        };
        let (from, to) = implied_overlap(value)?;
        window.0 = window.0.max(from);
        window.1 = match (window.1, to) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Some(window)
}

/// A date search value against `[low, high)` columns (docs/search.md, "Dates").
fn date(sql: &mut Sql<'_>, low: &str, high: &str, value: &DateSearch) {
    let (vl, vh) = (value.low, value.high);
    match value.prefix {
        Prefix::Eq => {
            sql.push(format_args!("{low} >= "))
                .bind(vl)
                .push(format_args!(" and {high} <= "))
                .bind(vh);
        }
        Prefix::Ne => {
            sql.push(format_args!("not ({low} >= "))
                .bind(vl)
                .push(format_args!(" and {high} <= "))
                .bind(vh)
                .push(")");
        }
        Prefix::Gt => {
            sql.push(format_args!("{high} > ")).bind(vh);
        }
        Prefix::Lt => {
            sql.push(format_args!("{low} < ")).bind(vl);
        }
        Prefix::Ge => {
            sql.push(format_args!("({low} >= "))
                .bind(vl)
                .push(format_args!(" or {high} > "))
                .bind(vh)
                .push(")");
        }
        Prefix::Le => {
            sql.push(format_args!("({high} <= "))
                .bind(vh)
                .push(format_args!(" or {low} < "))
                .bind(vl)
                .push(")");
        }
        Prefix::Sa => {
            sql.push(format_args!("{low} >= ")).bind(vh);
        }
        Prefix::Eb => {
            sql.push(format_args!("{high} <= ")).bind(vl);
        }
        Prefix::Ap => {
            sql.push(format_args!("{low} < "))
                .bind(vh)
                .push(format_args!(" and {high} > "))
                .bind(vl);
        }
    }
}

/// A number search value against a numeric column: within its bounds (outside for `ne`).
fn number(sql: &mut Sql<'_>, column: &str, value: &NumberSearch) {
    let bound = |sql: &mut Sql<'_>, bound: &Bound<fhir_core::search::Decimal>, low: bool| {
        let (op, decimal) = match (bound, low) {
            (Bound::Included(d), true) => (">=", d),
            (Bound::Excluded(d), true) => (">", d),
            (Bound::Included(d), false) => ("<=", d),
            (Bound::Excluded(d), false) => ("<", d),
            (Bound::Unbounded, _) => {
                sql.push("true");
                return;
            }
        };
        sql.push(format_args!("{column} {op} "))
            .bind(decimal.as_str().to_owned())
            .push("::numeric");
    };
    if value.is_negated() {
        sql.push("not (");
    }
    bound(sql, &value.low, true);
    sql.push(" and ");
    bound(sql, &value.high, false);
    if value.is_negated() {
        sql.push(")");
    }
}

fn quantity(sql: &mut Sql<'_>, x: &str, value: &QuantitySearch) {
    number(sql, &format!("{x}.value"), &value.number);
    match &value.unit {
        QuantityUnit::Any => {}
        QuantityUnit::Code(code) => {
            sql.push(format_args!(" and ({x}.code = "))
                .bind(code.clone())
                .push(format_args!(" or {x}.unit = "))
                .bind(code.clone())
                .push(")");
        }
        QuantityUnit::SystemCode { system, code } => {
            sql.push(format_args!(" and {x}.system = "))
                .bind(system.clone())
                .push(format_args!(" and {x}.code = "))
                .bind(code.clone());
        }
    }
}

fn reference(sql: &mut Sql<'_>, x: &str, value: &ReferenceSearch) {
    match value {
        ReferenceSearch::Local {
            resource_type,
            id,
            version,
        } => {
            // Local: not a reference to another server that happens to end alike.
            sql.push(format_args!(
                "{x}.target_id is not null and {x}.url is null and "
            ));
            text_equals(sql, &format!("{x}.target_id"), id);
            if let Some(rtype) = resource_type {
                sql.push(" and ");
                text_equals(sql, &format!("{x}.target_type"), rtype);
            }
            if let Some(version) = version {
                sql.push(format_args!(" and {x}.target_version = "))
                    .bind(version.clone());
            }
        }
        ReferenceSearch::Url(url) => text_equals(sql, &format!("{x}.url"), url),
        ReferenceSearch::Identifier(token_value) => token(
            sql,
            &format!("{x}.identifier_value"),
            &format!("{x}.identifier_system"),
            token_value,
        ),
    }
}

fn uri(sql: &mut Sql<'_>, column: &str, matching: UriMatch, value: &str) {
    match matching {
        UriMatch::Exact => text_equals(sql, column, value),
        UriMatch::Below => text_starts_with(sql, column, value),
        UriMatch::Above => {
            // The stored uri is a prefix of the value: one of its prefixes.
            let prefixes: Vec<String> = value
                .char_indices()
                .map(|(i, c)| value[..i + c.len_utf8()].to_owned())
                .filter(|p| p.chars().count() <= INDEXED_CHARS)
                .collect();
            sql.push(format_args!("left({column}, 256) = any("))
                .bind(prefixes)
                .push(format_args!(") and starts_with("))
                .bind(value.to_owned())
                .push(format_args!(", {column})"));
        }
    }
}

/// One composite value: the equality parts as a `@>` containment (the GIN index), the
/// others checked on the rows it finds.
fn composite(sql: &mut Sql<'_>, x: &str, parts: &[ComponentValue]) {
    let mut contained = Map::new();
    for (n, part) in parts.iter().enumerate() {
        let mut object = Map::new();
        let mut put = |key: &str, value: &str| {
            object.insert(key.to_owned(), Value::String(value.to_owned()));
        };
        match part {
            ComponentValue::Token(TokenSearch::Code(code))
            | ComponentValue::Token(TokenSearch::CodeWithoutSystem(code)) => put("code", code),
            ComponentValue::Token(TokenSearch::SystemCode { system, code }) => {
                put("system", system);
                put("code", code);
            }
            ComponentValue::Token(TokenSearch::System(system)) => put("system", system),
            ComponentValue::Reference(ReferenceSearch::Local {
                resource_type, id, ..
            }) => {
                put("target_id", id);
                if let Some(rtype) = resource_type {
                    put("target_type", rtype);
                }
            }
            ComponentValue::Reference(ReferenceSearch::Url(url)) => put("url", url),
            ComponentValue::Reference(ReferenceSearch::Identifier(TokenSearch::SystemCode {
                system,
                code,
            })) => {
                put("identifier_system", system);
                put("identifier_value", code);
            }
            ComponentValue::Uri(uri) => put("uri", uri),
            _ => {}
        }
        if !object.is_empty() {
            contained.insert(n.to_string(), Value::Object(object));
        }
    }
    sql.push(format_args!("{x}.components @> "))
        .bind(Value::Object(contained))
        .push("::jsonb");
    for (n, part) in parts.iter().enumerate() {
        let field = |name: &str| format!("({x}.components -> '{n}' ->> '{name}')");
        match part {
            ComponentValue::String(prefix) => {
                sql.push(format_args!(" and starts_with({}, ", field("normalized")))
                    .bind(prefix.clone())
                    .push(")");
            }
            ComponentValue::Token(TokenSearch::CodeWithoutSystem(_)) => {
                sql.push(format_args!(" and {} is null", field("system")));
            }
            ComponentValue::Reference(ReferenceSearch::Identifier(value)) => {
                sql.push(" and ");
                token(
                    sql,
                    &field("identifier_value"),
                    &field("identifier_system"),
                    value,
                );
            }
            ComponentValue::Date(value) => {
                sql.push(" and ");
                date(
                    sql,
                    &format!("coalesce({}::timestamptz, '-infinity')", field("low")),
                    &format!("coalesce({}::timestamptz, 'infinity')", field("high")),
                    value,
                );
            }
            ComponentValue::Number(value) => {
                sql.push(" and ");
                number(sql, &format!("{}::numeric", field("value")), value);
            }
            ComponentValue::Quantity(value) => {
                sql.push(" and ");
                let column = format!("{}::numeric", field("value"));
                number(sql, &column, &value.number);
                match &value.unit {
                    QuantityUnit::Any => {}
                    QuantityUnit::Code(code) => {
                        sql.push(format_args!(" and ({} = ", field("code")))
                            .bind(code.clone())
                            .push(format_args!(" or {} = ", field("unit")))
                            .bind(code.clone())
                            .push(")");
                    }
                    QuantityUnit::SystemCode { system, code } => {
                        sql.push(format_args!(" and {} = ", field("system")))
                            .bind(system.clone())
                            .push(format_args!(" and {} = ", field("code")))
                            .bind(code.clone());
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_prefix;

    #[test]
    fn the_next_prefix_follows_every_string_starting_with_the_prefix() {
        assert_eq!(next_prefix("smi").as_deref(), Some("smj"));
        assert_eq!(next_prefix("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(next_prefix("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(next_prefix("\u{10FFFF}"), None);
    }
}
