//! Index rows, column by column, and the SQL that writes them: per table one
//! `insert ... select ... from unnest(...)`, a common table expression of the statement
//! that writes the resource row, so a resource and its index rows are one statement. The
//! record of local references (`resource_references`, for referential integrity) is
//! written the same way, as a table without a parameter column.

use std::sync::OnceLock;

use chrono::{DateTime, SecondsFormat, Utc};
use fhir_core::reference::LocalReference;
use fhir_core::search::{
    DateRange, IndexEntry, IndexValue, QuantityValue, ReferenceValue, TokenValue,
};
use serde_json::{Map, Value};
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

use super::terms;

/// A statement being bound.
pub(crate) type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// Where the inserted rows take their resource key from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// The `key` column of the one row of the CTE `cur`: the resource the statement writes.
    Cur,
    /// An array bound before each table's values: several resources (a re-index batch).
    Bound,
    /// An array bound before each table's values holding each row's resource's position in
    /// the statement's CTE `placed` (`pos`, `key`): several resources the statement writes.
    Placed,
}

/// A value column of an index table: its name, the array type it is bound as, and the
/// expression that inserts it from the `unnest` alias `t`.
struct Column {
    name: &'static str,
    array: &'static str,
    insert: &'static str,
    /// Compared as text by an update ([`Column::compared`]).
    by_text: bool,
}

impl Column {
    /// The column of the row `alias` as an update compares it: a decimal by its text, so
    /// that `1.5` replaces `1.50` (a search reads the precision a decimal was written with).
    fn compared(&self, alias: &str) -> String {
        if self.by_text {
            format!("{alias}.{}::text", self.name)
        } else {
            format!("{alias}.{}", self.name)
        }
    }
}

const fn text(name: &'static str, insert: &'static str) -> Column {
    Column {
        name,
        array: "text[]",
        insert,
        by_text: false,
    }
}

/// A decimal, bound as text so that it reaches PostgreSQL exactly as written, and compared
/// by its text so that a change of its digits is a change.
const DECIMAL: Column = Column {
    name: "value",
    array: "text[]",
    insert: "t.value::numeric",
    by_text: true,
};

/// An index table and its value columns, after `res_key` and (when it has one) `param`.
struct Table {
    name: &'static str,
    /// Whether the rows carry a parameter id (all but the reference record).
    param: bool,
    columns: &'static [Column],
}

/// The index tables, in the order [`IndexRows::bind`] binds them.
const TABLES: [Table; 8] = [
    // Every string and token value of the resource, as lexemes of one `tsvector` (more
    // for a resource with very many): `terms.rs`.
    Table {
        name: "search_terms",
        param: false,
        columns: &[Column {
            name: "terms",
            array: "tsvector[]",
            insert: "t.terms",
            by_text: false,
        }],
    },
    Table {
        name: "search_date",
        param: true,
        columns: &[
            Column {
                name: "low",
                array: "timestamptz[]",
                insert: "coalesce(t.low, '-infinity')",
                by_text: false,
            },
            Column {
                name: "high",
                array: "timestamptz[]",
                insert: "coalesce(t.high, 'infinity')",
                by_text: false,
            },
        ],
    },
    Table {
        name: "search_reference",
        param: true,
        columns: &[
            text("target_type", "t.target_type"),
            text("target_id", "t.target_id"),
            text("target_version", "t.target_version"),
            text("url", "t.url"),
            text("identifier_system", "t.identifier_system"),
            text("identifier_value", "t.identifier_value"),
        ],
    },
    Table {
        name: "search_quantity",
        param: true,
        columns: &[
            DECIMAL,
            text("comparator", "t.comparator"),
            text("unit", "t.unit"),
            text("system", "t.system"),
            text("code", "t.code"),
        ],
    },
    Table {
        name: "search_number",
        param: true,
        columns: &[DECIMAL],
    },
    Table {
        name: "search_uri",
        param: true,
        columns: &[text("uri", "t.uri")],
    },
    Table {
        name: "search_composite",
        param: true,
        columns: &[Column {
            name: "components",
            array: "jsonb[]",
            insert: "t.components",
            by_text: false,
        }],
    },
    // Every local reference of the resource, whatever the search parameters: what a
    // delete looks for referrers in.
    Table {
        name: "resource_references",
        param: false,
        columns: &[
            text("target_type", "t.target_type"),
            text("target_id", "t.target_id"),
        ],
    },
];

