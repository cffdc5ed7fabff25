//! The FHIRPath subset that SearchParameter expressions use (http://hl7.org/fhirpath/N1/),
//! evaluated over JSON resources. An [`Expression`] is parsed once and evaluated many times.
//!
//! The subset:
//!
//! - paths: `Patient.name.given`, a leading type name that selects the resource when it is of
//!   that type (`Resource.id` and `DomainResource.text` on any resource, `Person.address` on a
//!   Patient yields nothing), backtick-delimited names, indexes `name[0]`, `$this`;
//! - choice elements by their base name: `Patient.deceased` is `deceasedBoolean` or
//!   `deceasedDateTime`, typed by the variant present;
//! - literals: strings `'...'` with escapes, `true`, `false`, integers, decimals, `{}`;
//! - operators: `|` (union without duplicates), `=`, `!=`, `and`, `or`, `xor`, `implies`
//!   (three-valued), `is`, `as`;
//! - functions: `where(criteria)`, `exists()`, `exists(criteria)`, `empty()`, `not()`,
//!   `first()`, `last()`, `count()`, `hasValue()`, `ofType(T)`, `as(T)`, `is(T)`,
//!   `extension('url')`, `resolve()`.
//!
//! Element types come from the StructureDefinitions compiled into the validator, so
//! `ofType(CodeableConcept)` and `as dateTime` work on any element, and type tests know that
//! `code` specialises `string` and `Age` specialises `Quantity`. `resolve()` fetches nothing:
//! a reference to a contained resource (`#id`) yields that resource, any other reference a
//! placeholder typed by the reference string (`Patient/1` and `http://x/fhir/Patient/1` are a
//! Patient; `Reference.type` when the string names no type), so `resolve() is Patient` and
//! `where(resolve() is Patient)` decide on the reference alone. `as` on a collection filters
//! it like `ofType`, as the R4 definitions (`Group.characteristic.value as CodeableConcept`)
//! expect. Equality compares primitives by value (numbers numerically, dates and strings as
//! text) and complex elements structurally.
//!
//! Anything else (arithmetic, ordering comparisons, `~`, date literals, other functions) is
//! refused by the parser with the position it stopped at. Evaluation never panics: a
//! function applied to more items than it accepts is an [`EvalError`].
//!
//! [`locate`] tells where in the resource's JSON the selected elements sit, for the writers
//! that change them.

mod ast;
mod eval;
mod lexer;
mod locate;
mod parser;
mod types;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

pub use eval::{Item, Node};
pub use locate::{Location, Step, locate};

pub(crate) use types::{choice_type, is_a};

use ast::{BinaryOp, Expr};

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    text: String,
    expr: Expr,
}

/// The text is not an expression of the supported subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {position})")]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// Byte offset into the expression text.
    pub position: usize,
}

impl ParseError {
    pub(crate) fn new(message: impl Into<String>, position: usize) -> Self {
        ParseError {
            message: message.into(),
            position,
        }
    }
}

/// An expression could not be evaluated on a resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// An operator or function that takes a single item got several.
    #[error("{0} needs a single item, the collection has several")]
    NotSingleton(&'static str),
    /// `[index]` with something other than one integer.
    #[error("an index must be a single integer")]
    BadIndex,
}

impl Expression {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        Ok(Expression {
            text: text.to_string(),
            expr: parser::parse(text)?,
        })
    }

    /// The text the expression was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Evaluates the expression with `resource` as its context.
    pub fn evaluate<'a>(&'a self, resource: &'a Value) -> Result<Vec<Item<'a>>, EvalError> {
        let root = [Item::Node(Node::resource(resource))];
        eval::evaluate(&self.expr, resource, &root)
    }

    /// Evaluates the expression with `focus`, an element of `resource`, as its context (the
    /// components of a composite parameter are relative to the element the parameter found).
    pub fn evaluate_on<'a>(
        &'a self,
        resource: &'a Value,
        focus: Node<'a>,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        eval::evaluate(&self.expr, resource, &[Item::Node(focus)])
    }

    /// The part of the expression that can select anything on a resource of type
    /// `resource_type`: of a union such as `Patient.address | Person.address`, the branches
    /// that start with that type, `Resource`, `DomainResource`, or no type at all. `None`
    /// when no branch applies.
    pub fn for_type(&self, resource_type: &str) -> Option<Expression> {
        let mut branches = Vec::new();
        union_branches(&self.expr, &mut branches);
        let total = branches.len();
        branches.retain(|branch| {
            root_type(branch).is_none_or(|root| {
                root == resource_type
                    || root == "Resource"
                    || (root == "DomainResource"
                        && !["Binary", "Bundle", "Parameters"].contains(&resource_type))
            })
        });
        if branches.len() == total {
            return Some(self.clone());
        }
        let expr = branches
            .into_iter()
            .cloned()
            .reduce(|left, right| Expr::Binary(BinaryOp::Union, Box::new(left), Box::new(right)))?;
        Some(Expression {
            text: expr.to_string(),
            expr,
        })
    }
}

impl fmt::Display for Expression {
    /// The text the expression was parsed from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The operands of a tree of `|`, left to right.
fn union_branches<'e>(expr: &'e Expr, out: &mut Vec<&'e Expr>) {
    match expr {
        Expr::Binary(BinaryOp::Union, left, right) => {
            union_branches(left, out);
            union_branches(right, out);
        }
        other => out.push(other),
    }
}

/// The type name an expression starts with (`Patient` in `Patient.name.where(...)`).
fn root_type(expr: &Expr) -> Option<&str> {
    let mut current = expr;
    loop {
        current = match current {
            Expr::Member(name) if name.starts_with(|c: char| c.is_ascii_uppercase()) => {
                return Some(name);
            }
            // A union inside a path may start with several types: keep it whole.
            Expr::Binary(BinaryOp::Union, ..) => return None,
            Expr::Child(receiver, _)
            | Expr::Index(receiver, _)
            | Expr::Call(Some(receiver), _)
            | Expr::Type(_, receiver, _)
            | Expr::Binary(_, receiver, _) => receiver,
            _ => return None,
        };
    }
}
