//! String and token values as the lexemes of one `tsvector` per resource: a row of
//! `search_terms` holds every string and token value of a resource's current version, and
//! its GIN index finds resources by value (docs/search.md, "Strings and tokens as terms").
//!
//! A lexeme is the parameter's id, the part the value came from, a mark saying what the
//! value is, and the value: `80.1:chalmers␁Chalmers` is the family name (part 1) of
//! parameter 80 (`name`), normalized then as written. `␁` is [`SEP`], U+0001, which no
//! valid FHIR string holds. The marks:
//!
//! | mark | value | searched by |
//! |---|---|---|
//! | `:` | a string, normalized, `␁`, as written; a token's text, normalized | prefix (`:*`); `:exact` (the whole lexeme) |
//! | `=` | a token's code, `␁`, its system (none: empty) | `code` (prefix `code␁`), `system\|code`, `\|code` (whole lexemes) |
//! | `@` | a token's system | `system\|` |
//! | `#` | an identifier's type code, `␁`, value, `␁`, type system (none: empty) | `:of-type` (whole lexeme; no type system: prefix) |
//! | `~` | a phonetic code kept in its owner's values, without a part (`80~c456`) | phonetic parameters |
//!
//! A value longer than [`MAX_VALUE`] bytes is cut and followed by a digest of the whole, so
//! that equality stays exact; a prefix longer than the part kept is compared on that part.

use std::fmt::Write as _;

use fhir_core::search::{IndexEntry, IndexValue, TokenValue};
use sha2::{Digest, Sha256};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo};

/// Bytes of a value kept as they are (PostgreSQL's lexemes hold at most 2,046 bytes, the
/// parameter, part and mark included).
pub(crate) const MAX_VALUE: usize = 2000;

/// Bytes of a longer value kept before its digest: what a prefix is compared on at most.
const KEPT: usize = MAX_VALUE - 33;

/// Between the parts of a value: U+0001, a control character no FHIR string may hold.
pub(crate) const SEP: char = '\u{1}';

/// Bytes of the lexemes of one `tsvector`, at most: more go to another row of the same
/// resource (a `tsvector` holds at most 1 MiB of lexemes).
const MAX_ROW: usize = 512 * 1024;

/// What a lexeme's value is (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Normalized,
    Code,
    System,
    OfType,
}

impl Mark {
    pub(crate) fn char(self) -> char {
        match self {
            Mark::Normalized => ':',
            Mark::Code => '=',
            Mark::System => '@',
            Mark::OfType => '#',
        }
    }
}

/// The lexeme of `value` (`mark`) of part `part` of parameter `param`.
pub(crate) fn lexeme(param: i32, part: i16, mark: Mark, value: &str) -> String {
    let mut out = format!("{param}.{part}{}", mark.char());
    push_value(&mut out, value);
    out
}

/// The lexeme of the phonetic code `code` kept in parameter `param`'s values.
pub(crate) fn sound(param: i32, code: &str) -> String {
    let mut out = format!("{param}~");
    push_value(&mut out, code);
    out
}

/// The lexeme prefix a search for values starting with `prefix` looks for: at most the
/// bytes a long value keeps.
pub(crate) fn prefix(param: i32, part: i16, mark: Mark, prefix: &str) -> String {
    let mut out = format!("{param}.{part}{}", mark.char());
    out.push_str(cut(prefix, KEPT));
    out
}

/// The lexeme before a part's values of `mark`: what every value of the part starts with.
pub(crate) fn part_start(param: i32, part: i16, mark: Mark) -> String {
    format!("{param}.{part}{}", mark.char())
}

/// The first bytes of `value` kept as they are: all up to [`MAX_VALUE`], else [`KEPT`].
fn head(value: &str) -> &str {
    if value.len() <= MAX_VALUE {
        value
    } else {
        cut(value, KEPT)
    }
}

