//! batch and transaction Bundles at `POST [base]` (http://hl7.org/fhir/R4/http.html#transaction,
//! docs/rest.md "Batch and transaction"), end to end against the `fhir-server` binary:
//!
//! - the official R4 examples in one transaction, with `urn:uuid:` fullUrls and references
//!   between them, read back with the references resolved to the assigned ids;
//! - all or nothing: a failing entry (an invalid resource, an `ifMatch` conflict, a
//!   conditional reference without a match) leaves no resource, history row, index row or
//!   outbox row behind;
//! - conditional references, `ifNoneExist`, conditional update and delete, PATCH entries;
//! - processing order (DELETE before POST, GET after the writes), the same resource twice,
//!   the entry limit, malformed Bundles, `Prefer: return=`;
//! - a batch: good entries apply, bad ones answer their own status and OperationOutcome;
//! - SMART scopes per entry, with real Keycloak tokens (skipped without `FHIR_AUTH_ISSUER`).

#![allow(clippy::unwrap_used, reason = "tests")]

mod smart_support;

use std::collections::HashMap;

use base64::Engine;
use ferrum_tests::{
    RESOURCE_TYPES, Resp, TestServer, assert_outcome, json, json_diff, load_examples,
    r4_examples_dir, unique, without_server_meta,
};
use serde_json::Value;
use smart_support::{Caller, keycloak};
use sqlx::{Connection, PgConnection, Row};

// --- helpers -------------------------------------------------------------------------

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn post(full_url: &str, resource: Value) -> Value {
    let rtype = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": rtype}})
}

fn put(url: &str, resource: Value) -> Value {
    json!({"resource": resource, "request": {"method": "PUT", "url": url}})
}

fn delete(url: &str) -> Value {
    json!({"request": {"method": "DELETE", "url": url}})
}

fn get(url: &str) -> Value {
    json!({"request": {"method": "GET", "url": url}})
}

fn urn() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "active": true, "name": [{"family": family}]})
}

/// `POST [base]` with a Bundle.
async fn send(server: &TestServer, body: &Value) -> Resp {
    server.post(&server.base, body).await
}

