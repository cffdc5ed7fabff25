//! The compiled element model: every embedded StructureDefinition snapshot turned, once, into
//! structs of elements keyed by JSON property name, with cardinalities, resolved types and
//! expanded required bindings.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::Value;

use super::embedded::{CODE_SYSTEMS, STRUCTURE_DEFINITIONS, VALUE_SETS};
use super::primitive::Primitive;
use super::terminology::{CodeSet, Expander};

/// Index into [`Schema::structs`].
pub(super) type StructId = usize;

/// The walker keeps per-object state in fixed arrays of this size; the build refuses a struct
/// with more elements (the largest R4 one in scope has about 30).
pub(super) const MAX_ELEMENTS: usize = 64;

/// Everything the walker needs, built from the embedded definitions.
#[derive(Debug)]
pub(super) struct Schema {
    pub(super) structs: Vec<Struct>,
    /// Concrete (non-abstract) resource types by name.
    resources: HashMap<Box<str>, ResourceType, BuildHasherDefault<Fnv>>,
    pub(super) code_sets: Vec<CodeSet>,
}

impl Schema {
    /// The concrete resource type named `name`, if one is embedded.
    pub(super) fn resource(&self, name: &str) -> Option<&ResourceType> {
        self.resources.get(name)
    }

    /// Names of the concrete resource types, sorted.
    pub(super) fn resource_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.resources.keys().map(|n| &**n).collect();
        names.sort_unstable();
        names
    }
}

/// A concrete resource type.
#[derive(Debug)]
pub(super) struct ResourceType {
    pub(super) name: Box<str>,
    pub(super) root: StructId,
}

/// The children of one complex type, backbone element or primitive-extension companion.
#[derive(Debug, Default)]
pub(super) struct Struct {
    pub(super) elements: Vec<Element>,
    /// JSON property name (`family`, `deceasedBoolean`) → (element, variant).
    keys: HashMap<Box<str>, (u8, u8), BuildHasherDefault<Fnv>>,
    /// Elements with `min > 0`.
    pub(super) required: Vec<u8>,
    /// The root of a resource: `resourceType` is allowed.
    pub(super) is_resource: bool,
    /// For Extension: the `extension` and `value[x]` elements, exactly one of which must be
    /// present (invariant ext-1).
    pub(super) extension_rule: Option<(u8, u8)>,
}

impl Struct {
    /// The element and variant a JSON property name (without `_`) stands for.
    pub(super) fn lookup(&self, key: &str) -> Option<(usize, usize)> {
        self.keys
            .get(key)
            .map(|&(e, v)| (usize::from(e), usize::from(v)))
    }
}

/// One element definition.
#[derive(Debug)]
pub(super) struct Element {
    /// FHIRPath name, `[x]` removed.
    pub(super) name: Box<str>,
    pub(super) min: u32,
    /// `u32::MAX` for `*`.
    pub(super) max: u32,
    /// JSON array representation (the base definition allows more than one).
    pub(super) array: bool,
    /// A `[x]` element: one variant per type, each with its own JSON name.
    pub(super) choice: bool,
    /// `ElementDefinition.isSummary`: kept by `_summary=true`.
    pub(super) summary: bool,
    pub(super) variants: Vec<Variant>,
    /// Index into [`Schema::code_sets`] of a required binding.
    pub(super) binding: Option<usize>,
}

/// One type an element may take.
#[derive(Debug)]
pub(super) struct Variant {
    /// The FHIR type code, for `ofType()` in expressions.
    pub(super) type_name: Box<str>,
    /// JSON property name.
    pub(super) key: Box<str>,
    /// `_key`, when the element is a primitive that may carry an id and extensions.
    pub(super) companion_key: Option<Box<str>>,
    pub(super) target: Target,
    /// How a required binding applies to this type.
    pub(super) coded: Coded,
}

/// What a value of a variant is checked against.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// A primitive; `companion` is the struct (`id`, `extension`) of its `_key` object.
    Primitive {
        primitive: Primitive,
        companion: StructId,
    },
    /// A complex type or backbone element.
    Struct(StructId),
    /// Any resource (`contained`), checked by its own `resourceType`.
    Resource,
}

/// Which part of a value a required binding constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coded {
    /// The primitive string itself.
    Code,
    Coding,
    CodeableConcept,
    Quantity,
    /// Bindings do not apply (no binding, or a type that carries no code).
    None,
}