/// A set of index tables, as bits over [`TABLES`]: the tables a write has rows for. A
/// statement inserts into those only, since every table costs the statement a step even
/// with no rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableSet(usize);

impl TableSet {
    /// Every table.
    pub(crate) const ALL: TableSet = TableSet((1 << TABLES.len()) - 1);

    /// No table.
    pub(crate) const NONE: TableSet = TableSet(0);

    fn contains(self, table: usize) -> bool {
        self.0 & (1 << table) != 0
    }

    /// The tables of either set.
    pub(crate) fn union(self, other: TableSet) -> TableSet {
        TableSet(self.0 | other.0)
    }

    /// The set as stored in `resources.index_tables` (bit `i` for `TABLES[i]`).
    pub(crate) fn bits(self) -> i32 {
        // Nine tables: the bits fit.
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }

    /// The set `resources.index_tables` records: every table when it records none (a row
    /// written before the column was, or re-indexed since its last write).
    pub(crate) fn recorded(bits: Option<i32>) -> TableSet {
        bits.and_then(|bits| usize::try_from(bits).ok())
            .map_or(TableSet::ALL, |bits| TableSet(bits & TableSet::ALL.0))
    }
}

/// The texts of one statement, one per [`TableSet`], each built on first use.
#[derive(Debug)]
pub(crate) struct Statements {
    texts: [OnceLock<String>; 1 << TABLES.len()],
    build: fn(TableSet) -> String,
}

impl Statements {
    /// A statement whose text for a set of tables `build` gives.
    pub(crate) const fn new(build: fn(TableSet) -> String) -> Self {
        Statements {
            texts: [const { OnceLock::new() }; 1 << TABLES.len()],
            build,
        }
    }

    /// The text for `tables`.
    pub(crate) fn get(&self, tables: TableSet) -> &str {
        // A set has one bit per table: always an index of `texts`.
        let slot = &self.texts[tables.0 % self.texts.len()];
        slot.get_or_init(|| (self.build)(tables))
    }
}

/// Common table expressions, each after a `, `, inserting into `tables` the rows bound
/// from placeholder `$first` on (see [`IndexRows::bind`]); returns them and the next free
/// placeholder.
pub(crate) fn insert_ctes(keys: Keys, first: usize, tables: TableSet) -> (String, usize) {
    let mut sql = String::new();
    let mut next = first;
    for (i, table) in TABLES.iter().enumerate() {
        if tables.contains(i) {
            sql.push_str(&insert_cte(table, keys, &mut next));
        }
    }
    (sql, next)
}

/// The `unnest(...)` of `table`'s arrays bound from `$next` on (advanced past them), and
/// the names of its columns.
fn unnest(table: &Table, keys: Keys, next: &mut usize) -> (String, Vec<&'static str>) {
    let mut aliases: Vec<&str> = table.param.then_some("param").into_iter().collect();
    let mut arrays: Vec<&str> = table.param.then_some("int4[]").into_iter().collect();
    match keys {
        Keys::Cur => {}
        Keys::Bound => aliases.insert(0, "res_key"),
        Keys::Placed => aliases.insert(0, "pos"),
    }
    if keys != Keys::Cur {
        arrays.insert(0, "int8[]");
    }
    aliases.extend(table.columns.iter().map(|c| c.name));
    arrays.extend(table.columns.iter().map(|c| c.array));
    let placeholders: Vec<String> = arrays
        .iter()
        .map(|array| {
            *next += 1;
            format!("${}::{array}", *next - 1)
        })
        .collect();
    (format!("unnest({})", placeholders.join(", ")), aliases)
}

