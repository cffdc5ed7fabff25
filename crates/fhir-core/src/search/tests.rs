//! Unit tests of the registry and of index extraction, over hand-made resources whose
//! expected values are worked out by hand.

use serde_json::{Value, json};

use super::embedded::{BASE, CUSTOM};
use super::*;
use crate::fhirpath::{EvalError, Expression};

fn registry() -> &'static Registry {
    Registry::builtin().expect("the built-in definitions load")
}

fn index_of(resource: &Value) -> ResourceIndex<'static> {
    registry().index(resource, IndexOptions::default())
}

/// A compact rendering of a value, in the syntax of a search value where there is one.
fn render(value: &IndexValue) -> String {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    match value {
        IndexValue::String(s) => format!("{} ({})", s.normalized, s.exact),
        IndexValue::Token(TokenValue::Code { system, code }) => match system {
            Some(system) => format!("{system}|{code}"),
            None => code.clone(),
        },
        IndexValue::Token(TokenValue::Text(s)) => format!("text:{}", s.normalized),
        IndexValue::Token(TokenValue::OfType {
            system,
            type_system,
            type_code,
            value,
        }) => format!(
            "{}|{value} of-type:{}|{type_code}",
            opt(system),
            opt(type_system)
        ),
        IndexValue::Date(range) => {
            let show = |d: Option<chrono::DateTime<chrono::Utc>>| {
                d.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                    .unwrap_or_default()
            };
            format!("{}..{}", show(range.low), show(range.high))
        }
        IndexValue::Reference(r) => {
            let mut out = match (&r.target_type, &r.id, &r.url) {
                (Some(t), Some(id), None) => format!("{t}/{id}"),
                (t, _, Some(url)) => format!("{url} [{}]", opt(t)),
                (t, _, None) => format!("[{}]", opt(t)),
            };
            if let Some(version) = &r.version {
                out.push_str(&format!(" v{version}"));
            }
            if let Some(identifier) = &r.identifier {
                out.push_str(&format!(
                    " identifier:{}|{}",
                    opt(&identifier.system),
                    identifier.value
                ));
            }
            out
        }
        IndexValue::Quantity(q) => format!(
            "{}{}|{}|{} ({})",
            opt(&q.comparator),
            q.value.as_str(),
            opt(&q.system),
            opt(&q.code),
            opt(&q.unit)
        ),
        IndexValue::Number(n) => n.as_str().to_string(),
        IndexValue::Uri(u) => u.clone(),
        IndexValue::Composite(parts) => parts.iter().map(render).collect::<Vec<_>>().join("$"),
    }
}

/// The rendered values of parameter `code`.
/// The values of parameter `code`, rendered.
fn values(index: &ResourceIndex<'_>, code: &str) -> Vec<String> {
    let values = index.values_of_code(registry(), code);
    values.iter().map(render).collect()
}

fn no_issues(index: &ResourceIndex<'_>) {
    let issues: Vec<String> = index
        .issues
        .iter()
        .map(|i| format!("{}: {}", i.param.code(), i.problem))
        .collect();
    assert!(issues.is_empty(), "{issues:#?}");
}

fn codes(resource_type: &str) -> Vec<&'static str> {
    registry()
        .for_type(resource_type)
        .filter(|p| p.base() == resource_type)
        .map(|p| p.code())
        .collect()
}

#[test]
fn builtin_registry_has_the_parameters_of_every_served_type() {
    assert_eq!(
        codes("Patient"),
        [
            "active",
            "address",
            "address-city",
            "address-country",
            "address-postalcode",
            "address-state",
            "address-use",
            "birthdate",
            "death-date",
            "deceased",
            "email",
            "family",
            "gender",
            "general-practitioner",
            "given",
            "identifier",
            "language",
            "link",
            "name",
            "organization",
            "phone",
            "phonetic",
            "telecom"
        ]
    );
    assert_eq!(
        codes("Account"),
        [
            "identifier",
            "name",
            "owner",
            "patient",
            "period",
            "status",
            "subject",
            "type"
        ]
    );
    assert_eq!(
        codes("Invoice"),
        [
            "account",
            "date",
            "identifier",
            "issuer",
            "line-item-code",
            "participant",
            "participant-role",
            "patient",
            "recipient",
            "status",
            "subject",
            "totalgross",
            "totalnet",
            "type"
        ]
    );
    assert_eq!(
        codes("Organization"),
        [
            "active",
            "address",
            "address-city",
            "address-country",
            "address-postalcode",
            "address-state",
            "address-use",
            "endpoint",
            "identifier",
            "name",
            "partof",
            "phonetic",
            "type"
        ]
    );
    assert_eq!(codes("Practitioner").len(), 17);
    assert_eq!(
        codes("Group"),
        [
            "actual",
            "characteristic",
            "characteristic-value",
            "code",
            "exclude",
            "identifier",
            "managing-entity",
            "member",
            "type",
            "value"
        ]
    );
    let common: Vec<&str> = registry()
        .for_type("Invoice")
        .filter(|p| p.base() != "Invoice")
        .map(|p| p.code())
        .collect();
    for code in [
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "_security",
        "_source",
    ] {
        assert!(common.contains(&code), "{code} in {common:?}");
    }
    // The package's example definitions are experimental, and not loaded.
    assert!(registry().get("Patient", "part-agree").is_none());
    assert!(registry().get("Patient", "mothersMaidenName").is_none());
    assert!(registry().get("Patient", "_id").is_some());
    assert!(registry().get("Patient", "totalgross").is_none());
}

