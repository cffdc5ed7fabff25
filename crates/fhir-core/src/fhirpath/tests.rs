//! Unit tests of the parser and the evaluator.

use serde_json::{Value, json};

use super::{EvalError, Expression, Item, Step};

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"lastUpdated": "2024-01-02T03:04:05Z", "tag": [{"system": "s", "code": "t"}]},
        "active": true,
        "name": [
            {"family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "maiden", "family": "Windsor", "given": ["Peter"]}
        ],
        "telecom": [
            {"system": "phone", "value": "555-1"},
            {"system": "email", "value": "p@example.org"},
            {"system": "email", "value": "q@example.org"}
        ],
        "deceasedDateTime": "2020-02-02",
        "generalPractitioner": [
            {"reference": "Practitioner/pr1"},
            {"reference": "http://example.org/fhir/Organization/o1"},
            {"reference": "#c1"},
            {"type": "Patient", "identifier": {"value": "x"}}
        ],
        "contained": [{"resourceType": "Practitioner", "id": "c1"}],
        "extension": [
            {"url": "http://example.org/a", "valueString": "first"},
            {"url": "http://example.org/b", "valueCodeableConcept": {"text": "second"}}
        ]
    })
}

/// Evaluates `text` on `resource` and renders each item: JSON text for nodes (with the type
/// after `:`), the value for computed items.
fn eval(text: &str, resource: &Value) -> Vec<String> {
    let expression = Expression::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    expression
        .evaluate(resource)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .iter()
        .map(|item| match item {
            Item::Node(node) => match node.type_name() {
                Some(t) => format!("{}:{t}", node.value()),
                None => node.value().to_string(),
            },
            Item::Boolean(b) => b.to_string(),
            Item::Integer(n) => n.to_string(),
            Item::Decimal(d) => d.to_string(),
            Item::String(s) => format!("'{s}'"),
            Item::Resolved(t) => format!("resolved {t}"),
        })
        .collect()
}

fn parse_error(text: &str) -> (String, usize) {
    let error = Expression::parse(text).expect_err(text);
    (error.message, error.position)
}

#[test]
fn navigates_paths_with_types() {
    let p = patient();
    assert_eq!(
        eval("Patient.name.family", &p),
        ["\"Chalmers\":string", "\"Windsor\":string"]
    );
    assert_eq!(
        eval("Patient.name.given", &p),
        ["\"Peter\":string", "\"James\":string", "\"Peter\":string"]
    );
    assert_eq!(eval("Resource.id", &p), ["\"p1\":id"]);
    assert_eq!(
        eval("Resource.meta.lastUpdated", &p),
        ["\"2024-01-02T03:04:05Z\":instant"]
    );
    assert_eq!(eval("Patient.active", &p), ["true:boolean"]);
    assert_eq!(eval("name[1].family", &p), ["\"Windsor\":string"]);
    assert_eq!(eval("name[5]", &p), Vec::<String>::new());
    assert_eq!(eval("Person.name", &p), Vec::<String>::new());
    assert_eq!(eval("Patient.nothing", &p), Vec::<String>::new());
    assert_eq!(eval("Patient.`active`", &p), ["true:boolean"]);
}

#[test]
fn choice_elements_by_base_name() {
    let p = patient();
    assert_eq!(eval("Patient.deceased", &p), ["\"2020-02-02\":dateTime"]);
    assert_eq!(
        eval("(Patient.deceased as dateTime)", &p),
        ["\"2020-02-02\":dateTime"]
    );
    assert_eq!(
        eval("Patient.deceased as boolean", &p),
        Vec::<String>::new()
    );
    assert_eq!(
        eval("Patient.deceased.ofType(dateTime)", &p),
        ["\"2020-02-02\":dateTime"]
    );
    assert_eq!(
        eval("Patient.deceased.as(dateTime)", &p),
        ["\"2020-02-02\":dateTime"]
    );
    assert_eq!(eval("Patient.deceased is dateTime", &p), ["true"]);
    assert_eq!(eval("Patient.deceased.is(boolean)", &p), ["false"]);
    // The JSON name of a variant is not an element name.
    assert_eq!(eval("Patient.deceasedDateTime", &p), Vec::<String>::new());
}

#[test]
fn deceased_parameter_expression() {
    let text = "Patient.deceased.exists() and Patient.deceased != false";
    assert_eq!(eval(text, &patient()), ["true"]);
    let alive = json!({"resourceType": "Patient", "deceasedBoolean": false});
    assert_eq!(eval(text, &alive), ["false"]);
    let dead = json!({"resourceType": "Patient", "deceasedBoolean": true});
    assert_eq!(eval(text, &dead), ["true"]);
    let unknown = json!({"resourceType": "Patient"});
    assert_eq!(eval(text, &unknown), ["false"]);
}

