//! Splits expression text into tokens (http://hl7.org/fhirpath/N1/#lexical-elements).

use super::ParseError;

/// One token, with the byte offset it starts at.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) kind: TokenKind,
    pub(super) at: usize,
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokenKind {
    /// A plain identifier; keywords (`and`, `is`, `true`) are identifiers the parser reads
    /// by position.
    Identifier(String),
    /// A `` `delimited` `` identifier: never a keyword.
    Delimited(String),
    /// `'text'`, escapes resolved.
    String(String),
    /// `12` or `1.5`, as written.
    Number(String),
    /// `$this`, `$index`, `$total`, without the `$`.
    Variable(String),
    /// An operator or punctuation: `.`, `(`, `!=`, `|`, ...
    Symbol(&'static str),
    End,
}

/// Operators and punctuation, longest first so that `!=` wins over `!`.
const SYMBOLS: [&str; 22] = [
    "!=", "!~", "<=", ">=", ".", "(", ")", "[", "]", "{", "}", ",", "|", "=", "~", "<", ">", "+",
    "-", "*", "/", "&",
];

/// The whole expression as tokens, ending with [`TokenKind::End`].
pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut rest = text;
    loop {
        rest = skip_blanks(text, rest)?;
        let at = text.len() - rest.len();
        let Some(c) = rest.chars().next() else {
            tokens.push(Token {
                kind: TokenKind::End,
                at,
            });
            return Ok(tokens);
        };
        let (kind, len) = if c.is_ascii_alphabetic() || c == '_' {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (TokenKind::Identifier(rest[..len].to_string()), len)
        } else if c.is_ascii_digit() {
            number(rest)
        } else if c == '\'' {
            let (text, len) = quoted(rest, '\'', at)?;
            (TokenKind::String(text), len)
        } else if c == '`' {
            let (text, len) = quoted(rest, '`', at)?;
            (TokenKind::Delimited(text), len)
        } else if c == '$' {
            let len = rest[1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(rest.len(), |n| n + 1);
            (TokenKind::Variable(rest[1..len].to_string()), len)
        } else if c == '@' {
            return Err(ParseError::new(
                "date and time literals are not supported",
                at,
            ));
        } else if let Some(symbol) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            (TokenKind::Symbol(symbol), symbol.len())
        } else {
            return Err(ParseError::new("unexpected character", at));
        };
        tokens.push(Token { kind, at });
        rest = &rest[len..];
    }
}

/// Skips white space and comments.
fn skip_blanks<'t>(text: &str, mut rest: &'t str) -> Result<&'t str, ParseError> {
    loop {
        rest = rest.trim_start();
        if let Some(comment) = rest.strip_prefix("//") {
            rest = comment.find('\n').map_or("", |n| &comment[n..]);
        } else if let Some(comment) = rest.strip_prefix("/*") {
            let Some(end) = comment.find("*/") else {
                return Err(ParseError::new(
                    "unterminated comment",
                    text.len() - rest.len(),
                ));
            };
            rest = &comment[end + 2..];
        } else {
            return Ok(rest);
        }
    }
}

/// An integer or decimal literal at the start of `rest`.
fn number(rest: &str) -> (TokenKind, usize) {
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut len = digits(rest);
    // `1.5` is a decimal; in `1.exists()` the dot is an invocation.
    if rest[len..].starts_with('.') && rest[len + 1..].starts_with(|c: char| c.is_ascii_digit()) {
        len += 1 + digits(&rest[len + 1..]);
    }
    (TokenKind::Number(rest[..len].to_string()), len)
}

/// A `quote`-delimited string or identifier at the start of `rest`, escapes resolved;
/// returns the text and the length consumed.
fn quoted(rest: &str, quote: char, at: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut chars = rest.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, i + c.len_utf8())),
            '\\' => {
                let Some((j, escaped)) = chars.next() else {
                    break;
                };
                match escaped {
                    '\'' | '"' | '`' | '\\' | '/' => out.push(escaped),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex = rest.get(j + 1..j + 5).unwrap_or_default();
                        let code = (hex.len() == 4)
                            .then(|| u32::from_str_radix(hex, 16).ok())
                            .flatten()
                            .and_then(char::from_u32)
                            .ok_or_else(|| ParseError::new("invalid \\u escape", at + j))?;
                        out.push(code);
                        for _ in 0..4 {
                            chars.next();
                        }
                    }
                    _ => return Err(ParseError::new("invalid escape", at + i)),
                }
            }
            c => out.push(c),
        }
    }
    let what = if quote == '`' {
        "unterminated identifier"
    } else {
        "unterminated string"
    };
    Err(ParseError::new(what, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text)
            .expect("tokenizes")
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn splits_paths_operators_and_literals() {
        use TokenKind::*;
        assert_eq!(
            kinds("Patient.telecom.where(system='email') != 1.5"),
            [
                Identifier("Patient".into()),
                Symbol("."),
                Identifier("telecom".into()),
                Symbol("."),
                Identifier("where".into()),
                Symbol("("),
                Identifier("system".into()),
                Symbol("="),
                String("email".into()),
                Symbol(")"),
                Symbol("!="),
                Number("1.5".into()),
                End,
            ]
        );
        assert_eq!(
            kinds("1.exists() // note\n $this `div` /* x */"),
            [
                Number("1".into()),
                Symbol("."),
                Identifier("exists".into()),
                Symbol("("),
                Symbol(")"),
                Variable("this".into()),
                Delimited("div".into()),
                End,
            ]
        );
    }

    #[test]
    fn resolves_escapes() {
        assert_eq!(
            kinds(r"'it\'s \u00e9\n'"),
            [TokenKind::String("it's é\n".into()), TokenKind::End]
        );
    }

    #[test]
    fn reports_where_lexing_failed() {
        assert_eq!(tokenize("a.b = 'x").expect_err("refused").position, 6);
        assert_eq!(tokenize("a # b").expect_err("refused").position, 2);
        assert_eq!(tokenize("'\\q'").expect_err("refused").position, 1);
        assert_eq!(tokenize("'\\u12'").expect_err("refused").position, 2);
        assert_eq!(tokenize("@2020").expect_err("refused").position, 0);
        assert_eq!(tokenize("a /* b").expect_err("refused").position, 2);
    }
}
