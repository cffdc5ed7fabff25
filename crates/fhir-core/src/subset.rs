//! Result subsetting for `_summary` and `_elements`
//! (<http://hl7.org/fhir/R4/search.html#summary>, <http://hl7.org/fhir/R4/search.html#elements>):
//! [`subset`] turns one stored resource into what a read or search asking for a subset returns.
//!
//! The rules, for a resource of a type whose StructureDefinition is embedded (see
//! [`crate::validation`]); `resourceType`, `id` and `meta` are always kept whole:
//!
//! - `_summary=true`: the top-level elements marked `isSummary` in the base R4 definition of
//!   the type. Inside what is kept, the rule applies again to every child, by the child's own
//!   definition: the children of a HumanName, Identifier or Reference are all summary, but a
//!   backbone element keeps only its summary children, and `extension` and `id` are not
//!   summary anywhere (`Element.extension`, `Element.id`), so extensions are left out,
//!   primitive ones (`_birthDate`) included. `modifierExtension` is summary only inside
//!   backbone elements, where it is kept whole. A complex value left empty is dropped.
//! - `_summary=text`: `text` and the mandatory (`min >= 1`) top-level elements.
//! - `_summary=data`: everything but `text` (this needs no definition, any type works).
//! - `_summary=false`: the resource unchanged.
//! - `_summary=count`: not a per-resource subset (a search returns no entries at all); the
//!   resource is returned unchanged.
//! - `_elements=a,b`: the named top-level elements and, as R4 says servers SHOULD, the
//!   mandatory ones. A choice element is named by its base name (`deceased` keeps
//!   `deceasedBoolean` or `deceasedDateTime`); a type-qualified name (`Patient.name`) counts
//!   only for resources of that type; names that are not elements of the type are ignored.
//!
//! A primitive's `_name` companion (its id and extensions) goes wherever the primitive goes,
//! except under `_summary=true`, which leaves extensions out. JSON property order is kept.
//!
//! When something was left out, `meta.tag` gets the SUBSETTED coding (once: not again when
//! already there), so the result is not mistaken for the full resource. A resource of a type
//! without an embedded definition, or that is not a JSON object, is returned unchanged for
//! everything but `_summary=data`.

use serde_json::{Map, Value, json};

use crate::search::query::Summary;
use crate::validation::types::{ChildKind, Complex, ElementModel, Property, model};

/// The system of the [`SUBSETTED_CODE`] tag.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// The `meta.tag` code marking a resource as incomplete.
pub const SUBSETTED_CODE: &str = "SUBSETTED";

/// What a search or read asks to keep of each resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subset<'a> {
    /// `_summary`.
    Summary(Summary),
    /// `_elements`: element names as in the request (`name`, `Patient.birthDate`).
    Elements(&'a [String]),
}

/// The subset of `resource` that `subset` asks for, with the SUBSETTED tag added to
/// `meta.tag` when something was left out; see the module documentation for the rules.
pub fn subset(resource: &Value, subset: Subset<'_>) -> Value {
    let Some(object) = resource.as_object() else {
        return resource.clone();
    };
    let kept = match subset {
        Subset::Summary(Summary::False | Summary::Count) => None,
        Subset::Summary(Summary::Data) => {
            let mut kept = object.clone();
            kept.shift_remove("text");
            Some(kept)
        }
        Subset::Summary(Summary::True) => top_level(object, |_, property| {
            property.summary.then_some(Keep::Summary)
        }),
        Subset::Summary(Summary::Text) => top_level(object, |_, property| {
            (property.name == "text" || property.mandatory).then_some(Keep::Whole)
        }),
        Subset::Elements(names) => top_level(object, |type_name, property| {
            let named = names.iter().any(|name| {
                let name = match name.split_once('.') {
                    Some((qualifier, name)) if qualifier == type_name => name,
                    Some(_) => return false,
                    None => name,
                };
                name == property.name
            });
            (named || property.mandatory).then_some(Keep::Whole)
        }),
    };
    match kept {
        Some(mut kept) if kept != *object => {
            tag_subsetted(&mut kept);
            Value::Object(kept)
        }
        _ => resource.clone(),
    }
}

