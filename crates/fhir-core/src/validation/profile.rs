//! Profiles: StructureDefinitions that constrain one of the supported resource types
//! (`derivation` `constraint`), checked on top of the base validation.
//!
//! A profile's `differential` is compiled into rules, one kind per thing it can declare on an
//! element:
//!
//! - cardinality (`min`, `max`): counted under every occurrence of the parent element;
//! - `fixed[x]` (the value exactly) and `pattern[x]` (at least what the pattern holds);
//! - `binding` of strength `required`: codes from the value set (Ferrum's own, in
//!   `fhir-profiles/custom/ValueSet/`, or a base one);
//! - `constraint` (invariants): a FHIRPath expression evaluated on every occurrence of the
//!   element, which must yield `true`.
//!
//! Slicing, type narrowing and profiles on data types are not supported: a definition that
//! uses them does not load (the unit tests load every shipped profile).

use std::collections::HashMap;

use serde_json::Value;

use super::terminology::{CodeSet, Expander};
use crate::fhirpath::{Expression, Item, Node};
use crate::outcome::{Issue, IssueCode, Severity};

/// A compiled profile.
#[derive(Debug)]
pub struct Profile {
    /// Canonical url (`meta.profile` names it).
    pub url: String,
    /// The resource type it constrains.
    pub resource_type: String,
    rules: Vec<Rule>,
}

/// One check of a profile, on the element at `path` (a FHIRPath without indexes).
#[derive(Debug)]
struct Rule {
    path: String,
    check: Check,
}

#[derive(Debug)]
enum Check {
    /// Occurrences of `child` under every `parent` (the resource itself when `None`).
    Cardinality {
        parent: Option<Expression>,
        child: String,
        min: usize,
        max: Option<usize>,
    },
    /// Every occurrence equals `value` (`pattern`: holds at least what `value` holds).
    Value {
        nodes: Expression,
        value: Value,
        pattern: bool,
    },
    /// Every occurrence carries a code of the set.
    Binding { nodes: Expression, codes: CodeSet },
    /// `expression` is true on every occurrence of `context` (the resource when `None`).
    Invariant {
        context: Option<Expression>,
        key: String,
        severity: Severity,
        human: String,
        expression: Expression,
    },
}

impl Profile {
    /// Every way `resource` departs from the profile (empty: it conforms). The resource is
    /// expected to have passed the base validation.
    pub fn check(&self, resource: &Value) -> Vec<Issue> {
        let mut issues = Vec::new();
        if resource.get("resourceType").and_then(Value::as_str) != Some(&self.resource_type) {
            issues.push(Issue::error(
                IssueCode::Invalid,
                format!(
                    "profile {} applies to {} resources only",
                    self.url, self.resource_type
                ),
            ));
            return issues;
        }
        for rule in &self.rules {
            rule.check(resource, &self.url, &mut issues);
        }
        issues
    }
}

