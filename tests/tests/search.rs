//! Search parameter semantics, end to end: every search parameter of the six served types
//! (and the common ones) against the official R4 examples plus a crafted set, each query's
//! expected result worked out independently of the server: hand-written ids for the
//! crafted resources, or a small oracle over the JSON the test stored.
//!
//! The official examples need `FHIR_R4_EXAMPLES_DIR` (the unpacked
//! `hl7.fhir.r4.examples@4.0.1`); without it the tests that use them are skipped.

#![allow(clippy::unwrap_used, reason = "tests")]

mod search_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use ferrum_tests::{
    RESOURCE_TYPES, TestServer, assert_outcome, load_examples, parse, parse_instant,
    r4_examples_dir,
};
use reqwest::Method;
use search_support::{
    address_parts, concept_texts, contact_values, contains, date_is, duplicates, has_coding,
    has_identifier, name_parts, refs, search_all, search_path, sounds_like, starts, strs,
};
use serde_json::Value;

/// The crafted resources, with `{base}` standing for the server's base URL. Every id starts
/// with `s-` (no official example's does) and every resource has the tag
/// `urn:ferrum:test:tag|crafted`.
const CRAFTED: &str = r#"[
{"resourceType": "Organization", "id": "s-org",
 "meta": {"profile": ["http://ferrum.test/StructureDefinition/org"],
          "tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "identifier": [{"system": "urn:ferrum:test:org", "value": "ORG-1"}],
 "active": true,
 "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
 "name": "Ferrum Clínica Ñandú", "alias": ["FCN"],
 "telecom": [{"system": "email", "value": "info@ferrum-clinica.test"}],
 "address": [{"use": "work", "line": ["Plaza Nueva 3"], "city": "Granada", "state": "Andalucía",
              "postalCode": "18009", "country": "ES"}],
 "endpoint": [{"reference": "Endpoint/s-ep"}]},
{"resourceType": "Organization", "id": "s-org-child",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "active": false, "name": "Ferrum Pediatría",
 "address": [{"use": "billing", "city": "Málaga", "country": "ES"}],
 "partOf": {"reference": "Organization/s-org"}},
{"resourceType": "Organization", "id": "s-org-smythe",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "name": "Smythe Holdings"},

{"resourceType": "Practitioner", "id": "s-doc",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "identifier": [{"system": "urn:ferrum:test:npi", "value": "NPI-1"}],
 "active": true,
 "name": [{"family": "Núñez", "given": ["Íñigo"], "prefix": ["Dra."]}],
 "telecom": [{"system": "phone", "value": "+34 900 111 222"},
             {"system": "email", "value": "inigo.nunez@ferrum.test"}],
 "address": [{"use": "work", "city": "Córdoba", "state": "Andalucía", "postalCode": "14001", "country": "ES"}],
 "gender": "female",
 "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}], "text": "Spanish"}]},
{"resourceType": "Practitioner", "id": "s-doc2",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "active": false,
 "name": [{"family": "Schmidt", "given": ["Hans"]}],
 "address": [{"use": "home", "city": "Berlin", "country": "DE"}],
 "gender": "male",
 "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "de"}]}]},

{"resourceType": "Patient", "id": "s-jose",
 "meta": {"profile": ["http://ferrum.test/StructureDefinition/patient-a"],
          "source": "http://ferrum.test/source/loader#1",
          "tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"},
                  {"system": "urn:ferrum:test:tag", "code": "vip"}],
          "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
 "identifier": [
   {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
             "text": "Medical record number"},
    "system": "urn:ferrum:test:mrn", "value": "MRN-001"},
   {"value": "NOSYS-1"}],
 "active": true,
 "name": [{"use": "official", "text": "José Luis García", "family": "García",
           "given": ["José", "Luis"], "prefix": ["Sr."]}],
 "telecom": [{"system": "email", "value": "jose.garcia@example.test"},
             {"system": "phone", "value": "+34 600 000 001"}],
 "gender": "male",
 "birthDate": "1901",
 "deceasedDateTime": "2020-01-01T23:30:00-05:00",
 "address": [{"use": "home", "line": ["Calle Mayor 1"], "city": "Sevilla", "state": "Andalucía",
              "postalCode": "41001", "country": "ES"}],
 "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}]}}],
 "generalPractitioner": [{"reference": "Practitioner/s-doc"}]},
{"resourceType": "Patient", "id": "s-zoe",
 "meta": {"profile": ["http://ferrum.test/StructureDefinition/patient-b"],
          "source": "http://ferrum.test/source/other",
          "tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "identifier": [
   {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
    "system": "urn:ferrum:test:mrn", "value": "MRN-002"},
   {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
    "system": "urn:ferrum:test:ssn", "value": "SSN-002"}],
 "active": false,
 "name": [{"family": "Müller", "given": ["Zoë"]}],
 "telecom": [{"system": "email", "value": "zoe.muller@example.test"}],
 "gender": "female",
 "birthDate": "1901-06",
 "deceasedBoolean": true,
 "address": [{"use": "work", "line": ["Marienplatz 8"], "city": "München", "state": "Bayern",
              "postalCode": "80331", "country": "DE"}],
 "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "de"}]}}],
 "generalPractitioner": [{"reference": "{base}/Practitioner/s-doc2"}],
 "link": [{"other": {"reference": "Patient/s-jose"}, "type": "seealso"}]},
{"resourceType": "Patient", "id": "s-smith",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "name": [{"family": "Smith", "given": ["John"]}],
 "telecom": [{"system": "phone", "value": "555-0100"}],
 "gender": "male",
 "birthDate": "1901-06-15",
 "deceasedDateTime": "2020-01-02T00:30:00+02:00",
 "address": [{"city": "Boston", "state": "MA", "postalCode": "02101", "country": "USA"}],
 "generalPractitioner": [{"type": "Practitioner",
                          "identifier": {"system": "urn:ferrum:test:npi", "value": "NPI-9"}}]},
{"resourceType": "Patient", "id": "s-smyth",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "active": true,
 "name": [{"family": "Smyth", "given": ["Jane"]}],
 "gender": "female",
 "birthDate": "1902-01-01",
 "deceasedDateTime": "2020-01-02T10:00:00Z",
 "address": [{"line": ["Calle Sol, 5"], "city": "New York", "state": "NY", "country": "USA"}],
 "generalPractitioner": [{"reference": "Organization/s-org"}],
 "link": [{"other": {"reference": "http://other.example/fhir/Patient/ext-1"}, "type": "refer"}]},
{"resourceType": "Patient", "id": "s-noname",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]}},

{"resourceType": "Account", "id": "s-acc1",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "identifier": [{"system": "urn:ferrum:test:acc", "value": "ACC-1"}],
 "status": "active",
 "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PBILLACCT"}],
          "text": "patient billing"},
 "name": "Cuenta de José",
 "subject": [{"reference": "Patient/s-jose"}],
 "servicePeriod": {"start": "2021-01-01", "end": "2021-06-30"},
 "owner": {"reference": "Organization/s-org"}},
{"resourceType": "Account", "id": "s-acc2",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "status": "inactive",
 "type": {"text": "staff account"},
 "name": "Zoë staff account",
 "subject": [{"reference": "Practitioner/s-doc"}],
 "servicePeriod": {"start": "2021-05-01"},
 "owner": {"reference": "Organization/s-org-child"}},
{"resourceType": "Account", "id": "s-acc3",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "status": "active",
 "name": "Ferrum corporate",
 "subject": [{"reference": "Organization/s-org"}]},

{"resourceType": "Invoice", "id": "s-inv1",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "identifier": [{"system": "urn:ferrum:test:inv", "value": "INV-1"}],
 "status": "issued",
 "type": {"coding": [{"system": "urn:ferrum:test:invoice-type", "code": "hospital"}]},
 "subject": {"reference": "Patient/s-jose"},
 "recipient": {"reference": "Patient/s-jose"},
 "date": "2020-01-01T23:30:00-05:00",
 "participant": [{"role": {"coding": [{"system": "http://snomed.info/sct", "code": "17561000"}]},
                  "actor": {"reference": "Practitioner/s-doc"}}],
 "issuer": {"reference": "Organization/s-org"},
 "account": {"reference": "Account/s-acc1"},
 "lineItem": [{"sequence": 1,
               "chargeItemCodeableConcept": {"coding": [{"system": "urn:ferrum:test:charge", "code": "CONSULT"}]}}],
 "totalNet": {"value": 100.4, "currency": "USD"},
 "totalGross": {"value": 120.00, "currency": "USD"}},
{"resourceType": "Invoice", "id": "s-inv2",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "status": "draft",
 "subject": {"reference": "Patient/s-smith"},
 "recipient": {"reference": "Organization/s-org"},
 "date": "2020-01-02T10:00:00Z",
 "participant": [{"role": {"coding": [{"system": "urn:ferrum:test:role", "code": "billing-clerk"}]},
                  "actor": {"reference": "Organization/s-org"}}],
 "issuer": {"reference": "Organization/s-org-child"},
 "account": {"reference": "Account/s-acc2"},
 "lineItem": [{"sequence": 1,
               "chargeItemCodeableConcept": {"coding": [{"system": "urn:ferrum:test:charge", "code": "XRAY"}]}}],
 "totalNet": {"value": 100.5, "currency": "EUR"},
 "totalGross": {"value": 121.5, "currency": "EUR"}},
{"resourceType": "Invoice", "id": "s-inv3",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "status": "cancelled", "cancelledReason": "duplicate",
 "subject": {"reference": "Group/s-grp-persons"},
 "recipient": {"reference": "Patient/s-zoe"},
 "date": "2021-03-04",
 "account": {"reference": "Account/s-acc3"},
 "totalNet": {"value": 99.50, "currency": "EUR"},
 "totalGross": {"value": 200, "currency": "USD"}},
{"resourceType": "Invoice", "id": "s-inv4",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "status": "issued",
 "subject": {"reference": "Patient/s-zoe"},
 "account": {"reference": "Account/s-acc1"}},