/// The insert into `table`, its arrays bound from `$next` on (advanced past them).
fn insert_cte(table: &Table, keys: Keys, next: &mut usize) -> String {
    let (unnest, aliases) = unnest(table, keys, next);
    let names: Vec<&str> = table
        .param
        .then_some("param")
        .into_iter()
        .chain(table.columns.iter().map(|c| c.name))
        .collect();
    let values: Vec<&str> = table
        .param
        .then_some("t.param")
        .into_iter()
        .chain(table.columns.iter().map(|c| c.insert))
        .collect();
    let (key, from, join) = match keys {
        Keys::Cur => ("cur.key", "cur, ", ""),
        Keys::Bound => ("t.res_key", "", ""),
        Keys::Placed => ("placed.key", "placed join ", " using (pos)"),
    };
    format!(
        ", {name}_new as (insert into {name} (res_key, {names}) \
         select {key}, {values} from {from}{unnest} as t({aliases}){join})",
        name = table.name,
        names = names.join(", "),
        values = values.join(", "),
        aliases = aliases.join(", "),
    )
}

/// Common table expressions, each after a `, `, that make the index rows of resource `$1`
/// (updated by the CTE `cur`) in the tables of `replaced` those bound from placeholder
/// `$first` on (none for a table without rows bound), and delete its rows from the tables
/// of `cleared`; returns them and the next free placeholder. A row that is already there
/// stays: an update that leaves a value as it was writes nothing for it, instead of
/// deleting and inserting the same row (most updates change a few values). A table in
/// neither set is not touched: every table costs the statement a step even with no rows.
pub(crate) fn replace_ctes(first: usize, replaced: TableSet, cleared: TableSet) -> (String, usize) {
    let mut sql = String::new();
    let mut next = first;
    for (i, table) in TABLES.iter().enumerate() {
        if replaced.contains(i) {
            sql.push_str(&replace_cte(table, &mut next));
        } else if cleared.contains(i) {
            sql.push_str(&format!(
                ", {name}_old as (delete from {name} where res_key = $1)",
                name = table.name
            ));
        }
    }
    (sql, next)
}

/// The rows of `table` for resource `$1` made equal to those bound from `$next` on
/// (advanced past them): those not bound deleted, those not there inserted. Both compare
/// with the rows as they were when the statement began, so neither sees the other's work.
fn replace_cte(table: &Table, next: &mut usize) -> String {
    let columns = table.columns;
    let (unnest, aliases) = unnest(table, Keys::Cur, next);
    let values: Vec<String> = table
        .param
        .then(|| "t.param as param".to_owned())
        .into_iter()
        .chain(
            columns
                .iter()
                .map(|c| format!("{} as {}", c.insert, c.name)),
        )
        .collect();
    let compared = |alias: &str| -> String {
        table
            .param
            .then(|| format!("{alias}.param"))
            .into_iter()
            .chain(columns.iter().map(|c| c.compared(alias)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names = aliases.join(", ");
    let vs: Vec<String> = aliases.iter().map(|a| format!("v.{a}")).collect();
    // The rows there are read by `res_key = $1` on their own, not joined to `cur`: joined,
    // a plan made while the table was small would read the whole table for every update
    // long after it grew.
    format!(
        ", {name}_rows as (select {values} from {unnest} as t({names})), \
         {name}_had as (select {names} from {name} where res_key = $1), \
         {name}_old as (delete from {name} s where s.res_key = $1 and not exists \
         (select from {name}_rows v where ({v}) is not distinct from ({s}))), \
         {name}_new as (insert into {name} (res_key, {names}) \
         select cur.key, {vs} from cur, {name}_rows v where not exists \
         (select from {name}_had s where ({s}) is not distinct from ({v})))",
        name = table.name,
        values = values.join(", "),
        v = compared("v"),
        s = compared("s"),
        vs = vs.join(", "),
    )
}

/// Common table expressions, each after a `, `, deleting the rows whose `res_key`
/// satisfies `condition` (`= $1`, `= any($1)`).
pub(crate) fn delete_ctes(condition: &str) -> String {
    TABLES
        .iter()
        .map(|t| {
            format!(
                ", {name}_old as (delete from {name} where res_key {condition})",
                name = t.name
            )
        })
        .collect()
}

/// Resource keys and parameter ids of one table's rows.
#[derive(Debug, Default)]
struct Ids {
    keys: Vec<i64>,
    params: Vec<i32>,
}

impl Ids {
    fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    fn push(&mut self, key: i64, param: i32) {
        self.keys.push(key);
        self.params.push(param);
    }

    fn bind<'q>(self, query: PgQuery<'q>, keys: Keys) -> PgQuery<'q> {
        let query = match keys {
            Keys::Cur => query,
            Keys::Bound | Keys::Placed => query.bind(self.keys),
        };
        query.bind(self.params)
    }
}

/// The lexemes of resources' string and token values, with the resource each is of.
#[derive(Debug, Default)]
struct TermRows {
    lexemes: Vec<(i64, String)>,
}

impl TermRows {
    /// The rows: resource keys and their `tsvector`s, one or more per resource.
    fn rows(mut self) -> (Vec<i64>, Vec<terms::TsVector>) {
        self.lexemes.sort_by_key(|(key, _)| *key);
        let mut keys = Vec::new();
        let mut terms = Vec::new();
        let mut rest = self.lexemes.as_mut_slice();
        while let Some(&(key, _)) = rest.first() {
            let n = rest.iter().take_while(|(k, _)| *k == key).count();
            let (one, others) = rest.split_at_mut(n);
            let lexemes = one.iter_mut().map(|(_, l)| std::mem::take(l)).collect();
            for row in terms::tsvectors(lexemes) {
                keys.push(key);
                terms.push(row);
            }
            rest = others;
        }
        (keys, terms)
    }
}

#[derive(Debug, Default)]
struct DateRows {
    ids: Ids,
    low: Vec<Option<DateTime<Utc>>>,
    high: Vec<Option<DateTime<Utc>>>,
}

#[derive(Debug, Default)]
struct ReferenceRows<'v> {
    ids: Ids,
    target_type: Vec<Option<&'v str>>,
    target_id: Vec<Option<&'v str>>,
    target_version: Vec<Option<&'v str>>,
    url: Vec<Option<&'v str>>,
    identifier_system: Vec<Option<&'v str>>,
    identifier_value: Vec<Option<&'v str>>,
}

