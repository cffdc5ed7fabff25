//! The walk of a JSON resource against the compiled model, applying the R4 JSON
//! representation rules (http://hl7.org/fhir/R4/json.html) and collecting issues.
//!
//! The input is only borrowed, and the FHIRPath of the current element is a chain of stack
//! frames that becomes a string only when an issue is reported.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::model::{Coded, Element, MAX_ELEMENTS, Schema, Struct, StructId, Target, Variant};
use super::terminology::CodeSet;
use crate::outcome::{Issue, IssueCode};

/// One step of a FHIRPath expression.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    /// The resource type at the start of the expression.
    Root(&'a str),
    /// `.name`
    Field(&'a str),
    /// `.name.ofType(type)`, a choice element.
    Choice(&'a str, &'a str),
    /// `[index]`
    Index(usize),
}

/// The FHIRPath of an element, as a chain up to the root.
#[derive(Debug, Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    step: Step<'a>,
}

impl<'a> Path<'a> {
    fn child<'b>(&'b self, step: Step<'b>) -> Path<'b> {
        Path {
            parent: Some(self),
            step,
        }
    }

    fn render(&self) -> String {
        let mut steps = Vec::new();
        let mut current = Some(self);
        while let Some(path) = current {
            steps.push(path.step);
            current = path.parent;
        }
        let mut out = String::new();
        for step in steps.iter().rev() {
            // Writing to a String cannot fail.
            let _ = match step {
                Step::Root(name) => write!(out, "{name}"),
                Step::Field(name) => write!(out, ".{name}"),
                Step::Choice(name, type_name) => write!(out, ".{name}.ofType({type_name})"),
                Step::Index(index) => write!(out, "[{index}]"),
            };
        }
        out
    }
}

/// Walks one resource and collects its issues.
#[derive(Debug)]
pub(super) struct Walker<'s> {
    schema: &'s Schema,
    pub(super) issues: Vec<Issue>,
}

impl<'s> Walker<'s> {
    pub(super) fn new(schema: &'s Schema) -> Self {
        Walker {
            schema,
            issues: Vec::new(),
        }
    }

    /// Validates a top-level resource.
    pub(super) fn root(&mut self, value: &Value) {
        match value {
            Value::Object(object) => self.resource(object, None),
            _ => self.issues.push(Issue::error(
                IssueCode::Structure,
                "a resource must be a JSON object",
            )),
        }
    }

    fn report(&mut self, path: Option<&Path>, code: IssueCode, diagnostics: impl Into<String>) {
        self.issues.push(match path {
            Some(path) => Issue::at(code, path.render(), diagnostics),
            None => Issue::error(code, diagnostics),
        });
    }

    /// A resource at the top (`at` is `None`) or contained at `at`.
    fn resource(&mut self, object: &Map<String, Value>, at: Option<&Path>) {
        let name = match object.get("resourceType") {
            Some(Value::String(name)) => name,
            Some(_) => {
                return self.report(at, IssueCode::Structure, "resourceType must be a string");
            }
            None => return self.report(at, IssueCode::Required, "resourceType is missing"),
        };
        let schema = self.schema;
        let Some(resource_type) = schema.resource(name) else {
            return self.report(
                at,
                IssueCode::NotSupported,
                "resource type is not supported",
            );
        };
        match at {
            Some(path) => self.object(resource_type.root, object, path),
            None => {
                let root = Path {
                    parent: None,
                    step: Step::Root(&resource_type.name),
                };
                self.object(resource_type.root, object, &root);
            }
        }
    }

    fn object(&mut self, id: StructId, object: &Map<String, Value>, path: &Path) {
        let schema = self.schema;
        let definition = &schema.structs[id];
        if object.is_empty() {
            return self.report(
                Some(path),
                IssueCode::Invalid,
                "element must have a value or children",
            );
        }
        // Per element: 0 = not seen, else 1 + the choice variant seen.
        let mut seen = [0u8; MAX_ELEMENTS];
        let mut unknown = false;
        // Most objects have no `_name` companions; skip looking one up for every primitive.
        let has_companions = object.keys().any(|k| k.starts_with('_'));
        for (key, value) in object {
            if definition.is_resource && key == "resourceType" {
                continue;
            }
            let (name, is_companion) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            let Some((e, v)) = definition.lookup(name) else {
                self.unknown(definition, key, path);
                unknown = true;
                continue;
            };
            let element = &definition.elements[e];
            let variant = &element.variants[v];
            if is_companion && variant.companion_key.is_none() {
                self.unknown(definition, key, path);
                unknown = true;
                continue;
            }
            // `v` < the variant count, which the build keeps within u8.
            let mark = u8::try_from(v + 1).unwrap_or(u8::MAX);
            if seen[e] == mark {
                // The value and its `_` companion are walked together, at the first of them.
                continue;
            }
            if seen[e] != 0 {
                let at = path.child(Step::Field(&element.name));
                self.report(
                    Some(&at),
                    IssueCode::Structure,
                    format!(
                        "only one type of choice element {}[x] may be present",
                        element.name
                    ),
                );
                continue;
            }
            seen[e] = mark;
            let (value, companion) = if is_companion {
                (object.get(&*variant.key), Some(value))
            } else {
                let companion = match &variant.companion_key {
                    Some(key) if has_companions => object.get(&**key),
                    _ => None,
                };
                (Some(value), companion)
            };
            self.element(element, variant, value, companion, path);
        }

        for &e in &definition.required {
            let element = &definition.elements[usize::from(e)];
            if seen[usize::from(e)] == 0 {
                let at = path.child(Step::Field(&element.name));
                self.report(
                    Some(&at),
                    IssueCode::Required,
                    format!("minimum cardinality {} not met", element.min),
                );
            }
        }
        // After an unknown element (often a mistyped `value[x]`) ext-1 would only repeat it.
        if let Some((extension, value)) = definition.extension_rule.filter(|_| !unknown)
            && (seen[usize::from(extension)] != 0) == (seen[usize::from(value)] != 0)
        {
            self.report(
                Some(path),
                IssueCode::Invalid,
                "an extension must have either nested extensions or a value, not both",
            );
        }
    }