{"resourceType": "Group", "id": "s-grp-persons",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "identifier": [{"system": "urn:ferrum:test:grp", "value": "GRP-1"}],
 "type": "person", "actual": true,
 "code": {"coding": [{"system": "urn:ferrum:test:group", "code": "cohort"}]},
 "name": "Cohort",
 "managingEntity": {"reference": "Organization/s-org"},
 "characteristic": [
   {"code": {"coding": [{"system": "urn:ferrum:test:char", "code": "gender"}]},
    "valueCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}]},
    "exclude": false},
   {"code": {"coding": [{"system": "urn:ferrum:test:char", "code": "smoker"}]},
    "valueBoolean": true, "exclude": true},
   {"code": {"coding": [{"system": "urn:ferrum:test:char", "code": "age"}]},
    "valueQuantity": {"value": 65, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
    "exclude": false}],
 "member": [{"entity": {"reference": "Patient/s-jose"}}, {"entity": {"reference": "Patient/s-zoe"}}]},
{"resourceType": "Group", "id": "s-grp-mixed",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "type": "person", "actual": false,
 "managingEntity": {"reference": "Practitioner/s-doc"},
 "characteristic": [
   {"code": {"coding": [{"system": "urn:ferrum:test:char", "code": "gender"}]},
    "valueCodeableConcept": {"coding": [{"system": "urn:ferrum:test:gender", "code": "mixed"}]},
    "exclude": false},
   {"code": {"coding": [{"system": "urn:ferrum:test:char", "code": "smoker"}]},
    "valueBoolean": false, "exclude": false}],
 "member": [{"entity": {"reference": "Practitioner/s-doc"}}]},
{"resourceType": "Group", "id": "s-grp-ext",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "type": "person", "actual": true,
 "member": [{"entity": {"reference": "http://other.example/fhir/Patient/s-zoe"}}]},
{"resourceType": "Group", "id": "s-grp-empty",
 "meta": {"tag": [{"system": "urn:ferrum:test:tag", "code": "crafted"}]},
 "type": "device", "actual": true}
]"#;

/// The parameters to cover: every R4 search parameter code of each supported type (the base
/// SearchParameters of the R4 package), Ferrum's own `line-item-code` on Invoice, plus the
/// common ones, which any type may cover.
const REFERENCE_LIST: &[(&str, &[&str])] = &[
    (
        "Account",
        &[
            "identifier",
            "name",
            "owner",
            "patient",
            "period",
            "status",
            "subject",
            "type",
        ],
    ),
    (
        "Invoice",
        &[
            "account",
            "date",
            "identifier",
            "issuer",
            "participant",
            "participant-role",
            "patient",
            "recipient",
            "status",
            "subject",
            "totalgross",
            "totalnet",
            "type",
            "line-item-code",
        ],
    ),
    (
        "Patient",
        &[
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
            "telecom",
        ],
    ),
    (
        "Organization",
        &[
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
            "type",
        ],
    ),
    (
        "Practitioner",
        &[
            "active",
            "address",
            "address-city",
            "address-country",
            "address-postalcode",
            "address-state",
            "address-use",
            "communication",
            "email",
            "family",
            "gender",
            "given",
            "identifier",
            "name",
            "phone",
            "phonetic",
            "telecom",
        ],
    ),
    (
        "Group",
        &[
            "actual",
            "characteristic",
            "characteristic-value",
            "code",
            "exclude",
            "identifier",
            "managing-entity",
            "member",
            "type",
            "value",
        ],
    ),
    (
        "*",
        &[
            "_id",
            "_lastUpdated",
            "_tag",
            "_profile",
            "_security",
            "_source",
        ],
    ),
];

/// What a query must find: exactly these ids (of the type searched), or exactly the stored
/// resources of that type for which the oracle holds.
enum Expect {
    Ids(&'static [&'static str]),
    Where(fn(&Value) -> bool),
}

use Expect::{Ids, Where};

