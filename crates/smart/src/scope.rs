//! The `scope` grammar of SMART App Launch 2.2
//! (<http://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html>): a token's
//! space-separated `scope` claim parsed into [`Scopes`].
//!
//! Each entry of the list is one of:
//!
//! - a resource scope, `level/type.permissions[?constraints]` ([`ResourceScope`]):
//!   - level: `patient`, `user` or `system`, in lower case ([`Level`]);
//!   - type: `*` or a resource type name, spelt as FHIR spells it (`[A-Z][A-Za-z]*`,
//!     [`Target`]); a type Ferrum does not store grants nothing on stored resources, and only
//!     counts where an operation returns that type (`MeasureReport` from `$analytics`, see
//!     [`Permissions::grants_unstored`](crate::Permissions::grants_unstored));
//!   - permissions ([`Cruds`]): v2, a non-empty subset of `cruds` with the letters in that
//!     order (`r`, `rs`, `cud`, `cruds`); or v1, `read` (= `rs`), `write` (= `cud`) or `*`
//!     (= `cruds`);
//!   - constraints (v2 only, [`Constraint`]): `?name=value&name=value...`, each name and value
//!     decoded as the server decodes a search query (`+` is a space, `%XX` a byte, UTF-8);
//! - a non-resource scope Ferrum knows ([`ContextScope`]): `openid`, `fhirUser`, `profile`,
//!   `launch`, `launch/patient`, `offline_access`, `online_access`;
//! - anything else: set aside with a [`ScopeError`] saying why.
//!
//! An entry that does not parse is set aside on its own; the rest of the token still counts.
//! The grammar is strict where leniency could grant more than was meant: letters out of order
//! (`.sr`), repeated (`.rr`) or in upper case, a level or type in the wrong case, an empty or
//! malformed query, and a query on a v1 scope all make the scope grant nothing (SMART 2.2: such
//! scopes "MAY be ignored", which is what Ferrum does).

use std::fmt;
use std::str::FromStr;

use fhir_core::ResourceType;
use percent_encoding::percent_decode_str;

use crate::interaction::Interaction;

/// Whose access a resource scope describes: its first segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// `patient/`: data in the compartment of the patient in context.
    Patient,
    /// `user/`: what the signed-in user may see.
    User,
    /// `system/`: a backend service acting for itself, no user.
    System,
}

impl Level {
    /// Every level.
    pub const ALL: [Level; 3] = [Level::Patient, Level::User, Level::System];

    /// The level as written in a scope, without the `/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "patient",
            Level::User => "user",
            Level::System => "system",
        }
    }

    fn from_name(name: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resource types a scope names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `*`: every type, those served now and any served later.
    All,
    /// One type Ferrum stores.
    Type(ResourceType),
    /// A type Ferrum does not store, by name (`MeasureReport`, `Observation`). It grants
    /// nothing on stored resources; only [`Permissions::grants_unstored`] reads it, for types
    /// that an operation returns.
    ///
    /// [`Permissions::grants_unstored`]: crate::Permissions::grants_unstored
    Unstored(String),
}

impl Target {
    /// Whether the scope names the stored type `rtype`.
    pub fn covers(&self, rtype: ResourceType) -> bool {
        match self {
            Target::All => true,
            Target::Type(t) => *t == rtype,
            Target::Unstored(_) => false,
        }
    }

    /// Whether the scope names the type called `type_name`, stored or not.
    pub fn covers_name(&self, type_name: &str) -> bool {
        match self {
            Target::All => true,
            Target::Type(t) => t.as_str() == type_name,
            Target::Unstored(name) => name == type_name,
        }
    }

