//! Index values of a resource: each parameter's expression evaluated, and each item it
//! selects turned into the values of the parameter's type (the "Data type" columns of
//! http://hl7.org/fhir/R4/search.html#ptypes).

use std::collections::HashSet;

use serde_json::Value;

use super::normalize::{normalize, phonetic};
use super::registry::{Keeping, Registry, SearchParamType, SearchParameter};
use super::value::{
    DateRange, Decimal, IdentifierValue, IndexEntry, IndexValue, Part, QuantityValue,
    ReferenceValue, StringValue, TokenValue,
};
use crate::fhirpath::{EvalError, Item, Node};
use crate::reference::{ReferenceTarget, parse_reference};

/// The system of Money amounts indexed as quantities.
pub const CURRENCY_SYSTEM: &str = "urn:iso:std:iso:4217";

/// Composite values per element are capped, so one element cannot multiply into a flood.
const MAX_COMPOSITE_VALUES: usize = 256;

/// The index values of one resource, and what could not be indexed.
#[derive(Debug, Clone, Default)]
pub struct ResourceIndex<'r> {
    /// The type of the indexed resource (empty when it names none).
    pub resource_type: String,
    /// Each value once per parameter, parameters in registry order.
    pub entries: Vec<IndexEntry<'r>>,
    /// The values that could not be indexed; the rest of the resource still is.
    pub issues: Vec<IndexIssue<'r>>,
}

impl ResourceIndex<'_> {
    /// The values of the parameter `code` of the resource's type, as
    /// [`ResourceIndex::values_of`] gives them: the parameter of its entries, or else of
    /// `registry` (the one that indexed it); none for an unknown code.
    pub fn values_of_code(&self, registry: &Registry, code: &str) -> Vec<IndexValue> {
        let own = self.entries.iter().find(|e| e.code() == code);
        own.map(|entry| entry.param)
            .or_else(|| registry.get(&self.resource_type, code))
            .map(|param| self.values_of(param))
            .unwrap_or_default()
    }

    /// The values of `param` (a parameter of the resource's type) as a parameter with rows of
    /// its own would have them, each once: its entries, or those kept for it in another
    /// parameter's ([`SearchParameter::kept_in`]): of its part, or the phonetic codes (as
    /// `normalized`).
    pub fn values_of(&self, param: &SearchParameter) -> Vec<IndexValue> {
        let is = |entry: &IndexEntry<'_>, code: &str| {
            entry.param.code() == code && entry.param.base() == param.base()
        };
        // A value is the same value whatever phonetic code it carries for another parameter.
        let plain = |value: &IndexValue| match value {
            IndexValue::String(value) => IndexValue::String(StringValue {
                sound: None,
                ..value.clone()
            }),
            value => value.clone(),
        };
        let mut out: Vec<IndexValue> = Vec::new();
        for entry in &self.entries {
            let value = match (param.kept_in(), &entry.value) {
                (None, value) if is(entry, param.code()) => plain(value),
                (Some((owner, Keeping::Part(part))), value)
                    if is(entry, owner) && entry.part == part =>
                {
                    plain(value)
                }
                (Some((owner, Keeping::Sound)), IndexValue::String(value)) if is(entry, owner) => {
                    let Some(sound) = &value.sound else { continue };
                    IndexValue::String(StringValue {
                        normalized: sound.clone(),
                        exact: value.exact.clone(),
                        sound: None,
                    })
                }
                _ => continue,
            };
            if !out.contains(&value) {
                out.push(value);
            }
        }
        out
    }
}

/// A value a parameter selected but could not index. It never quotes the value.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexIssue<'r> {
    /// The parameter whose expression selected the value.
    pub param: &'r SearchParameter,
    pub problem: IndexProblem,
}

/// Why a value was not indexed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexProblem {
    /// The expression could not be evaluated on this resource.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The expression selected an element of a type this parameter type cannot index.
    #[error("a {found} cannot be indexed by a {kind} parameter")]
    Unindexable {
        found: String,
        kind: SearchParamType,
    },
    /// A value of the right type that is malformed (a date that is no date).
    #[error("a malformed {type_name} value")]
    Malformed { type_name: String },
}

/// What the caller knows that the resource does not say.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexOptions<'a> {
    /// This server's base URL: absolute references under it are indexed as local ones.
    pub server_base: Option<&'a str>,
}

