//! The five SMART interactions (`c r u d s`) and the FHIR RESTful interactions each one covers
//! (<http://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html>).
//!
//! | letter | [`Interaction`] | FHIR interactions ([`RestInteraction`], code) |
//! |---|---|---|
//! | `c` | `Create` | type-level `create` |
//! | `r` | `Read` | instance-level `read`, `vread`, `history-instance` |
//! | `u` | `Update` | instance-level `update` (also update-as-create, a PUT to a new id), `patch` |
//! | `d` | `Delete` | instance-level `delete` |
//! | `s` | `Search` | `search-type`, `history-type`, `search-system`, `history-system` |
//!
//! Interactions that have no letter of their own:
//!
//! - `batch` and `transaction` are wrappers: each entry is checked as the interaction it is.
//! - `capabilities` (`GET /metadata`) is public, like `/.well-known/smart-configuration`.
//! - System-level `search-system` and `history-system` need `s` on each type they return:
//!   restrict them to [`Permissions::types_searchable`](crate::Permissions::types_searchable).
//! - Bulk export (`$export`, system, `Patient` or `Group` level) reads and searches every type
//!   it writes out, so it needs `r` and `s` on each one without restriction (`system/*.rs`, or
//!   `system/Patient.rs system/Account.rs ...`): see
//!   [`Permissions::exportable_types`](crate::Permissions::exportable_types).

use std::fmt;
use std::str::FromStr;

/// One SMART permission letter. The variants are in the order of `cruds`, which is also their
/// `Ord` order (a v2 scope must write its letters in that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interaction {
    /// `c`: type-level create.
    Create,
    /// `r`: read, vread, instance history.
    Read,
    /// `u`: update (including update-as-create) and patch.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: type and system search, type and system history.
    Search,
}

impl Interaction {
    /// Every interaction, in `cruds` order.
    pub const ALL: [Interaction; 5] = [
        Interaction::Create,
        Interaction::Read,
        Interaction::Update,
        Interaction::Delete,
        Interaction::Search,
    ];

    /// The scope letter: `c`, `r`, `u`, `d` or `s`.
    pub fn letter(self) -> char {
        match self {
            Interaction::Create => 'c',
            Interaction::Read => 'r',
            Interaction::Update => 'u',
            Interaction::Delete => 'd',
            Interaction::Search => 's',
        }
    }

    /// The interaction a scope letter stands for.
    pub fn from_letter(letter: char) -> Option<Interaction> {
        Interaction::ALL.into_iter().find(|i| i.letter() == letter)
    }

    /// The name SMART gives the letter: `create`, `read`, `update`, `delete`, `search`.
    pub fn name(self) -> &'static str {
        match self {
            Interaction::Create => "create",
            Interaction::Read => "read",
            Interaction::Update => "update",
            Interaction::Delete => "delete",
            Interaction::Search => "search",
        }
    }
}

impl fmt::Display for Interaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A FHIR RESTful interaction Ferrum serves, named by its code in the R4 code system
/// `restful-interaction` (<http://hl7.org/fhir/R4/codesystem-restful-interaction.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestInteraction {
    /// `GET [type]/[id]`.
    Read,
    /// `GET [type]/[id]/_history/[vid]`.
    Vread,
    /// `GET [type]/[id]/_history`.
    HistoryInstance,
    /// `POST [type]`.
    Create,
    /// `PUT [type]/[id]`, also when it creates the resource.
    Update,
    /// `PATCH [type]/[id]`.
    Patch,
    /// `DELETE [type]/[id]`.
    Delete,
    /// `GET [type]?...`, `POST [type]/_search`.
    SearchType,
    /// `GET [type]/_history`.
    HistoryType,
    /// `GET [base]?...`, `POST [base]/_search`.
    SearchSystem,
    /// `GET [base]/_history`.
    HistorySystem,
}

/// The code is not one of the interactions [`RestInteraction`] lists (`batch`, `transaction`,
/// `capabilities`, `operation` and the abstract `history` and `search` have no scope letter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a RESTful interaction with a SMART scope letter")]
pub struct UnknownInteraction;

