//! Unit tests of the validator: one per kind of problem, with the exact expression reported.

use serde_json::{Value, json};

use super::{parse_strict, supported_resource_types, validate};
use crate::outcome::{Issue, IssueCode};

/// A value no diagnostic may ever quote.
const SECRET: &str = "Zyx-secret";

fn patient(extra: Value) -> Value {
    let mut patient = json!({
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "gender": "male",
        "birthDate": "1974-12-25"
    });
    for (key, value) in extra.as_object().expect("object").clone() {
        patient[key] = value;
    }
    patient
}

fn found(resource: &Value) -> Vec<(IssueCode, String)> {
    validate(resource)
        .into_iter()
        .map(|issue| (issue.code, issue.expression.unwrap_or_default()))
        .collect()
}

/// Asserts exactly one issue, at `expression`, and returns it.
fn one(resource: Value, code: IssueCode, expression: &str) -> Issue {
    let issues = validate(&resource);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    let issue = issues.into_iter().next().expect("one issue");
    assert_eq!(
        (issue.code, issue.expression.as_deref()),
        (code, Some(expression)),
        "{issue:?}"
    );
    assert!(!issue.diagnostics.contains(SECRET), "{issue:?}");
    issue
}

#[test]
fn a_valid_patient_has_no_issues() {
    assert_eq!(found(&patient(json!({}))), []);
    assert!(parse_strict(&patient(json!({})).to_string(), "Patient").is_ok());
    assert_eq!(
        supported_resource_types(),
        [
            "Account",
            "Group",
            "Invoice",
            "Organization",
            "Patient",
            "Practitioner"
        ]
    );
}

#[test]
fn impossible_dates() {
    let issue = one(
        patient(json!({"birthDate": "1980-13-45"})),
        IssueCode::Value,
        "Patient.birthDate",
    );
    assert_eq!(issue.diagnostics, "not a valid date");
    one(
        patient(json!({"birthDate": "2023-02-29"})),
        IssueCode::Value,
        "Patient.birthDate",
    );
    assert_eq!(found(&patient(json!({"birthDate": "2024-02-29"}))), []);
    one(
        patient(json!({"deceasedDateTime": "2015-02-07T25:00:00Z"})),
        IssueCode::Value,
        "Patient.deceased.ofType(dateTime)",
    );
}

#[test]
fn instant_needs_a_timezone() {
    let issue = one(
        patient(json!({"meta": {"lastUpdated": "2015-02-07T13:28:17"}})),
        IssueCode::Value,
        "Patient.meta.lastUpdated",
    );
    assert!(issue.diagnostics.contains("timezone"));
    assert_eq!(
        found(&patient(
            json!({"meta": {"lastUpdated": "2015-02-07T13:28:17.239+02:00"}})
        )),
        []
    );
}

#[test]
fn codes_outside_required_value_sets() {
    let issue = one(
        patient(json!({"gender": "robot"})),
        IssueCode::CodeInvalid,
        "Patient.gender",
    );
    assert_eq!(
        issue.diagnostics,
        "code is not in the required value set http://hl7.org/fhir/ValueSet/administrative-gender"
    );
    one(
        patient(json!({"telecom": [{"system": "phone"}, {"system": SECRET, "value": "1"}]})),
        IssueCode::CodeInvalid,
        "Patient.telecom[1].system",
    );
    one(
        patient(json!({"contact": [{"gender": SECRET}]})),
        IssueCode::CodeInvalid,
        "Patient.contact[0].gender",
    );
    // A code must also be a well-formed code before its membership is tested.
    one(
        patient(json!({"gender": " male"})),
        IssueCode::Value,
        "Patient.gender",
    );
    // Value sets over a grammar (BCP 13) are checked by syntax.
    one(
        patient(json!({"photo": [{"contentType": SECRET}]})),
        IssueCode::CodeInvalid,
        "Patient.photo[0].contentType",
    );
    assert_eq!(
        found(&patient(json!({"photo": [{"contentType": "image/gif"}]}))),
        []
    );
}

#[test]
fn empty_strings() {
    let issue = one(
        patient(json!({"name": [{"family": ""}]})),
        IssueCode::Value,
        "Patient.name[0].family",
    );
    assert_eq!(issue.diagnostics, "string must not be empty");
    one(
        patient(json!({"name": [{"given": ["Peter", ""]}]})),
        IssueCode::Value,
        "Patient.name[0].given[1]",
    );
}