#[test]
fn parameters_carry_their_definition() {
    let birthdate = registry().get("Patient", "birthdate").expect("birthdate");
    assert_eq!(birthdate.kind(), SearchParamType::Date);
    assert_eq!(
        birthdate.url(),
        "http://hl7.org/fhir/SearchParameter/individual-birthdate"
    );
    assert_eq!(
        birthdate.expression().map(Expression::as_str),
        Some("Patient.birthDate")
    );
    assert_eq!(birthdate.comparators().len(), 9);
    let subject = registry().get("Invoice", "subject").expect("subject");
    assert_eq!(subject.target(), ["Group", "Patient"]);
    assert!(
        registry()
            .get("Patient", "phonetic")
            .expect("phonetic")
            .is_phonetic()
    );
    let text = registry().get("Patient", "_text").expect("_text");
    assert_eq!(text.expression(), None);
    let composite = registry()
        .get("Group", "characteristic-value")
        .expect("composite");
    assert_eq!(composite.components().len(), 2);
    assert_eq!(
        composite.components()[0].definition(),
        "http://hl7.org/fhir/SearchParameter/Group-characteristic"
    );
}

/// Every expression shipped in `fhir-profiles/`, loaded or not, is in the parsed subset.
#[test]
fn every_shipped_expression_parses() {
    let mut parsed = 0;
    for text in BASE.iter().chain(CUSTOM) {
        let definition: Value = serde_json::from_str(text).expect("valid JSON");
        let url = definition["url"].as_str().unwrap_or_default();
        let expressions = definition["expression"].as_str().into_iter().chain(
            definition["component"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["expression"].as_str()),
        );
        for expression in expressions {
            if let Err(error) = Expression::parse(expression) {
                panic!("{url}: {expression}: {error}");
            }
            parsed += 1;
        }
    }
    assert!(parsed > 80, "{parsed} expressions");
}

/// Every loaded parameter of a served type has an expression for that type, unless the
/// server implements it itself.
#[test]
fn every_parameter_of_a_served_type_is_indexable() {
    for resource_type in crate::ResourceType::ALL {
        for param in registry().for_type(resource_type.as_str()) {
            let special = ["_text", "_content", "_query", "_filter"].contains(&param.code());
            assert_eq!(
                param.expression().is_none(),
                special,
                "{resource_type}.{}",
                param.code()
            );
        }
    }
}

/// A JSON number exactly as written (`json!` would round it through f64).
fn number(text: &str) -> Value {
    serde_json::from_str(text).expect("a JSON number")
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {
            "lastUpdated": "2024-03-01T10:00:00.123Z",
            "tag": [{"system": "http://example.org/tags", "code": "vip", "display": "V.I.P."}],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
            "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
            "source": "http://ehr.example.org/#abc"
        },
        "identifier": [{
            "type": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                "text": "Medical Record"
            },
            "system": "urn:oid:1.2.36.146.595.217.0.1",
            "value": "12345"
        }],
        "active": true,
        "name": [
            {"use": "official", "family": "Gárcia López", "given": ["José", "María"], "prefix": ["Dr."]},
            {"text": "Pepe  García"}
        ],
        "telecom": [
            {"system": "phone", "value": "+34 600 000 000"},
            {"system": "email", "value": "Jose@Example.org"},
            {"system": "url", "value": "http://example.org/jose"}
        ],
        "gender": "male",
        "birthDate": "1944",
        "address": [{
            "use": "home",
            "line": ["Calle Mayor 1", "2º B"],
            "city": "Málaga",
            "state": "Andalucía",
            "postalCode": "29001",
            "country": "ES"
        }],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}], "text": "Español"}}],
        "generalPractitioner": [{"reference": "Practitioner/pr1"}],
        "managingOrganization": {"reference": "Organization/o1"},
        "link": [{"other": {"reference": "Patient/p0"}, "type": "replaces"}]
    })
}

