//! Expansion of the required-binding ValueSets from their `compose` and the embedded
//! CodeSystems, into code sets the walker can test membership in without allocating.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// What a required value set allows.
#[derive(Debug)]
pub(super) enum Content {
    /// Every allowed code, with the code systems it is allowed from.
    Codes(HashMap<Box<str>, Vec<Box<str>>>),
    /// All of BCP 13 (MIME types), which no file enumerates: checked by syntax.
    MimeType,
    /// All of ISO 4217 (currencies), which no file enumerates: checked by syntax.
    Currency,
}

/// One expanded required value set.
#[derive(Debug)]
pub(super) struct CodeSet {
    /// Canonical url without version, for diagnostics.
    pub(super) url: Box<str>,
    pub(super) content: Content,
}

impl CodeSet {
    /// Whether `code` is allowed from any system (for `code`-typed elements, which carry none).
    pub(super) fn contains_code(&self, code: &str) -> bool {
        match &self.content {
            Content::Codes(codes) => codes.contains_key(code),
            Content::MimeType => is_mime_type(code),
            Content::Currency => is_currency(code),
        }
    }

    /// Whether `system|code` is allowed (for Coding, CodeableConcept and Quantity).
    pub(super) fn contains(&self, system: &str, code: &str) -> bool {
        match &self.content {
            Content::Codes(codes) => codes
                .get(code)
                .is_some_and(|systems| systems.iter().any(|s| &**s == system)),
            Content::MimeType => system == BCP13 && is_mime_type(code),
            Content::Currency => system == ISO4217 && is_currency(code),
        }
    }
}

const BCP13: &str = "urn:ietf:bcp:13";
const ISO4217: &str = "urn:iso:std:iso:4217";

/// RFC 6838 `type/subtype`, optionally followed by `;` parameters.
fn is_mime_type(code: &str) -> bool {
    let essence = code.split(';').next().unwrap_or_default().trim_end();
    let restricted_name = |name: &str| {
        name.len() <= 127
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    essence
        .split_once('/')
        .is_some_and(|(kind, subtype)| restricted_name(kind) && restricted_name(subtype))
}

/// ISO 4217 alphabetic codes: three capital letters.
fn is_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// Expands value sets by url from the embedded ValueSets and CodeSystems.
pub(super) struct Expander<'a> {
    value_sets: HashMap<&'a str, &'a Value>,
    code_systems: HashMap<&'a str, &'a Value>,
}

type Codes = HashMap<Box<str>, Vec<Box<str>>>;

impl<'a> Expander<'a> {
    pub(super) fn new(value_sets: &'a [Value], code_systems: &'a [Value]) -> Result<Self, String> {
        let by_url = |resources: &'a [Value]| {
            resources
                .iter()
                .map(|r| match r["url"].as_str() {
                    Some(url) => Ok((url, r)),
                    None => Err("a ValueSet or CodeSystem has no url".to_string()),
                })
                .collect::<Result<HashMap<_, _>, _>>()
        };
        Ok(Expander {
            value_sets: by_url(value_sets)?,
            code_systems: by_url(code_systems)?,
        })
    }

    /// Expands the value set at `url` (a `|version` suffix is ignored).
    pub(super) fn expand(&self, url: &str) -> Result<CodeSet, String> {
        let url = url.split('|').next().unwrap_or(url);
        let content = match self.value_sets.get(url).map(|vs| &vs["compose"]["include"]) {
            // A set that is exactly one grammar-defined external system.
            Some(Value::Array(includes))
                if includes.len() == 1 && includes[0].get("concept").is_none() =>
            {
                match includes[0]["system"].as_str() {
                    Some(BCP13) => Content::MimeType,
                    Some(ISO4217) => Content::Currency,
                    _ => Content::Codes(self.codes(url, &mut Vec::new())?),
                }
            }
            _ => Content::Codes(self.codes(url, &mut Vec::new())?),
        };
        Ok(CodeSet {
            url: url.into(),
            content,
        })
    }

    fn codes(&self, url: &str, visiting: &mut Vec<String>) -> Result<Codes, String> {
        let url = url.split('|').next().unwrap_or(url);
        if visiting.iter().any(|v| v == url) {
            return Err(format!("value set {url} includes itself"));
        }
        let vs = self
            .value_sets
            .get(url)
            .ok_or_else(|| format!("value set {url} is not embedded"))?;
        visiting.push(url.to_string());
        let mut codes = Codes::new();
        let compose = &vs["compose"];
        for include in compose["include"].as_array().into_iter().flatten() {
            for (code, system) in self.part(url, include, visiting)? {
                add(&mut codes, code, system);
            }
        }
        for exclude in compose["exclude"].as_array().into_iter().flatten() {
            for (code, system) in self.part(url, exclude, visiting)? {
                if let Some(systems) = codes.get_mut(code.as_str()) {
                    systems.retain(|s| **s != *system);
                    if systems.is_empty() {
                        codes.remove(code.as_str());
                    }
                }
            }
        }
        visiting.pop();
        Ok(codes)
    }

    /// The `(code, system)` pairs one `compose.include` or `compose.exclude` entry selects.
    fn part(
        &self,
        url: &str,
        part: &Value,
        visiting: &mut Vec<String>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut selected: Option<Vec<(String, String)>> = None;
        let mut intersect = |pairs: Vec<(String, String)>| {
            selected = Some(match selected.take() {
                None => pairs,
                Some(previous) => previous.into_iter().filter(|p| pairs.contains(p)).collect(),
            });
        };
        if let Some(system) = part["system"].as_str() {
            let pairs = if let Some(concepts) = part["concept"].as_array() {
                concepts
                    .iter()
                    .filter_map(|c| c["code"].as_str())
                    .map(|code| (code.to_string(), system.to_string()))
                    .collect()
            } else {
                let cs = self.code_systems.get(system).ok_or_else(|| {
                    format!("{url} includes code system {system}, which is not embedded")
                })?;
                if cs["content"].as_str() != Some("complete") {
                    return Err(format!(
                        "{url} includes code system {system}, which is not complete"
                    ));
                }
                let mut all = Vec::new();
                flatten(&cs["concept"], &mut |concept| {
                    if let Some(code) = concept["code"].as_str() {
                        all.push((code.to_string(), system.to_string()));
                    }
                });
                match part["filter"].as_array() {
                    Some(filters) => filter(url, system, cs, filters, all)?,
                    None => all,
                }
            };
            intersect(pairs);
        }
        for nested in part["valueSet"].as_array().into_iter().flatten() {
            let nested = nested
                .as_str()
                .ok_or_else(|| format!("{url}: valueSet is not a string"))?;
            let pairs = self
                .codes(nested, visiting)?
                .into_iter()
                .flat_map(|(code, systems)| {
                    systems
                        .into_iter()
                        .map(move |system| (code.to_string(), system.to_string()))
                })
                .collect();
            intersect(pairs);
        }
        Ok(selected.unwrap_or_default())
    }
}