#[test]
fn unknown_elements() {
    let issue = one(
        patient(json!({"foo": SECRET})),
        IssueCode::Structure,
        "Patient.foo",
    );
    assert_eq!(issue.diagnostics, "unknown element");
    one(
        patient(json!({"name": [{"family": "X"}, {"family": "Y", "nickname": "Z"}]})),
        IssueCode::Structure,
        "Patient.name[1].nickname",
    );
    one(
        patient(json!({"managingOrganization": {"resourceType": "Organization"}})),
        IssueCode::Structure,
        "Patient.managingOrganization.resourceType",
    );
    // `_name` companions exist only for primitives.
    one(
        patient(json!({"_name": [{"id": "a"}]})),
        IssueCode::Structure,
        "Patient._name",
    );
}

#[test]
fn wrong_json_types() {
    let issue = one(
        patient(json!({"active": "true"})),
        IssueCode::Structure,
        "Patient.active",
    );
    assert_eq!(issue.diagnostics, "expected a boolean");
    let issue = one(
        patient(json!({"birthDate": 1980})),
        IssueCode::Structure,
        "Patient.birthDate",
    );
    assert_eq!(issue.diagnostics, "expected a string");
    one(
        patient(json!({"multipleBirthInteger": "2"})),
        IssueCode::Structure,
        "Patient.multipleBirth.ofType(integer)",
    );
    one(
        patient(json!({"maritalStatus": "M"})),
        IssueCode::Structure,
        "Patient.maritalStatus",
    );
    let one_point_zero: Value = serde_json::from_str("1.0").expect("number");
    one(
        patient(json!({"multipleBirthInteger": one_point_zero})),
        IssueCode::Value,
        "Patient.multipleBirth.ofType(integer)",
    );
    one(
        patient(json!({"photo": [{"size": -1}]})),
        IssueCode::Value,
        "Patient.photo[0].size",
    );
}

#[test]
fn missing_required_elements() {
    let issue = one(
        json!({"resourceType": "Account"}),
        IssueCode::Required,
        "Account.status",
    );
    assert_eq!(issue.diagnostics, "minimum cardinality 1 not met");
    one(
        json!({"resourceType": "Invoice"}),
        IssueCode::Required,
        "Invoice.status",
    );
    assert_eq!(
        found(&json!({"resourceType": "Account", "status": "active"})),
        []
    );
    one(
        patient(json!({"link": [{"type": "seealso"}]})),
        IssueCode::Required,
        "Patient.link[0].other",
    );
    one(
        patient(json!({"communication": [{"preferred": true}]})),
        IssueCode::Required,
        "Patient.communication[0].language",
    );
}

#[test]
fn choice_types() {
    let issue = one(
        patient(json!({"deceasedFoo": true})),
        IssueCode::Structure,
        "Patient.deceasedFoo",
    );
    assert_eq!(
        issue.diagnostics,
        "unknown type for choice element deceased[x]"
    );
    one(
        patient(json!({"deceased": true})),
        IssueCode::Structure,
        "Patient.deceased",
    );
    let issue = one(
        patient(json!({"deceasedBoolean": true, "deceasedDateTime": "2015"})),
        IssueCode::Structure,
        "Patient.deceased",
    );
    assert_eq!(
        issue.diagnostics,
        "only one type of choice element deceased[x] may be present"
    );
    // The value and its companion are one element, not two choices.
    assert_eq!(
        found(&patient(json!({
            "_deceasedBoolean": {"id": "d"},
            "deceasedBoolean": true
        }))),
        []
    );
}

#[test]
fn arrays_and_single_values() {
    let issue = one(
        patient(json!({"gender": ["male"]})),
        IssueCode::Structure,
        "Patient.gender",
    );
    assert_eq!(issue.diagnostics, "expected a single value, not an array");
    let issue = one(
        patient(json!({"name": {"family": "X"}})),
        IssueCode::Structure,
        "Patient.name",
    );
    assert_eq!(issue.diagnostics, "expected an array");
    one(
        patient(json!({"name": [{"given": "Peter"}]})),
        IssueCode::Structure,
        "Patient.name[0].given",
    );
}

#[test]
fn nulls() {
    one(
        patient(json!({"gender": null})),
        IssueCode::Structure,
        "Patient.gender",
    );
    one(
        patient(json!({"name": [null]})),
        IssueCode::Structure,
        "Patient.name[0]",
    );
    one(
        patient(json!({"name": [{"given": ["a", null]}]})),
        IssueCode::Structure,
        "Patient.name[0].given[1]",
    );
    // Nulls pair a value array with its extension array (json.html#primitive).
    let paired = patient(json!({"name": [{
        "given": ["Peter", null],
        "_given": [null, {"extension": [{"url": "http://example.org/x", "valueString": "J"}]}]
    }]}));
    assert_eq!(found(&paired), []);
    one(
        patient(json!({"name": [{"given": ["Peter", "J"], "_given": [null]}]})),
        IssueCode::Structure,
        "Patient.name[0].given",
    );
    one(
        patient(json!({"name": [{"given": ["Peter", null], "_given": [null, null]}]})),
        IssueCode::Structure,
        "Patient.name[0].given[1]",
    );
}

