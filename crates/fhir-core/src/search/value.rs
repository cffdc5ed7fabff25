//! The values a resource is indexed by: one [`IndexEntry`] per value of each search
//! parameter, typed so that each kind maps onto one narrow index table.

use chrono::{DateTime, Utc};

use super::registry::SearchParameter;

/// One value of one search parameter of a resource: a row of the search index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry<'r> {
    /// The parameter (its base and code identify it within a resource type).
    pub param: &'r SearchParameter,
    pub value: IndexValue,
    /// The element of a compound value it was taken from.
    pub part: Part,
}

impl IndexEntry<'_> {
    /// The parameter's code (`family`, `_tag`): with the resource type, the parameter's key.
    pub fn code(&self) -> &str {
        self.param.code()
    }
}

/// The element of a compound value (a HumanName, an Address, a ContactPoint) that an index
/// value was taken from. It lets one parameter's rows serve the parameters that select one
/// element of the same values: `family` is the rows of `name` taken from `HumanName.family`,
/// `phone` the rows of `telecom` whose `ContactPoint.system` is `phone` (see
/// [`SearchParameter::kept_in`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Part {
    /// The whole value: a primitive, a Coding, an Identifier, a ContactPoint without system.
    #[default]
    Whole,
    Family,
    Given,
    Prefix,
    Suffix,
    /// `HumanName.text` or `Address.text`.
    Text,
    Line,
    City,
    District,
    State,
    PostalCode,
    Country,
    Phone,
    Fax,
    Email,
    Pager,
    Url,
    Sms,
    Other,
}

impl Part {
    /// The parts the values of an element of FHIR type `type_name` are indexed as: the
    /// elements of a HumanName or an Address, a ContactPoint's systems (or none), else the
    /// whole value.
    pub fn of_type(type_name: &str) -> &'static [Part] {
        match type_name {
            "HumanName" => &[
                Part::Family,
                Part::Given,
                Part::Prefix,
                Part::Suffix,
                Part::Text,
            ],
            "Address" => &[
                Part::Text,
                Part::Line,
                Part::City,
                Part::District,
                Part::State,
                Part::PostalCode,
                Part::Country,
            ],
            "ContactPoint" => &[
                Part::Whole,
                Part::Phone,
                Part::Fax,
                Part::Email,
                Part::Pager,
                Part::Url,
                Part::Sms,
                Part::Other,
            ],
            _ => &[Part::Whole],
        }
    }

    /// The number the index rows hold.
    pub fn code(self) -> i16 {
        self as i16
    }

    /// The part of a HumanName (`family`) or Address (`city`) element.
    pub(super) fn of_element(type_name: &str, element: &str) -> Option<Part> {
        Some(match (type_name, element) {
            ("HumanName", "family") => Part::Family,
            ("HumanName", "given") => Part::Given,
            ("HumanName", "prefix") => Part::Prefix,
            ("HumanName", "suffix") => Part::Suffix,
            ("HumanName" | "Address", "text") => Part::Text,
            ("Address", "line") => Part::Line,
            ("Address", "city") => Part::City,
            ("Address", "district") => Part::District,
            ("Address", "state") => Part::State,
            ("Address", "postalCode") => Part::PostalCode,
            ("Address", "country") => Part::Country,
            _ => return None,
        })
    }

    /// The part of a ContactPoint of `system` (`phone`); `None` for a code outside the
    /// required value set.
    pub(super) fn of_contact_system(system: &str) -> Option<Part> {
        Some(match system {
            "phone" => Part::Phone,
            "fax" => Part::Fax,
            "email" => Part::Email,
            "pager" => Part::Pager,
            "url" => Part::Url,
            "sms" => Part::Sms,
            "other" => Part::Other,
            _ => return None,
        })
    }
}

/// A typed index value; the variant follows the parameter's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IndexValue {
    /// Of a string parameter.
    String(StringValue),
    /// Of a token parameter.
    Token(TokenValue),
    /// Of a date parameter.
    Date(DateRange),
    /// Of a reference parameter.
    Reference(ReferenceValue),
    /// Of a quantity parameter.
    Quantity(QuantityValue),
    /// Of a number parameter.
    Number(Decimal),
    /// A uri, url or canonical, exactly as written (`:below` and `:above` compare prefixes).
    Uri(String),
    /// One value per component of a composite parameter, in the definition's order, all taken
    /// from the same element.
    Composite(Vec<IndexValue>),
}