    fn parse(text: &str) -> Result<Target, ScopeError> {
        if text == "*" {
            return Ok(Target::All);
        }
        if let Ok(rtype) = text.parse() {
            return Ok(Target::Type(rtype));
        }
        // FHIR resource type names: an upper-case letter, then letters.
        let mut chars = text.chars();
        let is_type_name = chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && chars.all(|c| c.is_ascii_alphabetic());
        if is_type_name {
            Ok(Target::Unstored(text.to_owned()))
        } else {
            Err(ScopeError::Type)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("*"),
            Target::Type(t) => f.write_str(t.as_str()),
            Target::Unstored(name) => f.write_str(name),
        }
    }
}

/// A set of [`Interaction`]s: the permissions of a scope. Displays as its v2 letters in
/// `cruds` order (`rs`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cruds(u8);

impl Cruds {
    /// No interaction.
    pub const EMPTY: Cruds = Cruds(0);
    /// `cruds`: every interaction (v1 `*`).
    pub const ALL: Cruds = Cruds(0b1_1111);

    /// The v1 `read`: read and search.
    const V1_READ: Cruds = Cruds(Cruds::bit(Interaction::Read) | Cruds::bit(Interaction::Search));
    /// The v1 `write`: create, update, delete.
    const V1_WRITE: Cruds = Cruds(
        Cruds::bit(Interaction::Create)
            | Cruds::bit(Interaction::Update)
            | Cruds::bit(Interaction::Delete),
    );

    const fn bit(interaction: Interaction) -> u8 {
        1 << interaction as u8
    }

    /// Whether the set holds `interaction`.
    pub fn contains(self, interaction: Interaction) -> bool {
        self.0 & Cruds::bit(interaction) != 0
    }

    /// The set with `interaction` added.
    pub fn with(self, interaction: Interaction) -> Cruds {
        Cruds(self.0 | Cruds::bit(interaction))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The interactions in the set, in `cruds` order.
    pub fn iter(self) -> impl Iterator<Item = Interaction> {
        Interaction::ALL
            .into_iter()
            .filter(move |i| self.contains(*i))
    }

    /// Parses the permissions after the `.`: a v1 word, or v2 letters in `cruds` order, each
    /// at most once. Also says whether they were v1.
    fn parse(text: &str) -> Result<(Cruds, bool), ScopeError> {
        match text {
            "read" => return Ok((Cruds::V1_READ, true)),
            "write" => return Ok((Cruds::V1_WRITE, true)),
            "*" => return Ok((Cruds::ALL, true)),
            _ => {}
        }
        let mut cruds = Cruds::EMPTY;
        let mut previous: Option<Interaction> = None;
        for letter in text.chars() {
            let interaction = Interaction::from_letter(letter).ok_or(ScopeError::Permissions)?;
            // Strictly increasing: in order, and no letter twice.
            if previous.is_some_and(|p| p >= interaction) {
                return Err(ScopeError::Permissions);
            }
            previous = Some(interaction);
            cruds = cruds.with(interaction);
        }
        if cruds.is_empty() {
            return Err(ScopeError::Permissions);
        }
        Ok((cruds, false))
    }
}

impl FromIterator<Interaction> for Cruds {
    fn from_iter<I: IntoIterator<Item = Interaction>>(iter: I) -> Self {
        iter.into_iter().fold(Cruds::EMPTY, Cruds::with)
    }
}

impl fmt::Display for Cruds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.iter()
            .try_for_each(|i| fmt::Write::write_char(f, i.letter()))
    }
}

impl fmt::Debug for Cruds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cruds({self})")
    }
}

/// One `name=value` of a v2 scope's query, decoded. The scope grants only resources that
/// match it, as if it were a criterion of a search of the scope's type: the server must add it
/// to searches and check it on reads and writes, and refuse the request if it cannot (dropping
/// a constraint would grant more than the scope does).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    name: String,
    value: String,
}

