//! Logical ids and version ids (http://hl7.org/fhir/R4/datatypes.html#id).

use std::fmt;
use std::str::FromStr;

/// A logical resource id: 1 to 64 characters of `[A-Za-z0-9\-.]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id(String);

/// The text is not a valid FHIR id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an id is 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'")]
pub struct InvalidId;

impl Id {
    /// A fresh server-assigned id (a random UUID, which is a valid FHIR id).
    pub fn generate() -> Self {
        Id(uuid::Uuid::new_v4().to_string())
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Id {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if valid {
            Ok(Id(s.to_owned()))
        } else {
            Err(InvalidId)
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version id: Ferrum numbers the versions of a resource 1, 2, 3, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionId(i64);

impl VersionId {
    /// The first version of every resource.
    pub const FIRST: VersionId = VersionId(1);

    /// Wraps a stored version number (always >= 1).
    pub fn new(n: i64) -> Self {
        VersionId(n)
    }

    /// The version number.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The version after this one.
    pub fn next(self) -> Self {
        VersionId(self.0 + 1)
    }
}

/// The text is not a version id Ferrum could have issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a version id is a positive whole number")]
pub struct InvalidVersionId;

impl FromStr for VersionId {
    type Err = InvalidVersionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<i64>() {
            Ok(n) if n >= 1 && !s.starts_with('+') => Ok(VersionId(n)),
            _ => Err(InvalidVersionId),
        }
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_r4_rule() {
        assert!("example".parse::<Id>().is_ok());
        assert!("a-b.C9".parse::<Id>().is_ok());
        assert!("x".repeat(64).parse::<Id>().is_ok());
        assert!("x".repeat(65).parse::<Id>().is_err());
        assert!("".parse::<Id>().is_err());
        assert!("a_b".parse::<Id>().is_err());
        assert!("a b".parse::<Id>().is_err());
        assert!(Id::generate().as_str().parse::<Id>().is_ok());
    }

    #[test]
    fn version_ids_are_positive() {
        assert_eq!("3".parse::<VersionId>(), Ok(VersionId::new(3)));
        assert!("0".parse::<VersionId>().is_err());
        assert!("-1".parse::<VersionId>().is_err());
        assert!("+1".parse::<VersionId>().is_err());
        assert!("x".parse::<VersionId>().is_err());
    }
}