fn add(codes: &mut Codes, code: String, system: String) {
    let systems = codes.entry(code.into_boxed_str()).or_default();
    if !systems.iter().any(|s| **s == *system) {
        systems.push(system.into_boxed_str());
    }
}

/// Calls `visit` on every concept of a (possibly nested) `concept` array.
fn flatten(concepts: &Value, visit: &mut dyn FnMut(&Value)) {
    for concept in concepts.as_array().into_iter().flatten() {
        visit(concept);
        flatten(&concept["concept"], visit);
    }
}

/// Applies `is-a` / `descendent-of` filters on the concept hierarchy; other filters are refused
/// so that an expansion is never silently wrong.
fn filter(
    url: &str,
    system: &str,
    cs: &Value,
    filters: &[Value],
    mut pairs: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    for f in filters {
        let (Some(property), Some(op), Some(value)) = (
            f["property"].as_str(),
            f["op"].as_str(),
            f["value"].as_str(),
        ) else {
            return Err(format!("{url}: malformed filter"));
        };
        if property != "concept" || !matches!(op, "is-a" | "descendent-of") {
            return Err(format!(
                "{url}: filter {property} {op} on {system} is not supported"
            ));
        }
        let root =
            find(&cs["concept"], value).ok_or_else(|| format!("{url}: filter on unknown code"))?;
        let mut allowed = HashSet::new();
        if op == "is-a" {
            allowed.insert(value.to_string());
        }
        flatten(&root["concept"], &mut |c| {
            if let Some(code) = c["code"].as_str() {
                allowed.insert(code.to_string());
            }
        });
        pairs.retain(|(code, _)| allowed.contains(code));
    }
    Ok(pairs)
}

fn find<'v>(concepts: &'v Value, code: &str) -> Option<&'v Value> {
    concepts.as_array()?.iter().find_map(|c| {
        if c["code"].as_str() == Some(code) {
            Some(c)
        } else {
            find(&c["concept"], code)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expands_systems_concepts_nesting_filters_and_excludes() {
        let cs = json!({
            "url": "http://example.org/cs", "content": "complete",
            "concept": [
                {"code": "a", "concept": [{"code": "a1", "concept": [{"code": "a11"}]}]},
                {"code": "b"}
            ]
        });
        let value_sets = [
            json!({"url": "http://example.org/all", "compose": {"include": [{"system": "http://example.org/cs"}]}}),
            json!({"url": "http://example.org/below-a", "compose": {"include": [{
                "system": "http://example.org/cs",
                "filter": [{"property": "concept", "op": "descendent-of", "value": "a"}]
            }]}}),
            json!({"url": "http://example.org/mixed", "compose": {
                "include": [
                    {"valueSet": ["http://example.org/all|1"]},
                    {"system": "http://other", "concept": [{"code": "z"}]}
                ],
                "exclude": [{"system": "http://example.org/cs", "concept": [{"code": "b"}]}]
            }}),
        ];
        let code_systems = [cs];
        let expander = Expander::new(&value_sets, &code_systems).expect("expander");

        let all = expander
            .expand("http://example.org/all|4.0.1")
            .expect("all");
        for code in ["a", "a1", "a11", "b"] {
            assert!(all.contains("http://example.org/cs", code), "{code}");
        }
        assert!(!all.contains("http://other", "a"));

        let below = expander
            .expand("http://example.org/below-a")
            .expect("below");
        assert!(!below.contains_code("a"));
        assert!(below.contains_code("a1") && below.contains_code("a11"));
        assert!(!below.contains_code("b"));

        let mixed = expander.expand("http://example.org/mixed").expect("mixed");
        assert!(mixed.contains_code("a") && mixed.contains("http://other", "z"));
        assert!(!mixed.contains_code("b"));
    }

    #[test]
    fn grammar_based_systems() {
        assert!(is_mime_type("image/png"));
        assert!(is_mime_type("text/plain; charset=UTF-8"));
        assert!(is_mime_type("application/fhir+json"));
        assert!(!is_mime_type("png"));
        assert!(!is_mime_type("image/"));
        assert!(is_currency("EUR"));
        assert!(!is_currency("eur"));
    }
}