impl Constraint {
    /// The search parameter, with its modifier or chain if any (`category`, `code:in`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value as a search would receive it (`http://loinc.org|1234-5`, `issued,draft`).
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Search parameters that shape a result instead of filtering it: meaningless as a constraint,
/// so a scope using one grants nothing.
const RESULT_PARAMETERS: [&str; 13] = [
    "_contained",
    "_containedType",
    "_count",
    "_cursor",
    "_elements",
    "_format",
    "_include",
    "_pretty",
    "_revinclude",
    "_sort",
    "_summary",
    "_total",
    "_type",
];

/// Parses `name=value&name=value...`: every pair non-empty on both sides, decoded, and not a
/// result parameter.
fn parse_constraints(query: &str) -> Result<Vec<Constraint>, ScopeError> {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').ok_or(ScopeError::Constraint)?;
            let (name, value) = (decode(name)?, decode(value)?);
            let base = name.split_once(':').map_or(name.as_str(), |(base, _)| base);
            if name.is_empty() || value.is_empty() || RESULT_PARAMETERS.contains(&base) {
                return Err(ScopeError::Constraint);
            }
            Ok(Constraint { name, value })
        })
        .collect()
}

/// Decodes one name or value as `application/x-www-form-urlencoded` (what the server does to
/// a search query), refusing a `%` that does not start an escape and bytes that are not UTF-8.
fn decode(text: &str) -> Result<String, ScopeError> {
    let bytes = text.as_bytes();
    let escapes_valid = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !escapes_valid {
        return Err(ScopeError::Constraint);
    }
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| ScopeError::Constraint)
}

/// A resource scope: `level/type.permissions[?constraints]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    level: Level,
    target: Target,
    cruds: Cruds,
    constraints: Vec<Constraint>,
    v1: bool,
}

impl ResourceScope {
    /// `patient/`, `user/` or `system/`.
    pub fn level(&self) -> Level {
        self.level
    }

    /// `*` or one type.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The permissions, v1 words already turned into letters.
    pub fn cruds(&self) -> Cruds {
        self.cruds
    }

    /// The `?` constraints, in the order written; all of them apply (empty: none).
    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    /// Whether the permissions were written in the v1 form (`read`, `write`, `*`).
    pub fn is_v1(&self) -> bool {
        self.v1
    }

    /// Whether the scope names the stored type `rtype` and has the letter for `interaction`.
    pub fn covers(&self, rtype: ResourceType, interaction: Interaction) -> bool {
        self.target.covers(rtype) && self.cruds.contains(interaction)
    }
}

impl FromStr for ResourceScope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (level, rest) = s.split_once('/').ok_or(ScopeError::Unrecognised)?;
        let level = Level::from_name(level).ok_or(ScopeError::Unrecognised)?;
        // Type names hold no `.`, so the first one ends the type.
        let (target, rest) = rest.split_once('.').ok_or(ScopeError::Permissions)?;
        let target = Target::parse(target)?;
        let (permissions, query) = match rest.split_once('?') {
            Some((permissions, query)) => (permissions, Some(query)),
            None => (rest, None),
        };
        let (cruds, v1) = Cruds::parse(permissions)?;
        let constraints = match query {
            None => Vec::new(),
            // Constraints are a v2 feature; on a v1 scope their meaning is unknown.
            Some(_) if v1 => return Err(ScopeError::Constraint),
            Some(query) => parse_constraints(query)?,
        };
        Ok(ResourceScope {
            level,
            target,
            cruds,
            constraints,
            v1,
        })
    }
}

/// A scope that names no resource but asks for launch context, identity or a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContextScope {
    /// `openid`: an OpenID Connect id token.
    OpenId,
    /// `fhirUser`: the `fhirUser` claim (the user as a FHIR resource).
    FhirUser,
    /// `profile`: OpenID Connect profile claims (SMART 1.0 used it for the user's identity).
    Profile,
    /// `launch`: launch context from an EHR launch.
    Launch,
    /// `launch/patient`: a patient chosen at launch (standalone launch).
    LaunchPatient,
    /// `offline_access`: a refresh token that outlives the user's session.
    OfflineAccess,
    /// `online_access`: a refresh token usable while the user is online.
    OnlineAccess,
}