/// A query as a person writes it (`{base}` is the server's base URL, `{cut}` an instant
/// after every official example was stored and before the first crafted resource was), and
/// what it finds. Queries that end in `&_tag=urn:ferrum:test:tag|crafted` look at the
/// crafted resources only, so that their hand-written sets do not depend on the examples.
type Case = (&'static str, Expect);

fn is_crafted(resource: &Value) -> bool {
    resource["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("s-"))
}

fn has_tag(resource: &Value, code: &str) -> bool {
    has_coding(resource, "meta.tag", Some("urn:ferrum:test:tag"), code)
}

fn is_deceased(patient: &Value) -> bool {
    patient["deceasedBoolean"] == true || patient["deceasedDateTime"].is_string()
}

fn patient_cases() -> Vec<Case> {
    vec![
        // --- string: starts-with, case and accent insensitive, on every part ---
        (
            "Patient?family=chal",
            Where(|p| starts(&strs(p, "name.family"), "chal")),
        ),
        ("Patient?family=garcia", Ids(&["s-jose"])),
        ("Patient?family=GARC", Ids(&["s-jose"])),
        ("Patient?family=muller", Ids(&["s-zoe"])),
        ("Patient?family=müller", Ids(&["s-zoe"])),
        (
            "Patient?family=van de",
            Where(|p| starts(&strs(p, "name.family"), "van de")),
        ),
        // A prefix of the whole value, not of any word in it.
        ("Patient?family=heuvel", Ids(&[])),
        // :exact: the whole value, case and accents included.
        ("Patient?family:exact=García", Ids(&["s-jose"])),
        ("Patient?family:exact=Garcia", Ids(&[])),
        ("Patient?family:exact=garcía", Ids(&[])),
        ("Patient?family:exact=Garc", Ids(&[])),
        (
            "Patient?family:exact=Chalmers",
            Where(|p| strs(p, "name.family").iter().any(|f| f == "Chalmers")),
        ),
        // :contains: anywhere in the value, case and accent insensitive.
        (
            "Patient?family:contains=ULLE",
            Where(|p| contains(&strs(p, "name.family"), "ulle")),
        ),
        (
            "Patient?family:contains=ers",
            Where(|p| contains(&strs(p, "name.family"), "ers")),
        ),
        (
            "Patient?family:missing=true",
            Where(|p| strs(p, "name.family").is_empty()),
        ),
        ("Patient?given=jose", Ids(&["s-jose"])),
        ("Patient?given=zoe", Ids(&["s-zoe"])),
        ("Patient?given=luis", Ids(&["s-jose"])),
        (
            "Patient?given=pet",
            Where(|p| starts(&strs(p, "name.given"), "pet")),
        ),
        ("Patient?given:exact=Zoë", Ids(&["s-zoe"])),
        ("Patient?given:exact=Zoe", Ids(&[])),
        // name: family, given, prefix, suffix and text.
        (
            "Patient?name=peter",
            Where(|p| starts(&name_parts(p, "name"), "peter")),
        ),
        (
            "Patient?name=sr",
            Where(|p| starts(&name_parts(p, "name"), "sr")),
        ),
        (
            "Patient?name=jose luis",
            Where(|p| starts(&name_parts(p, "name"), "jose luis")),
        ),
        (
            "Patient?name=the 7",
            Where(|p| starts(&name_parts(p, "name"), "the 7")),
        ),
        (
            "Patient?name=bor",
            Where(|p| starts(&name_parts(p, "name"), "bor")),
        ),
        ("Patient?name=garcia", Ids(&["s-jose"])),
        (
            "Patient?name:contains=ALM",
            Where(|p| contains(&name_parts(p, "name"), "alm")),
        ),
        ("Patient?name:exact=Sr.", Ids(&["s-jose"])),
        // phonetic: Soundex, one code per word of each name part.
        (
            "Patient?phonetic=smyth",
            Where(|p| sounds_like(&name_parts(p, "name"), "smyth")),
        ),
        (
            "Patient?phonetic=levine",
            Where(|p| sounds_like(&name_parts(p, "name"), "levine")),
        ),
        (
            "Patient?phonetic=smith",
            Where(|p| sounds_like(&name_parts(p, "name"), "smith")),
        ),
        // address: line, city, district, state, postalCode, country, text.
        ("Patient?address=sevilla", Ids(&["s-jose"])),
        ("Patient?address=andalu", Ids(&["s-jose"])),
        ("Patient?address=41001", Ids(&["s-jose"])),
        (
            "Patient?address=es",
            Where(|p| starts(&address_parts(p, "address"), "es")),
        ),
        ("Patient?address=marienplatz", Ids(&["s-zoe"])),
        (
            "Patient?address=pleasant",
            Where(|p| starts(&address_parts(p, "address"), "pleasant")),
        ),
        (
            "Patient?address=rainbow",
            Where(|p| starts(&address_parts(p, "address"), "rainbow")),
        ),
        (
            "Patient?address=534 erewhon",
            Where(|p| starts(&address_parts(p, "address"), "534 erewhon")),
        ),
        (
            "Patient?address:missing=true",
            Where(|p| address_parts(p, "address").is_empty()),
        ),
        ("Patient?address-city=munchen", Ids(&["s-zoe"])),
        (
            "Patient?address-city=amster",
            Where(|p| starts(&strs(p, "address.city"), "amster")),
        ),
        ("Patient?address-city:exact=München", Ids(&["s-zoe"])),
        (
            "Patient?address-country=usa",
            Where(|p| starts(&strs(p, "address.country"), "usa")),
        ),
        (
            "Patient?address-country=de",
            Where(|p| starts(&strs(p, "address.country"), "de")),
        ),
        ("Patient?address-postalcode=80331", Ids(&["s-zoe"])),
        (
            "Patient?address-postalcode=3999",
            Where(|p| starts(&strs(p, "address.postalCode"), "3999")),
        ),
        ("Patient?address-state=bay", Ids(&["s-zoe"])),
        // A part's parameter sees only its part of the address (stored once, with `address`).
        ("Patient?address-state=münchen", Ids(&[])),
        (
            "Patient?address-state:missing=true",
            Where(|p| strs(p, "address.state").is_empty()),
        ),
        (
            "Patient?address-state=vic",
            Where(|p| starts(&strs(p, "address.state"), "vic")),
        ),
        (
            "Patient?address-use=work",
            Where(|p| strs(p, "address.use").iter().any(|u| u == "work")),
        ),
        (
            "Patient?address-use=home",
            Where(|p| strs(p, "address.use").iter().any(|u| u == "home")),
        ),
        // Escaping: `\,` is a comma inside a value; a bare comma separates OR values.
        ("Patient?address=calle sol\\, 5", Ids(&["s-smyth"])),
        ("Patient?address=calle sol\\, 6", Ids(&[])),
        (
            "Patient?address=calle sol,5",
            Where(|p| {
                let parts = address_parts(p, "address");
                starts(&parts, "calle sol") || starts(&parts, "5")
            }),
        ),
        // --- token ---
        ("Patient?active=true", Where(|p| p["active"] == true)),
        ("Patient?active=false", Ids(&["s-zoe"])),
        (
            "Patient?active:missing=true",
            Where(|p| p.get("active").is_none()),
        ),
        ("Patient?active:not=true", Where(|p| p["active"] != true)),
        ("Patient?gender=male", Where(|p| p["gender"] == "male")),
        // A code carries the system its required binding implies.
        (
            "Patient?gender=http://hl7.org/fhir/administrative-gender|female",
            Where(|p| p["gender"] == "female"),
        ),
        ("Patient?gender=|male", Ids(&[])),
        (
            "Patient?gender=http://hl7.org/fhir/administrative-gender|",
            Where(|p| p["gender"].is_string()),
        ),
        (
            "Patient?gender=other,female",
            Where(|p| p["gender"] == "other" || p["gender"] == "female"),
        ),
        // :not also finds resources without any value.
        ("Patient?gender:not=male", Where(|p| p["gender"] != "male")),
        (
            "Patient?gender:missing=true",
            Where(|p| p.get("gender").is_none()),
        ),
        (
            "Patient?gender:missing=false",
            Where(|p| p.get("gender").is_some()),
        ),
        // deceased: a Patient without deceased[x] is deceased=false.
        ("Patient?deceased=true", Where(is_deceased)),
        ("Patient?deceased=false", Where(|p| !is_deceased(p))),
        (
            "Patient?identifier=12345",
            Where(|p| has_identifier(p, None, "12345")),
        ),
        (
            "Patient?identifier=urn:oid:1.2.36.146.595.217.0.1|12345",
            Where(|p| has_identifier(p, Some("urn:oid:1.2.36.146.595.217.0.1"), "12345")),
        ),
        (
            "Patient?identifier=urn:oid:0.1.2.3.4.5.6.7|",
            Where(|p| {
                search_support::identifiers(p, "identifier")
                    .iter()
                    .any(|(s, _)| s.as_deref() == Some("urn:oid:0.1.2.3.4.5.6.7"))
            }),
        ),
        (
            "Patient?identifier=urn:ferrum:test:mrn|",
            Ids(&["s-jose", "s-zoe"]),
        ),
        ("Patient?identifier=|NOSYS-1", Ids(&["s-jose"])),
        ("Patient?identifier=|MRN-001", Ids(&[])),
        ("Patient?identifier=NOSYS-1", Ids(&["s-jose"])),
        ("Patient?identifier=urn:ferrum:test:ssn|MRN-002", Ids(&[])),
        (
            "Patient?identifier:not=urn:ferrum:test:mrn|MRN-001",
            Where(|p| !has_identifier(p, Some("urn:ferrum:test:mrn"), "MRN-001")),
        ),
        (
            "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-001",
            Ids(&["s-jose"]),
        ),
        (
            "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|SS|MRN-002",
            Ids(&[]),
        ),
        (
            "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345",
            Where(|p| {
                search_support::at(p, "identifier").iter().any(|i| {
                    i["value"] == "12345"
                        && has_coding(
                            i,
                            "type",
                            Some("http://terminology.hl7.org/CodeSystem/v2-0203"),
                            "MR",
                        )
                })
            }),
        ),
        ("Patient?identifier:text=medical record", Ids(&["s-jose"])),
        (
            "Patient?identifier:text=bsn",
            Where(|p| starts(&strs(p, "identifier.type.text"), "bsn")),
        ),
        ("Patient?language=es", Ids(&["s-jose"])),
        (
            "Patient?language=urn:ietf:bcp:47|nl",
            Where(|p| has_coding(p, "communication.language", Some("urn:ietf:bcp:47"), "nl")),
        ),
        (
            "Patient?language:text=dutch",
            Where(|p| starts(&concept_texts(p, "communication.language"), "dutch")),
        ),
        (
            "Patient?language:missing=false",
            Where(|p| !codings_or_text_empty(p, "communication.language")),
        ),
        // ContactPoint tokens: the value, no system.
        ("Patient?email=jose.garcia@example.test", Ids(&["s-jose"])),
        (
            "Patient?email=p.heuvel@gmail.com",
            Where(|p| {
                contact_values(p, "telecom", Some("email"))
                    .iter()
                    .any(|v| v == "p.heuvel@gmail.com")
            }),
        ),
        (
            "Patient?email:missing=true",
            Where(|p| contact_values(p, "telecom", Some("email")).is_empty()),
        ),
        (
            "Patient?phone=(03) 5555 6473",
            Where(|p| {
                contact_values(p, "telecom", Some("phone"))
                    .iter()
                    .any(|v| v == "(03) 5555 6473")
            }),
        ),
        ("Patient?phone=+34 600 000 001", Ids(&["s-jose"])),
        ("Patient?phone=jose.garcia@example.test", Ids(&[])),
        (
            "Patient?phone:not=(03) 5555 6473",
            Where(|p| {
                !contact_values(p, "telecom", Some("phone"))
                    .iter()
                    .any(|v| v == "(03) 5555 6473")
            }),
        ),
        ("Patient?telecom=+34 600 000 001", Ids(&["s-jose"])),
        ("Patient?telecom=zoe.muller@example.test", Ids(&["s-zoe"])),
        (
            "Patient?telecom=+31201234567",
            Where(|p| {
                contact_values(p, "telecom", None)
                    .iter()
                    .any(|v| v == "+31201234567")
            }),
        ),
        // --- date: precision, prefixes, zones (crafted only: years 1901-1902) ---
        //   s-jose 1901 = [1901-01-01, 1902-01-01), s-zoe 1901-06 = [1901-06-01, 1901-07-01),
        //   s-smith 1901-06-15 = one day, s-smyth 1902-01-01 = one day, s-noname: none.
        (
            "Patient?birthdate=1901&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-jose", "s-zoe", "s-smith"]),
        ),
        (
            "Patient?birthdate=1901-06&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-zoe", "s-smith"]),
        ),
        (
            "Patient?birthdate=eq1901-06-15&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-smith"]),
        ),
        (
            "Patient?birthdate=ne1901-06&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-jose", "s-smyth"]),
        ),
        (
            "Patient?birthdate=lt1901-06-15&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-jose", "s-zoe"]),
        ),
        (
            "Patient?birthdate=gt1901-06-15&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-jose", "s-zoe", "s-smyth"]),
        ),
        (
            "Patient?birthdate=le1901-06&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-jose", "s-zoe", "s-smith"]),
        ),
        (
            "Patient?birthdate=ge1901-06-16&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-jose", "s-zoe", "s-smyth"]),
        ),
        (
            "Patient?birthdate=sa1901-06&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-smyth"]),
        ),
        (
            "Patient?birthdate=eb1901-07&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-zoe", "s-smith"]),
        ),
        (
            "Patient?birthdate=eb1901-06-15&_tag=urn:ferrum:test:tag|crafted",
            Ids(&[]),
        ),
        // ap: overlap with the value's range, which the server may widen (R4 recommends 10%
        // of the distance to now: about 12 years here, 15 for 1880). Either way every
        // crafted date overlaps 1901-06-20 and none comes near 1880.
        (
            "Patient?birthdate=ap1901-06-20&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-jose", "s-zoe", "s-smith", "s-smyth"]),
        ),
        ("Patient?birthdate=ap1880", Ids(&[])),
        (
            "Patient?birthdate=1901,1902-01-01&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-jose", "s-zoe", "s-smith", "s-smyth"]),
        ),
        (
            "Patient?birthdate=ge1901-06&birthdate=lt1901-06-15&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-jose", "s-zoe"]),
        ),
        (
            "Patient?birthdate:missing=true&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-noname"]),
        ),
        // The same on the examples, through the oracle.
        (
            "Patient?birthdate=1974",
            Where(|p| date_is(p, "birthDate", "1974")),
        ),
        (
            "Patient?birthdate=1974-12",
            Where(|p| date_is(p, "birthDate", "1974-12")),
        ),
        (
            "Patient?birthdate=1974-12-25",
            Where(|p| date_is(p, "birthDate", "1974-12-25")),
        ),
        (
            "Patient?birthdate=lt1950",
            Where(|p| date_is(p, "birthDate", "lt1950")),
        ),
        (
            "Patient?birthdate=ge2017-05-15",
            Where(|p| date_is(p, "birthDate", "ge2017-05-15")),
        ),
        (
            "Patient?birthdate=ne1973-05-31",
            Where(|p| date_is(p, "birthDate", "ne1973-05-31")),
        ),
        (
            "Patient?birthdate=sa1980",
            Where(|p| date_is(p, "birthDate", "sa1980")),
        ),
        (
            "Patient?birthdate=eb1960-03-14",
            Where(|p| date_is(p, "birthDate", "eb1960-03-14")),
        ),
        (
            "Patient?birthdate=le1960-03-13",
            Where(|p| date_is(p, "birthDate", "le1960-03-13")),
        ),
        (
            "Patient?birthdate=gt1995",
            Where(|p| date_is(p, "birthDate", "gt1995")),
        ),
        // Time zones. R4: "where the search value has no time zone, the server's local time
        // zone applies"; this server's is UTC (docs/search.md), so `2020-01-02` is
        // [2020-01-02T00:00Z, 2020-01-03T00:00Z). A dateTime with a zone is an instant:
        //   s-jose  2020-01-01T23:30:00-05:00 = 2020-01-02T04:30:00Z -> matches 2020-01-02;
        //   s-smith 2020-01-02T00:30:00+02:00 = 2020-01-01T22:30:00Z -> matches 2020-01-01;
        //   s-smyth 2020-01-02T10:00:00Z -> 2020-01-02.
        ("Patient?death-date=2020-01-02", Ids(&["s-jose", "s-smyth"])),
        ("Patient?death-date=2020-01-01", Ids(&["s-smith"])),
        (
            "Patient?death-date=2020-01-01T23:30:00-05:00",
            Ids(&["s-jose"]),
        ),
        ("Patient?death-date=2020-01-02T04:30:00Z", Ids(&["s-jose"])),
        (
            "Patient?death-date=2020-01-02T06:30:00+02:00",
            Ids(&["s-jose"]),
        ),
        (
            "Patient?death-date=lt2020-01-02T00:00:00Z",
            Where(|p| date_is(p, "deceasedDateTime", "lt2020-01-02T00:00:00Z")),
        ),
        (
            "Patient?death-date=2015-02-14",
            Where(|p| date_is(p, "deceasedDateTime", "2015-02-14")),
        ),
        (
            "Patient?death-date:missing=false",
            Where(|p| p["deceasedDateTime"].is_string()),
        ),
        // --- reference ---
        (
            "Patient?general-practitioner=Practitioner/s-doc",
            Ids(&["s-jose"]),
        ),
        (
            "Patient?general-practitioner={base}/Practitioner/s-doc",
            Ids(&["s-jose"]),
        ),
        // Stored as an absolute URL under the server's base: a local reference.
        (
            "Patient?general-practitioner=Practitioner/s-doc2",
            Ids(&["s-zoe"]),
        ),
        (
            "Patient?general-practitioner=Practitioner/example",
            Where(|p| {
                refs(p, "generalPractitioner")
                    .iter()
                    .any(|r| r == "Practitioner/example")
            }),
        ),
        (
            "Patient?general-practitioner:Organization=s-org",
            Ids(&["s-smyth"]),
        ),
        ("Patient?general-practitioner:Practitioner=s-org", Ids(&[])),
        ("Patient?general-practitioner=s-org", Ids(&["s-smyth"])),
        (
            "Patient?general-practitioner:identifier=urn:ferrum:test:npi|NPI-9",
            Ids(&["s-smith"]),
        ),
        (
            "Patient?general-practitioner:identifier=NPI-9",
            Ids(&["s-smith"]),
        ),
        (
            "Patient?general-practitioner:missing=false",
            Where(|p| !search_support::at(p, "generalPractitioner").is_empty()),
        ),
        (
            "Patient?link=Patient/pat2",
            Where(|p| refs(p, "link.other").iter().any(|r| r == "Patient/pat2")),
        ),
        ("Patient?link=Patient/s-jose", Ids(&["s-zoe"])),
        (
            "Patient?link=RelatedPerson/newborn-mom",
            Where(|p| {
                refs(p, "link.other")
                    .iter()
                    .any(|r| r == "RelatedPerson/newborn-mom")
            }),
        ),
        // An absolute reference elsewhere matches its URL, not a local id.
        (
            "Patient?link=http://other.example/fhir/Patient/ext-1",
            Ids(&["s-smyth"]),
        ),
        (
            "Patient?organization=Organization/1",
            Where(|p| {
                refs(p, "managingOrganization")
                    .iter()
                    .any(|r| r == "Organization/1")
            }),
        ),
        (
            "Patient?organization=1",
            Where(|p| {
                refs(p, "managingOrganization")
                    .iter()
                    .any(|r| r == "Organization/1")
            }),
        ),
        (
            "Patient?organization={base}/Organization/1",
            Where(|p| {
                refs(p, "managingOrganization")
                    .iter()
                    .any(|r| r == "Organization/1")
            }),
        ),
        (
            "Patient?organization:missing=true",
            Where(|p| refs(p, "managingOrganization").is_empty()),
        ),
        // Chains.
        (
            "Patient?general-practitioner:Practitioner.name=nunez",
            Ids(&["s-jose"]),
        ),
        (
            "Patient?general-practitioner:Practitioner.family=careful",
            Where(|p| {
                refs(p, "generalPractitioner")
                    .iter()
                    .any(|r| r == "Practitioner/example")
            }),
        ),
        (
            "Patient?organization.name=gastro",
            Where(|p| {
                refs(p, "managingOrganization")
                    .iter()
                    .any(|r| r == "Organization/1")
            }),
        ),
        ("Patient?link:Patient.given=jose", Ids(&["s-zoe"])),
        // Reverse chaining.
        (
            "Patient?_has:Invoice:subject:status=issued",
            Ids(&["example", "s-jose", "s-zoe"]),
        ),
        (
            "Patient?_has:Invoice:recipient:status=cancelled",
            Ids(&["s-zoe"]),
        ),
        (
            "Patient?_has:Invoice:patient:totalnet=gt100",
            Ids(&["s-jose", "s-smith"]),
        ),
        (
            "Patient?_has:Group:member:_id=102",
            Ids(&["pat1", "pat2", "pat3", "pat4"]),
        ),
        (
            "Patient?_has:Group:member:characteristic-value=gender$female",
            Ids(&["s-jose", "s-zoe"]),
        ),
        (
            "Patient?_has:Account:subject:_has:Invoice:account:status=issued",
            Ids(&["example", "s-jose"]),
        ),
        (
            "Patient?_has:Invoice:subject:account.owner.name=ferrum",
            Ids(&["s-jose", "s-zoe", "s-smith"]),
        ),
        (
            "Patient?_has:Invoice:subject:status=issued&gender=female",
            Ids(&["s-zoe"]),
        ),
        // --- common parameters ---
        ("Patient?_id=s-jose,example", Ids(&["s-jose", "example"])),
        ("Patient?_id=s-nothing", Ids(&[])),
        (
            "Patient?_id:not=s-jose&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-zoe", "s-smith", "s-smyth", "s-noname"]),
        ),
        ("Patient?_lastUpdated=ge{cut}", Where(is_crafted)),
        ("Patient?_lastUpdated=lt{cut}", Where(|p| !is_crafted(p))),
        (
            "Patient?_tag=urn:ferrum:test:tag|crafted",
            Where(is_crafted),
        ),
        ("Patient?_tag=vip", Ids(&["s-jose"])),
        (
            "Patient?_tag:not=urn:ferrum:test:tag|vip",
            Where(|p| !has_tag(p, "vip")),
        ),
        ("Patient?_tag:missing=true", Where(|p| !is_crafted(p))),
        ("Patient?_security=R", Ids(&["s-jose"])),
        (
            "Patient?_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R",
            Ids(&["s-jose"]),
        ),
        (
            "Patient?_profile=http://ferrum.test/StructureDefinition/patient-a",
            Ids(&["s-jose"]),
        ),
        (
            "Patient?_profile=http://ferrum.test/StructureDefinition/patient",
            Ids(&[]),
        ),
        (
            "Patient?_profile:below=http://ferrum.test/StructureDefinition/patient",
            Ids(&["s-jose", "s-zoe"]),
        ),
        (
            "Patient?_profile:above=http://ferrum.test/StructureDefinition/patient-a/extra",
            Ids(&["s-jose"]),
        ),
        ("Patient?_profile:missing=false", Ids(&["s-jose", "s-zoe"])),
        (
            "Patient?_source=http://ferrum.test/source/loader#1",
            Ids(&["s-jose"]),
        ),
        ("Patient?_source=http://ferrum.test/source/loader", Ids(&[])),
        (
            "Patient?_source:below=http://ferrum.test/source/",
            Ids(&["s-jose", "s-zoe"]),
        ),
        (
            "Patient?_source:above=http://ferrum.test/source/other/sub",
            Ids(&["s-zoe"]),
        ),
        (
            "Patient?_source:missing=true&_tag=urn:ferrum:test:tag|crafted",
            Ids(&["s-smith", "s-smyth", "s-noname"]),
        ),
        // --- OR and AND ---
        ("Patient?given=jose,zoe", Ids(&["s-jose", "s-zoe"])),
        ("Patient?given=jose&given=luis", Ids(&["s-jose"])),
        ("Patient?given=jose&given=zoe", Ids(&[])),
        ("Patient?family=garcia&gender=female", Ids(&[])),
        ("Patient?gender=female&birthdate=1901-06", Ids(&["s-zoe"])),
        (
            "Patient?_id=s-jose,s-zoe&_id=s-zoe,s-smith",
            Ids(&["s-zoe"]),
        ),
    ]
}

