//! The FHIR R4 primitive types and the lexical rules their JSON values must follow
//! (http://hl7.org/fhir/R4/datatypes.html), hand-coded from the `regex` extensions of the
//! primitive StructureDefinitions plus real calendar checks the regexes cannot express.

use serde_json::Value;

use crate::outcome::IssueCode;

/// One FHIR primitive type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Primitive {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

/// Strings over this size are refused (datatypes.html: "strings SHALL NOT exceed 1MB").
const MAX_STRING_BYTES: usize = 1024 * 1024;

impl Primitive {
    /// The primitive named `name` in a StructureDefinition (`date`, `positiveInt`, ...).
    pub(super) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "base64Binary" => Primitive::Base64Binary,
            "boolean" => Primitive::Boolean,
            "canonical" => Primitive::Canonical,
            "code" => Primitive::Code,
            "date" => Primitive::Date,
            "dateTime" => Primitive::DateTime,
            "decimal" => Primitive::Decimal,
            "id" => Primitive::Id,
            "instant" => Primitive::Instant,
            "integer" => Primitive::Integer,
            "markdown" => Primitive::Markdown,
            "oid" => Primitive::Oid,
            "positiveInt" => Primitive::PositiveInt,
            "string" => Primitive::String,
            "time" => Primitive::Time,
            "unsignedInt" => Primitive::UnsignedInt,
            "uri" => Primitive::Uri,
            "url" => Primitive::Url,
            "uuid" => Primitive::Uuid,
            "xhtml" => Primitive::Xhtml,
            _ => return None,
        })
    }

    /// Checks one JSON value; `Err` carries the issue code and a diagnostic that never quotes
    /// the value. On success returns the string content, if the type is string-valued, so
    /// that bindings can be checked without a second match.
    pub(super) fn check(self, value: &Value) -> Result<Option<&str>, (IssueCode, &'static str)> {
        match self {
            Primitive::Boolean => match value {
                Value::Bool(_) => Ok(None),
                _ => Err((IssueCode::Structure, "expected a boolean")),
            },
            Primitive::Integer
            | Primitive::PositiveInt
            | Primitive::UnsignedInt
            | Primitive::Decimal => {
                let Value::Number(number) = value else {
                    return Err((IssueCode::Structure, "expected a number"));
                };
                // With `arbitrary_precision` this is the number exactly as sent, so decimals keep
                // their precision and integers are judged on their own digits.
                self.check_number(number.as_str()).map(|()| None)
            }
            _ => {
                let Value::String(text) = value else {
                    return Err((IssueCode::Structure, "expected a string"));
                };
                self.check_text(text).map(|()| Some(text.as_str()))
            }
        }
    }

    fn check_number(self, text: &str) -> Result<(), (IssueCode, &'static str)> {
        if self == Primitive::Decimal {
            // JSON number grammar is exactly the decimal regex
            // `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, and the parser enforced it.
            return Ok(());
        }
        let digits = text.strip_prefix('-').unwrap_or(text);
        let well_formed = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !well_formed {
            return Err((IssueCode::Value, "not a valid integer"));
        }
        let Ok(number) = text.parse::<i64>() else {
            return Err((IssueCode::Value, "integer is out of range"));
        };
        let lowest = match self {
            Primitive::PositiveInt => 1,
            Primitive::UnsignedInt => 0,
            _ => i64::from(i32::MIN),
        };
        if number > i64::from(i32::MAX) {
            return Err((IssueCode::Value, "integer is out of range"));
        }
        if number < lowest {
            return Err((
                IssueCode::Value,
                match self {
                    Primitive::PositiveInt => "integer must be positive",
                    Primitive::UnsignedInt => "integer must not be negative",
                    _ => "integer is out of range",
                },
            ));
        }
        Ok(())
    }

    fn check_text(self, text: &str) -> Result<(), (IssueCode, &'static str)> {
        if text.is_empty() {
            // json.html: a property is either absent or has a non-empty value.
            return Err((IssueCode::Value, "string must not be empty"));
        }
        if text.len() > MAX_STRING_BYTES {
            return Err((IssueCode::Value, "string exceeds 1 MB"));
        }
        let valid = match self {
            Primitive::String => !text.contains(['\u{b}', '\u{c}']),
            Primitive::Markdown | Primitive::Xhtml => true,
            Primitive::Code => is_code(text),
            Primitive::Id => is_id(text),
            Primitive::Uri | Primitive::Url | Primitive::Canonical => !text.bytes().any(is_space),
            Primitive::Oid => is_oid(text),
            Primitive::Uuid => is_uuid(text),
            Primitive::Base64Binary => is_base64(text),
            Primitive::Date => is_date(text),
            Primitive::DateTime => is_date_time(text),
            Primitive::Instant => is_instant(text),
            Primitive::Time => is_time(text.as_bytes()),
            Primitive::Boolean
            | Primitive::Integer
            | Primitive::PositiveInt
            | Primitive::UnsignedInt
            | Primitive::Decimal => true,
        };
        if valid {
            Ok(())
        } else {
            Err((IssueCode::Value, self.invalid_message()))
        }
    }

    fn invalid_message(self) -> &'static str {
        match self {
            Primitive::String | Primitive::Markdown | Primitive::Xhtml => {
                "string contains a forbidden control character"
            }
            Primitive::Code => "not a valid code (no leading, trailing or repeated whitespace)",
            Primitive::Id => "not a valid id (1 to 64 of A-Z a-z 0-9 - .)",
            Primitive::Uri => "not a valid uri (must not contain whitespace)",
            Primitive::Url => "not a valid url (must not contain whitespace)",
            Primitive::Canonical => "not a valid canonical (must not contain whitespace)",
            Primitive::Oid => "not a valid oid (urn:oid:...)",
            Primitive::Uuid => "not a valid uuid (urn:uuid: and lowercase hex)",
            Primitive::Base64Binary => "not valid base64",
            Primitive::Date => "not a valid date",
            Primitive::DateTime => "not a valid dateTime",
            Primitive::Instant => "not a valid instant (needs seconds and a timezone)",
            Primitive::Time => "not a valid time",
            Primitive::Boolean
            | Primitive::Integer
            | Primitive::PositiveInt
            | Primitive::UnsignedInt
            | Primitive::Decimal => "not a valid value",
        }
    }
}