impl ContextScope {
    /// Every non-resource scope Ferrum recognises.
    pub const ALL: [ContextScope; 7] = [
        ContextScope::OpenId,
        ContextScope::FhirUser,
        ContextScope::Profile,
        ContextScope::Launch,
        ContextScope::LaunchPatient,
        ContextScope::OfflineAccess,
        ContextScope::OnlineAccess,
    ];

    /// The scope as written.
    pub fn as_str(self) -> &'static str {
        match self {
            ContextScope::OpenId => "openid",
            ContextScope::FhirUser => "fhirUser",
            ContextScope::Profile => "profile",
            ContextScope::Launch => "launch",
            ContextScope::LaunchPatient => "launch/patient",
            ContextScope::OfflineAccess => "offline_access",
            ContextScope::OnlineAccess => "online_access",
        }
    }

    fn from_name(name: &str) -> Option<ContextScope> {
        ContextScope::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for ContextScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a `scope` list that Ferrum understands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Access to resources.
    Resource(ResourceScope),
    /// Launch context, identity or refresh.
    Context(ContextScope),
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match ContextScope::from_name(s) {
            Some(context) => Ok(Scope::Context(context)),
            None => s.parse().map(Scope::Resource),
        }
    }
}

/// Why a scope was set aside. None of them quotes the scope, so they can be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ScopeError {
    /// Neither `patient/`, `user/` nor `system/` followed by a resource scope, nor a
    /// non-resource scope Ferrum knows (`email`, `launch/encounter`, `Patient.read`,
    /// `Patient/Patient.rs`, a custom scope).
    #[error("not a resource scope, nor a launch, identity or refresh scope this server knows")]
    Unrecognised,
    /// The type is neither `*` nor a resource type name (`patient`, `Patient2`, empty).
    #[error("the resource type is neither `*` nor a resource type name")]
    Type,
    /// No `.permissions`, or permissions that are neither v2 letters (a non-empty subset of
    /// `cruds`, in that order) nor v1 `read`, `write`, `*`.
    #[error(
        "the permissions are neither a subset of `cruds` in that order nor `read`, `write` or `*`"
    )]
    Permissions,
    /// A query that is not `name=value` pairs joined by `&`, does not decode, names a result
    /// parameter (`_count`, `_include`...), or follows v1 permissions.
    #[error("the constraints are not `name=value` search criteria joined by `&` on a v2 scope")]
    Constraint,
}

/// A scope that was set aside, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IgnoredScope {
    scope: String,
    reason: ScopeError,
}

impl IgnoredScope {
    /// The entry as the token carried it.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Why it grants nothing.
    pub fn reason(&self) -> ScopeError {
        self.reason
    }
}

/// A token's `scope` claim, sorted into what Ferrum understands and what it set aside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    resource: Vec<ResourceScope>,
    context: Vec<ContextScope>,
    ignored: Vec<IgnoredScope>,
}

impl Scopes {
    /// Parses a space-separated scope list (RFC 6749 §3.3); never fails. Runs of whitespace
    /// count as one separator; entries keep their order, duplicates included.
    pub fn parse(scope: &str) -> Scopes {
        let mut scopes = Scopes::default();
        for entry in scope.split_ascii_whitespace() {
            match entry.parse() {
                Ok(Scope::Resource(resource)) => scopes.resource.push(resource),
                Ok(Scope::Context(context)) => scopes.context.push(context),
                Err(reason) => scopes.ignored.push(IgnoredScope {
                    scope: entry.to_owned(),
                    reason,
                }),
            }
        }
        scopes
    }

    /// The resource scopes: what [`Permissions`](crate::Permissions) is built from.
    pub fn resource(&self) -> &[ResourceScope] {
        &self.resource
    }

    /// The recognised non-resource scopes.
    pub fn context(&self) -> &[ContextScope] {
        &self.context
    }

    /// The entries that grant nothing, each with the reason.
    pub fn ignored(&self) -> &[IgnoredScope] {
        &self.ignored
    }