fn codings_or_text_empty(resource: &Value, path: &str) -> bool {
    search_support::codings(resource, path).is_empty() && concept_texts(resource, path).is_empty()
}

fn account_cases() -> Vec<Case> {
    vec![
        (
            "Account?identifier=654321",
            Where(|a| has_identifier(a, None, "654321")),
        ),
        (
            "Account?identifier=urn:ferrum:test:acc|ACC-1",
            Ids(&["s-acc1"]),
        ),
        (
            "Account?name=hacc",
            Where(|a| starts(&strs(a, "name"), "hacc")),
        ),
        ("Account?name=cuenta de jose", Ids(&["s-acc1"])),
        // "Inpatient: Peter James Chalmers" does not start with "peter".
        ("Account?name=peter", Ids(&[])),
        (
            "Account?name:contains=peter",
            Where(|a| contains(&strs(a, "name"), "peter")),
        ),
        ("Account?name:exact=Zoë staff account", Ids(&["s-acc2"])),
        (
            "Account?owner=Organization/f001",
            Where(|a| refs(a, "owner").iter().any(|r| r == "Organization/f001")),
        ),
        ("Account?owner=s-org", Ids(&["s-acc1"])),
        ("Account?owner:missing=true", Ids(&["s-acc3"])),
        (
            "Account?patient=Patient/example",
            Where(|a| refs(a, "subject").iter().any(|r| r == "Patient/example")),
        ),
        ("Account?patient=s-jose", Ids(&["s-acc1"])),
        // `patient` only points at Patients: s-acc2's subject is a Practitioner.
        ("Account?patient=s-doc", Ids(&[])),
        // servicePeriod: s-acc1 [2021-01-01, 2021-07-01), s-acc2 [2021-05-01, open).
        ("Account?period=2021", Ids(&["s-acc1"])),
        (
            "Account?period=2016",
            Where(|a| date_is(a, "servicePeriod", "2016")),
        ),
        ("Account?period=2021-05-15", Ids(&[])),
        ("Account?period=ge2021-07-01", Ids(&["s-acc2"])),
        ("Account?period=gt2021-06-30", Ids(&["s-acc2"])),
        (
            "Account?period=lt2016-01-02",
            Where(|a| date_is(a, "servicePeriod", "lt2016-01-02")),
        ),
        ("Account?period=sa2020-12-31", Ids(&["s-acc1", "s-acc2"])),
        (
            "Account?period=eb2016-07-01",
            Where(|a| date_is(a, "servicePeriod", "eb2016-07-01")),
        ),
        ("Account?period=ap2021-05-15", Ids(&["s-acc1", "s-acc2"])),
        (
            "Account?period=le2021-06-30",
            Where(|a| date_is(a, "servicePeriod", "le2021-06-30")),
        ),
        (
            "Account?period=ne2021",
            Where(|a| date_is(a, "servicePeriod", "ne2021")),
        ),
        ("Account?period:missing=true", Ids(&["s-acc3"])),
        ("Account?status=active", Where(|a| a["status"] == "active")),
        ("Account?status:not=active", Ids(&["s-acc2"])),
        (
            "Account?status=http://hl7.org/fhir/account-status|inactive",
            Ids(&["s-acc2"]),
        ),
        (
            "Account?subject=Patient/example",
            Where(|a| refs(a, "subject").iter().any(|r| r == "Patient/example")),
        ),
        ("Account?subject:Practitioner=s-doc", Ids(&["s-acc2"])),
        ("Account?subject=s-doc", Ids(&["s-acc2"])),
        ("Account?subject:Organization=s-org", Ids(&["s-acc3"])),
        // Untyped chains through a parameter with several targets, when the rest applies to
        // all of them: Organization, Patient and Practitioner all have `name`.
        ("Account?subject.name=ferrum", Ids(&["s-acc3"])),
        ("Account?subject.name=nunez", Ids(&["s-acc2"])),
        ("Account?subject:Patient.birthdate=1901", Ids(&["s-acc1"])),
        (
            "Account?type=PBILLACCT",
            Where(|a| has_coding(a, "type", None, "PBILLACCT")),
        ),
        (
            "Account?type=http://terminology.hl7.org/CodeSystem/v3-ActCode|PBILLACCT",
            Where(|a| {
                has_coding(
                    a,
                    "type",
                    Some("http://terminology.hl7.org/CodeSystem/v3-ActCode"),
                    "PBILLACCT",
                )
            }),
        ),
        (
            "Account?type:text=patient",
            Where(|a| starts(&concept_texts(a, "type"), "patient")),
        ),
        ("Account?type:text=staff", Ids(&["s-acc2"])),
        (
            "Account?_has:Invoice:account:status=draft",
            Ids(&["s-acc2"]),
        ),
        ("Account?_id=s-acc1,ewg", Ids(&["s-acc1", "ewg"])),
        (
            "Account?_tag=urn:ferrum:test:tag|crafted",
            Where(is_crafted),
        ),
        ("Account?_lastUpdated=lt{cut}", Where(|a| !is_crafted(a))),
    ]
}