impl Registry {
    /// The index values of `resource` for every parameter of its type.
    pub fn index<'r>(&'r self, resource: &Value, options: IndexOptions<'_>) -> ResourceIndex<'r> {
        self.index_only(resource, options, |_| true)
    }

    /// The index values of `resource` for the parameters of its type named in `codes` (a
    /// check that needs a few, such as the references that put it in a compartment). A
    /// parameter kept in another's values ([`SearchParameter::kept_in`]) has none of its own.
    pub fn index_codes<'r>(
        &'r self,
        resource: &Value,
        options: IndexOptions<'_>,
        codes: &[&str],
    ) -> ResourceIndex<'r> {
        self.index_only(resource, options, |param| codes.contains(&param.code()))
    }

    fn index_only<'r>(
        &'r self,
        resource: &Value,
        options: IndexOptions<'_>,
        wanted: impl Fn(&SearchParameter) -> bool,
    ) -> ResourceIndex<'r> {
        let mut index = ResourceIndex::default();
        let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
            return index;
        };
        index.resource_type = resource_type.to_string();
        let own = |p: &&SearchParameter| p.kept_in().is_none() && wanted(p);
        for param in self.for_type(resource_type).filter(own) {
            let mut out = Values::new(options, param.implied_system());
            out.sounds = param.sounds();
            self.index_param(param, resource, &mut out);
            let Values {
                values, problems, ..
            } = out;
            index
                .entries
                .extend(
                    values
                        .into_iter()
                        .map(|(value, part)| IndexEntry { param, value, part }),
                );
            index.issues.extend(
                problems
                    .into_iter()
                    .map(|problem| IndexIssue { param, problem }),
            );
        }
        index
    }

    fn index_param(&self, param: &SearchParameter, resource: &Value, out: &mut Values<'_>) {
        let Some(expression) = param.expression() else {
            return;
        };
        let items = match expression.evaluate(resource) {
            Ok(items) => items,
            Err(error) => return out.problem(error.into()),
        };
        for item in &items {
            if param.kind() == SearchParamType::Composite {
                self.composite(param, resource, item, out);
            } else {
                out.item(param.kind(), param.is_phonetic(), item);
            }
        }
    }

    /// The values of a composite parameter on one element: every combination of its
    /// components' values there.
    fn composite(
        &self,
        param: &SearchParameter,
        resource: &Value,
        item: &Item<'_>,
        out: &mut Values<'_>,
    ) {
        let Item::Node(node) = item else {
            return out.problem(unindexable(item, param.kind()));
        };
        let mut combinations: Vec<Vec<IndexValue>> = vec![Vec::new()];
        for component in param.components() {
            // Checked when the registry was built: the definition is loaded and simple.
            let Some(part) = self.by_url(component.definition()) else {
                return;
            };
            let mut values = Values::new(out.options, part.implied_system());
            match component.expression().evaluate_on(resource, *node) {
                Ok(items) => {
                    for item in &items {
                        values.item(part.kind(), part.is_phonetic(), item);
                    }
                }
                Err(error) => values.problem(error.into()),
            }
            for problem in values.problems {
                // A component may select values of other types (`value` is any of value[x]):
                // they form no combination, and are no problem.
                if !matches!(problem, IndexProblem::Unindexable { .. }) {
                    out.problem(problem);
                }
            }
            combinations = combinations
                .into_iter()
                .flat_map(|prefix| {
                    values.values.iter().map(move |(value, _)| {
                        let mut combination = prefix.clone();
                        combination.push(value.clone());
                        combination
                    })
                })
                .take(MAX_COMPOSITE_VALUES)
                .collect();
        }
        for combination in combinations {
            out.push(IndexValue::Composite(combination));
        }
    }
}

/// Values of one parameter compared one by one for duplicates; more go through a set.
const FEW_VALUES: usize = 16;

/// The values of one parameter, each once per part, in the order found.
struct Values<'o> {
    options: IndexOptions<'o>,
    /// The system of the `code` elements the parameter selects (their required binding's).
    implied_system: Option<&'static str>,
    values: Vec<(IndexValue, Part)>,
    /// The values, once there are more than [`FEW_VALUES`].
    seen: HashSet<(IndexValue, Part)>,
    /// Whether string values carry their phonetic codes ([`StringValue::sound`]).
    sounds: bool,
    problems: Vec<IndexProblem>,
}