/// `\s` as the FHIR regexes (Java) mean it.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// `[^\s]+(\s[^\s]+)*`
fn is_code(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    !is_space(first)
        && !is_space(last)
        && !bytes
            .windows(2)
            .any(|pair| is_space(pair[0]) && is_space(pair[1]))
}

/// `[A-Za-z0-9\-\.]{1,64}`
fn is_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`
fn is_oid(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut arcs = rest.split('.');
    let first_ok = matches!(arcs.next(), Some("0" | "1" | "2"));
    let mut count = 0;
    let rest_ok = arcs.all(|arc| {
        count += 1;
        !arc.is_empty()
            && arc.bytes().all(|b| b.is_ascii_digit())
            && (arc == "0" || !arc.starts_with('0'))
    });
    first_ok && rest_ok && count > 0
}

/// `urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`
fn is_uuid(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("urn:uuid:") else {
        return false;
    };
    rest.len() == 36
        && rest.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Base64 with optional whitespace. The R4 regex `(\s*([0-9a-zA-Z\+\=]){4}\s*)+` leaves out `/`,
/// an erratum fixed in R4B; `/` is accepted here as every real encoder produces it.
fn is_base64(text: &str) -> bool {
    let mut count = 0usize;
    let mut padding = 0usize;
    for b in text.bytes() {
        if is_space(b) {
            continue;
        }
        if b == b'=' {
            padding += 1;
        } else if padding > 0 || !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
            return false;
        }
        count += 1;
    }
    count > 0 && count.is_multiple_of(4) && padding <= 2
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// How far a date-ish value must go.
#[derive(Clone, Copy, PartialEq)]
enum Precision {
    /// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    AnyDate,
    /// `YYYY-MM-DD` and nothing less.
    Day,
}

/// Parses the date part (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, year 0001-9999, real calendar days),
/// returning the rest of the input.
fn date_prefix(bytes: &[u8], precision: Precision) -> Option<&[u8]> {
    let year = digits(bytes.get(..4)?)?;
    if year == 0 {
        return None;
    }
    let rest = &bytes[4..];
    if rest.first() != Some(&b'-') {
        return (precision == Precision::AnyDate).then_some(rest);
    }
    let month = digits(rest.get(1..3)?)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    let rest = &rest[3..];
    if rest.first() != Some(&b'-') {
        return (precision == Precision::AnyDate).then_some(rest);
    }
    let day = digits(rest.get(1..3)?)?;
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(&rest[3..])
}

/// `([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?` — second 60 is a leap second,
/// which the R4 regexes allow.
fn time_prefix(bytes: &[u8]) -> Option<&[u8]> {
    let hour = digits(bytes.get(0..2)?)?;
    let minute = digits(bytes.get(3..5)?)?;
    let second = digits(bytes.get(6..8)?)?;
    if bytes[2] != b':' || bytes[5] != b':' || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let rest = &bytes[8..];
    match rest.strip_prefix(b".") {
        Some(fraction) => {
            let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
            (len > 0).then(|| &fraction[len..])
        }
        None => Some(rest),
    }
}

/// `Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)`, consuming the whole rest.
fn is_timezone(bytes: &[u8]) -> bool {
    match bytes {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let (Some(hour), Some(minute)) = (digits(&[*h1, *h2]), digits(&[*m1, *m2])) else {
                return false;
            };
            (hour <= 13 && minute <= 59) || (hour == 14 && minute == 0)
        }
        _ => false,
    }
}

fn is_date(text: &str) -> bool {
    date_prefix(text.as_bytes(), Precision::AnyDate).is_some_and(<[u8]>::is_empty)
}

/// A date, or a full date with `Thh:mm:ss[.fff]` and a timezone.
fn is_date_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Only a full date may carry a time, so try the partial forms first.
    if date_prefix(bytes, Precision::AnyDate).is_some_and(<[u8]>::is_empty) {
        return true;
    }
    is_instant(text)
}

/// `YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm)`: the timezone is mandatory.
fn is_instant(text: &str) -> bool {
    let Some(rest) = date_prefix(text.as_bytes(), Precision::Day) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(b"T") else {
        return false;
    };
    time_prefix(rest).is_some_and(is_timezone)
}

fn is_time(bytes: &[u8]) -> bool {
    time_prefix(bytes).is_some_and(<[u8]>::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(primitive: Primitive, value: Value) -> bool {
        primitive.check(&value).is_ok()
    }

    #[test]
    fn dates_follow_the_calendar() {
        for good in [
            "1980",
            "1980-02",
            "1980-02-29",
            "2000-02-29",
            "2023-12-31",
            "0001-01-01",
        ] {
            assert!(ok(Primitive::Date, json!(good)), "{good}");
        }
        for bad in [
            "1980-13-45",
            "2023-02-29",
            "1900-02-29",
            "2023-04-31",
            "0000",
            "198",
            "1980-1",
            "1980-01-1",
            "1980-00",
            "1980-01-00",
            "1980-01-01T10:00:00Z",
            " 1980",
            "1980-01-01 ",
        ] {
            assert!(!ok(Primitive::Date, json!(bad)), "{bad}");
        }
    }

    #[test]
    fn date_times_need_a_timezone_with_a_time() {
        for good in [
            "2015",
            "2015-02",
            "2015-02-07",
            "2015-02-07T13:28:17Z",
            "2015-02-07T13:28:17.239+02:00",
            "2017-01-01T00:00:00-14:00",
            "2016-12-31T23:59:60Z",
        ] {
            assert!(ok(Primitive::DateTime, json!(good)), "{good}");
        }
        for bad in [
            "2015-02-07T13:28:17",
            "2015-02-07T13:28Z",
            "2015-02-07T24:00:00Z",
            "2015-02-07T13:60:00Z",
            "2015-02-07T13:28:61Z",
            "2015-02-07T13:28:17+14:30",
            "2015-02-07T13:28:17+1:00",
            "2015-02-07T13:28:17.Z",
            "2015-02T13:28:17Z",
            "2015-02-30",
        ] {
            assert!(!ok(Primitive::DateTime, json!(bad)), "{bad}");
        }
    }

    #[test]
    fn instants_are_complete() {
        assert!(ok(
            Primitive::Instant,
            json!("2015-02-07T13:28:17.239+02:00")
        ));
        assert!(!ok(Primitive::Instant, json!("2015-02-07T13:28:17")));
        assert!(!ok(Primitive::Instant, json!("2015-02-07")));
    }

    #[test]
    fn times() {
        assert!(ok(Primitive::Time, json!("23:59:59.5")));
        assert!(!ok(Primitive::Time, json!("24:00:00")));
        assert!(!ok(Primitive::Time, json!("12:00")));
    }

    #[test]
    fn integers_by_their_text() {
        assert!(ok(Primitive::Integer, json!(-2147483648)));
        assert!(ok(Primitive::Integer, json!(2147483647)));
        assert!(!ok(Primitive::Integer, json!(2147483648_i64)));
        assert!(!ok(Primitive::Integer, json!("1")));
        let one_point_zero: Value = serde_json::from_str("1.0").expect("number");
        assert!(!ok(Primitive::Integer, one_point_zero));
        assert!(!ok(Primitive::PositiveInt, json!(0)));
        assert!(ok(Primitive::UnsignedInt, json!(0)));
        assert!(!ok(Primitive::UnsignedInt, json!(-1)));
    }

    #[test]
    fn decimals_keep_their_digits() {
        let text = "3.14159265358979323846264338327950288419716939937510";
        let value: Value = serde_json::from_str(text).expect("number");
        assert!(ok(Primitive::Decimal, value.clone()));
        assert_eq!(value.to_string(), text);
        assert!(!ok(Primitive::Decimal, json!("1.5")));
    }

    #[test]
    fn strings_codes_ids() {
        assert!(!ok(Primitive::String, json!("")));
        assert!(ok(Primitive::String, json!(" padded ")));
        assert!(!ok(Primitive::String, json!(1)));
        assert!(ok(Primitive::Code, json!("in progress")));
        for bad in ["", " x", "x ", "a  b", "a\tb\tc "] {
            assert!(!ok(Primitive::Code, json!(bad)), "{bad:?}");
        }
        assert!(ok(Primitive::Id, json!("a-B.9")));
        assert!(!ok(Primitive::Id, json!("a_b")));
        assert!(!ok(Primitive::Id, json!("x".repeat(65))));
        assert!(!ok(Primitive::Uri, json!("http://x y")));
        assert!(ok(Primitive::Oid, json!("urn:oid:1.2.36.146.595.217.0.1")));
        assert!(!ok(Primitive::Oid, json!("urn:oid:1")));
        assert!(ok(
            Primitive::Uuid,
            json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520")
        ));
        assert!(!ok(
            Primitive::Uuid,
            json!("urn:uuid:C757873D-ec9a-4326-a141-556f43239520")
        ));
        assert!(ok(
            Primitive::Base64Binary,
            json!("R0lGODlhEwARAPcAAAAAAAAA/+9aAO+1AP/WAP/eAP/eCP/eEP/eGP/n\nAP/nCA==")
        ));
        assert!(!ok(Primitive::Base64Binary, json!("abc")));
        assert!(!ok(Primitive::Base64Binary, json!("ab=c")));
        assert!(ok(Primitive::Boolean, json!(false)));
        assert!(!ok(Primitive::Boolean, json!("true")));
    }
}
