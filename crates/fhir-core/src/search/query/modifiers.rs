//! Which modifiers each parameter supports (http://hl7.org/fhir/R4/search.html#modifiers):
//! one table, read by the parser and by the CapabilityStatement listing alike.

use super::error::Problem;
use super::syntax::is_type_name;
use crate::ResourceType;
use crate::search::{SearchParamType, SearchParameter};

/// A modifier the parser acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Modifier<'n> {
    Missing,
    Exact,
    Contains,
    Not,
    Text,
    OfType,
    Identifier,
    Below,
    Above,
    /// `:Patient` on a reference parameter.
    Type(&'n str),
}

/// Modifiers of the specification that Ferrum does not implement, by parameter type: `:in`
/// and `:not-in` need ValueSet expansion and `:below` and `:above` on tokens and references
/// need code system and resource hierarchies, none of which the index holds.
fn unimplemented(kind: SearchParamType) -> &'static [&'static str] {
    match kind {
        SearchParamType::Token => &["in", "not-in", "below", "above"],
        SearchParamType::Reference => &["below", "above"],
        _ => &[],
    }
}

/// Whether the parameter's elements can carry text for `:text` (Coding display,
/// CodeableConcept text, Identifier type text); unknown elements are given the benefit.
fn has_text(param: &SearchParameter) -> bool {
    selects_any(param, &["CodeableConcept", "Coding", "Identifier"])
}

fn selects_any(param: &SearchParameter, types: &[&str]) -> bool {
    param
        .element_types()
        .is_none_or(|selected| selected.iter().any(|t| types.contains(&t.as_str())))
}

/// The modifier `text` (after the colon) on `param`, or why it cannot be used.
pub(super) fn resolve<'n>(param: &SearchParameter, text: &'n str) -> Result<Modifier<'n>, Problem> {
    use SearchParamType as T;
    let unsupported = || Problem::UnsupportedModifier {
        modifier: text.to_string(),
    };
    let modifier = match (param.kind(), text) {
        (_, "missing") => Modifier::Missing,
        (T::String, "exact" | "contains") if param.is_phonetic() => return Err(unsupported()),
        (T::String, "exact") => Modifier::Exact,
        (T::String, "contains") => Modifier::Contains,
        (T::Token, "not") => Modifier::Not,
        (T::Token, "text") if has_text(param) => Modifier::Text,
        (T::Token, "of-type") if selects_any(param, &["Identifier"]) => Modifier::OfType,
        (T::Token, "text" | "of-type") => return Err(unsupported()),
        (T::Reference, "identifier") if selects_any(param, &["Reference"]) => Modifier::Identifier,
        (T::Reference, "identifier") => return Err(unsupported()),
        (T::Reference, name) if is_type_name(name) => {
            let targets = param.target();
            if !targets.is_empty() && !targets.iter().any(|t| t == name) {
                return Err(Problem::Invalid {
                    reason: format!(
                        "`{}` does not point at {name}; it points at {}",
                        param.code(),
                        targets.join(", ")
                    ),
                });
            }
            Modifier::Type(name)
        }
        (T::Uri, "below") => Modifier::Below,
        (T::Uri, "above") => Modifier::Above,
        (kind, name) if unimplemented(kind).contains(&name) => return Err(unsupported()),
        _ => {
            return Err(Problem::UnknownModifier {
                modifier: text.to_string(),
            });
        }
    };
    Ok(modifier)
}

/// The modifiers `param` supports, as written after the colon: `missing` first, then those
/// of its type, then for a reference parameter each type it may point at.
pub fn supported_modifiers(param: &SearchParameter) -> Vec<String> {
    const CANDIDATES: [&str; 9] = [
        "missing",
        "exact",
        "contains",
        "not",
        "text",
        "of-type",
        "identifier",
        "below",
        "above",
    ];
    if param.kind() == SearchParamType::Special {
        return Vec::new();
    }
    let mut out: Vec<String> = CANDIDATES
        .into_iter()
        .filter(|m| resolve(param, m).is_ok())
        .map(str::to_string)
        .collect();
    if param.kind() == SearchParamType::Reference {
        out.extend(param.target().iter().cloned());
    }
    out
}

/// The served types among the declared targets of a reference parameter, in
/// [`ResourceType`] order.
pub(super) fn served_targets(param: &SearchParameter) -> Vec<ResourceType> {
    let mut served: Vec<ResourceType> = param
        .target()
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect();
    served.sort();
    served
}
