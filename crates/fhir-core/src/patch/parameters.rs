//! Reading a FHIRPath Patch: a Parameters resource with one `operation` parameter per
//! operation, whose parts are `type`, `path` and the parts that type takes
//! (http://hl7.org/fhir/R4/fhirpatch.html).

use serde_json::{Map, Value};

use super::PatchError;
use crate::fhirpath::{Expression, choice_type};

/// A FHIRPath Patch: its operations, in order.
#[derive(Debug, Clone)]
pub struct FhirPathPatch {
    pub(super) operations: Vec<Operation>,
}

/// One operation.
#[derive(Debug, Clone)]
pub(super) struct Operation {
    /// The `path` part: where the operation applies.
    pub(super) path: Expression,
    pub(super) kind: Kind,
}

/// An operation's `type`, with the parts that type takes.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    Add { name: String, value: Content },
    Insert { index: usize, value: Content },
    Delete,
    Replace { value: Content },
    Move { source: usize, destination: usize },
}

/// The value an `add`, `insert` or `replace` puts in place.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Content {
    /// A `value[x]`: the FHIR type its suffix names, its JSON (`null` for a primitive that has
    /// only extensions), and for a primitive its `_value[x]` (id and extensions).
    Typed {
        type_name: String,
        json: Value,
        companion: Option<Value>,
    },
    /// A `resource`.
    Resource(Value),
    /// An element given by its children: one part per child, named after it, in order.
    Parts(Vec<(String, Content)>),
}

/// The parts an operation may have.
const PARTS: [&str; 7] = [
    "type",
    "path",
    "name",
    "value",
    "index",
    "source",
    "destination",
];

/// The elements a Parameters resource may have (R4: a Resource, not a DomainResource).
const PARAMETERS_ELEMENTS: [&str; 6] = [
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "parameter",
];

/// A `part` at `at`: its object and its name.
fn named_part<'v>(
    part: &'v Value,
    at: &str,
) -> Result<(&'v Map<String, Value>, &'v str), PatchError> {
    let object = part
        .as_object()
        .ok_or_else(|| invalid(at, "a part must be an object"))?;
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(at, "a part needs a name"))?;
    Ok((object, name))
}

fn invalid(at: impl Into<String>, message: impl Into<String>) -> PatchError {
    PatchError::Invalid {
        at: Some(at.into()),
        message: message.into(),
    }
}

impl FhirPathPatch {
    /// Reads the operations of `parameters`, a Parameters resource as JSON.
    pub fn from_parameters(parameters: &Value) -> Result<Self, PatchError> {
        let Some(object) = parameters
            .as_object()
            .filter(|o| o.get("resourceType").and_then(Value::as_str) == Some("Parameters"))
        else {
            return Err(PatchError::Invalid {
                at: None,
                message: "a FHIRPath Patch is a Parameters resource".into(),
            });
        };
        for key in object.keys() {
            let element = key.strip_prefix('_').unwrap_or(key);
            if !PARAMETERS_ELEMENTS.contains(&element) {
                return Err(invalid(
                    "Parameters",
                    format!("`{key}` is not an element of Parameters"),
                ));
            }
        }
        let parameters = match object.get("parameter") {
            None => &[][..],
            Some(Value::Array(parameters)) => parameters.as_slice(),
            Some(_) => return Err(invalid("Parameters.parameter", "must be a list")),
        };
        let operations = parameters
            .iter()
            .enumerate()
            .map(|(n, parameter)| operation(parameter, &format!("Parameters.parameter[{n}]")))
            .collect::<Result<_, _>>()?;
        Ok(FhirPathPatch { operations })
    }
}