impl Rule {
    fn check(&self, resource: &Value, url: &str, issues: &mut Vec<Issue>) {
        let path = self.path.as_str();
        match &self.check {
            Check::Cardinality {
                parent,
                child,
                min,
                max,
            } => {
                for parent in nodes(resource, parent.as_ref()) {
                    let count = parent.children(child).len();
                    if count < *min {
                        issues.push(Issue::at(
                            IssueCode::Required,
                            path,
                            format!("profile {url}: {path} needs at least {min} (found {count})"),
                        ));
                    }
                    if max.is_some_and(|max| count > max) {
                        issues.push(Issue::at(
                            IssueCode::Structure,
                            path,
                            format!(
                                "profile {url}: {path} allows at most {} (found {count})",
                                max.unwrap_or_default()
                            ),
                        ));
                    }
                }
            }
            Check::Value {
                nodes: expression,
                value,
                pattern,
            } => {
                for node in nodes(resource, Some(expression)) {
                    let holds = if *pattern {
                        matches_pattern(node.value(), value)
                    } else {
                        node.value() == value
                    };
                    if !holds {
                        let what = if *pattern { "pattern" } else { "fixed value" };
                        issues.push(Issue::at(
                            IssueCode::Value,
                            path,
                            format!("profile {url}: {path} does not match the {what}"),
                        ));
                    }
                }
            }
            Check::Binding {
                nodes: expression,
                codes,
            } => {
                for node in nodes(resource, Some(expression)) {
                    if !in_code_set(&node, codes) {
                        issues.push(Issue::at(
                            IssueCode::CodeInvalid,
                            path,
                            format!(
                                "profile {url}: {path} must be a code of the value set {}",
                                codes.url
                            ),
                        ));
                    }
                }
            }
            Check::Invariant {
                context,
                key,
                severity,
                human,
                expression,
            } => {
                for node in nodes(resource, context.as_ref()) {
                    let result = expression.evaluate_on(resource, node);
                    if !matches!(result.as_deref(), Ok([Item::Boolean(true)])) {
                        issues.push(Issue {
                            severity: *severity,
                            ..Issue::at(
                                IssueCode::Invariant,
                                path,
                                format!("profile {url}: {key}: {human}"),
                            )
                        });
                    }
                }
            }
        }
    }
}

/// The occurrences `expression` selects, or the resource itself.
fn nodes<'a>(resource: &'a Value, expression: Option<&'a Expression>) -> Vec<Node<'a>> {
    let Some(expression) = expression else {
        return vec![Node::resource(resource)];
    };
    expression
        .evaluate(resource)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| match item {
            Item::Node(node) => Some(node),
            _ => None,
        })
        .collect()
}

/// FHIR pattern matching: every property of the pattern is present with a matching value;
/// an array of the pattern is matched item by item by some item of the value.
fn matches_pattern(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(value), Value::Object(pattern)) => pattern
            .iter()
            .all(|(key, p)| value.get(key).is_some_and(|v| matches_pattern(v, p))),
        (Value::Array(values), Value::Array(patterns)) => patterns
            .iter()
            .all(|p| values.iter().any(|v| matches_pattern(v, p))),
        // A single pattern against a repeating element: some item matches.
        (Value::Array(values), p) => values.iter().any(|v| matches_pattern(v, p)),
        (v, p) => v == p,
    }
}

/// Whether a coded element (`code`, Coding, CodeableConcept, Quantity) is in `codes`; other
/// kinds of element never are.
fn in_code_set(node: &Node<'_>, codes: &CodeSet) -> bool {
    let coding = |c: &Value| match (
        c.get("system").and_then(Value::as_str),
        c.get("code").and_then(Value::as_str),
    ) {
        (Some(system), Some(code)) => codes.contains(system, code),
        _ => false,
    };
    match node.value() {
        Value::String(code) => codes.contains_code(code),
        Value::Object(map) if map.contains_key("coding") => map["coding"]
            .as_array()
            .is_some_and(|codings| codings.iter().any(coding)),
        object @ Value::Object(_) => coding(object),
        _ => false,
    }
}

/// The profiles by url.
#[derive(Debug, Default)]
pub struct Profiles {
    by_url: HashMap<String, Profile>,
}

impl Profiles {
    /// The profile at `url` (a `|version` suffix is ignored).
    pub fn get(&self, url: &str) -> Option<&Profile> {
        self.by_url.get(url.split('|').next().unwrap_or(url))
    }

    /// Every profile, sorted by url.
    pub fn all(&self) -> Vec<&Profile> {
        let mut all: Vec<&Profile> = self.by_url.values().collect();
        all.sort_by(|a, b| a.url.cmp(&b.url));
        all
    }

    /// Compiles `definitions` (StructureDefinition JSON), expanding bindings with `expander`;
    /// `supported` tells the resource types a profile may constrain.
    pub(super) fn build(
        definitions: &[Value],
        expander: &Expander<'_>,
        supported: &dyn Fn(&str) -> bool,
    ) -> Result<Self, String> {
        let mut by_url = HashMap::new();
        for definition in definitions {
            let profile = compile(definition, expander, supported)?;
            if by_url.contains_key(&profile.url) {
                return Err(format!("profile {} is defined twice", profile.url));
            }
            by_url.insert(profile.url.clone(), profile);
        }
        Ok(Profiles { by_url })
    }
}