/// FNV-1a: the key tables are tiny and fixed at build time (inputs only look keys up, so there
/// is nothing to flood), and this is several times faster than SipHash on short names.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

const SYSTEM_TYPE_PREFIX: &str = "http://hl7.org/fhirpath/System.";
const FHIR_TYPE_EXT: &str = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";
const SD_PREFIX: &str = "http://hl7.org/fhir/StructureDefinition/";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Primitive(Primitive),
    Complex,
    Resource,
}

struct TypeInfo {
    kind: Kind,
    root: StructId,
}

/// Builds the schema from the embedded files.
pub(super) fn build() -> Result<Schema, String> {
    let parse = |texts: &[&str]| {
        texts
            .iter()
            .map(|text| {
                serde_json::from_str::<Value>(text).map_err(|e| format!("embedded definition: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let sds = parse(STRUCTURE_DEFINITIONS)?;
    let value_sets = parse(VALUE_SETS)?;
    let code_systems = parse(CODE_SYSTEMS)?;
    let mut builder = Builder {
        types: HashMap::new(),
        structs: Vec::new(),
        expander: Expander::new(&value_sets, &code_systems)?,
        code_sets: Vec::new(),
        code_set_ids: HashMap::new(),
    };

    for sd in &sds {
        let id = str_at(sd, "id")?;
        let kind = match str_at(sd, "kind")? {
            "primitive-type" => Kind::Primitive(
                Primitive::from_name(id).ok_or_else(|| format!("unknown primitive type {id}"))?,
            ),
            "complex-type" => Kind::Complex,
            "resource" => Kind::Resource,
            other => return Err(format!("{id}: unexpected kind {other}")),
        };
        builder.structs.push(Struct::default());
        let root = builder.structs.len() - 1;
        builder.types.insert(id, TypeInfo { kind, root });
    }

    let mut resources = HashMap::default();
    for sd in &sds {
        let id = str_at(sd, "id")?;
        let info = &builder.types[id];
        let (kind, root) = (info.kind, info.root);
        builder.structure_definition(sd, kind, root)?;
        let is_abstract = sd["abstract"].as_bool().unwrap_or(false);
        if kind == Kind::Resource && !is_abstract {
            resources.insert(
                id.into(),
                ResourceType {
                    name: id.into(),
                    root,
                },
            );
        }
    }

    Ok(Schema {
        structs: builder.structs,
        resources,
        code_sets: builder.code_sets,
    })
}

fn str_at<'v>(value: &'v Value, key: &str) -> Result<&'v str, String> {
    value[key]
        .as_str()
        .ok_or_else(|| format!("definition without a string {key}"))
}

struct Builder<'v> {
    types: HashMap<&'v str, TypeInfo>,
    structs: Vec<Struct>,
    expander: Expander<'v>,
    code_sets: Vec<CodeSet>,
    code_set_ids: HashMap<String, usize>,
}

impl<'v> Builder<'v> {
    /// Fills the struct `root` (and one struct per backbone element) from a snapshot.
    fn structure_definition(
        &mut self,
        sd: &'v Value,
        kind: Kind,
        root: StructId,
    ) -> Result<(), String> {
        let id = str_at(sd, "id")?;
        let elements = sd["snapshot"]["element"]
            .as_array()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| format!("{id}: no snapshot"))?;
        let root_path = str_at(&elements[0], "path")?;
        // Elements with children in the snapshot are backbone elements, defined inline.
        let parents: HashSet<&str> = elements
            .iter()
            .filter_map(|e| {
                e["path"]
                    .as_str()?
                    .rsplit_once('.')
                    .map(|(parent, _)| parent)
            })
            .collect();
        let mut struct_of_path: HashMap<&str, StructId> = HashMap::from([(root_path, root)]);
        let mut content_references = Vec::new();

        for definition in &elements[1..] {
            if definition.get("sliceName").is_some() {
                continue;
            }
            let path = str_at(definition, "path")?;
            let (parent_path, last) = path
                .rsplit_once('.')
                .ok_or_else(|| format!("{id}: element path {path} has no parent"))?;
            if matches!(kind, Kind::Primitive(_)) && parent_path == root_path && last == "value" {
                // The value is the JSON primitive itself; the struct is for `_name` objects.
                continue;
            }
            let parent = *struct_of_path
                .get(parent_path)
                .ok_or_else(|| format!("{id}: {path} comes before its parent"))?;
            let (name, choice) = match last.strip_suffix("[x]") {
                Some(name) => (name, true),
                None => (last, false),
            };
            let is_resource_id = kind == Kind::Resource && parent_path == root_path && name == "id";

            let mut variants = Vec::new();
            if parents.contains(path) {
                self.structs.push(Struct::default());
                let inline = self.structs.len() - 1;
                struct_of_path.insert(path, inline);
                let type_name = definition["type"][0]["code"]
                    .as_str()
                    .unwrap_or("BackboneElement");
                variants.push(Variant {
                    type_name: type_name.into(),
                    key: name.into(),
                    companion_key: None,
                    target: Target::Struct(inline),
                    coded: Coded::None,
                });
            } else if let Some(reference) = definition["contentReference"].as_str() {
                let target_path = reference
                    .strip_prefix('#')
                    .ok_or_else(|| format!("{id}: unsupported contentReference {reference}"))?;
                content_references.push((parent, self.structs[parent].elements.len(), target_path));
                variants.push(Variant {
                    type_name: "BackboneElement".into(),
                    key: name.into(),
                    companion_key: None,
                    // Patched below, once every path of this definition has its struct.
                    target: Target::Resource,
                    coded: Coded::None,
                });
            } else {
                let types = definition["type"]
                    .as_array()
                    .ok_or_else(|| format!("{id}: {path} has no type"))?;
                for t in types {
                    variants.push(self.variant(id, t, name, choice, is_resource_id, definition)?);
                }
            }

            let binding = &definition["binding"];
            let binding = match (binding["strength"].as_str(), binding["valueSet"].as_str()) {
                (Some("required"), Some(url)) => Some(self.code_set(url)?),
                _ => None,
            };
            let element = Element {
                name: name.into(),
                min: cardinality(&definition["min"]).ok_or_else(|| format!("{id}: {path} min"))?,
                max: cardinality(&definition["max"]).ok_or_else(|| format!("{id}: {path} max"))?,
                array: !matches!(
                    definition["base"]["max"]
                        .as_str()
                        .or(definition["max"].as_str()),
                    Some("0" | "1")
                ),
                choice,
                summary: definition["isSummary"].as_bool().unwrap_or(false),
                variants,
                binding,
            };
            self.push_element(id, parent, element)?;
        }

        for (parent, index, target_path) in content_references {
            let target = *struct_of_path
                .get(target_path)
                .ok_or_else(|| format!("{id}: contentReference to unknown {target_path}"))?;
            for variant in &mut self.structs[parent].elements[index].variants {
                variant.target = Target::Struct(target);
            }
        }

        let root_struct = &mut self.structs[root];
        root_struct.is_resource = kind == Kind::Resource;
        if id == "Extension" {
            let extension = root_struct.lookup("extension");
            let value = root_struct
                .elements
                .iter()
                .position(|e| &*e.name == "value");
            if let (Some((extension, _)), Some(value)) = (extension, value) {
                root_struct.extension_rule = Some((small(extension), small(value)));
            }
        }
        Ok(())
    }

    fn variant(
        &self,
        id: &str,
        t: &Value,
        name: &str,
        choice: bool,
        is_resource_id: bool,
        definition: &Value,
    ) -> Result<Variant, String> {
        let code = str_at(t, "code")?;
        let key: Box<str> = if choice {
            let mut chars = code.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            format!(
                "{name}{}{}",
                first.map(String::from).unwrap_or_default(),
                chars.as_str()
            )
            .into()
        } else {
            name.into()
        };
        // Element ids and Extension.url are XML attributes: they cannot carry extensions.
        let attribute = definition["representation"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "xmlAttr"));

        let (type_name, target) = if code.starts_with(SYSTEM_TYPE_PREFIX) {
            // System.String with the FHIR primitive named in an extension. R4 declares
            // Resource.id as `string` there, but resource.html defines it as `id`.
            let fhir_type = t["extension"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["url"] == FHIR_TYPE_EXT)
                .and_then(|x| x["valueUrl"].as_str())
                .unwrap_or("string");
            let fhir_type = if is_resource_id { "id" } else { fhir_type };
            (fhir_type, self.type_target(id, fhir_type, None)?)
        } else {
            let profile = t["profile"]
                .as_array()
                .filter(|p| p.len() == 1)
                .and_then(|p| p[0].as_str()?.strip_prefix(SD_PREFIX));
            (code, self.type_target(id, code, profile)?)
        };
        let companion_key = match target {
            Target::Primitive { .. } if !attribute => Some(format!("_{key}").into()),
            _ => None,
        };
        let coded = match (target, type_name) {
            (Target::Primitive { .. }, _) => Coded::Code,
            (_, "Coding") => Coded::Coding,
            (_, "CodeableConcept") => Coded::CodeableConcept,
            (_, "Quantity") => Coded::Quantity,
            _ => Coded::None,
        };
        Ok(Variant {
            type_name: type_name.into(),
            key,
            companion_key,
            target,
            coded,
        })
    }

    /// The target for type `code`, or for its `profile` when that is embedded
    /// (e.g. Quantity profiled as SimpleQuantity).
    fn type_target(&self, id: &str, code: &str, profile: Option<&str>) -> Result<Target, String> {
        let info = profile
            .and_then(|p| self.types.get(p))
            .or_else(|| self.types.get(code))
            .ok_or_else(|| format!("{id}: type {code} is not embedded"))?;
        Ok(match info.kind {
            Kind::Primitive(primitive) => Target::Primitive {
                primitive,
                companion: info.root,
            },
            Kind::Complex => Target::Struct(info.root),
            Kind::Resource => Target::Resource,
        })
    }

    fn push_element(&mut self, id: &str, parent: StructId, element: Element) -> Result<(), String> {
        let target = &mut self.structs[parent];
        let index = target.elements.len();
        if index >= MAX_ELEMENTS {
            return Err(format!(
                "{id}: more than {MAX_ELEMENTS} elements in one struct"
            ));
        }
        for (v, variant) in element.variants.iter().enumerate() {
            let v =
                u8::try_from(v).map_err(|_| format!("{id}: too many types on {}", element.name))?;
            if target
                .keys
                .insert(variant.key.clone(), (small(index), v))
                .is_some()
            {
                return Err(format!("{id}: duplicate JSON name {}", variant.key));
            }
        }
        if element.min > 0 {
            target.required.push(small(index));
        }
        target.elements.push(element);
        Ok(())
    }

    fn code_set(&mut self, url: &str) -> Result<usize, String> {
        let url = url.split('|').next().unwrap_or(url);
        if let Some(&index) = self.code_set_ids.get(url) {
            return Ok(index);
        }
        self.code_sets.push(self.expander.expand(url)?);
        let index = self.code_sets.len() - 1;
        self.code_set_ids.insert(url.to_string(), index);
        Ok(index)
    }
}