    fn unknown(&mut self, definition: &Struct, key: &str, path: &Path) {
        let name = key.strip_prefix('_').unwrap_or(key);
        let choice = definition.elements.iter().find(|e| {
            e.choice
                && name
                    .strip_prefix(&*e.name)
                    .is_some_and(|suffix| suffix.starts_with(|c: char| c.is_ascii_uppercase()))
        });
        let at = path.child(Step::Field(key));
        match choice {
            Some(element) => self.report(
                Some(&at),
                IssueCode::Structure,
                format!("unknown type for choice element {}[x]", element.name),
            ),
            None => self.report(Some(&at), IssueCode::Structure, "unknown element"),
        }
    }

    /// One element: its value and, for primitives, the `_name` companion holding id/extensions.
    fn element(
        &mut self,
        element: &Element,
        variant: &Variant,
        value: Option<&Value>,
        companion: Option<&Value>,
        parent: &Path,
    ) {
        let step = if element.choice {
            Step::Choice(&element.name, &variant.type_name)
        } else {
            Step::Field(&element.name)
        };
        let path = parent.child(step);
        if element.max == 0 {
            return self.report(
                Some(&path),
                IssueCode::Structure,
                "element is not allowed here (maximum cardinality 0)",
            );
        }
        if !element.array {
            match value {
                Some(Value::Array(_)) => self.report(
                    Some(&path),
                    IssueCode::Structure,
                    "expected a single value, not an array",
                ),
                Some(Value::Null) => {
                    self.report(Some(&path), IssueCode::Structure, "null is not allowed")
                }
                Some(value) => self.value(element, variant, value, &path),
                None => {}
            }
            if let Some(companion) = companion {
                self.companion(variant, companion, &path);
            }
            return;
        }

        let as_array = |this: &mut Self, value: Option<&'_ Value>| -> Result<Option<usize>, ()> {
            match value {
                None => Ok(None),
                Some(Value::Array(items)) if items.is_empty() => {
                    this.report(Some(&path), IssueCode::Invalid, "array must not be empty");
                    Err(())
                }
                Some(Value::Array(items)) => Ok(Some(items.len())),
                Some(_) => {
                    this.report(Some(&path), IssueCode::Structure, "expected an array");
                    Err(())
                }
            }
        };
        let (Ok(values_len), Ok(companions_len)) =
            (as_array(self, value), as_array(self, companion))
        else {
            return;
        };
        let len = match (values_len, companions_len) {
            (Some(a), Some(b)) if a != b => {
                return self.report(
                    Some(&path),
                    IssueCode::Structure,
                    "value and extension arrays must have the same length",
                );
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => return,
        };
        if u32::try_from(len).map_or(true, |len| len > element.max) {
            self.report(
                Some(&path),
                IssueCode::Invalid,
                format!("maximum cardinality {} exceeded", element.max),
            );
        }
        if u32::try_from(len).is_ok_and(|len| len < element.min) {
            self.report(
                Some(&path),
                IssueCode::Required,
                format!("minimum cardinality {} not met", element.min),
            );
        }
        for index in 0..len {
            let item = value.and_then(|v| v.get(index)).filter(|v| !v.is_null());
            let item_companion = companion
                .and_then(|v| v.get(index))
                .filter(|v| !v.is_null());
            let at = path.child(Step::Index(index));
            if item.is_none() && item_companion.is_none() {
                self.report(
                    Some(&at),
                    IssueCode::Structure,
                    if variant.companion_key.is_some() {
                        "null is only allowed where the other array has extensions or a value"
                    } else {
                        "null is not allowed"
                    },
                );
                continue;
            }
            if let Some(item) = item {
                self.value(element, variant, item, &at);
            }
            if let Some(item_companion) = item_companion {
                self.companion(variant, item_companion, &at);
            }
        }
    }

