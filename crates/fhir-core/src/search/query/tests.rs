//! Unit tests of query parsing, over the built-in registry (and, for the parameter types the
//! R4 definitions of the served types lack, a few test definitions), with expected values
//! worked out by hand from the R4 search page.

use std::ops::Bound;
use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::*;
use crate::ResourceType::{self, Account, Group, Invoice, Organization, Patient, Practitioner};
use crate::outcome::{IssueCode, Severity};
use crate::search::embedded::{BASE, CUSTOM};
use crate::search::{DateRange, Decimal, Registry, SearchParamType};

const BASE_URL: &str = "https://ferrum.example/fhir";

fn builtin() -> &'static Registry {
    Registry::builtin().expect("the built-in definitions load")
}

/// The built-in definitions and: a number parameter, a quantity parameter and a composite
/// with a quantity part, on Group.
fn extended() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
        let mut definitions: Vec<Value> = BASE
            .iter()
            .chain(CUSTOM)
            .map(|text| serde_json::from_str(text).expect("JSON"))
            .collect();
        let definition = |code: &str, kind: &str, expression: &str| {
            json!({
                "resourceType": "SearchParameter",
                "url": format!("urn:test:Group-{code}"),
                "status": "active",
                "code": code,
                "type": kind,
                "base": ["Group"],
                "expression": expression,
            })
        };
        definitions.push(definition("quantity", "number", "Group.quantity"));
        definitions.push(definition(
            "value-quantity",
            "quantity",
            "(Group.characteristic.value as Quantity)",
        ));
        let mut composite = definition(
            "characteristic-value-quantity",
            "composite",
            "Group.characteristic",
        );
        composite["component"] = json!([
            {"definition": "http://hl7.org/fhir/SearchParameter/Group-characteristic", "expression": "code"},
            {"definition": "urn:test:Group-value-quantity", "expression": "value.as(Quantity)"},
        ]);
        definitions.push(composite);
        Registry::from_definitions(&definitions).expect("the test definitions load")
    });
    &REGISTRY
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid instant")
}

fn options(handling: Handling) -> SearchOptions<'static> {
    SearchOptions {
        handling,
        default_count: 20,
        max_count: 500,
        server_base: Some(BASE_URL),
        now: now(),
    }
}

fn parse_with(
    registry: &'static Registry,
    resource_type: Option<ResourceType>,
    params: &[(&str, &str)],
    handling: Handling,
) -> Result<SearchQuery<'static>, SearchError> {
    SearchQuery::parse(registry, resource_type, params, &options(handling))
}

/// A lenient parse that must succeed.
fn ok(resource_type: ResourceType, params: &[(&str, &str)]) -> SearchQuery<'static> {
    parse_with(extended(), Some(resource_type), params, Handling::Lenient)
        .unwrap_or_else(|e| panic!("{params:?}: {e}"))
}

/// A lenient parse that must fail.
fn err(resource_type: ResourceType, params: &[(&str, &str)]) -> SearchError {
    match parse_with(extended(), Some(resource_type), params, Handling::Lenient) {
        Ok(query) => panic!("{params:?} parsed: {query:#?}"),
        Err(error) => error,
    }
}

/// A strict parse that must fail.
fn strict_err(resource_type: ResourceType, params: &[(&str, &str)]) -> SearchError {
    match parse_with(extended(), Some(resource_type), params, Handling::Strict) {
        Ok(query) => panic!("{params:?} parsed strictly: {query:#?}"),
        Err(error) => error,
    }
}

/// The one criterion of a type-level search of `resource_type` with `name=value`.
fn condition(resource_type: ResourceType, name: &str, value: &str) -> Condition<'static> {
    let query = ok(resource_type, &[(name, value)]);
    assert!(query.ignored.is_empty(), "{name}: {:?}", query.ignored);
    assert_eq!(query.types.len(), 1);
    let [criterion] = query.types[0].criteria.as_slice() else {
        panic!("{name}: one criterion expected");
    };
    criterion.clone()
}

/// The test of a plain (unchained) criterion, and the code of its parameter.
fn test_of(resource_type: ResourceType, name: &str, value: &str) -> (&'static str, Test) {
    match condition(resource_type, name, value) {
        Condition::Match { param, test } => (param.code(), test),
        other => panic!("{name}: not a plain match: {other:#?}"),
    }
}

fn test(resource_type: ResourceType, name: &str, value: &str) -> Test {
    test_of(resource_type, name, value).1
}

/// The problem of the one ignored parameter of a lenient parse.
fn ignored(resource_type: ResourceType, params: &[(&str, &str)]) -> Problem {
    let query = ok(resource_type, params);
    assert!(
        query.types.iter().all(|t| t.criteria.is_empty()),
        "{params:?}: {:#?}",
        query.types
    );
    let [error] = query.ignored.as_slice() else {
        panic!(
            "{params:?}: one ignored parameter expected: {:?}",
            query.ignored
        );
    };
    error.problem.clone()
}