#[derive(Debug, Default)]
struct QuantityRows<'v> {
    ids: Ids,
    value: Vec<&'v str>,
    comparator: Vec<Option<&'v str>>,
    unit: Vec<Option<&'v str>>,
    system: Vec<Option<&'v str>>,
    code: Vec<Option<&'v str>>,
}

#[derive(Debug, Default)]
struct ValueRows<'v> {
    ids: Ids,
    value: Vec<&'v str>,
}

#[derive(Debug, Default)]
struct CompositeRows {
    ids: Ids,
    components: Vec<Value>,
}

/// Rows of the reference record: no parameter.
#[derive(Debug, Default)]
struct RecordRows<'v> {
    keys: Vec<i64>,
    target_type: Vec<&'v str>,
    target_id: Vec<&'v str>,
}

/// The index rows of one or more resources, one set of columns per table, borrowing the
/// text of the index values.
#[derive(Debug, Default)]
pub(crate) struct IndexRows<'v> {
    terms: TermRows,
    date: DateRows,
    reference: ReferenceRows<'v>,
    quantity: QuantityRows<'v>,
    number: ValueRows<'v>,
    uri: ValueRows<'v>,
    composite: CompositeRows,
    record: RecordRows<'v>,
}

impl<'v> IndexRows<'v> {
    /// Adds the row of `entry`, a value of parameter `param` of resource `key` (its
    /// position with [`Keys::Placed`], unused with [`Keys::Cur`]), to its table.
    pub(crate) fn push(&mut self, key: i64, param: i32, entry: &'v IndexEntry<'_>) {
        match &entry.value {
            IndexValue::String(_) | IndexValue::Token(_) => {
                let mut lexemes = Vec::new();
                terms::push_entry(&mut lexemes, param, entry);
                let lexemes = lexemes.into_iter().map(|lexeme| (key, lexeme));
                self.terms.lexemes.extend(lexemes);
            }
            IndexValue::Date(range) => self.push_date(key, param, range),
            IndexValue::Reference(reference) => self.push_reference(key, param, reference),
            IndexValue::Quantity(quantity) => self.push_quantity(key, param, quantity),
            IndexValue::Number(number) => {
                self.number.ids.push(key, param);
                self.number.value.push(number.as_str());
            }
            IndexValue::Uri(uri) => {
                self.uri.ids.push(key, param);
                self.uri.value.push(uri);
            }
            IndexValue::Composite(parts) => {
                self.composite.ids.push(key, param);
                self.composite.components.push(composite_json(parts));
            }
        }
    }