#[test]
fn parts_of_names_addresses_and_contact_points_are_kept_in_the_whole() {
    let param = |base: &str, code: &str| {
        registry()
            .get(base, code)
            .unwrap_or_else(|| panic!("{base} {code}"))
    };
    let kept = |base: &str, code: &str| param(base, code).kept_in();
    let part = |owner, part| Some((owner, Keeping::Part(part)));
    for base in ["Patient", "Practitioner"] {
        assert_eq!(kept(base, "family"), part("name", Part::Family));
        assert_eq!(kept(base, "given"), part("name", Part::Given));
        assert_eq!(kept(base, "phone"), part("telecom", Part::Phone));
        assert_eq!(kept(base, "email"), part("telecom", Part::Email));
        assert_eq!(kept(base, "address-city"), part("address", Part::City));
        assert_eq!(
            kept(base, "address-postalcode"),
            part("address", Part::PostalCode)
        );
        // The same names, matched by sound: their codes are kept with them.
        assert_eq!(kept(base, "phonetic"), Some(("name", Keeping::Sound)));
        assert!(param(base, "name").sounds());
        assert!(!param(base, "address").sounds());
        // `address-use` is a token of another element.
        for own in ["name", "telecom", "address", "address-use", "gender"] {
            assert_eq!(kept(base, own), None, "{base} {own}");
        }
    }
    assert_eq!(
        kept("Organization", "address-state"),
        part("address", Part::State)
    );
    // Organization's `name` is also its aliases: its phonetic codes are its own.
    assert_eq!(kept("Organization", "name"), None);
    assert_eq!(kept("Organization", "phonetic"), None);
    // A kept parameter has no values of its own; the whole holds them, each with its part.
    let index = index_of(&patient());
    assert!(index.entries.iter().all(|e| e.param.kept_in().is_none()));
    let parts: Vec<(String, Part)> = index
        .entries
        .iter()
        .filter(|e| e.code() == "telecom")
        .map(|e| (render(&e.value), e.part))
        .collect();
    assert_eq!(
        parts,
        [
            ("+34 600 000 000".to_string(), Part::Phone),
            ("Jose@Example.org".to_string(), Part::Email),
            ("http://example.org/jose".to_string(), Part::Url)
        ]
    );
}

#[test]
fn patient_strings_are_normalised_and_kept_as_written() {
    let index = index_of(&patient());
    no_issues(&index);
    assert_eq!(values(&index, "family"), ["garcia lopez (Gárcia López)"]);
    assert_eq!(values(&index, "given"), ["jose (José)", "maria (María)"]);
    assert_eq!(
        values(&index, "name"),
        [
            "garcia lopez (Gárcia López)",
            "jose (José)",
            "maria (María)",
            "dr. (Dr.)",
            "pepe garcia (Pepe  García)"
        ]
    );
    assert_eq!(
        values(&index, "phonetic"),
        [
            "g620 (Gárcia López)",
            "l120 (Gárcia López)",
            "j200 (José)",
            "m600 (María)",
            "d600 (Dr.)",
            "p100 (Pepe  García)",
            "g620 (Pepe  García)"
        ]
    );
    assert_eq!(
        values(&index, "address"),
        [
            "calle mayor 1 (Calle Mayor 1)",
            "2o b (2º B)",
            "malaga (Málaga)",
            "andalucia (Andalucía)",
            "29001 (29001)",
            "es (ES)"
        ]
    );
    assert_eq!(values(&index, "address-city"), ["malaga (Málaga)"]);
    assert_eq!(values(&index, "address-state"), ["andalucia (Andalucía)"]);
    assert_eq!(values(&index, "address-postalcode"), ["29001 (29001)"]);
    assert_eq!(values(&index, "address-country"), ["es (ES)"]);
}

#[test]
fn patient_tokens() {
    let index = index_of(&patient());
    // Codes carry the system their required binding implies; booleans have none.
    assert_eq!(
        values(&index, "gender"),
        ["http://hl7.org/fhir/administrative-gender|male"]
    );
    assert_eq!(values(&index, "active"), ["true"]);
    assert_eq!(
        values(&index, "address-use"),
        ["http://hl7.org/fhir/address-use|home"]
    );
    assert_eq!(
        values(&index, "identifier"),
        [
            // One value: the code, with the identifier's type coding for `:of-type`.
            "urn:oid:1.2.36.146.595.217.0.1|12345 of-type:http://terminology.hl7.org/CodeSystem/v2-0203|MR",
            "text:medical record"
        ]
    );
    assert_eq!(values(&index, "email"), ["Jose@Example.org"]);
    assert_eq!(values(&index, "phone"), ["+34 600 000 000"]);
    assert_eq!(
        values(&index, "telecom"),
        [
            "+34 600 000 000",
            "Jose@Example.org",
            "http://example.org/jose"
        ]
    );
    assert_eq!(
        values(&index, "language"),
        ["urn:ietf:bcp:47|es", "text:espanol"]
    );
    assert_eq!(values(&index, "deceased"), ["false"]);
    assert_eq!(values(&index, "death-date"), Vec::<String>::new());
}