impl<'o> Values<'o> {
    fn new(options: IndexOptions<'o>, implied_system: Option<&'static str>) -> Self {
        Values {
            options,
            implied_system,
            values: Vec::new(),
            seen: HashSet::new(),
            sounds: false,
            problems: Vec::new(),
        }
    }

    fn push(&mut self, value: IndexValue) {
        self.push_part(value, Part::Whole);
    }

    fn push_part(&mut self, value: IndexValue, part: Part) {
        let entry = (value, part);
        // A few values are compared one by one; a set is built once there are more.
        let new = if self.values.len() < FEW_VALUES {
            !self.values.contains(&entry)
        } else {
            if self.seen.is_empty() {
                self.seen.extend(self.values.iter().cloned());
            }
            self.seen.insert(entry.clone())
        };
        if new {
            self.values.push(entry);
        }
    }

    fn problem(&mut self, problem: IndexProblem) {
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    /// The values of one selected item for a parameter of type `kind`.
    fn item(&mut self, kind: SearchParamType, by_sound: bool, item: &Item<'_>) {
        if let Some(node) = as_extension(item) {
            // An extension stands for its value (`Patient.extension('...')`).
            for value in node.children("value") {
                self.item(kind, by_sound, &Item::Node(value));
            }
            return;
        }
        let result = match kind {
            SearchParamType::String => self.string(item, by_sound),
            SearchParamType::Token => self.token(item),
            SearchParamType::Date => self.date(item),
            SearchParamType::Reference => self.reference(item),
            SearchParamType::Quantity => self.quantity(item),
            SearchParamType::Number => self.number(item),
            SearchParamType::Uri => self.uri(item),
            SearchParamType::Composite | SearchParamType::Special => Err(unindexable(item, kind)),
        };
        if let Err(problem) = result {
            self.problem(problem);
        }
    }

    fn string(&mut self, item: &Item<'_>, by_sound: bool) -> Result<(), IndexProblem> {
        let parts: Vec<(Part, String)> = match (type_of(item), item) {
            (Some(t @ "HumanName"), Item::Node(node)) => strings_at(
                node.value(),
                t,
                &["family", "given", "prefix", "suffix", "text"],
            ),
            (Some(t @ "Address"), Item::Node(node)) => strings_at(
                node.value(),
                t,
                &[
                    "line",
                    "city",
                    "district",
                    "state",
                    "postalCode",
                    "country",
                    "text",
                ],
            ),
            (Some(t), _) if is_string_like(t) => text_of(item)
                .map(|text| (Part::Whole, text))
                .into_iter()
                .collect(),
            _ => return Err(unindexable(item, SearchParamType::String)),
        };
        for (part, text) in parts {
            if by_sound {
                for code in phonetic(&text) {
                    let value = StringValue {
                        normalized: code,
                        exact: text.clone(),
                        sound: None,
                    };
                    self.push_part(IndexValue::String(value), part);
                }
            } else if self.sounds {
                let value = string_value(&text);
                let codes = phonetic(&text);
                if codes.is_empty() {
                    self.push_part(IndexValue::String(value), part);
                    continue;
                }
                for sound in codes {
                    let value = StringValue {
                        sound: Some(sound),
                        ..value.clone()
                    };
                    self.push_part(IndexValue::String(value), part);
                }
            } else {
                self.push_part(IndexValue::String(string_value(&text)), part);
            }
        }
        Ok(())
    }

    fn token(&mut self, item: &Item<'_>) -> Result<(), IndexProblem> {
        let ty = type_of(item);
        let json = match item {
            Item::Node(node) => node.value(),
            _ => &Value::Null,
        };
        match ty {
            Some("boolean") => {
                let b = match item {
                    Item::Boolean(b) => Some(*b),
                    _ => json.as_bool(),
                };
                if let Some(b) = b {
                    self.code(None, &b.to_string());
                }
            }
            Some("Coding") => self.coding(json),
            Some("CodeableConcept") => {
                for coding in array_at(json, "coding") {
                    self.coding(coding);
                }
                self.text(json.get("text"));
            }
            Some("Identifier") => {
                let identifier_type = json.get("type").unwrap_or(&Value::Null);
                let types: Vec<(Option<&str>, &str)> = array_at(identifier_type, "coding")
                    .filter_map(|c| Some((str_at(c, "system"), str_at(c, "code")?)))
                    .collect();
                if let Some(value) = str_at(json, "value") {
                    let system = str_at(json, "system");
                    if types.is_empty() {
                        self.code(system, value);
                    }
                    for (type_system, type_code) in types {
                        self.push(IndexValue::Token(TokenValue::OfType {
                            system: system.map(str::to_string),
                            type_system: type_system.map(str::to_string),
                            type_code: type_code.to_string(),
                            value: value.to_string(),
                        }));
                    }
                }
                self.text(identifier_type.get("text"));
            }
            Some("ContactPoint") => {
                if let Some(value) = str_at(json, "value") {
                    let part = str_at(json, "system")
                        .and_then(Part::of_contact_system)
                        .unwrap_or_default();
                    let value = TokenValue::Code {
                        system: None,
                        code: value.to_string(),
                    };
                    self.push_part(IndexValue::Token(value), part);
                }
            }
            Some(t) if is_string_like(t) || is_number(t) => {
                if let Some(text) = text_of(item) {
                    // A code's system is the one its binding implies, so that `system|code`
                    // searches match it (http://hl7.org/fhir/R4/datatypes.html#code).
                    let system = self.implied_system.filter(|_| t == "code");
                    self.code(system, &text);
                }
            }
            _ => return Err(unindexable(item, SearchParamType::Token)),
        }
        Ok(())
    }

    fn code(&mut self, system: Option<&str>, code: &str) {
        self.push(IndexValue::Token(TokenValue::Code {
            system: system.map(str::to_string),
            code: code.to_string(),
        }));
    }

    fn coding(&mut self, coding: &Value) {
        if let Some(code) = str_at(coding, "code") {
            self.code(str_at(coding, "system"), code);
        }
        self.text(coding.get("display"));
    }

    fn text(&mut self, text: Option<&Value>) {
        if let Some(text) = text.and_then(Value::as_str) {
            self.push(IndexValue::Token(TokenValue::Text(string_value(text))));
        }
    }

    fn date(&mut self, item: &Item<'_>) -> Result<(), IndexProblem> {
        let Item::Node(node) = item else {
            return Err(unindexable(item, SearchParamType::Date));
        };
        let json = node.value();
        let range = match type_of(item) {
            Some(t @ ("date" | "dateTime" | "instant" | "string")) => {
                Some(parse_date(json.as_str(), t)?.ok_or_else(|| malformed(t))?)
            }
            Some("Period") => {
                let start = parse_date(json.get("start").and_then(Value::as_str), "Period")?;
                let end = parse_date(json.get("end").and_then(Value::as_str), "Period")?;
                (start.is_some() || end.is_some()).then(|| DateRange::spanning(start, end))
            }
            Some("Timing") => timing(json)?,
            _ => return Err(unindexable(item, SearchParamType::Date)),
        };
        if let Some(range) = range {
            self.push(IndexValue::Date(range));
        }
        Ok(())
    }

    fn reference(&mut self, item: &Item<'_>) -> Result<(), IndexProblem> {
        let (json, ty) = match item {
            Item::Node(node) => (node.value(), type_of(item)),
            _ => return Err(unindexable(item, SearchParamType::Reference)),
        };
        let value = match ty {
            Some("Reference") => {
                let declared = str_at(json, "type");
                let identifier = json.get("identifier").and_then(|identifier| {
                    Some(IdentifierValue {
                        system: str_at(identifier, "system").map(str::to_string),
                        value: str_at(identifier, "value")?.to_string(),
                    })
                });
                let mut value = match str_at(json, "reference") {
                    Some(text) => match self.literal(text, declared) {
                        Some(value) => value,
                        // A contained resource: not a search target of its own.
                        None => return Ok(()),
                    },
                    None => ReferenceValue {
                        target_type: declared.map(str::to_string),
                        id: None,
                        version: None,
                        url: None,
                        identifier: None,
                    },
                };
                value.identifier = identifier;
                if value.id.is_none() && value.url.is_none() && value.identifier.is_none() {
                    return Ok(());
                }
                value
            }
            Some("canonical" | "uri" | "url" | "string") => match json.as_str() {
                Some(text) => match self.literal(text, None) {
                    Some(value) => value,
                    None => return Ok(()),
                },
                None => return Err(malformed("uri")),
            },
            _ => return Err(unindexable(item, SearchParamType::Reference)),
        };
        self.push(IndexValue::Reference(value));
        Ok(())
    }

    /// A reference string as a value; `None` for a reference to a contained resource.
    fn literal(&self, text: &str, declared: Option<&str>) -> Option<ReferenceValue> {
        let owned = |s: &str| s.to_string();
        Some(match parse_reference(text) {
            ReferenceTarget::Literal(literal) => {
                let local = match (literal.base, self.options.server_base) {
                    (None, _) => true,
                    (Some(base), Some(server)) => base == server.trim_end_matches('/'),
                    (Some(_), None) => false,
                };
                ReferenceValue {
                    target_type: Some(owned(literal.resource_type)),
                    id: Some(owned(literal.id)),
                    version: literal.version.map(owned),
                    url: (!local).then(|| owned(text)),
                    identifier: None,
                }
            }
            ReferenceTarget::Contained(_) => return None,
            ReferenceTarget::Opaque(text) => ReferenceValue {
                target_type: declared.map(owned),
                id: None,
                version: None,
                url: Some(owned(text)),
                identifier: None,
            },
        })
    }

    fn quantity(&mut self, item: &Item<'_>) -> Result<(), IndexProblem> {
        let Item::Node(node) = item else {
            return Err(unindexable(item, SearchParamType::Quantity));
        };
        let json = node.value();
        let owned = |key: &str| str_at(json, key).map(str::to_string);
        let value = match type_of(item) {
            Some("Money") => QuantityValue {
                value: match decimal_at(json)? {
                    Some(value) => value,
                    None => return Ok(()),
                },
                comparator: None,
                unit: None,
                system: owned("currency").map(|_| CURRENCY_SYSTEM.to_string()),
                code: owned("currency"),
            },
            Some(
                "Quantity" | "Age" | "Count" | "Distance" | "Duration" | "SimpleQuantity"
                | "MoneyQuantity",
            ) => QuantityValue {
                value: match decimal_at(json)? {
                    Some(value) => value,
                    None => return Ok(()),
                },
                comparator: owned("comparator"),
                unit: owned("unit"),
                system: owned("system"),
                code: owned("code"),
            },
            _ => return Err(unindexable(item, SearchParamType::Quantity)),
        };
        self.push(IndexValue::Quantity(value));
        Ok(())
    }

    fn number(&mut self, item: &Item<'_>) -> Result<(), IndexProblem> {
        match (type_of(item), text_of(item)) {
            (Some(t), Some(text)) if is_number(t) => {
                let value = Decimal::parse(&text).ok_or_else(|| malformed(t))?;
                self.push(IndexValue::Number(value));
                Ok(())
            }
            _ => Err(unindexable(item, SearchParamType::Number)),
        }
    }

    fn uri(&mut self, item: &Item<'_>) -> Result<(), IndexProblem> {
        match (type_of(item), text_of(item)) {
            (Some(t), Some(text)) if is_string_like(t) => {
                self.push(IndexValue::Uri(text));
                Ok(())
            }
            _ => Err(unindexable(item, SearchParamType::Uri)),
        }
    }
}

/// The node of an Extension item.
fn as_extension<'a>(item: &Item<'a>) -> Option<Node<'a>> {
    match item {
        Item::Node(node) if node.type_name() == Some("Extension") => Some(*node),
        _ => None,
    }
}

