//! Applying a FHIRPath Patch to a resource's JSON: each operation's path is evaluated and its
//! elements located ([`crate::fhirpath::locate`]); the element definitions say under which
//! JSON name a value goes (a choice element's type suffix) and whether it is a list.

use serde_json::{Map, Value};

use super::parameters::{Content, FhirPathPatch, Kind, Operation};
use super::{Failure, PatchError};
use crate::fhirpath::{self, Item, Location, Step, is_a};
use crate::validation::types::{Child, ChildKind, Complex, ElementModel, model};

impl FhirPathPatch {
    /// Applies every operation in order, or none.
    pub(super) fn apply(&self, resource: &mut Value) -> Result<(), PatchError> {
        let mut patched = resource.clone();
        for (n, operation) in self.operations.iter().enumerate() {
            operation
                .apply(&mut patched)
                .map_err(|failure| PatchError::NotApplicable {
                    operation: n,
                    path: Some(operation.path.to_string()),
                    failure,
                })?;
        }
        *resource = patched;
        Ok(())
    }
}

impl Operation {
    fn apply(&self, resource: &mut Value) -> Result<(), Failure> {
        let locations = self.locate(resource)?;
        let definitions = || model().ok_or(Failure::Undefined);
        match &self.kind {
            Kind::Delete => match locations.as_slice() {
                [] => Ok(()),
                [location] => delete(resource, location),
                _ => Err(Failure::SeveralMatches),
            },
            Kind::Replace { value } => replace(definitions()?, resource, one(&locations)?, value),
            Kind::Add { name, value } => {
                add(definitions()?, resource, one(&locations)?, name, value)
            }
            Kind::Insert { index, value } => {
                insert(definitions()?, resource, &list(&locations)?, *index, value)
            }
            Kind::Move {
                source,
                destination,
            } => move_item(resource, &list(&locations)?, *source, *destination),
        }
    }

    /// Where the elements the path selects are.
    fn locate(&self, resource: &Value) -> Result<Vec<Location>, Failure> {
        let items = self.path.evaluate(resource).map_err(Failure::Eval)?;
        let values = items
            .iter()
            .map(|item| match item {
                Item::Node(node) => Ok(node.value()),
                _ => Err(Failure::NotAnElement),
            })
            .collect::<Result<Vec<_>, _>>()?;
        fhirpath::locate(resource, &values)
            .into_iter()
            .map(|location| location.ok_or(Failure::NotAnElement))
            .collect()
    }
}

/// The one location of an operation on one element.
fn one(locations: &[Location]) -> Result<&Location, Failure> {
    match locations {
        [] => Err(Failure::NoMatch),
        [location] => Ok(location),
        _ => Err(Failure::SeveralMatches),
    }
}

/// A list: the repeating element `key` of the object at `parent`.
struct List<'l> {
    parent: &'l [Step],
    key: &'l str,
}

/// The list whose items `locations` are.
fn list(locations: &[Location]) -> Result<List<'_>, Failure> {
    let mut found: Option<List<'_>> = None;
    for location in locations {
        let [parent @ .., Step::Key(key), Step::Index(_)] = location.as_slice() else {
            return Err(Failure::NotAList);
        };
        match &found {
            None => found = Some(List { parent, key }),
            Some(list) if list.parent == parent && list.key == key => {}
            Some(_) => return Err(Failure::SeveralLists),
        }
    }
    found.ok_or(Failure::NoMatch)
}

/// Where an element sits: the object holding it, its JSON name there, and its index when it
/// is an item of a list.
struct Place<'l> {
    parent: &'l [Step],
    key: &'l str,
    index: Option<usize>,
}

/// The place of the element at `location`; `None` for the resource itself.
fn place(location: &[Step]) -> Option<Place<'_>> {
    match location {
        [parent @ .., Step::Key(key)] => Some(Place {
            parent,
            key,
            index: None,
        }),
        [parent @ .., Step::Key(key), Step::Index(index)] => Some(Place {
            parent,
            key,
            index: Some(*index),
        }),
        _ => None,
    }
}