/// The `response.status` of each entry of a response Bundle.
#[track_caller]
fn statuses(resp: &Resp) -> Vec<String> {
    resp.json["entry"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries: {}", resp.describe()))
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// `Type/id` of a response entry's `location` (`Type/id/_history/v`).
fn located(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().unwrap();
    let parts: Vec<&str> = location.split('/').collect();
    assert_eq!(parts.len(), 4, "{location}");
    assert_eq!(parts[2], "_history", "{location}");
    format!("{}/{}", parts[0], parts[1])
}

/// Rows in the server's tables: current resources, history, outbox, and search lexemes.
async fn rows(server: &TestServer) -> [i64; 4] {
    let mut conn = PgConnection::connect(server.database_url()).await.unwrap();
    let row = sqlx::query(
        "select (select count(*) from resources), (select count(*) from resource_history),
                (select count(*) from outbox),
                (select count(*) from search_terms, unnest(tsvector_to_array(terms)))",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    [row.get(0), row.get(1), row.get(2), row.get(3)]
}

/// A failed transaction: `status`, an OperationOutcome whose issues name entry `n`.
#[track_caller]
fn assert_entry_failed(resp: &Resp, status: u16, n: usize) -> Value {
    let issue = assert_outcome(resp, status);
    let expression = issue["expression"][0].as_str().unwrap_or("");
    assert!(
        expression.starts_with(&format!("Bundle.entry[{n}]")),
        "expected an issue at Bundle.entry[{n}]: {}",
        resp.describe()
    );
    issue
}

// --- the R4 examples -----------------------------------------------------------------

/// Every `reference` of `value`, at any depth, passed through `f`.
fn map_references(value: &mut Value, f: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                if name == "reference"
                    && let Some(text) = member.as_str()
                {
                    if let Some(new) = f(text) {
                        *member = Value::String(new);
                    }
                } else {
                    map_references(member, f);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| map_references(i, f)),
        _ => {}
    }
}

#[tokio::test]
async fn the_r4_examples_in_one_transaction_refer_to_each_other() {
    let Some(dir) = r4_examples_dir() else { return };
    let examples = load_examples(&dir, &RESOURCE_TYPES);
    // Several examples share email addresses: the rule would refuse the second one. They
    // also refer to resources the package does not hold (`Practitioner/123`).
    let server = TestServer::start_with_env(&[
        ("FHIR_UNIQUE_PATIENT_EMAIL", "false"),
        ("FHIR_REFERENTIAL_INTEGRITY", "false"),
    ])
    .await;

    // Each example gets a urn:uuid fullUrl; references between them use it.
    let urns: HashMap<String, String> = examples
        .iter()
        .map(|e| {
            let id = e.resource["id"].as_str().unwrap();
            (format!("{}/{id}", e.resource_type), urn())
        })
        .collect();
    let mut entries = Vec::new();
    let mut linked = 0;
    for example in &examples {
        let mut resource = example.resource.clone();
        let own = format!(
            "{}/{}",
            example.resource_type,
            resource["id"].as_str().unwrap()
        );
        resource.as_object_mut().unwrap().remove("id");
        map_references(&mut resource, &|text| urns.get(text).cloned());
        linked += resource.to_string().matches("\"urn:uuid:").count();
        entries.push(post(&urns[&own], resource));
    }
    assert!(
        linked >= 10,
        "the examples refer to each other ({linked} references)"
    );
    let before = rows(&server).await;
    let resp = send(&server, &bundle("transaction", entries)).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.json["resourceType"], "Bundle");
    assert_eq!(resp.json["type"], "transaction-response");
    let answers = resp.json["entry"].as_array().unwrap();
    assert_eq!(answers.len(), examples.len());

    // The assigned ids, in the request's order.
    let mut assigned: HashMap<String, String> = HashMap::new();
    for (example, answer) in examples.iter().zip(answers) {
        assert_eq!(answer["response"]["status"], "201 Created", "{answer}");
        assert_eq!(answer["response"]["etag"], "W/\"1\"", "{answer}");
        assert!(answer["response"]["lastModified"].is_string(), "{answer}");
        assert!(answer.get("resource").is_none(), "no Prefer: no resource");
        let at = located(answer);
        assert!(
            at.starts_with(&format!("{}/", example.resource_type)),
            "{at}"
        );
        assert_eq!(
            answer["fullUrl"],
            format!("{}/{at}", server.base),
            "{answer}"
        );
        let own = format!(
            "{}/{}",
            example.resource_type,
            example.resource["id"].as_str().unwrap()
        );
        assigned.insert(own, at);
    }

    // Read back: as sent, with every reference to another example now its assigned id.
    let mut failures = Vec::new();
    for example in &examples {
        let own = format!(
            "{}/{}",
            example.resource_type,
            example.resource["id"].as_str().unwrap()
        );
        let at = &assigned[&own];
        let read = server.get(at).await;
        assert_eq!(read.status, 200, "GET {at}: {}", read.describe());
        let mut expected = example.resource.clone();
        expected["id"] = read.json["id"].clone();
        map_references(&mut expected, &|text| assigned.get(text).cloned());
        let diff = json_diff(
            &without_server_meta(&expected),
            &without_server_meta(&read.json),
        );
        if !diff.is_empty() {
            failures.push(format!("{} as {at}: {}", example.file, diff.join("; ")));
        }
        assert!(!read.text.contains("urn:uuid:"), "{at}: {}", read.text);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // One version, one history row and one event each.
    let after = rows(&server).await;
    let n = examples.len() as i64;
    assert_eq!(after[0] - before[0], n);
    assert_eq!(after[1] - before[1], n);
    assert_eq!(after[2] - before[2], n);

    // A search by the rewritten references finds them (the index holds the new ids).
    let (patient_example, _) = assigned
        .iter()
        .find(|(own, _)| own.as_str() == "Patient/example")
        .unwrap();
    let search = server
        .get(&format!("Account?subject={}", assigned[patient_example]))
        .await;
    assert_eq!(search.status, 200, "{}", search.describe());
    assert!(
        search.json["total"].as_u64().unwrap_or(0) >= 1,
        "Account-example's subject is Patient/example: {}",
        search.describe()
    );
    eprintln!("{} examples stored by one transaction", examples.len());
}

// --- all or nothing ------------------------------------------------------------------

#[tokio::test]
async fn a_failing_entry_leaves_nothing_behind() {
    let server = TestServer::start().await;
    let existing = server.create(&patient("Existing")).await;
    let existing_id = existing["id"].as_str().unwrap();
    let before = rows(&server).await;

    let org = urn();
    let good = |n: usize| -> Vec<Value> {
        let p = urn();
        vec![
            post(&p, patient(&format!("Good{n}"))),
            post(
                &urn(),
                json!({"resourceType": "Account", "status": "active",
                       "subject": [{"reference": p}], "owner": {"reference": org}}),
            ),
        ]
    };
    let mut entries = vec![post(
        &org,
        json!({"resourceType": "Organization", "name": "Clinic"}),
    )];
    entries.extend(good(1));
    entries.extend(good(2));
    // Entry 5: not a valid Patient (gender outside its required value set).
    entries.push(post(
        &urn(),
        json!({"resourceType": "Patient", "gender": "unknown-gender"}),
    ));
    entries.extend(good(3));
    let resp = send(&server, &bundle("transaction", entries.clone())).await;
    let issue = assert_entry_failed(&resp, 400, 5);
    assert!(
        issue["expression"][0]
            .as_str()
            .unwrap()
            .starts_with("Bundle.entry[5].resource"),
        "{}",
        resp.describe()
    );
    assert_eq!(rows(&server).await, before, "nothing written");

    // An ifMatch conflict on the last entry, after creates that already ran.
    entries.remove(5);
    let mut stale = patient("Changed");
    stale["id"] = json!(existing_id);
    let mut conflict = put(&format!("Patient/{existing_id}"), stale);
    conflict["request"]["ifMatch"] = json!("W/\"7\"");
    entries.push(conflict);
    let last = entries.len() - 1;
    let resp = send(&server, &bundle("transaction", entries.clone())).await;
    assert_entry_failed(&resp, 412, last);
    assert_eq!(rows(&server).await, before, "nothing written");
    assert_eq!(
        server.read_json("Patient", existing_id).await["meta"]["versionId"],
        "1"
    );

    // The same Bundle with the right version: everything is written, events included.
    entries[last]["request"]["ifMatch"] = json!("W/\"1\"");
    let resp = send(&server, &bundle("transaction", entries.clone())).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let mut expected = vec!["201 Created"; last];
    expected.push("200 OK");
    assert_eq!(statuses(&resp), expected);
    let after = rows(&server).await;
    let written = entries.len() as i64;
    assert_eq!(after[0] - before[0], written - 1, "one was an update");
    assert_eq!(after[1] - before[1], written);
    assert_eq!(after[2] - before[2], written, "one outbox row per write");
}

#[tokio::test]
async fn email_claims_hold_within_a_transaction_and_across_entries() {
    let server = TestServer::start().await;
    let with_email = |email: &str| json!({"resourceType": "Patient", "telecom": [{"system": "email", "value": email}]});
    let before = rows(&server).await;
    // Two new Patients with one address: the second entry fails the whole.
    let resp = send(
        &server,
        &bundle(
            "transaction",
            vec![
                post(&urn(), with_email("twin@example.org")),
                post(&urn(), with_email("Twin@Example.org ")),
            ],
        ),
    )
    .await;
    let issue = assert_entry_failed(&resp, 409, 1);
    assert_eq!(issue["code"], "duplicate");
    assert_eq!(rows(&server).await, before);

    // In a batch each entry stands alone: the first is written, the second refused.
    let resp = send(
        &server,
        &bundle(
            "batch",
            vec![
                post(&urn(), with_email("twin@example.org")),
                post(&urn(), with_email("twin@example.org")),
            ],
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(statuses(&resp), ["201 Created", "409 Conflict"]);
    assert_eq!(
        resp.json["entry"][1]["response"]["outcome"]["issue"][0]["code"],
        "duplicate"
    );
}

// --- order, overlaps, conditions -----------------------------------------------------

#[tokio::test]
async fn deletes_run_before_creates_and_reads_after_the_writes() {
    let server = TestServer::start().await;
    let email = format!("{}@example.org", unique("moved"));
    let old = server
        .create(&json!({"resourceType": "Patient",
                        "telecom": [{"system": "email", "value": email}]}))
        .await;
    let old_id = old["id"].as_str().unwrap();
    // In the Bundle's order the create comes first and would clash with the old Patient's
    // email; processed DELETE first, it does not. The GET sees the result.
    let resp = send(
        &server,
        &bundle(
            "transaction",
            vec![
                get(&format!("Patient?email={email}")),
                post(
                    &urn(),
                    json!({"resourceType": "Patient",
                           "telecom": [{"system": "email", "value": email}]}),
                ),
                delete(&format!("Patient/{old_id}")),
            ],
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(statuses(&resp), ["200 OK", "201 Created", "204 No Content"]);
    let new_id = located(&resp.json["entry"][1]);
    let searched = &resp.json["entry"][0]["resource"];
    assert_eq!(searched["type"], "searchset");
    assert_eq!(searched["total"], 1, "{searched}");
    assert_eq!(
        format!(
            "Patient/{}",
            searched["entry"][0]["resource"]["id"].as_str().unwrap()
        ),
        new_id
    );
    assert_eq!(resp.json["entry"][2]["response"]["etag"], "W/\"2\"");
    assert_eq!(server.get(&format!("Patient/{old_id}")).await.status, 410);
}

#[tokio::test]
async fn one_resource_twice_is_400() {
    let server = TestServer::start().await;
    let id = server.create(&patient("Twice")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("Patient/{id}");
    let mut body = patient("Again");
    body["id"] = json!(id);
    let before = rows(&server).await;
    for entries in [
        vec![put(&path, body.clone()), put(&path, body.clone())],
        vec![delete(&path), put(&path, body.clone())],
        vec![
            put(&path, body.clone()),
            json!({"resource": body.clone(),
                   "request": {"method": "PUT", "url": "Patient?family=Twice"}}),
        ],
    ] {
        let resp = send(&server, &bundle("transaction", entries)).await;
        assert_entry_failed(&resp, 400, 1);
    }
    // Two entries with one fullUrl.
    let same = urn();
    let resp = send(
        &server,
        &bundle(
            "transaction",
            vec![post(&same, patient("A")), post(&same, patient("B"))],
        ),
    )
    .await;
    assert_entry_failed(&resp, 400, 1);
    assert_eq!(rows(&server).await, before);
}

#[tokio::test]
async fn conditional_references_conditional_creates_and_conditional_writes() {
    let server = TestServer::start().await;
    let system = format!("http://example.org/{}", unique("mrn"));
    let with_mrn = |mrn: &str| json!({"resourceType": "Patient", "identifier": [{"system": system, "value": mrn}]});
    let p1 = server.create(&with_mrn("1")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.create(&with_mrn("2")).await;
    server.create(&with_mrn("2")).await;
    let account = |subject: &str| {
        json!({"resourceType": "Account", "status": "active",
               "subject": [{"reference": subject}]})
    };

    // A conditional reference with one match; a conditional create that matches.
    let mut again = post(&urn(), with_mrn("1"));
    again["request"]["ifNoneExist"] = json!(format!("identifier={system}|1"));
    let mut fresh = post(&urn(), with_mrn("3"));
    fresh["request"]["ifNoneExist"] = json!(format!("identifier={system}|3"));
    let resp = send(
        &server,
        &bundle(
            "transaction",
            vec![
                post(&urn(), account(&format!("Patient?identifier={system}|1"))),
                again,
                fresh,
            ],
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(statuses(&resp), ["201 Created", "200 OK", "201 Created"]);
    assert_eq!(
        resp.json["entry"][1]["fullUrl"],
        format!("{}/Patient/{p1}", server.base)
    );
    let account_at = located(&resp.json["entry"][0]);
    let stored = server.get(&account_at).await;
    assert_eq!(
        stored.json["subject"][0]["reference"],
        format!("Patient/{p1}")
    );

    // No match: 404; several: 412; nothing written either way.
    let before = rows(&server).await;
    for (mrn, status) in [("404", 404), ("2", 412)] {
        let resp = send(
            &server,
            &bundle(
                "transaction",
                vec![
                    post(&urn(), patient("Bystander")),
                    post(
                        &urn(),
                        account(&format!("Patient?identifier={system}|{mrn}")),
                    ),
                ],
            ),
        )
        .await;
        assert_entry_failed(&resp, status, 1);
    }
    assert_eq!(rows(&server).await, before);

    // Conditional update (one match), conditional delete, and a PATCH entry.
    let mut renamed = with_mrn("1");
    renamed["active"] = json!(false);
    let ops = json!([{"op": "replace", "path": "/status", "value": "inactive"}]);
    let patch_entry = json!({
        "resource": {
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": base64::engine::general_purpose::STANDARD.encode(ops.to_string()),
        },
        "request": {"method": "PATCH", "url": account_at, "ifMatch": "W/\"1\""},
    });
    let resp = send(
        &server,
        &bundle(
            "transaction",
            vec![
                json!({"resource": renamed,
                       "request": {"method": "PUT", "url": format!("Patient?identifier={system}|1")}}),
                delete(&format!("Patient?identifier={system}|3")),
                patch_entry,
            ],
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(statuses(&resp), ["200 OK", "204 No Content", "200 OK"]);
    assert_eq!(server.read_json("Patient", &p1).await["active"], false);
    let patched = server.get(&account_at).await;
    assert_eq!(patched.version_id(), Some("2"));
    assert_eq!(patched.json["status"], "inactive");
    let found = server.get(&format!("Patient?identifier={system}|3")).await;
    assert_eq!(found.json["total"], 0, "{}", found.describe());

    // A patch that does not apply is 422, and takes the rest with it.
    let bad_ops = json!([{"op": "test", "path": "/status", "value": "on-hold"}]);
    let resp = send(
        &server,
        &bundle(
            "transaction",
            vec![
                post(&urn(), patient("Bystander")),
                json!({
                    "resource": {"resourceType": "Binary",
                                 "contentType": "application/json-patch+json",
                                 "data": base64::engine::general_purpose::STANDARD
                                     .encode(bad_ops.to_string())},
                    "request": {"method": "PATCH", "url": account_at},
                }),
            ],
        ),
    )
    .await;
    assert_entry_failed(&resp, 422, 1);
}

// --- batch -----------------------------------------------------------------------------

#[tokio::test]
async fn a_batch_applies_its_good_entries_and_reports_the_others() {
    let server = TestServer::start().await;
    let kept = server.create(&patient("Kept")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let gone = server.create(&patient("Gone")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut update = patient("Updated");
    update["id"] = json!(kept);
    let resp = send(
        &server,
        &bundle(
            "batch",
            vec![
                post(&urn(), patient("New")),
                post(
                    &urn(),
                    json!({"resourceType": "Patient", "birthDate": "yesterday"}),
                ),
                get("Patient/does-not-exist"),
                put(&format!("Patient/{kept}"), update),
                delete(&format!("Patient/{gone}")),
                json!({"request": {"method": "GET", "url": "Observation/1"}}),
                json!({"request": {"method": "POST", "url": "Patient"}}),
                get(&format!("Patient/{kept}")),
            ],
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.json["type"], "batch-response");
    assert_eq!(
        statuses(&resp),
        [
            "201 Created",
            "400 Bad Request",
            "404 Not Found",
            "200 OK",
            "204 No Content",
            "400 Bad Request",
            "400 Bad Request",
            "200 OK",
        ]
    );
    let entries = resp.json["entry"].as_array().unwrap();
    for n in [1, 2, 5, 6] {
        let outcome = &entries[n]["response"]["outcome"];
        assert_eq!(outcome["resourceType"], "OperationOutcome", "entry {n}");
        assert_eq!(outcome["issue"][0]["severity"], "error", "entry {n}");
    }
    assert!(entries[0]["response"].get("outcome").is_none());
    assert_eq!(entries[7]["resource"]["name"][0]["family"], "Updated");
    assert_eq!(entries[7]["response"]["etag"], "W/\"2\"");
    let new = located(&entries[0]);
    assert_eq!(server.get(&new).await.status, 200);
    assert_eq!(server.get(&format!("Patient/{gone}")).await.status, 410);
}

// --- limits and malformed Bundles --------------------------------------------------------

#[tokio::test]
async fn too_many_entries_is_413() {
    let server = TestServer::start_with_env(&[("FHIR_BUNDLE_MAX_ENTRIES", "3")]).await;
    let entries: Vec<Value> = (0..4)
        .map(|n| post(&urn(), patient(&format!("P{n}"))))
        .collect();
    for kind in ["transaction", "batch"] {
        let resp = send(&server, &bundle(kind, entries.clone())).await;
        let issue = assert_outcome(&resp, 413);
        assert_eq!(issue["code"], "too-long");
    }
    let resp = send(&server, &bundle("transaction", entries[..3].to_vec())).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
}

#[tokio::test]
async fn malformed_bundles_are_400_and_write_nothing() {
    let server = TestServer::start().await;
    let id = server.create(&patient("Target")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = rows(&server).await;
    let ok = post(&urn(), patient("Fine"));
    let one = |entry: Value| json!([ok.clone(), entry]);
    let mut other_id = patient("X");
    other_id["id"] = json!("someone-else");
    let binary = json!({"resourceType": "Binary", "contentType": "application/fhir+json",
                        "data": "e30="});
    let cases: Vec<(&str, Value)> = vec![
        ("not a Bundle", json!({"resourceType": "Patient"})),
        (
            "a collection",
            json!({"resourceType": "Bundle", "type": "collection"}),
        ),
        ("no type", json!({"resourceType": "Bundle", "entry": []})),
        (
            "entry not an array",
            json!({"resourceType": "Bundle", "type": "transaction", "entry": 1}),
        ),
        ("no request", one(json!({"resource": patient("X")}))),
        (
            "unknown method",
            one(json!({"request": {"method": "MERGE", "url": "Patient"}})),
        ),
        ("no url", one(json!({"request": {"method": "DELETE"}}))),
        (
            "unknown type in url",
            one(json!({"request": {"method": "DELETE", "url": "Observation/1"}})),
        ),
        (
            "bad id in url",
            one(json!({"request": {"method": "DELETE", "url": "Patient/a b"}})),
        ),
        (
            "foreign base",
            one(json!({"request": {"method": "DELETE", "url": "http://elsewhere/fhir/Patient/1"}})),
        ),
        (
            "POST to an instance",
            one(
                json!({"resource": patient("X"), "request": {"method": "POST", "url": format!("Patient/{id}")}}),
            ),
        ),
        (
            "PUT to a type",
            one(json!({"resource": patient("X"), "request": {"method": "PUT", "url": "Patient"}})),
        ),
        (
            "POST without resource",
            one(json!({"request": {"method": "POST", "url": "Patient"}})),
        ),
        (
            "PUT without resource",
            one(json!({"request": {"method": "PUT", "url": format!("Patient/{id}")}})),
        ),
        (
            "type mismatch",
            one(
                json!({"resource": {"resourceType": "Account", "status": "active"}, "request": {"method": "POST", "url": "Patient"}}),
            ),
        ),
        ("id mismatch", one(put(&format!("Patient/{id}"), other_id))),
        (
            "PUT without id",
            one(put(&format!("Patient/{id}"), patient("X"))),
        ),
        (
            "PATCH not a Binary",
            one(
                json!({"resource": patient("X"), "request": {"method": "PATCH", "url": format!("Patient/{id}")}}),
            ),
        ),
        (
            "PATCH of another type",
            one(
                json!({"resource": binary, "request": {"method": "PATCH", "url": format!("Patient/{id}")}}),
            ),
        ),
        (
            "bad ifMatch",
            one(
                json!({"request": {"method": "DELETE", "url": format!("Patient/{id}"), "ifMatch": "one"}}),
            ),
        ),
        (
            "condition with unknown parameter",
            one(json!({"request": {"method": "DELETE", "url": "Patient?nonsense=1"}})),
        ),
    ];
    for (what, body) in cases {
        let body = if body.is_array() {
            bundle("transaction", body.as_array().unwrap().clone())
        } else {
            body
        };
        let resp = send(&server, &body).await;
        assert_eq!(resp.status, 400, "{what}: {}", resp.describe());
        assert_outcome(&resp, 400);
        // In a batch, the same entry is refused on its own.
        if body["entry"].as_array().is_some_and(|e| e.len() == 2) {
            let mut batch = body.clone();
            batch["type"] = json!("batch");
            batch["entry"][0] = get("Patient?_count=1");
            let resp = send(&server, &batch).await;
            assert_eq!(resp.status, 200, "{what} in a batch: {}", resp.describe());
            assert_eq!(statuses(&resp)[1], "400 Bad Request", "{what} in a batch");
        }
    }
    assert_eq!(rows(&server).await, before);
    // Not JSON at all, and another media type.
    let resp = server.post_text(&server.base, "{").await;
    assert_outcome(&resp, 400);
    let resp = server
        .send(
            server
                .request(reqwest::Method::POST, &server.base)
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    assert_eq!(resp.status, 415);
    // Other methods at the base are still 405.
    let resp = server
        .send(
            server
                .request(reqwest::Method::PUT, &server.base)
                .header("content-type", "application/fhir+json")
                .body("{}"),
        )
        .await;
    assert_eq!(resp.status, 405, "{}", resp.describe());
}

#[tokio::test]
async fn prefer_decides_what_the_entries_hold() {
    let server = TestServer::start().await;
    let entries = || vec![post(&urn(), patient("Preferred"))];
    let with = |prefer: Option<&str>| {
        let mut request = server
            .request(reqwest::Method::POST, &server.base)
            .header("content-type", "application/fhir+json")
            .body(bundle("transaction", entries()).to_string());
        if let Some(prefer) = prefer {
            request = request.header("prefer", prefer);
        }
        server.send(request)
    };
    let none = with(None).await;
    assert!(
        none.json["entry"][0].get("resource").is_none(),
        "{}",
        none.describe()
    );
    assert!(none.json["entry"][0]["response"].get("outcome").is_none());
    let minimal = with(Some("return=minimal")).await;
    assert!(minimal.json["entry"][0].get("resource").is_none());
    let full = with(Some("return=representation")).await;
    let resource = &full.json["entry"][0]["resource"];
    assert_eq!(
        resource["name"][0]["family"],
        "Preferred",
        "{}",
        full.describe()
    );
    assert_eq!(resource["meta"]["versionId"], "1");
    let outcome = with(Some("return=OperationOutcome")).await;
    assert_eq!(
        outcome.json["entry"][0]["response"]["outcome"]["issue"][0]["severity"],
        "information",
        "{}",
        outcome.describe()
    );
    // XML in, XML out.
    let xml = server
        .send(
            server
                .request(reqwest::Method::POST, &server.base)
                .header("content-type", "application/fhir+xml")
                .header("accept", "application/fhir+xml")
                .body(
                    "<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"transaction\"/>\
                     <entry><fullUrl value=\"urn:uuid:8b3e8c1e-0a57-4a8e-9d39-1c4e4b5f1d2a\"/>\
                     <resource><Patient><active value=\"true\"/></Patient></resource>\
                     <request><method value=\"POST\"/><url value=\"Patient\"/></request></entry>\
                     </Bundle>",
                ),
        )
        .await;
    assert_eq!(xml.status, 200, "{}", xml.describe());
    assert!(xml.text.contains("transaction-response"), "{}", xml.text);
    assert!(xml.text.contains("201 Created"), "{}", xml.text);
}

// --- SMART -------------------------------------------------------------------------------

const A: &str = "demo-patient-a";
const B: &str = "demo-patient-b";

#[tokio::test]
async fn scopes_are_checked_per_entry() {
    let Some(kc) = keycloak().await else { return };
    let server = kc.server(&[]).await;
    let admin = Caller::new(&server, &kc.system_token("system/*.cruds").await);
    for resource in smart_support::demo_resources() {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let resp = admin.put(&path, &resource).await;
        assert!(
            matches!(resp.status, 200 | 201),
            "PUT {path}: {}",
            resp.describe()
        );
    }
    let token = kc
        .user_token(
            "patient-a",
            "openid fhirUser launch/patient patient/*.cruds",
        )
        .await;
    let a = Caller::new(&server, &token);
    let account = |patient: &str| {
        json!({"resourceType": "Account", "status": "active",
               "subject": [{"reference": format!("Patient/{patient}")}]})
    };
    let accounts = |patient: &'static str| {
        let admin = &admin;
        async move {
            admin
                .get(&format!("Account?subject=Patient/{patient}"))
                .await
                .json["total"]
                .as_u64()
                .unwrap()
        }
    };
    let a_accounts = accounts(A).await;
    let b_invoice = admin.get("Invoice/demo-patient-b-invoice-1").await.json;

    // A transaction with one entry outside A's compartment fails whole, with 403.
    let mut changed = b_invoice.clone();
    changed["status"] = json!("cancelled");
    let tx = bundle(
        "transaction",
        vec![
            post(&urn(), account(A)),
            put("Invoice/demo-patient-b-invoice-1", changed.clone()),
        ],
    );
    let resp = a.post("", &tx).await;
    assert_eq!(resp.status, 403, "{}", resp.describe());
    assert_entry_failed(&resp, 403, 1);
    assert_eq!(accounts(A).await, a_accounts, "nothing written");
    // A create for another patient, through a reference to another entry, is refused too.
    let resp = a
        .post("", &bundle("transaction", vec![post(&urn(), account(B))]))
        .await;
    assert_entry_failed(&resp, 403, 0);
    // Reads follow the read rules: another patient's record is 404 in its entry.
    let resp = a
        .post(
            "",
            &bundle(
                "transaction",
                vec![post(&urn(), account(A)), get(&format!("Patient/{B}"))],
            ),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(statuses(&resp), ["201 Created", "404 Not Found"]);
    assert_eq!(accounts(A).await, a_accounts + 1);

    // In a batch only the refused entries fail.
    let resp = a
        .post(
            "",
            &bundle(
                "batch",
                vec![
                    post(&urn(), account(A)),
                    put("Invoice/demo-patient-b-invoice-1", changed),
                    delete("Invoice/demo-patient-b-invoice-1"),
                    get(&format!("Patient/{B}")),
                    get(&format!("Patient/{A}")),
                ],
            ),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(
        statuses(&resp),
        [
            "201 Created",
            "403 Forbidden",
            "403 Forbidden",
            "404 Not Found",
            "200 OK"
        ]
    );
    assert_eq!(accounts(A).await, a_accounts + 2);
    assert_eq!(
        admin.get("Invoice/demo-patient-b-invoice-1").await.json,
        b_invoice,
        "B's invoice untouched"
    );

    // A scope without the letter: 403 for the entry's interaction.
    let reader = Caller::new(&server, &kc.system_token("system/Patient.rs").await);
    let resp = reader
        .post(
            "",
            &bundle(
                "transaction",
                vec![get(&format!("Patient/{A}")), post(&urn(), patient("No"))],
            ),
        )
        .await;
    assert_entry_failed(&resp, 403, 1);
    // No token at all: 401 for the whole request.
    assert_eq!(send(&server, &tx).await.status, 401);
}
