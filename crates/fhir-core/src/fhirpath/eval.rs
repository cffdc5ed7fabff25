//! Evaluation of a parsed expression over a JSON resource: collections in, collections out
//! (http://hl7.org/fhirpath/N1/#path-selection). Nothing here panics or allocates per node
//! beyond the result collections; problems are [`EvalError`] values.

use std::collections::HashSet;

use serde_json::Value;

use super::EvalError;
use super::ast::{BinaryOp, Expr, Function, Literal, TypeOp, TypeSpec};
use super::types;
use crate::reference::{ReferenceTarget, parse_reference};
use crate::validation::types::{ChildKind, Complex, ElementModel};

/// One item of a collection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Item<'a> {
    /// An element or resource of the evaluated resource.
    Node(Node<'a>),
    /// A computed or literal boolean.
    Boolean(bool),
    /// A computed or literal integer.
    Integer(i64),
    /// A decimal literal, as written.
    Decimal(&'a str),
    /// A string literal.
    String(&'a str),
    /// What `resolve()` makes of a reference to a resource outside the evaluated one: only
    /// its type is known, from the reference string.
    Resolved(&'a str),
}

/// An element or resource of the evaluated resource, with its FHIR type where the
/// definitions (or, for a choice element, its JSON name) tell it.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    value: &'a Value,
    type_name: Option<&'a str>,
    complex: Option<Complex>,
}

impl PartialEq for Node<'_> {
    /// The same element: identity, not equal content.
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.value, other.value) && self.type_name == other.type_name
    }
}

impl<'a> Node<'a> {
    /// A resource as the root of an evaluation, typed by its `resourceType`.
    pub fn resource(value: &'a Value) -> Self {
        let type_name = value.get("resourceType").and_then(Value::as_str);
        Node {
            value,
            type_name,
            complex: type_name
                .zip(model())
                .and_then(|(name, model)| model.resource(name)),
        }
    }

    /// The JSON of this node.
    pub fn value(&self) -> &'a Value {
        self.value
    }

    /// The FHIR type (`HumanName`, `dateTime`, `Patient`), when known.
    pub fn type_name(&self) -> Option<&'a str> {
        self.type_name
    }

    /// The values of child element `name` (FHIRPath name: `value` finds `valueQuantity`).
    pub fn children(&self, name: &str) -> Vec<Node<'a>> {
        let mut out = Vec::new();
        self.push_children(name, &mut out);
        out
    }

    fn push_children(&self, name: &str, out: &mut Vec<Node<'a>>) {
        let Value::Object(map) = self.value else {
            return;
        };
        if let (Some(model), Some(complex)) = (model(), self.complex) {
            // A typed node has exactly the elements its definition lists.
            for child in model.children(complex, name) {
                let Some(value) = map.get(child.key) else {
                    continue;
                };
                for_each_value(value, |value| {
                    out.push(match child.kind {
                        ChildKind::Primitive => Node {
                            value,
                            type_name: Some(child.type_name),
                            complex: None,
                        },
                        ChildKind::Complex(complex) => Node {
                            value,
                            type_name: Some(child.type_name),
                            complex: Some(complex),
                        },
                        ChildKind::Resource => Node::resource(value),
                    });
                });
            }
            return;
        }
        // Not in the definitions (an unknown type): by JSON name, choice elements by prefix.
        if let Some(value) = map.get(name) {
            for_each_value(value, |value| out.push(untyped(value, None)));
            return;
        }
        for (key, value) in map {
            let suffix = key.strip_prefix(name).unwrap_or_default();
            if suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
                let type_name = types::choice_type(suffix);
                for_each_value(value, |value| out.push(untyped(value, Some(type_name))));
            }
        }
    }
}

/// A node the definitions do not type: a resource by its `resourceType`, else `type_name`.
fn untyped<'a>(value: &'a Value, type_name: Option<&'a str>) -> Node<'a> {
    if value.get("resourceType").is_some_and(Value::is_string) {
        return Node::resource(value);
    }
    Node {
        value,
        type_name,
        complex: None,
    }
}

/// Calls `f` on each item of a JSON array, or on the value itself; `null`s (the placeholders
/// of primitive arrays whose extensions sit in `_name`) are no values.
fn for_each_value<'a>(value: &'a Value, mut f: impl FnMut(&'a Value)) {
    match value {
        Value::Array(items) => items.iter().filter(|v| !v.is_null()).for_each(f),
        Value::Null => {}
        value => f(value),
    }
}

fn model() -> Option<ElementModel> {
    crate::validation::types::model()
}

/// Evaluates `expr` with `focus` as its input collection; `root` is the resource that
/// `resolve()` looks for contained resources in.
pub(super) fn evaluate<'a>(
    expr: &'a Expr,
    root: &'a Value,
    focus: &[Item<'a>],
) -> Result<Vec<Item<'a>>, EvalError> {
    Evaluator { root }.eval(expr, focus)
}

struct Evaluator<'a> {
    root: &'a Value,
}

