//! Referential integrity (docs/rest.md, "Referential integrity"), end to end against the
//! `fhir-server` binary:
//!
//! - a create, update, PATCH or Bundle entry whose local reference names a resource that
//!   does not exist (or is deleted) is 400, naming the reference and its element, and
//!   writes nothing; references to contained resources, other servers, URNs and types the
//!   server does not serve are not checked; a resource may refer to itself, and a Bundle's
//!   resources to each other whatever the order of the entries;
//! - a delete (plain, conditional, in a Bundle) of a resource that current resources refer
//!   to is 409, naming them; once they are deleted or no longer refer to it, it is 204; a
//!   transaction may delete a resource with the ones that refer to it;
//! - `FHIR_REFERENTIAL_INTEGRITY=false` (and `FHIR_REFERENTIAL_INTEGRITY_DELETE`) turn the
//!   checks off;
//! - a delete racing with a create that refers to its target never leaves a committed
//!   dangling reference.

#![allow(clippy::unwrap_used, reason = "tests")]

use base64::Engine;
use ferrum_tests::{Resp, TestServer, assert_outcome, json, unique};
use futures::future::join;
use reqwest::Method;
use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};

// --- helpers -------------------------------------------------------------------------

fn account(subject: &str) -> Value {
    json!({"resourceType": "Account", "status": "active",
           "subject": [{"reference": subject}]})
}

async fn patient(server: &TestServer) -> String {
    let created = server
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Target"}]}))
        .await;
    format!("Patient/{}", created["id"].as_str().unwrap())
}