/// How a top-level element is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// As it is, with its `_name` companion.
    Whole,
    /// Filtered by the summary rule, without its companion.
    Summary,
}

/// The top-level properties of `object` that `rule` keeps, given the resource type and the
/// element a property stands for; `None` when the type has no embedded definition.
fn top_level(
    object: &Map<String, Value>,
    rule: impl Fn(&str, &Property) -> Option<Keep>,
) -> Option<Map<String, Value>> {
    let model = model()?;
    let type_name = object.get("resourceType")?.as_str()?;
    let root = model.resource(type_name)?;
    let mut kept = Map::new();
    for (key, value) in object {
        if key == "resourceType" {
            kept.insert(key.clone(), value.clone());
            continue;
        }
        let (companion, element_key) = match key.strip_prefix('_') {
            Some(element_key) => (true, element_key),
            None => (false, key.as_str()),
        };
        let Some(property) = model.property(root, element_key) else {
            continue;
        };
        let keep = if matches!(property.name, "id" | "meta") {
            Some(Keep::Whole)
        } else {
            rule(type_name, &property)
        };
        let value = match keep {
            Some(Keep::Whole) => Some(value.clone()),
            Some(Keep::Summary) if !companion => summary(model, property.kind, value),
            Some(Keep::Summary) | None => None,
        };
        if let Some(value) = value {
            kept.insert(key.clone(), value);
        }
    }
    Some(kept)
}

/// The summary of a value of kind `kind`: `None` when nothing of it is left.
fn summary(model: ElementModel, kind: ChildKind, value: &Value) -> Option<Value> {
    match (kind, value) {
        (_, Value::Null) => None,
        (_, Value::Array(items)) => {
            // Nulls stand in for values that only have extensions, which go.
            let items: Vec<Value> = items
                .iter()
                .filter_map(|item| summary(model, kind, item))
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        (ChildKind::Complex(complex), Value::Object(object)) => {
            let kept = summary_object(model, complex, object);
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        _ => Some(value.clone()),
    }
}

/// The summary children of a complex value; `_name` companions hold only extensions and ids,
/// which are not summary.
fn summary_object(
    model: ElementModel,
    complex: Complex,
    object: &Map<String, Value>,
) -> Map<String, Value> {
    object
        .iter()
        .filter_map(|(key, value)| {
            let property = model.property(complex, key)?;
            if !property.summary {
                return None;
            }
            let value = if property.type_name == "Extension" {
                // A summary modifierExtension: its url and value are not summary, but an
                // extension means nothing without them.
                value.clone()
            } else {
                summary(model, property.kind, value)?
            };
            Some((key.clone(), value))
        })
        .collect()
}

/// Adds the SUBSETTED coding to `meta.tag` unless it is there; creates `meta` (after `id`, as
/// FHIR JSON writes it) when absent. A `meta` or `tag` that is not an object or array is left
/// alone.
fn tag_subsetted(resource: &mut Map<String, Value>) {
    let coding = json!({
        "system": SUBSETTED_SYSTEM,
        "code": SUBSETTED_CODE,
        "display": "subsetted",
    });
    match resource.get_mut("meta") {
        Some(Value::Object(meta)) => match meta.get_mut("tag") {
            Some(Value::Array(tags)) => {
                let tagged = tags
                    .iter()
                    .any(|t| t["system"] == SUBSETTED_SYSTEM && t["code"] == SUBSETTED_CODE);
                if !tagged {
                    tags.push(coding);
                }
            }
            Some(_) => {}
            None => {
                meta.insert("tag".to_string(), Value::Array(vec![coding]));
            }
        },
        Some(_) => {}
        None => {
            let index = resource
                .keys()
                .rposition(|key| key == "resourceType" || key == "id")
                .map_or(0, |i| i + 1);
            resource.shift_insert(index, "meta".to_string(), json!({ "tag": [coding] }));
        }
    }
}

#[cfg(test)]
mod tests;
