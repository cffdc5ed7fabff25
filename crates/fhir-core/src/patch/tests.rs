//! Unit tests of reading and applying patches.

use serde_json::{Value, json};

use super::{Failure, Patch, PatchError};

/// An `operation` parameter: its type, its path, and the other parts as `(name, part)` where
/// the part is the rest of the part's JSON (`{"valueString": "x"}`).
fn operation(kind: &str, path: &str, parts: &[(&str, Value)]) -> Value {
    let mut list = vec![
        json!({"name": "type", "valueCode": kind}),
        json!({"name": "path", "valueString": path}),
    ];
    for (name, part) in parts {
        let mut part = part.clone();
        part["name"] = json!(name);
        list.push(part);
    }
    json!({"name": "operation", "part": list})
}

fn parameters(operations: &[Value]) -> Value {
    json!({"resourceType": "Parameters", "parameter": operations})
}

/// Applies the operations to `resource`, which is left unchanged on failure.
fn apply(resource: &Value, operations: &[Value]) -> Result<Value, PatchError> {
    let patch = Patch::fhirpath(&parameters(operations))?;
    let mut patched = resource.clone();
    let result = patch.apply(&mut patched);
    if result.is_err() {
        assert_eq!(&patched, resource, "a failed patch changes nothing");
    }
    result.map(|()| patched)
}

#[track_caller]
fn applied(resource: &Value, operations: &[Value]) -> Value {
    apply(resource, operations).unwrap_or_else(|e| panic!("{e}"))
}

/// The failure of the first operation that does not apply.
#[track_caller]
fn failure(resource: &Value, operations: &[Value]) -> Failure {
    match apply(resource, operations) {
        Err(PatchError::NotApplicable { failure, .. }) => failure,
        other => panic!("expected an operation that does not apply, got {other:?}"),
    }
}

#[track_caller]
fn invalid(parameters: &Value) -> String {
    match Patch::fhirpath(parameters) {
        Err(error @ PatchError::Invalid { .. }) => error.to_string(),
        other => panic!("expected an invalid patch, got {other:?}"),
    }
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "active": true,
        "name": [
            {"family": "Chalmers", "given": ["Peter", "James"], "_given": [
                null,
                {"extension": [{"url": "http://example.org/x", "valueString": "j"}]}
            ]},
            {"use": "maiden", "given": ["Jim"]}
        ],
        "identifier": [
            {"system": "http://example.org", "value": "1"},
            {"system": "http://example.org", "value": "2"},
            {"system": "http://example.org", "value": "3"}
        ],
        "deceasedBoolean": false,
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [
            {"url": "http://example.org/t", "valueDateTime": "1974-12-25T14:35:45-05:00"}
        ]}
    })
}

