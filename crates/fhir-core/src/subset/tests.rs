use serde_json::{Value, json};

use super::{SUBSETTED_CODE, SUBSETTED_SYSTEM, Subset, subset};
use crate::search::query::Summary;

/// R4's patient-example (http://hl7.org/fhir/R4/patient-example.json), shortened, with a
/// photo, communication, marital status, extensions and a link added.
fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "example",
        "meta": {"versionId": "3", "lastUpdated": "2024-01-02T03:04:05Z"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter James Chalmers</div>"},
        "extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {"city": "Melbourne"}
        }],
        "identifier": [{
            "use": "usual",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "system": "urn:oid:1.2.36.146.595.217.0.1",
            "value": "12345",
            "period": {"start": "2001-05-06"},
            "assigner": {"display": "Acme Healthcare"}
        }],
        "active": true,
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {
                "use": "usual",
                "given": ["Jim", null],
                "_given": [null, {"extension": [{"url": "http://example.org/nick", "valueBoolean": true}]}]
            },
            {"extension": [{"url": "http://example.org/only-extension", "valueString": "x"}]}
        ],
        "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1}],
        "gender": "male",
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "1974-12-25T14:35:45-05:00"
        }]},
        "deceasedBoolean": false,
        "address": [{"use": "home", "line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999"}],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
        "multipleBirthInteger": 1,
        "photo": [{"contentType": "image/gif", "data": "R0lGODlhEwARAPcAAAAAAAAA"}],
        "contact": [{
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
            "name": {"family": "du Marché", "given": ["Bénédicte"]},
            "gender": "female"
        }],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en"}]}, "preferred": true}],
        "generalPractitioner": [{"reference": "Practitioner/example"}],
        "managingOrganization": {"reference": "Organization/1"},
        "link": [{
            "extension": [{"url": "http://example.org/why", "valueString": "merged"}],
            "other": {"reference": "Patient/pat2"},
            "type": "seealso"
        }]
    })
}

/// R4's invoice-example (http://hl7.org/fhir/R4/invoice-example.json), with a line item.
fn invoice() -> Value {
    json!({
        "resourceType": "Invoice",
        "id": "example",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Example of Invoice</div>"},
        "identifier": [{"system": "http://myHospital.org/Invoices", "value": "654321"}],
        "status": "issued",
        "subject": {"reference": "Patient/example"},
        "date": "2017-01-25T08:00:00+01:00",
        "participant": [{
            "role": {"coding": [{"system": "http://snomed.info/sct", "code": "17561000", "display": "Cardiologist"}]},
            "actor": {"reference": "Practitioner/example"}
        }],
        "issuer": {"identifier": {"system": "http://myhospital/NamingSystem/departments", "value": "CARD_INTERMEDIATE_CARE"}},
        "account": {"reference": "Account/example"},
        "lineItem": [{
            "sequence": 1,
            "chargeItemReference": {"reference": "ChargeItem/example"},
            "priceComponent": [{"type": "base", "amount": {"value": 40, "currency": "EUR"}}]
        }],
        "totalNet": {"value": 40, "currency": "EUR"},
        "totalGross": {"value": 48, "currency": "EUR"}
    })
}

/// R4's account-example (http://hl7.org/fhir/R4/account-example.json), with a guarantor
/// and extensions on the coverage.
fn account() -> Value {
    json!({
        "resourceType": "Account",
        "id": "example",
        "meta": {"tag": [{"system": "http://example.org/tags", "code": "billing"}]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">HACC Funded Billing</div>"},
        "identifier": [{"system": "urn:oid:0.1.2.3.4.5.6.7", "value": "654321"}],
        "status": "active",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PBILLACCT", "display": "patient billing account"}],
            "text": "patient"
        },
        "name": "HACC Funded Billing for Peter James Chalmers",
        "subject": [{"reference": "Patient/example", "display": "Peter James Chalmers"}],
        "servicePeriod": {"start": "2016-01-01", "end": "2016-06-30"},
        "coverage": [{
            "extension": [{"url": "http://example.org/note", "valueString": "primary"}],
            "modifierExtension": [{"url": "http://example.org/suspended", "valueBoolean": false}],
            "coverage": {"reference": "Coverage/7546D"},
            "priority": 1
        }],
        "owner": {"reference": "Organization/hl7"},
        "description": "Hospital charges",
        "guarantor": [{"party": {"reference": "RelatedPerson/benedicte"}, "onHold": false}]
    })
}

