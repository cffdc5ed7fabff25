//! The SearchParameter registry: the definitions in `fhir-profiles/`, compiled into the
//! binary, parsed once into parameters keyed by resource type and code.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde_json::Value;

use super::elements::{Selection, describe};
use super::embedded::{BASE, CUSTOM};
use super::value::Part;
use crate::fhirpath::{Expression, ParseError};

/// The type of a search parameter (http://hl7.org/fhir/R4/valueset-search-param-type.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl SearchParamType {
    /// Every type, in the order of the value set.
    pub const ALL: [SearchParamType; 9] = [
        SearchParamType::Number,
        SearchParamType::Date,
        SearchParamType::String,
        SearchParamType::Token,
        SearchParamType::Reference,
        SearchParamType::Composite,
        SearchParamType::Quantity,
        SearchParamType::Uri,
        SearchParamType::Special,
    ];

    /// The code, as in `SearchParameter.type` and `CapabilityStatement...searchParam.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchParamType::Number => "number",
            SearchParamType::Date => "date",
            SearchParamType::String => "string",
            SearchParamType::Token => "token",
            SearchParamType::Reference => "reference",
            SearchParamType::Composite => "composite",
            SearchParamType::Quantity => "quantity",
            SearchParamType::Uri => "uri",
            SearchParamType::Special => "special",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == code)
    }
}

impl fmt::Display for SearchParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A search parameter as it applies to one base type: a resource type, or `Resource` /
/// `DomainResource` for the parameters every type has. A definition with several bases
/// (`individual-family` on Patient and Practitioner) gives one per base, each with the
/// branch of the expression for that base.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParameter {
    url: String,
    code: String,
    base: String,
    kind: SearchParamType,
    expression: Option<Expression>,
    target: Vec<String>,
    modifiers: Vec<String>,
    comparators: Vec<String>,
    components: Vec<Component>,
    phonetic: bool,
    description: Option<String>,
    /// What the expression selects, where the element model tells.
    selection: Selection,
    /// The parameter of the same base whose values hold this one's, and how.
    kept_in: Option<(String, Keeping)>,
    /// Whether a phonetic parameter is kept in this one's values: they carry their codes.
    sounds: bool,
}

/// How a parameter's values are kept in another parameter's ([`SearchParameter::kept_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeping {
    /// As the values of one part: `family` as `name`'s family names.
    Part(Part),
    /// As the phonetic codes of the values (`phonetic` of `name`, both `Patient.name`).
    Sound,
}

/// A part of a composite parameter: the definition it takes its type from, and an
/// expression relative to the element the composite's expression selects.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    definition: String,
    expression: Expression,
}

impl Component {
    /// The canonical url of the SearchParameter that gives this part its type.
    pub fn definition(&self) -> &str {
        &self.definition
    }

    /// The expression, relative to the composite's element.
    pub fn expression(&self) -> &Expression {
        &self.expression
    }
}

impl SearchParameter {
    /// The canonical url of the definition (`http://hl7.org/fhir/SearchParameter/Patient-name`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name used in searches (`name`, `_lastUpdated`).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The type this parameter applies to (`Patient`, or `Resource` for all of them).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The parameter type, which decides the kind of index values.
    pub fn kind(&self) -> SearchParamType {
        self.kind
    }

    /// What to index, for this base; `None` for parameters the server implements itself
    /// (`_text`, `_content`, `_query`, `_filter`).
    pub fn expression(&self) -> Option<&Expression> {
        self.expression.as_ref()
    }

    /// For a reference parameter, the resource types it may point at (empty: any).
    pub fn target(&self) -> &[String] {
        &self.target
    }

    /// Modifiers the definition declares (R4 base definitions declare none: the type decides).
    pub fn modifiers(&self) -> &[String] {
        &self.modifiers
    }

    /// Prefixes the definition allows (`eq`, `ne`, `gt`, ... `ap`).
    pub fn comparators(&self) -> &[String] {
        &self.comparators
    }

    /// The parts of a composite parameter, in order.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Whether string values are matched by sound (`xpathUsage` `phonetic`): their index
    /// values hold phonetic codes (see [`super::normalize::phonetic`]).
    pub fn is_phonetic(&self) -> bool {
        self.phonetic
    }

    /// The definition's description, for the CapabilityStatement.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The FHIR types of the elements the expression selects (`Identifier`, `code`,
    /// `HumanName`), each once; `None` when the expression is not a plain path
    /// (`Patient.address.use`, optionally ending in `.where(...)` or `.ofType(T)`) that the
    /// element model resolves.
    pub fn element_types(&self) -> Option<&[String]> {
        self.selection.types.as_deref()
    }