#[test]
fn patient_dates_cover_their_precision() {
    let index = index_of(&patient());
    assert_eq!(
        values(&index, "birthdate"),
        ["1944-01-01T00:00:00Z..1945-01-01T00:00:00Z"]
    );
    let mut dead = patient();
    dead["deceasedDateTime"] = json!("2015-02-14T13:42:00+10:00");
    let index = index_of(&dead);
    assert_eq!(
        values(&index, "death-date"),
        ["2015-02-14T03:42:00Z..2015-02-14T03:42:01Z"]
    );
    assert_eq!(values(&index, "deceased"), ["true"]);
    let mut dead = patient();
    dead["deceasedBoolean"] = json!(true);
    let index = index_of(&dead);
    assert_eq!(values(&index, "deceased"), ["true"]);
    assert_eq!(values(&index, "death-date"), Vec::<String>::new());
}

#[test]
fn patient_references() {
    let index = index_of(&patient());
    assert_eq!(values(&index, "general-practitioner"), ["Practitioner/pr1"]);
    assert_eq!(values(&index, "organization"), ["Organization/o1"]);
    assert_eq!(values(&index, "link"), ["Patient/p0"]);
}

#[test]
fn common_parameters() {
    let index = index_of(&patient());
    assert_eq!(values(&index, "_id"), ["p1"]);
    assert_eq!(
        values(&index, "_lastUpdated"),
        ["2024-03-01T10:00:00.123Z..2024-03-01T10:00:00.124Z"]
    );
    assert_eq!(
        values(&index, "_tag"),
        ["http://example.org/tags|vip", "text:v.i.p."]
    );
    assert_eq!(
        values(&index, "_security"),
        ["http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"]
    );
    assert_eq!(
        values(&index, "_profile"),
        ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]
    );
    assert_eq!(values(&index, "_source"), ["http://ehr.example.org/#abc"]);
}

#[test]
fn reference_forms() {
    let practitioner = |reference: Value| {
        json!({"resourceType": "Patient", "generalPractitioner": [reference],
               "contained": [{"resourceType": "Practitioner", "id": "c1"}]})
    };
    let cases = [
        (
            json!({"reference": "Practitioner/1"}),
            vec!["Practitioner/1"],
        ),
        (
            json!({"reference": "Practitioner/1/_history/3"}),
            vec!["Practitioner/1 v3"],
        ),
        (
            json!({"reference": "https://fhir.example.org/r4/Practitioner/1"}),
            vec!["Practitioner/1"],
        ),
        (
            json!({"reference": "http://other.example.org/fhir/Practitioner/1"}),
            vec!["http://other.example.org/fhir/Practitioner/1 [Practitioner]"],
        ),
        (
            json!({"reference": "urn:uuid:9a4a6b0e-0000-4000-8000-000000000000", "type": "Practitioner"}),
            vec!["urn:uuid:9a4a6b0e-0000-4000-8000-000000000000 [Practitioner]"],
        ),
        (
            json!({"type": "Practitioner", "identifier": {"system": "urn:npi", "value": "42"}}),
            vec!["[Practitioner] identifier:urn:npi|42"],
        ),
        (
            json!({"reference": "Practitioner/1", "identifier": {"value": "42"}}),
            vec!["Practitioner/1 identifier:|42"],
        ),
        (json!({"reference": "#c1"}), vec![]),
        (json!({"display": "Dr. Nobody"}), vec![]),
    ];
    let options = IndexOptions {
        server_base: Some("https://fhir.example.org/r4/"),
    };
    for (reference, expected) in cases {
        let resource = practitioner(reference.clone());
        let index = registry().index(&resource, options);
        no_issues(&index);
        assert_eq!(
            values(&index, "general-practitioner"),
            expected,
            "{reference}"
        );
    }
}