fn values(resource: &Value) -> Vec<&str> {
    resource["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["value"].as_str())
        .collect()
}

#[test]
fn add_sets_an_element_or_appends_to_a_list() {
    let empty = json!({"resourceType": "Patient"});
    let patched = applied(
        &empty,
        &[
            operation(
                "add",
                "Patient",
                &[
                    ("name", json!({"valueString": "birthDate"})),
                    ("value", json!({"valueDate": "1930-01-01"})),
                ],
            ),
            operation(
                "add",
                "Patient",
                &[
                    ("name", json!({"valueString": "maritalStatus"})),
                    (
                        "value",
                        json!({"valueCodeableConcept": {"text": "married"}}),
                    ),
                ],
            ),
            operation(
                "add",
                "Patient",
                &[
                    ("name", json!({"valueString": "identifier"})),
                    ("value", json!({"valueIdentifier": {"value": "a"}})),
                ],
            ),
            operation(
                "add",
                "Patient",
                &[
                    ("name", json!({"valueString": "identifier"})),
                    ("value", json!({"valueIdentifier": {"value": "b"}})),
                ],
            ),
        ],
    );
    assert_eq!(
        patched,
        json!({
            "resourceType": "Patient",
            "birthDate": "1930-01-01",
            "maritalStatus": {"text": "married"},
            "identifier": [{"value": "a"}, {"value": "b"}]
        })
    );
}

#[test]
fn add_names_a_choice_element_by_the_value_type() {
    let patched = applied(
        &json!({"resourceType": "Patient"}),
        &[operation(
            "add",
            "Patient",
            &[
                ("name", json!({"valueString": "deceased"})),
                ("value", json!({"valueDateTime": "2020-01-01"})),
            ],
        )],
    );
    assert_eq!(patched["deceasedDateTime"], "2020-01-01");
    // The element has a value already, under either name.
    assert_eq!(
        failure(
            &patched,
            &[operation(
                "add",
                "Patient",
                &[
                    ("name", json!({"valueString": "deceased"})),
                    ("value", json!({"valueBoolean": true})),
                ],
            )]
        ),
        Failure::AlreadyPresent
    );
    // Neither choice type is a string.
    assert_eq!(
        failure(
            &json!({"resourceType": "Patient"}),
            &[operation(
                "add",
                "Patient",
                &[
                    ("name", json!({"valueString": "deceased"})),
                    ("value", json!({"valueString": "yes"})),
                ],
            )]
        ),
        Failure::WrongType
    );
}

#[test]
fn add_builds_anonymous_elements_from_parts() {
    let value = json!({"part": [
        {"name": "name", "valueHumanName": {"text": "a name"}},
        {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "1"}},
        {"name": "telecom", "valueContactPoint": {"system": "email", "value": "e"}},
        {"name": "gender", "valueCode": "female", "_valueCode": {"id": "g"}},
        {"name": "period", "part": [{"name": "start", "valueDateTime": "2012"}]}
    ]});
    let add_contact = |value: Value| {
        operation(
            "add",
            "Patient",
            &[
                ("name", json!({"valueString": "contact"})),
                ("value", value),
            ],
        )
    };
    let patched = applied(&json!({"resourceType": "Patient"}), &[add_contact(value)]);
    assert_eq!(
        patched["contact"],
        json!([{
            "name": {"text": "a name"},
            "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "e"}],
            "gender": "female",
            "_gender": {"id": "g"},
            "period": {"start": "2012"}
        }])
    );
    let unknown = json!({"part": [{"name": "nickname", "valueString": "x"}]});
    let twice = json!({"part": [
        {"name": "gender", "valueCode": "female"},
        {"name": "gender", "valueCode": "male"}
    ]});
    for (value, expected) in [
        (unknown, Failure::UnknownElement),
        (twice, Failure::AlreadyPresent),
    ] {
        assert_eq!(failure(&patient(), &[add_contact(value)]), expected);
    }
}

#[test]
fn add_needs_one_complex_element() {
    let add = |path: &str, name: &str| {
        operation(
            "add",
            path,
            &[
                ("name", json!({"valueString": name})),
                ("value", json!({"valueString": "x"})),
            ],
        )
    };
    let patient = patient();
    for (path, name, expected) in [
        ("Patient.contact", "gender", Failure::NoMatch),
        ("Patient.name", "text", Failure::SeveralMatches),
        ("Patient.birthDate", "text", Failure::Primitive),
        ("Patient", "nickname", Failure::UnknownElement),
        ("Patient.active.exists()", "text", Failure::NotAnElement),
    ] {
        assert_eq!(failure(&patient, &[add(path, name)]), expected, "{path}");
    }
    let patched = applied(&patient, &[add("Patient.name[1]", "family")]);
    assert_eq!(patched["name"][1]["family"], "x");
}