    /// The code system that the values of the `code` elements this parameter selects
    /// belong to, implied by their required binding (`Patient.gender`:
    /// `http://hl7.org/fhir/administrative-gender`). Extraction indexes such codes with it.
    pub fn implied_system(&self) -> Option<&'static str> {
        self.selection.implied_system
    }

    /// Whether a resource has at most one element this parameter selects (`Patient.birthDate`,
    /// `Invoice.totalGross`; not `Patient.name`): then conditions repeated on it (AND) hold
    /// for the same value.
    pub fn is_single_valued(&self) -> bool {
        self.selection.single_valued
    }

    /// Where this parameter's values are kept, when they are another parameter's: that
    /// parameter's code (of the same base), and how. `family` (`Patient.name.family`) is
    /// kept in `name` (`Patient.name`) as its [`Part::Family`] values; `phone`
    /// (`Patient.telecom.where(system='phone')`) in `telecom` as its [`Part::Phone`] values;
    /// `phonetic` (also `Patient.name`) in `name` as the [`Keeping::Sound`] of its values.
    /// Such a parameter has no index values of its own, so a resource's name parts are
    /// stored once, not once per parameter.
    pub fn kept_in(&self) -> Option<(&str, Keeping)> {
        self.kept_in
            .as_ref()
            .map(|(owner, keeping)| (owner.as_str(), *keeping))
    }

    /// Whether this parameter's string values carry their phonetic codes
    /// ([`StringValue::sound`](super::StringValue::sound)), for a phonetic parameter kept in
    /// them.
    pub fn sounds(&self) -> bool {
        self.sounds
    }

    /// How this parameter's values hold `other`'s: `other` selects one element of the
    /// HumanNames or Addresses this one selects, or the ContactPoints of one system, or it
    /// selects the same strings to match them by sound. This parameter is not phonetic.
    fn keeping(&self, other: &SearchParameter) -> Option<Keeping> {
        if self.kind != other.kind || self.phonetic || self.expression.is_none() {
            return None;
        }
        if other.phonetic {
            let same = other.expression.as_ref().map(Expression::as_str)
                == self.expression.as_ref().map(Expression::as_str);
            return (same && self.kind == SearchParamType::String).then_some(Keeping::Sound);
        }
        self.part_for(other).map(Keeping::Part)
    }

    /// The part of this parameter's values that are exactly `other`'s (see
    /// [`SearchParameter::keeping`]).
    fn part_for(&self, other: &SearchParameter) -> Option<Part> {
        let rest = other
            .expression
            .as_ref()?
            .as_str()
            .strip_prefix(self.expression.as_ref()?.as_str())?;
        let [element_type] = self.element_types()? else {
            return None;
        };
        match self.kind {
            SearchParamType::String => Part::of_element(element_type, rest.strip_prefix('.')?),
            SearchParamType::Token if element_type == "ContactPoint" => {
                // `.where(system = 'phone')`
                let test = rest.strip_prefix(".where(")?.strip_suffix(')')?;
                let (element, system) = test.split_once('=')?;
                let system = system.trim().strip_prefix('\'')?.strip_suffix('\'')?;
                (element.trim() == "system")
                    .then(|| Part::of_contact_system(system))
                    .flatten()
            }
            _ => None,
        }
    }
}

/// A definition the registry cannot use. Built-in definitions are checked by the tests, so
/// this is met when loading other definitions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// A built-in file does not parse.
    #[error("a SearchParameter definition is not valid JSON: {0}")]
    Json(String),
    /// A definition lacks something the registry needs, or contradicts itself.
    #[error("SearchParameter {definition}: {problem}")]
    Invalid { definition: String, problem: String },
    /// An expression is not in the supported FHIRPath subset.
    #[error("SearchParameter {definition}: expression: {error}")]
    Expression {
        definition: String,
        error: ParseError,
    },
    /// Two definitions give a type the same code.
    #[error("two SearchParameters define `{code}` on {base}: {first} and {second}")]
    Duplicate {
        base: String,
        code: String,
        first: String,
        second: String,
    },
}

/// Base types whose parameters every resource type has.
const COMMON_BASES: [&str; 2] = ["Resource", "DomainResource"];

