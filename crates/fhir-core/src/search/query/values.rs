//! Search values turned into typed tests, per parameter type
//! (http://hl7.org/fhir/R4/search.html#ptypes). Whatever does not parse is
//! [`Problem::InvalidValue`], which says what was expected and never quotes what was given.

use std::ops::Bound;

use chrono::{DateTime, Utc};

use super::ast::Test;
use super::ast::{
    ComponentValue, DateSearch, NumberSearch, OfTypeSearch, Prefix, QuantitySearch, QuantityUnit,
    ReferenceSearch, SearchOptions, StringMatch, TokenSearch, UriMatch,
};
use super::decimal::Scaled;
use super::error::Problem;
use super::modifiers::Modifier;
use super::syntax::{or_values, prefixed, split, unescape};
use crate::Id;
use crate::reference::{ReferenceTarget, parse_reference};
use crate::search::normalize::{normalize, phonetic};
use crate::search::{DateRange, Decimal, Registry, SearchParamType, SearchParameter};

const DATE: &str = "a date YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm], \
     optionally after a prefix eq, ne, gt, lt, ge, le, sa, eb or ap";
const NUMBER: &str =
    "a decimal number, optionally after a prefix eq, ne, gt, lt, ge, le, sa, eb or ap";
const DIGITS: &str = "a number of at most 36 significant digits";
const QUANTITY: &str = "[prefix]number, [prefix]number|system|code or [prefix]number||code";
const TOKEN: &str = "code, system|code, |code or system|";
const OF_TYPE: &str = "type-system|type-code|value, with a type code and a value";
const TEXT: &str = "text with at least one letter or digit";
const PHONETIC: &str = "a name with at least one Latin letter";
const REFERENCE: &str = "an id, Type/id, Type/id/_history/version, or an absolute URL or URN";
const MISSING: &str = "true or false";

/// What values need beyond their text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Context<'a, 'r> {
    pub(super) registry: &'r Registry,
    pub(super) options: &'a SearchOptions<'a>,
}

/// The test `value` (one parameter's whole value, commas included) stands for on `param`.
pub(super) fn test(
    context: Context<'_, '_>,
    param: &SearchParameter,
    modifier: Option<Modifier<'_>>,
    value: &str,
) -> Result<Test, Problem> {
    if modifier == Some(Modifier::Missing) {
        return match value {
            "true" => Ok(Test::Missing(true)),
            "false" => Ok(Test::Missing(false)),
            _ => Err(Problem::InvalidValue { expected: MISSING }),
        };
    }
    let pieces = or_values(value)?;
    let pieces = pieces.as_slice();
    Ok(match param.kind() {
        SearchParamType::String if param.is_phonetic() => Test::Phonetic(each(pieces, |p| {
            let codes = phonetic(&unescape(p));
            if codes.is_empty() {
                return Err(Problem::InvalidValue { expected: PHONETIC });
            }
            Ok(codes)
        })?),
        SearchParamType::String => {
            let matching = match modifier {
                Some(Modifier::Exact) => StringMatch::Exact,
                Some(Modifier::Contains) => StringMatch::Contains,
                _ => StringMatch::StartsWith,
            };
            let values = each(pieces, |p| match matching {
                StringMatch::Exact => Ok(unescape(p)),
                _ => text(p),
            })?;
            Test::String { matching, values }
        }
        SearchParamType::Token => match modifier {
            Some(Modifier::Text) => Test::TokenText(each(pieces, text)?),
            Some(Modifier::OfType) => Test::OfType(each(pieces, of_type)?),
            _ => Test::Token {
                negated: modifier == Some(Modifier::Not),
                values: each(pieces, token)?,
            },
        },
        SearchParamType::Date => Test::Date(each(pieces, |p| date(context.options.now, p))?),
        SearchParamType::Number => Test::Number(each(pieces, number)?),
        SearchParamType::Quantity => Test::Quantity(each(pieces, quantity)?),
        SearchParamType::Reference => {
            Test::Reference(each(pieces, |p| reference(context, param, modifier, p))?)
        }
        SearchParamType::Uri => Test::Uri {
            matching: match modifier {
                Some(Modifier::Below) => UriMatch::Below,
                Some(Modifier::Above) => UriMatch::Above,
                _ => UriMatch::Exact,
            },
            values: each(pieces, |p| Ok(unescape(p)))?,
        },
        SearchParamType::Composite => {
            Test::Composite(each(pieces, |p| composite(context, param, p))?)
        }
        SearchParamType::Special => return Err(Problem::UnsupportedParameter),
    })
}