/// `value` up to `len` bytes, at a character boundary.
fn cut(value: &str, len: usize) -> &str {
    if value.len() <= len {
        return value;
    }
    let mut end = len;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

fn push_value(out: &mut String, value: &str) {
    let kept = head(value);
    out.push_str(kept);
    if kept.len() < value.len() {
        out.push('#');
        let digest = Sha256::digest(value.as_bytes());
        for byte in &digest[..16] {
            let _ = write!(out, "{byte:02x}");
        }
    }
}

/// The value of a string's lexeme: normalized, then as written.
pub(crate) fn string(normalized: &str, exact: &str) -> String {
    format!("{normalized}{SEP}{exact}")
}

/// The value of a code's lexeme: the code, then its system (none: empty).
pub(crate) fn code(code: &str, system: Option<&str>) -> String {
    format!("{code}{SEP}{}", system.unwrap_or(""))
}

/// The value of an identifier's type lexeme: type code, value, type system (none: empty).
pub(crate) fn of_type(type_code: &str, value: &str, type_system: Option<&str>) -> String {
    format!("{type_code}{SEP}{value}{SEP}{}", type_system.unwrap_or(""))
}

/// Adds the lexemes of `entry`, a value of parameter `param`, to `out`: none unless the
/// value is a string or a token (the others have tables of their own).
pub(crate) fn push_entry(out: &mut Vec<String>, param: i32, entry: &IndexEntry<'_>) {
    let part = entry.part.code();
    match &entry.value {
        IndexValue::String(value) => {
            let both = string(&value.normalized, &value.exact);
            out.push(lexeme(param, part, Mark::Normalized, &both));
            if let Some(code) = &value.sound {
                out.push(sound(param, code));
            }
        }
        IndexValue::Token(TokenValue::Text(text)) => {
            out.push(lexeme(param, part, Mark::Normalized, &text.normalized));
        }
        IndexValue::Token(TokenValue::Code { system, code }) => {
            push_code(out, param, part, system.as_deref(), code);
        }
        IndexValue::Token(TokenValue::OfType {
            system,
            type_system,
            type_code,
            value,
        }) => {
            push_code(out, param, part, system.as_deref(), value);
            let typed = of_type(type_code, value, type_system.as_deref());
            out.push(lexeme(param, part, Mark::OfType, &typed));
        }
        _ => {}
    }
}

fn push_code(out: &mut Vec<String>, param: i32, part: i16, system: Option<&str>, value: &str) {
    out.push(lexeme(param, part, Mark::Code, &code(value, system)));
    if let Some(system) = system {
        out.push(lexeme(param, part, Mark::System, system));
    }
}

/// The `tsvector`s that hold `lexemes`: one, or more when they are too many for one.
pub(crate) fn tsvectors(mut lexemes: Vec<String>) -> Vec<TsVector> {
    lexemes.sort_unstable();
    lexemes.dedup();
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut bytes = 0;
    for lexeme in lexemes {
        if !row.is_empty() && bytes + lexeme.len() > MAX_ROW {
            rows.push(TsVector(std::mem::take(&mut row)));
            bytes = 0;
        }
        bytes += lexeme.len();
        row.push(lexeme);
    }
    if !row.is_empty() {
        rows.push(TsVector(row));
    }
    rows
}

/// A `tsvector` of lexemes without positions, sent in PostgreSQL's binary format (what
/// `tsvectorrecv` reads: the count, then each lexeme ending in a zero byte and its number
/// of positions), so that the server neither unquotes nor parses it. The lexemes are in
/// byte order without duplicates, the order PostgreSQL keeps them in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TsVector(Vec<String>);

impl TsVector {
    #[cfg(test)]
    pub(crate) fn lexemes(&self) -> &[String] {
        &self.0
    }
}

impl sqlx::Type<sqlx::Postgres> for TsVector {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("tsvector")
    }
}

impl PgHasArrayType for TsVector {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("_tsvector")
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for TsVector {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.extend_from_slice(&i32::try_from(self.0.len())?.to_be_bytes());
        for lexeme in &self.0 {
            // Validation refuses control characters in strings: a zero byte would end
            // the lexeme early.
            if lexeme.contains('\0') {
                return Err("a lexeme holds a zero byte".into());
            }
            buf.extend_from_slice(lexeme.as_bytes());
            buf.extend_from_slice(&[0, 0, 0]);
        }
        Ok(IsNull::No)
    }

    fn size_hint(&self) -> usize {
        4 + self.0.iter().map(|lexeme| lexeme.len() + 3).sum::<usize>()
    }
}

