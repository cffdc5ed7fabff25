//! The parsed query: what to match, per resource type, and what to return. Every value is
//! typed for the index table of its parameter type; nothing here needs parsing again.

use std::fmt;
use std::ops::Bound;

use chrono::{DateTime, Utc};

use super::decimal;
use super::error::SearchError;
use crate::ResourceType;
use crate::search::{DateRange, Decimal, SearchParameter};

/// How unknown and unsupported parameters are treated (`Prefer: handling=`,
/// http://hl7.org/fhir/R4/search.html#errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    /// Left out of the query, listed in [`SearchQuery::ignored`].
    #[default]
    Lenient,
    /// An error.
    Strict,
}

impl Handling {
    /// The handling a `Prefer` header asks for (http://hl7.org/fhir/R4/http.html#prefer):
    /// strict when one of its preferences is `handling=strict`, lenient otherwise.
    pub fn from_prefer(header: &str) -> Handling {
        let strict = header.split([',', ';']).any(|preference| {
            preference.split_once('=').is_some_and(|(key, value)| {
                key.trim().eq_ignore_ascii_case("handling")
                    && value
                        .trim()
                        .trim_matches('"')
                        .eq_ignore_ascii_case("strict")
            })
        });
        if strict {
            Handling::Strict
        } else {
            Handling::Lenient
        }
    }
}

/// What the server knows that the request does not say.
#[derive(Debug, Clone, Copy)]
pub struct SearchOptions<'a> {
    /// From `Prefer: handling=`.
    pub handling: Handling,
    /// The page size when `_count` is absent.
    pub default_count: u32,
    /// The largest page size; a larger `_count` is lowered to it.
    pub max_count: u32,
    /// This server's base URL: reference values under it are local references.
    pub server_base: Option<&'a str>,
    /// The time of the request: `ap` on dates widens by 10% of the distance to it.
    pub now: DateTime<Utc>,
}

impl SearchOptions<'_> {
    /// Lenient handling, pages of 20, at most 1,000, no server base.
    pub fn new(now: DateTime<Utc>) -> Self {
        SearchOptions {
            handling: Handling::Lenient,
            default_count: 20,
            max_count: 1000,
            server_base: None,
            now,
        }
    }
}

/// A search request, parsed and validated against the registry: see
/// [`SearchQuery::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery<'r> {
    /// The type searched (`[base]/Patient?...`), or `None` for a system-level search.
    pub resource_type: Option<ResourceType>,
    /// One query per type searched (one for a type-level search; `_type`, or every served
    /// type, for a system-level one), each with the criteria resolved against that type's
    /// parameters. A resource matches when it is of one of these types and meets all of
    /// that type's criteria.
    pub types: Vec<TypeQuery<'r>>,
    /// `_include`: resources the matches point at, to add as `search.mode=include`.
    pub include: Vec<Include<'r>>,
    /// `_revinclude`: resources that point at the matches, to add as `search.mode=include`.
    pub revinclude: Vec<Include<'r>>,
    /// The page size: `_count`, lowered to the maximum, or the default.
    pub count: u32,
    /// `_total`, when given.
    pub total: Option<Total>,
    /// `_summary`, when given.
    pub summary: Option<Summary>,
    /// `_elements`, when given: element names, in the order given.
    pub elements: Option<Vec<String>>,
    /// The paging cursor (`_cursor`), as given: opaque here, signed and checked by the store.
    pub cursor: Option<String>,
    /// What was left out in lenient handling, to mention in an OperationOutcome warning
    /// (each is [`SearchError::is_ignorable`]).
    pub ignored: Vec<SearchError>,
    /// The understood parameters in canonical order, for the self link.
    pub(super) canonical: Vec<(String, String)>,
}

/// The criteria and sort order of one type searched.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeQuery<'r> {
    pub resource_type: ResourceType,
    /// All must hold (repeated parameters are AND).
    pub criteria: Vec<Condition<'r>>,
    /// `_sort`, first key first.
    pub sort: Vec<SortKey<'r>>,
}