impl<'a> Evaluator<'a> {
    fn eval(&self, expr: &'a Expr, focus: &[Item<'a>]) -> Result<Vec<Item<'a>>, EvalError> {
        Ok(match expr {
            Expr::Empty => Vec::new(),
            Expr::Literal(Literal::String(text)) => vec![Item::String(text)],
            Expr::Literal(Literal::Boolean(b)) => vec![Item::Boolean(*b)],
            Expr::Literal(Literal::Integer(n)) => vec![Item::Integer(*n)],
            Expr::Literal(Literal::Decimal(text)) => vec![Item::Decimal(text)],
            Expr::This => focus.to_vec(),
            Expr::Member(name) => {
                let mut out = Vec::new();
                for item in focus {
                    if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                        // Element names are lower-case: this is a type name (`Patient.name`).
                        if types::is_of_type(item, &TypeSpec::plain(name)) {
                            out.push(*item);
                        }
                    } else if let Item::Node(node) = item {
                        push_nodes(node, name, &mut out);
                    }
                }
                out
            }
            Expr::Child(receiver, name) => {
                let mut out = Vec::new();
                for item in self.eval(receiver, focus)? {
                    if let Item::Node(node) = item {
                        push_nodes(&node, name, &mut out);
                    }
                }
                out
            }
            Expr::Index(receiver, index) => {
                let items = self.eval(receiver, focus)?;
                let index = match self.eval(index, focus)?.as_slice() {
                    [Item::Integer(n)] => *n,
                    _ => return Err(EvalError::BadIndex),
                };
                usize::try_from(index)
                    .ok()
                    .and_then(|i| items.get(i).copied())
                    .into_iter()
                    .collect()
            }
            Expr::Call(receiver, function) => {
                let input = match receiver {
                    Some(receiver) => self.eval(receiver, focus)?,
                    None => focus.to_vec(),
                };
                self.call(function, input)?
            }
            Expr::Binary(op, left, right) => self.binary(*op, left, right, focus)?,
            Expr::Type(TypeOp::Is, operand, spec) => {
                is_type(&self.eval(operand, focus)?, spec, "is")?
            }
            Expr::Type(TypeOp::As, operand, spec) => {
                let mut items = self.eval(operand, focus)?;
                items.retain(|item| types::is_of_type(item, spec));
                items
            }
        })
    }

    fn call(
        &self,
        function: &'a Function,
        input: Vec<Item<'a>>,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        Ok(match function {
            Function::Where(criteria) => self.filter(criteria, input)?,
            Function::Exists(None) => vec![Item::Boolean(!input.is_empty())],
            Function::Exists(Some(criteria)) => {
                vec![Item::Boolean(!self.filter(criteria, input)?.is_empty())]
            }
            Function::Empty => vec![Item::Boolean(input.is_empty())],
            Function::Not => match boolean(&input, "not()")? {
                Some(b) => vec![Item::Boolean(!b)],
                None => Vec::new(),
            },
            Function::First => input.first().copied().into_iter().collect(),
            Function::Last => input.last().copied().into_iter().collect(),
            Function::Count => vec![Item::Integer(
                i64::try_from(input.len()).unwrap_or(i64::MAX),
            )],
            Function::HasValue => {
                let has = matches!(input.as_slice(), [Item::Node(node)]
                    if !node.value.is_object() && !node.value.is_array());
                vec![Item::Boolean(has)]
            }
            Function::OfType(spec) | Function::As(spec) => input
                .into_iter()
                .filter(|item| types::is_of_type(item, spec))
                .collect(),
            Function::Is(spec) => is_type(&input, spec, "is()")?,
            Function::Resolve => input.iter().filter_map(|item| self.resolve(item)).collect(),
            Function::Extension(url) => {
                let mut out = Vec::new();
                for item in &input {
                    let Item::Node(node) = item else { continue };
                    for extension in node.children("extension") {
                        if extension.value.get("url").and_then(Value::as_str) == Some(url) {
                            out.push(Item::Node(extension));
                        }
                    }
                }
                out
            }
        })
    }

    /// The items for which `criteria` (evaluated with the item as `$this`) is true.
    fn filter(&self, criteria: &'a Expr, input: Vec<Item<'a>>) -> Result<Vec<Item<'a>>, EvalError> {
        let mut out = Vec::new();
        for item in input {
            let result = self.eval(criteria, std::slice::from_ref(&item))?;
            if boolean(&result, "where()")? == Some(true) {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// The target of a reference: a contained resource, or the type its string names (the
    /// reference's `type` when the string names none). Nothing is fetched.
    fn resolve(&self, item: &Item<'a>) -> Option<Item<'a>> {
        let Item::Node(node) = item else { return None };
        let (reference, declared) = match node.value {
            Value::Object(map) => (
                map.get("reference").and_then(Value::as_str),
                map.get("type").and_then(Value::as_str),
            ),
            Value::String(canonical) => (Some(canonical.as_str()), None),
            _ => return None,
        };
        match reference.map(parse_reference) {
            Some(ReferenceTarget::Contained(id)) => self
                .root
                .get("contained")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
                .map(|r| Item::Node(Node::resource(r))),
            Some(ReferenceTarget::Literal(literal)) => Some(Item::Resolved(literal.resource_type)),
            Some(ReferenceTarget::Opaque(_)) | None => declared.map(Item::Resolved),
        }
    }

    fn binary(
        &self,
        op: BinaryOp,
        left: &'a Expr,
        right: &'a Expr,
        focus: &[Item<'a>],
    ) -> Result<Vec<Item<'a>>, EvalError> {
        let left = self.eval(left, focus)?;
        let right = self.eval(right, focus)?;
        let result = match op {
            BinaryOp::Union => return Ok(union(left, right)),
            BinaryOp::Equal => equal(&left, &right),
            BinaryOp::NotEqual => equal(&left, &right).map(|b| !b),
            BinaryOp::And => match (boolean(&left, "and")?, boolean(&right, "and")?) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            BinaryOp::Or => match (boolean(&left, "or")?, boolean(&right, "or")?) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            BinaryOp::Xor => match (boolean(&left, "xor")?, boolean(&right, "xor")?) {
                (Some(a), Some(b)) => Some(a != b),
                _ => None,
            },
            BinaryOp::Implies => match (boolean(&left, "implies")?, boolean(&right, "implies")?) {
                (Some(false), _) | (_, Some(true)) => Some(true),
                (Some(true), Some(false)) => Some(false),
                _ => None,
            },
        };
        Ok(result.map(Item::Boolean).into_iter().collect())
    }
}

/// Pushes the children `name` of `node` as items.
fn push_nodes<'a>(node: &Node<'a>, name: &str, out: &mut Vec<Item<'a>>) {
    let mut nodes = Vec::new();
    node.push_children(name, &mut nodes);
    out.extend(nodes.into_iter().map(Item::Node));
}

/// `is`: a single item's type test; empty for an empty input.
fn is_type<'a>(
    items: &[Item<'a>],
    spec: &TypeSpec,
    what: &'static str,
) -> Result<Vec<Item<'a>>, EvalError> {
    match items {
        [] => Ok(Vec::new()),
        [item] => Ok(vec![Item::Boolean(types::is_of_type(item, spec))]),
        _ => Err(EvalError::NotSingleton(what)),
    }
}