#[test]
fn account_values() {
    let account = json!({
        "resourceType": "Account",
        "id": "a1",
        "identifier": [{"system": "urn:oid:0.1.2.3.4.5.6.7", "value": "654321"}],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PBILLACCT", "display": "patient billing account"}], "text": "patient"},
        "name": "HACC Funded Billing",
        "subject": [{"reference": "Patient/example"}, {"reference": "Organization/o1"}],
        "servicePeriod": {"start": "2016-01-01"},
        "owner": {"reference": "Organization/hl7"}
    });
    let index = index_of(&account);
    no_issues(&index);
    assert_eq!(
        values(&index, "subject"),
        ["Patient/example", "Organization/o1"]
    );
    assert_eq!(values(&index, "patient"), ["Patient/example"]);
    assert_eq!(values(&index, "owner"), ["Organization/hl7"]);
    assert_eq!(values(&index, "period"), ["2016-01-01T00:00:00Z.."]);
    assert_eq!(
        values(&index, "status"),
        ["http://hl7.org/fhir/account-status|active"]
    );
    assert_eq!(
        values(&index, "type"),
        [
            "http://terminology.hl7.org/CodeSystem/v3-ActCode|PBILLACCT",
            "text:patient billing account",
            "text:patient"
        ]
    );
    assert_eq!(
        values(&index, "name"),
        ["hacc funded billing (HACC Funded Billing)"]
    );
    assert_eq!(
        values(&index, "identifier"),
        ["urn:oid:0.1.2.3.4.5.6.7|654321"]
    );
}

fn invoice() -> Value {
    json!({
        "resourceType": "Invoice",
        "id": "i1",
        "status": "issued",
        "subject": {"reference": "Group/g1"},
        "recipient": {"reference": "Patient/p1"},
        "date": "2017-01-25T08:00:00+01:00",
        "participant": [{
            "role": {"coding": [{"system": "http://snomed.info/sct", "code": "17561000"}]},
            "actor": {"reference": "Practitioner/example"}
        }],
        "account": {"reference": "Account/a1"},
        "lineItem": [
            {"chargeItemCodeableConcept": {"coding": [{"system": "http://example.org/fees", "code": "consult"}]}},
            {"chargeItemReference": {"reference": "ChargeItem/c1"}},
            {"chargeItemCodeableConcept": {"text": "Parking"}}
        ],
        "totalNet": {"value": 40, "currency": "EUR"},
        "totalGross": {"value": number("48.10"), "currency": "EUR"}
    })
}

#[test]
fn invoice_values_and_the_custom_parameter() {
    let index = index_of(&invoice());
    no_issues(&index);
    assert_eq!(
        values(&index, "totalgross"),
        ["48.10|urn:iso:std:iso:4217|EUR ()"]
    );
    assert_eq!(
        values(&index, "totalnet"),
        ["40|urn:iso:std:iso:4217|EUR ()"]
    );
    assert_eq!(
        values(&index, "date"),
        ["2017-01-25T07:00:00Z..2017-01-25T07:00:01Z"]
    );
    assert_eq!(values(&index, "subject"), ["Group/g1"]);
    // Only a subject that is a Patient is a `patient`.
    assert_eq!(values(&index, "patient"), Vec::<String>::new());
    assert_eq!(values(&index, "recipient"), ["Patient/p1"]);
    assert_eq!(values(&index, "participant"), ["Practitioner/example"]);
    assert_eq!(
        values(&index, "participant-role"),
        ["http://snomed.info/sct|17561000"]
    );
    assert_eq!(values(&index, "account"), ["Account/a1"]);
    assert_eq!(
        values(&index, "status"),
        ["http://hl7.org/fhir/invoice-status|issued"]
    );
    assert_eq!(
        values(&index, "line-item-code"),
        ["http://example.org/fees|consult", "text:parking"]
    );
    let custom = registry().get("Invoice", "line-item-code").expect("custom");
    assert_eq!(
        custom.url(),
        "urn:ferrum:SearchParameter:Invoice-line-item-code"
    );
}

#[test]
fn group_values_and_the_composite() {
    let group = json!({
        "resourceType": "Group",
        "type": "person",
        "actual": true,
        "code": {"text": "Diabetics"},
        "characteristic": [
            {"code": {"coding": [{"system": "http://example.org", "code": "gender"}]},
             "valueCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}]},
             "exclude": false},
            {"code": {"text": "smoker"}, "valueBoolean": true, "exclude": true},
            {"code": {"text": "age"}, "valueQuantity": {"value": 40, "unit": "a"}, "exclude": false}
        ],
        "member": [{"entity": {"reference": "Patient/p1"}}, {"entity": {"reference": "Patient/p2"}, "inactive": true}]
    });
    let index = index_of(&group);
    no_issues(&index);
    assert_eq!(values(&index, "actual"), ["true"]);
    assert_eq!(
        values(&index, "type"),
        ["http://hl7.org/fhir/group-type|person"]
    );
    assert_eq!(values(&index, "code"), ["text:diabetics"]);
    assert_eq!(values(&index, "exclude"), ["false", "true"]);
    assert_eq!(
        values(&index, "value"),
        ["http://hl7.org/fhir/administrative-gender|female", "true"]
    );
    assert_eq!(
        values(&index, "characteristic-value"),
        [
            "http://example.org|gender$http://hl7.org/fhir/administrative-gender|female",
            "text:smoker$true"
        ]
    );
    assert_eq!(values(&index, "member"), ["Patient/p1", "Patient/p2"]);
}