fn summary(resource: &Value, summary: Summary) -> Value {
    subset(resource, Subset::Summary(summary))
}

fn elements(resource: &Value, names: &[&str]) -> Value {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    subset(resource, Subset::Elements(&names))
}

fn keys(resource: &Value) -> Vec<&str> {
    resource
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn subsetted_tags(resource: &Value) -> usize {
    resource["meta"]["tag"].as_array().map_or(0, |tags| {
        tags.iter()
            .filter(|t| t["system"] == SUBSETTED_SYSTEM && t["code"] == SUBSETTED_CODE)
            .count()
    })
}

#[test]
fn patient_summary_keeps_the_summary_elements() {
    let result = summary(&patient(), Summary::True);
    assert_eq!(
        keys(&result),
        [
            "resourceType",
            "id",
            "meta",
            "identifier",
            "active",
            "name",
            "telecom",
            "gender",
            "birthDate",
            "deceasedBoolean",
            "address",
            "managingOrganization",
            "link"
        ]
    );
    // Identifier, Reference, ContactPoint, Address: every child is summary.
    assert_eq!(result["identifier"], patient()["identifier"]);
    assert_eq!(result["telecom"], patient()["telecom"]);
    assert_eq!(result["address"], patient()["address"]);
    // Extensions are not summary: a name holding only one goes, and so do primitive ones
    // (the null standing for the extension-only given name too).
    assert_eq!(
        result["name"],
        json!([
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "usual", "given": ["Jim"]}
        ])
    );
    // A backbone element keeps its summary children only.
    assert_eq!(
        result["link"],
        json!([{"other": {"reference": "Patient/pat2"}, "type": "seealso"}])
    );
    assert_eq!(result["meta"]["versionId"], "3");
    assert_eq!(
        result["meta"]["tag"],
        json!([{"system": SUBSETTED_SYSTEM, "code": "SUBSETTED", "display": "subsetted"}])
    );
}

#[test]
fn invoice_summary() {
    let result = summary(&invoice(), Summary::True);
    assert_eq!(
        keys(&result),
        [
            "resourceType",
            "id",
            "meta",
            "identifier",
            "status",
            "subject",
            "date",
            "totalNet",
            "totalGross"
        ]
    );
    assert_eq!(
        result["totalGross"],
        json!({"value": 48, "currency": "EUR"})
    );
    assert_eq!(subsetted_tags(&result), 1);
}

#[test]
fn account_summary_filters_backbone_children_and_keeps_existing_tags() {
    let result = summary(&account(), Summary::True);
    assert_eq!(
        keys(&result),
        [
            "resourceType",
            "id",
            "meta",
            "identifier",
            "status",
            "type",
            "name",
            "subject",
            "servicePeriod",
            "coverage",
            "owner",
            "description"
        ]
    );
    assert_eq!(
        result["coverage"],
        json!([{
            "modifierExtension": [{"url": "http://example.org/suspended", "valueBoolean": false}],
            "coverage": {"reference": "Coverage/7546D"},
            "priority": 1
        }])
    );
    assert_eq!(result["type"], account()["type"]);
    let tags = result["meta"]["tag"].as_array().expect("tags");
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0]["code"], "billing");
    assert_eq!(tags[1]["code"], SUBSETTED_CODE);
}

#[test]
fn summary_of_a_summary_is_unchanged() {
    let once = summary(&patient(), Summary::True);
    assert_eq!(summary(&once, Summary::True), once);
    let small = json!({"resourceType": "Patient", "id": "p", "gender": "female"});
    assert_eq!(summary(&small, Summary::True), small);
}

#[test]
fn text_keeps_text_and_mandatory_elements() {
    let result = summary(&account(), Summary::Text);
    assert_eq!(
        keys(&result),
        ["resourceType", "id", "meta", "text", "status"]
    );
    assert_eq!(result["text"], account()["text"]);
    assert_eq!(subsetted_tags(&result), 1);

    let group = json!({
        "resourceType": "Group",
        "id": "101",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Herd</div>"},
        "type": "animal",
        "actual": true,
        "name": "John's herd",
        "quantity": 25
    });
    let result = summary(&group, Summary::Text);
    assert_eq!(
        keys(&result),
        ["resourceType", "id", "meta", "text", "type", "actual"]
    );

    // Patient has no mandatory elements.
    let result = summary(&patient(), Summary::Text);
    assert_eq!(keys(&result), ["resourceType", "id", "meta", "text"]);
}

