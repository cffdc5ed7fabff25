//! From the request's (name, value) pairs to a [`SearchQuery`]: names resolved against the
//! registry (chains and `_has` link by link), values typed, result parameters read, and
//! what cannot be used either refused or, in lenient handling, set aside.

use super::ast::{ChainTarget, Condition, Handling, SearchOptions, SearchQuery, TypeQuery};
use super::error::{Problem, SearchError};
use super::modifiers::{self, Modifier};
use super::syntax::served_type;
use super::values::{self, Context};
use crate::ResourceType;
use crate::search::{Registry, SearchParamType, SearchParameter};

/// Result parameters that may appear once.
const SINGLE: [&str; 7] = [
    "_type",
    "_sort",
    "_count",
    "_total",
    "_summary",
    "_elements",
    "_cursor",
];

/// Parameters of the specification Ferrum does not implement, besides the registry's
/// definitions without an expression (`_text`, `_content`, `_query`, `_filter`).
const UNSUPPORTED: [&str; 3] = ["_contained", "_containedType", "_list"];

/// The most links a chain or `_has` may have (`a.b.c` has two): deeper ones are refused
/// before they cost anything.
const MAX_LINKS: usize = 8;

/// Where a parameter goes in the canonical rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Rank {
    Type,
    Criterion,
    Include,
    RevInclude,
    Sort,
    Count,
    Total,
    Summary,
    Elements,
}

/// The state of one parse.
pub(super) struct Parser<'r, 'o> {
    pub(super) registry: &'r Registry,
    pub(super) options: &'o SearchOptions<'o>,
    pub(super) ignored: Vec<SearchError>,
    pub(super) canonical: Vec<(Rank, String, String)>,
}

impl<'r> SearchQuery<'r> {
    /// Parses a search request: the type searched (`None` for a system-level search), its
    /// parameters in order (from the query string or a form body, percent-decoded; repeated
    /// names are AND, commas OR), against `registry`.
    ///
    /// Unknown and unsupported parameters and modifiers, names of types this server does not
    /// store, and empty values are left out and listed in [`SearchQuery::ignored`] with
    /// [`Handling::Lenient`], and are an error with [`Handling::Strict`]. Malformed values,
    /// chains and `_has`, and repeated result parameters are always an error. `_format` and
    /// `_pretty` are not search parameters and are passed over.
    pub fn parse<K, V>(
        registry: &'r Registry,
        resource_type: Option<ResourceType>,
        params: &[(K, V)],
        options: &SearchOptions<'_>,
    ) -> Result<SearchQuery<'r>, SearchError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(name, value)| (name.as_ref(), value.as_ref()))
            .collect();
        for single in SINGLE {
            if params.iter().filter(|(name, _)| *name == single).count() > 1 {
                return Err(SearchError::new(single, Problem::Repeated));
            }
        }
        let mut parser = Parser {
            registry,
            options,
            ignored: Vec::new(),
            canonical: Vec::new(),
        };
        let types = match resource_type {
            Some(t) => vec![t],
            None => {
                let value = params.iter().find(|(name, _)| *name == "_type");
                parser.search_types(value.map(|(_, v)| *v))?
            }
        };
        let mut query = SearchQuery {
            resource_type,
            types: types
                .iter()
                .map(|&resource_type| TypeQuery {
                    resource_type,
                    criteria: Vec::new(),
                    sort: Vec::new(),
                })
                .collect(),
            include: Vec::new(),
            revinclude: Vec::new(),
            count: options.default_count.min(options.max_count),
            total: None,
            summary: None,
            elements: None,
            cursor: None,
            ignored: Vec::new(),
            canonical: Vec::new(),
        };
        for &(name, value) in &params {
            parser.param(&mut query, &types, name, value)?;
        }
        parser
            .canonical
            .push((Rank::Count, "_count".to_string(), query.count.to_string()));
        // Stable: criteria of the same name, and includes, keep the order they were given.
        parser
            .canonical
            .sort_by(|(rank_a, name_a, _), (rank_b, name_b, _)| {
                rank_a.cmp(rank_b).then_with(|| match rank_a {
                    Rank::Criterion => name_a.cmp(name_b),
                    _ => std::cmp::Ordering::Equal,
                })
            });
        query.canonical = parser
            .canonical
            .into_iter()
            .map(|(_, name, value)| (name, value))
            .collect();
        query.ignored = parser.ignored;
        Ok(query)
    }
}

