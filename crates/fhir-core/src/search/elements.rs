//! What a parameter's expression selects, when its text is a plain path
//! (`Patient.address.use`, optionally ending in `.where(...)` or `.ofType(T)`): the FHIR types
//! of the selected elements, from the element model the validator compiles, and the code
//! system the value of a `code` element belongs to when its required binding draws on exactly
//! one (http://hl7.org/fhir/R4/datatypes.html#code: a code's system is implied by the
//! binding). The query parser uses the types to offer only the modifiers that can match
//! (`:of-type` needs Identifiers, `:text` needs something with text); extraction uses the
//! implied system so that `gender=http://hl7.org/fhir/administrative-gender|male` matches.

use crate::validation::types::{ChildKind, model};

/// Code elements whose required binding is a value set of every code of one code system,
/// by element path as the StructureDefinitions of `fhir-profiles/` write it. A unit test
/// derives this table from those files, so it cannot drift from them.
pub(super) const IMPLIED_SYSTEMS: &[(&str, &str)] = &[
    ("Account.status", "http://hl7.org/fhir/account-status"),
    ("Address.type", "http://hl7.org/fhir/address-type"),
    ("Address.use", "http://hl7.org/fhir/address-use"),
    ("Age.comparator", "http://hl7.org/fhir/quantity-comparator"),
    ("Attachment.contentType", "urn:ietf:bcp:13"),
    (
        "ContactPoint.system",
        "http://hl7.org/fhir/contact-point-system",
    ),
    ("ContactPoint.use", "http://hl7.org/fhir/contact-point-use"),
    ("Contributor.type", "http://hl7.org/fhir/contributor-type"),
    (
        "Count.comparator",
        "http://hl7.org/fhir/quantity-comparator",
    ),
    (
        "DataRequirement.sort.direction",
        "http://hl7.org/fhir/sort-direction",
    ),
    (
        "Distance.comparator",
        "http://hl7.org/fhir/quantity-comparator",
    ),
    (
        "Duration.comparator",
        "http://hl7.org/fhir/quantity-comparator",
    ),
    ("Group.type", "http://hl7.org/fhir/group-type"),
    ("HumanName.use", "http://hl7.org/fhir/name-use"),
    ("Identifier.use", "http://hl7.org/fhir/identifier-use"),
    (
        "Invoice.lineItem.priceComponent.type",
        "http://hl7.org/fhir/invoice-priceComponentType",
    ),
    ("Invoice.status", "http://hl7.org/fhir/invoice-status"),
    ("Money.currency", "urn:iso:std:iso:4217"),
    ("Narrative.status", "http://hl7.org/fhir/narrative-status"),
    (
        "ParameterDefinition.use",
        "http://hl7.org/fhir/operation-parameter-use",
    ),
    (
        "Patient.contact.gender",
        "http://hl7.org/fhir/administrative-gender",
    ),
    (
        "Patient.gender",
        "http://hl7.org/fhir/administrative-gender",
    ),
    ("Patient.link.type", "http://hl7.org/fhir/link-type"),
    (
        "Practitioner.gender",
        "http://hl7.org/fhir/administrative-gender",
    ),
    (
        "Quantity.comparator",
        "http://hl7.org/fhir/quantity-comparator",
    ),
    (
        "RelatedArtifact.type",
        "http://hl7.org/fhir/related-artifact-type",
    ),
    ("Signature.sigFormat", "urn:ietf:bcp:13"),
    ("Signature.targetFormat", "urn:ietf:bcp:13"),
    (
        "Timing.repeat.dayOfWeek",
        "http://hl7.org/fhir/days-of-week",
    ),
    ("TriggerDefinition.type", "http://hl7.org/fhir/trigger-type"),
];

/// What the expression of a parameter on `base` selects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Selection {
    /// The FHIR types of the selected elements, each once; `None` when the expression is not
    /// a plain path the element model resolves.
    pub(super) types: Option<Vec<String>>,
    /// The system every selected `code` element implies; `None` when there is none, or the
    /// branches disagree.
    pub(super) implied_system: Option<&'static str>,
    /// The expression selects at most one element of a resource: one path, no repeating
    /// element along it.
    pub(super) single_valued: bool,
}

/// One branch resolved: its element types and, for a single `code` element, the path of
/// its definition (`Address.use` for `Patient.address.use`).
struct Branch {
    types: Vec<String>,
    code_element: Option<String>,
    /// No element along the path repeats.
    single: bool,
}