/// A condition on a resource of a known type.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition<'r> {
    /// The resource's own index values of `param` pass `test`.
    Match {
        param: &'r SearchParameter,
        test: Test,
    },
    /// Chaining (`subject:Patient.name=peter`): a resource that `param` (a reference
    /// parameter of this type) points at meets the condition of its type. With several
    /// candidate types, one of them is enough.
    Chain {
        param: &'r SearchParameter,
        targets: Vec<ChainTarget<'r>>,
    },
    /// Reverse chaining (`_has:Invoice:subject:status=issued`): some resource of type
    /// `source` points at this one through `param` (a reference parameter of `source`) and
    /// meets `condition`.
    Has {
        source: ResourceType,
        param: &'r SearchParameter,
        condition: Box<Condition<'r>>,
    },
    /// One of several alternatives holds, each an AND-list. Never parsed from a request: the
    /// server adds it for its own restrictions (an access grant limited to a patient's
    /// compartment, or to a scope's constraints). No alternative: nothing matches.
    Any(Vec<Vec<Condition<'r>>>),
}

/// One type a chain continues into, with the rest of the chain resolved for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainTarget<'r> {
    pub resource_type: ResourceType,
    pub condition: Condition<'r>,
}

/// What a parameter's index values must satisfy. The variant follows the parameter type
/// and modifier; the values of a list are OR (commas in the request). Unless said
/// otherwise, a resource matches when one of its index values matches one of the values.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `:missing=true`: the resource has no index value for the parameter; `false`: it has.
    Missing(bool),
    /// A string parameter, against `StringValue`.
    String {
        matching: StringMatch,
        /// [`normalize`](fn@crate::search::normalize)d for `StartsWith` and `Contains`; as
        /// written for `Exact`.
        values: Vec<String>,
    },
    /// A phonetic string parameter: per value, its phonetic codes (one per word), all of
    /// which the resource must have among its `StringValue::normalized` codes.
    Phonetic(Vec<Vec<String>>),
    /// A token parameter, against `TokenValue::Code`. With `negated` (`:not`), the resource
    /// matches when none of its values matches any of these, including when it has none.
    Token {
        negated: bool,
        values: Vec<TokenSearch>,
    },
    /// `:text` on a token parameter: normalised text, a starts-with match on
    /// `TokenValue::Text` (display, CodeableConcept.text, Identifier.type.text).
    TokenText(Vec<String>),
    /// `:of-type` on an identifier parameter, against `TokenValue::OfType`.
    OfType(Vec<OfTypeSearch>),
    /// A date parameter, against `DateRange`: see [`DateSearch::matches`].
    Date(Vec<DateSearch>),
    /// A number parameter, against the decimal: see [`NumberSearch::matches`].
    Number(Vec<NumberSearch>),
    /// A quantity parameter, against `QuantityValue`.
    Quantity(Vec<QuantitySearch>),
    /// A reference parameter, against `ReferenceValue`.
    Reference(Vec<ReferenceSearch>),
    /// A uri parameter, against the uri as written.
    Uri {
        matching: UriMatch,
        values: Vec<String>,
    },
    /// A composite parameter: per value, one part per component in the definition's order,
    /// all matched by the parts of one `IndexValue::Composite`.
    Composite(Vec<Vec<ComponentValue>>),
}

/// How a string search value is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMatch {
    /// The default: `normalized` starts with the value.
    StartsWith,
    /// `:contains`: `normalized` contains the value.
    Contains,
    /// `:exact`: `exact` equals the value, case and accents included.
    Exact,
}

/// A token search value (http://hl7.org/fhir/R4/search.html#token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSearch {
    /// `code`: the code, whatever the system.
    Code(String),
    /// `system|code`.
    SystemCode { system: String, code: String },
    /// `|code`: the code of a value without a system.
    CodeWithoutSystem(String),
    /// `system|`: any code of the system.
    System(String),
}

/// An `:of-type` value: `type-system|type-code|value` (the type system may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfTypeSearch {
    pub type_system: Option<String>,
    pub type_code: String,
    pub value: String,
}