/// Rows in the server's tables: current resources, history, outbox, reference record.
async fn rows(server: &TestServer) -> [i64; 4] {
    let mut conn = PgConnection::connect(server.database_url()).await.unwrap();
    let row = sqlx::query(
        "select (select count(*) from resources), (select count(*) from resource_history),
                (select count(*) from outbox), (select count(*) from resource_references)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    [row.get(0), row.get(1), row.get(2), row.get(3)]
}

/// The current resources whose references name a resource that is not current: none,
/// whatever happened.
async fn dangling(server: &TestServer) -> Vec<String> {
    let mut conn = PgConnection::connect(server.database_url()).await.unwrap();
    sqlx::query_scalar(
        "select r.res_type || '/' || r.id || ' -> ' || x.target_type || '/' || x.target_id
         from resource_references x join resources r on r.key = x.res_key
         where not r.deleted and not exists (
             select from resources t
             where t.res_type = x.target_type and t.id = x.target_id and not t.deleted)",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// A 400 naming `target` at `expression`, with nothing of the request's other content.
#[track_caller]
fn assert_dangling(resp: &Resp, target: &str, expression: &str) {
    let issue = assert_outcome(resp, 400);
    assert_eq!(issue["code"], "not-found", "{}", resp.describe());
    assert_eq!(issue["expression"][0], expression, "{}", resp.describe());
    let diagnostics = issue["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains(target), "{}", resp.describe());
}

/// A 409 naming `target` and each of `referrers`.
#[track_caller]
fn assert_referenced(resp: &Resp, target: &str, referrers: &[&str]) {
    let issue = assert_outcome(resp, 409);
    assert_eq!(issue["code"], "conflict", "{}", resp.describe());
    let diagnostics = issue["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains(target), "{}", resp.describe());
    for referrer in referrers {
        assert!(diagnostics.contains(referrer), "{}", resp.describe());
    }
}

async fn patch(server: &TestServer, path: &str, ops: &Value) -> Resp {
    server
        .send(
            server
                .request(Method::PATCH, path)
                .header("content-type", "application/json-patch+json")
                .body(ops.to_string()),
        )
        .await
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn urn() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

/// `Type/id` of a response entry's `location` (`Type/id/_history/v`).
fn located(entry: &Value) -> String {
    let location = entry["response"]["location"].as_str().unwrap();
    let parts: Vec<&str> = location.split('/').collect();
    format!("{}/{}", parts[0], parts[1])
}

// --- writes --------------------------------------------------------------------------

#[tokio::test]
async fn a_create_naming_a_missing_resource_is_400_and_writes_nothing() {
    let server = TestServer::start().await;
    let before = rows(&server).await;
    let resp = server.post("Account", &account("Patient/missing")).await;
    assert_dangling(&resp, "Patient/missing", "Account.subject[0].reference");
    assert_eq!(rows(&server).await, before, "nothing written");

    // Absolute under this server's base, versioned, or deep in an extension: all local.
    let absolute = format!("{}/Patient/missing", server.base);
    let resp = server.post("Account", &account(&absolute)).await;
    assert_dangling(&resp, "Patient/missing", "Account.subject[0].reference");
    let resp = server
        .post("Account", &account("Patient/missing/_history/1"))
        .await;
    assert_dangling(&resp, "Patient/missing", "Account.subject[0].reference");
    let mut extended = account(&patient(&server).await);
    extended["extension"] = json!([{"url": "http://example.org/guarantor",
        "valueReference": {"reference": "Organization/missing"}}]);
    let resp = server.post("Account", &extended).await;
    assert_dangling(
        &resp,
        "Organization/missing",
        "Account.extension[0].valueReference.reference",
    );

    // A conditional create too.
    let resp = server
        .send(
            server
                .request(Method::POST, "Account")
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", "identifier=urn:test|none")
                .body(account("Patient/missing").to_string()),
        )
        .await;
    assert_dangling(&resp, "Patient/missing", "Account.subject[0].reference");
}

#[tokio::test]
async fn references_the_server_cannot_check_are_left_alone() {
    let server = TestServer::start().await;
    let mut contained = account("#p");
    contained["contained"] =
        json!([{"resourceType": "Patient", "id": "p", "name": [{"family": "Inside"}]}]);
    let elsewhere = account("http://other.example/fhir/Patient/1");
    let urn_only = account("urn:uuid:04121321-4af5-424c-a0e1-ed3aab1c349d");
    let mut unserved = account("http://other.example/fhir/Patient/1");
    unserved["extension"] = json!([{"url": "http://example.org/seen-in",
        "valueReference": {"reference": "Observation/o1"}}]);
    for resource in [contained, elsewhere, urn_only, unserved] {
        let resp = server.post("Account", &resource).await;
        assert_eq!(resp.status, 201, "{}", resp.describe());
    }
    // A display is no reference.
    let resp = server
        .post(
            "Account",
            &json!({"resourceType": "Account", "status": "active",
                    "subject": [{"display": "Patient/missing"}]}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
}

#[tokio::test]
async fn a_reference_to_a_deleted_resource_is_400() {
    let server = TestServer::start().await;
    let target = patient(&server).await;
    assert_eq!(server.delete(&target).await.status, 204);
    let resp = server.post("Account", &account(&target)).await;
    assert_dangling(&resp, &target, "Account.subject[0].reference");
    // Created again (update after delete), it may be referred to again.
    let id = target.trim_start_matches("Patient/");
    server
        .upsert(&json!({"resourceType": "Patient", "id": id}))
        .await;
    let resp = server.post("Account", &account(&target)).await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
}

#[tokio::test]
async fn an_update_naming_a_missing_resource_is_400_and_keeps_the_version() {
    let server = TestServer::start().await;
    let target = patient(&server).await;
    let created = server.create(&account(&target)).await;
    let id = created["id"].as_str().unwrap();
    let mut changed = account("Patient/missing");
    changed["id"] = json!(id);
    let resp = server.put(&format!("Account/{id}"), &changed).await;
    assert_dangling(&resp, "Patient/missing", "Account.subject[0].reference");
    let current = server.read_json("Account", id).await;
    assert_eq!(current["meta"]["versionId"], "1");
    assert_eq!(current["subject"][0]["reference"], target.as_str());
    assert_eq!(
        server
            .history(&format!("Account/{id}/_history"))
            .await
            .len(),
        1
    );

    // Update-as-create: nothing is created.
    let new_id = unique("acct");
    let mut fresh = account("Patient/missing");
    fresh["id"] = json!(new_id);
    let resp = server.put(&format!("Account/{new_id}"), &fresh).await;
    assert_dangling(&resp, "Patient/missing", "Account.subject[0].reference");
    assert_eq!(server.get(&format!("Account/{new_id}")).await.status, 404);

    // A conditional update too.
    let resp = server.put(&format!("Account?_id={id}"), &changed).await;
    assert_dangling(&resp, "Patient/missing", "Account.subject[0].reference");
}

#[tokio::test]
async fn a_resource_may_refer_to_itself() {
    let server = TestServer::start().await;
    let id = unique("self");
    let selfish = json!({"resourceType": "Patient", "id": id,
        "link": [{"other": {"reference": format!("Patient/{id}")}, "type": "seealso"}]});
    let resp = server.put(&format!("Patient/{id}"), &selfish).await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    let resp = server.put(&format!("Patient/{id}"), &selfish).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    // Its own reference does not keep it from being deleted.
    assert_eq!(server.delete(&format!("Patient/{id}")).await.status, 204);
}

#[tokio::test]
async fn a_patch_naming_a_missing_resource_is_400_and_keeps_the_version() {
    let server = TestServer::start().await;
    let target = patient(&server).await;
    let created = server.create(&account(&target)).await;
    let path = format!("Account/{}", created["id"].as_str().unwrap());
    let ops = json!([{"op": "add", "path": "/owner",
                      "value": {"reference": "Organization/missing"}}]);
    let resp = patch(&server, &path, &ops).await;
    assert_dangling(&resp, "Organization/missing", "Account.owner.reference");
    let current = server.get(&path).await;
    assert_eq!(current.version_id(), Some("1"));
    assert!(current.json.get("owner").is_none());
}

#[tokio::test]
async fn a_transaction_with_a_dangling_reference_fails_whole() {
    let server = TestServer::start().await;
    let before = rows(&server).await;
    let body = bundle(
        "transaction",
        vec![
            json!({"fullUrl": urn(), "request": {"method": "POST", "url": "Patient"},
                   "resource": {"resourceType": "Patient", "name": [{"family": "Fine"}]}}),
            json!({"fullUrl": urn(), "request": {"method": "POST", "url": "Account"},
                   "resource": account("Patient/missing")}),
        ],
    );
    let resp = server.post(&server.base, &body).await;
    assert_dangling(
        &resp,
        "Patient/missing",
        "Bundle.entry[1].resource.subject[0].reference",
    );
    assert_eq!(rows(&server).await, before, "nothing written");

    // In a batch, only that entry fails.
    let mut batch = body.clone();
    batch["type"] = json!("batch");
    let resp = server.post(&server.base, &batch).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let entries = resp.json["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    assert_eq!(entries[1]["response"]["status"], "400 Bad Request");
    let issue = &entries[1]["response"]["outcome"]["issue"][0];
    assert_eq!(
        issue["expression"][0],
        "Bundle.entry[1].resource.subject[0].reference"
    );
}

#[tokio::test]
async fn a_transaction_may_create_what_it_refers_to_in_any_order() {
    let server = TestServer::start().await;
    let patient_url = urn();
    let put_id = unique("later");
    let body = bundle(
        "transaction",
        vec![
            // Refers to a resource a PUT of the same transaction creates (PUTs run after
            // POSTs), and to one created by a POST through its fullUrl.
            json!({"fullUrl": urn(), "request": {"method": "POST", "url": "Account"},
                   "resource": {"resourceType": "Account", "status": "active",
                                "subject": [{"reference": patient_url},
                                            {"reference": format!("Patient/{put_id}")}]}}),
            json!({"fullUrl": patient_url, "request": {"method": "POST", "url": "Patient"},
                   "resource": {"resourceType": "Patient", "name": [{"family": "New"}]}}),
            json!({"request": {"method": "PUT", "url": format!("Patient/{put_id}")},
                   "resource": {"resourceType": "Patient", "id": put_id}}),
        ],
    );
    let resp = server.post(&server.base, &body).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let entries = resp.json["entry"].as_array().unwrap();
    let account_ref = located(&entries[0]);
    let patient_ref = located(&entries[1]);
    let stored = server.get(&account_ref).await.json;
    assert_eq!(stored["subject"][0]["reference"], patient_ref.as_str());
    assert!(dangling(&server).await.is_empty());
    // Now they hold each other: the Patient cannot go alone.
    assert_referenced(
        &server.delete(&patient_ref).await,
        &patient_ref,
        &[&account_ref],
    );
}

// --- deletes -------------------------------------------------------------------------

#[tokio::test]
async fn a_delete_of_a_referenced_resource_is_409_until_nothing_refers_to_it() {
    let server = TestServer::start().await;
    let target = patient(&server).await;
    let first = server.create(&account(&target)).await;
    let second = server.create(&account(&target)).await;
    let first_ref = format!("Account/{}", first["id"].as_str().unwrap());
    let second_ref = format!("Account/{}", second["id"].as_str().unwrap());

    let resp = server.delete(&target).await;
    assert_referenced(&resp, &target, &[&first_ref, &second_ref]);
    assert!(
        resp.json["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("2 resources refer")
    );
    assert_eq!(server.get(&target).await.status, 200, "not deleted");

    // One referrer deleted: a tombstone refers to nothing.
    assert_eq!(server.delete(&first_ref).await.status, 204);
    assert_referenced(&server.delete(&target).await, &target, &[&second_ref]);

    // The other updated to refer elsewhere.
    let other = patient(&server).await;
    let mut moved = account(&other);
    moved["id"] = second["id"].clone();
    assert_eq!(server.put(&second_ref, &moved).await.status, 200);
    assert_eq!(server.delete(&target).await.status, 204);
    assert_eq!(server.get(&target).await.status, 410);
    assert!(dangling(&server).await.is_empty());
}

#[tokio::test]
async fn every_reference_counts_for_a_delete() {
    let server = TestServer::start().await;
    let organization = server
        .create(&json!({"resourceType": "Organization", "name": "Issuer"}))
        .await;
    let org_ref = format!("Organization/{}", organization["id"].as_str().unwrap());
    // No search parameter covers a qualification's issuer, nor an extension.
    let practitioner = server
        .create(&json!({"resourceType": "Practitioner",
            "qualification": [{"code": {"text": "MD"}, "issuer": {"reference": org_ref}}]}))
        .await;
    let practitioner_ref = format!("Practitioner/{}", practitioner["id"].as_str().unwrap());
    assert_referenced(
        &server.delete(&org_ref).await,
        &org_ref,
        &[&practitioner_ref],
    );
    assert_eq!(server.delete(&practitioner_ref).await.status, 204);
    assert_eq!(server.delete(&org_ref).await.status, 204);
}

#[tokio::test]
async fn a_conditional_delete_of_a_referenced_resource_is_409() {
    let server = TestServer::start().await;
    let family = unique("Cond");
    let created = server
        .create(&json!({"resourceType": "Patient", "name": [{"family": family}]}))
        .await;
    let target = format!("Patient/{}", created["id"].as_str().unwrap());
    let referrer = server.create(&account(&target)).await;
    let referrer_ref = format!("Account/{}", referrer["id"].as_str().unwrap());
    let resp = server.delete(&format!("Patient?family={family}")).await;
    assert_referenced(&resp, &target, &[&referrer_ref]);
    assert_eq!(server.get(&target).await.status, 200);
}

#[tokio::test]
async fn a_transaction_deletes_a_resource_with_its_referrers_but_not_alone() {
    let server = TestServer::start().await;
    let target = patient(&server).await;
    let referrer = server.create(&account(&target)).await;
    let referrer_ref = format!("Account/{}", referrer["id"].as_str().unwrap());

    let alone = bundle(
        "transaction",
        vec![
            json!({"request": {"method": "GET", "url": "Patient"}}),
            json!({"request": {"method": "DELETE", "url": target}}),
        ],
    );
    let resp = server.post(&server.base, &alone).await;
    let issue = assert_outcome(&resp, 409);
    assert_eq!(issue["expression"][0], "Bundle.entry[1]");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .contains(&referrer_ref)
    );
    assert_eq!(server.get(&target).await.status, 200);

    // The referrer dropping the reference in the same transaction is enough.
    let other = patient(&server).await;
    let mut moved = account(&other);
    moved["id"] = referrer["id"].clone();
    let with_update = bundle(
        "transaction",
        vec![
            json!({"request": {"method": "DELETE", "url": target}}),
            json!({"request": {"method": "PUT", "url": referrer_ref}, "resource": moved}),
        ],
    );
    let resp = server.post(&server.base, &with_update).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(server.get(&target).await.status, 410);

    // Deleted together, whatever the order of the entries.
    let together = bundle(
        "transaction",
        vec![
            json!({"request": {"method": "DELETE", "url": other}}),
            json!({"request": {"method": "DELETE", "url": referrer_ref}}),
        ],
    );
    let resp = server.post(&server.base, &together).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(server.get(&other).await.status, 410);
    assert_eq!(server.get(&referrer_ref).await.status, 410);

    // A transaction that deletes a resource and creates a reference to it fails.
    let target = patient(&server).await;
    let dangling_bundle = bundle(
        "transaction",
        vec![
            json!({"request": {"method": "DELETE", "url": target}}),
            json!({"fullUrl": urn(), "request": {"method": "POST", "url": "Account"},
                   "resource": account(&target)}),
        ],
    );
    let resp = server.post(&server.base, &dangling_bundle).await;
    assert_dangling(
        &resp,
        &target,
        "Bundle.entry[1].resource.subject[0].reference",
    );
    assert_eq!(server.get(&target).await.status, 200);
    assert!(dangling(&server).await.is_empty());
}

#[tokio::test]
async fn a_patch_entry_is_checked_like_a_patch() {
    let server = TestServer::start().await;
    let target = patient(&server).await;
    let created = server.create(&account(&target)).await;
    let path = format!("Account/{}", created["id"].as_str().unwrap());
    let ops = json!([{"op": "replace", "path": "/subject/0/reference",
                      "value": "Patient/missing"}]);
    let data = base64::engine::general_purpose::STANDARD.encode(ops.to_string());
    let body = bundle(
        "transaction",
        vec![json!({"request": {"method": "PATCH", "url": path},
                    "resource": {"resourceType": "Binary",
                                 "contentType": "application/json-patch+json",
                                 "data": data}})],
    );
    let resp = server.post(&server.base, &body).await;
    assert_dangling(
        &resp,
        "Patient/missing",
        "Bundle.entry[0].resource.subject[0].reference",
    );
    assert_eq!(server.get(&path).await.version_id(), Some("1"));
}

// --- configuration -------------------------------------------------------------------

/// `rest.resource.referencePolicy` of the Patient entry of the CapabilityStatement.
async fn reference_policy(server: &TestServer) -> Value {
    let metadata = server.get("metadata").await;
    let resources = metadata.json["rest"][0]["resource"].as_array().unwrap();
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    patient["referencePolicy"].clone()
}

#[tokio::test]
async fn the_checks_can_be_turned_off() {
    let on = TestServer::start().await;
    assert_eq!(reference_policy(&on).await, json!(["literal", "enforced"]));
    drop(on);

    let server = TestServer::start_with_env(&[("FHIR_REFERENTIAL_INTEGRITY", "false")]).await;
    assert_eq!(reference_policy(&server).await, json!(["literal"]));
    let resp = server.post("Account", &account("Patient/missing")).await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    let target = patient(&server).await;
    server.create(&account(&target)).await;
    assert_eq!(server.delete(&target).await.status, 204);

    // Only the delete check off: writes are still checked.
    let server =
        TestServer::start_with_env(&[("FHIR_REFERENTIAL_INTEGRITY_DELETE", "false")]).await;
    let resp = server.post("Account", &account("Patient/missing")).await;
    assert_dangling(&resp, "Patient/missing", "Account.subject[0].reference");
    let target = patient(&server).await;
    server.create(&account(&target)).await;
    assert_eq!(server.delete(&target).await.status, 204);
}

// --- concurrency ---------------------------------------------------------------------

/// A delete of a resource and a create that refers to it, sent at once, again and again:
/// one of them wins each time, and no committed resource ever refers to a deleted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_racing_a_reference_never_leaves_it_dangling() {
    const ROUNDS: usize = 40;
    let server = TestServer::start().await;
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..ROUNDS {
        let target = patient(&server).await;
        let (deleted, created) = join(
            server.delete(&target),
            server.post("Account", &account(&target)),
        )
        .await;
        match (deleted.status, created.status) {
            // The delete first: the create finds it deleted.
            (204, 400) => assert_dangling(&created, &target, "Account.subject[0].reference"),
            // The create first: the delete finds the Account.
            (409, 201) => assert_referenced(&deleted, &target, &[]),
            other => panic!("{other:?}: {} / {}", deleted.describe(), created.describe()),
        }
        *outcomes
            .entry((deleted.status, created.status))
            .or_insert(0) += 1;
        let target_status = server.get(&target).await.status;
        assert_eq!(target_status == 200, created.status == 201);
    }
    assert!(dangling(&server).await.is_empty());
    eprintln!("outcomes (delete, create): {outcomes:?}");

    // The same with updates that add the reference to an existing resource.
    let holder = server.create(&account(&patient(&server).await)).await;
    let holder_id = holder["id"].as_str().unwrap().to_owned();
    for _ in 0..ROUNDS {
        let target = patient(&server).await;
        let mut changed = account(&target);
        changed["id"] = json!(holder_id);
        let (deleted, updated) = join(
            server.delete(&target),
            server.put(&format!("Account/{holder_id}"), &changed),
        )
        .await;
        match (deleted.status, updated.status) {
            (204, 400) | (409, 200) => {}
            other => panic!("{other:?}: {} / {}", deleted.describe(), updated.describe()),
        }
    }
    assert!(dangling(&server).await.is_empty());
}