/// Reads one `operation` parameter.
fn operation(parameter: &Value, at: &str) -> Result<Operation, PatchError> {
    let object = parameter
        .as_object()
        .ok_or_else(|| invalid(at, "a parameter must be an object"))?;
    if object.get("name").and_then(Value::as_str) != Some("operation") {
        return Err(invalid(
            at,
            "a FHIRPath Patch has only parameters named `operation`",
        ));
    }
    check_keys(object, at, &["name", "part"])?;
    let Some(Value::Array(list)) = object.get("part") else {
        return Err(invalid(at, "an operation needs its parts"));
    };
    let mut parts = Parts::read(list, at)?;
    let type_part = parts.take("type")?;
    let type_code = primitive(&type_part, "valueCode")?
        .as_str()
        .ok_or_else(|| invalid(&type_part.at, "the type must be a code"))?;
    let path_part = parts.take("path")?;
    let path_text = primitive(&path_part, "valueString")?
        .as_str()
        .ok_or_else(|| invalid(&path_part.at, "the path must be a string"))?;
    let path = Expression::parse(path_text).map_err(|error| {
        invalid(
            &path_part.at,
            format!("the path is not a FHIRPath expression of the supported subset: {error}"),
        )
    })?;
    let kind = match type_code {
        "add" => Kind::Add {
            name: string(&parts.take("name")?)?,
            value: content(&parts.take("value")?)?,
        },
        "insert" => Kind::Insert {
            index: index(&parts.take("index")?)?,
            value: content(&parts.take("value")?)?,
        },
        "delete" => Kind::Delete,
        "replace" => Kind::Replace {
            value: content(&parts.take("value")?)?,
        },
        "move" => Kind::Move {
            source: index(&parts.take("source")?)?,
            destination: index(&parts.take("destination")?)?,
        },
        _ => {
            return Err(invalid(
                &type_part.at,
                "the type must be add, insert, delete, replace or move",
            ));
        }
    };
    // Each type takes its parts and no others.
    if let Some(extra) = parts.found.into_iter().flatten().next() {
        return Err(invalid(
            extra.at,
            "this operation type does not take this part",
        ));
    }
    Ok(Operation { path, kind })
}

/// One part of an operation, and where it is in the Parameters.
struct Part<'p> {
    object: &'p Map<String, Value>,
    at: String,
}

/// The parts of an operation, by name (in the order of [`PARTS`]), until the operation's type
/// takes them.
struct Parts<'p> {
    found: [Option<Part<'p>>; PARTS.len()],
    /// Where the operation is.
    at: &'p str,
}

impl<'p> Parts<'p> {
    /// Reads the parts of the operation at `at`: each a known part, at most once.
    fn read(list: &'p [Value], at: &'p str) -> Result<Self, PatchError> {
        let mut found: [Option<Part<'p>>; PARTS.len()] = Default::default();
        for (n, part) in list.iter().enumerate() {
            let at = format!("{at}.part[{n}]");
            let (object, name) = named_part(part, &at)?;
            let slot = PARTS
                .iter()
                .position(|p| *p == name)
                .ok_or_else(|| invalid(&at, "not a part of a FHIRPath Patch operation"))?;
            if found[slot].is_some() {
                return Err(invalid(&at, format!("a second `{name}` part")));
            }
            found[slot] = Some(Part { object, at });
        }
        Ok(Parts { found, at })
    }

    /// Takes the part `name`, which the operation needs.
    fn take(&mut self, name: &str) -> Result<Part<'p>, PatchError> {
        PARTS
            .iter()
            .position(|p| *p == name)
            .and_then(|slot| self.found[slot].take())
            .ok_or_else(|| invalid(self.at, format!("the `{name}` part is missing")))
    }
}

/// Refuses an object with other properties than `allowed`, `id` and `extension`: a
/// `modifierExtension` (which may change the meaning) is not understood, and anything else is
/// not a FHIRPath Patch.
fn check_keys(object: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), PatchError> {
    for key in object.keys() {
        if key == "modifierExtension" {
            return Err(invalid(at, "modifier extensions are not understood"));
        }
        if !allowed.contains(&key.as_str()) && key != "id" && key != "extension" {
            return Err(invalid(at, format!("unexpected `{key}`")));
        }
    }
    Ok(())
}