/// What `expression` (the branch of a definition for `base`) selects.
pub(super) fn describe(base: &str, expression: &str) -> Selection {
    let branches: Option<Vec<Branch>> = split_union(expression)
        .into_iter()
        .map(|branch| resolve(base, branch))
        .collect();
    let Some(branches) = branches else {
        return Selection::default();
    };
    let single_valued = matches!(branches.as_slice(), [branch] if branch.single);
    let mut types: Vec<String> = Vec::new();
    for branch in &branches {
        for t in &branch.types {
            if !types.contains(t) {
                types.push(t.clone());
            }
        }
    }
    // Every branch that selects codes must imply the same system.
    let mut implied = None;
    for branch in branches
        .iter()
        .filter(|b| b.types.iter().any(|t| t == "code"))
    {
        let system = branch.code_element.as_deref().and_then(implied_system);
        match (implied, system) {
            (_, None) => {
                return Selection {
                    types: Some(types),
                    implied_system: None,
                    single_valued,
                };
            }
            (None, Some(system)) => implied = Some(system),
            (Some(first), Some(system)) if first != system => {
                return Selection {
                    types: Some(types),
                    implied_system: None,
                    single_valued,
                };
            }
            _ => {}
        }
    }
    Selection {
        types: Some(types),
        implied_system: implied,
        single_valued,
    }
}

/// The implied system of the `code` element defined at `path`.
fn implied_system(path: &str) -> Option<&'static str> {
    IMPLIED_SYSTEMS
        .iter()
        .find(|(element, _)| *element == path)
        .map(|(_, system)| *system)
}