fn invoice_cases() -> Vec<Case> {
    vec![
        ("Invoice?account=Account/example", Ids(&["example"])),
        ("Invoice?account=s-acc1", Ids(&["s-inv1", "s-inv4"])),
        ("Invoice?account={base}/Account/s-acc2", Ids(&["s-inv2"])),
        // Invoice.date, with zones (see the death-date cases):
        //   s-inv1 2020-01-01T23:30:00-05:00 = 2020-01-02T04:30:00Z,
        //   s-inv2 2020-01-02T10:00:00Z, s-inv3 2021-03-04 (the whole day, UTC),
        //   example 2017-01-25T08:00:00+01:00 = 2017-01-25T07:00:00Z, s-inv4: no date.
        ("Invoice?date=2020-01-02", Ids(&["s-inv1", "s-inv2"])),
        ("Invoice?date=2020-01-01", Ids(&[])),
        ("Invoice?date=2020-01-01T23:30:00-05:00", Ids(&["s-inv1"])),
        ("Invoice?date=2020-01-02T04:30:00Z", Ids(&["s-inv1"])),
        ("Invoice?date=2017-01-25T07:00:00Z", Ids(&["example"])),
        ("Invoice?date=2017-01-25", Ids(&["example"])),
        (
            "Invoice?date=lt2020-01-02T05:00:00Z",
            Ids(&["example", "s-inv1"]),
        ),
        ("Invoice?date=ge2021", Ids(&["s-inv3"])),
        ("Invoice?date=2021-03", Ids(&["s-inv3"])),
        ("Invoice?date=2021-03-04T12:00:00Z", Ids(&[])),
        ("Invoice?date=ap2021-03-04T12:00:00Z", Ids(&["s-inv3"])),
        ("Invoice?date:missing=true", Ids(&["s-inv4"])),
        (
            "Invoice?identifier=http://myHospital.org/Invoices|654321",
            Ids(&["example"]),
        ),
        ("Invoice?identifier=INV-1", Ids(&["s-inv1"])),
        ("Invoice?issuer=Organization/s-org", Ids(&["s-inv1"])),
        ("Invoice?issuer=s-org-child", Ids(&["s-inv2"])),
        // A logical reference (identifier only).
        (
            "Invoice?issuer:identifier=http://myhospital/NamingSystem/departments|CARD_INTERMEDIATE_CARE",
            Ids(&["example"]),
        ),
        ("Invoice?issuer:missing=true", Ids(&["s-inv3", "s-inv4"])),
        (
            "Invoice?participant=Practitioner/example",
            Ids(&["example"]),
        ),
        ("Invoice?participant=Organization/s-org", Ids(&["s-inv2"])),
        ("Invoice?participant:Practitioner=s-doc", Ids(&["s-inv1"])),
        (
            "Invoice?participant-role=http://snomed.info/sct|17561000",
            Ids(&["example", "s-inv1"]),
        ),
        ("Invoice?participant-role=billing-clerk", Ids(&["s-inv2"])),
        ("Invoice?patient=Patient/s-jose", Ids(&["s-inv1"])),
        ("Invoice?patient=example", Ids(&["example"])),
        // `patient` is the subject when it is a Patient: s-inv3's subject is a Group.
        ("Invoice?patient:missing=true", Ids(&["s-inv3"])),
        ("Invoice?recipient=Patient/s-jose", Ids(&["s-inv1"])),
        ("Invoice?recipient:Organization=s-org", Ids(&["s-inv2"])),
        ("Invoice?recipient=s-zoe", Ids(&["s-inv3"])),
        (
            "Invoice?status=issued",
            Ids(&["example", "s-inv1", "s-inv4"]),
        ),
        (
            "Invoice?status=http://hl7.org/fhir/invoice-status|draft",
            Ids(&["s-inv2"]),
        ),
        ("Invoice?status=draft,cancelled", Ids(&["s-inv2", "s-inv3"])),
        ("Invoice?status:not=issued", Ids(&["s-inv2", "s-inv3"])),
        ("Invoice?subject=Group/s-grp-persons", Ids(&["s-inv3"])),
        ("Invoice?subject:Patient=s-smith", Ids(&["s-inv2"])),
        ("Invoice?subject={base}/Patient/s-jose", Ids(&["s-inv1"])),
        (
            "Invoice?subject=Patient/s-jose,Patient/s-zoe",
            Ids(&["s-inv1", "s-inv4"]),
        ),
        // Chains, one and two links.
        ("Invoice?subject:Patient.name=peter", Ids(&["example"])),
        ("Invoice?subject:Patient.name=jose", Ids(&["s-inv1"])),
        (
            "Invoice?subject:Group.characteristic=smoker",
            Ids(&["s-inv3"]),
        ),
        ("Invoice?patient.gender=female", Ids(&["s-inv4"])),
        (
            "Invoice?account.subject:Patient.family=garcia",
            Ids(&["s-inv1", "s-inv4"]),
        ),
        (
            "Invoice?account.subject:Patient.family=chalmers",
            Ids(&["example"]),
        ),
        (
            "Invoice?account.owner.name=ferrum",
            Ids(&["s-inv1", "s-inv2", "s-inv4"]),
        ),
        (
            "Invoice?account.owner.partof=Organization/s-org",
            Ids(&["s-inv2"]),
        ),
        ("Invoice?account.period=2021", Ids(&["s-inv1", "s-inv4"])),
        // Numbers: eq covers the value's precision, `100` is [99.5, 100.5).
        //   totalNet: example 40 EUR, s-inv1 100.4 USD, s-inv2 100.5 EUR, s-inv3 99.50 EUR.
        ("Invoice?totalnet=100", Ids(&["s-inv1", "s-inv3"])),
        ("Invoice?totalnet=100.5", Ids(&["s-inv2"])),
        ("Invoice?totalnet=100.00", Ids(&[])),
        ("Invoice?totalnet=99.5", Ids(&["s-inv3"])),
        ("Invoice?totalnet=40", Ids(&["example"])),
        ("Invoice?totalnet=ne100", Ids(&["example", "s-inv2"])),
        ("Invoice?totalnet=gt100", Ids(&["s-inv1", "s-inv2"])),
        ("Invoice?totalnet=lt100", Ids(&["example", "s-inv3"])),
        ("Invoice?totalnet=ge100.4", Ids(&["s-inv1", "s-inv2"])),
        (
            "Invoice?totalnet=le100.4",
            Ids(&["example", "s-inv1", "s-inv3"]),
        ),
        ("Invoice?totalnet=sa100.4", Ids(&["s-inv2"])),
        ("Invoice?totalnet=eb99.5", Ids(&["example"])),
        (
            "Invoice?totalnet=ap100",
            Ids(&["s-inv1", "s-inv2", "s-inv3"]),
        ),
        ("Invoice?totalnet=40,100.5", Ids(&["example", "s-inv2"])),
        (
            "Invoice?totalnet=100|urn:iso:std:iso:4217|EUR",
            Ids(&["s-inv3"]),
        ),
        ("Invoice?totalnet=100||USD", Ids(&["s-inv1"])),
        ("Invoice?totalnet:missing=true", Ids(&["s-inv4"])),
        //   totalGross: example 48 EUR, s-inv1 120.00 USD, s-inv2 121.5 EUR, s-inv3 200 USD.
        (
            "Invoice?totalgross=120|urn:iso:std:iso:4217|USD",
            Ids(&["s-inv1"]),
        ),
        ("Invoice?totalgross=120|urn:iso:std:iso:4217|EUR", Ids(&[])),
        ("Invoice?totalgross=121.5||EUR", Ids(&["s-inv2"])),
        (
            "Invoice?totalgross=ge100|urn:iso:std:iso:4217|EUR",
            Ids(&["s-inv2"]),
        ),
        (
            "Invoice?totalgross=gt100",
            Ids(&["s-inv1", "s-inv2", "s-inv3"]),
        ),
        ("Invoice?totalgross=48", Ids(&["example"])),
        ("Invoice?totalgross=lt150||USD", Ids(&["s-inv1"])),
        ("Invoice?totalgross=120.00", Ids(&["s-inv1"])),
        (
            "Invoice?totalgross:missing=false",
            Ids(&["example", "s-inv1", "s-inv2", "s-inv3"]),
        ),
        ("Invoice?type=hospital", Ids(&["s-inv1"])),
        (
            "Invoice?type:missing=true",
            Ids(&["example", "s-inv2", "s-inv3", "s-inv4"]),
        ),
        ("Invoice?line-item-code=CONSULT", Ids(&["s-inv1"])),
        (
            "Invoice?line-item-code=urn:ferrum:test:charge|XRAY",
            Ids(&["s-inv2"]),
        ),
        (
            "Invoice?line-item-code:missing=true",
            Ids(&["example", "s-inv3", "s-inv4"]),
        ),
        (
            "Invoice?_id=s-inv1,s-inv2,example",
            Ids(&["s-inv1", "s-inv2", "example"]),
        ),
        (
            "Invoice?status=issued&account=s-acc1",
            Ids(&["s-inv1", "s-inv4"]),
        ),
    ]
}