fn compile(
    sd: &Value,
    expander: &Expander<'_>,
    supported: &dyn Fn(&str) -> bool,
) -> Result<Profile, String> {
    let text = |key: &str| sd.get(key).and_then(Value::as_str);
    let url = text("url").ok_or("a profile has no url")?.to_owned();
    let fail = |message: String| format!("profile {url}: {message}");
    if text("resourceType") != Some("StructureDefinition")
        || text("derivation") != Some("constraint")
        || text("kind") != Some("resource")
    {
        return Err(fail(
            "not a constraint on a resource type (derivation constraint, kind resource)".into(),
        ));
    }
    let resource_type = text("type")
        .ok_or_else(|| fail("no type".into()))?
        .to_owned();
    if !supported(&resource_type) {
        return Err(fail(format!("{resource_type} is not a supported type")));
    }
    let base = format!("http://hl7.org/fhir/StructureDefinition/{resource_type}");
    if text("baseDefinition") != Some(base.as_str()) {
        return Err(fail(format!("only profiles based on {base} are supported")));
    }
    let elements = sd
        .pointer("/differential/element")
        .and_then(Value::as_array)
        .ok_or_else(|| fail("no differential".into()))?;
    let mut rules = Vec::new();
    for element in elements {
        element_rules(element, &resource_type, expander, &mut rules).map_err(&fail)?;
    }
    Ok(Profile {
        url: url.clone(),
        resource_type,
        rules,
    })
}