/// Search parameters by resource type and code.
#[derive(Debug, Clone)]
pub struct Registry {
    params: Vec<SearchParameter>,
    /// Indexes into `params` of each base's own parameters.
    by_base: HashMap<String, Vec<usize>>,
}

static BUILTIN: LazyLock<Result<Registry, RegistryError>> = LazyLock::new(|| {
    let definitions = BASE
        .iter()
        .chain(CUSTOM)
        .map(|text| serde_json::from_str(text).map_err(|e| RegistryError::Json(e.to_string())))
        .collect::<Result<Vec<Value>, _>>()?;
    Registry::from_definitions(&definitions)
});

impl Registry {
    /// The definitions compiled in from `fhir-profiles/SearchParameter/` (R4) and
    /// `fhir-profiles/custom/SearchParameter/` (Ferrum's own), parsed on first use.
    pub fn builtin() -> Result<&'static Registry, &'static RegistryError> {
        BUILTIN.as_ref()
    }

    /// A registry of `definitions` (SearchParameter resources). Definitions marked
    /// `experimental` (the examples of the R4 package) and retired ones are left out.
    pub fn from_definitions(definitions: &[Value]) -> Result<Registry, RegistryError> {
        let mut registry = Registry {
            params: Vec::new(),
            by_base: HashMap::new(),
        };
        for definition in definitions {
            if definition["experimental"] == Value::Bool(true) || definition["status"] == "retired"
            {
                continue;
            }
            for param in parse_definition(definition)? {
                registry.add(param)?;
            }
        }
        registry.check_components()?;
        registry.share_values();
        for indexes in registry.by_base.values_mut() {
            indexes.sort_by(|a, b| registry.params[*a].code.cmp(&registry.params[*b].code));
        }
        Ok(registry)
    }

    fn add(&mut self, param: SearchParameter) -> Result<(), RegistryError> {
        // A code must be unique among a type's own parameters and the common ones.
        let clash = self.params.iter().find(|p| {
            p.code == param.code
                && (p.base == param.base
                    || COMMON_BASES.contains(&p.base.as_str())
                    || COMMON_BASES.contains(&param.base.as_str()))
        });
        if let Some(existing) = clash {
            return Err(RegistryError::Duplicate {
                base: param.base.clone(),
                code: param.code.clone(),
                first: existing.url.clone(),
                second: param.url.clone(),
            });
        }
        self.by_base
            .entry(param.base.clone())
            .or_default()
            .push(self.params.len());
        self.params.push(param);
        Ok(())
    }

    /// Marks each parameter whose values are kept in another's of the same base
    /// ([`SearchParameter::kept_in`]). A parameter that keeps others' values is not kept in
    /// a third one.
    fn share_values(&mut self) {
        let kept: Vec<Option<(String, Keeping)>> = self
            .params
            .iter()
            .map(|param| {
                self.by_base.get(&param.base)?.iter().find_map(|&owner| {
                    let owner = &self.params[owner];
                    let keeping = owner.keeping(param)?;
                    Some((owner.code.clone(), keeping))
                })
            })
            .collect();
        let owners: Vec<(String, String)> = self
            .params
            .iter()
            .zip(&kept)
            .filter_map(|(param, kept)| Some((param.base.clone(), kept.as_ref()?.0.clone())))
            .collect();
        for (param, kept) in self.params.iter_mut().zip(kept) {
            let owns = owners
                .iter()
                .any(|(base, owner)| *base == param.base && *owner == param.code);
            if !owns {
                param.kept_in = kept;
            }
        }
        let sounding: Vec<(String, String)> = self
            .params
            .iter()
            .filter_map(|p| match p.kept_in.as_ref()? {
                (owner, Keeping::Sound) => Some((p.base.clone(), owner.clone())),
                _ => None,
            })
            .collect();
        for param in &mut self.params {
            param.sounds = sounding
                .iter()
                .any(|(base, owner)| *base == param.base && *owner == param.code);
        }
    }