fn dec(text: &str) -> Decimal {
    Decimal::parse(text).expect("a decimal")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 instant")
        .with_timezone(&Utc)
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// string

#[test]
fn strings_are_normalised_like_the_index() {
    assert_eq!(
        test(Patient, "family", "  GARCÍA  López"),
        Test::String {
            matching: StringMatch::StartsWith,
            values: strings(&["garcia lopez"]),
        }
    );
    assert_eq!(
        test(Patient, "name:contains", "ø,Straße"),
        Test::String {
            matching: StringMatch::Contains,
            values: strings(&["o", "strasse"]),
        }
    );
    assert_eq!(
        test(Patient, "given:exact", "José"),
        Test::String {
            matching: StringMatch::Exact,
            values: strings(&["José"]),
        }
    );
    // An escaped comma is part of the value; the backslash escapes itself.
    assert_eq!(
        test(Patient, "address:exact", r"1 Main St\, Apt 2,C:\\dir"),
        Test::String {
            matching: StringMatch::Exact,
            values: strings(&["1 Main St, Apt 2", r"C:\dir"]),
        }
    );
    assert_eq!(
        test(Organization, "name", r"a\|b\$c"),
        Test::String {
            matching: StringMatch::StartsWith,
            values: strings(&["a|b$c"]),
        }
    );
    // Nothing left after normalisation, or an empty OR value: malformed.
    assert!(matches!(
        err(Patient, &[("family", "\u{301} ")]).problem,
        Problem::InvalidValue { .. }
    ));
    assert!(matches!(
        err(Patient, &[("family", "a,,b")]).problem,
        Problem::InvalidValue { .. }
    ));
    assert!(matches!(
        err(Patient, &[("family", "a,")]).problem,
        Problem::InvalidValue { .. }
    ));
}

#[test]
fn phonetic_values_are_sound_codes() {
    assert_eq!(
        test(Patient, "phonetic", "Smyth,van der Berg"),
        Test::Phonetic(vec![strings(&["s530"]), strings(&["v500", "d600", "b620"])])
    );
    assert!(matches!(
        err(Patient, &[("phonetic", "東京")]).problem,
        Problem::InvalidValue { .. }
    ));
    assert_eq!(
        ignored(Patient, &[("phonetic:exact", "Smith")]),
        Problem::UnsupportedModifier {
            modifier: "exact".into()
        }
    );
}

// ---------------------------------------------------------------------------------------
// token

#[test]
fn token_forms() {
    let token = |value: &str| match test(Patient, "identifier", value) {
        Test::Token {
            negated: false,
            values,
        } => values,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        token("123,http://acme.org/mrn|456,|789,http://acme.org/mrn|"),
        [
            TokenSearch::Code("123".into()),
            TokenSearch::SystemCode {
                system: "http://acme.org/mrn".into(),
                code: "456".into()
            },
            TokenSearch::CodeWithoutSystem("789".into()),
            TokenSearch::System("http://acme.org/mrn".into()),
        ]
    );
    assert_eq!(
        token(r"urn:x\|y|a\,b"),
        [TokenSearch::SystemCode {
            system: "urn:x|y".into(),
            code: "a,b".into()
        }]
    );
    for bad in ["|", "a|b|c", "s|c,|"] {
        assert!(
            matches!(
                err(Patient, &[("identifier", bad)]).problem,
                Problem::InvalidValue { .. }
            ),
            "{bad}"
        );
    }
    assert_eq!(
        test(Patient, "gender:not", "male,female"),
        Test::Token {
            negated: true,
            values: vec![
                TokenSearch::Code("male".into()),
                TokenSearch::Code("female".into())
            ],
        }
    );
    assert_eq!(
        test(Patient, "active", "true"),
        Test::Token {
            negated: false,
            values: vec![TokenSearch::Code("true".into())],
        }
    );
    assert_eq!(
        test(Patient, "_id", "p1,p2"),
        Test::Token {
            negated: false,
            values: vec![
                TokenSearch::Code("p1".into()),
                TokenSearch::Code("p2".into())
            ],
        }
    );
}

#[test]
fn token_text_and_of_type() {
    assert_eq!(
        test(Patient, "language:text", "Français"),
        Test::TokenText(strings(&["francais"]))
    );
    assert_eq!(
        test(Patient, "identifier:text", "Medical record"),
        Test::TokenText(strings(&["medical record"]))
    );
    assert_eq!(
        test(
            Patient,
            "identifier:of-type",
            "http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345,|SS|999"
        ),
        Test::OfType(vec![
            OfTypeSearch {
                type_system: Some("http://terminology.hl7.org/CodeSystem/v2-0203".into()),
                type_code: "MR".into(),
                value: "12345".into(),
            },
            OfTypeSearch {
                type_system: None,
                type_code: "SS".into(),
                value: "999".into(),
            },
        ])
    );
    for bad in ["MR|123", "s|MR|", "s||123", "a|b|c|d"] {
        assert!(
            matches!(
                err(Patient, &[("identifier:of-type", bad)]).problem,
                Problem::InvalidValue { .. }
            ),
            "{bad}"
        );
    }
    // A code has no text, and only identifiers have a type.
    assert_eq!(
        ignored(Patient, &[("gender:text", "male")]),
        Problem::UnsupportedModifier {
            modifier: "text".into()
        }
    );
    assert_eq!(
        ignored(Patient, &[("language:of-type", "a|b|c")]),
        Problem::UnsupportedModifier {
            modifier: "of-type".into()
        }
    );
}

#[test]
fn terminology_modifiers_are_refused_as_unsupported() {
    for modifier in ["in", "not-in", "below", "above"] {
        let name = format!("language:{modifier}");
        assert_eq!(
            ignored(
                Patient,
                &[(&name, "http://hl7.org/fhir/ValueSet/languages")]
            ),
            Problem::UnsupportedModifier {
                modifier: modifier.into()
            }
        );
        let error = strict_err(Patient, &[(&name, "urn:x")]);
        assert_eq!(error.param, name);
        assert_eq!(error.problem.issue_code(), IssueCode::NotSupported);
    }
    assert_eq!(
        ignored(Patient, &[("gender:sounds-like", "x")]),
        Problem::UnknownModifier {
            modifier: "sounds-like".into()
        }
    );
}

// ---------------------------------------------------------------------------------------
// date

#[test]
fn dates_carry_prefix_and_precision_range() {
    let date = |value: &str| match test(Patient, "birthdate", value) {
        Test::Date(values) => values,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        date("2020"),
        [DateSearch {
            prefix: Prefix::Eq,
            low: at("2020-01-01T00:00:00Z"),
            high: at("2021-01-01T00:00:00Z"),
        }]
    );
    assert_eq!(
        date("ge2020-02,lt2020-02-29T10:00:00+01:00"),
        [
            DateSearch {
                prefix: Prefix::Ge,
                low: at("2020-02-01T00:00:00Z"),
                high: at("2020-03-01T00:00:00Z"),
            },
            DateSearch {
                prefix: Prefix::Lt,
                low: at("2020-02-29T09:00:00Z"),
                high: at("2020-02-29T09:00:01Z"),
            },
        ]
    );
    // An unencoded `+` arrives as a space.
    assert_eq!(
        date("2020-02-29T10:00:00 01:00"),
        date("2020-02-29T10:00:00+01:00")
    );
    for prefix in Prefix::ALL {
        let value = format!("{prefix}2020-06-15");
        assert_eq!(date(&value)[0].prefix, prefix);
    }
    for bad in [
        "2020-13",
        "20",
        "2021-02-29",
        "xx2020",
        "GE2020",
        "ge",
        "2020-01-01T25:00Z",
        "yesterday",
    ] {
        let error = err(Patient, &[("birthdate", bad)]);
        assert!(
            matches!(error.problem, Problem::InvalidValue { .. }),
            "{bad}: {error}"
        );
        assert_eq!(error.param, "birthdate");
    }
}

#[test]
fn ap_widens_by_a_tenth_of_the_distance_to_now() {
    // Now is 2025-01-01; 2015 is [2015-01-01, 2016-01-01): 10 and 9 years away.
    let Test::Date(values) = test(Patient, "birthdate", "ap2015") else {
        panic!("a date test");
    };
    let low_gap = now() - at("2015-01-01T00:00:00Z");
    let high_gap = now() - at("2016-01-01T00:00:00Z");
    assert_eq!(values[0].low, at("2015-01-01T00:00:00Z") - low_gap / 10);
    assert_eq!(values[0].high, at("2016-01-01T00:00:00Z") + high_gap / 10);
}

#[test]
fn date_prefixes_compare_ranges() {
    let search = |value: &str| {
        let Test::Date(values) = test(Patient, "birthdate", value) else {
            panic!("a date test");
        };
        values[0]
    };
    let range = |text: &str| DateRange::parse(text).expect("a date");
    let open = |low: Option<&str>, high: Option<&str>| DateRange {
        low: low.map(at),
        high: high.map(at),
    };
    let in_2020 = range("2020-06-15");
    let all_2020 = range("2020");
    let late_2019 = range("2019-12-31");
    let early_2021 = range("2021-01-01");
    let spanning = open(Some("2019-12-01T00:00:00Z"), Some("2020-02-01T00:00:00Z"));
    let since_2019 = open(Some("2019-06-01T00:00:00Z"), None);
    let until_2021 = open(None, Some("2021-06-01T00:00:00Z"));
    let cases: [(&str, &DateRange, bool); 31] = [
        ("2020", &in_2020, true),
        ("2020", &all_2020, true),
        ("2020", &late_2019, false),
        ("2020", &spanning, false),
        ("2020-06-15", &all_2020, false),
        ("ne2020", &spanning, true),
        ("ne2020", &in_2020, false),
        ("gt2020", &early_2021, true),
        ("gt2020", &in_2020, false),
        ("gt2020", &since_2019, true),
        ("lt2020", &late_2019, true),
        ("lt2020", &spanning, true),
        ("lt2020", &in_2020, false),
        ("lt2020", &until_2021, true),
        ("ge2020", &in_2020, true),
        ("ge2020", &early_2021, true),
        ("ge2020", &late_2019, false),
        ("ge2020", &since_2019, true),
        ("le2020", &in_2020, true),
        ("le2020", &late_2019, true),
        ("le2020", &early_2021, false),
        ("sa2020", &early_2021, true),
        ("sa2020", &in_2020, false),
        ("sa2020", &since_2019, false),
        ("eb2020", &late_2019, true),
        ("eb2020", &spanning, false),
        ("eb2020", &until_2021, false),
        ("ap2020-06-15", &in_2020, true),
        ("ap2020-06-15", &range("2020-05-01"), true),
        ("ap2020-06-15", &range("2019-01-01"), false),
        ("ap2020", &spanning, true),
    ];
    for (value, stored, expected) in cases {
        assert_eq!(
            search(value).matches(stored),
            expected,
            "{value} vs {stored:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// number and quantity

#[test]
fn numbers_keep_exact_intervals() {
    let number = |value: &str| match test(Group, "quantity", value) {
        Test::Number(values) => values,
        other => panic!("{other:?}"),
    };
    let interval = |value: &str| {
        let n = &number(value)[0];
        (n.prefix, n.low.clone(), n.high.clone())
    };
    use Bound::{Excluded, Included, Unbounded};
    assert_eq!(
        interval("100"),
        (Prefix::Eq, Included(dec("99.5")), Excluded(dec("100.5")))
    );
    assert_eq!(
        interval("100.00"),
        (
            Prefix::Eq,
            Included(dec("99.995")),
            Excluded(dec("100.005"))
        )
    );
    assert_eq!(
        interval("1e2"),
        (Prefix::Eq, Included(dec("50")), Excluded(dec("150")))
    );
    assert_eq!(
        interval("ne0.1"),
        (Prefix::Ne, Included(dec("0.05")), Excluded(dec("0.15")))
    );
    assert_eq!(
        interval("gt100"),
        (Prefix::Gt, Excluded(dec("100")), Unbounded)
    );
    assert_eq!(
        interval("sa100"),
        (Prefix::Sa, Excluded(dec("100")), Unbounded)
    );
    assert_eq!(
        interval("ge-3.5"),
        (Prefix::Ge, Included(dec("-3.5")), Unbounded)
    );
    assert_eq!(
        interval("lt100"),
        (Prefix::Lt, Unbounded, Excluded(dec("100")))
    );
    assert_eq!(
        interval("eb100"),
        (Prefix::Eb, Unbounded, Excluded(dec("100")))
    );
    assert_eq!(
        interval("le100"),
        (Prefix::Le, Unbounded, Included(dec("100")))
    );
    assert_eq!(
        interval("ap100"),
        (Prefix::Ap, Included(dec("90")), Included(dec("110")))
    );
    assert_eq!(number("100")[0].value.as_str(), "100");
    for bad in [
        "abc", "1.2.3", "+1", "1,", "zz5", "1 000", "01", ".5", "5.", "NaN",
    ] {
        assert!(
            matches!(
                err(Group, &[("quantity", bad)]).problem,
                Problem::InvalidValue { .. }
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        err(Group, &[("quantity", &"9".repeat(40))]).problem,
        Problem::InvalidValue { .. }
    ));
}

#[test]
fn number_matching_is_exact() {
    let search = |value: &str| {
        let Test::Number(values) = test(Group, "quantity", value) else {
            panic!("a number test");
        };
        values[0].clone()
    };
    let cases = [
        ("100", "99.5", true),
        ("100", "100.4999", true),
        ("100", "100.5", false),
        ("100", "99.49", false),
        ("100.00", "100.004", true),
        ("100.00", "100.01", false),
        ("ne100", "100.5", true),
        ("ne100", "100", false),
        ("gt100", "100", false),
        ("gt100", "100.0000001", true),
        ("ge100", "100.0", true),
        ("lt100", "99.99", true),
        ("le100", "1e2", true),
        ("ap100", "110", true),
        ("ap100", "110.01", false),
        ("ap100", "89.99", false),
        ("0.1", "0.05", true),
        ("0.1", "0.15", false),
    ];
    for (value, stored, expected) in cases {
        assert_eq!(
            search(value).matches(&dec(stored)),
            expected,
            "{value} vs {stored}"
        );
    }
}

#[test]
fn quantities() {
    let quantity = |value: &str| match test(Invoice, "totalgross", value) {
        Test::Quantity(values) => values,
        other => panic!("{other:?}"),
    };
    let q = quantity("5.4|urn:iso:std:iso:4217|EUR,lt100||USD,ap10");
    assert_eq!(q[0].number.prefix, Prefix::Eq);
    assert_eq!(q[0].number.low, Bound::Included(dec("5.35")));
    assert_eq!(q[0].number.high, Bound::Excluded(dec("5.45")));
    assert_eq!(
        q[0].unit,
        QuantityUnit::SystemCode {
            system: "urn:iso:std:iso:4217".into(),
            code: "EUR".into()
        }
    );
    assert_eq!(q[1].number.prefix, Prefix::Lt);
    assert_eq!(q[1].number.high, Bound::Excluded(dec("100")));
    assert_eq!(q[1].unit, QuantityUnit::Code("USD".into()));
    assert_eq!(q[2].unit, QuantityUnit::Any);
    assert_eq!(q[2].number.low, Bound::Included(dec("9")));
    for bad in [
        "5.4|EUR",
        "5.4|urn:iso:std:iso:4217|",
        "5.4||",
        "x|s|c",
        "5.4|a|b|c",
        "|s|c",
    ] {
        assert!(
            matches!(
                err(Invoice, &[("totalgross", bad)]).problem,
                Problem::InvalidValue { .. }
            ),
            "{bad}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// reference

#[test]
fn reference_forms() {
    let reference = |name: &str, value: &str| match test(Invoice, name, value) {
        Test::Reference(values) => values,
        other => panic!("{other:?}"),
    };
    let local = |t: Option<&str>, id: &str, version: Option<&str>| ReferenceSearch::Local {
        resource_type: t.map(str::to_string),
        id: id.into(),
        version: version.map(str::to_string),
    };
    assert_eq!(
        reference(
            "subject",
            "p1,Patient/p2,Group/g1/_history/3,https://ferrum.example/fhir/Patient/p3"
        ),
        [
            local(None, "p1", None),
            local(Some("Patient"), "p2", None),
            local(Some("Group"), "g1", Some("3")),
            local(Some("Patient"), "p3", None),
        ]
    );
    assert_eq!(
        reference(
            "subject",
            "http://other.org/fhir/Patient/p4,urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"
        ),
        [
            ReferenceSearch::Url("http://other.org/fhir/Patient/p4".into()),
            ReferenceSearch::Url("urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e".into()),
        ]
    );
    assert_eq!(
        reference("subject:Patient", "p1,Patient/p2"),
        [
            local(Some("Patient"), "p1", None),
            local(Some("Patient"), "p2", None)
        ]
    );
    // A bare id is of the only type a parameter points at.
    assert_eq!(
        reference("account", "a1"),
        [local(Some("Account"), "a1", None)]
    );
    // A target type that is not served can still be referred to.
    assert_eq!(
        reference("participant:Device", "d1"),
        [local(Some("Device"), "d1", None)]
    );
    assert_eq!(
        reference("subject:identifier", "http://acme.org/mrn|123,456"),
        [
            ReferenceSearch::Identifier(TokenSearch::SystemCode {
                system: "http://acme.org/mrn".into(),
                code: "123".into()
            }),
            ReferenceSearch::Identifier(TokenSearch::Code("456".into())),
        ]
    );
    for bad in [
        "a b",
        "#contained",
        "patient/1",
        "Patient/",
        "Patient/a b",
        "/1",
    ] {
        assert!(
            matches!(
                err(Invoice, &[("subject", bad)]).problem,
                Problem::InvalidValue { .. }
            ),
            "{bad}"
        );
    }
    // The type written and the modifier's disagree; a type the parameter cannot point at.
    assert!(matches!(
        err(Invoice, &[("subject:Patient", "Group/g1")]).problem,
        Problem::InvalidValue { .. }
    ));
    let error = err(Invoice, &[("subject:Organization", "o1")]);
    assert_eq!(error.problem.issue_code(), IssueCode::Invalid);
    assert_eq!(
        error.to_string(),
        "search parameter `subject:Organization`: `subject` does not point at Organization; \
         it points at Group, Patient"
    );
    assert_eq!(
        ignored(Invoice, &[("subject:below", "Patient/1")]),
        Problem::UnsupportedModifier {
            modifier: "below".into()
        }
    );
}

// ---------------------------------------------------------------------------------------
// chains

fn chain_of(
    condition: &Condition<'static>,
) -> (&'static str, Vec<(ResourceType, Condition<'static>)>) {
    match condition {
        Condition::Chain { param, targets } => (
            param.code(),
            targets
                .iter()
                .map(|t| (t.resource_type, t.condition.clone()))
                .collect(),
        ),
        other => panic!("not a chain: {other:#?}"),
    }
}

fn match_of(condition: &Condition<'static>) -> (&'static str, &'static str, Test) {
    match condition {
        Condition::Match { param, test } => (param.base(), param.code(), test.clone()),
        other => panic!("not a match: {other:#?}"),
    }
}

#[test]
fn chains_resolve_link_by_link() {
    let (code, targets) = chain_of(&condition(Invoice, "subject:Patient.name", "peter"));
    assert_eq!(code, "subject");
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].0, Patient);
    assert_eq!(
        match_of(&targets[0].1),
        (
            "Patient",
            "name",
            Test::String {
                matching: StringMatch::StartsWith,
                values: strings(&["peter"])
            }
        )
    );

    // A single target needs no type.
    let (_, targets) = chain_of(&condition(Invoice, "patient.birthdate", "ge2000"));
    assert_eq!(targets[0].0, Patient);

    // Two levels: Invoice.account -> Account.subject:Patient -> Patient.family.
    let (code, targets) = chain_of(&condition(
        Invoice,
        "account.subject:Patient.family",
        "Müller",
    ));
    assert_eq!(code, "account");
    assert_eq!(targets[0].0, Account);
    let (code, inner) = chain_of(&targets[0].1);
    assert_eq!(code, "subject");
    assert_eq!(inner[0].0, Patient);
    assert_eq!(
        match_of(&inner[0].1).2,
        Test::String {
            matching: StringMatch::StartsWith,
            values: strings(&["muller"])
        }
    );

    // Several targets that all have the parameter: every served one is a candidate, each
    // with its own definition of it.
    let (_, inner) = chain_of(&chain_of(&condition(Invoice, "account.subject.name", "x")).1[0].1);
    let types: Vec<ResourceType> = inner.iter().map(|(t, _)| *t).collect();
    assert_eq!(types, [Organization, Patient, Practitioner]);
    let bases: Vec<&str> = inner.iter().map(|(_, c)| match_of(c).0).collect();
    assert_eq!(bases, ["Organization", "Patient", "Practitioner"]);

    // Modifiers and `:missing` at the end of a chain.
    let (_, targets) = chain_of(&condition(Invoice, "subject:Patient.gender:not", "male"));
    assert!(matches!(
        match_of(&targets[0].1).2,
        Test::Token { negated: true, .. }
    ));
    let (_, targets) = chain_of(&condition(Invoice, "subject:Patient.name:missing", "true"));
    assert_eq!(match_of(&targets[0].1).2, Test::Missing(true));
}

#[test]
fn bad_chains_are_errors() {
    // Invoice.subject points at Group and Patient; Group has no `name`.
    let error = err(Invoice, &[("subject.name", "peter")]);
    assert_eq!(error.problem.issue_code(), IssueCode::Invalid);
    assert_eq!(
        error.to_string(),
        "search parameter `subject.name`: `subject` may point at Group, Patient, and the rest \
         of the chain does not apply to Group: name the type with `subject:Type`"
    );
    // Account.subject may be an Organization, which has no `family`.
    assert!(matches!(
        err(Invoice, &[("account.subject.family", "x")]).problem,
        Problem::Invalid { .. }
    ));
    for (resource_type, name) in [
        (Patient, "name.family"),
        (Patient, "birthdate.x"),
        (Invoice, "status.code"),
    ] {
        let error = err(resource_type, &[(name, "x")]);
        assert_eq!(
            error.to_string(),
            format!(
                "search parameter `{name}`: `{}` is not a reference parameter, so it cannot be chained",
                name.split('.').next().unwrap_or_default()
            )
        );
    }
    for name in [
        "subject:identifier.name",
        "subject:missing.name",
        "subject..name",
        "subject.",
        "subject:Organization.name",
    ] {
        let error = err(Invoice, &[(name, "x")]);
        assert!(
            matches!(error.problem, Problem::Invalid { .. }),
            "{name}: {error}"
        );
        assert_eq!(error.param, name);
    }
    // Unknown links and types this server does not store are ignorable.
    assert_eq!(
        ignored(Invoice, &[("nothing.name", "x")]),
        Problem::UnknownParameter {
            resource_type: Some(Invoice)
        }
    );
    assert_eq!(
        ignored(Invoice, &[("subject:Patient.nothing", "x")]),
        Problem::UnknownParameter {
            resource_type: Some(Patient)
        }
    );
    assert_eq!(
        ignored(Organization, &[("endpoint.name", "x")]),
        Problem::UnservedType
    );
    assert_eq!(
        ignored(Account, &[("subject:Device.name", "x")]),
        Problem::UnservedType
    );
    assert_eq!(
        ignored(Account, &[("subject.nothing", "x")]),
        Problem::UnknownParameter {
            resource_type: None
        }
    );
    // A malformed value at the end of a chain is malformed.
    assert!(matches!(
        err(Invoice, &[("subject:Patient.birthdate", "soon")]).problem,
        Problem::InvalidValue { .. }
    ));
}

// ---------------------------------------------------------------------------------------
// _has

fn has_of(condition: &Condition<'static>) -> (ResourceType, &'static str, Condition<'static>) {
    match condition {
        Condition::Has {
            source,
            param,
            condition,
        } => (*source, param.code(), (**condition).clone()),
        other => panic!("not a _has: {other:#?}"),
    }
}

#[test]
fn reverse_chaining() {
    let (source, code, inner) =
        has_of(&condition(Patient, "_has:Invoice:subject:status", "issued"));
    assert_eq!((source, code), (Invoice, "subject"));
    assert_eq!(
        match_of(&inner),
        (
            "Invoice",
            "status",
            Test::Token {
                negated: false,
                values: vec![TokenSearch::Code("issued".into())]
            }
        )
    );
    // A modifier, a chain and a nested `_has` inside.
    let (_, _, inner) = has_of(&condition(
        Patient,
        "_has:Invoice:subject:status:not",
        "draft",
    ));
    assert!(matches!(
        match_of(&inner).2,
        Test::Token { negated: true, .. }
    ));
    let (_, _, inner) = has_of(&condition(
        Patient,
        "_has:Invoice:patient:account.status",
        "active",
    ));
    assert_eq!(chain_of(&inner).0, "account");
    let (source, code, inner) = has_of(&condition(
        Organization,
        "_has:Patient:organization:_has:Invoice:subject:status",
        "issued",
    ));
    assert_eq!((source, code), (Patient, "organization"));
    let (source, code, _) = has_of(&inner);
    assert_eq!((source, code), (Invoice, "subject"));

    for name in [
        "_has:Invoice:account:status",
        "_has:Invoice:status:status",
        "_has:Invoice",
        "_has:Invoice:subject",
        "_has:Invoice:subject:",
    ] {
        let error = err(Patient, &[(name, "x")]);
        assert!(
            matches!(error.problem, Problem::Invalid { .. }),
            "{name}: {error}"
        );
    }
    for name in ["_has:invoice:subject:status", "_has::subject:status"] {
        assert!(matches!(
            err(Patient, &[(name, "x")]).problem,
            Problem::InvalidValue { .. }
        ));
    }
    assert_eq!(
        ignored(Patient, &[("_has:Observation:subject:code", "x")]),
        Problem::UnservedType
    );
    assert_eq!(
        ignored(Patient, &[("_has:Invoice:nothing:status", "x")]),
        Problem::UnknownParameter {
            resource_type: Some(Invoice)
        }
    );
    assert!(matches!(
        err(Patient, &[("_has:Invoice:subject:date", "never")]).problem,
        Problem::InvalidValue { .. }
    ));
}

// ---------------------------------------------------------------------------------------
// :missing, uri, composite

#[test]
fn missing_on_every_type() {
    for (resource_type, code) in [
        (Patient, "family"),
        (Patient, "gender"),
        (Patient, "birthdate"),
        (Patient, "general-practitioner"),
        (Patient, "_profile"),
        (Invoice, "totalgross"),
        (Group, "quantity"),
        (Group, "characteristic-value"),
    ] {
        let name = format!("{code}:missing");
        assert_eq!(
            test(resource_type, &name, "true"),
            Test::Missing(true),
            "{code}"
        );
        assert_eq!(
            test(resource_type, &name, "false"),
            Test::Missing(false),
            "{code}"
        );
        for bad in ["yes", "TRUE", "true,false"] {
            assert!(matches!(
                err(resource_type, &[(&name, bad)]).problem,
                Problem::InvalidValue { .. }
            ));
        }
    }
}

#[test]
fn uris() {
    assert_eq!(
        test(Patient, "_profile", "http://x.org/StructureDefinition/p"),
        Test::Uri {
            matching: UriMatch::Exact,
            values: strings(&["http://x.org/StructureDefinition/p"])
        }
    );
    assert_eq!(
        test(Patient, "_profile:below", "http://x.org/"),
        Test::Uri {
            matching: UriMatch::Below,
            values: strings(&["http://x.org/"])
        }
    );
    assert_eq!(
        test(Patient, "_source:above", r"http://x.org/a/b,urn:a\,b"),
        Test::Uri {
            matching: UriMatch::Above,
            values: strings(&["http://x.org/a/b", "urn:a,b"])
        }
    );
    assert_eq!(
        ignored(Patient, &[("_profile:contains", "x")]),
        Problem::UnknownModifier {
            modifier: "contains".into()
        }
    );
}

#[test]
fn composites() {
    assert_eq!(
        test(
            Group,
            "characteristic-value",
            r"http://example.org|gender$mixed,a\$b$true"
        ),
        Test::Composite(vec![
            vec![
                ComponentValue::Token(TokenSearch::SystemCode {
                    system: "http://example.org".into(),
                    code: "gender".into()
                }),
                ComponentValue::Token(TokenSearch::Code("mixed".into())),
            ],
            vec![
                ComponentValue::Token(TokenSearch::Code("a$b".into())),
                ComponentValue::Token(TokenSearch::Code("true".into())),
            ],
        ])
    );
    let Test::Composite(values) = test(
        Group,
        "characteristic-value-quantity",
        "http://loinc.org|8480-6$gt60|http://unitsofmeasure.org|mm[Hg]",
    ) else {
        panic!("a composite");
    };
    let ComponentValue::Quantity(quantity) = &values[0][1] else {
        panic!("a quantity part");
    };
    assert_eq!(quantity.number.prefix, Prefix::Gt);
    assert_eq!(quantity.number.low, Bound::Excluded(dec("60")));
    for bad in ["a", "a$b$c", "a$", "$b"] {
        assert!(
            matches!(
                err(Group, &[("characteristic-value", bad)]).problem,
                Problem::InvalidValue { .. }
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        err(Group, &[("characteristic-value-quantity", "a$xx5")]).problem,
        Problem::InvalidValue { .. }
    ));
    assert_eq!(
        ignored(Group, &[("characteristic-value:exact", "a$b")]),
        Problem::UnknownModifier {
            modifier: "exact".into()
        }
    );
}

// ---------------------------------------------------------------------------------------
// AND, OR, unknown and unsupported, handling

#[test]
fn repeated_parameters_are_and_commas_are_or() {
    let query = ok(
        Patient,
        &[("given", "a,b"), ("given", "c"), ("birthdate", "ge2000")],
    );
    let criteria = &query.types[0].criteria;
    assert_eq!(criteria.len(), 3);
    assert_eq!(
        match_of(&criteria[0]).2,
        Test::String {
            matching: StringMatch::StartsWith,
            values: strings(&["a", "b"])
        }
    );
    assert_eq!(match_of(&criteria[1]).1, "given");
    assert_eq!(match_of(&criteria[2]).1, "birthdate");
}

#[test]
fn lenient_handling_sets_aside_and_strict_refuses() {
    let params = [
        ("family", "smith"),
        ("nonsense", "1"),
        ("family:fuzzy", "x"),
        ("_text", "cough"),
        ("_content", "cough"),
        ("_filter", "name eq x"),
        ("_query", "named"),
        ("_list", "l1"),
        ("_contained", "true"),
        ("_containedType", "contained"),
        ("given", ""),
        ("_format", "json"),
        ("_pretty", "true"),
    ];
    let query = ok(Patient, &params);
    assert_eq!(query.types[0].criteria.len(), 1);
    let set_aside: Vec<(&str, &Problem)> = query
        .ignored
        .iter()
        .map(|e| (e.param.as_str(), &e.problem))
        .collect();
    assert_eq!(
        set_aside,
        [
            (
                "nonsense",
                &Problem::UnknownParameter {
                    resource_type: Some(Patient)
                }
            ),
            (
                "family:fuzzy",
                &Problem::UnknownModifier {
                    modifier: "fuzzy".into()
                }
            ),
            ("_text", &Problem::UnsupportedParameter),
            ("_content", &Problem::UnsupportedParameter),
            ("_filter", &Problem::UnsupportedParameter),
            ("_query", &Problem::UnsupportedParameter),
            ("_list", &Problem::UnsupportedParameter),
            ("_contained", &Problem::UnsupportedParameter),
            ("_containedType", &Problem::UnsupportedParameter),
            ("given", &Problem::EmptyValue),
        ]
    );
    assert!(query.ignored.iter().all(SearchError::is_ignorable));
    assert_eq!(query.to_query_string(), "family=smith&_count=20");
    let warning = query.ignored[0].to_warning();
    assert_eq!(warning.severity, Severity::Warning);
    assert_eq!(warning.code, IssueCode::NotSupported);
    assert_eq!(
        warning.diagnostics,
        "search parameter `nonsense`: unknown search parameter on Patient; the parameter was ignored"
    );

    // Strict: each of them alone is an error; `_format` and `_pretty` never are.
    for (name, value) in &params[1..11] {
        let error = strict_err(Patient, &[(name, value)]);
        assert_eq!(error.param, *name);
        assert!(error.is_ignorable());
    }
    let query = parse_with(
        extended(),
        Some(Patient),
        &[("_format", "xml"), ("_pretty", "true"), ("family", "x")],
        Handling::Strict,
    )
    .expect("parses");
    assert!(query.ignored.is_empty());
    let issue = strict_err(Patient, &[("nonsense", "1")]).to_issue();
    assert_eq!(issue.severity, Severity::Error);
    assert_eq!(issue.code, IssueCode::NotSupported);
}

#[test]
fn malformed_values_are_errors_in_either_handling() {
    for handling in [Handling::Lenient, Handling::Strict] {
        let error = parse_with(
            extended(),
            Some(Patient),
            &[("birthdate", "not-a-date")],
            handling,
        )
        .expect_err("malformed");
        assert!(!error.is_ignorable());
        assert_eq!(error.problem.issue_code(), IssueCode::Value);
        let issue = error.to_issue();
        assert_eq!(issue.severity, Severity::Error);
        assert_eq!(issue.code, IssueCode::Value);
        assert!(
            issue
                .diagnostics
                .starts_with("search parameter `birthdate`: malformed value")
        );
    }
}

/// Values may hold patient data: no error, ignored entry or issue quotes one.
#[test]
fn errors_never_contain_the_value() {
    const SECRET: &str = "Zelda";
    let cases: Vec<(ResourceType, String, String)> = [
        (Patient, "birthdate", "Zelda-1944"),
        (Patient, "birthdate", "geZelda"),
        (Patient, "birthdate", "ZeZelda"),
        (Patient, "family", "Zelda,"),
        (Patient, "identifier", "Zelda|Zelda|Zelda"),
        (Patient, "identifier:of-type", "Zelda|Zelda"),
        (Patient, "gender:missing", "Zelda"),
        (Patient, "general-practitioner", "Zelda Smith"),
        (
            Patient,
            "general-practitioner:Practitioner",
            "Patient/Zelda",
        ),
        (Group, "quantity", "Zelda"),
        (Group, "characteristic-value", "Zelda"),
        (Invoice, "totalgross", "1|Zelda"),
        (Invoice, "subject:Patient.birthdate", "Zelda"),
        (Patient, "_has:Invoice:subject:date", "Zelda"),
        (Patient, "_count", "Zelda"),
        (Patient, "_total", "Zelda"),
        (Patient, "_summary", "Zelda"),
        (Patient, "_elements", "Zelda Smith"),
        (Patient, "_sort", "--Zelda"),
        (Patient, "_include", "Zelda"),
        (Patient, "_include", "Patient:family"),
        (Patient, "_revinclude", "Invoice:subject:zelda"),
        (Patient, "phonetic", "Zelda,東京"),
    ]
    .into_iter()
    .map(|(t, n, v)| (t, n.to_string(), v.to_string()))
    .collect();
    for (resource_type, name, value) in &cases {
        for handling in [Handling::Lenient, Handling::Strict] {
            let result = parse_with(extended(), Some(*resource_type), &[(name, value)], handling);
            let text = match &result {
                Ok(query) => format!("{:?}", query.ignored),
                Err(error) => format!(
                    "{error} {error:?} {} {}",
                    error.to_issue().diagnostics,
                    error.to_warning().diagnostics
                ),
            };
            assert!(result.is_err(), "{name}={value} parsed");
            assert!(!text.contains(SECRET), "{name}={value}: {text}");
        }
    }
    // Ignored parameters do not quote their values either.
    let query = ok(
        Patient,
        &[
            ("_sort", "Zelda"),
            ("_include", "Observation:subject"),
            ("language:in", "Zelda"),
        ],
    );
    assert_eq!(query.ignored.len(), 3);
    assert!(!format!("{:?}", query.ignored).contains(SECRET));
    assert!(!format!("{:?}", query.ignored).contains("Observation"));
    let query = parse_with(builtin(), None, &[("_type", "Zelda")], Handling::Lenient)
        .expect("an unserved type is ignorable");
    assert!(!format!("{:?}", query.ignored).contains(SECRET));
}

#[test]
fn long_names_are_cut_in_errors() {
    let name = "x".repeat(500);
    let error = strict_err(Patient, &[(&name, "1")]);
    assert_eq!(error.param.chars().count(), 101);
}

// ---------------------------------------------------------------------------------------
// system level

#[test]
fn system_level_search_resolves_per_type() {
    let query = parse_with(
        builtin(),
        None,
        &[
            ("_type", "Patient,Organization,Patient"),
            ("name", "acme"),
            ("_sort", "-_lastUpdated"),
        ],
        Handling::Lenient,
    )
    .expect("parses");
    assert_eq!(query.resource_type, None);
    let types: Vec<ResourceType> = query.types.iter().map(|t| t.resource_type).collect();
    assert_eq!(types, [Patient, Organization]);
    let urls: Vec<&str> = query
        .types
        .iter()
        .map(|t| match &t.criteria[0] {
            Condition::Match { param, .. } => param.url(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        urls,
        [
            "http://hl7.org/fhir/SearchParameter/Patient-name",
            "http://hl7.org/fhir/SearchParameter/Organization-name"
        ]
    );
    assert!(
        query
            .types
            .iter()
            .all(|t| t.sort[0].descending && t.sort[0].param.code() == "_lastUpdated")
    );
    assert_eq!(
        query.to_query_string(),
        "_type=Patient,Organization&name=acme&_sort=-_lastUpdated&_count=20"
    );

    // Without `_type`: every served type, so only what all of them have.
    let query = parse_with(
        builtin(),
        None,
        &[("_id", "a"), ("name", "x"), ("_sort", "name,_id")],
        Handling::Lenient,
    )
    .expect("parses");
    assert_eq!(query.types.len(), ResourceType::ALL.len());
    assert!(query.types.iter().all(|t| t.criteria.len() == 1));
    assert!(query.types.iter().all(|t| t.sort.len() == 1));
    let set_aside: Vec<&str> = query.ignored.iter().map(|e| e.param.as_str()).collect();
    assert_eq!(set_aside, ["name", "_sort"]);

    // Types not served: none searched (lenient), or an error (strict); not type names at all:
    // malformed.
    let query = parse_with(
        builtin(),
        None,
        &[("_type", "Observation")],
        Handling::Lenient,
    )
    .expect("parses");
    assert!(query.types.is_empty());
    assert_eq!(query.ignored[0].problem, Problem::UnservedType);
    assert!(
        parse_with(
            builtin(),
            None,
            &[("_type", "Observation")],
            Handling::Strict
        )
        .is_err()
    );
    for bad in ["patient", "Patient,,Group", "Patient,"] {
        let error = parse_with(builtin(), None, &[("_type", bad)], Handling::Lenient)
            .expect_err("malformed");
        assert!(
            matches!(error.problem, Problem::InvalidValue { .. }),
            "{bad}"
        );
    }
    // `_type` is a system-level parameter.
    assert_eq!(
        ignored(Patient, &[("_type", "Patient")]),
        Problem::UnknownParameter {
            resource_type: Some(Patient)
        }
    );
}

// ---------------------------------------------------------------------------------------
// _include, _revinclude

#[test]
fn includes() {
    let query = ok(
        Invoice,
        &[
            ("_include", "Invoice:subject"),
            ("_include", "Invoice:subject:Patient"),
            ("_include:iterate", "Patient:general-practitioner"),
            ("_include", "Invoice:*"),
        ],
    );
    let summary: Vec<(ResourceType, Vec<&str>, Option<ResourceType>, bool)> = query
        .include
        .iter()
        .map(|i| {
            (
                i.source_type,
                i.params.iter().map(|p| p.code()).collect(),
                i.target_type,
                i.iterate,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Invoice, vec!["subject"], None, false),
            (Invoice, vec!["subject"], Some(Patient), false),
            (Patient, vec!["general-practitioner"], None, true),
            (
                Invoice,
                vec![
                    "account",
                    "issuer",
                    "participant",
                    "patient",
                    "recipient",
                    "subject"
                ],
                None,
                false
            ),
        ]
    );
    let wildcard = ok(Invoice, &[("_include", "*")]);
    assert_eq!(
        wildcard.include,
        ok(Invoice, &[("_include", "Invoice:*")]).include
    );

    let query = ok(
        Patient,
        &[
            ("_revinclude", "Invoice:subject"),
            ("_revinclude:iterate", "Account:patient"),
        ],
    );
    assert_eq!(query.revinclude[0].source_type, Invoice);
    assert!(query.revinclude[1].iterate);
    // Every reference parameter of a served type that can point at a Patient.
    let query = ok(Patient, &[("_revinclude", "*")]);
    let all: Vec<String> = query
        .revinclude
        .iter()
        .flat_map(|i| {
            i.params
                .iter()
                .map(move |p| format!("{}:{}", i.source_type, p.code()))
        })
        .collect();
    assert_eq!(
        all,
        [
            "Account:patient",
            "Account:subject",
            "Group:member",
            "Invoice:participant",
            "Invoice:patient",
            "Invoice:recipient",
            "Invoice:subject",
            "Patient:link"
        ]
    );

    for bad in [
        "Invoice",
        "Invoice:subject:Patient:x",
        "invoice:subject",
        "Invoice:status",
        "Invoice:subject:Organization",
        "Invoice:subject:patient",
    ] {
        let error = err(Invoice, &[("_include", bad)]);
        assert!(
            matches!(error.problem, Problem::InvalidValue { .. }),
            "{bad}: {error}"
        );
    }
    assert_eq!(
        ignored(Invoice, &[("_include", "Invoice:nothing")]),
        Problem::UnknownParameter {
            resource_type: None
        }
    );
    assert_eq!(
        ignored(Invoice, &[("_include", "Observation:subject")]),
        Problem::UnservedType
    );
    assert_eq!(
        ignored(Invoice, &[("_include:recurse", "Invoice:subject")]),
        Problem::UnknownModifier {
            modifier: "recurse".into()
        }
    );
    assert!(strict_err(Invoice, &[("_include", "Invoice:nothing")]).is_ignorable());
}

// ---------------------------------------------------------------------------------------
// _sort, _count, _total, _summary, _elements, _cursor

#[test]
fn sorting() {
    let query = ok(
        Patient,
        &[("_sort", "-birthdate,family,_id,-_lastUpdated,identifier")],
    );
    let keys: Vec<(&str, bool)> = query.types[0]
        .sort
        .iter()
        .map(|k| (k.param.code(), k.descending))
        .collect();
    assert_eq!(
        keys,
        [
            ("birthdate", true),
            ("family", false),
            ("_id", false),
            ("_lastUpdated", true),
            ("identifier", false)
        ]
    );
    // Unknown keys are set aside one by one; the rendering keeps the others.
    let query = ok(Patient, &[("_sort", "nothing,-family,_text")]);
    assert_eq!(query.types[0].sort.len(), 1);
    assert_eq!(query.ignored.len(), 2);
    assert_eq!(query.to_query_string(), "_sort=-family&_count=20");
    assert!(strict_err(Patient, &[("_sort", "nothing")]).is_ignorable());
    assert_eq!(
        ignored(Group, &[("_sort", "characteristic-value")]),
        Problem::UnsupportedParameter
    );
    for bad in [",family", "family,", "--family", "-"] {
        assert!(
            matches!(
                err(Patient, &[("_sort", bad)]).problem,
                Problem::InvalidValue { .. }
            ),
            "{bad}"
        );
    }
    assert_eq!(
        err(Patient, &[("_sort", "family"), ("_sort", "given")]).problem,
        Problem::Repeated
    );
}

#[test]
fn paging_and_result_shape() {
    let count = |value: &str| ok(Patient, &[("_count", value)]).count;
    assert_eq!(ok(Patient, &[]).count, 20);
    assert_eq!(count("5"), 5);
    assert_eq!(count("0"), 0);
    assert_eq!(count("500"), 500);
    assert_eq!(count("501"), 500);
    assert_eq!(count("99999999999999999999"), 500);
    for bad in ["abc", "-1", "1.5", "+3", " 3", "1e2"] {
        let error = err(Patient, &[("_count", bad)]);
        assert!(
            matches!(error.problem, Problem::InvalidValue { .. }),
            "{bad}"
        );
        assert_eq!(error.param, "_count");
    }
    assert_eq!(
        err(Patient, &[("_count", "1"), ("_count", "2")]).problem,
        Problem::Repeated
    );
    assert_eq!(
        ignored(Patient, &[("_count:max", "5")]),
        Problem::UnknownModifier {
            modifier: "max".into()
        }
    );

    for (value, total) in [
        ("none", Total::None),
        ("estimate", Total::Estimate),
        ("accurate", Total::Accurate),
    ] {
        assert_eq!(ok(Patient, &[("_total", value)]).total, Some(total));
    }
    assert!(matches!(
        err(Patient, &[("_total", "all")]).problem,
        Problem::InvalidValue { .. }
    ));
    for (value, summary) in [
        ("true", Summary::True),
        ("text", Summary::Text),
        ("data", Summary::Data),
        ("count", Summary::Count),
        ("false", Summary::False),
    ] {
        assert_eq!(ok(Patient, &[("_summary", value)]).summary, Some(summary));
    }
    assert!(matches!(
        err(Patient, &[("_summary", "TRUE")]).problem,
        Problem::InvalidValue { .. }
    ));
    assert_eq!(
        ok(
            Patient,
            &[("_elements", "identifier,name,Patient.birthDate,name")]
        )
        .elements,
        Some(strings(&["identifier", "name", "Patient.birthDate"]))
    );
    for bad in ["name,", "na me", "1name", "patient.name"] {
        assert!(
            matches!(
                err(Patient, &[("_elements", bad)]).problem,
                Problem::InvalidValue { .. }
            ),
            "{bad}"
        );
    }
    let query = ok(
        Patient,
        &[("_cursor", "opaque.signed-token"), ("family", "x")],
    );
    assert_eq!(query.cursor.as_deref(), Some("opaque.signed-token"));
    assert_eq!(query.total, None);
    assert_eq!(query.summary, None);
    assert_eq!(query.elements, None);
    assert_eq!(
        err(Patient, &[("_cursor", "a"), ("_cursor", "b")]).problem,
        Problem::Repeated
    );
}

// ---------------------------------------------------------------------------------------
// rendering

#[test]
fn canonical_rendering() {
    let query = ok(
        Patient,
        &[
            ("_cursor", "c1"),
            ("_sort", "-birthdate"),
            ("given", "b"),
            ("_revinclude", "Invoice:subject"),
            ("family", r"O'Brien\,Jr,García"),
            ("given", "a"),
            ("unknown", "x"),
            ("_count", "1000"),
            ("_format", "json"),
            ("identifier", "http://acme.org|1 2&3=4+5"),
            ("_include", "Patient:organization"),
            ("_summary", "data"),
            ("_total", "accurate"),
            ("_elements", "name"),
            ("birthdate", "ge2020-01-01T10:00:00+01:00"),
        ],
    );
    assert_eq!(
        query.canonical_params(),
        [
            ("birthdate", "ge2020-01-01T10:00:00+01:00"),
            ("family", r"O'Brien\,Jr,García"),
            ("given", "b"),
            ("given", "a"),
            ("identifier", "http://acme.org|1 2&3=4+5"),
            ("_include", "Patient:organization"),
            ("_revinclude", "Invoice:subject"),
            ("_sort", "-birthdate"),
            ("_count", "500"),
            ("_total", "accurate"),
            ("_summary", "data"),
            ("_elements", "name"),
            ("_cursor", "c1"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    assert_eq!(
        query.to_query_string(),
        "birthdate=ge2020-01-01T10:00:00%2B01:00&family=O%27Brien%5C,Jr,Garc%C3%ADa&given=b&\
         given=a&identifier=http://acme.org%7C1%202%263%3D4%2B5&_include=Patient:organization&\
         _revinclude=Invoice:subject&_sort=-birthdate&_count=500&_total=accurate&_summary=data&\
         _elements=name&_cursor=c1"
    );
    assert!(
        query
            .query_string_with_cursor(Some("c2"))
            .ends_with("_elements=name&_cursor=c2")
    );
    assert!(
        query
            .query_string_with_cursor(None)
            .ends_with("_elements=name")
    );

    // The order of the request does not matter.
    let a = ok(
        Patient,
        &[("gender", "male"), ("family", "x"), ("_count", "5")],
    );
    let b = ok(
        Patient,
        &[("_count", "5"), ("family", "x"), ("gender", "male")],
    );
    assert_eq!(a.to_query_string(), b.to_query_string());
    assert_eq!(a.to_query_string(), "family=x&gender=male&_count=5");
}

// ---------------------------------------------------------------------------------------
// CapabilityStatement

fn modifiers_of(resource_type: ResourceType, code: &str) -> Vec<String> {
    supported_params(builtin(), resource_type)
        .into_iter()
        .find(|s| s.param.code() == code)
        .unwrap_or_else(|| panic!("{code} is listed"))
        .modifiers
}

#[test]
fn capability_listing() {
    assert_eq!(
        modifiers_of(Patient, "family"),
        ["missing", "exact", "contains"]
    );
    assert_eq!(modifiers_of(Patient, "phonetic"), ["missing"]);
    assert_eq!(modifiers_of(Patient, "gender"), ["missing", "not"]);
    assert_eq!(
        modifiers_of(Patient, "identifier"),
        ["missing", "not", "text", "of-type"]
    );
    assert_eq!(
        modifiers_of(Patient, "language"),
        ["missing", "not", "text"]
    );
    assert_eq!(modifiers_of(Patient, "birthdate"), ["missing"]);
    assert_eq!(
        modifiers_of(Patient, "_profile"),
        ["missing", "below", "above"]
    );
    assert_eq!(
        modifiers_of(Patient, "general-practitioner"),
        [
            "missing",
            "identifier",
            "Practitioner",
            "Organization",
            "PractitionerRole"
        ]
    );
    let listed = supported_params(builtin(), Patient);
    let codes: Vec<&str> = listed.iter().map(|s| s.param.code()).collect();
    for absent in ["_text", "_content", "_query", "_filter"] {
        assert!(!codes.contains(&absent), "{absent}");
    }
    for present in [
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "_security",
        "_source",
    ] {
        assert!(codes.contains(&present), "{present}");
    }
    let birthdate = listed
        .iter()
        .find(|s| s.param.code() == "birthdate")
        .expect("listed");
    assert_eq!(birthdate.prefixes, Prefix::ALL);
    let subject = supported_params(builtin(), Account)
        .into_iter()
        .find(|s| s.param.code() == "subject")
        .expect("listed");
    assert_eq!(subject.chain_targets, [Organization, Patient, Practitioner]);
    assert!(subject.sortable);

    assert_eq!(
        supported_includes(builtin(), Invoice),
        [
            "Invoice:account",
            "Invoice:issuer",
            "Invoice:participant",
            "Invoice:patient",
            "Invoice:recipient",
            "Invoice:subject",
            "*"
        ]
    );
    let revincludes = supported_revincludes(builtin(), Patient);
    for expected in [
        "Invoice:subject",
        "Account:subject",
        "Group:member",
        "Patient:link",
        "*",
    ] {
        assert!(revincludes.iter().any(|r| r == expected), "{expected}");
    }
    assert!(!revincludes.iter().any(|r| r == "Invoice:account"));
}

/// Everything the listing promises parses, for every parameter of every served type.
#[test]
fn every_listed_modifier_parses() {
    for resource_type in ResourceType::ALL {
        for supported in supported_params(extended(), resource_type) {
            let param = supported.param;
            let plain = match param.kind() {
                SearchParamType::String => "abc",
                SearchParamType::Token => "abc",
                SearchParamType::Date => "ge2020",
                SearchParamType::Number | SearchParamType::Quantity => "lt1.5",
                SearchParamType::Reference => "x1",
                SearchParamType::Uri => "http://x.org",
                SearchParamType::Composite => "a$b",
                SearchParamType::Special => unreachable!("special parameters are not listed"),
            };
            let composite_quantity = param.code() == "characteristic-value-quantity";
            let plain = if composite_quantity { "a$1" } else { plain };
            let mut cases = vec![(param.code().to_string(), plain)];
            for modifier in &supported.modifiers {
                let value = match modifier.as_str() {
                    "missing" => "true",
                    "of-type" => "s|MR|1",
                    _ => plain,
                };
                cases.push((format!("{}:{modifier}", param.code()), value));
            }
            for (name, value) in cases {
                let query = parse_with(
                    extended(),
                    Some(resource_type),
                    &[(&name, value)],
                    Handling::Strict,
                )
                .unwrap_or_else(|e| panic!("{resource_type}?{name}={value}: {e}"));
                assert_eq!(query.types[0].criteria.len(), 1, "{resource_type}?{name}");
            }
        }
    }
}

#[test]
fn result_parameters_are_listed() {
    for name in [
        "_include",
        "_revinclude",
        "_sort",
        "_count",
        "_total",
        "_summary",
        "_elements",
        "_has",
        "_type",
        CURSOR_PARAM,
    ] {
        assert!(CONTROL_PARAMETERS.contains(&name), "{name}");
    }
}

#[test]
fn chains_are_bounded() {
    // Patient.link points at Patients: eight links are fine, nine are refused.
    let within = format!("{}name", "link.".repeat(8));
    assert_eq!(ok(Patient, &[(&within, "x")]).types[0].criteria.len(), 1);
    let beyond = format!("{}name", "link.".repeat(9));
    assert!(matches!(
        err(Patient, &[(&beyond, "x")]).problem,
        Problem::Invalid { .. }
    ));
    let deep_has = "_has:Patient:link:".repeat(10) + "name";
    assert!(matches!(
        err(Patient, &[(&deep_has, "x")]).problem,
        Problem::Invalid { .. }
    ));
    let huge = format!("{}name", "link.".repeat(100_000));
    assert!(matches!(
        err(Patient, &[(&huge, "x")]).problem,
        Problem::Invalid { .. }
    ));
}

#[test]
fn handling_from_the_prefer_header() {
    assert_eq!(Handling::from_prefer("handling=strict"), Handling::Strict);
    assert_eq!(
        Handling::from_prefer("return=minimal, handling = \"STRICT\""),
        Handling::Strict
    );
    assert_eq!(Handling::from_prefer("handling=lenient"), Handling::Lenient);
    assert_eq!(
        Handling::from_prefer("return=representation"),
        Handling::Lenient
    );
    assert_eq!(Handling::from_prefer(""), Handling::Lenient);
}

#[test]
fn owned_pairs_parse_too() {
    let pairs: Vec<(String, String)> = vec![("family".into(), "x".into())];
    let query = SearchQuery::parse(builtin(), Some(Patient), &pairs, &options(Handling::Strict))
        .expect("parses");
    assert_eq!(query.to_query_string(), "family=x&_count=20");
}
