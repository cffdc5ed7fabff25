//! The parsed form of an expression, and its canonical text.

use std::fmt;

/// One node of a parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// `{}`
    Empty,
    /// `'text'`, `true`, `42`, `1.5`
    Literal(Literal),
    /// `$this`
    This,
    /// An identifier with no receiver: a child of `$this`, or a type name that selects
    /// `$this` when it is of that type (`Patient` in `Patient.name`).
    Member(String),
    /// `receiver.name`
    Child(Box<Expr>, String),
    /// `receiver[index]`
    Index(Box<Expr>, Box<Expr>),
    /// A function applied to `receiver`, or to `$this` when there is none.
    Call(Option<Box<Expr>>, Function),
    /// `left op right`
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `operand is Type`, `operand as Type`
    Type(TypeOp, Box<Expr>, TypeSpec),
}

/// A literal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Literal {
    String(String),
    Boolean(bool),
    Integer(i64),
    /// A decimal, kept as its text (no float rounding).
    Decimal(String),
}

/// A function of the supported subset, with its arguments checked at parse time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Function {
    Where(Box<Expr>),
    Exists(Option<Box<Expr>>),
    Empty,
    Not,
    First,
    Last,
    Count,
    HasValue,
    OfType(TypeSpec),
    As(TypeSpec),
    Is(TypeSpec),
    Resolve,
    /// `extension('url')`: the extensions with that url.
    Extension(String),
}

/// A binary operator of the supported subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Union,
    Equal,
    NotEqual,
    And,
    Or,
    Xor,
    Implies,
}

/// `is` or `as` written as an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeOp {
    Is,
    As,
}

/// A type name, optionally qualified by its namespace (`FHIR.Patient`, `System.String`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeSpec {
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
}

impl Expr {
    /// The operands and arguments of this node.
    fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Empty | Expr::Literal(_) | Expr::This | Expr::Member(_) => Vec::new(),
            Expr::Child(receiver, _) | Expr::Type(_, receiver, _) => vec![receiver],
            Expr::Index(receiver, index) => vec![receiver, index],
            Expr::Binary(_, left, right) => vec![left, right],
            Expr::Call(receiver, function) => {
                let mut children: Vec<&Expr> = receiver.as_deref().into_iter().collect();
                if let Function::Where(arg) | Function::Exists(Some(arg)) = function {
                    children.push(arg);
                }
                children
            }
        }
    }

    /// The number of levels of the tree, counted without recursion (the tree may be deep).
    pub(crate) fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut pending = vec![(self, 1)];
        while let Some((expr, depth)) = pending.pop() {
            deepest = deepest.max(depth);
            pending.extend(expr.children().into_iter().map(|c| (c, depth + 1)));
        }
        deepest
    }
}

impl BinaryOp {
    fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Union => "|",
            BinaryOp::Equal => "=",
            BinaryOp::NotEqual => "!=",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Xor => "xor",
            BinaryOp::Implies => "implies",
        }
    }
}

impl fmt::Display for TypeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Writes a string literal with the escapes the parser reads back.
fn write_string(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in text.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}

/// Writes an identifier, delimited with backticks when it is not a plain one.
fn write_identifier(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !super::parser::is_reserved(name);
    if plain {
        f.write_str(name)
    } else {
        write!(f, "`{}`", name.replace('`', "\\`"))
    }
}

impl fmt::Display for Expr {
    /// The canonical text, which parses back to the same tree: operands are parenthesised
    /// where the precedence of the written form would differ.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Empty => f.write_str("{}"),
            Expr::Literal(Literal::String(text)) => write_string(f, text),
            Expr::Literal(Literal::Boolean(b)) => write!(f, "{b}"),
            Expr::Literal(Literal::Integer(n)) => write!(f, "{n}"),
            Expr::Literal(Literal::Decimal(text)) => f.write_str(text),
            Expr::This => f.write_str("$this"),
            Expr::Member(name) => write_identifier(f, name),
            Expr::Child(receiver, name) => {
                write_receiver(f, receiver)?;
                f.write_str(".")?;
                write_identifier(f, name)
            }
            Expr::Index(receiver, index) => {
                write_receiver(f, receiver)?;
                write!(f, "[{index}]")
            }
            Expr::Call(receiver, function) => {
                if let Some(receiver) = receiver {
                    write_receiver(f, receiver)?;
                    f.write_str(".")?;
                }
                write!(f, "{function}")
            }
            Expr::Binary(op, left, right) => {
                // Operators are left-associative: a left operand of the same operator needs
                // no parentheses, anything else composite does.
                match &**left {
                    Expr::Binary(left_op, ..) if left_op == op => write!(f, "{left}")?,
                    left => write_operand(f, left)?,
                }
                write!(f, " {} ", op.symbol())?;
                write_operand(f, right)
            }
            Expr::Type(op, operand, spec) => {
                write_operand(f, operand)?;
                let word = match op {
                    TypeOp::Is => "is",
                    TypeOp::As => "as",
                };
                write!(f, " {word} {spec}")
            }
        }
    }
}

/// An operand of a binary or type operator: parenthesised when it is one itself.
fn write_operand(f: &mut fmt::Formatter<'_>, expr: &Expr) -> fmt::Result {
    match expr {
        Expr::Binary(..) | Expr::Type(..) => write!(f, "({expr})"),
        Expr::Literal(Literal::Integer(n)) if *n < 0 => write!(f, "({expr})"),
        _ => write!(f, "{expr}"),
    }
}

/// The receiver of `.name`, `.f()` or `[i]`.
fn write_receiver(f: &mut fmt::Formatter<'_>, expr: &Expr) -> fmt::Result {
    match expr {
        Expr::Literal(Literal::Decimal(text)) if text.starts_with('-') => write!(f, "({expr})"),
        _ => write_operand(f, expr),
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Function::Where(criteria) => write!(f, "where({criteria})"),
            Function::Exists(Some(criteria)) => write!(f, "exists({criteria})"),
            Function::Exists(None) => f.write_str("exists()"),
            Function::Empty => f.write_str("empty()"),
            Function::Not => f.write_str("not()"),
            Function::First => f.write_str("first()"),
            Function::Last => f.write_str("last()"),
            Function::Count => f.write_str("count()"),
            Function::HasValue => f.write_str("hasValue()"),
            Function::OfType(spec) => write!(f, "ofType({spec})"),
            Function::As(spec) => write!(f, "as({spec})"),
            Function::Is(spec) => write!(f, "is({spec})"),
            Function::Resolve => f.write_str("resolve()"),
            Function::Extension(url) => {
                f.write_str("extension(")?;
                write_string(f, url)?;
                f.write_str(")")
            }
        }
    }
}