/// The outer limits of a Timing: its events and its repeat bounds (a Period).
fn timing(json: &Value) -> Result<Option<DateRange>, IndexProblem> {
    let mut ranges = Vec::new();
    for event in array_at(json, "event") {
        ranges.extend(parse_date(event.as_str(), "dateTime")?);
    }
    if let Some(bounds) = json.get("repeat").and_then(|r| r.get("boundsPeriod")) {
        let start = parse_date(bounds.get("start").and_then(Value::as_str), "Period")?;
        let end = parse_date(bounds.get("end").and_then(Value::as_str), "Period")?;
        if start.is_some() || end.is_some() {
            ranges.push(DateRange::spanning(start, end));
        }
    }
    let Some(first) = ranges.first().copied() else {
        return Ok(None);
    };
    // `None` is unbounded, so it wins on either side.
    Ok(Some(ranges.iter().skip(1).fold(first, |acc, r| {
        DateRange {
            low: acc.low.zip(r.low).map(|(a, b)| a.min(b)),
            high: acc.high.zip(r.high).map(|(a, b)| a.max(b)),
        }
    })))
}

/// A date value that may be absent; present but malformed is a problem.
fn parse_date(text: Option<&str>, type_name: &str) -> Result<Option<DateRange>, IndexProblem> {
    match text {
        None => Ok(None),
        Some(text) => DateRange::parse(text)
            .map(Some)
            .ok_or_else(|| malformed(type_name)),
    }
}