/// The one value of a part that must hold `value_key` (`valueString`).
fn primitive<'p>(part: &Part<'p>, value_key: &str) -> Result<&'p Value, PatchError> {
    check_keys(part.object, &part.at, &["name", value_key])?;
    part.object
        .get(value_key)
        .ok_or_else(|| invalid(&part.at, format!("the part needs a {value_key}")))
}

fn string(part: &Part<'_>) -> Result<String, PatchError> {
    primitive(part, "valueString")?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(&part.at, "the value must be a string"))
}

fn index(part: &Part<'_>) -> Result<usize, PatchError> {
    primitive(part, "valueInteger")?
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| invalid(&part.at, "the index must be an integer of 0 or more"))
}

fn content(part: &Part<'_>) -> Result<Content, PatchError> {
    value(part.object, &part.at)
}

/// The value a part holds: a `value[x]` (and its `_value[x]`), a `resource`, or `part`s.
fn value(part: &Map<String, Value>, at: &str) -> Result<Content, PatchError> {
    let mut typed: Option<&str> = None;
    let mut resource = None;
    let mut parts = None;
    for (key, value) in part {
        match key.as_str() {
            "name" | "id" | "extension" => {}
            "resource" => resource = Some(value),
            "part" => parts = Some(value),
            "modifierExtension" => {
                return Err(invalid(at, "modifier extensions are not understood"));
            }
            key => {
                let suffix = key
                    .strip_prefix("_value")
                    .or_else(|| key.strip_prefix("value"))
                    .filter(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
                    .ok_or_else(|| invalid(at, format!("unexpected `{key}`")))?;
                if typed.is_some_and(|t| t != suffix) {
                    return Err(invalid(at, "a part holds one value"));
                }
                typed = Some(suffix);
            }
        }
    }
    match (typed, resource, parts) {
        (Some(suffix), None, None) => typed_content(part, at, suffix),
        (None, Some(resource), None) => {
            if resource
                .get("resourceType")
                .and_then(Value::as_str)
                .is_none()
            {
                return Err(invalid(at, "the resource has no resourceType"));
            }
            Ok(Content::Resource(resource.clone()))
        }
        (None, None, Some(Value::Array(list))) if !list.is_empty() => {
            let mut children = Vec::with_capacity(list.len());
            for (n, child) in list.iter().enumerate() {
                let at = format!("{at}.part[{n}]");
                let (object, name) = named_part(child, &at)?;
                children.push((name.to_owned(), value(object, &at)?));
            }
            Ok(Content::Parts(children))
        }
        (None, None, None) => Err(invalid(at, "the part has no value")),
        _ => Err(invalid(
            at,
            "a value is one of a value[x], a resource or a list of parts",
        )),
    }
}

/// A `value[x]` of type `suffix`: a primitive (JSON string, number or boolean, with or
/// without its `_value[x]`) or a complex value (a JSON object).
fn typed_content(part: &Map<String, Value>, at: &str, suffix: &str) -> Result<Content, PatchError> {
    let type_name = choice_type(suffix);
    let primitive_type = type_name.starts_with(|c: char| c.is_ascii_lowercase());
    let json = part
        .get(&format!("value{suffix}"))
        .cloned()
        .unwrap_or(Value::Null);
    let companion = part.get(&format!("_value{suffix}")).cloned();
    let fits = match &json {
        Value::Object(_) => !primitive_type && companion.is_none(),
        Value::String(_) | Value::Number(_) | Value::Bool(_) => primitive_type,
        Value::Null => primitive_type && companion.is_some(),
        Value::Array(_) => false,
    };
    if !fits || companion.as_ref().is_some_and(|c| !c.is_object()) {
        return Err(invalid(
            at,
            "the value is not a value of the type its name gives",
        ));
    }
    Ok(Content::Typed {
        type_name: type_name.to_owned(),
        json,
        companion,
    })
}