/// The rules one differential element declares.
fn element_rules(
    element: &Value,
    resource_type: &str,
    expander: &Expander<'_>,
    rules: &mut Vec<Rule>,
) -> Result<(), String> {
    let raw = element
        .get("path")
        .and_then(Value::as_str)
        .ok_or("an element has no path")?;
    let id = element.get("id").and_then(Value::as_str).unwrap_or(raw);
    if id.contains(':') || element.get("sliceName").is_some() || element.get("slicing").is_some() {
        return Err(format!("{id}: slicing is not supported"));
    }
    if element.get("type").is_some() {
        return Err(format!("{id}: type constraints are not supported"));
    }
    if raw != resource_type && !raw.starts_with(&format!("{resource_type}.")) {
        return Err(format!("{id}: the path is not on {resource_type}"));
    }
    // `[x]` names the choice element: FHIRPath uses the base name.
    let path = raw.replace("[x]", "");
    let at_root = path == resource_type;
    let parse =
        |text: &str| Expression::parse(text).map_err(|e| format!("{id}: expression {text:?}: {e}"));
    let nodes = || {
        if at_root {
            Ok(None)
        } else {
            parse(&path).map(Some)
        }
    };

    let min = element.get("min").and_then(Value::as_u64);
    let max = element.get("max").and_then(Value::as_str);
    if !at_root && (min.is_some_and(|m| m > 0) || max.is_some_and(|m| m != "*")) {
        let (parent, child) = path.rsplit_once('.').unwrap_or((resource_type, &path));
        let max = match max {
            None | Some("*") => None,
            Some(m) => Some(
                m.parse()
                    .map_err(|_| format!("{id}: max {m:?} is not a number or *"))?,
            ),
        };
        rules.push(Rule {
            path: path.clone(),
            check: Check::Cardinality {
                parent: (parent != resource_type)
                    .then(|| parse(parent))
                    .transpose()?,
                child: child.to_owned(),
                min: usize::try_from(min.unwrap_or(0)).unwrap_or(usize::MAX),
                max,
            },
        });
    }

    if let Value::Object(map) = element {
        for (key, value) in map {
            let pattern = key.starts_with("pattern");
            if !(pattern || key.starts_with("fixed")) {
                continue;
            }
            let nodes = nodes()?.ok_or_else(|| format!("{id}: a value on the resource"))?;
            rules.push(Rule {
                path: path.clone(),
                check: Check::Value {
                    nodes,
                    value: value.clone(),
                    pattern,
                },
            });
        }
    }

    if let Some(binding) = element.get("binding")
        && binding.get("strength").and_then(Value::as_str) == Some("required")
    {
        let url = binding
            .get("valueSet")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{id}: a required binding without a value set"))?;
        let nodes = nodes()?.ok_or_else(|| format!("{id}: a binding on the resource"))?;
        rules.push(Rule {
            path: path.clone(),
            check: Check::Binding {
                nodes,
                codes: expander.expand(url).map_err(|e| format!("{id}: {e}"))?,
            },
        });
    }

    for constraint in element
        .get("constraint")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = |key: &str| {
            constraint
                .get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{id}: a constraint without {key}"))
        };
        let severity = match field("severity")? {
            "error" => Severity::Error,
            "warning" => Severity::Warning,
            other => return Err(format!("{id}: constraint severity {other:?}")),
        };
        rules.push(Rule {
            path: path.clone(),
            check: Check::Invariant {
                context: nodes()?,
                key: field("key")?.to_owned(),
                severity,
                human: field("human")?.to_owned(),
                expression: parse(field("expression")?)?,
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validation::profiles;

    const PATIENT: &str = "urn:ferrum:StructureDefinition:ferrum-patient";
    const INVOICE: &str = "urn:ferrum:StructureDefinition:ferrum-invoice";

    fn shipped(url: &str) -> &'static Profile {
        let Ok(profiles) = profiles() else {
            panic!("the shipped profiles load")
        };
        profiles
            .get(url)
            .unwrap_or_else(|| panic!("{url} is shipped"))
    }

    /// (code, expression) of each issue.
    fn found(issues: &[Issue]) -> Vec<(&'static str, String)> {
        issues
            .iter()
            .map(|i| (i.code.code(), i.expression.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn every_shipped_profile_loads() {
        let Ok(profiles) = profiles() else {
            panic!("the shipped profiles load")
        };
        let urls: Vec<&str> = profiles.all().iter().map(|p| p.url.as_str()).collect();
        assert_eq!(urls, [INVOICE, PATIENT]);
        assert!(profiles.get(&format!("{PATIENT}|1")).is_some());
    }

    #[test]
    fn the_patient_profile_needs_an_identifier_and_an_email() {
        let profile = shipped(PATIENT);
        let good = json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:x", "value": "1"}],
            "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b.c"}]});
        assert_eq!(profile.check(&good), []);

        let bare = json!({"resourceType": "Patient"});
        assert_eq!(
            found(&profile.check(&bare)),
            [
                ("invariant", "Patient".into()),
                ("required", "Patient.identifier".into()),
                ("required", "Patient.telecom".into()),
            ]
        );
        let no_value = json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:x"}],
            "telecom": [{"system": "email"}]});
        assert_eq!(
            found(&profile.check(&no_value)),
            [
                ("invariant", "Patient".into()),
                ("required", "Patient.identifier.value".into()),
            ]
        );
    }

    #[test]
    fn the_invoice_profile_needs_a_total_and_a_final_status() {
        let profile = shipped(INVOICE);
        let good = json!({"resourceType": "Invoice", "status": "issued",
            "subject": {"reference": "Patient/1"},
            "totalNet": {"value": 10, "currency": "EUR"},
            "totalGross": {"value": 12, "currency": "EUR"}});
        assert_eq!(profile.check(&good), []);

        let draft = json!({"resourceType": "Invoice", "status": "draft",
            "subject": {"reference": "Patient/1"},
            "totalNet": {"value": 10, "currency": "USD"},
            "totalGross": {"value": 12, "currency": "EUR"}});
        assert_eq!(
            found(&profile.check(&draft)),
            [
                ("invariant", "Invoice".into()),
                ("code-invalid", "Invoice.status".into()),
            ]
        );
        let no_total = json!({"resourceType": "Invoice", "status": "issued",
            "subject": {"reference": "Patient/1"}});
        assert_eq!(
            found(&profile.check(&no_total)),
            [("required", "Invoice.totalGross".into())]
        );
        let wrong_type = json!({"resourceType": "Patient"});
        assert_eq!(
            found(&profile.check(&wrong_type)),
            [("invalid", String::new())]
        );
    }

    /// A profile with the kinds of rules the shipped ones do not use.
    fn custom(elements: Value) -> Result<Profile, String> {
        let sd = json!({"resourceType": "StructureDefinition", "url": "urn:test:p",
            "kind": "resource", "derivation": "constraint", "type": "Patient",
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
            "differential": {"element": elements}});
        let value_sets = [json!({"resourceType": "ValueSet", "url": "urn:test:vs",
            "compose": {"include": [{"system": "urn:test:cs",
                "concept": [{"code": "a"}, {"code": "b"}]}]}})];
        let expander = Expander::new(&value_sets, &[])?;
        compile(&sd, &expander, &|t| t == "Patient")
    }

    #[test]
    fn fixed_values_patterns_maximums_and_bindings() {
        let Ok(profile) = custom(json!([
            {"path": "Patient.active", "fixedBoolean": true},
            {"path": "Patient.name", "max": "1"},
            {"path": "Patient.contact.name", "min": 1},
            {"path": "Patient.maritalStatus",
             "patternCodeableConcept": {"coding": [{"system": "urn:test:cs"}]}},
            {"path": "Patient.communication.language",
             "binding": {"strength": "required", "valueSet": "urn:test:vs"}},
            {"path": "Patient.gender", "binding": {"strength": "extensible", "valueSet": "urn:none"}},
        ])) else {
            panic!("the test profile compiles")
        };
        let good = json!({"resourceType": "Patient", "active": true, "name": [{"family": "x"}],
            "contact": [{"name": {"family": "y"}}],
            "maritalStatus": {"coding": [{"system": "urn:test:cs", "code": "M"}], "text": "t"},
            "communication": [{"language": {"coding": [{"system": "urn:test:cs", "code": "b"}]}}]});
        assert_eq!(profile.check(&good), []);
        let bad = json!({"resourceType": "Patient", "active": false,
            "name": [{"family": "x"}, {"family": "z"}],
            "contact": [{"name": {"family": "y"}}, {"gender": "male"}],
            "maritalStatus": {"coding": [{"system": "urn:other", "code": "M"}]},
            "communication": [{"language": {"coding": [{"system": "urn:test:cs", "code": "c"}]}}]});
        assert_eq!(
            found(&profile.check(&bad)),
            [
                ("value", "Patient.active".into()),
                ("structure", "Patient.name".into()),
                ("required", "Patient.contact.name".into()),
                ("value", "Patient.maritalStatus".into()),
                ("code-invalid", "Patient.communication.language".into()),
            ]
        );
        // Absent elements are only checked by cardinality.
        assert_eq!(profile.check(&json!({"resourceType": "Patient"})), []);
    }

    #[test]
    fn unsupported_definitions_do_not_load() {
        for elements in [
            json!([{"id": "Patient.identifier:mrn", "path": "Patient.identifier", "sliceName": "mrn"}]),
            json!([{"path": "Patient.deceased[x]", "type": [{"code": "boolean"}]}]),
            json!([{"path": "Practitioner.name", "min": 1}]),
            json!([{"path": "Patient.gender", "binding": {"strength": "required", "valueSet": "urn:missing"}}]),
            json!([{"path": "Patient", "constraint": [{"key": "k", "severity": "error",
                "human": "h", "expression": "name.family.substring(1)"}]}]),
        ] {
            assert!(custom(elements.clone()).is_err(), "{elements}");
        }
    }
}