/// The operands of top-level `|` (outside parentheses and string literals).
fn split_union(expression: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut start) = (0usize, false, false, 0);
    for (i, c) in expression.char_indices() {
        if quoted {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' => quoted = true,
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '|' if depth == 0 => {
                out.push(expression[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(expression[start..].trim());
    out
}

/// A branch `Base.a.b[.where(...)|.ofType(T)]` resolved through the element model.
fn resolve(base: &str, branch: &str) -> Option<Branch> {
    let (path, of_type) = match branch.find('(') {
        None => (branch, None),
        Some(open) => {
            let (path, function) = branch[..open].rsplit_once('.')?;
            let argument = branch[open + 1..].strip_suffix(')')?;
            match function {
                "where" => (path, None),
                "ofType" if is_identifier(argument) => (path, Some(argument)),
                _ => return None,
            }
        }
    };
    let mut segments = path.split('.');
    if segments.next()? != base {
        return None;
    }
    let model = model()?;
    // `Resource` and `DomainResource` are abstract: their elements (`id`, `meta`, `text`)
    // are the same in every resource, so any concrete one resolves them.
    let concrete = match base {
        "Resource" | "DomainResource" => "Patient",
        other => other,
    };
    let mut parent = model.resource(concrete)?;
    // The path of the current element's definition: a named type restarts it, a backbone
    // element extends it.
    let mut defined_in = base.to_string();
    let mut segments = segments.peekable();
    let mut single = true;
    while let Some(segment) = segments.next() {
        if !is_identifier(segment) {
            return None;
        }
        let children: Vec<_> = model.children(parent, segment).collect();
        single &= children.iter().all(|child| !child.repeats);
        if segments.peek().is_none() {
            let mut types: Vec<String> = Vec::new();
            for child in &children {
                if !types.iter().any(|t| t == child.type_name) {
                    types.push(child.type_name.to_string());
                }
            }
            if types.is_empty() {
                return None;
            }
            if let Some(wanted) = of_type {
                types.retain(|t| t == wanted);
            }
            let code_element = (children.len() == 1 && children[0].type_name == "code")
                .then(|| format!("{defined_in}.{segment}"));
            return Some(Branch {
                types,
                code_element,
                single,
            });
        }
        let [child] = children.as_slice() else {
            return None;
        };
        let ChildKind::Complex(complex) = child.kind else {
            return None;
        };
        parent = complex;
        defined_in = if matches!(child.type_name, "BackboneElement" | "Element") {
            format!("{defined_in}.{segment}")
        } else {
            child.type_name.to_string()
        };
    }
    None
}

fn is_identifier(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use serde_json::Value;

    use super::*;

    fn types(base: &str, expression: &str) -> Option<Vec<String>> {
        describe(base, expression).types
    }

    #[test]
    fn the_common_parameters_resolve_through_any_resource() {
        assert_eq!(types("Resource", "Resource.id"), Some(vec!["id".into()]));
        assert_eq!(
            types("Resource", "Resource.meta.tag"),
            Some(vec!["Coding".into()])
        );
        assert_eq!(
            types("Resource", "Resource.meta.profile"),
            Some(vec!["canonical".into()])
        );
    }

    #[test]
    fn single_valued_paths_have_no_repeating_element() {
        let single = |base: &str, expression: &str| describe(base, expression).single_valued;
        assert!(single("Patient", "Patient.birthDate"));
        assert!(single("Invoice", "Invoice.totalGross"));
        assert!(single("Account", "Account.servicePeriod"));
        assert!(single("Patient", "Patient.deceased"));
        assert!(!single("Patient", "Patient.name"));
        assert!(!single("Patient", "Patient.address.city"));
        assert!(!single(
            "Patient",
            "Patient.name.family | Patient.birthDate"
        ));
        assert!(!single("Patient", "Patient.extension('x')"));
    }

    #[test]
    fn plain_paths_resolve_to_element_types() {
        assert_eq!(
            types("Patient", "Patient.gender"),
            Some(vec!["code".into()])
        );
        assert_eq!(
            types("Patient", "Patient.identifier"),
            Some(vec!["Identifier".into()])
        );
        assert_eq!(
            types("Patient", "Patient.telecom.where(system='email')"),
            Some(vec!["ContactPoint".into()])
        );
        assert_eq!(
            types("Patient", "Patient.deceased"),
            Some(vec!["boolean".into(), "dateTime".into()])
        );
        assert_eq!(
            types(
                "Invoice",
                "Invoice.lineItem.chargeItem.ofType(CodeableConcept)"
            ),
            Some(vec!["CodeableConcept".into()])
        );
        assert_eq!(
            types("Organization", "Organization.name | Organization.alias"),
            Some(vec!["string".into()])
        );
        assert_eq!(
            types("Account", "Account.subject.where(resolve() is Patient)"),
            Some(vec!["Reference".into()])
        );
        // Not plain paths, or not in the model: unknown.
        assert_eq!(types("Patient", "(Patient.deceased as dateTime)"), None);
        assert_eq!(types("Patient", "Patient.extension('http://x')"), None);
        assert_eq!(types("Patient", "Patient.nothing"), None);
        assert_eq!(types("Patient", "Person.gender"), None);
    }

    #[test]
    fn code_elements_imply_their_binding_system() {
        let implied = |base, expression| describe(base, expression).implied_system;
        assert_eq!(
            implied("Patient", "Patient.gender"),
            Some("http://hl7.org/fhir/administrative-gender")
        );
        assert_eq!(
            implied("Organization", "Organization.address.use"),
            Some("http://hl7.org/fhir/address-use")
        );
        assert_eq!(
            implied("Patient", "Patient.link.type"),
            Some("http://hl7.org/fhir/link-type")
        );
        assert_eq!(
            implied("Invoice", "Invoice.status"),
            Some("http://hl7.org/fhir/invoice-status")
        );
        // A code without a single-system binding, and codes of two systems: none.
        assert_eq!(implied("Patient", "Patient.active"), None);
        assert_eq!(
            implied("Patient", "Patient.gender | Patient.address.use"),
            None
        );
        assert_eq!(
            implied("Patient", "Patient.gender | Patient.contact.gender"),
            Some("http://hl7.org/fhir/administrative-gender")
        );
    }

    fn read_dir(dir: &Path) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("fhir-profiles is readable")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                serde_json::from_str(&std::fs::read_to_string(f).expect("readable")).expect("JSON")
            })
            .collect()
    }

    /// The table is what the StructureDefinitions and ValueSets of `fhir-profiles/` say:
    /// every `code` element with a required binding to a value set that includes all of
    /// one code system, and nothing else.
    #[test]
    fn implied_systems_follow_the_profiles() {
        let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fhir-profiles");
        let value_sets: BTreeMap<String, Value> = read_dir(&profiles.join("ValueSet"))
            .into_iter()
            .filter_map(|vs| Some((vs["url"].as_str()?.to_string(), vs)))
            .collect();
        let mut derived = BTreeMap::new();
        for sd in read_dir(&profiles.join("StructureDefinition")) {
            for element in sd["snapshot"]["element"].as_array().into_iter().flatten() {
                let is_code = element["type"]
                    .as_array()
                    .is_some_and(|t| t.len() == 1 && t[0]["code"] == "code");
                let binding = &element["binding"];
                if !is_code || binding["strength"] != "required" {
                    continue;
                }
                let url = binding["valueSet"]
                    .as_str()
                    .and_then(|u| u.split('|').next())
                    .unwrap_or_default();
                let Some(include) = value_sets
                    .get(url)
                    .and_then(|vs| vs["compose"]["include"].as_array())
                else {
                    continue;
                };
                let whole_system = include.len() == 1
                    && include[0].get("concept").is_none()
                    && include[0].get("filter").is_none()
                    && include[0].get("valueSet").is_none();
                if let (true, Some(system)) = (whole_system, include[0]["system"].as_str()) {
                    let path = element["path"].as_str().expect("path").to_string();
                    derived.insert(path, system.to_string());
                }
            }
        }
        let table: BTreeMap<String, String> = IMPLIED_SYSTEMS
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect();
        assert_eq!(table, derived);
    }
}