impl<'r> Parser<'r, '_> {
    /// Sets an ignorable problem aside in lenient handling; anything else is returned.
    pub(super) fn report(&mut self, error: SearchError) -> Result<(), SearchError> {
        if error.is_ignorable() && self.options.handling == Handling::Lenient {
            self.ignored.push(error);
            Ok(())
        } else {
            Err(error)
        }
    }

    /// One request parameter.
    fn param(
        &mut self,
        query: &mut SearchQuery<'r>,
        types: &[ResourceType],
        name: &str,
        value: &str,
    ) -> Result<(), SearchError> {
        let (head, modifier) = match name.split_once(':') {
            Some((head, modifier)) if head.starts_with('_') && head != "_has" => {
                (head, Some(modifier))
            }
            _ => (name, None),
        };
        let result = matches!(
            head,
            "_include"
                | "_revinclude"
                | "_sort"
                | "_count"
                | "_total"
                | "_summary"
                | "_elements"
                | "_cursor"
        );
        match head {
            "_format" | "_pretty" => return Ok(()),
            // Read before the others, at system level.
            "_type" if query.resource_type.is_none() && modifier.is_none() => return Ok(()),
            "_type" => {
                let problem = match modifier {
                    Some(m) => Problem::UnknownModifier {
                        modifier: m.to_string(),
                    },
                    None => Problem::UnknownParameter {
                        resource_type: query.resource_type,
                    },
                };
                return self.report(SearchError::new(name, problem));
            }
            _ if UNSUPPORTED.contains(&head) => {
                return self.report(SearchError::new(name, Problem::UnsupportedParameter));
            }
            _ => {}
        }
        if value.is_empty() {
            return self.report(SearchError::new(name, Problem::EmptyValue));
        }
        if !result {
            return self.criterion(query, types, name, value);
        }
        let iterate = match (head, modifier) {
            (_, None) => false,
            ("_include" | "_revinclude", Some("iterate")) => true,
            (_, Some(m)) => {
                let problem = Problem::UnknownModifier {
                    modifier: m.to_string(),
                };
                return self.report(SearchError::new(name, problem));
            }
        };
        match head {
            "_include" => {
                let found = self.include(name, value, iterate, false, types)?;
                query.include.extend(found);
            }
            "_revinclude" => {
                let found = self.include(name, value, iterate, true, types)?;
                query.revinclude.extend(found);
            }
            "_sort" => self.sort(query, value)?,
            "_count" => query.count = self.count(value)?,
            "_total" => query.total = Some(self.total(value)?),
            "_summary" => query.summary = Some(self.summary(value)?),
            "_elements" => query.elements = Some(self.elements(value)?),
            _ => query.cursor = Some(value.to_string()),
        }
        Ok(())
    }

    /// A criterion, resolved for every type searched; left out as a whole when any type
    /// cannot use it.
    fn criterion(
        &mut self,
        query: &mut SearchQuery<'r>,
        types: &[ResourceType],
        name: &str,
        value: &str,
    ) -> Result<(), SearchError> {
        let mut conditions = Vec::with_capacity(types.len());
        for &resource_type in types {
            match self.condition(resource_type, name, value, 0) {
                Ok(condition) => conditions.push(condition),
                Err(problem) => return self.report(SearchError::new(name, problem)),
            }
        }
        for (type_query, condition) in query.types.iter_mut().zip(conditions) {
            type_query.criteria.push(condition);
        }
        self.canonical
            .push((Rank::Criterion, name.to_string(), value.to_string()));
        Ok(())
    }

    fn context(&self) -> Context<'_, 'r> {
        Context {
            registry: self.registry,
            options: self.options,
        }
    }

    /// The condition `name=value` puts on a resource of `resource_type`, `depth` links into
    /// a chain or `_has`.
    pub(super) fn condition(
        &self,
        resource_type: ResourceType,
        name: &str,
        value: &str,
        depth: usize,
    ) -> Result<Condition<'r>, Problem> {
        if depth > MAX_LINKS {
            return Err(Problem::Invalid {
                reason: format!("a chain or `_has` may have at most {MAX_LINKS} links"),
            });
        }
        if let Some(rest) = name.strip_prefix("_has:") {
            return self.has(resource_type, rest, value, depth);
        }
        let (link, rest) = match name.split_once('.') {
            Some((link, rest)) => (link, Some(rest)),
            None => (name, None),
        };
        let (code, modifier) = match link.split_once(':') {
            Some((code, modifier)) => (code, Some(modifier)),
            None => (link, None),
        };
        if code.is_empty() || rest.is_some_and(str::is_empty) {
            return Err(Problem::Invalid {
                reason: "a parameter name, or a link of a chain, is empty".to_string(),
            });
        }
        let param = self.lookup(resource_type, code)?;
        let modifier = modifier.map(|m| modifiers::resolve(param, m)).transpose()?;
        match rest {
            None => Ok(Condition::Match {
                param,
                test: values::test(self.context(), param, modifier, value)?,
            }),
            Some(rest) => self.chain(param, modifier, rest, value, depth),
        }
    }

    /// `param` (a reference) chained into the parameters `rest` of the types it points at.
    fn chain(
        &self,
        param: &'r SearchParameter,
        modifier: Option<Modifier<'_>>,
        rest: &str,
        value: &str,
        depth: usize,
    ) -> Result<Condition<'r>, Problem> {
        let code = param.code();
        if param.kind() != SearchParamType::Reference {
            return Err(Problem::Invalid {
                reason: format!("`{code}` is not a reference parameter, so it cannot be chained"),
            });
        }
        let candidates: Vec<ResourceType> = match modifier {
            Some(Modifier::Type(name)) => {
                vec![served_type(name, "a resource type")?]
            }
            Some(_) => {
                return Err(Problem::Invalid {
                    reason: format!(
                        "a chained `{code}` may only be qualified by a resource type (`{code}:Type.`)"
                    ),
                });
            }
            None if param.target().is_empty() => ResourceType::ALL.to_vec(),
            None => {
                let served = modifiers::served_targets(param);
                if served.is_empty() {
                    return Err(Problem::UnservedType);
                }
                served
            }
        };
        let mut targets = Vec::with_capacity(candidates.len());
        let mut lacking = Vec::new();
        for &resource_type in &candidates {
            match self.condition(resource_type, rest, value, depth + 1) {
                Ok(condition) => targets.push(ChainTarget {
                    resource_type,
                    condition,
                }),
                Err(Problem::UnknownParameter { .. }) if candidates.len() > 1 => {
                    lacking.push(resource_type);
                }
                Err(problem) => return Err(problem),
            }
        }
        if lacking.is_empty() {
            return Ok(Condition::Chain { param, targets });
        }
        if targets.is_empty() {
            return Err(Problem::UnknownParameter {
                resource_type: None,
            });
        }
        let names = |types: &[ResourceType]| {
            types
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(Problem::Invalid {
            reason: format!(
                "`{code}` may point at {}, and the rest of the chain does not apply to {}: \
                 name the type with `{code}:Type`",
                names(&candidates),
                names(&lacking)
            ),
        })
    }

    /// `_has:Type:reference:rest`: some `Type` points at the resource through `reference`
    /// and meets `rest`.
    fn has(
        &self,
        resource_type: ResourceType,
        spec: &str,
        value: &str,
        depth: usize,
    ) -> Result<Condition<'r>, Problem> {
        let syntax = || Problem::Invalid {
            reason: "reverse chaining is `_has:Type:reference:parameter`".to_string(),
        };
        let (source, spec) = spec.split_once(':').ok_or_else(syntax)?;
        let (code, rest) = spec.split_once(':').ok_or_else(syntax)?;
        if code.is_empty() || rest.is_empty() {
            return Err(syntax());
        }
        let source = served_type(source, "`_has:Type:reference:parameter`")?;
        let param = self.lookup(source, code)?;
        let points_here =
            param.target().is_empty() || param.target().iter().any(|t| t == resource_type.as_str());
        if param.kind() != SearchParamType::Reference || !points_here {
            return Err(Problem::Invalid {
                reason: format!("`{code}` of {source} is not a reference to {resource_type}"),
            });
        }
        Ok(Condition::Has {
            source,
            param,
            condition: Box::new(self.condition(source, rest, value, depth + 1)?),
        })
    }

    /// A parameter of `resource_type` that can be searched.
    pub(super) fn lookup(
        &self,
        resource_type: ResourceType,
        code: &str,
    ) -> Result<&'r SearchParameter, Problem> {
        let param =
            self.registry
                .get(resource_type.as_str(), code)
                .ok_or(Problem::UnknownParameter {
                    resource_type: Some(resource_type),
                })?;
        if param.expression().is_none() || param.kind() == SearchParamType::Special {
            return Err(Problem::UnsupportedParameter);
        }
        Ok(param)
    }
}