/// An element index known to be below [`MAX_ELEMENTS`] (checked in `push_element`).
fn small(index: usize) -> u8 {
    u8::try_from(index).unwrap_or(u8::MAX)
}

/// `min` (a number) or `max` (a string, `*` for unbounded).
fn cardinality(value: &Value) -> Option<u32> {
    match value {
        Value::Number(n) => u32::try_from(n.as_u64()?).ok(),
        Value::String(s) if s == "*" => Some(u32::MAX),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_every_embedded_definition() {
        let schema = build().expect("schema builds");
        assert_eq!(
            schema.resource_names(),
            [
                "Account",
                "Group",
                "Invoice",
                "Organization",
                "Patient",
                "Practitioner"
            ]
        );
        let patient = &schema.structs[schema.resource("Patient").expect("Patient").root];
        let (e, v) = patient.lookup("deceasedDateTime").expect("choice variant");
        assert_eq!(&*patient.elements[e].name, "deceased");
        assert_eq!(&*patient.elements[e].variants[v].type_name, "dateTime");
        assert!(patient.lookup("deceased").is_none());
        let (e, _) = patient.lookup("name").expect("name");
        assert!(patient.elements[e].array);
    }

    #[test]
    fn required_bindings_expand() {
        let schema = build().expect("schema builds");
        let gender = schema
            .code_sets
            .iter()
            .find(|s| &*s.url == "http://hl7.org/fhir/ValueSet/administrative-gender")
            .expect("gender bound");
        for code in ["male", "female", "other", "unknown"] {
            assert!(gender.contains("http://hl7.org/fhir/administrative-gender", code));
        }
        assert!(!gender.contains_code("robot"));
        let units = schema
            .code_sets
            .iter()
            .find(|s| &*s.url == "http://hl7.org/fhir/ValueSet/units-of-time")
            .expect("units bound");
        assert!(units.contains("http://unitsofmeasure.org", "wk"));
    }
}
