//! The parameters that shape the result rather than select it
//! (http://hl7.org/fhir/R4/search.html#return): `_type`, `_include`, `_revinclude`, `_sort`,
//! `_count`, `_total`, `_summary`, `_elements`.

use super::ast::{Include, SearchQuery, SortKey, Summary, Total};
use super::error::{Problem, SearchError};
use super::parse::{Parser, Rank};
use super::syntax::{served_type, split};
use crate::ResourceType;
use crate::search::{SearchParamType, SearchParameter};

const TYPES: &str = "resource type names separated by commas";
const INCLUDE: &str = "Type:parameter, Type:parameter:targetType, Type:* or *";
const SORT: &str = "parameter names separated by commas, each optionally after `-`";
const ELEMENTS: &str = "element names separated by commas";

impl<'r> Parser<'r, '_> {
    /// The types of a system-level search: `_type`, or every type served.
    pub(super) fn search_types(
        &mut self,
        value: Option<&str>,
    ) -> Result<Vec<ResourceType>, SearchError> {
        let error = |problem| SearchError::new("_type", problem);
        let Some(value) = value else {
            return Ok(ResourceType::ALL.to_vec());
        };
        if value.is_empty() {
            self.report(error(Problem::EmptyValue))?;
            return Ok(ResourceType::ALL.to_vec());
        }
        let mut types = Vec::new();
        for name in split(value, ',') {
            match served_type(name, TYPES) {
                Ok(t) if !types.contains(&t) => types.push(t),
                Ok(_) => {}
                Err(problem) => self.report(error(problem))?,
            }
        }
        let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        self.canonical
            .push((Rank::Type, "_type".to_string(), names.join(",")));
        Ok(types)
    }

    /// One `_include` or `_revinclude` value; what lenient handling sets aside gives none.
    pub(super) fn include(
        &mut self,
        name: &str,
        value: &str,
        iterate: bool,
        reverse: bool,
        searched: &[ResourceType],
    ) -> Result<Vec<Include<'r>>, SearchError> {
        match self.resolve_include(value, iterate, reverse, searched) {
            Ok(includes) => {
                let rank = if reverse {
                    Rank::RevInclude
                } else {
                    Rank::Include
                };
                self.canonical
                    .push((rank, name.to_string(), value.to_string()));
                Ok(includes)
            }
            Err(problem) => {
                self.report(SearchError::new(name, problem))?;
                Ok(Vec::new())
            }
        }
    }

    fn resolve_include(
        &self,
        value: &str,
        iterate: bool,
        reverse: bool,
        searched: &[ResourceType],
    ) -> Result<Vec<Include<'r>>, Problem> {
        let include = |source_type, params: Vec<&'r SearchParameter>| {
            (!params.is_empty()).then_some(Include {
                source_type,
                params,
                target_type: None,
                iterate,
            })
        };
        if value == "*" {
            let sources: &[ResourceType] = if reverse {
                &ResourceType::ALL
            } else {
                searched
            };
            return Ok(sources
                .iter()
                .filter_map(|&source| include(source, self.references(source, reverse, searched)))
                .collect());
        }
        let invalid = || Problem::InvalidValue { expected: INCLUDE };
        let (source, code, target) = match value.split(':').collect::<Vec<_>>()[..] {
            [source, code] => (source, code, None),
            [source, code, target] => (source, code, Some(target)),
            _ => return Err(invalid()),
        };
        let source = served_type(source, INCLUDE)?;
        let target_type = target.map(|t| served_type(t, INCLUDE)).transpose()?;
        let params = if code == "*" {
            self.references(source, reverse, searched)
        } else {
            let param =
                self.registry
                    .get(source.as_str(), code)
                    .ok_or(Problem::UnknownParameter {
                        resource_type: None,
                    })?;
            if param.kind() != SearchParamType::Reference || param.expression().is_none() {
                return Err(Problem::InvalidValue {
                    expected: "a reference parameter after the type",
                });
            }
            vec![param]
        };
        if let Some(target) = target_type
            && !params.iter().all(|p| can_point_at(p, target))
        {
            return Err(Problem::InvalidValue {
                expected: "a target type the parameter can point at",
            });
        }
        Ok(include(source, params)
            .map(|include| Include {
                target_type,
                ..include
            })
            .into_iter()
            .collect())
    }

    /// The reference parameters of `source`; for a reverse include, those that can point
    /// at one of the types searched.
    fn references(
        &self,
        source: ResourceType,
        reverse: bool,
        searched: &[ResourceType],
    ) -> Vec<&'r SearchParameter> {
        self.registry
            .for_type(source.as_str())
            .filter(|p| p.kind() == SearchParamType::Reference && p.expression().is_some())
            .filter(|p| !reverse || searched.iter().any(|&t| can_point_at(p, t)))
            .collect()
    }

    /// `_sort`: each key must be sortable on every type searched; keys that are not are
    /// set aside (lenient) one by one.
    pub(super) fn sort(
        &mut self,
        query: &mut SearchQuery<'r>,
        value: &str,
    ) -> Result<(), SearchError> {
        let mut accepted = Vec::new();
        for key in value.split(',') {
            let (descending, code) = match key.strip_prefix('-') {
                Some(code) => (true, code),
                None => (false, key),
            };
            if code.is_empty() || code.starts_with('-') {
                return Err(SearchError::new(
                    "_sort",
                    Problem::InvalidValue { expected: SORT },
                ));
            }
            let resolved: Result<Vec<&'r SearchParameter>, Problem> = query
                .types
                .iter()
                .map(|t| self.sortable(t.resource_type, code))
                .collect();
            match resolved {
                Ok(params) => {
                    for (type_query, param) in query.types.iter_mut().zip(params) {
                        type_query.sort.push(SortKey { param, descending });
                    }
                    accepted.push(key);
                }
                Err(problem) => self.report(SearchError::new("_sort", problem))?,
            }
        }
        if !accepted.is_empty() {
            self.canonical
                .push((Rank::Sort, "_sort".to_string(), accepted.join(",")));
        }
        Ok(())
    }

    fn sortable(
        &self,
        resource_type: ResourceType,
        code: &str,
    ) -> Result<&'r SearchParameter, Problem> {
        let param = self.lookup(resource_type, code)?;
        if param.kind() == SearchParamType::Composite {
            return Err(Problem::UnsupportedParameter);
        }
        Ok(param)
    }

    /// `_count`: a whole number, lowered to the maximum.
    pub(super) fn count(&mut self, value: &str) -> Result<u32, SearchError> {
        if !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SearchError::new(
                "_count",
                Problem::InvalidValue {
                    expected: "a whole number, 0 or more",
                },
            ));
        }
        // All digits: only a number too large for a u32 fails, and it is over the maximum.
        let count = value.parse::<u32>().unwrap_or(u32::MAX);
        Ok(count.min(self.options.max_count))
    }

    pub(super) fn total(&mut self, value: &str) -> Result<Total, SearchError> {
        let total = match value {
            "none" => Total::None,
            "estimate" => Total::Estimate,
            "accurate" => Total::Accurate,
            _ => {
                return Err(SearchError::new(
                    "_total",
                    Problem::InvalidValue {
                        expected: "none, estimate or accurate",
                    },
                ));
            }
        };
        self.canonical.push((
            Rank::Total,
            "_total".to_string(),
            total.as_str().to_string(),
        ));
        Ok(total)
    }

    pub(super) fn summary(&mut self, value: &str) -> Result<Summary, SearchError> {
        let summary = match value {
            "true" => Summary::True,
            "text" => Summary::Text,
            "data" => Summary::Data,
            "count" => Summary::Count,
            "false" => Summary::False,
            _ => {
                return Err(SearchError::new(
                    "_summary",
                    Problem::InvalidValue {
                        expected: "true, text, data, count or false",
                    },
                ));
            }
        };
        self.canonical.push((
            Rank::Summary,
            "_summary".to_string(),
            summary.as_str().to_string(),
        ));
        Ok(summary)
    }

    /// `_elements`: element names (`identifier`, `name`), or type-qualified ones
    /// (`Patient.name`).
    pub(super) fn elements(&mut self, value: &str) -> Result<Vec<String>, SearchError> {
        let is_name = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let mut elements: Vec<String> = Vec::new();
        for element in value.split(',') {
            let valid = match element.split_once('.') {
                Some((type_name, name)) => super::syntax::is_type_name(type_name) && is_name(name),
                None => is_name(element),
            };
            if !valid {
                return Err(SearchError::new(
                    "_elements",
                    Problem::InvalidValue { expected: ELEMENTS },
                ));
            }
            if !elements.iter().any(|e| e == element) {
                elements.push(element.to_string());
            }
        }
        self.canonical
            .push((Rank::Elements, "_elements".to_string(), elements.join(",")));
        Ok(elements)
    }
}

/// Whether reference parameter `param` may point at `target`.
fn can_point_at(param: &SearchParameter, target: ResourceType) -> bool {
    param.target().is_empty() || param.target().iter().any(|t| t == target.as_str())
}