#[test]
fn insert_puts_an_item_at_an_index_of_the_whole_list() {
    let insert = |path: &str, index: u64, value: &str| {
        operation(
            "insert",
            path,
            &[
                ("index", json!({"valueInteger": index})),
                ("value", json!({"valueIdentifier": {"value": value}})),
            ],
        )
    };
    let patient = patient();
    let patched = applied(
        &patient,
        &[
            insert("Patient.identifier", 1, "a"),
            insert("Patient.identifier", 4, "b"),
            // One item of the list names the list; the index counts in all of it.
            insert("Patient.identifier.where(value = '3')", 0, "c"),
        ],
    );
    assert_eq!(values(&patched), ["c", "1", "a", "2", "3", "b"]);
    for (path, index, expected) in [
        ("Patient.identifier", 4, Failure::IndexOutOfRange),
        ("Patient.maritalStatus", 0, Failure::NoMatch),
        ("Patient.birthDate", 0, Failure::NotAList),
        ("Patient.name.given", 0, Failure::SeveralLists),
    ] {
        let got = failure(&patient, &[insert(path, index, "x")]);
        assert_eq!(got, expected, "{path}");
    }
}

#[test]
fn insert_keeps_primitive_extensions_aligned() {
    let patched = applied(
        &patient(),
        &[operation(
            "insert",
            "Patient.name[0].given",
            &[
                ("index", json!({"valueInteger": 0})),
                ("value", json!({"valueString": "Pete"})),
            ],
        )],
    );
    assert_eq!(
        patched["name"][0]["given"],
        json!(["Pete", "Peter", "James"])
    );
    assert_eq!(
        patched["name"][0]["_given"][2],
        patient()["name"][0]["_given"][1]
    );
    assert_eq!(
        patched["name"][0]["_given"].as_array().map(Vec::len),
        Some(3)
    );
    let with_extension = applied(
        &patient(),
        &[operation(
            "insert",
            "Patient.name[1].given",
            &[
                ("index", json!({"valueInteger": 1})),
                (
                    "value",
                    json!({"valueString": "J", "_valueString": {"id": "j"}}),
                ),
            ],
        )],
    );
    assert_eq!(with_extension["name"][1]["given"], json!(["Jim", "J"]));
    assert_eq!(
        with_extension["name"][1]["_given"],
        json!([null, {"id": "j"}])
    );
}

#[test]
fn delete_removes_one_element_and_what_it_leaves_empty() {
    let delete = |path: &str| operation("delete", path, &[]);
    let patient = patient();
    let patched = applied(
        &patient,
        &[
            delete("Patient.identifier[0]"),
            delete("Patient.birthDate"),
            delete("Patient.name[0].given[0]"),
        ],
    );
    assert_eq!(values(&patched), ["2", "3"]);
    // A primitive goes with its extensions.
    assert!(patched.get("birthDate").is_none() && patched.get("_birthDate").is_none());
    assert_eq!(patched["name"][0]["given"], json!(["James"]));
    assert_eq!(
        patched["name"][0]["_given"],
        json!([patient["name"][0]["_given"][1]])
    );

    // The extensions of the one given name left go with it; so does the emptied name.
    let patched = applied(&patient, &[delete("Patient.name[1].given")]);
    assert_eq!(patched["name"].as_array().map(Vec::len), Some(2));
    let patched = applied(
        &patched,
        &[
            delete("Patient.name[1].use"),
            delete("Patient.name[0].given[1]"),
        ],
    );
    assert_eq!(patched["name"].as_array().map(Vec::len), Some(1));
    assert!(patched["name"][0].get("_given").is_none());

    // Nothing to delete is no error; several things are.
    assert_eq!(applied(&patient, &[delete("Patient.contact")]), patient);
    assert_eq!(
        failure(&patient, &[delete("Patient.identifier")]),
        Failure::SeveralMatches
    );
    assert_eq!(
        failure(&patient, &[delete("Patient")]),
        Failure::WholeResource
    );
}