/// `lexeme` quoted for a `tsquery`: in single quotes, a quote doubled and a backslash
/// escaped.
fn quote(out: &mut String, lexeme: &str) {
    out.push('\'');
    for c in lexeme.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// A `tsquery` (in PostgreSQL's input syntax) matching any of its terms.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct AnyOf(String);

impl AnyOf {
    /// Matches `lexeme`.
    pub(crate) fn lexeme(&mut self, lexeme: &str) -> &mut Self {
        self.or();
        quote(&mut self.0, lexeme);
        self
    }

    /// Matches every lexeme starting with `prefix`.
    pub(crate) fn prefix(&mut self, prefix: &str) -> &mut Self {
        self.lexeme(prefix);
        self.0.push_str(":*");
        self
    }

    fn or(&mut self) {
        if !self.0.is_empty() {
            self.0.push_str(" | ");
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The query's text.
    pub(crate) fn into_text(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir_core::search::{Part, Registry};

    #[test]
    fn lexemes_name_parameter_part_and_mark() {
        let family = string("chalmers", "Chalmers");
        assert_eq!(
            lexeme(80, 1, Mark::Normalized, &family),
            "80.1:chalmers\u{1}Chalmers"
        );
        assert_eq!(
            lexeme(77, 0, Mark::Code, &code("12", Some("urn:x"))),
            "77.0=12\u{1}urn:x"
        );
        assert_eq!(code("male", None), "male\u{1}");
        assert_eq!(sound(80, "c456"), "80~c456");
        assert_eq!(of_type("MR", "12", None), "MR\u{1}12\u{1}");
        assert_eq!(prefix(80, 2, Mark::Normalized, "pet"), "80.2:pet");
    }

    #[test]
    fn long_values_are_cut_and_keep_a_digest() {
        let long = "é".repeat(1_200);
        let a = lexeme(1, 0, Mark::Code, &long);
        let b = lexeme(1, 0, Mark::Code, &format!("{long}x"));
        assert_ne!(a, b, "equality stays exact");
        assert!(a.len() <= MAX_VALUE + 8, "{}", a.len());
        assert!(a.starts_with(&prefix(1, 0, Mark::Code, &long)));
        // A prefix a little shorter than the limit still finds a value cut.
        let near = &long[..MAX_VALUE - 10];
        assert!(a.starts_with(&prefix(1, 0, Mark::Code, near)));
        assert_eq!(lexeme(1, 0, Mark::Code, "short"), "1.0=short");
    }

    #[test]
    fn quoting_doubles_quotes_and_escapes_backslashes() {
        let mut query = AnyOf::default();
        query.prefix("80.1:o'b\\c").lexeme("x");
        assert_eq!(query.into_text(), "'80.1:o''b\\\\c':* | 'x'");
    }

    #[test]
    fn a_tsvector_is_sent_sorted_without_duplicates_in_the_binary_format() {
        let rows = tsvectors(vec![
            "b\\c".into(),
            "o'brien".into(),
            "b\\c".into(),
            "a".into(),
        ]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].lexemes(), ["a", "b\\c", "o'brien"]);
        let mut buf = PgArgumentBuffer::default();
        let encoded = sqlx::Encode::<sqlx::Postgres>::encode_by_ref(&rows[0], &mut buf);
        assert!(matches!(encoded, Ok(IsNull::No)));
        let mut expected = vec![0, 0, 0, 3];
        for lexeme in ["a", "b\\c", "o'brien"] {
            expected.extend_from_slice(lexeme.as_bytes());
            expected.extend_from_slice(&[0, 0, 0]);
        }
        assert_eq!(&buf[..], &expected[..]);
        assert_eq!(
            sqlx::Encode::<sqlx::Postgres>::size_hint(&rows[0]),
            expected.len()
        );
        let zero = TsVector(vec!["a\0b".into()]);
        assert!(sqlx::Encode::<sqlx::Postgres>::encode_by_ref(&zero, &mut buf).is_err());
    }

    #[test]
    fn too_many_lexemes_for_one_row_make_several() {
        let lexemes: Vec<String> = (0..2000).map(|n| format!("{n:0>600}")).collect();
        let rows = tsvectors(lexemes);
        assert_eq!(rows.len(), 3);
        assert!(
            rows.iter()
                .all(|row| row.lexemes().iter().map(String::len).sum::<usize>() <= MAX_ROW)
        );
        assert_eq!(
            rows.iter().map(|row| row.lexemes().len()).sum::<usize>(),
            2000
        );
        assert!(tsvectors(Vec::new()).is_empty());
    }

    #[test]
    fn an_identifier_with_a_type_is_a_code_and_an_of_type_value() {
        let registry = Registry::builtin().expect("the definitions load");
        let entry = IndexEntry {
            param: registry.get("Patient", "identifier").expect("a parameter"),
            value: IndexValue::Token(TokenValue::OfType {
                system: Some("urn:s".into()),
                type_system: Some("urn:t".into()),
                type_code: "MR".into(),
                value: "12".into(),
            }),
            part: Part::Whole,
        };
        let mut out = Vec::new();
        push_entry(&mut out, 7, &entry);
        assert_eq!(
            out,
            ["7.0=12\u{1}urn:s", "7.0@urn:s", "7.0#MR\u{1}12\u{1}urn:t"]
        );
    }
}