fn delete(resource: &mut Value, location: &[Step]) -> Result<(), Failure> {
    let place = place(location).ok_or(Failure::WholeResource)?;
    let object = object_at(resource, place.parent)?;
    match place.index {
        Some(index) => {
            remove_item(object, place.key, index)?;
        }
        None => remove_element(object, place.key),
    }
    prune(resource, place.parent);
    Ok(())
}

fn replace(
    model: ElementModel,
    resource: &mut Value,
    location: &[Step],
    content: &Content,
) -> Result<(), Failure> {
    let place = place(location).ok_or(Failure::WholeResource)?;
    let parent = definition(model, resource, place.parent)?;
    let element = Element::of_key(model, parent, place.key).ok_or(Failure::Undefined)?;
    let (child, value) = element.value(model, content)?;
    let object = object_at(resource, place.parent)?;
    match place.index {
        Some(index) if child.key == place.key => {
            remove_item(object, place.key, index)?;
            insert_item(object, place.key, index, value)
        }
        // A list holds values of one type.
        Some(_) => Err(Failure::WrongType),
        None => {
            // In the element's place, under the name of the new value's type.
            let position = object.keys().position(|k| k == place.key);
            remove_element(object, place.key);
            let position = position.unwrap_or(object.len()).min(object.len());
            let (json, companion) = value;
            if let Some(companion) = companion {
                object.shift_insert(position, format!("_{}", child.key), companion);
            }
            if !json.is_null() {
                object.shift_insert(position, child.key.to_owned(), json);
            }
            Ok(())
        }
    }
}

fn add(
    model: ElementModel,
    resource: &mut Value,
    location: &[Step],
    name: &str,
    content: &Content,
) -> Result<(), Failure> {
    if !value_at(resource, location).is_some_and(Value::is_object) {
        return Err(Failure::Primitive);
    }
    let target = definition(model, resource, location)?;
    let element = Element::of_name(model, target, name).ok_or(Failure::UnknownElement)?;
    let (child, value) = element.value(model, content)?;
    element.put(object_at(resource, location)?, child, value)
}

fn insert(
    model: ElementModel,
    resource: &mut Value,
    list: &List<'_>,
    index: usize,
    content: &Content,
) -> Result<(), Failure> {
    let parent = definition(model, resource, list.parent)?;
    let element = Element::of_key(model, parent, list.key).ok_or(Failure::Undefined)?;
    let (child, value) = element.value(model, content)?;
    if child.key != list.key {
        return Err(Failure::WrongType);
    }
    insert_item(object_at(resource, list.parent)?, list.key, index, value)
}

fn move_item(
    resource: &mut Value,
    list: &List<'_>,
    source: usize,
    destination: usize,
) -> Result<(), Failure> {
    let object = object_at(resource, list.parent)?;
    let len = object
        .get(list.key)
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if source >= len || destination >= len {
        return Err(Failure::IndexOutOfRange);
    }
    let item = remove_item(object, list.key, source)?;
    insert_item(object, list.key, destination, item)
}

/// A value as it goes into a resource: its JSON (`null` when it has only extensions) and,
/// for a primitive, its `_name` companion.
type Json = (Value, Option<Value>);

/// An element of a complex type, as the definitions give it: one JSON name per type.
struct Element {
    /// One per type; a choice element has several (`deceasedBoolean`, `deceasedDateTime`).
    types: Vec<Child>,
    repeats: bool,
}

impl Element {
    /// The element called `name` (`deceased`) of `parent`.
    fn of_name(model: ElementModel, parent: Complex, name: &str) -> Option<Element> {
        let types: Vec<Child> = model.children(parent, name).collect();
        let repeats = types.first()?.repeats;
        Some(Element { types, repeats })
    }