/// A comparison prefix (http://hl7.org/fhir/R4/search.html#prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    /// Every prefix, in the order of the specification.
    pub const ALL: [Prefix; 9] = [
        Prefix::Eq,
        Prefix::Ne,
        Prefix::Gt,
        Prefix::Lt,
        Prefix::Ge,
        Prefix::Le,
        Prefix::Sa,
        Prefix::Eb,
        Prefix::Ap,
    ];

    /// The two letters.
    pub fn as_str(self) -> &'static str {
        match self {
            Prefix::Eq => "eq",
            Prefix::Ne => "ne",
            Prefix::Gt => "gt",
            Prefix::Lt => "lt",
            Prefix::Ge => "ge",
            Prefix::Le => "le",
            Prefix::Sa => "sa",
            Prefix::Eb => "eb",
            Prefix::Ap => "ap",
        }
    }

    pub(super) fn from_code(code: &str) -> Option<Prefix> {
        Prefix::ALL.into_iter().find(|p| p.as_str() == code)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A date search value: a prefix and the instants the written value covers,
/// `[low, high)`, by its precision (`2020` is the whole year, UTC unless a zone is given).
/// For `ap` the range is already widened by 10% of its distance to the time of the request
/// on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateSearch {
    pub prefix: Prefix,
    pub low: DateTime<Utc>,
    pub high: DateTime<Utc>,
}

impl DateSearch {
    /// Whether an indexed date range matches (R4 search, "prefixes", with the range of the
    /// search value `[low, high)` and the indexed range `[l, h)`, a missing bound being
    /// unbounded). In SQL terms, over the row's `l` and `h`:
    ///
    /// | prefix | matches when |
    /// |---|---|
    /// | eq | `l >= low and h <= high` (the value contains the row) |
    /// | ne | not eq |
    /// | gt | `h > high` |
    /// | lt | `l < low` |
    /// | ge | `l >= low or h > high` |
    /// | le | `h <= high or l < low` |
    /// | sa | `l >= high` |
    /// | eb | `h <= low` |
    /// | ap | `l < high and h > low` (overlap, with the widened range) |
    pub fn matches(&self, value: &DateRange) -> bool {
        // `None` low is minus infinity, `None` high plus infinity.
        let starts_at_or_after = |t: DateTime<Utc>| value.low.is_some_and(|l| l >= t);
        let starts_before = |t: DateTime<Utc>| value.low.is_none_or(|l| l < t);
        let ends_after = |t: DateTime<Utc>| value.high.is_none_or(|h| h > t);
        let ends_at_or_before = |t: DateTime<Utc>| value.high.is_some_and(|h| h <= t);
        let within = starts_at_or_after(self.low) && ends_at_or_before(self.high);
        match self.prefix {
            Prefix::Eq => within,
            Prefix::Ne => !within,
            Prefix::Gt => ends_after(self.high),
            Prefix::Lt => starts_before(self.low),
            Prefix::Ge => starts_at_or_after(self.low) || ends_after(self.high),
            Prefix::Le => ends_at_or_before(self.high) || starts_before(self.low),
            Prefix::Sa => starts_at_or_after(self.high),
            Prefix::Eb => ends_at_or_before(self.low),
            Prefix::Ap => starts_before(self.high) && ends_after(self.low),
        }
    }
}

/// A number search value, exact (no floating point anywhere).
///
/// `low` and `high` bound the indexed values that match, by prefix
/// (http://hl7.org/fhir/R4/search.html#number):
///
/// | prefix | interval |
/// |---|---|
/// | eq | `[value - ½ unit, value + ½ unit)`, the unit being that of the last written digit: `100` is `[99.5, 100.5)`, `100.00` `[99.995, 100.005)`, `1e2` `[50, 150)` |
/// | ne | the same interval, and a value matches when it is outside |
/// | gt, sa | `(value, ∞)` |
/// | ge | `[value, ∞)` |
/// | lt, eb | `(-∞, value)` |
/// | le | `(-∞, value]` |
/// | ap | `[value - 10%, value + 10%]` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberSearch {
    pub prefix: Prefix,
    /// The number as written.
    pub value: Decimal,
    pub low: Bound<Decimal>,
    pub high: Bound<Decimal>,
}

impl NumberSearch {
    /// `ne`: a value matches when it lies outside `low`..`high`.
    pub fn is_negated(&self) -> bool {
        self.prefix == Prefix::Ne
    }