/// `f` applied to each OR value.
fn each<T>(pieces: &[&str], f: impl Fn(&str) -> Result<T, Problem>) -> Result<Vec<T>, Problem> {
    pieces.iter().map(|p| f(p)).collect()
}

/// Normalised text, which must keep something to match.
fn text(piece: &str) -> Result<String, Problem> {
    let normalized = normalize(&unescape(piece));
    if normalized.is_empty() {
        return Err(Problem::InvalidValue { expected: TEXT });
    }
    Ok(normalized)
}

/// `code`, `system|code`, `|code` or `system|`.
fn token(piece: &str) -> Result<TokenSearch, Problem> {
    let invalid = Problem::InvalidValue { expected: TOKEN };
    match split(piece, '|').as_slice() {
        [code] => Ok(TokenSearch::Code(unescape(code))),
        [system, code] => match (unescape(system), unescape(code)) {
            (system, code) if system.is_empty() && code.is_empty() => Err(invalid),
            (system, code) if system.is_empty() => Ok(TokenSearch::CodeWithoutSystem(code)),
            (system, code) if code.is_empty() => Ok(TokenSearch::System(system)),
            (system, code) => Ok(TokenSearch::SystemCode { system, code }),
        },
        _ => Err(invalid),
    }
}

/// `type-system|type-code|value`.
fn of_type(piece: &str) -> Result<OfTypeSearch, Problem> {
    let invalid = || Problem::InvalidValue { expected: OF_TYPE };
    let [type_system, type_code, value] = split(piece, '|')[..] else {
        return Err(invalid());
    };
    let (type_system, type_code, value) =
        (unescape(type_system), unescape(type_code), unescape(value));
    if type_code.is_empty() || value.is_empty() {
        return Err(invalid());
    }
    Ok(OfTypeSearch {
        type_system: (!type_system.is_empty()).then_some(type_system),
        type_code,
        value,
    })
}

/// `[prefix]date`; a space in the zone is read as `+` (an unencoded `+` in a query string
/// decodes to a space).
fn date(now: DateTime<Utc>, piece: &str) -> Result<DateSearch, Problem> {
    let invalid = || Problem::InvalidValue { expected: DATE };
    let text = unescape(piece);
    let (prefix, rest) = prefixed(&text, DATE)?;
    let range = DateRange::parse(&rest.replace(' ', "+")).ok_or_else(invalid)?;
    let (Some(mut low), Some(mut high)) = (range.low, range.high) else {
        return Err(invalid());
    };
    if prefix == Prefix::Ap {
        // 10% of the gap between now and the value, on either side.
        let tenth = |t: DateTime<Utc>| (now - t).abs() / 10;
        low = low.checked_sub_signed(tenth(low)).unwrap_or(low);
        high = high.checked_add_signed(tenth(high)).unwrap_or(high);
    }
    Ok(DateSearch { prefix, low, high })
}

/// `[prefix]number`.
fn number(piece: &str) -> Result<NumberSearch, Problem> {
    let text = unescape(piece);
    let (prefix, rest) = prefixed(&text, NUMBER)?;
    let value = Decimal::parse(rest).ok_or(Problem::InvalidValue { expected: NUMBER })?;
    number_search(prefix, value)
}

/// The interval of matching values for `prefix value` (see [`NumberSearch`]).
fn number_search(prefix: Prefix, value: Decimal) -> Result<NumberSearch, Problem> {
    let too_precise = || Problem::InvalidValue { expected: DIGITS };
    let scaled = Scaled::of(&value).ok_or_else(too_precise)?;
    let decimal = |s: Scaled| s.to_decimal().ok_or_else(too_precise);
    let (low, high) = match prefix {
        Prefix::Eq | Prefix::Ne => {
            let (low, high) = scaled.precision_range().ok_or_else(too_precise)?;
            (
                Bound::Included(decimal(low)?),
                Bound::Excluded(decimal(high)?),
            )
        }
        Prefix::Ap => {
            let (low, high) = scaled.approximate_range().ok_or_else(too_precise)?;
            (
                Bound::Included(decimal(low)?),
                Bound::Included(decimal(high)?),
            )
        }
        Prefix::Gt | Prefix::Sa => (Bound::Excluded(value.clone()), Bound::Unbounded),
        Prefix::Ge => (Bound::Included(value.clone()), Bound::Unbounded),
        Prefix::Lt | Prefix::Eb => (Bound::Unbounded, Bound::Excluded(value.clone())),
        Prefix::Le => (Bound::Unbounded, Bound::Included(value.clone())),
    };
    Ok(NumberSearch {
        prefix,
        value,
        low,
        high,
    })
}