    /// The element JSON name `key` (`deceasedBoolean`) of `parent` stands for.
    fn of_key(model: ElementModel, parent: Complex, key: &str) -> Option<Element> {
        Element::of_name(model, parent, model.property(parent, key)?.name)
    }

    /// Which of the element's types `content` is, and its JSON as a value of that type.
    fn value(&self, model: ElementModel, content: &Content) -> Result<(Child, Json), Failure> {
        let child = self.type_of(content)?;
        let json = match content {
            Content::Typed {
                json, companion, ..
            } => (json.clone(), companion.clone()),
            Content::Resource(resource) => (resource.clone(), None),
            Content::Parts(parts) => {
                let ChildKind::Complex(complex) = child.kind else {
                    return Err(Failure::WrongType);
                };
                let mut object = Map::new();
                for (name, content) in parts {
                    let element =
                        Element::of_name(model, complex, name).ok_or(Failure::UnknownElement)?;
                    let (child, value) = element.value(model, content)?;
                    element.put(&mut object, child, value)?;
                }
                (Value::Object(object), None)
            }
        };
        Ok((child, json))
    }

    /// The type of the element `content` is a value of: the type it names, else the one type
    /// it fits (a primitive fits any primitive type, its format being validated with the
    /// result; a complex value fits its type and the types it specialises).
    fn type_of(&self, content: &Content) -> Result<Child, Failure> {
        if let Content::Typed { type_name, .. } = content
            && let Some(exact) = self.types.iter().find(|t| t.type_name == type_name)
        {
            return Ok(*exact);
        }
        let fits = |child: &&Child| match (content, child.kind) {
            (Content::Typed { json, .. }, ChildKind::Primitive) => !json.is_object(),
            (
                Content::Typed {
                    type_name, json, ..
                },
                ChildKind::Complex(_),
            ) => json.is_object() && is_a(type_name, child.type_name),
            (Content::Resource(_), ChildKind::Resource)
            | (Content::Parts(_), ChildKind::Complex(_)) => true,
            _ => false,
        };
        let mut fitting = self.types.iter().filter(fits);
        match (fitting.next(), fitting.next()) {
            (Some(child), None) => Ok(*child),
            _ => Err(Failure::WrongType),
        }
    }

    /// Puts a value of this element, of type `child`, into `object`: appended to the list
    /// when the element repeats, else set when the element has no value yet.
    fn put(
        &self,
        object: &mut Map<String, Value>,
        child: Child,
        value: Json,
    ) -> Result<(), Failure> {
        if self.repeats {
            let len = object
                .get(child.key)
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            return insert_item(object, child.key, len, value);
        }
        let present = self
            .types
            .iter()
            .any(|t| object.contains_key(t.key) || object.contains_key(&format!("_{}", t.key)));
        if present {
            return Err(Failure::AlreadyPresent);
        }
        let (json, companion) = value;
        if !json.is_null() {
            object.insert(child.key.to_owned(), json);
        }
        if let Some(companion) = companion {
            object.insert(format!("_{}", child.key), companion);
        }
        Ok(())
    }
}

/// The definition of the complex value at `location` of `resource`: the resource type's,
/// then at each step the type of the element it enters (a contained resource by its own
/// `resourceType`).
fn definition(
    model: ElementModel,
    resource: &Value,
    location: &[Step],
) -> Result<Complex, Failure> {
    let resource_type = |value: &Value| {
        value
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(|name| model.resource(name))
            .ok_or(Failure::Undefined)
    };
    let mut value = resource;
    let mut complex = resource_type(value)?;
    // A resource element's type is known once its item is reached.
    let mut resource_pending = false;
    for step in location {
        match step {
            Step::Key(key) => {
                value = value.get(key).ok_or(Failure::NotAnElement)?;
                match model.property(complex, key).ok_or(Failure::Undefined)?.kind {
                    ChildKind::Complex(child) => complex = child,
                    ChildKind::Resource => resource_pending = true,
                    ChildKind::Primitive => return Err(Failure::Primitive),
                }
            }
            Step::Index(index) => value = value.get(index).ok_or(Failure::NotAnElement)?,
        }
        if resource_pending && value.is_object() {
            complex = resource_type(value)?;
            resource_pending = false;
        }
    }
    Ok(complex)
}

