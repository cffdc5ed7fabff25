//! A recursive-descent parser for the supported subset, following the precedence of the
//! FHIRPath grammar (http://hl7.org/fhirpath/N1/grammar.html), lowest first:
//! `implies`; `or` `xor`; `and`; `=` `!=`; `|`; `is` `as`; then invocations (`.name`,
//! `.f()`, `[i]`) on terms. Operators outside the subset are recognised and refused by name.

use super::ParseError;
use super::ast::{BinaryOp, Expr, Function, Literal, TypeOp, TypeSpec};
use super::lexer::{Token, TokenKind, tokenize};

/// Deeper parenthesis and argument nesting than this is refused, so hostile text cannot
/// exhaust the parser's stack.
const MAX_NESTING: usize = 64;

/// Deeper trees than this are refused: the evaluator recurses once per level.
const MAX_DEPTH: usize = 128;

/// Longer expressions are refused; the longest R4 definition has about 150 tokens.
const MAX_TOKENS: usize = 2_000;

/// Words the grammar reads as operators or literals where they stand.
const RESERVED: [&str; 12] = [
    "and", "as", "contains", "div", "false", "implies", "in", "is", "mod", "or", "true", "xor",
];

/// Whether `name` must be written `` `name` `` to be read as an identifier.
pub(super) fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