    /// Every component must name a loaded, indexable definition.
    fn check_components(&self) -> Result<(), RegistryError> {
        for param in &self.params {
            for component in &param.components {
                let usable = self.by_url(&component.definition).is_some_and(|p| {
                    !matches!(
                        p.kind,
                        SearchParamType::Composite | SearchParamType::Special
                    )
                });
                if !usable {
                    return Err(RegistryError::Invalid {
                        definition: param.url.clone(),
                        problem: format!(
                            "component definition {} is not a loaded parameter of a simple type",
                            component.definition
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The parameter `code` of `resource_type` (its own, or one every type has).
    pub fn get(&self, resource_type: &str, code: &str) -> Option<&SearchParameter> {
        self.for_type(resource_type).find(|p| p.code == code)
    }

    /// The parameters of `resource_type`: its own, sorted by code, then the common ones.
    pub fn for_type<'r>(
        &'r self,
        resource_type: &str,
    ) -> impl Iterator<Item = &'r SearchParameter> + 'r {
        let domain = !["Binary", "Bundle", "Parameters"].contains(&resource_type);
        let own = self.by_base.get(resource_type).map(Vec::as_slice);
        let resource = self.by_base.get("Resource").map(Vec::as_slice);
        let domain_resource = self
            .by_base
            .get("DomainResource")
            .filter(|_| domain)
            .map(Vec::as_slice);
        [own, resource, domain_resource]
            .into_iter()
            .flatten()
            .flatten()
            .map(|i| &self.params[*i])
    }

    /// A parameter by its definition's url (for a definition with several bases, the first).
    pub fn by_url(&self, url: &str) -> Option<&SearchParameter> {
        self.params.iter().find(|p| p.url == url)
    }

    /// Every parameter, in the order the definitions were given.
    pub fn all(&self) -> &[SearchParameter] {
        &self.params
    }
}

/// The parameters (one per base) of one SearchParameter resource.
fn parse_definition(definition: &Value) -> Result<Vec<SearchParameter>, RegistryError> {
    let name = definition["url"]
        .as_str()
        .or_else(|| definition["id"].as_str())
        .unwrap_or("(without url)")
        .to_string();
    let invalid = |problem: &str| RegistryError::Invalid {
        definition: name.clone(),
        problem: problem.to_string(),
    };
    if definition["resourceType"] != "SearchParameter" {
        return Err(invalid("not a SearchParameter resource"));
    }
    let url = definition["url"]
        .as_str()
        .ok_or_else(|| invalid("no url"))?;
    let code = definition["code"]
        .as_str()
        .filter(|c| !c.is_empty() && !c.contains([' ', ',', ':', '.', '=', '&', '?']))
        .ok_or_else(|| invalid("no code, or a code that cannot be a query parameter name"))?;
    let kind = definition["type"]
        .as_str()
        .and_then(SearchParamType::from_code)
        .ok_or_else(|| invalid("no type, or an unknown one"))?;
    let bases = strings(&definition["base"]);
    if bases.is_empty() {
        return Err(invalid("no base"));
    }
    let expression = definition["expression"]
        .as_str()
        .map(Expression::parse)
        .transpose()
        .map_err(|error| RegistryError::Expression {
            definition: name.clone(),
            error,
        })?;
    if expression.is_none()
        && !matches!(kind, SearchParamType::Special)
        && !bases.iter().all(|b| COMMON_BASES.contains(&b.as_str()))
    {
        return Err(invalid("no expression"));
    }
    let components = definition["component"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|component| {
            let definition = component["definition"]
                .as_str()
                .ok_or_else(|| invalid("a component without definition"))?;
            let text = component["expression"]
                .as_str()
                .ok_or_else(|| invalid("a component without expression"))?;
            let expression =
                Expression::parse(text).map_err(|error| RegistryError::Expression {
                    definition: name.clone(),
                    error,
                })?;
            Ok(Component {
                definition: definition.to_string(),
                expression,
            })
        })
        .collect::<Result<Vec<_>, RegistryError>>()?;
    if (kind == SearchParamType::Composite) == components.is_empty() {
        return Err(invalid(
            "a composite parameter needs components, and only a composite has them",
        ));
    }

    let mut params = Vec::with_capacity(bases.len());
    for base in bases {
        let expression = match &expression {
            Some(expression) => Some(expression.for_type(&base).ok_or_else(|| {
                invalid(&format!("the expression has no branch for base {base}"))
            })?),
            None => None,
        };
        let selection = expression
            .as_ref()
            .map(|e| describe(&base, e.as_str()))
            .unwrap_or_default();
        params.push(SearchParameter {
            url: url.to_string(),
            code: code.to_string(),
            base,
            kind,
            expression,
            target: strings(&definition["target"]),
            modifiers: strings(&definition["modifier"]),
            comparators: strings(&definition["comparator"]),
            components: components.clone(),
            phonetic: definition["xpathUsage"] == "phonetic",
            description: definition["description"].as_str().map(str::to_string),
            selection,
            kept_in: None,
            sounds: false,
        });
    }
    Ok(params)
}

/// The strings of a JSON array (anything else: none).
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}