fn organization_cases() -> Vec<Case> {
    vec![
        ("Organization?active=true", Where(|o| o["active"] == true)),
        (
            "Organization?active:not=true",
            Where(|o| o["active"] != true),
        ),
        ("Organization?address=granada", Ids(&["s-org"])),
        (
            "Organization?address=den",
            Where(|o| starts(&address_parts(o, "address"), "den")),
        ),
        ("Organization?address-city=malaga", Ids(&["s-org-child"])),
        (
            "Organization?address-city=den burg",
            Where(|o| starts(&strs(o, "address.city"), "den burg")),
        ),
        (
            "Organization?address-country=nld",
            Where(|o| starts(&strs(o, "address.country"), "nld")),
        ),
        ("Organization?address-postalcode=18009", Ids(&["s-org"])),
        (
            "Organization?address-postalcode=2333",
            Where(|o| starts(&strs(o, "address.postalCode"), "2333")),
        ),
        (
            "Organization?address-state=mi",
            Where(|o| starts(&strs(o, "address.state"), "mi")),
        ),
        ("Organization?address-state=andalucia", Ids(&["s-org"])),
        ("Organization?address-use=billing", Ids(&["s-org-child"])),
        (
            "Organization?address-use=work",
            Where(|o| strs(o, "address.use").iter().any(|u| u == "work")),
        ),
        (
            "Organization?endpoint=Endpoint/example",
            Where(|o| refs(o, "endpoint").iter().any(|r| r == "Endpoint/example")),
        ),
        ("Organization?endpoint=s-ep", Ids(&["s-org"])),
        (
            "Organization?identifier=http://www.acme.org.au/units|Gastro",
            Where(|o| has_identifier(o, Some("http://www.acme.org.au/units"), "Gastro")),
        ),
        (
            "Organization?identifier=urn:ferrum:test:org|ORG-1",
            Ids(&["s-org"]),
        ),
        // name: Organization.name | Organization.alias.
        (
            "Organization?name=burgers",
            Where(|o| starts(&[strs(o, "name"), strs(o, "alias")].concat(), "burgers")),
        ),
        (
            "Organization?name=abc",
            Where(|o| starts(&[strs(o, "name"), strs(o, "alias")].concat(), "abc")),
        ),
        ("Organization?name=ferrum cli", Ids(&["s-org"])),
        ("Organization?name=fcn", Ids(&["s-org"])),
        ("Organization?name:contains=nandu", Ids(&["s-org"])),
        (
            "Organization?name:exact=Ferrum Pediatría",
            Ids(&["s-org-child"]),
        ),
        ("Organization?name:exact=Ferrum Pediatria", Ids(&[])),
        (
            "Organization?name=burgers umc ear\\,nose\\,throat",
            Ids(&["f003"]),
        ),
        (
            "Organization?partof=Organization/f001",
            Where(|o| refs(o, "partOf").iter().any(|r| r == "Organization/f001")),
        ),
        ("Organization?partof=s-org", Ids(&["s-org-child"])),
        (
            "Organization?partof:missing=false",
            Where(|o| !refs(o, "partOf").is_empty()),
        ),
        ("Organization?partof.name=ferrum", Ids(&["s-org-child"])),
        (
            "Organization?partof.name=burgers",
            Where(|o| refs(o, "partOf").iter().any(|r| r == "Organization/f001")),
        ),
        (
            "Organization?phonetic=smyth",
            Where(|o| sounds_like(&strs(o, "name"), "smyth")),
        ),
        (
            "Organization?phonetic=helth",
            Where(|o| sounds_like(&strs(o, "name"), "helth")),
        ),
        (
            "Organization?type=prov",
            Where(|o| has_coding(o, "type", None, "prov")),
        ),
        (
            "Organization?type=http://terminology.hl7.org/CodeSystem/organization-type|dept",
            Where(|o| {
                has_coding(
                    o,
                    "type",
                    Some("http://terminology.hl7.org/CodeSystem/organization-type"),
                    "dept",
                )
            }),
        ),
        (
            "Organization?type:text=academic",
            Where(|o| starts(&concept_texts(o, "type"), "academic")),
        ),
        (
            "Organization?_profile=http://ferrum.test/StructureDefinition/org",
            Ids(&["s-org"]),
        ),
        (
            "Organization?_has:Account:owner:_has:Invoice:account:status=draft",
            Ids(&["s-org-child"]),
        ),
        (
            "Organization?_has:Patient:general-practitioner:gender=female",
            Ids(&["s-org"]),
        ),
        ("Organization?_lastUpdated=ge{cut}", Where(is_crafted)),
    ]
}