/// Singleton evaluation of a collection as a boolean: empty is "unknown", one boolean is
/// itself, any other single item is true, more than one item is an error.
fn boolean(items: &[Item<'_>], what: &'static str) -> Result<Option<bool>, EvalError> {
    match items {
        [] => Ok(None),
        [Item::Boolean(b)] => Ok(Some(*b)),
        [Item::Node(node)] => Ok(Some(node.value.as_bool().unwrap_or(true))),
        [_] => Ok(Some(true)),
        _ => Err(EvalError::NotSingleton(what)),
    }
}

/// `=`: empty if either side is empty, else item-wise equality in order.
fn equal(left: &[Item<'_>], right: &[Item<'_>]) -> Option<bool> {
    if left.is_empty() || right.is_empty() {
        return None;
    }
    Some(left.len() == right.len() && left.iter().zip(right).all(|(a, b)| item_equal(a, b)))
}

/// A comparable view of an item.
#[derive(Debug, PartialEq)]
enum Scalar<'a> {
    Boolean(bool),
    String(&'a str),
    Number(String),
    Complex(&'a Value),
    Type(&'a str),
}

fn scalar<'a>(item: &Item<'a>) -> Scalar<'a> {
    match item {
        Item::Boolean(b) => Scalar::Boolean(*b),
        Item::Integer(n) => Scalar::Number(types::canonical_decimal(&n.to_string())),
        Item::Decimal(text) => Scalar::Number(types::canonical_decimal(text)),
        Item::String(text) => Scalar::String(text),
        Item::Resolved(name) => Scalar::Type(name),
        Item::Node(node) => match node.value {
            Value::Bool(b) => Scalar::Boolean(*b),
            Value::String(text) => Scalar::String(text),
            Value::Number(n) => Scalar::Number(types::canonical_decimal(&n.to_string())),
            value => Scalar::Complex(value),
        },
    }
}

fn item_equal(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (scalar(a), scalar(b)) {
        // Resource types are not values: two resolved references are never `=`.
        (Scalar::Type(_), _) | (_, Scalar::Type(_)) => false,
        (a, b) => a == b,
    }
}

/// `|`: both collections, without duplicates (nodes by identity, values by equality).
fn union<'a>(left: Vec<Item<'a>>, right: Vec<Item<'a>>) -> Vec<Item<'a>> {
    let mut seen_nodes: HashSet<*const Value> = HashSet::new();
    let mut out: Vec<Item<'a>> = Vec::with_capacity(left.len() + right.len());
    for item in left.into_iter().chain(right) {
        let duplicate = match &item {
            Item::Node(node) => !seen_nodes.insert(node.value),
            value => out
                .iter()
                .any(|o| !matches!(o, Item::Node(_)) && item_equal(o, value)),
        };
        if !duplicate {
            out.push(item);
        }
    }
    out
}