    /// The `_name` object of a primitive: `id` and `extension` only, checked against the
    /// primitive's own definition. Its FHIRPath is the primitive's.
    fn companion(&mut self, variant: &Variant, companion: &Value, path: &Path) {
        let Target::Primitive { companion: id, .. } = variant.target else {
            return;
        };
        match companion {
            Value::Object(object) => self.object(id, object, path),
            Value::Null => self.report(Some(path), IssueCode::Structure, "null is not allowed"),
            Value::Array(_) => self.report(
                Some(path),
                IssueCode::Structure,
                "expected a single value, not an array",
            ),
            _ => self.report(Some(path), IssueCode::Structure, "expected an object"),
        }
    }

    /// One non-null value of an element.
    fn value(&mut self, element: &Element, variant: &Variant, value: &Value, path: &Path) {
        match variant.target {
            Target::Primitive { primitive, .. } => match primitive.check(value) {
                Err((code, diagnostics)) => self.report(Some(path), code, diagnostics),
                Ok(Some(text)) => {
                    if let Some(binding) = element.binding {
                        let set = &self.schema.code_sets[binding];
                        if !set.contains_code(text) {
                            self.report(
                                Some(path),
                                IssueCode::CodeInvalid,
                                format!("code is not in the required value set {}", set.url),
                            );
                        }
                    }
                }
                Ok(None) => {}
            },
            Target::Struct(id) => {
                let Value::Object(object) = value else {
                    return self.report(Some(path), IssueCode::Structure, "expected an object");
                };
                self.object(id, object, path);
                if let Some(binding) = element.binding {
                    self.coded(variant.coded, binding, object, path);
                }
            }
            Target::Resource => match value {
                Value::Object(object) => self.resource(object, Some(path)),
                _ => self.report(Some(path), IssueCode::Structure, "expected an object"),
            },
        }
    }

    /// A required binding on a Coding, CodeableConcept or Quantity.
    fn coded(&mut self, coded: Coded, binding: usize, object: &Map<String, Value>, path: &Path) {
        let set = &self.schema.code_sets[binding];
        if !binding_satisfied(coded, set, object) {
            let diagnostics = match coded {
                Coded::CodeableConcept => {
                    format!("no coding is from the required value set {}", set.url)
                }
                _ => format!("code is not in the required value set {}", set.url),
            };
            self.report(Some(path), IssueCode::CodeInvalid, diagnostics);
        }
    }
}

/// Whether a Coding, CodeableConcept or Quantity meets a required binding to `set`.
fn binding_satisfied(coded: Coded, set: &CodeSet, object: &Map<String, Value>) -> bool {
    let in_set = |coding: &Map<String, Value>| {
        let system = coding.get("system").and_then(Value::as_str);
        let code = coding.get("code").and_then(Value::as_str);
        system
            .zip(code)
            .is_some_and(|(system, code)| set.contains(system, code))
    };
    match coded {
        Coded::Coding => in_set(object),
        // At least one coding from the set; text alone does not satisfy a required binding.
        Coded::CodeableConcept => object
            .get("coding")
            .and_then(Value::as_array)
            .is_some_and(|codings| codings.iter().filter_map(Value::as_object).any(in_set)),
        // A Quantity without a coded unit has nothing to check.
        Coded::Quantity => !object.contains_key("code") || in_set(object),
        Coded::Code | Coded::None => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validation::terminology::Expander;

    #[test]
    fn bindings_on_codings_concepts_and_quantities() {
        let value_sets = [
            json!({"url": "http://example.org/vs", "compose": {"include": [
                {"system": "http://example.org/cs", "concept": [{"code": "a"}, {"code": "b"}]}
            ]}}),
        ];
        let set = Expander::new(&value_sets, &[])
            .and_then(|e| e.expand("http://example.org/vs"))
            .expect("expands");
        let check = |coded, value: Value| {
            binding_satisfied(coded, &set, value.as_object().expect("object"))
        };
        let good = json!({"system": "http://example.org/cs", "code": "a"});
        assert!(check(Coded::Coding, good.clone()));
        assert!(!check(
            Coded::Coding,
            json!({"system": "http://other", "code": "a"})
        ));
        assert!(!check(Coded::Coding, json!({"code": "a"})));
        assert!(check(
            Coded::CodeableConcept,
            json!({"coding": [{"system": "http://other", "code": "x"}, good]})
        ));
        assert!(!check(
            Coded::CodeableConcept,
            json!({"coding": [{"system": "http://other", "code": "x"}]})
        ));
        assert!(!check(Coded::CodeableConcept, json!({"text": "a"})));
        assert!(check(Coded::Quantity, json!({"value": 1})));
        assert!(!check(
            Coded::Quantity,
            json!({"value": 1, "system": "http://example.org/cs", "code": "c"})
        ));
    }
}