fn practitioner_cases() -> Vec<Case> {
    vec![
        ("Practitioner?active=true", Where(|p| p["active"] == true)),
        ("Practitioner?active=false", Ids(&["s-doc2"])),
        (
            "Practitioner?address=galapagos",
            Where(|p| starts(&address_parts(p, "address"), "galapagos")),
        ),
        ("Practitioner?address=cordoba", Ids(&["s-doc"])),
        (
            "Practitioner?address-city=den helder",
            Where(|p| starts(&strs(p, "address.city"), "den helder")),
        ),
        (
            "Practitioner?address-country=es",
            Where(|p| starts(&strs(p, "address.country"), "es")),
        ),
        (
            "Practitioner?address-postalcode=2333",
            Where(|p| starts(&strs(p, "address.postalCode"), "2333")),
        ),
        ("Practitioner?address-state=andalucia", Ids(&["s-doc"])),
        (
            "Practitioner?address-use=home",
            Where(|p| strs(p, "address.use").iter().any(|u| u == "home")),
        ),
        (
            "Practitioner?communication=nl",
            Where(|p| has_coding(p, "communication", None, "nl")),
        ),
        (
            "Practitioner?communication=urn:ietf:bcp:47|es",
            Ids(&["s-doc"]),
        ),
        (
            "Practitioner?communication:text=dut",
            Where(|p| starts(&concept_texts(p, "communication"), "dut")),
        ),
        ("Practitioner?communication:text=spanish", Ids(&["s-doc"])),
        (
            "Practitioner?email=p.voigt@bmc.nl",
            Where(|p| {
                contact_values(p, "telecom", Some("email"))
                    .iter()
                    .any(|v| v == "p.voigt@bmc.nl")
            }),
        ),
        (
            "Practitioner?email=inigo.nunez@ferrum.test",
            Ids(&["s-doc"]),
        ),
        (
            "Practitioner?family=van",
            Where(|p| starts(&strs(p, "name.family"), "van")),
        ),
        ("Practitioner?family=nunez", Ids(&["s-doc"])),
        (
            "Practitioner?gender=female",
            Where(|p| p["gender"] == "female"),
        ),
        (
            "Practitioner?gender:missing=true",
            Where(|p| p.get("gender").is_none()),
        ),
        ("Practitioner?given=inig", Ids(&["s-doc"])),
        (
            "Practitioner?given=pie",
            Where(|p| starts(&strs(p, "name.given"), "pie")),
        ),
        (
            "Practitioner?identifier=urn:oid:2.16.528.1.1007.3.1|118265112",
            Where(|p| has_identifier(p, Some("urn:oid:2.16.528.1.1007.3.1"), "118265112")),
        ),
        (
            "Practitioner?identifier:text=uzi",
            Where(|p| starts(&strs(p, "identifier.type.text"), "uzi")),
        ),
        (
            "Practitioner?name=dr",
            Where(|p| starts(&name_parts(p, "name"), "dr")),
        ),
        (
            "Practitioner?name=dokter",
            Where(|p| starts(&name_parts(p, "name"), "dokter")),
        ),
        (
            "Practitioner?phone=+31715269111",
            Where(|p| {
                contact_values(p, "telecom", Some("phone"))
                    .iter()
                    .any(|v| v == "+31715269111")
            }),
        ),
        ("Practitioner?phone=0205664440", Ids(&[])),
        (
            "Practitioner?phonetic=smit",
            Where(|p| sounds_like(&name_parts(p, "name"), "smit")),
        ),
        (
            "Practitioner?phonetic=nunes",
            Where(|p| sounds_like(&name_parts(p, "name"), "nunes")),
        ),
        // telecom: every ContactPoint, fax included.
        (
            "Practitioner?telecom=0205664440",
            Where(|p| {
                contact_values(p, "telecom", None)
                    .iter()
                    .any(|v| v == "0205664440")
            }),
        ),
        (
            "Practitioner?_has:Invoice:participant:status=issued",
            Ids(&["example", "s-doc"]),
        ),
        (
            "Practitioner?_has:Patient:general-practitioner:family=garcia",
            Ids(&["s-doc"]),
        ),
        (
            "Practitioner?_has:Patient:general-practitioner:family=muller",
            Ids(&["s-doc2"]),
        ),
    ]
}

fn group_cases() -> Vec<Case> {
    vec![
        ("Group?actual=false", Ids(&["s-grp-mixed"])),
        ("Group?actual=true", Where(|g| g["actual"] == true)),
        (
            "Group?characteristic=gender",
            Ids(&["s-grp-persons", "s-grp-mixed"]),
        ),
        (
            "Group?characteristic=urn:ferrum:test:char|smoker",
            Ids(&["s-grp-persons", "s-grp-mixed"]),
        ),
        // The examples' characteristic codes have text only: `:text` finds them.
        (
            "Group?characteristic:text=gender",
            Where(|g| starts(&concept_texts(g, "characteristic.code"), "gender")),
        ),
        // Composite: both parts from the same characteristic.
        (
            "Group?characteristic-value=gender$female",
            Ids(&["s-grp-persons"]),
        ),
        (
            "Group?characteristic-value=gender$mixed",
            Ids(&["s-grp-mixed"]),
        ),
        (
            "Group?characteristic-value=urn:ferrum:test:char|gender$urn:ferrum:test:gender|mixed",
            Ids(&["s-grp-mixed"]),
        ),
        ("Group?characteristic-value=gender$true", Ids(&[])),
        (
            "Group?characteristic-value=smoker$true",
            Ids(&["s-grp-persons"]),
        ),
        (
            "Group?characteristic-value=smoker$false,gender$female",
            Ids(&["s-grp-persons", "s-grp-mixed"]),
        ),
        ("Group?characteristic-value=age$female", Ids(&[])),
        (
            "Group?code=388393002",
            Where(|g| has_coding(g, "code", None, "388393002")),
        ),
        (
            "Group?code=urn:ferrum:test:group|cohort",
            Ids(&["s-grp-persons"]),
        ),
        (
            "Group?code:text=porc",
            Where(|g| starts(&concept_texts(g, "code"), "porc")),
        ),
        ("Group?exclude=true", Ids(&["s-grp-persons"])),
        (
            "Group?exclude=false",
            Where(|g| {
                search_support::at(g, "characteristic.exclude")
                    .iter()
                    .any(|e| **e == false)
            }),
        ),
        (
            "Group?identifier=12345",
            Where(|g| has_identifier(g, None, "12345")),
        ),
        (
            "Group?identifier=urn:ferrum:test:grp|GRP-1",
            Ids(&["s-grp-persons"]),
        ),
        (
            "Group?managing-entity=Organization/s-org",
            Ids(&["s-grp-persons"]),
        ),
        (
            "Group?managing-entity:Practitioner=s-doc",
            Ids(&["s-grp-mixed"]),
        ),
        (
            "Group?member=Patient/pat1",
            Where(|g| refs(g, "member.entity").iter().any(|r| r == "Patient/pat1")),
        ),
        ("Group?member=Practitioner/s-doc", Ids(&["s-grp-mixed"])),
        (
            "Group?member:missing=true",
            Where(|g| refs(g, "member.entity").is_empty()),
        ),
        (
            "Group?member:Patient.family=garcia",
            Ids(&["s-grp-persons"]),
        ),
        ("Group?type=animal", Where(|g| g["type"] == "animal")),
        (
            "Group?type=http://hl7.org/fhir/group-type|device",
            Ids(&["s-grp-empty"]),
        ),
        // value: (characteristic.value as CodeableConcept) | (... as boolean).
        ("Group?value=true", Ids(&["s-grp-persons"])),
        ("Group?value=false", Ids(&["s-grp-mixed"])),
        (
            "Group?value=http://hl7.org/fhir/administrative-gender|female",
            Ids(&["s-grp-persons"]),
        ),
        (
            "Group?value:text=mixed",
            Where(|g| {
                starts(
                    &concept_texts(g, "characteristic.valueCodeableConcept"),
                    "mixed",
                )
            }),
        ),
        (
            "Group?_has:Invoice:subject:status=cancelled",
            Ids(&["s-grp-persons"]),
        ),
        ("Group?_tag=urn:ferrum:test:tag|crafted", Where(is_crafted)),
    ]
}