#[test]
fn empty_objects_and_arrays() {
    let issue = one(
        patient(json!({"name": [{}]})),
        IssueCode::Invalid,
        "Patient.name[0]",
    );
    assert_eq!(issue.diagnostics, "element must have a value or children");
    one(
        patient(json!({"meta": {}})),
        IssueCode::Invalid,
        "Patient.meta",
    );
    let issue = one(
        patient(json!({"name": []})),
        IssueCode::Invalid,
        "Patient.name",
    );
    assert_eq!(issue.diagnostics, "array must not be empty");
    one(
        patient(json!({"_birthDate": {}})),
        IssueCode::Invalid,
        "Patient.birthDate",
    );
}

#[test]
fn ids() {
    one(
        patient(json!({"id": "a_b"})),
        IssueCode::Value,
        "Patient.id",
    );
    one(
        patient(json!({"id": "x".repeat(65)})),
        IssueCode::Value,
        "Patient.id",
    );
    // Element ids are plain strings.
    assert_eq!(
        found(&patient(
            json!({"name": [{"id": "any thing_", "family": "X"}]})
        )),
        []
    );
}

#[test]
fn decimals_keep_their_precision() {
    let text = r#"{"resourceType": "Invoice", "status": "issued",
        "totalNet": {"value": 12345678901234567890.123456789012345678901, "currency": "EUR"}}"#;
    let invoice: Value = serde_json::from_str(text).expect("json");
    assert_eq!(found(&invoice), []);
    assert_eq!(
        invoice["totalNet"]["value"].to_string(),
        "12345678901234567890.123456789012345678901"
    );
    assert_eq!(parse_strict(text, "Invoice"), Ok(()));
    one(
        json!({"resourceType": "Invoice", "status": "issued", "totalNet": {"value": "12.5"}}),
        IssueCode::Structure,
        "Invoice.totalNet.value",
    );
    one(
        json!({"resourceType": "Invoice", "status": "issued", "totalNet": {"currency": "euro"}}),
        IssueCode::CodeInvalid,
        "Invoice.totalNet.currency",
    );
}

#[test]
fn backbone_elements_and_content_references() {
    let line = |extra: Value| {
        let mut item = json!({"chargeItemReference": {"reference": "ChargeItem/1"}});
        for (key, value) in extra.as_object().expect("object").clone() {
            item[key] = value;
        }
        item
    };
    let invoice = json!({
        "resourceType": "Invoice",
        "status": "issued",
        "lineItem": [
            line(json!({})),
            line(json!({"priceComponent": [{"type": "base", "amount": {"value": "12", "currency": "USD"}}]}))
        ]
    });
    let issue = one(
        invoice,
        IssueCode::Structure,
        "Invoice.lineItem[1].priceComponent[0].amount.value",
    );
    assert_eq!(issue.diagnostics, "expected a number");
    one(
        json!({"resourceType": "Invoice", "status": "issued", "lineItem": [{"sequence": 1}]}),
        IssueCode::Required,
        "Invoice.lineItem[0].chargeItem",
    );
    // totalPriceComponent is defined by contentReference to lineItem.priceComponent.
    one(
        json!({"resourceType": "Invoice", "status": "issued", "totalPriceComponent": [{"factor": 1}]}),
        IssueCode::Required,
        "Invoice.totalPriceComponent[0].type",
    );
    one(
        json!({"resourceType": "Invoice", "status": "issued", "totalPriceComponent": [{"type": "rebate"}]}),
        IssueCode::CodeInvalid,
        "Invoice.totalPriceComponent[0].type",
    );
}