    /// Whether the token carries the non-resource scope `scope`.
    pub fn has(&self, scope: ContextScope) -> bool {
        self.context.contains(&scope)
    }

    /// The resource scopes, by value.
    pub fn into_resource(self) -> Vec<ResourceScope> {
        self.resource
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use Interaction::*;

    fn resource(scope: &str) -> ResourceScope {
        scope.parse().unwrap()
    }

    fn rejected(scope: &str) -> ScopeError {
        match scope.parse::<Scope>() {
            Ok(parsed) => panic!("{scope} parsed as {parsed:?}"),
            Err(reason) => reason,
        }
    }

    fn pairs(scope: &ResourceScope) -> Vec<(&str, &str)> {
        scope
            .constraints()
            .iter()
            .map(|c| (c.name(), c.value()))
            .collect()
    }

    #[test]
    fn v2_scopes_parse_at_every_level() {
        for level in Level::ALL {
            let scope = resource(&format!("{level}/Patient.rs"));
            assert_eq!(scope.level(), level);
            assert_eq!(scope.target(), &Target::Type(ResourceType::Patient));
            assert_eq!(scope.cruds().to_string(), "rs");
            assert!(scope.constraints().is_empty());
            assert!(!scope.is_v1());
        }
    }

    #[test]
    fn every_in_order_subset_of_cruds_is_valid() {
        // The 31 non-empty subsets, written in order, each parse to exactly those letters.
        for mask in 1u8..32 {
            let letters: String = Interaction::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, interaction)| interaction.letter())
                .collect();
            let scope = resource(&format!("user/Invoice.{letters}"));
            assert_eq!(scope.cruds().to_string(), letters);
            for interaction in Interaction::ALL {
                assert_eq!(
                    scope.cruds().contains(interaction),
                    letters.contains(interaction.letter())
                );
            }
        }
    }

    #[test]
    fn single_letters_grant_only_their_interaction() {
        for interaction in Interaction::ALL {
            let scope = resource(&format!("system/Account.{}", interaction.letter()));
            let granted: Vec<_> = scope.cruds().iter().collect();
            assert_eq!(granted, vec![interaction]);
        }
    }

    #[test]
    fn v1_words_map_to_v2_letters() {
        for (v1, v2) in [("read", "rs"), ("write", "cud"), ("*", "cruds")] {
            let scope = resource(&format!("patient/Patient.{v1}"));
            assert_eq!(scope.cruds().to_string(), v2, "{v1}");
            assert!(scope.is_v1());
        }
        assert_eq!(resource("user/*.*").cruds(), Cruds::ALL);
        assert_eq!(resource("user/*.*").target(), &Target::All);
    }

    #[test]
    fn wildcard_type_covers_every_served_type() {
        let scope = resource("patient/*.rs");
        assert_eq!(scope.target(), &Target::All);
        for rtype in ResourceType::ALL {
            assert!(scope.covers(rtype, Read));
            assert!(scope.covers(rtype, Search));
            assert!(!scope.covers(rtype, Create));
        }
        let one = resource("patient/Group.r");
        assert!(one.covers(ResourceType::Group, Read));
        assert!(!one.covers(ResourceType::Patient, Read));
    }

    #[test]
    fn malformed_permissions_are_rejected() {
        for scope in [
            "patient/Patient.sr",  // out of order
            "patient/Patient.rr",  // repeated
            "patient/Patient.rsr", // repeated, out of order
            "patient/Patient.x",   // unknown letter
            "patient/Patient.rx",
            "patient/Patient.RS", // upper case
            "patient/Patient.Read",
            "patient/Patient.READ",
            "patient/Patient.dus", // SMART's own example of an undefined request
            "patient/*.",          // empty
            "patient/Patient.",
            "patient/Patient", // no permissions at all
            "patient/*",
            "patient/Patient.read.write",
            "patient/Patient.r s",
            "patient/Patient.**",
            "patient/Patient.all",
        ] {
            assert_eq!(rejected(scope), ScopeError::Permissions, "{scope}");
        }
    }

    #[test]
    fn levels_are_lower_case_and_required() {
        for scope in [
            "Patient.read", // no level
            "Patient.rs",
            "Patient/Patient.rs", // upper-case level
            "PATIENT/Patient.rs",
            "User/Patient.rs",
            "practitioner/Patient.rs",
            "/Patient.rs",
            "patient.rs",
            "*.read",
        ] {
            assert_eq!(rejected(scope), ScopeError::Unrecognised, "{scope}");
        }
    }

    #[test]
    fn types_are_spelt_exactly() {
        for rtype in ResourceType::ALL {
            let scope = resource(&format!("user/{rtype}.cruds"));
            assert_eq!(scope.target(), &Target::Type(rtype));
        }
        for scope in [
            "patient/patient.rs", // wrong case
            "patient/pATIENT.rs",
            "patient/.rs", // empty
            "patient/**.rs",
            "patient/Patient?x=y.rs",
            "patient/Patient2.rs",
            "patient/Patient-x.rs",
            "patient/Ob%73ervation.rs",
        ] {
            assert_eq!(rejected(scope), ScopeError::Type, "{scope}");
        }
    }

    #[test]
    fn types_not_stored_name_nothing_stored() {
        for name in ["Observation", "MeasureReport", "PATIENT"] {
            let scope = resource(&format!("system/{name}.rs"));
            assert_eq!(scope.target(), &Target::Unstored(name.to_owned()));
            assert_eq!(scope.target().to_string(), name);
            assert!(scope.target().covers_name(name));
            for rtype in ResourceType::ALL {
                assert!(!scope.covers(rtype, Interaction::Read), "{name} {rtype}");
            }
        }
        assert!(Target::All.covers_name("MeasureReport"));
        assert!(Target::Type(ResourceType::Group).covers_name("Group"));
        assert!(!Target::Type(ResourceType::Group).covers_name("MeasureReport"));
    }

    #[test]
    fn constraints_are_kept_decoded_and_in_order() {
        let scope = resource("patient/Invoice.rs?status=issued");
        assert_eq!(scope.cruds().to_string(), "rs");
        assert_eq!(pairs(&scope), vec![("status", "issued")]);

        let scope = resource(
            "user/Invoice.s?status=issued,draft&participant-role=http%3A%2F%2Fexample.org%7Cx",
        );
        assert_eq!(
            pairs(&scope),
            vec![
                ("status", "issued,draft"),
                ("participant-role", "http://example.org|x"),
            ]
        );

        // As SMART writes its example: `:` `/` `|` unescaped.
        let scope = resource("patient/Account.rs?type=http://terminology.hl7.org/x|PBILLACCT");
        assert_eq!(
            pairs(&scope),
            vec![("type", "http://terminology.hl7.org/x|PBILLACCT")]
        );

        // `+` is a space, `%C3%A9` is UTF-8, a `=` after the first belongs to the value,
        // modifiers stay in the name, a parameter may repeat (AND).
        let scope = resource(
            "user/Patient.rs?name=Jos%C3%A9+Garc%C3%ADa&identifier:of-type=a=b&gender=male&gender=male",
        );
        assert_eq!(
            pairs(&scope),
            vec![
                ("name", "José García"),
                ("identifier:of-type", "a=b"),
                ("gender", "male"),
                ("gender", "male"),
            ]
        );
    }

    #[test]
    fn malformed_constraints_are_rejected() {
        for scope in [
            "patient/Invoice.rs?",               // empty query
            "patient/Invoice.rs?status",         // no `=`
            "patient/Invoice.rs?=issued",        // no name
            "patient/Invoice.rs?status=",        // no value
            "patient/Invoice.rs?status=issued&", // empty pair
            "patient/Invoice.rs?&status=issued",
            "patient/Invoice.rs?a=b&&c=d",
            "patient/Invoice.rs?status=%zz", // not an escape
            "patient/Invoice.rs?status=%4",
            "patient/Invoice.rs?status=issued%",
            "patient/Invoice.rs?status=%FF", // not UTF-8
            "patient/Invoice.rs?_count=1",   // result parameters
            "patient/Invoice.rs?_include=Invoice:subject",
            "patient/Invoice.rs?_include:iterate=Invoice:subject",
            "patient/Invoice.rs?_sort=date",
            "patient/Invoice.rs?_summary=true",
            "patient/Invoice.rs?_elements=id",
            "patient/Invoice.rs?_type=Patient",
            "patient/Invoice.read?status=issued", // v1 has no constraints
            "patient/Invoice.*?status=issued",
        ] {
            assert_eq!(rejected(scope), ScopeError::Constraint, "{scope}");
        }
        // A filter starting with `_` is a criterion like any other.
        let scope = resource("patient/Invoice.rs?_lastUpdated=gt2024-01-01");
        assert_eq!(pairs(&scope), vec![("_lastUpdated", "gt2024-01-01")]);
    }

    #[test]
    fn non_resource_scopes_are_recognised() {
        for context in ContextScope::ALL {
            assert_eq!(
                context.as_str().parse::<Scope>(),
                Ok(Scope::Context(context))
            );
        }
        let names: Vec<_> = ContextScope::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "openid",
                "fhirUser",
                "profile",
                "launch",
                "launch/patient",
                "offline_access",
                "online_access"
            ]
        );
        for other in [
            "email",
            "launch/encounter",
            "launch/Patient",
            "OpenId",
            "fhiruser",
            "__custom",
            "https://example.org/scope",
            "offline-access",
        ] {
            assert_eq!(rejected(other), ScopeError::Unrecognised, "{other}");
        }
    }

    #[test]
    fn a_token_is_sorted_entry_by_entry() {
        let scopes = Scopes::parse(
            "openid fhirUser  launch/patient patient/Patient.sr patient/Patient.rs \
             patient/observation.rs user/Invoice.cud?status=draft email offline_access",
        );
        let resource: Vec<_> = scopes
            .resource()
            .iter()
            .map(|s| (s.level(), s.target().clone(), s.cruds().to_string()))
            .collect();
        assert_eq!(
            resource,
            vec![
                (
                    Level::Patient,
                    Target::Type(ResourceType::Patient),
                    "rs".into()
                ),
                (
                    Level::User,
                    Target::Type(ResourceType::Invoice),
                    "cud".into()
                ),
            ]
        );
        assert_eq!(
            scopes.context(),
            [
                ContextScope::OpenId,
                ContextScope::FhirUser,
                ContextScope::LaunchPatient,
                ContextScope::OfflineAccess
            ]
        );
        assert!(scopes.has(ContextScope::OpenId));
        assert!(!scopes.has(ContextScope::OnlineAccess));
        let ignored: Vec<_> = scopes
            .ignored()
            .iter()
            .map(|i| (i.scope(), i.reason()))
            .collect();
        assert_eq!(
            ignored,
            vec![
                ("patient/Patient.sr", ScopeError::Permissions),
                ("patient/observation.rs", ScopeError::Type),
                ("email", ScopeError::Unrecognised),
            ]
        );
        assert_eq!(scopes.clone().into_resource(), scopes.resource());
    }

    #[test]
    fn an_empty_token_has_no_scopes() {
        for text in ["", " ", "\t \n"] {
            assert_eq!(Scopes::parse(text), Scopes::default());
        }
    }

    #[test]
    fn cruds_set_operations() {
        let set: Cruds = [Search, Read].into_iter().collect();
        assert_eq!(set.to_string(), "rs");
        assert_eq!(format!("{set:?}"), "Cruds(rs)");
        assert!(Cruds::EMPTY.is_empty());
        assert_eq!(Cruds::EMPTY.to_string(), "");
        assert_eq!(Cruds::ALL.to_string(), "cruds");
        assert_eq!(Cruds::ALL.iter().collect::<Vec<_>>(), Interaction::ALL);
    }
}
