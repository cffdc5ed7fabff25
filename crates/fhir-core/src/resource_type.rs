//! The registry of resource types Ferrum serves.

use std::fmt;
use std::str::FromStr;

/// A resource type Ferrum stores and serves. Adding a variant here (and its
/// StructureDefinition in `fhir-profiles/`) is all it takes to serve another type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Account,
    Group,
    Invoice,
    Organization,
    Patient,
    Practitioner,
}

impl ResourceType {
    /// Every supported type, in alphabetical order (the order of the CapabilityStatement).
    pub const ALL: [ResourceType; 6] = [
        ResourceType::Account,
        ResourceType::Group,
        ResourceType::Invoice,
        ResourceType::Organization,
        ResourceType::Patient,
        ResourceType::Practitioner,
    ];

    /// The type name as FHIR spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Account => "Account",
            ResourceType::Group => "Group",
            ResourceType::Invoice => "Invoice",
            ResourceType::Organization => "Organization",
            ResourceType::Patient => "Patient",
            ResourceType::Practitioner => "Practitioner",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not a type Ferrum serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource type is not supported")]
pub struct UnsupportedType;

impl FromStr for ResourceType {
    type Err = UnsupportedType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(UnsupportedType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in ResourceType::ALL {
            assert_eq!(t.as_str().parse::<ResourceType>(), Ok(t));
        }
        assert!("patient".parse::<ResourceType>().is_err());
        assert!("Observation".parse::<ResourceType>().is_err());
    }
}
