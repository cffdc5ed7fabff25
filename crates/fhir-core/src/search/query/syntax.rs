//! The lexical rules of search values (http://hl7.org/fhir/R4/search.html#escaping): `,`
//! separates OR values, `|` the parts of a token or quantity, `$` the parts of a composite,
//! and `\` escapes each of them and itself. Prefixes of ordered values.

use super::ast::Prefix;
use super::error::Problem;
use crate::ResourceType;

/// The raw pieces of `value` between unescaped `separator`s; escapes are kept, so each piece
/// can be split again and then [`unescape`]d.
pub(super) fn split(value: &str, separator: char) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            pieces.push(&value[start..i]);
            start = i + c.len_utf8();
        }
    }
    pieces.push(&value[start..]);
    pieces
}

/// The text of a piece: `\,`, `\|`, `\$` and `\\` stand for the character; a backslash
/// before anything else is kept as written.
pub(super) fn unescape(piece: &str) -> String {
    let mut out = String::with_capacity(piece.len());
    let mut chars = piece.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next @ (',' | '|' | '$' | '\\')) = chars.peek()
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

/// The OR values of a parameter: none of them may be empty.
pub(super) fn or_values(value: &str) -> Result<Vec<&str>, Problem> {
    let pieces = split(value, ',');
    if pieces.iter().any(|p| p.is_empty()) {
        return Err(Problem::InvalidValue {
            expected: "values separated by single commas, none of them empty",
        });
    }
    Ok(pieces)
}

/// The prefix of an ordered value and the rest; no prefix is `eq`. Anything starting with a
/// letter must start with a prefix.
pub(super) fn prefixed<'v>(
    value: &'v str,
    expected: &'static str,
) -> Result<(Prefix, &'v str), Problem> {
    if !value.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Ok((Prefix::Eq, value));
    }
    value
        .get(..2)
        .and_then(Prefix::from_code)
        .map(|prefix| (prefix, &value[2..]))
        .ok_or(Problem::InvalidValue { expected })
}

/// A resource type name as FHIR writes them: an upper-case ASCII letter, then ASCII letters.
pub(super) fn is_type_name(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_uppercase())
        && text.chars().all(|c| c.is_ascii_alphabetic())
}

/// A type named in a chain, `_has`, `_type` or an include: malformed when it is no type name,
/// unsupported when it is one this server does not store.
pub(super) fn served_type(text: &str, expected: &'static str) -> Result<ResourceType, Problem> {
    if !is_type_name(text) {
        return Err(Problem::InvalidValue { expected });
    }
    text.parse().map_err(|_| Problem::UnservedType)
}

/// Percent-encodes a name or value for a query string: unreserved characters and the
/// delimiters search syntax uses in the clear (`:`, `/`, `,`, `$`, `*`, `@`) stay; `|`, `\`,
/// `&`, `=`, `+`, `%`, space and everything else are encoded as UTF-8 bytes.
pub(super) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'.' | b'_' | b'~' | b':' | b'/' | b',' | b'$' | b'*' | b'@'
            );
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_respects_escapes() {
        assert_eq!(split("a,b,c", ','), ["a", "b", "c"]);
        assert_eq!(split(r"a\,b,c", ','), [r"a\,b", "c"]);
        assert_eq!(split(r"a\\,b", ','), [r"a\\", "b"]);
        assert_eq!(split("", ','), [""]);
        assert_eq!(split("a,", ','), ["a", ""]);
        assert_eq!(split(r"s\|x|c", '|'), [r"s\|x", "c"]);
        assert_eq!(split("é,ü", ','), ["é", "ü"]);
        assert_eq!(unescape(r"a\,b"), "a,b");
        assert_eq!(unescape(r"a\\b"), r"a\b");
        assert_eq!(unescape(r"a\|b\$c"), "a|b$c");
        assert_eq!(unescape(r"C:\path"), r"C:\path");
        assert_eq!(unescape("trailing\\"), "trailing\\");
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefixed("2020", "x"), Ok((Prefix::Eq, "2020")));
        assert_eq!(prefixed("ge2020", "x"), Ok((Prefix::Ge, "2020")));
        assert_eq!(prefixed("-5", "x"), Ok((Prefix::Eq, "-5")));
        assert_eq!(prefixed("ap", "x"), Ok((Prefix::Ap, "")));
        assert!(prefixed("xx2020", "x").is_err());
        assert!(prefixed("g", "x").is_err());
        assert!(prefixed("GE2020", "x").is_err());
        assert!(prefixed("é2020", "x").is_ok_and(|(p, _)| p == Prefix::Eq));
    }

    #[test]
    fn encoding() {
        assert_eq!(
            percent_encode("subject:Patient.name"),
            "subject:Patient.name"
        );
        assert_eq!(
            percent_encode("http://x.org|a b&c=d+e%"),
            "http://x.org%7Ca%20b%26c%3Dd%2Be%25"
        );
        assert_eq!(percent_encode(r"a\,b"), "a%5C,b");
        assert_eq!(percent_encode("José"), "Jos%C3%A9");
    }
}