#[test]
fn where_filters_on_this() {
    let p = patient();
    assert_eq!(
        eval("Patient.telecom.where(system='email').value", &p),
        ["\"p@example.org\":string", "\"q@example.org\":string"]
    );
    assert_eq!(
        eval("Patient.telecom.where(system = 'fax')", &p),
        Vec::<String>::new()
    );
    assert_eq!(
        eval("Patient.name.where($this.use = 'maiden').family", &p),
        ["\"Windsor\":string"]
    );
    assert_eq!(
        eval("Patient.name.where(given = 'Peter').count()", &p),
        ["1"]
    );
    assert_eq!(
        eval("Patient.telecom.exists(system = 'phone')", &p),
        ["true"]
    );
    assert_eq!(eval("Patient.photo.exists()", &p), ["false"]);
    assert_eq!(eval("Patient.photo.empty()", &p), ["true"]);
}

#[test]
fn union_removes_duplicates() {
    let p = patient();
    assert_eq!(
        eval("Patient.name.family | Patient.name.family", &p),
        ["\"Chalmers\":string", "\"Windsor\":string"]
    );
    assert_eq!(eval("Patient.id | Person.id", &p), ["\"p1\":id"]);
    assert_eq!(eval("'a' | 'b' | 'a'", &p), ["'a'", "'b'"]);
    assert_eq!(eval("1 | 1.0", &p), ["1"]);
}

#[test]
fn resolve_types_references_without_fetching() {
    let p = patient();
    assert_eq!(
        eval("Patient.generalPractitioner.resolve()", &p),
        [
            "resolved Practitioner",
            "resolved Organization",
            "{\"resourceType\":\"Practitioner\",\"id\":\"c1\"}:Practitioner",
            "resolved Patient"
        ]
    );
    assert_eq!(
        eval(
            "Patient.generalPractitioner.where(resolve() is Practitioner).reference",
            &p
        ),
        ["\"Practitioner/pr1\":string", "\"#c1\":string"]
    );
    assert_eq!(
        eval(
            "Patient.generalPractitioner.where(resolve() is Organization).reference",
            &p
        ),
        ["\"http://example.org/fhir/Organization/o1\":string"]
    );
    assert_eq!(
        eval(
            "Patient.generalPractitioner.where(resolve() is Patient).identifier.value",
            &p
        ),
        ["\"x\":string"]
    );
    assert_eq!(
        eval(
            "Patient.generalPractitioner.where(resolve() is Resource).count()",
            &p
        ),
        ["4"]
    );
    assert_eq!(
        eval("Patient.generalPractitioner.resolve().id", &p),
        ["\"c1\":id"]
    );
}

#[test]
fn extension_function_and_typed_values() {
    let p = patient();
    assert_eq!(
        eval("Patient.extension('http://example.org/a').value", &p),
        ["\"first\":string"]
    );
    assert_eq!(
        eval(
            "Patient.extension.where(url = 'http://example.org/b').value.ofType(CodeableConcept).text",
            &p
        ),
        ["\"second\":string"]
    );
    assert_eq!(
        eval("Patient.extension('http://example.org/none')", &p),
        Vec::<String>::new()
    );
}

#[test]
fn three_valued_logic() {
    let p = patient();
    let cases = [
        ("true and {}", Vec::<&str>::new()),
        ("false and {}", vec!["false"]),
        ("true or {}", vec!["true"]),
        ("false or {}", vec![]),
        ("true xor false", vec!["true"]),
        ("false implies {}", vec!["true"]),
        ("{} implies true", vec!["true"]),
        ("true implies false", vec!["false"]),
        ("{} = 1", vec![]),
        ("1 != 2", vec!["true"]),
        ("1.50 = 1.5", vec!["true"]),
        ("'a' = 'a'", vec!["true"]),
        ("'1' = 1", vec!["false"]),
        ("(true).not()", vec!["false"]),
        ("{}.not()", vec![]),
        ("Patient.active = true", vec!["true"]),
        ("Patient.name.first().family = 'Chalmers'", vec!["true"]),
        ("Patient.name.last().family = 'Windsor'", vec!["true"]),
        ("Patient.meta.tag = Patient.meta.tag", vec!["true"]),
        ("Patient.name.given = Patient.name.given", vec!["true"]),
        ("Patient.name.family = 'Chalmers'", vec!["false"]),
        ("Patient.active.hasValue()", vec!["true"]),
        ("Patient.name.hasValue()", vec!["false"]),
        ("'x' is System.String", vec!["true"]),
        ("Patient.active is System.Boolean", vec!["true"]),
        ("Patient.id is string", vec!["true"]),
        ("Patient is DomainResource", vec!["true"]),
    ];
    for (text, expected) in cases {
        assert_eq!(eval(text, &p), expected, "{text}");
    }
}