impl RestInteraction {
    /// Every interaction, in the order of the table in the module documentation.
    pub const ALL: [RestInteraction; 11] = [
        RestInteraction::Read,
        RestInteraction::Vread,
        RestInteraction::HistoryInstance,
        RestInteraction::Create,
        RestInteraction::Update,
        RestInteraction::Patch,
        RestInteraction::Delete,
        RestInteraction::SearchType,
        RestInteraction::HistoryType,
        RestInteraction::SearchSystem,
        RestInteraction::HistorySystem,
    ];

    /// The `restful-interaction` code.
    pub fn code(self) -> &'static str {
        match self {
            RestInteraction::Read => "read",
            RestInteraction::Vread => "vread",
            RestInteraction::HistoryInstance => "history-instance",
            RestInteraction::Create => "create",
            RestInteraction::Update => "update",
            RestInteraction::Patch => "patch",
            RestInteraction::Delete => "delete",
            RestInteraction::SearchType => "search-type",
            RestInteraction::HistoryType => "history-type",
            RestInteraction::SearchSystem => "search-system",
            RestInteraction::HistorySystem => "history-system",
        }
    }

    /// The SMART letter a scope needs for this interaction.
    pub fn interaction(self) -> Interaction {
        match self {
            RestInteraction::Create => Interaction::Create,
            RestInteraction::Read | RestInteraction::Vread | RestInteraction::HistoryInstance => {
                Interaction::Read
            }
            RestInteraction::Update | RestInteraction::Patch => Interaction::Update,
            RestInteraction::Delete => Interaction::Delete,
            RestInteraction::SearchType
            | RestInteraction::HistoryType
            | RestInteraction::SearchSystem
            | RestInteraction::HistorySystem => Interaction::Search,
        }
    }

    /// Whether the interaction spans every type (`[base]?...`, `[base]/_history`): its results
    /// must be limited to the types the token may search.
    pub fn is_system_level(self) -> bool {
        matches!(
            self,
            RestInteraction::SearchSystem | RestInteraction::HistorySystem
        )
    }
}

impl From<RestInteraction> for Interaction {
    fn from(interaction: RestInteraction) -> Self {
        interaction.interaction()
    }
}

impl fmt::Display for RestInteraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for RestInteraction {
    type Err = UnknownInteraction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RestInteraction::ALL
            .into_iter()
            .find(|i| i.code() == s)
            .ok_or(UnknownInteraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip_in_cruds_order() {
        let letters: String = Interaction::ALL.iter().map(|i| i.letter()).collect();
        assert_eq!(letters, "cruds");
        for i in Interaction::ALL {
            assert_eq!(Interaction::from_letter(i.letter()), Some(i));
        }
        assert!(Interaction::ALL.is_sorted());
        assert_eq!(Interaction::from_letter('x'), None);
        assert_eq!(Interaction::from_letter('R'), None);
    }

    /// The table of SMART App Launch 2.2, one row per FHIR interaction.
    #[test]
    fn every_rest_interaction_maps_to_its_letter() {
        let table = [
            ("read", 'r', false),
            ("vread", 'r', false),
            ("history-instance", 'r', false),
            ("create", 'c', false),
            ("update", 'u', false),
            ("patch", 'u', false),
            ("delete", 'd', false),
            ("search-type", 's', false),
            ("history-type", 's', false),
            ("search-system", 's', true),
            ("history-system", 's', true),
        ];
        assert_eq!(table.len(), RestInteraction::ALL.len());
        for (code, letter, system) in table {
            let rest: RestInteraction = code.parse().expect("a listed code");
            assert_eq!(rest.code(), code);
            assert_eq!(rest.to_string(), code);
            assert_eq!(rest.interaction().letter(), letter, "{code}");
            assert_eq!(Interaction::from(rest).letter(), letter, "{code}");
            assert_eq!(rest.is_system_level(), system, "{code}");
        }
    }

    #[test]
    fn interactions_without_a_letter_are_not_parsed() {
        for code in [
            "batch",
            "transaction",
            "capabilities",
            "operation",
            "history",
            "search",
            "Read",
            "",
        ] {
            assert_eq!(
                code.parse::<RestInteraction>(),
                Err(UnknownInteraction),
                "{code}"
            );
        }
    }
}