/// `value` of a Quantity or Money: absent is no value, not a number is a problem.
fn decimal_at(json: &Value) -> Result<Option<Decimal>, IndexProblem> {
    match json.get("value") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Decimal::parse(&n.to_string())
            .map(Some)
            .ok_or_else(|| malformed("decimal")),
        Some(_) => Err(malformed("decimal")),
    }
}

fn string_value(text: &str) -> StringValue {
    StringValue {
        normalized: normalize(text),
        exact: text.to_string(),
        sound: None,
    }
}

/// The FHIR type of an item: its declared type, else what its JSON shape says.
fn type_of<'a>(item: &Item<'a>) -> Option<&'a str> {
    match item {
        Item::Node(node) => node.type_name().or_else(|| match node.value() {
            Value::Bool(_) => Some("boolean"),
            Value::Number(_) => Some("decimal"),
            Value::String(_) => Some("string"),
            Value::Object(map) => guess_complex(map),
            _ => None,
        }),
        Item::Boolean(_) => Some("boolean"),
        Item::Integer(_) => Some("integer"),
        Item::Decimal(_) => Some("decimal"),
        Item::String(_) => Some("string"),
        Item::Resolved(_) => None,
    }
}

/// The type of an object the definitions did not type (an element of an unknown resource).
fn guess_complex(map: &serde_json::Map<String, Value>) -> Option<&'static str> {
    let has = |key: &str| map.contains_key(key);
    Some(if has("reference") {
        "Reference"
    } else if has("coding") {
        "CodeableConcept"
    } else if has("start") || has("end") {
        "Period"
    } else if has("currency") {
        "Money"
    } else if has("value") && map.get("value").is_some_and(Value::is_number) {
        "Quantity"
    } else if has("family") || has("given") {
        "HumanName"
    } else if has("line") || has("city") || has("postalCode") {
        "Address"
    } else if has("code") {
        "Coding"
    } else if has("value") {
        "Identifier"
    } else {
        return None;
    })
}