#[test]
fn evaluation_errors_are_values() {
    let p = patient();
    let error = |text: &str| {
        Expression::parse(text)
            .expect("parses")
            .evaluate(&p)
            .expect_err(text)
    };
    assert_eq!(
        error("Patient.name.given.not()"),
        EvalError::NotSingleton("not()")
    );
    assert_eq!(
        error("Patient.name.given and true"),
        EvalError::NotSingleton("and")
    );
    assert_eq!(
        error("Patient.name.where(given)"),
        EvalError::NotSingleton("where()")
    );
    assert_eq!(error("Patient.name['a']"), EvalError::BadIndex);
    assert_eq!(
        error("Patient.name.given is string"),
        EvalError::NotSingleton("is")
    );
}

#[test]
fn values_that_are_not_objects_have_no_children() {
    let text = "Patient.name.family.given | Patient.active.x | Patient.id.resolve()";
    for resource in [
        patient(),
        json!(null),
        json!([1, 2]),
        json!("Patient"),
        json!({"resourceType": 5, "name": "x"}),
        json!({"resourceType": "Patient", "name": [null, 1, "x", {"family": {}}]}),
    ] {
        let expression = Expression::parse(text).expect("parses");
        assert_eq!(expression.evaluate(&resource).map(|r| r.len()), Ok(0));
    }
}

#[test]
fn unknown_types_navigate_by_json_name() {
    let observation = json!({
        "resourceType": "Observation",
        "code": {"coding": [{"code": "x"}]},
        "valueQuantity": {"value": 5}
    });
    assert_eq!(
        eval("Observation.code.coding.code", &observation),
        ["\"x\""]
    );
    assert_eq!(
        eval("Observation.value.ofType(Quantity).value", &observation),
        ["5"]
    );
    assert_eq!(eval("Observation is Resource", &observation), ["true"]);
}

#[test]
fn parse_errors_say_what_and_where() {
    assert_eq!(
        parse_error("Patient.name.soundex()"),
        ("unsupported function `soundex`".to_string(), 13)
    );
    assert_eq!(
        parse_error("Patient.name +"),
        ("arithmetic operators are not supported".to_string(), 13)
    );
    assert_eq!(
        parse_error("Patient.birthDate < '2020'"),
        ("ordering comparisons are not supported".to_string(), 18)
    );
    assert_eq!(
        parse_error("Patient.name ~ 'x'"),
        ("equivalence operators are not supported".to_string(), 13)
    );
    assert_eq!(
        parse_error("Patient.name.where(use = 'x'"),
        ("expected `)`".to_string(), 28)
    );
    assert_eq!(
        parse_error("Patient..name"),
        ("expected a name".to_string(), 8)
    );
    assert_eq!(
        parse_error("Patient.name)"),
        ("unexpected text after the expression".to_string(), 12)
    );
    assert_eq!(
        parse_error("Patient.extension(url)"),
        ("extension() takes a string literal url".to_string(), 8)
    );
    assert_eq!(
        parse_error("$index"),
        ("only the variable $this is supported".to_string(), 0)
    );
    assert_eq!(
        parse_error(""),
        ("unexpected end of the expression".to_string(), 0)
    );
    assert_eq!(
        parse_error("Patient.ofType()"),
        ("expected a type name".to_string(), 15)
    );
    assert_eq!(
        parse_error("99999999999999999999"),
        ("the integer is out of range".to_string(), 0)
    );
    assert_eq!(
        parse_error("a and"),
        ("unexpected end of the expression".to_string(), 5)
    );
    assert_eq!(parse_error("a and or"), ("expected a name".to_string(), 6));
}

#[test]
fn hostile_text_is_refused_not_overflowed() {
    let nested = format!("{}a{}", "(".repeat(100), ")".repeat(100));
    assert_eq!(
        parse_error(&nested).0,
        "the expression nests too deeply".to_string()
    );
    let long_chain = format!("a{}", ".b".repeat(500));
    assert_eq!(
        parse_error(&long_chain).0,
        "the expression nests too deeply".to_string()
    );
    let long = "a | ".repeat(3_000) + "a";
    assert_eq!(
        parse_error(&long).0,
        "the expression is too long".to_string()
    );
    for text in [
        "'unterminated",
        "`x",
        "/* x",
        "a.where(",
        "(",
        ")",
        "a[",
        "a[1",
        "-",
        "- a",
    ] {
        assert!(Expression::parse(text).is_err(), "{text}");
    }
}