/// `[prefix]number`, `[prefix]number|system|code` or `[prefix]number||code`.
fn quantity(piece: &str) -> Result<QuantitySearch, Problem> {
    let invalid = || Problem::InvalidValue { expected: QUANTITY };
    let parts = split(piece, '|');
    let unit = match parts.as_slice() {
        [_] => QuantityUnit::Any,
        [_, system, code] => {
            let (system, code) = (unescape(system), unescape(code));
            match (system.is_empty(), code.is_empty()) {
                (_, true) => return Err(invalid()),
                (true, false) => QuantityUnit::Code(code),
                (false, false) => QuantityUnit::SystemCode { system, code },
            }
        }
        _ => return Err(invalid()),
    };
    let text = unescape(parts[0]);
    let (prefix, rest) = prefixed(&text, QUANTITY)?;
    let value = Decimal::parse(rest).ok_or_else(invalid)?;
    Ok(QuantitySearch {
        number: number_search(prefix, value)?,
        unit,
    })
}

/// A reference value of `param`, or with `:identifier` an identifier.
fn reference(
    context: Context<'_, '_>,
    param: &SearchParameter,
    modifier: Option<Modifier<'_>>,
    piece: &str,
) -> Result<ReferenceSearch, Problem> {
    if modifier == Some(Modifier::Identifier) {
        return token(piece).map(ReferenceSearch::Identifier);
    }
    let invalid = || Problem::InvalidValue {
        expected: REFERENCE,
    };
    let type_modifier = match modifier {
        Some(Modifier::Type(t)) => Some(t),
        _ => None,
    };
    let text = unescape(piece);
    // `Type/id` must agree with a `:Type` modifier.
    let of_type = |resource_type: &str| match type_modifier {
        Some(t) if t != resource_type => Err(Problem::InvalidValue {
            expected: "a reference to the type the modifier names",
        }),
        _ => Ok(Some(resource_type.to_string())),
    };
    if text.contains(':') {
        let server = context.options.server_base.map(|b| b.trim_end_matches('/'));
        return Ok(match parse_reference(&text) {
            ReferenceTarget::Literal(literal)
                if literal.base.is_some() && literal.base == server =>
            {
                ReferenceSearch::Local {
                    resource_type: of_type(literal.resource_type)?,
                    id: literal.id.to_string(),
                    version: literal.version.map(str::to_string),
                }
            }
            _ => ReferenceSearch::Url(text),
        });
    }
    if text.contains('/') {
        return match parse_reference(&text) {
            ReferenceTarget::Literal(literal) if literal.base.is_none() => {
                Ok(ReferenceSearch::Local {
                    resource_type: of_type(literal.resource_type)?,
                    id: literal.id.to_string(),
                    version: literal.version.map(str::to_string),
                })
            }
            _ => Err(invalid()),
        };
    }
    let id: Id = text.parse().map_err(|_| invalid())?;
    // A bare id is of the modifier's type, or of the only type the parameter points at.
    let resource_type = match (type_modifier, param.target()) {
        (Some(t), _) => Some(t.to_string()),
        (None, [only]) => Some(only.clone()),
        (None, _) => None,
    };
    Ok(ReferenceSearch::Local {
        resource_type,
        id: id.as_str().to_string(),
        version: None,
    })
}

/// `part$part...`, one part per component, each read as its component's type.
fn composite(
    context: Context<'_, '_>,
    param: &SearchParameter,
    piece: &str,
) -> Result<Vec<ComponentValue>, Problem> {
    let parts = split(piece, '$');
    if parts.len() != param.components().len() || parts.iter().any(|p| p.is_empty()) {
        return Err(Problem::InvalidValue {
            expected: "one non-empty `$`-separated part per component",
        });
    }
    parts
        .iter()
        .zip(param.components())
        .map(|(part, component)| {
            // The registry checked, when it was built, that every component is loaded.
            let definition = context
                .registry
                .by_url(component.definition())
                .ok_or(Problem::UnsupportedParameter)?;
            Ok(match definition.kind() {
                SearchParamType::String => ComponentValue::String(text(part)?),
                SearchParamType::Token => ComponentValue::Token(token(part)?),
                SearchParamType::Date => ComponentValue::Date(date(context.options.now, part)?),
                SearchParamType::Number => ComponentValue::Number(number(part)?),
                SearchParamType::Quantity => ComponentValue::Quantity(quantity(part)?),
                SearchParamType::Reference => {
                    ComponentValue::Reference(reference(context, definition, None, part)?)
                }
                SearchParamType::Uri => ComponentValue::Uri(unescape(part)),
                SearchParamType::Composite | SearchParamType::Special => {
                    return Err(Problem::UnsupportedParameter);
                }
            })
        })
        .collect()
}