/// Parses a whole expression.
pub(super) fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    if tokens.len() > MAX_TOKENS {
        return Err(ParseError::new("the expression is too long", 0));
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        depth: 0,
    };
    let expr = parser.expression()?;
    if !matches!(parser.peek().kind, TokenKind::End) {
        return Err(parser.error("unexpected text after the expression"));
    }
    if expr.depth() > MAX_DEPTH {
        return Err(ParseError::new("the expression nests too deeply", 0));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // `tokenize` always ends the list with `End`, and `advance` never moves past it.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::End {
            self.next += 1;
        }
        token
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError::new(message, self.peek().at)
    }

    /// The next token is the plain identifier `word`.
    fn at_word(&self, word: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Identifier(w) if w == word)
    }

    fn at_symbol(&self, symbol: &str) -> bool {
        matches!(self.peek().kind, TokenKind::Symbol(s) if s == symbol)
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), ParseError> {
        if self.at_symbol(symbol) {
            self.advance();
            Ok(())
        } else {
            Err(self.error(format!("expected `{symbol}`")))
        }
    }

    fn expression(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error("the expression nests too deeply"));
        }
        let result = self.implies();
        self.depth -= 1;
        result
    }

    fn implies(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.or()?;
        while self.at_word("implies") {
            self.advance();
            let right = self.or()?;
            left = Expr::Binary(BinaryOp::Implies, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        loop {
            let op = if self.at_word("or") {
                BinaryOp::Or
            } else if self.at_word("xor") {
                BinaryOp::Xor
            } else {
                return Ok(left);
            };
            self.advance();
            let right = self.and()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.equality()?;
        while self.at_word("and") {
            self.advance();
            let right = self.equality()?;
            left = Expr::Binary(BinaryOp::And, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn equality(&mut self) -> Result<Expr, ParseError> {
        if self.at_word("in") || self.at_word("contains") {
            return Err(self.error("membership operators are not supported"));
        }
        let mut left = self.union()?;
        loop {
            let op = if self.at_symbol("=") {
                BinaryOp::Equal
            } else if self.at_symbol("!=") {
                BinaryOp::NotEqual
            } else if self.at_symbol("~") || self.at_symbol("!~") {
                return Err(self.error("equivalence operators are not supported"));
            } else if self.at_word("in") || self.at_word("contains") {
                return Err(self.error("membership operators are not supported"));
            } else {
                return Ok(left);
            };
            self.advance();
            let right = self.union()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn union(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.type_expression()?;
        loop {
            if ["<", ">", "<=", ">="].iter().any(|s| self.at_symbol(s)) {
                return Err(self.error("ordering comparisons are not supported"));
            }
            if !self.at_symbol("|") {
                return Ok(left);
            }
            self.advance();
            let right = self.type_expression()?;
            left = Expr::Binary(BinaryOp::Union, Box::new(left), Box::new(right));
        }
    }

    fn type_expression(&mut self) -> Result<Expr, ParseError> {
        let mut operand = self.arithmetic()?;
        loop {
            let op = if self.at_word("is") {
                TypeOp::Is
            } else if self.at_word("as") {
                TypeOp::As
            } else {
                return Ok(operand);
            };
            self.advance();
            let spec = self.type_spec()?;
            operand = Expr::Type(op, Box::new(operand), spec);
        }
    }

    /// Arithmetic is outside the subset: the operand, or a clear refusal.
    fn arithmetic(&mut self) -> Result<Expr, ParseError> {
        let operand = self.unary()?;
        if ["+", "-", "*", "/", "&"].iter().any(|s| self.at_symbol(s))
            || self.at_word("div")
            || self.at_word("mod")
        {
            return Err(self.error("arithmetic operators are not supported"));
        }
        Ok(operand)
    }

    /// A sign is accepted only on a number literal (`-1`).
    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.at_symbol("-") || self.at_symbol("+") {
            let negative = self.at_symbol("-");
            self.advance();
            let TokenKind::Number(text) = self.peek().kind.clone() else {
                return Err(self.error("a sign is supported only before a number"));
            };
            self.advance();
            let text = if negative { format!("-{text}") } else { text };
            let literal = self.number_literal(text)?;
            return self.invocations(literal);
        }
        let term = self.term()?;
        self.invocations(term)
    }

    /// `.name`, `.f(...)` and `[index]` after a term.
    fn invocations(&mut self, mut receiver: Expr) -> Result<Expr, ParseError> {
        loop {
            if self.at_symbol(".") {
                self.advance();
                receiver = match self.invocation()? {
                    Invocation::Member(name) => Expr::Child(Box::new(receiver), name),
                    Invocation::Function(f) => Expr::Call(Some(Box::new(receiver)), f),
                };
            } else if self.at_symbol("[") {
                self.advance();
                let index = self.expression()?;
                self.expect_symbol("]")?;
                receiver = Expr::Index(Box::new(receiver), Box::new(index));
            } else {
                return Ok(receiver);
            }
        }
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::String(text) => {
                self.advance();
                Ok(Expr::Literal(Literal::String(text)))
            }
            TokenKind::Number(text) => {
                let literal = self.number_literal(text)?;
                self.advance();
                Ok(literal)
            }
            TokenKind::Identifier(word) if word == "true" || word == "false" => {
                self.advance();
                Ok(Expr::Literal(Literal::Boolean(word == "true")))
            }
            TokenKind::Variable(name) => {
                if name != "this" {
                    return Err(self.error("only the variable $this is supported"));
                }
                self.advance();
                Ok(Expr::This)
            }
            TokenKind::Symbol("(") => {
                self.advance();
                let inner = self.expression()?;
                self.expect_symbol(")")?;
                Ok(inner)
            }
            TokenKind::Symbol("{") => {
                self.advance();
                self.expect_symbol("}")?;
                Ok(Expr::Empty)
            }
            TokenKind::Identifier(_) | TokenKind::Delimited(_) => Ok(match self.invocation()? {
                Invocation::Member(name) => Expr::Member(name),
                Invocation::Function(f) => Expr::Call(None, f),
            }),
            TokenKind::End => Err(self.error("unexpected end of the expression")),
            TokenKind::Symbol(_) => Err(self.error("expected a term")),
        }
    }

    /// An identifier, or a function call when `(` follows.
    fn invocation(&mut self) -> Result<Invocation, ParseError> {
        let token = self.advance();
        let (name, delimited) = match token.kind {
            TokenKind::Identifier(name) => (name, false),
            TokenKind::Delimited(name) => (name, true),
            _ => return Err(ParseError::new("expected a name", token.at)),
        };
        if !self.at_symbol("(") {
            if !delimited && matches!(name.as_str(), "and" | "or" | "xor" | "implies") {
                return Err(ParseError::new("expected a name", token.at));
            }
            return Ok(Invocation::Member(name));
        }
        self.advance();
        let function = self.function(&name, token.at)?;
        self.expect_symbol(")")?;
        Ok(Invocation::Function(function))
    }

    /// The arguments of function `name` (the `(` is consumed, the `)` is not).
    fn function(&mut self, name: &str, at: usize) -> Result<Function, ParseError> {
        let no_args = |f: Function| Ok(f);
        match name {
            "where" => Ok(Function::Where(Box::new(self.expression()?))),
            "exists" if self.at_symbol(")") => no_args(Function::Exists(None)),
            "exists" => Ok(Function::Exists(Some(Box::new(self.expression()?)))),
            "empty" => no_args(Function::Empty),
            "not" => no_args(Function::Not),
            "first" => no_args(Function::First),
            "last" => no_args(Function::Last),
            "count" => no_args(Function::Count),
            "hasValue" => no_args(Function::HasValue),
            "resolve" => no_args(Function::Resolve),
            "ofType" => Ok(Function::OfType(self.type_spec()?)),
            "as" => Ok(Function::As(self.type_spec()?)),
            "is" => Ok(Function::Is(self.type_spec()?)),
            "extension" => match self.advance().kind {
                TokenKind::String(url) => Ok(Function::Extension(url)),
                _ => Err(ParseError::new(
                    "extension() takes a string literal url",
                    at,
                )),
            },
            _ => Err(ParseError::new(
                format!("unsupported function `{name}`"),
                at,
            )),
        }
    }

    /// An integer or decimal literal from its text.
    fn number_literal(&self, text: String) -> Result<Expr, ParseError> {
        if text.contains('.') {
            return Ok(Expr::Literal(Literal::Decimal(text)));
        }
        text.parse()
            .map(|n| Expr::Literal(Literal::Integer(n)))
            .map_err(|_| self.error("the integer is out of range"))
    }

    /// `Name` or `Namespace.Name`.
    fn type_spec(&mut self) -> Result<TypeSpec, ParseError> {
        let first = self.type_name()?;
        if self.at_symbol(".") {
            self.advance();
            let name = self.type_name()?;
            return Ok(TypeSpec {
                namespace: Some(first),
                name,
            });
        }
        Ok(TypeSpec {
            namespace: None,
            name: first,
        })
    }

    fn type_name(&mut self) -> Result<String, ParseError> {
        let token = self.advance();
        match token.kind {
            TokenKind::Identifier(name) | TokenKind::Delimited(name) => Ok(name),
            _ => Err(ParseError::new("expected a type name", token.at)),
        }
    }
}

enum Invocation {
    Member(String),
    Function(Function),
}