#[test]
fn canonical_text_parses_back_to_the_same_tree() {
    for text in [
        "Patient.telecom.where(system='email')",
        "Patient.deceased.exists() and Patient.deceased != false",
        "(Group.characteristic.value as CodeableConcept) | (Group.characteristic.value as boolean)",
        "Account.subject.where(resolve() is Patient)",
        "a | b | (c | d)",
        "a = (b | c)",
        "(a or b) and c",
        "a implies (b implies c)",
        "name[0].given.first()",
        "extension('http://x/\\'q\\'').value.ofType(FHIR.Coding)",
        "`div`.x.`and`",
        "-1.5.exists() and (-2).exists()",
        "{}.exists() xor $this.empty()",
    ] {
        let parsed = Expression::parse(text).expect(text);
        let canonical = parsed.expr.to_string();
        let reparsed = Expression::parse(&canonical).expect(&canonical);
        assert_eq!(parsed.expr, reparsed.expr, "{text} -> {canonical}");
    }
    assert_eq!(
        Expression::parse("Patient.telecom.where(system='email')")
            .expect("parses")
            .expr
            .to_string(),
        "Patient.telecom.where(system = 'email')"
    );
}

#[test]
fn for_type_keeps_the_branches_of_that_type() {
    let expression =
        Expression::parse("Patient.address.city | Person.address.city | Practitioner.address.city")
            .expect("parses");
    assert_eq!(
        expression.for_type("Patient").map(|e| e.to_string()),
        Some("Patient.address.city".to_string())
    );
    assert_eq!(
        expression.for_type("Practitioner").map(|e| e.to_string()),
        Some("Practitioner.address.city".to_string())
    );
    assert_eq!(expression.for_type("Group"), None);
    let common = Expression::parse("Resource.meta.tag").expect("parses");
    assert_eq!(common.for_type("Invoice"), Some(common.clone()));
    let relative = Expression::parse("id").expect("parses");
    assert_eq!(relative.for_type("Invoice"), Some(relative.clone()));
    let mixed =
        Expression::parse("(Patient.name | Person.name).given | Person.id").expect("parses");
    assert_eq!(
        mixed.for_type("Patient").map(|e| e.to_string()),
        Some("(Patient.name | Person.name).given".to_string())
    );
}

/// The locations of what `text` selects on `resource`, as `key/0/key` strings.
fn locations(text: &str, resource: &Value) -> Vec<Option<String>> {
    let expression = Expression::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let items = expression.evaluate(resource).expect(text);
    let values: Vec<&Value> = items
        .iter()
        .map(|item| match item {
            Item::Node(node) => node.value(),
            other => panic!("{text} selected {other:?}"),
        })
        .collect();
    super::locate(resource, &values)
        .into_iter()
        .map(|location| {
            location.map(|steps| {
                steps
                    .iter()
                    .map(|step| match step {
                        Step::Key(key) => key.clone(),
                        Step::Index(index) => index.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("/")
            })
        })
        .collect()
}

#[test]
fn selected_elements_are_located_by_identity() {
    let patient = patient();
    let at = |path: &str| Some(path.to_string());
    assert_eq!(locations("Patient", &patient), [at("")]);
    assert_eq!(
        locations("Patient.name.given", &patient),
        [
            at("name/0/given/0"),
            at("name/0/given/1"),
            at("name/1/given/0")
        ]
    );
    // Equal values in two places are two locations.
    assert_eq!(
        locations("Patient.name.given.where($this = 'Peter')", &patient),
        [at("name/0/given/0"), at("name/1/given/0")]
    );
    assert_eq!(
        locations("Patient.telecom.where(system = 'email')[1].value", &patient),
        [at("telecom/2/value")]
    );
    assert_eq!(
        locations("Patient.deceased", &patient),
        [at("deceasedDateTime")]
    );
    assert_eq!(
        locations("Patient.generalPractitioner[2].resolve()", &patient),
        [at("contained/0")]
    );
    assert_eq!(locations("Patient.birthDate", &patient), []);
    // A value of another document is not located.
    let elsewhere = json!("Peter");
    assert_eq!(super::locate(&patient, &[&elsewhere]), [None]);
}