    /// Whether an indexed number matches.
    pub fn matches(&self, value: &Decimal) -> bool {
        use std::cmp::Ordering::{Greater, Less};
        let above_low = match &self.low {
            Bound::Included(low) => decimal::compare(value, low) != Less,
            Bound::Excluded(low) => decimal::compare(value, low) == Greater,
            Bound::Unbounded => true,
        };
        let below_high = match &self.high {
            Bound::Included(high) => decimal::compare(value, high) != Greater,
            Bound::Excluded(high) => decimal::compare(value, high) == Less,
            Bound::Unbounded => true,
        };
        (above_low && below_high) != self.is_negated()
    }
}

/// A quantity search value: `[prefix]number[|system|code]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantitySearch {
    /// The amount, compared like a number against `QuantityValue::value` (a comparator on
    /// the stored quantity is not taken into account).
    pub number: NumberSearch,
    pub unit: QuantityUnit,
}

/// Which unit a quantity search value asks for. Units are compared as written: no UCUM
/// conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuantityUnit {
    /// `number` alone: any unit.
    Any,
    /// `number||code`: `QuantityValue::code` or `QuantityValue::unit` equals it.
    Code(String),
    /// `number|system|code`: both equal.
    SystemCode { system: String, code: String },
}

/// A reference search value (http://hl7.org/fhir/R4/search.html#reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceSearch {
    /// A local reference: `id` (of the `:Type` modifier's type, or of the parameter's only
    /// target type, or else of any type), `Type/id`,
    /// `Type/id/_history/version`, or an absolute URL under this server's base. Matches
    /// `ReferenceValue` rows without `url` by type (when given), id and (when given)
    /// version.
    Local {
        resource_type: Option<String>,
        id: String,
        version: Option<String>,
    },
    /// Any other absolute URL or URN, matched against `ReferenceValue::url`.
    Url(String),
    /// `:identifier`: matched against `ReferenceValue::identifier` like a token (system and
    /// value).
    Identifier(TokenSearch),
}

/// How a uri search value is compared with the indexed uri.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMatch {
    /// Equal.
    Exact,
    /// `:below`: the indexed uri starts with the value.
    Below,
    /// `:above`: the value starts with the indexed uri.
    Above,
}

/// One part of a composite search value, compared with the same-position part of an
/// `IndexValue::Composite` like a plain value of that type.
#[derive(Debug, Clone, PartialEq)]
pub enum ComponentValue {
    /// Normalised; a starts-with match.
    String(String),
    Token(TokenSearch),
    Date(DateSearch),
    Number(NumberSearch),
    Quantity(QuantitySearch),
    Reference(ReferenceSearch),
    /// Equal.
    Uri(String),
}

/// An `_include` or `_revinclude`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include<'r> {
    /// The type holding the references: for `_include` a type of the matches (or, with
    /// `iterate`, of included resources); for `_revinclude` the type that points at them.
    pub source_type: ResourceType,
    /// The reference parameters of `source_type` to follow: one, or all of them for `*`.
    pub params: Vec<&'r SearchParameter>,
    /// Only references to this type (`Invoice:subject:Patient`).
    pub target_type: Option<ResourceType>,
    /// `:iterate`: apply to included resources too, repeatedly.
    pub iterate: bool,
}

/// A `_sort` key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SortKey<'r> {
    /// Any parameter with index values (`_id`, `_lastUpdated` included). A resource with
    /// several values sorts by its lowest ascending and by its highest descending; one with
    /// none sorts last.
    pub param: &'r SearchParameter,
    /// `-name`.
    pub descending: bool,
}

/// `_total` (http://hl7.org/fhir/R4/search.html#total).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    Estimate,
    Accurate,
}

impl Total {
    /// The code as written in the request.
    pub fn as_str(self) -> &'static str {
        match self {
            Total::None => "none",
            Total::Estimate => "estimate",
            Total::Accurate => "accurate",
        }
    }
}

/// `_summary` (http://hl7.org/fhir/R4/search.html#summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// The elements marked summary.
    True,
    /// Text, id, meta and the mandatory elements.
    Text,
    /// Everything but the text.
    Data,
    /// Only the total.
    Count,
    /// Everything.
    False,
}

impl Summary {
    /// The code as written in the request.
    pub fn as_str(self) -> &'static str {
        match self {
            Summary::True => "true",
            Summary::Text => "text",
            Summary::Data => "data",
            Summary::Count => "count",
            Summary::False => "false",
        }
    }
}