    /// Adds the reference record rows of `references`, the local references of resource
    /// `key` (as in [`IndexRows::push`]).
    pub(crate) fn push_references(&mut self, key: i64, references: &'v [LocalReference]) {
        for reference in references {
            self.record.keys.push(key);
            self.record.target_type.push(reference.target_type.as_str());
            self.record.target_id.push(reference.target_id.as_str());
        }
    }

    fn push_date(&mut self, key: i64, param: i32, range: &DateRange) {
        self.date.ids.push(key, param);
        self.date.low.push(range.low);
        self.date.high.push(range.high);
    }

    fn push_reference(&mut self, key: i64, param: i32, value: &'v ReferenceValue) {
        let rows = &mut self.reference;
        rows.ids.push(key, param);
        rows.target_type.push(value.target_type.as_deref());
        rows.target_id.push(value.id.as_deref());
        rows.target_version.push(value.version.as_deref());
        rows.url.push(value.url.as_deref());
        let identifier = value.identifier.as_ref();
        rows.identifier_system
            .push(identifier.and_then(|i| i.system.as_deref()));
        rows.identifier_value
            .push(identifier.map(|i| i.value.as_str()));
    }

    fn push_quantity(&mut self, key: i64, param: i32, value: &'v QuantityValue) {
        let rows = &mut self.quantity;
        rows.ids.push(key, param);
        rows.value.push(value.value.as_str());
        rows.comparator.push(value.comparator.as_deref());
        rows.unit.push(value.unit.as_deref());
        rows.system.push(value.system.as_deref());
        rows.code.push(value.code.as_deref());
    }

    /// The tables these rows go to.
    pub(crate) fn tables(&self) -> TableSet {
        // In the order of `TABLES`.
        let filled: [bool; TABLES.len()] = [
            !self.terms.lexemes.is_empty(),
            !self.date.ids.is_empty(),
            !self.reference.ids.is_empty(),
            !self.quantity.ids.is_empty(),
            !self.number.ids.is_empty(),
            !self.uri.ids.is_empty(),
            !self.composite.ids.is_empty(),
            !self.record.keys.is_empty(),
        ];
        TableSet(
            filled
                .iter()
                .enumerate()
                .filter(|(_, filled)| **filled)
                .fold(0, |set, (i, _)| set | 1 << i),
        )
    }

    /// Binds the arrays of the tables that have rows ([`IndexRows::tables`]), in the order
    /// of [`insert_ctes`]'s placeholders.
    pub(crate) fn bind<'q>(self, query: PgQuery<'q>, keys: Keys) -> PgQuery<'q>
    where
        'v: 'q,
    {
        let tables = self.tables();
        self.bind_tables(query, keys, tables)
    }

    /// [`IndexRows::bind`] for a statement that has the tables of `tables` (a set that
    /// holds [`IndexRows::tables`]), whose arrays are bound empty where there are no rows.
    pub(crate) fn bind_tables<'q>(
        self,
        query: PgQuery<'q>,
        keys: Keys,
        tables: TableSet,
    ) -> PgQuery<'q>
    where
        'v: 'q,
    {
        let IndexRows {
            terms,
            date,
            reference,
            quantity,
            number,
            uri,
            composite,
            record,
        } = self;
        let mut query = query;
        if tables.contains(0) {
            let (rows_of, tsvectors) = terms.rows();
            if keys != Keys::Cur {
                query = query.bind(rows_of);
            }
            query = query.bind(tsvectors);
        }
        if tables.contains(1) {
            query = date.ids.bind(query, keys).bind(date.low).bind(date.high);
        }
        if tables.contains(2) {
            query = reference
                .ids
                .bind(query, keys)
                .bind(reference.target_type)
                .bind(reference.target_id)
                .bind(reference.target_version)
                .bind(reference.url)
                .bind(reference.identifier_system)
                .bind(reference.identifier_value);
        }
        if tables.contains(3) {
            query = quantity
                .ids
                .bind(query, keys)
                .bind(quantity.value)
                .bind(quantity.comparator)
                .bind(quantity.unit)
                .bind(quantity.system)
                .bind(quantity.code);
        }
        if tables.contains(4) {
            query = number.ids.bind(query, keys).bind(number.value);
        }
        if tables.contains(5) {
            query = uri.ids.bind(query, keys).bind(uri.value);
        }
        if tables.contains(6) {
            query = composite.ids.bind(query, keys).bind(composite.components);
        }
        if tables.contains(7) {
            if keys != Keys::Cur {
                query = query.bind(record.keys);
            }
            query = query.bind(record.target_type).bind(record.target_id);
        }
        query
    }
}