#[test]
fn replace_puts_a_value_in_the_place_of_one_element() {
    let replace = |path: &str, value: Value| operation("replace", path, &[("value", value)]);
    let patient = patient();
    let patched = applied(
        &patient,
        &[
            replace("Patient.birthDate", json!({"valueDate": "1930-01-01"})),
            replace(
                "Patient.identifier[1]",
                json!({"valueIdentifier": {"value": "b"}}),
            ),
            replace("Patient.name[0].given[1]", json!({"valueString": "Jim"})),
            // Another type of a choice element takes its name.
            replace("Patient.deceased", json!({"valueDateTime": "2020-01-01"})),
        ],
    );
    // Replaced whole: the extensions of the old value are gone.
    assert_eq!(patched["birthDate"], "1930-01-01");
    assert!(patched.get("_birthDate").is_none());
    assert_eq!(values(&patched), ["1", "b", "3"]);
    assert_eq!(patched["name"][0]["given"], json!(["Peter", "Jim"]));
    assert!(patched["name"][0].get("_given").is_none());
    assert!(patched.get("deceasedBoolean").is_none());
    assert_eq!(patched["deceasedDateTime"], "2020-01-01");

    assert_eq!(
        failure(
            &patient,
            &[replace(
                "Patient.identifier[0]",
                json!({"valueHumanName": {"text": "x"}})
            )]
        ),
        Failure::WrongType
    );
    assert_eq!(
        failure(
            &patient,
            &[replace("Patient.gender", json!({"valueCode": "male"}))]
        ),
        Failure::NoMatch
    );
    assert_eq!(
        failure(
            &patient,
            &[replace(
                "Patient.identifier",
                json!({"valueIdentifier": {"value": "b"}})
            )]
        ),
        Failure::SeveralMatches
    );
    assert_eq!(
        failure(&patient, &[replace("Patient", json!({"valueString": "x"}))]),
        Failure::WholeResource
    );
}

#[test]
fn move_reorders_a_list_with_its_extensions() {
    let move_op = |path: &str, source: u64, destination: u64| {
        operation(
            "move",
            path,
            &[
                ("source", json!({"valueInteger": source})),
                ("destination", json!({"valueInteger": destination})),
            ],
        )
    };
    let patient = patient();
    let patched = applied(
        &patient,
        &[
            move_op("Patient.identifier", 0, 2),
            move_op("Patient.name[0].given", 1, 0),
        ],
    );
    assert_eq!(values(&patched), ["2", "3", "1"]);
    assert_eq!(patched["name"][0]["given"], json!(["James", "Peter"]));
    assert_eq!(
        patched["name"][0]["_given"],
        json!([patient["name"][0]["_given"][1], null])
    );
    assert_eq!(
        failure(&patient, &[move_op("Patient.identifier", 3, 0)]),
        Failure::IndexOutOfRange
    );
    assert_eq!(
        failure(&patient, &[move_op("Patient.identifier", 0, 3)]),
        Failure::IndexOutOfRange
    );
}

#[test]
fn a_patch_applies_whole_or_not_at_all() {
    let patient = patient();
    let result = apply(
        &patient,
        &[
            operation("delete", "Patient.birthDate", &[]),
            operation(
                "replace",
                "Patient.gender",
                &[("value", json!({"valueCode": "male"}))],
            ),
        ],
    );
    let Err(error) = result else {
        panic!("the second operation does not apply");
    };
    assert_eq!(
        error.to_string(),
        "operation 1 (`Patient.gender`): the path selects no element"
    );
}

#[test]
fn messages_name_the_operation_never_a_value() {
    let secret = "Zebediah";
    let operations = [
        operation(
            "replace",
            "Patient.identifier[0]",
            &[("value", json!({"valueHumanName": {"text": secret}}))],
        ),
        operation(
            "add",
            "Patient",
            &[
                ("name", json!({"valueString": "birthDate"})),
                ("value", json!({"valueDate": secret})),
            ],
        ),
    ];
    for operation in operations {
        let error = apply(&patient(), &[operation]).expect_err("does not apply");
        assert!(!error.to_string().contains(secret), "{error}");
    }
    let error = invalid(&parameters(&[operation(
        "replace",
        "Patient.birthDate",
        &[("value", json!({"valueDate": {"text": secret}}))],
    )]));
    assert!(!error.contains(secret), "{error}");
}