/// Primitive types whose value is text.
fn is_string_like(type_name: &str) -> bool {
    matches!(
        type_name,
        "string" | "markdown" | "code" | "id" | "uri" | "url" | "canonical" | "oid" | "uuid"
    )
}

fn is_number(type_name: &str) -> bool {
    matches!(
        type_name,
        "integer" | "decimal" | "positiveInt" | "unsignedInt"
    )
}

/// The text of a primitive item (numbers as written).
fn text_of(item: &Item<'_>) -> Option<String> {
    match item {
        Item::Node(node) => match node.value() {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        },
        Item::Boolean(b) => Some(b.to_string()),
        Item::Integer(n) => Some(n.to_string()),
        Item::Decimal(d) | Item::String(d) => Some((*d).to_string()),
        Item::Resolved(_) => None,
    }
}

fn str_at<'a>(json: &'a Value, key: &str) -> Option<&'a str> {
    json.get(key).and_then(Value::as_str)
}

fn array_at<'a>(json: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    json.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The strings under each of `keys` of an element of type `type_name`, whether one string
/// or an array of them, each with the part it is.
fn strings_at(json: &Value, type_name: &str, keys: &[&str]) -> Vec<(Part, String)> {
    let mut out = Vec::new();
    for key in keys {
        let part = Part::of_element(type_name, key).unwrap_or_default();
        match json.get(*key) {
            Some(Value::String(s)) => out.push((part, s.clone())),
            Some(Value::Array(items)) => out.extend(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| (part, s.to_string())),
            ),
            _ => {}
        }
    }
    out
}

fn unindexable(item: &Item<'_>, kind: SearchParamType) -> IndexProblem {
    let found = match item {
        Item::Resolved(_) => "resource".to_string(),
        item => match type_of(item) {
            Some(t) => format!("{t} value"),
            None => "value of unknown type".to_string(),
        },
    };
    IndexProblem::Unindexable { found, kind }
}

fn malformed(type_name: &str) -> IndexProblem {
    IndexProblem::Malformed {
        type_name: type_name.to_string(),
    }
}