fn value_at<'v>(value: &'v Value, location: &[Step]) -> Option<&'v Value> {
    location.iter().try_fold(value, |value, step| match step {
        Step::Key(key) => value.get(key),
        Step::Index(index) => value.get(index),
    })
}

/// The object at `location`.
fn object_at<'v>(
    value: &'v mut Value,
    location: &[Step],
) -> Result<&'v mut Map<String, Value>, Failure> {
    location
        .iter()
        .try_fold(value, |value, step| match step {
            Step::Key(key) => value.get_mut(key),
            Step::Index(index) => value.get_mut(index),
        })
        .and_then(Value::as_object_mut)
        .ok_or(Failure::NotAnElement)
}

/// The name of the companion that holds a primitive's id and extensions.
fn companion_key(key: &str) -> String {
    format!("_{key}")
}

/// Removes a non-repeating element with its companion.
fn remove_element(object: &mut Map<String, Value>, key: &str) {
    object.shift_remove(key);
    object.shift_remove(&companion_key(key));
}

/// Inserts an item into the list `key` of `object` (created when absent) at `index`, its
/// companion at the same index of the companion list.
fn insert_item(
    object: &mut Map<String, Value>,
    key: &str,
    index: usize,
    (json, companion): Json,
) -> Result<(), Failure> {
    let items = object
        .entry(key)
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or(Failure::NotAList)?;
    if index > items.len() {
        return Err(Failure::IndexOutOfRange);
    }
    let len = items.len();
    items.insert(index, json);
    let companion_key = companion_key(key);
    if companion.is_some() || object.contains_key(&companion_key) {
        let companions = object
            .entry(companion_key)
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or(Failure::NotAList)?;
        companions.resize(len, Value::Null);
        companions.insert(index, companion.unwrap_or(Value::Null));
    }
    tidy(object, key);
    Ok(())
}

/// Takes item `index` out of the list `key` of `object`, with its companion.
fn remove_item(object: &mut Map<String, Value>, key: &str, index: usize) -> Result<Json, Failure> {
    let items = object
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .ok_or(Failure::NotAList)?;
    if index >= items.len() {
        return Err(Failure::IndexOutOfRange);
    }
    let json = items.remove(index);
    let companion = object
        .get_mut(&companion_key(key))
        .and_then(Value::as_array_mut)
        .filter(|companions| index < companions.len())
        .map(|companions| companions.remove(index))
        .filter(|companion| !companion.is_null());
    tidy(object, key);
    Ok((json, companion))
}

/// Drops what an edit of the list `key` left without content: the list when it has no items,
/// the companion list when it holds no companion.
fn tidy(object: &mut Map<String, Value>, key: &str) {
    let companion_key = companion_key(key);
    if object
        .get(&companion_key)
        .and_then(Value::as_array)
        .is_some_and(|companions| companions.iter().all(Value::is_null))
    {
        object.shift_remove(&companion_key);
    }
    if object
        .get(key)
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        remove_element(object, key);
    }
}

/// Removes the elements a delete left empty, from the object at `location` up: FHIR has no
/// empty elements (ele-1).
fn prune(resource: &mut Value, mut location: &[Step]) {
    while value_at(resource, location).is_some_and(|v| v.as_object().is_some_and(Map::is_empty)) {
        let Some(place) = place(location) else {
            return;
        };
        let Ok(object) = object_at(resource, place.parent) else {
            return;
        };
        match place.index {
            Some(index) => {
                // The item is there: it was just found empty.
                let _ = remove_item(object, place.key, index);
            }
            None => remove_element(object, place.key),
        }
        location = place.parent;
    }
}