#[test]
fn organization_and_practitioner_values() {
    let organization = json!({
        "resourceType": "Organization",
        "name": "Health Level Seven International",
        "alias": ["HL7 International"],
        "partOf": {"reference": "Organization/parent"},
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}]
    });
    let index = index_of(&organization);
    no_issues(&index);
    assert_eq!(
        values(&index, "name"),
        [
            "health level seven international (Health Level Seven International)",
            "hl7 international (HL7 International)"
        ]
    );
    assert_eq!(
        values(&index, "phonetic"),
        [
            "h430 (Health Level Seven International)",
            "l140 (Health Level Seven International)",
            "s150 (Health Level Seven International)",
            "i536 (Health Level Seven International)"
        ]
    );
    assert_eq!(values(&index, "partof"), ["Organization/parent"]);
    let practitioner = json!({
        "resourceType": "Practitioner",
        "name": [{"family": "Careful", "given": ["Adam"]}],
        "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "nl"}]}],
        "gender": "male"
    });
    let index = index_of(&practitioner);
    no_issues(&index);
    assert_eq!(values(&index, "family"), ["careful (Careful)"]);
    assert_eq!(values(&index, "communication"), ["urn:ietf:bcp:47|nl"]);
    assert_eq!(
        values(&index, "gender"),
        ["http://hl7.org/fhir/administrative-gender|male"]
    );
}

/// A registry of one custom definition on Patient, indexing `expression` as `kind`.
fn custom(kind: &str, expression: &str) -> Registry {
    Registry::from_definitions(&[json!({
        "resourceType": "SearchParameter",
        "url": "urn:test:SearchParameter:x",
        "code": "x",
        "base": ["Patient"],
        "type": kind,
        "expression": expression
    })])
    .expect("the definition loads")
}

fn custom_values(kind: &str, expression: &str, resource: &Value) -> (Vec<String>, Vec<String>) {
    let registry = custom(kind, expression);
    let index = registry.index(resource, IndexOptions::default());
    let issues = index.issues.iter().map(|i| i.problem.to_string()).collect();
    (values(&index, "x"), issues)
}

