//! Type tests (`is`, `as`, `ofType`) and the small facts about FHIR types they need: which
//! types specialise which, and how a choice element's JSON suffix names its type.

use serde_json::Value;

use super::ast::TypeSpec;
use super::eval::Item;

/// The FHIR primitive types, as FHIRPath names them.
const PRIMITIVES: [&str; 20] = [
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "xhtml",
];

/// Resource types that are not DomainResources.
const NOT_DOMAIN_RESOURCES: [&str; 3] = ["Binary", "Bundle", "Parameters"];

impl TypeSpec {
    /// An unqualified type name.
    pub(crate) fn plain(name: &str) -> Self {
        TypeSpec {
            namespace: None,
            name: name.to_string(),
        }
    }
}

/// The type a choice element's JSON suffix names: `DateTime` is `dateTime`, `Quantity` is
/// `Quantity`.
pub(crate) fn choice_type(suffix: &str) -> &str {
    let mut chars = suffix.chars();
    let first = chars.next().map(|c| c.to_ascii_lowercase());
    let rest = chars.as_str();
    PRIMITIVES
        .iter()
        .find(|p| p.chars().next() == first && p[1..] == *rest)
        .copied()
        .unwrap_or(suffix)
}

/// The type `type_name` specialises, if any (FHIR's primitive profiles and Quantity
/// profiles; element types all specialise `Element`, which the subset does not test).
fn supertype(type_name: &str) -> Option<&'static str> {
    Some(match type_name {
        "code" | "id" | "markdown" => "string",
        "canonical" | "oid" | "url" | "uuid" => "uri",
        "positiveInt" | "unsignedInt" => "integer",
        "Age" | "Count" | "Distance" | "Duration" | "MoneyQuantity" | "SimpleQuantity" => {
            "Quantity"
        }
        _ => return None,
    })
}

/// Whether `item` is of type `spec` or of a type that specialises it.
pub(super) fn is_of_type(item: &Item<'_>, spec: &TypeSpec) -> bool {
    let wanted = spec.name.as_str();
    if spec.namespace.as_deref() == Some("System") {
        return is_system_type(item, wanted);
    }
    let (actual, is_resource) = match item {
        Item::Node(node) => {
            let is_resource = node.value().get("resourceType").and_then(Value::as_str)
                == node.type_name()
                && node.type_name().is_some();
            match node.type_name() {
                Some(name) => (name, is_resource),
                None => return false,
            }
        }
        Item::Resolved(name) => (*name, true),
        Item::Boolean(_) => ("boolean", false),
        Item::Integer(_) => ("integer", false),
        Item::Decimal(_) => ("decimal", false),
        Item::String(_) => ("string", false),
    };
    if is_resource {
        return actual == wanted
            || wanted == "Resource"
            || (wanted == "DomainResource" && !NOT_DOMAIN_RESOURCES.contains(&actual));
    }
    is_a(actual, wanted)
}

/// Whether the FHIR type `type_name` is `base` or specialises it (`code` is a `string`, `Age`
/// a `Quantity`).
pub(crate) fn is_a(type_name: &str, base: &str) -> bool {
    let mut current = Some(type_name);
    while let Some(name) = current {
        if name == base {
            return true;
        }
        current = supertype(name);
    }
    false
}

/// `System.Boolean`, `System.String`, ...: computed values, and FHIR primitives by their
/// JSON value.
fn is_system_type(item: &Item<'_>, wanted: &str) -> bool {
    match (item, wanted) {
        (Item::Boolean(_), "Boolean")
        | (Item::Integer(_), "Integer")
        | (Item::Decimal(_), "Decimal")
        | (Item::String(_), "String") => true,
        (Item::Node(node), _) => matches!(
            (node.value(), wanted),
            (Value::Bool(_), "Boolean") | (Value::String(_), "String")
        ),
        _ => false,
    }
}

/// A decimal's text in a form where equal numbers are equal strings: no sign on zero, no
/// leading or trailing zeros, no exponent (`1.50` and `15e-1` are both `1.5`). Text that is
/// not a number comes back unchanged.
pub(super) fn canonical_decimal(text: &str) -> String {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => match e.parse::<i64>() {
            Ok(e) => (m, e),
            Err(_) => return text.to_string(),
        },
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return text.to_string();
    }
    // All digits, and where the decimal point falls among them.
    let digits: String = format!("{int_part}{frac_part}");
    let point = i64::try_from(int_part.len())
        .unwrap_or(i64::MAX)
        .saturating_add(exponent);
    let leading = digits.len() - digits.trim_start_matches('0').len();
    let digits = digits.trim_matches('0');
    if digits.is_empty() {
        return "0".to_string();
    }
    let point = point.saturating_sub(i64::try_from(leading).unwrap_or(0));
    let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    let sign = if negative { "-" } else { "" };
    // Exponents this large are not FHIR decimals; keep them comparable without expanding.
    if !(-400..=400).contains(&point) {
        return format!("{sign}0.{digits}e{point}");
    }
    let body = if point <= 0 {
        format!(
            "0.{}{digits}",
            "0".repeat(usize::try_from(-point).unwrap_or(0))
        )
    } else if point >= len {
        format!(
            "{digits}{}",
            "0".repeat(usize::try_from(point - len).unwrap_or(0))
        )
    } else {
        let split = usize::try_from(point).unwrap_or(0);
        format!("{}.{}", &digits[..split], &digits[split..])
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_suffixes_name_types() {
        assert_eq!(choice_type("DateTime"), "dateTime");
        assert_eq!(choice_type("Boolean"), "boolean");
        assert_eq!(choice_type("CodeableConcept"), "CodeableConcept");
        assert_eq!(choice_type("Quantity"), "Quantity");
    }

    #[test]
    fn specialisations_are_of_their_base_type() {
        assert!(is_a("code", "string"));
        assert!(is_a("Age", "Quantity"));
        assert!(is_a("HumanName", "HumanName"));
        assert!(!is_a("string", "code"));
        assert!(!is_a("Identifier", "HumanName"));
    }

    #[test]
    fn decimals_compare_by_value() {
        assert_eq!(canonical_decimal("1.50"), "1.5");
        assert_eq!(canonical_decimal("15e-1"), "1.5");
        assert_eq!(canonical_decimal("001.500"), "1.5");
        assert_eq!(canonical_decimal("100"), "100");
        assert_eq!(canonical_decimal("1E2"), "100");
        assert_eq!(canonical_decimal("-0.0"), "0");
        assert_eq!(canonical_decimal("-0.05"), "-0.05");
        assert_eq!(canonical_decimal("0.05e1"), "0.5");
        assert_eq!(canonical_decimal("5e-3"), "0.005");
        assert_eq!(canonical_decimal("abc"), "abc");
        assert_eq!(canonical_decimal("."), ".");
        assert_eq!(canonical_decimal("1e999999"), "0.1e1000000");
    }
}