/// A composite value as stored: an object keyed by component position (`"0"`, `"1"`),
/// each component named like the columns of its own table; absent parts are left out.
fn composite_json(parts: &[IndexValue]) -> Value {
    let object: Map<String, Value> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| (i.to_string(), component_json(part)))
        .collect();
    Value::Object(object)
}

fn component_json(value: &IndexValue) -> Value {
    let mut out = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.to_string(), value);
        }
    };
    let text = |s: &str| Some(Value::String(s.to_string()));
    let opt = |s: &Option<String>| s.as_deref().map(|s| Value::String(s.to_string()));
    match value {
        IndexValue::String(s) => {
            put("normalized", text(&s.normalized));
            put("exact", text(&s.exact));
        }
        IndexValue::Token(TokenValue::Code { system, code }) => {
            put("system", opt(system));
            put("code", text(code));
        }
        IndexValue::Token(TokenValue::Text(s)) => put("text", text(&s.normalized)),
        IndexValue::Token(TokenValue::OfType {
            system,
            type_system,
            type_code,
            value,
        }) => {
            put("system", opt(system));
            put("code", text(value));
            put("type_system", opt(type_system));
            put("type_code", text(type_code));
        }
        IndexValue::Date(range) => {
            put("low", range.low.map(instant));
            put("high", range.high.map(instant));
        }
        IndexValue::Reference(r) => {
            put("target_type", opt(&r.target_type));
            put("target_id", opt(&r.id));
            put("target_version", opt(&r.version));
            put("url", opt(&r.url));
            let identifier = r.identifier.as_ref();
            put("identifier_system", identifier.and_then(|i| opt(&i.system)));
            put("identifier_value", identifier.and_then(|i| text(&i.value)));
        }
        IndexValue::Quantity(q) => {
            put("value", Some(number(q.value.as_str())));
            put("comparator", opt(&q.comparator));
            put("unit", opt(&q.unit));
            put("system", opt(&q.system));
            put("code", opt(&q.code));
        }
        IndexValue::Number(n) => put("value", Some(number(n.as_str()))),
        IndexValue::Uri(u) => put("uri", text(u)),
        // Components are of simple types (the registry checks it).
        IndexValue::Composite(_) => {}
    }
    Value::Object(out)
}