#[test]
fn data_drops_only_the_text() {
    let result = summary(&invoice(), Summary::Data);
    let mut expected = invoice();
    if let Some(o) = expected.as_object_mut() {
        o.shift_remove("text");
    }
    // No meta: it is created, right after the id.
    assert_eq!(keys(&result)[..3], ["resourceType", "id", "meta"]);
    assert_eq!(subsetted_tags(&result), 1);
    if let Some(o) = expected.as_object_mut() {
        o.shift_insert(2, "meta".into(), result["meta"].clone());
    }
    assert_eq!(result, expected);

    // Nothing to drop: unchanged and not tagged.
    let no_text = json!({"resourceType": "Invoice", "id": "x", "status": "draft"});
    assert_eq!(summary(&no_text, Summary::Data), no_text);
}

#[test]
fn false_and_count_return_the_resource_unchanged() {
    for mode in [Summary::False, Summary::Count] {
        assert_eq!(summary(&patient(), mode), patient());
    }
}

#[test]
fn elements_keep_named_choice_and_companion() {
    let result = elements(&patient(), &["deceased", "birthDate", "notAnElement"]);
    assert_eq!(
        keys(&result),
        [
            "resourceType",
            "id",
            "meta",
            "birthDate",
            "_birthDate",
            "deceasedBoolean"
        ]
    );
    assert_eq!(result["_birthDate"], patient()["_birthDate"]);
    assert_eq!(subsetted_tags(&result), 1);

    let mut dead = patient();
    if let Some(o) = dead.as_object_mut() {
        o.shift_remove("deceasedBoolean");
        o.insert(
            "deceasedDateTime".into(),
            json!("2015-02-14T13:42:00+10:00"),
        );
    }
    let result = elements(&dead, &["deceased"]);
    assert_eq!(
        keys(&result),
        ["resourceType", "id", "meta", "deceasedDateTime"]
    );
    // The variant's own JSON name is not an element name.
    let result = elements(&dead, &["deceasedDateTime"]);
    assert_eq!(keys(&result), ["resourceType", "id", "meta"]);
}

#[test]
fn elements_are_kept_whole_with_the_mandatory_ones() {
    let result = elements(&account(), &["coverage", "Account.name", "Patient.owner"]);
    assert_eq!(
        keys(&result),
        ["resourceType", "id", "meta", "status", "name", "coverage"]
    );
    assert_eq!(result["coverage"], account()["coverage"]);
}

#[test]
fn the_tag_is_added_once() {
    let tagged = summary(&patient(), Summary::True);
    let again = elements(&tagged, &["name"]);
    assert_eq!(subsetted_tags(&again), 1);
    assert_eq!(again["meta"]["tag"].as_array().map(Vec::len), Some(1));

    // Already tagged (e.g. stored that way) and subsetted again: still one tag.
    let mut stored = invoice();
    if let Some(o) = stored.as_object_mut() {
        o.shift_insert(
            2,
            "meta".into(),
            json!({"tag": [{"system": SUBSETTED_SYSTEM, "code": SUBSETTED_CODE}]}),
        );
    }
    let result = summary(&stored, Summary::Data);
    assert_eq!(subsetted_tags(&result), 1);
    assert!(result.get("text").is_none());
}

#[test]
fn unknown_types_and_non_objects() {
    let observation = json!({
        "resourceType": "Observation",
        "id": "o",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
        "status": "final"
    });
    assert_eq!(summary(&observation, Summary::True), observation);
    assert_eq!(elements(&observation, &["status"]), observation);
    assert_eq!(
        keys(&summary(&observation, Summary::Data)),
        ["resourceType", "id", "meta", "status"]
    );
    assert_eq!(summary(&json!([1]), Summary::Data), json!([1]));
}

#[test]
fn subsets_of_valid_resources_stay_valid() {
    let group = json!({"resourceType": "Group", "id": "g", "type": "person", "actual": true});
    let names: Vec<String> = vec!["name".into(), "deceased".into(), "lineItem".into()];
    for resource in [patient(), invoice(), account(), group] {
        assert_eq!(crate::validation::validate(&resource), [], "{resource}");
        for mode in [
            Subset::Summary(Summary::True),
            Subset::Summary(Summary::Text),
            Subset::Summary(Summary::Data),
            Subset::Elements(&names),
        ] {
            let result = subset(&resource, mode);
            assert_eq!(
                crate::validation::validate(&result),
                [],
                "{mode:?}: {result}"
            );
        }
    }
}