#[test]
fn extensions() {
    one(
        patient(json!({"extension": [{"valueString": "x"}]})),
        IssueCode::Required,
        "Patient.extension[0].url",
    );
    one(
        patient(
            json!({"extension": [{"url": "http://example.org/a", "extension": [
                {"url": "b", "valueDate": "2023-02-29"}
            ]}]}),
        ),
        IssueCode::Value,
        "Patient.extension[0].extension[0].value.ofType(date)",
    );
    let issue = one(
        patient(json!({"extension": [{"url": "http://example.org/a"}]})),
        IssueCode::Invalid,
        "Patient.extension[0]",
    );
    assert!(issue.diagnostics.contains("either"));
    one(
        patient(json!({"modifierExtension": [{"url": "http://example.org/a", "valueFoo": 1}]})),
        IssueCode::Structure,
        "Patient.modifierExtension[0].valueFoo",
    );
    // Extensions of a primitive live in its `_name` companion and share its expression.
    one(
        patient(
            json!({"_birthDate": {"extension": [{"url": "http://example.org/t", "valueString": ""}]}}),
        ),
        IssueCode::Value,
        "Patient.birthDate.extension[0].value.ofType(string)",
    );
    one(
        patient(json!({"_gender": "male"})),
        IssueCode::Structure,
        "Patient.gender",
    );
    one(
        patient(json!({"_birthDate": {"value": "x"}})),
        IssueCode::Structure,
        "Patient.birthDate.value",
    );
    // SimpleQuantity (Range.low) forbids a comparator.
    let issue = one(
        patient(json!({"extension": [{"url": "http://example.org/r",
            "valueRange": {"low": {"value": 1, "comparator": "<"}}}]})),
        IssueCode::Structure,
        "Patient.extension[0].value.ofType(Range).low.comparator",
    );
    assert!(issue.diagnostics.contains("maximum cardinality 0"));
}

#[test]
fn contained_resources() {
    one(
        patient(json!({"contained": [
            {"resourceType": "Organization", "id": "o1", "name": "ACME"},
            {"resourceType": "Patient", "id": "p2", "name": [{"family": ""}]}
        ]})),
        IssueCode::Value,
        "Patient.contained[1].name[0].family",
    );
    one(
        patient(json!({"contained": [{"resourceType": "Account", "id": "a"}]})),
        IssueCode::Required,
        "Patient.contained[0].status",
    );
    one(
        patient(json!({"contained": [{"resourceType": "Observation", "id": "o"}]})),
        IssueCode::NotSupported,
        "Patient.contained[0]",
    );
    one(
        patient(json!({"contained": [{"id": "o"}]})),
        IssueCode::Required,
        "Patient.contained[0]",
    );
}

#[test]
fn the_root() {
    let issues = validate(&json!([1]));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].code, IssueCode::Structure);
    let issues = validate(&json!({"id": "x"}));
    assert_eq!(
        (issues[0].code, issues[0].expression.as_deref()),
        (IssueCode::Required, None)
    );
    let issues = validate(&json!({"resourceType": "Observation"}));
    assert_eq!(issues.len(), 1);
    assert_eq!(
        (issues[0].code, issues[0].expression.as_deref()),
        (IssueCode::NotSupported, None)
    );
    // Abstract types are not resources one can send.
    let issues = validate(&json!({"resourceType": "DomainResource"}));
    assert_eq!(issues[0].code, IssueCode::NotSupported);
}

#[test]
fn every_problem_is_reported() {
    let issues = found(&patient(json!({
        "birthDate": "1980-13-45",
        "gender": "robot",
        "foo": 1,
        "name": [{"family": ""}]
    })));
    assert_eq!(
        issues,
        [
            (IssueCode::Value, "Patient.name[0].family".to_string()),
            (IssueCode::CodeInvalid, "Patient.gender".to_string()),
            (IssueCode::Value, "Patient.birthDate".to_string()),
            (IssueCode::Structure, "Patient.foo".to_string()),
        ]
    );
}

#[test]
fn strict_parse_errors_do_not_quote_values() {
    let text = patient(json!({"active": SECRET})).to_string();
    let issue = parse_strict(&text, "Patient").expect_err("a string is not a boolean");
    assert_eq!(issue.code, IssueCode::Structure);
    assert!(!issue.diagnostics.contains(SECRET), "{}", issue.diagnostics);
    assert!(
        issue.diagnostics.starts_with("not valid FHIR R4 JSON"),
        "{}",
        issue.diagnostics
    );

    let text = patient(json!({"name": [{"family": ["x", SECRET]}]})).to_string();
    let issue = parse_strict(&text, "Patient").expect_err("an array is not a string");
    assert!(!issue.diagnostics.contains(SECRET), "{}", issue.diagnostics);
    println!("{}", issue.diagnostics);

    let text = patient(json!({"multipleBirthInteger": 1.5})).to_string();
    let issue = parse_strict(&text, "Patient").expect_err("not an integer");
    assert!(!issue.diagnostics.contains("1.5"), "{}", issue.diagnostics);
    println!("{}", issue.diagnostics);

    let issue = parse_strict(&patient(json!({"nickname": "x"})).to_string(), "Patient")
        .expect_err("unknown");
    assert!(
        issue.diagnostics.contains("unknown field"),
        "{}",
        issue.diagnostics
    );

    let issue =
        parse_strict(r#"{"resourceType": "Zyx-secret"}"#, "Zyx-secret").expect_err("unknown type");
    assert!(!issue.diagnostics.contains(SECRET), "{}", issue.diagnostics);
    println!("{}", issue.diagnostics);
}
