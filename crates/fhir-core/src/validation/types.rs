//! A read-only view of the compiled element model for FHIRPath navigation: which JSON
//! properties an element name stands for, and the FHIR type of each.

use super::SCHEMA;
use super::model::{Schema, StructId, Target};

/// The element model, once built; `None` only if the embedded definitions are broken (the
/// validator's unit tests catch that).
pub(crate) fn model() -> Option<ElementModel> {
    SCHEMA.as_ref().ok().map(ElementModel)
}

/// The types of the elements of every embedded type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ElementModel(&'static Schema);

/// A complex type, backbone element or resource whose children the model knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Complex(StructId);

/// One JSON property an element may appear as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Child {
    /// The JSON property name (`deceasedDateTime` for `deceased` as a dateTime).
    pub(crate) key: &'static str,
    /// The FHIR type of the values under `key` (`dateTime`, `HumanName`, `BackboneElement`).
    pub(crate) type_name: &'static str,
    /// How the values under `key` are typed.
    pub(crate) kind: ChildKind,
    /// The element may hold more than one value (`max` above 1).
    pub(crate) repeats: bool,
}

/// The element a JSON property of a complex value stands for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Property {
    /// The element name (`deceased` for `deceasedBoolean`).
    pub(crate) name: &'static str,
    /// `min >= 1`.
    pub(crate) mandatory: bool,
    /// `ElementDefinition.isSummary`.
    pub(crate) summary: bool,
    /// The FHIR type of the values under the property (`dateTime`, `HumanName`).
    pub(crate) type_name: &'static str,
    /// How the values under the property are typed.
    pub(crate) kind: ChildKind,
}

/// What the values of a [`Child`] are.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ChildKind {
    /// A JSON primitive.
    Primitive,
    /// An object whose children the model knows.
    Complex(Complex),
    /// A resource (`contained`), typed by its own `resourceType`.
    Resource,
}

impl ElementModel {
    /// The root of the concrete resource type `name`, if embedded.
    pub(crate) fn resource(self, name: &str) -> Option<Complex> {
        self.0.resource(name).map(|r| Complex(r.root))
    }

    /// The JSON properties element `name` of `parent` may appear as: one for a plain element,
    /// one per type for a choice element; empty when `parent` has no such element.
    pub(crate) fn children(self, parent: Complex, name: &str) -> impl Iterator<Item = Child> {
        let schema = self.0;
        schema
            .structs
            .get(parent.0)
            .and_then(|s| s.elements.iter().find(|e| &*e.name == name))
            .into_iter()
            .flat_map(|element| {
                element
                    .variants
                    .iter()
                    .map(move |variant| (element.max > 1, variant))
            })
            .map(|(repeats, variant)| Child {
                key: &variant.key,
                type_name: &variant.type_name,
                kind: kind(variant.target),
                repeats,
            })
    }

    /// The element JSON property `key` (without a leading `_`) of `parent` stands for:
    /// `None` when `parent` has no such property.
    pub(crate) fn property(self, parent: Complex, key: &str) -> Option<Property> {
        let parent = self.0.structs.get(parent.0)?;
        let (e, v) = parent.lookup(key)?;
        let element = parent.elements.get(e)?;
        let variant = element.variants.get(v)?;
        Some(Property {
            name: &element.name,
            mandatory: element.min > 0,
            summary: element.summary,
            type_name: &variant.type_name,
            kind: kind(variant.target),
        })
    }
}

fn kind(target: Target) -> ChildKind {
    match target {
        Target::Primitive { .. } => ChildKind::Primitive,
        Target::Struct(id) => ChildKind::Complex(Complex(id)),
        Target::Resource => ChildKind::Resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_elements_list_every_type() {
        let model = model().expect("model builds");
        let patient = model.resource("Patient").expect("Patient");
        let deceased: Vec<(&str, &str)> = model
            .children(patient, "deceased")
            .map(|c| (c.key, c.type_name))
            .collect();
        assert_eq!(
            deceased,
            [
                ("deceasedBoolean", "boolean"),
                ("deceasedDateTime", "dateTime")
            ]
        );
        assert_eq!(model.children(patient, "deceasedBoolean").count(), 0);
        let name = model.children(patient, "name").next().expect("name");
        assert_eq!(name.type_name, "HumanName");
        let ChildKind::Complex(human_name) = name.kind else {
            panic!("HumanName is complex");
        };
        let family = model.children(human_name, "family").next().expect("family");
        assert!(matches!(family.kind, ChildKind::Primitive));
        assert!(model.resource("Observation").is_none());
    }

    #[test]
    fn properties_carry_summary_and_cardinality() {
        let model = model().expect("model builds");
        let patient = model.resource("Patient").expect("Patient");
        let deceased = model
            .property(patient, "deceasedDateTime")
            .expect("deceasedDateTime");
        assert_eq!(deceased.name, "deceased");
        assert_eq!(deceased.type_name, "dateTime");
        assert!(deceased.summary && !deceased.mandatory);
        let contact = model.property(patient, "contact").expect("contact");
        assert!(!contact.summary);
        assert!(model.property(patient, "deceased").is_none());
        let account = model.resource("Account").expect("Account");
        let status = model.property(account, "status").expect("status");
        assert!(status.summary && status.mandatory);
    }
}