/// A string value: normalised for the default starts-with and `:contains` matches, and as
/// written for `:exact`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StringValue {
    /// Lower-cased, accents removed, white space collapsed: see [`super::normalize`]. For a
    /// phonetic parameter, the phonetic code of one word instead.
    pub normalized: String,
    /// The value as written in the resource.
    pub exact: String,
    /// The phonetic code of one word of the value, for a phonetic parameter kept in this
    /// one's values ([`SearchParameter::sounds`]); a value of several words is one value
    /// per word's code, alike but for this.
    pub sound: Option<String>,
}

/// A token value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenValue {
    /// A code and the system it belongs to: Coding system and code, Identifier system and
    /// value, ContactPoint value (no system), a code, id, string or boolean (no system).
    Code {
        /// The system the code belongs to; `None` when the element states none.
        system: Option<String>,
        code: String,
    },
    /// Text that `:text` searches: CodeableConcept.text, Coding.display, Identifier.type.text.
    Text(StringValue),
    /// An identifier's value with one coding of its type: a code (`system|value`, as
    /// [`TokenValue::Code`]) that `:of-type` also matches (`type-system|type-code|value`). An
    /// identifier whose type has codings gives one per coding, and no `Code`.
    OfType {
        /// `Identifier.system`.
        system: Option<String>,
        /// The system of one `Identifier.type` coding.
        type_system: Option<String>,
        /// The code of that coding (`MR`).
        type_code: String,
        /// `Identifier.value`.
        value: String,
    },
}

/// The instants a date value covers, `[low, high)`; `None` is unbounded (a Period without
/// start or end). A value covers its whole precision: `2020` is all of that year, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateRange {
    /// The first instant covered; `None`: no lower bound.
    pub low: Option<DateTime<Utc>>,
    /// The first instant after the range; `None`: no upper bound.
    pub high: Option<DateTime<Utc>>,
}

/// A reference value.
///
/// Relative references, and absolute ones under this server's base URL, are local: type and
/// id, no `url`. Any other absolute reference keeps its `url` (and its type and id, parsed,
/// for `:Type`); a URN keeps only its `url` (and the Reference's `type`, if given).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReferenceValue {
    /// The type of the target, from the reference string or `Reference.type`.
    pub target_type: Option<String>,
    /// The target's id, when the reference string names one.
    pub id: Option<String>,
    /// The version of a versioned reference (`Patient/1/_history/2`).
    pub version: Option<String>,
    /// The reference as written, when it is not local.
    pub url: Option<String>,
    /// `Reference.identifier`, for `:identifier`.
    pub identifier: Option<IdentifierValue>,
}

/// A logical reference's identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentifierValue {
    /// `Identifier.system`.
    pub system: Option<String>,
    /// `Identifier.value`.
    pub value: String,
}

/// A quantity value; Money is a quantity in system `urn:iso:std:iso:4217` with the currency
/// as its code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuantityValue {
    /// The amount, as written.
    pub value: Decimal,
    /// `<`, `<=`, `>=`, `>` when the value is a bound, not a measurement.
    pub comparator: Option<String>,
    /// The human-readable unit (`mg`), which `value||unit` searches also match.
    pub unit: Option<String>,
    /// The unit's system (`http://unitsofmeasure.org`, or the currency system for Money).
    pub system: Option<String>,
    /// The unit's code in `system` (`mg`, `EUR`).
    pub code: Option<String>,
}

/// A decimal number exactly as written in the resource (`1.50` stays `1.50`): no float
/// rounding, and its precision is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal(String);

impl Decimal {
    /// A decimal from its text: JSON number syntax, `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    pub fn parse(text: &str) -> Option<Self> {
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
            None => (unsigned, None),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (mantissa, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let valid = digits(int_part)
            && (int_part == "0" || !int_part.starts_with('0'))
            && frac_part.is_none_or(digits)
            && exponent.is_none_or(digits);
        valid.then(|| Decimal(text.to_string()))
    }

    /// The text, as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{Decimal, Part};

    #[test]
    fn a_type_has_the_parts_its_values_are_indexed_as() {
        assert_eq!(Part::of_type("HumanName").len(), 5);
        assert!(Part::of_type("Address").contains(&Part::City));
        assert!(Part::of_type("ContactPoint").contains(&Part::Whole));
        assert_eq!(Part::of_type("Identifier"), [Part::Whole]);
    }

    #[test]
    fn decimals_keep_their_text() {
        for text in ["0", "1.50", "-12.0", "100", "1e3", "2.5E-7", "0.001"] {
            assert_eq!(Decimal::parse(text).map(|d| d.0), Some(text.to_string()));
        }
        for text in ["", "-", "01", "1.", ".5", "1e", "1.2.3", "NaN", "+1", "1 "] {
            assert_eq!(Decimal::parse(text), None, "{text}");
        }
    }
}
