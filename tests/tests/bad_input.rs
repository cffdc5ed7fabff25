//! Malformed and unacceptable requests: one table, one server. Every row must
//! be refused with its 4xx status and an OperationOutcome, and none of them may
//! write anything.

#![allow(clippy::unwrap_used, reason = "tests")]

use ferrum_tests::{
    FHIR_JSON, MAX_BODY_BYTES, RESOURCE_TYPES, TestServer, entries, json, json_diff,
    outcome_problems, without_server_meta,
};
use reqwest::Method;

/// Syntax errors: the body is not JSON at all.
const SYNTAX: &[&str] = &["structure"];
/// JSON of the wrong shape: unknown properties, wrong JSON types, nulls,
/// empty objects or arrays, cardinality.
const SHAPE: &[&str] = &["structure", "invalid", "value"];
/// A primitive whose lexical value is wrong (dates, empty strings, ...).
const VALUE: &[&str] = &["value", "invalid", "structure"];
/// A code outside its required binding.
const CODE: &[&str] = &["code-invalid", "value", "invalid"];
/// A required element is missing.
const REQUIRED: &[&str] = &["required", "invalid"];
/// The id or the resource type does not fit the request.
const MISMATCH: &[&str] = &[
    "invalid",
    "value",
    "structure",
    "processing",
    "business-rule",
];
/// Either missing or not fitting the request.
const MISSING_OR_MISMATCH: &[&str] = &[
    "required",
    "invalid",
    "value",
    "structure",
    "processing",
    "business-rule",
];
/// An id in the URL that no resource can have.
const BAD_ID_IN_URL: &[&str] = &["not-found", "invalid", "value", "processing"];
/// Unsupported media type or format.
const MEDIA: &[&str] = &["not-supported", "invalid", "processing"];
/// Request body too large.
const TOO_BIG: &[&str] = &["too-long", "too-costly", "invalid", "processing"];
/// Version conflict.
const CONFLICT: &[&str] = &["conflict", "processing", "business-rule", "invalid"];
/// Nothing there.
const NOT_FOUND: &[&str] = &["not-found", "not-supported", "processing", "invalid"];
/// A malformed search/history parameter.
const PARAM: &[&str] = &[
    "invalid",
    "value",
    "processing",
    "structure",
    "not-supported",
];
/// Method not allowed.
const METHOD: &[&str] = &["not-supported", "processing"];

#[derive(Debug)]
struct Case {
    name: String,
    method: Method,
    path: String,
    accept: String,
    content_type: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    statuses: &'static [u16],
    codes: &'static [&'static str],
    /// Accepted values of `issue[0].expression[0]` (empty: not checked).
    expressions: Vec<&'static str>,
}

fn case(name: &str, method: Method, path: &str) -> Case {
    Case {
        name: name.to_owned(),
        method,
        path: path.to_owned(),
        accept: FHIR_JSON.to_owned(),
        content_type: None,
        headers: Vec::new(),
        body: None,
        statuses: &[400],
        codes: SHAPE,
        expressions: Vec::new(),
    }
}

impl Case {
    /// A FHIR JSON body.
    fn json(mut self, text: &str) -> Self {
        self.body = Some(text.as_bytes().to_vec());
        self.content_type = Some(FHIR_JSON.to_owned());
        self
    }

    /// A body as raw bytes, with the FHIR JSON content type.
    fn bytes(mut self, bytes: Vec<u8>) -> Self {
        self.body = Some(bytes);
        self.content_type = Some(FHIR_JSON.to_owned());
        self
    }

    fn content_type(mut self, value: Option<&str>) -> Self {
        self.content_type = value.map(str::to_owned);
        self
    }