fn all_cases() -> Vec<Case> {
    [
        patient_cases(),
        account_cases(),
        invoice_cases(),
        organization_cases(),
        practitioner_cases(),
        group_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Searches the server answers wrongly (each one reported as a server bug): run by an
/// ignored test until they are fixed, and counted by the coverage check.
///
/// A reference to another server (`http://other.example/fhir/Patient/s-zoe`) is not a
/// reference to this server's `Patient/s-zoe`: R4 resolves a relative search value against
/// this server's base, and docs/search.md says a local search value "matches local rows",
/// rows without `url`. The store compares type and id only, so external absolute references
/// match local ones, in plain searches, chains and `_has`.
fn known_bug_cases() -> Vec<Case> {
    vec![
        ("Patient?link=Patient/ext-1", Ids(&[])),
        ("Group?member=Patient/s-zoe", Ids(&["s-grp-persons"])),
        (
            "Group?member:Patient.family=muller",
            Ids(&["s-grp-persons"]),
        ),
        ("Patient?_has:Group:member:_id=s-grp-ext", Ids(&[])),
    ]
}

/// The server, with the official examples and the crafted resources stored, and what it
/// holds per type.
struct Loaded {
    server: TestServer,
    stored: BTreeMap<String, Vec<Value>>,
    /// An instant (to the second, UTC) after every example and before every crafted
    /// resource was stored.
    cut: String,
}

async fn load() -> Option<Loaded> {
    let dir = r4_examples_dir()?;
    let examples = load_examples(&dir, &RESOURCE_TYPES);
    // The examples refer to resources the package does not hold (`Patient/example` of
    // `Account-ewg.json`).
    let server = TestServer::start_with_env(&[("FHIR_REFERENTIAL_INTEGRITY", "false")]).await;
    let mut stored: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut last: Option<DateTime<Utc>> = None;
    for example in &examples {
        let resp = server.upsert(&example.resource).await;
        let updated =
            parse_instant(resp.json["meta"]["lastUpdated"].as_str().unwrap()).with_timezone(&Utc);
        last = last.max(Some(updated));
        stored
            .entry(example.resource_type.clone())
            .or_default()
            .push(example.resource.clone());
    }
    // Every crafted resource is written after `cut`, every example before it.
    let cut = last.unwrap().trunc_subsecs(0) + chrono::Duration::seconds(1);
    while Utc::now() < cut + chrono::Duration::milliseconds(300) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let crafted = parse(&CRAFTED.replace("{base}", &server.base));
    for resource in crafted.as_array().unwrap() {
        server.upsert(resource).await;
        stored
            .entry(resource["resourceType"].as_str().unwrap().to_owned())
            .or_default()
            .push(resource.clone());
    }
    Some(Loaded {
        server,
        stored,
        cut: cut.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
}

/// Runs the cases; returns a description of each one whose result differs.
async fn run_cases(loaded: &Loaded, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for (query, expect) in cases {
        let rtype = query.split('?').next().unwrap();
        let query = query.replace("{cut}", &loaded.cut);
        let expected: BTreeSet<String> = match expect {
            Ids(ids) => ids.iter().map(|id| format!("{rtype}/{id}")).collect(),
            Where(oracle) => {
                let found: BTreeSet<String> = loaded.stored[rtype]
                    .iter()
                    .filter(|r| oracle(r))
                    .map(|r| format!("{rtype}/{}", r["id"].as_str().unwrap()))
                    .collect();
                assert!(
                    !found.is_empty(),
                    "the oracle of {query} selects nothing: write Ids(&[]) for an empty result"
                );
                found
            }
        };
        let path = search_path(&query, &loaded.server.base);
        match search_all(&loaded.server, &path).await {
            Err(e) => failures.push(format!("{query}\n      {e}")),
            Ok(result) => {
                let dups = duplicates(&result.matches);
                let actual: BTreeSet<String> = result.matches.iter().cloned().collect();
                if actual != expected || !dups.is_empty() {
                    let missing: Vec<_> = expected.difference(&actual).collect();
                    let extra: Vec<_> = actual.difference(&expected).collect();
                    failures.push(format!(
                        "{query}\n      missing {missing:?}, unexpected {extra:?}, duplicated {dups:?}"
                    ));
                }
            }
        }
    }
    failures
}

#[tokio::test]
async fn every_parameter_finds_what_the_oracle_expects() {
    let Some(loaded) = load().await else {
        return;
    };
    let cases = all_cases();
    let failures = run_cases(&loaded, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} searches differ from the expected result:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
    eprintln!("{} searches matched their expected results", cases.len());
}

#[tokio::test]
async fn local_reference_values_do_not_match_other_servers() {
    let Some(loaded) = load().await else {
        return;
    };
    let cases = known_bug_cases();
    let failures = run_cases(&loaded, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} searches differ from the expected result:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

/// The parameter names of a query, without modifiers and chains (`subject:Patient.name`
/// is `subject`), with the type searched.
fn parameter_names(query: &str) -> (String, Vec<String>) {
    let (rtype, params) = query.split_once('?').unwrap_or((query, ""));
    let names = params
        .split('&')
        .filter_map(|pair| pair.split('=').next())
        .map(|name| name.split([':', '.']).next().unwrap_or(name).to_owned())
        .collect();
    (rtype.to_owned(), names)
}

#[test]
fn the_cases_cover_every_parameter_of_the_reference_list() {
    let mut covered: BTreeSet<(String, String)> = BTreeSet::new();
    for (query, _) in all_cases().iter().chain(known_bug_cases().iter()) {
        let (rtype, names) = parameter_names(query);
        for name in names {
            covered.insert((rtype.clone(), name.clone()));
            covered.insert(("*".to_owned(), name));
        }
    }
    let mut uncovered = Vec::new();
    for (rtype, codes) in REFERENCE_LIST {
        for code in *codes {
            if !covered.contains(&((*rtype).to_owned(), (*code).to_owned())) {
                uncovered.push(format!("{rtype}:{code}"));
            }
        }
    }
    assert!(
        uncovered.is_empty(),
        "parameters no case searches by: {uncovered:?}"
    );
    let total: usize = REFERENCE_LIST.iter().map(|(_, codes)| codes.len()).sum();
    eprintln!("{total} parameters covered by {} cases", all_cases().len());
}

/// Searches the parser refuses: 400 with an OperationOutcome naming the parameter.
#[tokio::test]
async fn invalid_searches_are_refused_naming_the_parameter() {
    let server = TestServer::start().await;
    let cases: &[(&str, &str)] = &[
        // `Account.subject` may be an Organization, which has no `family`: ambiguous.
        ("Invoice?account.subject.family=x", "account.subject.family"),
        // Invoice.subject is a Group or a Patient; Group has no `name`.
        ("Invoice?subject.name=peter", "subject.name"),
        (
            "Invoice?subject:Organization.name=x",
            "subject:Organization.name",
        ),
        ("Invoice?account.status.x=1", "account.status.x"),
        (
            "Patient?_has:Invoice:subject=issued",
            "_has:Invoice:subject",
        ),
        (
            "Patient?_has:Invoice:issuer:status=issued",
            "_has:Invoice:issuer:status",
        ),
        (
            "Patient?general-practitioner:Patient=x",
            "general-practitioner:Patient",
        ),
        ("Patient?birthdate=zz2020", "birthdate"),
        ("Patient?birthdate=2020-13-01", "birthdate"),
        ("Patient?birthdate=1974,,1975", "birthdate"),
        ("Invoice?totalnet=abc", "totalnet"),
        ("Invoice?totalgross=10|a", "totalgross"),
        ("Group?characteristic-value=gender", "characteristic-value"),
        ("Patient?identifier:of-type=MR|x", "identifier:of-type"),
        ("Patient?active:missing=perhaps", "active:missing"),
    ];
    let mut failures = Vec::new();
    for (query, param) in cases {
        let resp = server.get(&search_path(query, &server.base)).await;
        let problems = ferrum_tests::outcome_problems(&resp, 400);
        let diagnostics = resp.json["issue"][0]["diagnostics"].as_str().unwrap_or("");
        if !problems.is_empty() || !diagnostics.contains(&format!("`{param}`")) {
            failures.push(format!("{query}: {problems:?} {}", resp.describe()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The same through the form of a POST.
    let resp = server
        .send(
            server
                .request(Method::POST, "Invoice/_search")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("account.subject.family=x"),
        )
        .await;
    let issue = assert_outcome(&resp, 400);
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap_or("")
            .contains("account.subject.family"),
        "{}",
        resp.describe()
    );
}