#[test]
fn data_types_through_extension_values() {
    let with = |extension: Value| {
        json!({"resourceType": "Patient", "extension": [
            {"url": "http://example.org/x", "extension": [{"url": "inner", "valueString": "nested"}]},
            extension
        ]})
    };
    let ext = "Patient.extension('http://example.org/v')";
    let cases = [
        (
            "date",
            json!({"valuePeriod": {"end": "2020-05"}}),
            vec!["..2020-06-01T00:00:00Z"],
        ),
        (
            "date",
            json!({"valueTiming": {"event": ["2020-01-02", "2019-12-31T22:00:00Z"],
                                   "repeat": {"boundsPeriod": {"start": "2019-06-01", "end": "2019-12-31"}}}}),
            vec!["2019-06-01T00:00:00Z..2020-01-03T00:00:00Z"],
        ),
        (
            "date",
            json!({"valueTiming": {"code": {"text": "BID"}}}),
            vec![],
        ),
        (
            "date",
            json!({"valueInstant": "2020-01-01T00:00:00Z"}),
            vec!["2020-01-01T00:00:00Z..2020-01-01T00:00:01Z"],
        ),
        (
            "quantity",
            json!({"valueQuantity": {"value": number("5.40"), "comparator": "<", "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}),
            vec!["<5.40|http://unitsofmeasure.org|mg (mg)"],
        ),
        (
            "quantity",
            json!({"valueAge": {"value": 40, "unit": "a"}}),
            vec!["40|| (a)"],
        ),
        (
            "quantity",
            json!({"valueMoney": {"value": number("1e2")}}),
            vec!["1e+2|| ()"],
        ),
        ("quantity", json!({"valueQuantity": {"unit": "mg"}}), vec![]),
        ("number", json!({"valueInteger": 7}), vec!["7"]),
        (
            "number",
            json!({"valueDecimal": number("0.1000000000000000055511151231257827")}),
            vec!["0.1000000000000000055511151231257827"],
        ),
        (
            "uri",
            json!({"valueCanonical": "http://example.org/fhir/ValueSet/x|1.0"}),
            vec!["http://example.org/fhir/ValueSet/x|1.0"],
        ),
        (
            "token",
            json!({"valueCoding": {"system": "s", "code": "c", "display": "Shown"}}),
            vec!["s|c", "text:shown"],
        ),
        ("token", json!({"valueCode": "c"}), vec!["c"]),
        (
            "token",
            json!({"valueContactPoint": {"system": "email", "value": "a@b"}}),
            vec!["a@b"],
        ),
        (
            "string",
            json!({"valueMarkdown": "**Bold**"}),
            vec!["**bold** (**Bold**)"],
        ),
        (
            "reference",
            json!({"valueCanonical": "http://example.org/fhir/Questionnaire/q1"}),
            vec!["http://example.org/fhir/Questionnaire/q1 [Questionnaire]"],
        ),
    ];
    for (kind, extension, expected) in cases {
        let mut extension = extension;
        extension["url"] = json!("http://example.org/v");
        let (found, issues) = custom_values(kind, ext, &with(extension.clone()));
        assert_eq!(found, expected, "{kind} {extension}");
        assert_eq!(issues, Vec::<String>::new(), "{kind} {extension}");
    }
}

#[test]
fn us_core_race_as_a_custom_parameter() {
    let race = "Patient.extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-race')\
                .extension.where(url = 'ombCategory' or url = 'detailed').value.ofType(Coding)";
    let patient = json!({"resourceType": "Patient", "extension": [{
        "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        "extension": [
            {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}},
            {"url": "detailed", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2108-9"}},
            {"url": "text", "valueString": "White"}
        ]
    }]});
    let (found, issues) = custom_values("token", race, &patient);
    assert_eq!(
        found,
        [
            "urn:oid:2.16.840.1.113883.6.238|2106-3",
            "text:white",
            "urn:oid:2.16.840.1.113883.6.238|2108-9"
        ]
    );
    assert!(issues.is_empty());
}

/// A code's system is implied by its required binding: codes are indexed with it, so that
/// `system|code` searches match; elements without such a binding keep no system.
#[test]
fn codes_are_indexed_with_their_implied_system() {
    let patient = json!({
        "resourceType": "Patient",
        "gender": "female",
        "address": [{"use": "work", "type": "postal"}],
        "link": [{"other": {"reference": "Patient/p0"}, "type": "seealso"}],
        "extension": [{"url": "http://example.org/code", "valueCode": "x"}]
    });
    let cases = [
        (
            "Patient.gender",
            vec!["http://hl7.org/fhir/administrative-gender|female"],
        ),
        (
            "Patient.address.type",
            vec!["http://hl7.org/fhir/address-type|postal"],
        ),
        (
            "Patient.link.type",
            vec!["http://hl7.org/fhir/link-type|seealso"],
        ),
        // Two systems in one parameter: which one a code came from is not known.
        (
            "Patient.gender | Patient.address.use",
            vec!["female", "work"],
        ),
        // An extension's code has no binding.
        ("Patient.extension('http://example.org/code')", vec!["x"]),
        ("Patient.id", vec![]),
    ];
    for (expression, expected) in cases {
        let (found, issues) = custom_values("token", expression, &patient);
        assert_eq!(found, expected, "{expression}");
        assert!(issues.is_empty(), "{expression}: {issues:?}");
    }
    let registry = registry();
    let implied = |t: &str, code: &str| registry.get(t, code).and_then(|p| p.implied_system());
    assert_eq!(
        implied("Patient", "gender"),
        Some("http://hl7.org/fhir/administrative-gender")
    );
    assert_eq!(
        implied("Invoice", "status"),
        Some("http://hl7.org/fhir/invoice-status")
    );
    assert_eq!(implied("Patient", "active"), None);
    assert_eq!(implied("Patient", "identifier"), None);
    assert_eq!(
        registry
            .get("Patient", "identifier")
            .and_then(|p| p.element_types()),
        Some(&["Identifier".to_string()][..])
    );
}

#[test]
fn what_cannot_be_indexed_is_reported_without_the_value() {
    let mut bad = patient();
    bad["birthDate"] = json!("1974-13-45");
    let index = index_of(&bad);
    let issues: Vec<(String, String)> = index
        .issues
        .iter()
        .map(|i| (i.param.code().to_string(), i.problem.to_string()))
        .collect();
    assert_eq!(
        issues,
        [(
            "birthdate".to_string(),
            "a malformed date value".to_string()
        )]
    );
    assert_eq!(
        values(&index, "family").len(),
        1,
        "other parameters still index"
    );

    let (found, issues) = custom_values(
        "string",
        "Patient.maritalStatus",
        &json!({
            "resourceType": "Patient", "maritalStatus": {"text": "Secret"}
        }),
    );
    assert!(found.is_empty());
    assert_eq!(
        issues,
        ["a CodeableConcept value cannot be indexed by a string parameter"]
    );

    let (_, issues) = custom_values("token", "Patient.name.given.not()", &patient());
    assert_eq!(issues, [EvalError::NotSingleton("not()").to_string()]);

    let (_, issues) = custom_values("reference", "Patient.link.other.resolve()", &patient());
    assert_eq!(
        issues,
        ["a resource cannot be indexed by a reference parameter"]
    );
    for issue in &issues {
        assert!(!issue.contains("p0"));
    }
}

#[test]
fn registry_refuses_bad_definitions() {
    let base = json!({
        "resourceType": "SearchParameter",
        "url": "urn:test:a",
        "code": "a",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name"
    });
    let with = |key: &str, value: Value| {
        let mut definition = base.clone();
        definition[key] = value;
        definition
    };
    let error = |definitions: &[Value]| {
        Registry::from_definitions(definitions)
            .expect_err("refused")
            .to_string()
    };
    assert_eq!(
        error(&[with("expression", json!("Patient.name.soundex()"))]),
        "SearchParameter urn:test:a: expression: unsupported function `soundex` (at character 13)"
    );
    assert_eq!(
        error(&[with("type", json!("text"))]),
        "SearchParameter urn:test:a: no type, or an unknown one"
    );
    assert_eq!(
        error(&[with("code", json!("a b"))]),
        "SearchParameter urn:test:a: no code, or a code that cannot be a query parameter name"
    );
    assert_eq!(
        error(&[with("expression", json!("Person.name"))]),
        "SearchParameter urn:test:a: the expression has no branch for base Patient"
    );
    assert_eq!(
        error(&[base.clone(), with("url", json!("urn:test:b"))]),
        "two SearchParameters define `a` on Patient: urn:test:a and urn:test:b"
    );
    assert_eq!(
        error(&[
            base.clone(),
            json!({"resourceType": "SearchParameter", "url": "urn:test:b", "code": "a",
                   "base": ["Resource"], "type": "token", "expression": "Resource.id"}),
        ]),
        "two SearchParameters define `a` on Resource: urn:test:a and urn:test:b"
    );
    assert_eq!(
        error(&[with("type", json!("composite"))]),
        "SearchParameter urn:test:a: a composite parameter needs components, and only a composite has them"
    );
    let mut composite = with("type", json!("composite"));
    composite["component"] = json!([{"definition": "urn:test:missing", "expression": "family"}]);
    assert_eq!(
        error(&[composite]),
        "SearchParameter urn:test:a: component definition urn:test:missing is not a loaded parameter of a simple type"
    );
    // Examples and retired definitions are left out.
    let registry = Registry::from_definitions(&[
        with("experimental", json!(true)),
        with("status", json!("retired")),
    ])
    .expect("loads");
    assert!(registry.all().is_empty());
}

/// No input makes indexing panic: every element of a resource replaced by values of every
/// JSON kind.
#[test]
fn malformed_resources_never_panic() {
    let replacements = [
        json!(null),
        json!(true),
        json!(-1.5e300),
        json!("x"),
        json!([]),
        json!([null, 1, "y", {}]),
        json!({}),
        json!({"reference": "#", "coding": "x", "value": "NaN", "start": 5}),
    ];
    let sources = [patient(), invoice()];
    let mut checked = 0;
    for source in &sources {
        let mut pointers = Vec::new();
        collect_pointers(source, String::new(), &mut pointers);
        for pointer in &pointers {
            for replacement in &replacements {
                let mut mutated = source.clone();
                if let Some(slot) = mutated.pointer_mut(pointer) {
                    *slot = replacement.clone();
                }
                let _ = index_of(&mutated);
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "{checked}");
}

fn collect_pointers(value: &Value, pointer: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_pointer = format!("{pointer}/{key}");
                out.push(child_pointer.clone());
                collect_pointers(child, child_pointer, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let child_pointer = format!("{pointer}/{i}");
                out.push(child_pointer.clone());
                collect_pointers(child, child_pointer, out);
            }
        }
        _ => {}
    }
}

#[test]
fn resources_without_a_type_have_no_values() {
    for resource in [
        json!({}),
        json!(null),
        json!({"resourceType": 1}),
        json!([]),
    ] {
        let index = index_of(&resource);
        assert!(index.entries.is_empty() && index.issues.is_empty());
    }
}

/// Each value is kept once, in the order found, also when there are many.
#[test]
fn repeated_values_are_kept_once_in_order() {
    for n in [3, 16, 17, 100] {
        let identifiers: Vec<Value> = (0..n)
            .flat_map(|i| {
                let one = json!({"system": "urn:x", "value": format!("{i}")});
                [one.clone(), one]
            })
            .collect();
        let index = index_of(&json!({"resourceType": "Patient", "identifier": identifiers}));
        let expected: Vec<String> = (0..n).map(|i| format!("urn:x|{i}")).collect();
        assert_eq!(values(&index, "identifier"), expected, "{n}");
    }
}