/// A date bound as JSON: RFC 3339 in UTC, with microseconds when there are any.
fn instant(at: DateTime<Utc>) -> Value {
    Value::String(at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// A decimal as a JSON number with its digits as written (a string if it were not one).
fn number(text: &str) -> Value {
    text.parse::<serde_json::Number>()
        .map_or_else(|_| Value::String(text.to_string()), Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_bound_arrays() {
        let (cur, next) = insert_ctes(Keys::Cur, 10, TableSet::ALL);
        // param + value columns per table
        let per_table: usize = TABLES
            .iter()
            .map(|t| usize::from(t.param) + t.columns.len())
            .sum();
        assert_eq!(next, 10 + per_table);
        assert!(cur.contains(
            "search_terms_new as (insert into search_terms (res_key, terms) \
             select cur.key, t.terms from cur, unnest($10::tsvector[]) as t(terms))"
        ));
        let (bound, next) = insert_ctes(Keys::Bound, 2, TableSet::ALL);
        assert_eq!(next, 2 + per_table + TABLES.len());
        assert!(bound.contains("from unnest($2::int8[], $3::tsvector[]) as t(res_key, terms)"));
        let (placed, next) = insert_ctes(Keys::Placed, 2, TableSet::ALL);
        assert_eq!(next, 2 + per_table + TABLES.len());
        assert!(placed.contains(
            "select placed.key, t.terms from placed join unnest($2::int8[], $3::tsvector[]) \
             as t(pos, terms) using (pos))"
        ));
        assert!(placed.contains(
            "resource_references_new as (insert into resource_references \
             (res_key, target_type, target_id) select placed.key, t.target_type, t.target_id \
             from placed join unnest("
        ));
    }

    #[test]
    fn a_replacement_compares_what_it_binds_and_clears_the_tables_it_is_told() {
        let date_only = TableSet(1 << 1);
        let (sql, next) = replace_ctes(9, date_only, TableSet::ALL);
        assert_eq!(next, 12, "param, low and high");
        assert!(sql.contains(
            "search_date_rows as (select t.param as param, coalesce(t.low, '-infinity') as low, \
             coalesce(t.high, 'infinity') as high from unnest($9::int4[], $10::timestamptz[], \
             $11::timestamptz[]) as t(param, low, high))"
        ));
        assert!(
            sql.contains("(v.param, v.low, v.high) is not distinct from (s.param, s.low, s.high)")
        );
        assert!(
            sql.contains(", search_terms_old as (delete from search_terms where res_key = $1)")
        );
        assert_eq!(sql.matches("_old as").count(), TABLES.len());
        assert_eq!(sql.matches("_new as").count(), 1);
        // With the tables the resource's rows are in known, the others are left alone.
        let (known, _) = replace_ctes(9, date_only, TableSet::NONE);
        assert_eq!(known.matches("_old as").count(), 1, "{known}");
        assert!(!known.contains("search_terms"), "{known}");
        let (sql, _) = replace_ctes(1, TableSet(1 << 4), TableSet::NONE);
        assert!(
            sql.contains("(v.param, v.value::text) is not distinct from (s.param, s.value::text)")
        );
    }

    /// `resources.index_tables` stores sets of these tables by position: a table may be
    /// added at the end; moving one needs a migration that clears the column
    /// (`20261206000001_search_terms.sql`).
    #[test]
    fn the_tables_keep_their_positions() {
        let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "search_terms",
                "search_date",
                "search_reference",
                "search_quantity",
                "search_number",
                "search_uri",
                "search_composite",
                "resource_references",
            ]
        );
        assert_eq!(TableSet::recorded(None), TableSet::ALL);
        assert_eq!(TableSet::recorded(Some(0b101)), TableSet(0b101));
        assert_eq!(TableSet(0b101).bits(), 5);
        assert_eq!(TableSet::NONE.union(TableSet(1 << 3)), TableSet(1 << 3));
    }

    #[test]
    fn only_tables_with_rows_are_written() {
        let mut rows = IndexRows::default();
        let registry = fhir_core::search::Registry::builtin().expect("the definitions load");
        let date = IndexEntry {
            param: registry.get("Patient", "birthdate").expect("a parameter"),
            value: IndexValue::Date(DateRange {
                low: None,
                high: None,
            }),
            part: Default::default(),
        };
        rows.push(1, 7, &date);
        assert_eq!(rows.tables(), TableSet(1 << 1));
        let (sql, next) = insert_ctes(Keys::Cur, 1, rows.tables());
        assert_eq!(next, 4);
        assert!(sql.starts_with(", search_date_new as (insert into search_date"));
        assert_eq!(sql.matches("_new as").count(), 1);
    }

    #[test]
    fn composites_are_objects_by_position() {
        let Some(decimal) = fhir_core::search::Decimal::parse("1.50") else {
            panic!("1.50 is a decimal")
        };
        let parts = [
            IndexValue::Token(TokenValue::Code {
                system: None,
                code: "gender".into(),
            }),
            IndexValue::Number(decimal),
        ];
        assert_eq!(
            composite_json(&parts).to_string(),
            r#"{"0":{"code":"gender"},"1":{"value":1.50}}"#
        );
    }
}