    fn accept(mut self, value: &str) -> Self {
        self.accept = value.to_owned();
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn expect(mut self, status: &'static [u16], codes: &'static [&'static str]) -> Self {
        self.statuses = status;
        self.codes = codes;
        self
    }

    fn expr(mut self, expression: &'static str) -> Self {
        self.expressions = vec![expression];
        self
    }

    /// Several spellings of the same element are acceptable.
    fn expr_any(mut self, expressions: &[&'static str]) -> Self {
        self.expressions = expressions.to_vec();
        self
    }
}

/// A Patient with the given extra properties.
fn patient(extra: &str) -> String {
    if extra.is_empty() {
        r#"{"resourceType": "Patient", "active": true}"#.to_owned()
    } else {
        format!(r#"{{"resourceType": "Patient", {extra}}}"#)
    }
}

/// A Patient with an id and the given extra properties.
fn patient_with_id(id: &str, extra: &str) -> String {
    format!(r#"{{"resourceType": "Patient", "id": "{id}", "active": true{extra}}}"#)
}

const EXISTING: &str = "bad-input-existing";

/// A choice element may be named in FHIRPath (`multipleBirth.ofType(integer)`)
/// or by its JSON property name.
const MULTIPLE_BIRTH: &[&str] = &[
    "Patient.multipleBirth.ofType(integer)",
    "Patient.multipleBirthInteger",
];
const DECEASED: &[&str] = &[
    "Patient.deceased.ofType(dateTime)",
    "Patient.deceasedDateTime",
];
/// FHIRPath is evaluated on the resource, so `id` and `Patient.id` are the same.
const PATIENT_ID: &[&str] = &["Patient.id", "id"];

fn table() -> Vec<Case> {
    use Method as M;
    let huge_name = "A".repeat(MAX_BODY_BYTES + 1024);
    let huge = patient(&format!(r#""name": [{{"family": "{huge_name}"}}]"#));
    let huge_put = patient_with_id(
        "bad-input-huge",
        &format!(r#", "name": [{{"family": "{huge_name}"}}]"#),
    );
    let long_id = "a".repeat(65);
    let mut invalid_utf8 = br#"{"resourceType": "Patient", "name": [{"family": ""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    invalid_utf8.extend_from_slice(br#""}]}"#);

    vec![
        // --- syntax -----------------------------------------------------------
        case("truncated JSON", M::POST, "Patient")
            .json(r#"{"resourceType": "Patient", "active": tru"#)
            .expect(&[400], SYNTAX),
        case("trailing garbage", M::POST, "Patient")
            .json(r#"{"resourceType": "Patient"} x"#)
            .expect(&[400], SYNTAX),
        case("single-quoted JSON", M::POST, "Patient")
            .json(r"{'resourceType': 'Patient'}")
            .expect(&[400], SYNTAX),
        case("invalid UTF-8", M::POST, "Patient")
            .bytes(invalid_utf8)
            .expect(&[400], SYNTAX),
        case("empty body", M::POST, "Patient")
            .json("")
            .expect(&[400], &["structure", "invalid", "required"]),
        case("top-level array", M::POST, "Patient").json(r#"[{"resourceType": "Patient"}]"#),
        case("top-level string", M::POST, "Patient").json(r#""Patient""#),
        case("no resourceType", M::POST, "Patient")
            .json(r#"{"active": true}"#)
            .expect(&[400], &["structure", "invalid", "required"]),
        case("resourceType not a string", M::POST, "Patient")
            .json(r#"{"resourceType": 42}"#)
            .expect(&[400], MISSING_OR_MISMATCH),
        case("resourceType differs from the URL (POST)", M::POST, "Patient")
            .json(r#"{"resourceType": "Account", "status": "active"}"#)
            .expect(&[400], MISMATCH),
        case("unknown resourceType in the body", M::POST, "Patient")
            .json(r#"{"resourceType": "Spaceship"}"#)
            .expect(&[400], MISMATCH),
        case("number with a leading zero", M::POST, "Patient")
            .json(&patient(r#""multipleBirthInteger": 01"#))
            .expect(&[400], SYNTAX),
        case("nesting 100000 deep", M::POST, "Patient")
            .json(&patient(&format!(
                r#""active": true, "foo": {}{}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            )))
            .expect(&[400], SHAPE),
        // --- elements ---------------------------------------------------------
        case("unknown element", M::POST, "Patient")
            .json(&patient(r#""active": true, "foo": 1"#))
            .expr("Patient.foo"),
        case("unknown nested element", M::POST, "Patient")
            .json(&patient(r#""name": [{"famly": "Smith"}]"#))
            .expr("Patient.name[0].famly"),
        case("an element given twice", M::POST, "Patient")
            .json(&patient(r#""active": true, "active": false"#))
            .expr("Patient.active"),
        case("an element given twice, nested", M::PUT, "Patient/bad-input-twice")
            .json(&patient_with_id(
                "bad-input-twice",
                r#", "name": [{"family": "Smith", "family": "Jones"}]"#,
            ))
            .expr("Patient.name[0].family"),
        case("string for boolean", M::POST, "Patient")
            .json(&patient(r#""active": "yes""#))
            .expr("Patient.active"),
        case("number for date", M::POST, "Patient")
            .json(&patient(r#""birthDate": 19800101"#))
            .expr("Patient.birthDate"),
        case("object for string", M::POST, "Patient")
            .json(&patient(r#""name": [{"family": {"value": "Smith"}}]"#))
            .expr("Patient.name[0].family"),
        case("string where an array is expected", M::POST, "Patient")
            .json(&patient(r#""name": [{"given": "Ann"}]"#))
            .expr("Patient.name[0].given"),
        case("object where an array is expected", M::POST, "Patient")
            .json(&patient(r#""name": {"family": "Smith"}"#))
            .expr("Patient.name"),
        case("array where a single value is expected", M::POST, "Patient")
            .json(&patient(r#""gender": ["male"]"#))
            .expr("Patient.gender"),
        case("array for a single boolean", M::POST, "Practitioner")
            .json(r#"{"resourceType": "Practitioner", "active": [true]}"#)
            .expr("Practitioner.active"),
        case("null value", M::POST, "Patient")
            .json(&patient(r#""active": null"#))
            .expr("Patient.active"),
        case("empty object", M::POST, "Patient")
            .json(&patient(r#""active": true, "maritalStatus": {}"#))
            .expr("Patient.maritalStatus"),
        case("empty array", M::POST, "Patient")
            .json(&patient(r#""active": true, "name": []"#))
            .expr("Patient.name"),
        case("null inside a primitive array without extensions", M::POST, "Patient")
            .json(&patient(r#""name": [{"given": ["Ann", null]}]"#)),
        case("empty string", M::POST, "Patient")
            .json(&patient(r#""name": [{"family": ""}]"#))
            .expect(&[400], VALUE)
            .expr("Patient.name[0].family"),
        case("fractional integer", M::POST, "Patient")
            .json(&patient(r#""multipleBirthInteger": 1.5"#))
            .expr_any(MULTIPLE_BIRTH),
        case("integer as a string", M::POST, "Patient")
            .json(&patient(r#""multipleBirthInteger": "2""#))
            .expr_any(MULTIPLE_BIRTH),
        case("integer beyond 32 bits", M::POST, "Patient")
            .json(&patient(r#""multipleBirthInteger": 2147483648"#))
            .expect(&[400], VALUE)
            .expr_any(MULTIPLE_BIRTH),
        case("contained resource without resourceType", M::POST, "Patient")
            .json(&patient(r#""contained": [{"id": "c1", "active": true}]"#))
            .expect(&[400], &["structure", "invalid", "required"]),
        case("decimal as a string", M::POST, "Invoice")
            .json(r#"{"resourceType": "Invoice", "status": "draft", "totalGross": {"value": "1.50", "currency": "EUR"}}"#)
            .expr("Invoice.totalGross.value"),
        case("two values of one choice element", M::POST, "Patient")
            .json(&patient(r#""deceasedBoolean": true, "deceasedDateTime": "2020-01-01""#)),
        case("impossible date", M::POST, "Patient")
            .json(&patient(r#""birthDate": "1980-13-45""#))
            .expect(&[400], VALUE)
            .expr("Patient.birthDate"),
        case("February 30th", M::POST, "Patient")
            .json(&patient(r#""birthDate": "2021-02-30""#))
            .expect(&[400], VALUE)
            .expr("Patient.birthDate"),
        case("date with a time", M::POST, "Patient")
            .json(&patient(r#""birthDate": "1980-01-01T10:00:00Z""#))
            .expect(&[400], VALUE)
            .expr("Patient.birthDate"),
        case("impossible dateTime", M::POST, "Patient")
            .json(&patient(r#""deceasedDateTime": "2020-01-01T25:00:00Z""#))
            .expect(&[400], VALUE)
            .expr_any(DECEASED),
        case("dateTime with a time but no zone", M::POST, "Patient")
            .json(&patient(r#""deceasedDateTime": "2020-01-01T10:00:00""#))
            .expect(&[400], VALUE)
            .expr_any(DECEASED),
        case("code outside the required binding", M::POST, "Patient")
            .json(&patient(r#""gender": "robot""#))
            .expect(&[400], CODE)
            .expr("Patient.gender"),
        case("code in the wrong case", M::POST, "Patient")
            .json(&patient(r#""gender": "MALE""#))
            .expect(&[400], CODE)
            .expr("Patient.gender"),
        case("code with a leading blank", M::POST, "Patient")
            .json(&patient(r#""gender": " male""#))
            .expect(&[400], CODE)
            .expr("Patient.gender"),
        case("Account.status outside its binding", M::POST, "Account")
            .json(r#"{"resourceType": "Account", "status": "bogus"}"#)
            .expect(&[400], CODE)
            .expr("Account.status"),
        case("Invoice.status outside its binding", M::POST, "Invoice")
            .json(r#"{"resourceType": "Invoice", "status": "paid"}"#)
            .expect(&[400], CODE)
            .expr("Invoice.status"),
        case("Group.type outside its binding", M::POST, "Group")
            .json(r#"{"resourceType": "Group", "type": "alien", "actual": true}"#)
            .expect(&[400], CODE)
            .expr("Group.type"),
        case("ContactPoint.system outside its binding", M::POST, "Organization")
            .json(r#"{"resourceType": "Organization", "telecom": [{"system": "telex", "value": "1"}]}"#)
            .expect(&[400], CODE)
            .expr("Organization.telecom[0].system"),
        case("Account without status", M::POST, "Account")
            .json(r#"{"resourceType": "Account", "name": "No status"}"#)
            .expect(&[400], REQUIRED)
            .expr("Account.status"),
        case("Invoice without status", M::POST, "Invoice")
            .json(r#"{"resourceType": "Invoice", "totalGross": {"value": 1, "currency": "EUR"}}"#)
            .expect(&[400], REQUIRED)
            .expr("Invoice.status"),
        case("Group without actual", M::POST, "Group")
            .json(r#"{"resourceType": "Group", "type": "person"}"#)
            .expect(&[400], REQUIRED)
            .expr("Group.actual"),
        case("extension without url", M::POST, "Patient")
            .json(&patient(r#""extension": [{"valueString": "x"}]"#))
            .expect(&[400], REQUIRED)
            .expr("Patient.extension[0].url"),
        // --- ids and types in updates -----------------------------------------
        case("body id differs from the URL id", M::PUT, "Patient/bad-input-a")
            .json(&patient_with_id("bad-input-b", ""))
            .expect(&[400], MISMATCH)
            .expr_any(PATIENT_ID),
        case("update without a body id", M::PUT, "Patient/bad-input-c")
            .json(&patient(r#""active": true"#))
            .expect(&[400], MISSING_OR_MISMATCH)
            .expr_any(PATIENT_ID),
        case("body id not a string", M::PUT, "Patient/123")
            .json(r#"{"resourceType": "Patient", "id": 123}"#)
            .expect(&[400], MISMATCH)
            .expr_any(PATIENT_ID),
        case("invalid id characters", M::PUT, "Patient/bad_input")
            .json(&patient_with_id("bad_input", ""))
            .expect(&[400], MISMATCH),
        case("id longer than 64", M::PUT, &format!("Patient/{long_id}"))
            .json(&patient_with_id(&long_id, ""))
            .expect(&[400], MISMATCH),
        case("resourceType differs from the URL (PUT)", M::PUT, "Patient/bad-input-d")
            .json(r#"{"resourceType": "Account", "id": "bad-input-d", "status": "active"}"#)
            .expect(&[400], MISMATCH),
        case("Patient body at an Account URL", M::PUT, "Account/bad-input-e")
            .json(&patient_with_id("bad-input-e", ""))
            .expect(&[400], MISMATCH),
        case("read with an invalid id", M::GET, "Patient/bad_input")
            .expect(&[400, 404], BAD_ID_IN_URL),
        // --- media types --------------------------------------------------------
        case("Content-Type text/plain", M::POST, "Patient")
            .json(&patient(""))
            .content_type(Some("text/plain"))
            .expect(&[415], MEDIA),
        case("no Content-Type", M::POST, "Patient")
            .json(&patient(""))
            .content_type(None)
            .expect(&[415], MEDIA),
        case("form Content-Type", M::POST, "Patient")
            .json(&patient(""))
            .content_type(Some("application/x-www-form-urlencoded"))
            .expect(&[415], MEDIA),
        case("Content-Type text/csv on update", M::PUT, "Patient/bad-input-f")
            .json(&patient_with_id("bad-input-f", ""))
            .content_type(Some("text/csv"))
            .expect(&[415], MEDIA),
        case("malformed XML", M::POST, "Patient")
            .json(r#"<Patient xmlns="http://hl7.org/fhir"><active value="true"/>"#)
            .content_type(Some("application/fhir+xml"))
            .expect(&[400], &["structure", "invalid"]),
        case("XML with an unknown element", M::POST, "Patient")
            .json(r#"<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>"#)
            .content_type(Some("application/fhir+xml"))
            .expr("Patient.foo"),
        case("XML outside the FHIR namespace", M::POST, "Patient")
            .json(r#"<Patient><active value="true"/></Patient>"#)
            .content_type(Some("application/fhir+xml"))
            .expect(&[400], &["structure", "invalid"]),
        case("XML of another type", M::POST, "Patient")
            .json(r#"<Account xmlns="http://hl7.org/fhir"><status value="active"/></Account>"#)
            .content_type(Some("application/fhir+xml"))
            .expect(&[400], MISMATCH),
        case("JSON sent as application/xml", M::POST, "Patient")
            .json(&patient(""))
            .content_type(Some("application/xml"))
            .expect(&[400], &["structure", "invalid"]),
        case("XML sent as application/json", M::POST, "Patient")
            .json(r#"<Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>"#)
            .content_type(Some("application/json"))
            .expect(&[400], SYNTAX),
        case("Accept text/plain", M::GET, &format!("Patient/{EXISTING}"))
            .accept("text/plain")
            .expect(&[406], MEDIA),
        case("Accept image/png", M::GET, &format!("Patient/{EXISTING}"))
            .accept("image/png")
            .expect(&[406], MEDIA),
        case("Accept text/plain on create", M::POST, "Patient")
            .json(&patient(""))
            .accept("text/plain")
            .expect(&[406], MEDIA),
        case("_format=ttl", M::GET, &format!("Patient/{EXISTING}?_format=ttl"))
            .expect(&[406], MEDIA),
        // --- size -----------------------------------------------------------------
        case("oversized create", M::POST, "Patient")
            .json(&huge)
            .expect(&[413], TOO_BIG),
        case("oversized update", M::PUT, "Patient/bad-input-huge")
            .json(&huge_put)
            .expect(&[413], TOO_BIG),
        // --- versions ---------------------------------------------------------------
        case("stale If-Match", M::PUT, &format!("Patient/{EXISTING}"))
            .json(&patient_with_id(EXISTING, r#", "gender": "other""#))
            .header("if-match", "W/\"7\"")
            .expect(&[412], CONFLICT),
        case("If-Match version 0", M::PUT, &format!("Patient/{EXISTING}"))
            .json(&patient_with_id(EXISTING, r#", "gender": "other""#))
            .header("if-match", "W/\"0\"")
            .expect(&[412], CONFLICT),
        case("If-Match on a resource that does not exist", M::PUT, "Patient/bad-input-g")
            .json(&patient_with_id("bad-input-g", ""))
            .header("if-match", "W/\"1\"")
            .expect(&[412], CONFLICT),
        case("unknown version", M::GET, &format!("Patient/{EXISTING}/_history/5"))
            .expect(&[404], NOT_FOUND),
        case("non-numeric version", M::GET, &format!("Patient/{EXISTING}/_history/abc"))
            .expect(&[400, 404], NOT_FOUND),
        case("version of an unknown resource", M::GET, "Patient/bad-input-h/_history/1")
            .expect(&[404], NOT_FOUND),
        // --- history parameters -----------------------------------------------------
        case("_count not a number", M::GET, "Patient/_history?_count=abc")
            .expect(&[400], PARAM),
        case("_count negative", M::GET, "Patient/_history?_count=-1")
            .expect(&[400], PARAM),
        case("_count fractional", M::GET, "_history?_count=1.5")
            .expect(&[400], PARAM),
        case("_count on instance history", M::GET, &format!("Patient/{EXISTING}/_history?_count=x"))
            .expect(&[400], PARAM),
        case("_since not a date", M::GET, "Patient/_history?_since=yesterday")
            .expect(&[400], PARAM),
        case("_since impossible month", M::GET, "_history?_since=2020-13-01T00:00:00Z")
            .expect(&[400], PARAM),
        case("_since on instance history", M::GET, &format!("Patient/{EXISTING}/_history?_since=01/02/2020"))
            .expect(&[400], PARAM),
        // --- types and methods --------------------------------------------------------
        case("read of an unknown type", M::GET, "Foo/1").expect(&[404], NOT_FOUND),
        case("create of an unknown type", M::POST, "Foo")
            .json(r#"{"resourceType": "Foo"}"#)
            .expect(&[404], NOT_FOUND),
        case("update of an unknown type", M::PUT, "Foo/1")
            .json(r#"{"resourceType": "Foo", "id": "1"}"#)
            .expect(&[404], NOT_FOUND),
        case("delete of an unknown type", M::DELETE, "Foo/1").expect(&[404], NOT_FOUND),
        case("history of an unknown type", M::GET, "Foo/_history").expect(&[404], NOT_FOUND),
        case("unsupported FHIR type", M::GET, "Observation/1").expect(&[404], NOT_FOUND),
        case("type in lower case", M::GET, "patient/1").expect(&[404], NOT_FOUND),
        case("PATCH that cannot apply", M::PATCH, &format!("Patient/{EXISTING}"))
            .json(
                r#"[{"op": "replace", "path": "/active", "value": false},
                    {"op": "test", "path": "/id", "value": "someone-else"}]"#,
            )
            .content_type(Some("application/json-patch+json"))
            .expect(&[422], &["processing"]),
        case("PATCH that is not a JSON Patch", M::PATCH, &format!("Patient/{EXISTING}"))
            .json(r#"{"op": "replace"}"#)
            .content_type(Some("application/json-patch+json")),
        case("PATCH with a resource, not a Parameters", M::PATCH, &format!("Patient/{EXISTING}"))
            .json(r#"{"resourceType": "Patient", "active": false}"#),
        case("FHIRPath Patch that cannot apply", M::PATCH, &format!("Patient/{EXISTING}"))
            .json(
                r#"{"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.contact[0].gender"},
                    {"name": "value", "valueCode": "other"}]}]}"#,
            )
            .expect(&[422], &["processing"]),
        case("PATCH of another media type", M::PATCH, &format!("Patient/{EXISTING}"))
            .json(r#"[]"#)
            .content_type(Some("text/plain"))
            .expect(&[415], MEDIA),
        case("POST to an instance", M::POST, &format!("Patient/{EXISTING}"))
            .json(&patient_with_id(EXISTING, ""))
            .expect(&[405], METHOD),
    ]
}

#[tokio::test]
async fn malformed_requests_are_refused_and_write_nothing() {
    let server = TestServer::start().await;
    // The one resource written on purpose, for the version and If-Match rows.
    let existing = server
        .put(
            &format!("Patient/{EXISTING}"),
            &json!({"resourceType": "Patient", "id": EXISTING, "active": true}),
        )
        .await;
    assert_eq!(existing.status, 201, "{}", existing.describe());

    let cases = table();
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for case in &cases {
        let mut req = server
            .client
            .request(case.method.clone(), server.url(&case.path))
            .header("accept", &case.accept);
        if let Some(content_type) = &case.content_type {
            req = req.header("content-type", content_type);
        }
        for (name, value) in &case.headers {
            req = req.header(*name, value);
        }
        if let Some(body) = &case.body {
            req = req.body(body.clone());
        }
        let label = format!("{} ({} {})", case.name, case.method, case.path);
        let label = if label.len() > 160 {
            format!("{}... ({})", &label[..120], case.name)
        } else {
            label
        };
        let resp = match server.try_send(req).await {
            Ok(resp) => resp,
            Err(e) => {
                failures.push(format!("{label}: transport error {e}"));
                continue;
            }
        };
        let expected_status = if case.statuses.contains(&resp.status) {
            resp.status
        } else {
            case.statuses[0]
        };
        let mut problems = outcome_problems(&resp, expected_status);
        if problems.is_empty() {
            let issue = &resp.json["issue"][0];
            let code = issue["code"].as_str().unwrap_or("");
            if !case.codes.contains(&code) {
                problems.push(format!(
                    "issue[0].code {code:?} is none of {:?}",
                    case.codes
                ));
            }
            let expression = issue["expression"][0].as_str().unwrap_or("");
            if !case.expressions.is_empty() && !case.expressions.contains(&expression) {
                problems.push(format!(
                    "issue[0].expression[0] is {} instead of {:?}",
                    issue["expression"][0], case.expressions
                ));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{label}: {}\n      {}",
                problems.join("; "),
                resp.describe()
            ));
        }
    }

    // Nothing was written but the one Patient.
    for rtype in RESOURCE_TYPES {
        let page = server.get(&format!("{rtype}/_history?_count=100")).await;
        assert_eq!(page.status, 200, "{}", page.describe());
        let found = entries(&page.json);
        let expected = usize::from(rtype == "Patient");
        if found.len() != expected {
            let ids: Vec<String> = found
                .iter()
                .map(|e| {
                    format!(
                        "{} v{} {}",
                        e["fullUrl"], e["response"]["etag"], e["request"]["method"]
                    )
                })
                .collect();
            failures.push(format!(
                "{rtype}/_history has {} entries instead of {expected}: {ids:?}",
                found.len()
            ));
        }
    }
    let existing = server.read_json("Patient", EXISTING).await;
    if existing["meta"]["versionId"] != "1" || existing.get("gender").is_some() {
        failures.push(format!("Patient/{EXISTING} was changed: {existing}"));
    }

    assert!(
        failures.is_empty(),
        "{} of {} rows (or checks) failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

/// The body limit holds when the client does not announce the length.
#[tokio::test]
async fn oversized_chunked_body_is_413_and_writes_nothing() {
    let server = TestServer::start().await;
    let family = "B".repeat(MAX_BODY_BYTES + 1024);
    let body = patient(&format!(r#""name": [{{"family": "{family}"}}]"#));
    let resp = server
        .raw(
            "POST",
            "Patient",
            &[
                ("Content-Type", FHIR_JSON),
                ("Accept", FHIR_JSON),
                ("Transfer-Encoding", "chunked"),
            ],
            body.as_bytes(),
        )
        .await;
    let problems = outcome_problems(&resp, 413);
    assert!(problems.is_empty(), "{problems:?}: {}", resp.describe());
    // Just under the limit is fine, chunked or not.
    let family = "C".repeat(MAX_BODY_BYTES - 4096);
    let body = patient(&format!(r#""name": [{{"family": "{family}"}}]"#));
    let resp = server
        .raw(
            "POST",
            "Patient",
            &[
                ("Content-Type", FHIR_JSON),
                ("Accept", FHIR_JSON),
                ("Transfer-Encoding", "chunked"),
            ],
            body.as_bytes(),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", &resp.describe()[..200]);
    let page = server.get("Patient/_history").await;
    assert_eq!(
        entries(&page.json).len(),
        1,
        "only the body within the limit"
    );
}

/// A rich, valid Patient to mutate.
const RICH_PATIENT: &str = r#"{
  "resourceType": "Patient",
  "identifier": [{"use": "usual", "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
  "active": true,
  "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
  "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1}],
  "gender": "male",
  "birthDate": "1974-12-25",
  "deceasedBoolean": false,
  "address": [{"use": "home", "line": ["534 Erewhon St"], "city": "PleasantVille",
               "postalCode": "3999", "period": {"start": "1974-12-25"}}],
  "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                "code": "M"}], "text": "Married"},
  "multipleBirthInteger": 2,
  "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                             "code": "N"}]}],
               "name": {"family": "du Marché"}, "gender": "female"}],
  "managingOrganization": {"reference": "Organization/1"}
}"#;

/// JSON pointers of every leaf (primitive value) in `value`.
fn leaves(value: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                leaves(child, &format!("{at}/{key}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                leaves(child, &format!("{at}/{index}"), out);
            }
        }
        _ => out.push(at.to_owned()),
    }
}

/// Every mutation of a valid resource is either stored exactly as sent or
/// refused with a 4xx OperationOutcome; none of them is a server error.
#[tokio::test]
async fn mutated_resources_are_stored_faithfully_or_refused() {
    let server = TestServer::start().await;
    let base: serde_json::Value = serde_json::from_str(RICH_PATIENT).unwrap();
    let mut paths = Vec::new();
    leaves(&base, "", &mut paths);
    let replacements = [
        json!(null),
        json!(""),
        json!([]),
        json!({}),
        json!(1.5),
        json!(true),
        json!("x"),
        json!({"value": "x"}),
        json!(["x"]),
    ];
    let mut bodies: Vec<String> = Vec::new();
    for path in &paths {
        for replacement in &replacements {
            let mut mutated = base.clone();
            *mutated.pointer_mut(path).unwrap() = replacement.clone();
            bodies.push(mutated.to_string());
        }
        // Without the element (or the array item) at all.
        let mut mutated = base.clone();
        let (parent, key) = path.rsplit_once('/').unwrap();
        let parent = mutated.pointer_mut(parent).unwrap();
        if let Some(map) = parent.as_object_mut() {
            map.remove(key);
        } else if let Some(items) = parent.as_array_mut() {
            items.remove(key.parse::<usize>().unwrap());
        }
        bodies.push(mutated.to_string());
    }
    // Text-level damage: cut short, or one byte replaced.
    let text = base.to_string();
    let mut seed: u64 = 0x5eed;
    let mut next = move |bound: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(seed >> 33).unwrap() % bound
    };
    for _ in 0..25 {
        let cut = next(text.len());
        if text.is_char_boundary(cut) {
            bodies.push(text[..cut].to_owned());
        }
    }
    let noise = [
        '"', '{', '}', '[', ']', ',', ':', '\\', '0', 'x', ' ', '\u{0}',
    ];
    for _ in 0..40 {
        let at = next(text.len());
        if !text.is_char_boundary(at) || !text.is_char_boundary(at + 1) {
            continue;
        }
        let mut damaged = text.clone();
        damaged.replace_range(at..=at, &noise[next(noise.len())].to_string());
        bodies.push(damaged);
    }

    let mut failures = Vec::new();
    let mut stored = 0;
    for body in &bodies {
        let resp = match server
            .try_send(
                server
                    .request(Method::POST, "Patient")
                    .header("content-type", FHIR_JSON)
                    .body(body.clone()),
            )
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                failures.push(format!("{body}\n      transport error {e}"));
                continue;
            }
        };
        if resp.status == 201 {
            stored += 1;
            let sent: serde_json::Value = match serde_json::from_str(body) {
                Ok(v) => v,
                Err(_) => {
                    failures.push(format!("{body}\n      accepted, but it is not JSON"));
                    continue;
                }
            };
            let mut expected = sent;
            expected["id"] = resp.json["id"].clone();
            let read = server
                .get(&format!("Patient/{}", resp.id().unwrap_or("")))
                .await;
            let diff = json_diff(&expected, &without_server_meta(&read.json));
            if !diff.is_empty() {
                failures.push(format!(
                    "{body}\n      stored differently: {}",
                    diff.join("; ")
                ));
            }
        } else {
            let problems = outcome_problems(&resp, 400);
            if !problems.is_empty() {
                failures.push(format!(
                    "{body}\n      {}: {}",
                    problems.join("; "),
                    resp.describe()
                ));
            }
        }
    }
    eprintln!(
        "{} mutations: {stored} stored, the rest refused",
        bodies.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} mutations went wrong:\n  {}",
        failures.len(),
        bodies.len(),
        failures.join("\n  ")
    );
}