#[test]
fn a_parameters_that_is_not_a_fhirpath_patch_is_invalid() {
    let add = |parts: &[(&str, Value)]| parameters(&[operation("add", "Patient", parts)]);
    let name = ("name", json!({"valueString": "birthDate"}));
    let value = ("value", json!({"valueDate": "1930-01-01"}));
    assert!(invalid(&json!({"resourceType": "Patient"})).contains("Parameters resource"));
    assert!(invalid(&json!([])).contains("Parameters resource"));
    assert!(
        invalid(&json!({"resourceType": "Parameters", "text": {}}))
            .starts_with("Parameters: `text`")
    );
    assert!(
        invalid(&json!({"resourceType": "Parameters",
                        "parameter": [{"name": "op", "part": []}]}))
        .contains("named `operation`")
    );
    // Missing, unknown, repeated and unexpected parts.
    assert!(invalid(&add(std::slice::from_ref(&value))).contains("`name` part is missing"));
    assert!(invalid(&add(std::slice::from_ref(&name))).contains("`value` part is missing"));
    assert!(
        invalid(&add(&[
            name.clone(),
            value.clone(),
            ("colour", json!({"valueString": "x"}))
        ]))
        .starts_with("Parameters.parameter[0].part[4]: not a part")
    );
    assert!(invalid(&add(&[name.clone(), name.clone(), value.clone()])).contains("second"));
    assert!(
        invalid(&add(&[
            name.clone(),
            value.clone(),
            ("index", json!({"valueInteger": 0}))
        ]))
        .contains("does not take this part")
    );
    let no_type = json!({"resourceType": "Parameters", "parameter": [{"name": "operation",
        "part": [{"name": "path", "valueString": "Patient"}]}]});
    assert!(invalid(&no_type).contains("`type` part is missing"));
    assert!(
        invalid(&parameters(&[operation("remove", "Patient", &[])]))
            .contains("add, insert, delete, replace or move")
    );
    assert!(
        invalid(&parameters(&[operation("delete", "Patient.name[", &[])]))
            .contains("not a FHIRPath expression")
    );
    assert!(
        invalid(&parameters(&[operation(
            "insert",
            "Patient.identifier",
            &[
                ("index", json!({"valueInteger": -1})),
                ("value", json!({"valueIdentifier": {}}))
            ]
        )]))
        .contains("0 or more")
    );
    // Values: one value[x] of the type its name gives, a resource, or parts.
    let bad_values = [
        json!({"valueDate": "1930-01-01", "valueString": "x"}),
        json!({}),
        json!({"valueDate": {"text": "x"}}),
        json!({"valueHumanName": "x"}),
        json!({"part": []}),
        json!({"valueString": "x", "part": [{"name": "a", "valueString": "b"}]}),
        json!({"resource": {"id": "x"}}),
        json!({"valueString": "x", "modifierExtension": []}),
    ];
    for bad in bad_values {
        invalid(&add(&[name.clone(), ("value", bad)]));
    }
}

#[test]
fn an_empty_parameters_changes_nothing() {
    let patient = patient();
    assert_eq!(applied(&patient, &[]), patient);
    let patch = Patch::fhirpath(&json!({"resourceType": "Parameters"})).expect("a patch");
    let mut resource = patient.clone();
    patch.apply(&mut resource).expect("applies");
    assert_eq!(resource, patient);
}

#[test]
fn json_patch_reads_and_applies() {
    let Err(PatchError::Invalid { .. }) = Patch::json(br#"{"op": "add"}"#) else {
        panic!("not a JSON Patch");
    };
    let patch = Patch::json(
        br#"[{"op": "replace", "path": "/active", "value": false},
             {"op": "test", "path": "/id", "value": "other"}]"#,
    )
    .expect("a JSON Patch");
    let mut resource = patient();
    let Err(PatchError::NotApplicable {
        operation: 1,
        path: None,
        failure: Failure::JsonPatch(_),
    }) = patch.apply(&mut resource)
    else {
        panic!("the test fails");
    };
    assert_eq!(resource, patient(), "the replace before it is undone");
}
