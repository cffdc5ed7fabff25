//! Patient `$everything` end to end (docs/everything.md): the `fhir-server` binary against
//! PostgreSQL, and against Keycloak for the patient-scoped token.
//!
//! - a patient's record: the Patient, its Accounts and Invoices (by any compartment
//!   parameter), its Groups, and the Organizations, Practitioners and Groups they refer to;
//!   nothing of another patient;
//! - `_type`, `_since`, paging with `_count` (every resource once, while others write),
//!   forged cursors, unknown parameters (lenient and strict), `POST` with a `Parameters` body
//!   and with a form;
//! - 404 for an unknown patient, 410 for a deleted one;
//! - type level: the records of every Patient, each resource once;
//! - a `patient/` token sees its own record only, and another patient's is 404.
//!
//! The expected records are written out by hand from the resources stored here.

#![allow(clippy::unwrap_used, reason = "tests")]

mod smart_support;

use std::collections::BTreeSet;

use ferrum_tests::{FHIR_JSON, Resp, TestServer, assert_outcome, entries, json, link};
use reqwest::Method;
use serde_json::Value;
use smart_support::{Caller, keycloak};

/// The stored resources. Patient A: GP `e-doc`, managed by `e-org`; Account `e-acc-a`
/// (owner `e-org`); Invoice `e-inv-a1` (subject A, issuer `e-org-issuer`, participant
/// `e-doc-part`); Invoice `e-inv-a2` (A only as `recipient`, subject Group `e-grp-ref`);
/// member of Group `e-grp-ab` with B. Patient B: its own Organization, Practitioner, Account,
/// Invoice and Group `e-grp-b`. Patient C is only a member of `e-grp-ref`. `e-org-none` is
/// nobody's; `e-gone` is deleted, with an Account.
fn seed() -> Vec<Value> {
    let reference = |target: &str| json!({"reference": target});
    vec![
        json!({"resourceType": "Organization", "id": "e-org", "name": "Clinic"}),
        json!({"resourceType": "Organization", "id": "e-org-issuer", "name": "Billing"}),
        json!({"resourceType": "Organization", "id": "e-org-b", "name": "Other clinic"}),
        json!({"resourceType": "Organization", "id": "e-org-none", "name": "Nobody's"}),
        json!({"resourceType": "Practitioner", "id": "e-doc", "name": [{"family": "Gp"}]}),
        json!({"resourceType": "Practitioner", "id": "e-doc-part", "name": [{"family": "Part"}]}),
        json!({"resourceType": "Practitioner", "id": "e-doc-b", "name": [{"family": "Bee"}]}),
        json!({"resourceType": "Patient", "id": "e-a", "name": [{"family": "Able"}],
            "generalPractitioner": [reference("Practitioner/e-doc")],
            "managingOrganization": reference("Organization/e-org")}),
        json!({"resourceType": "Patient", "id": "e-b", "name": [{"family": "Baker"}],
            "generalPractitioner": [reference("Practitioner/e-doc-b")],
            "managingOrganization": reference("Organization/e-org-b")}),
        json!({"resourceType": "Patient", "id": "e-c", "name": [{"family": "Cole"}]}),
        json!({"resourceType": "Patient", "id": "e-gone", "name": [{"family": "Gone"}]}),
        json!({"resourceType": "Account", "id": "e-acc-a", "status": "active",
            "subject": [reference("Patient/e-a")], "owner": reference("Organization/e-org")}),
        json!({"resourceType": "Account", "id": "e-acc-b", "status": "active",
            "subject": [reference("Patient/e-b")], "owner": reference("Organization/e-org-b")}),
        json!({"resourceType": "Account", "id": "e-acc-gone", "status": "active",
            "subject": [reference("Patient/e-gone")], "owner": reference("Organization/e-org-none")}),
        json!({"resourceType": "Invoice", "id": "e-inv-a1", "status": "issued",
            "subject": reference("Patient/e-a"), "issuer": reference("Organization/e-org-issuer"),
            "participant": [{"actor": reference("Practitioner/e-doc-part")}],
            "account": reference("Account/e-acc-a")}),
        json!({"resourceType": "Group", "id": "e-grp-ref", "type": "person", "actual": true,
            "member": [{"entity": reference("Patient/e-c")}]}),
        json!({"resourceType": "Invoice", "id": "e-inv-a2", "status": "draft",
            "subject": reference("Group/e-grp-ref"), "recipient": reference("Patient/e-a")}),
        json!({"resourceType": "Invoice", "id": "e-inv-b", "status": "issued",
            "subject": reference("Patient/e-b"), "issuer": reference("Organization/e-org-b")}),
        json!({"resourceType": "Group", "id": "e-grp-ab", "type": "person", "actual": true,
            "member": [{"entity": reference("Patient/e-a")}, {"entity": reference("Patient/e-b")}]}),
        json!({"resourceType": "Group", "id": "e-grp-b", "type": "person", "actual": true,
            "member": [{"entity": reference("Patient/e-b")}]}),
    ]
}

/// Patient A's record.
const A_RECORD: [&str; 10] = [
    "Patient/e-a",
    "Organization/e-org",
    "Practitioner/e-doc",
    "Account/e-acc-a",
    "Invoice/e-inv-a1",
    "Organization/e-org-issuer",
    "Practitioner/e-doc-part",
    "Invoice/e-inv-a2",
    "Group/e-grp-ref",
    "Group/e-grp-ab",
];

/// Patient B's record.
const B_RECORD: [&str; 7] = [
    "Patient/e-b",
    "Organization/e-org-b",
    "Practitioner/e-doc-b",
    "Account/e-acc-b",
    "Invoice/e-inv-b",
    "Group/e-grp-ab",
    "Group/e-grp-b",
];

/// Patient C's record: itself and the Group it is a member of.
const C_RECORD: [&str; 2] = ["Patient/e-c", "Group/e-grp-ref"];

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn path_of(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    )
}

/// Stores [`seed`] with PUT and deletes `e-gone`, which its Account still refers to (the
/// delete check is off for that).
async fn seeded() -> TestServer {
    let server =
        TestServer::start_with_env(&[("FHIR_REFERENTIAL_INTEGRITY_DELETE", "false")]).await;
    for resource in seed() {
        let path = path_of(&resource);
        let resp = server.put(&path, &resource).await;
        assert!(
            matches!(resp.status, 200 | 201),
            "PUT {path}: {}",
            resp.describe()
        );
    }
    let resp = server.delete("Patient/e-gone").await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    server
}

/// The `Type/id` of each match of a Bundle page, in order.
fn matches(bundle: &Value) -> Vec<String> {
    entries(bundle)
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| {
            let path = path_of(&e["resource"]);
            assert!(
                e["fullUrl"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{path}")),
                "fullUrl of {path}: {e}"
            );
            path
        })
        .collect()
}

/// A page of `$everything`, which must be a searchset Bundle.
#[track_caller]
fn page(resp: &Resp, what: &str) -> Vec<String> {
    assert_eq!(resp.status, 200, "{what}: {}", resp.describe());
    assert!(resp.is_fhir_json(), "{what}: {}", resp.describe());
    assert_eq!(resp.json["resourceType"], "Bundle", "{what}");
    assert_eq!(resp.json["type"], "searchset", "{what}");
    assert!(link(&resp.json, "self").is_some(), "{what}: no self link");
    matches(&resp.json)
}

/// Every match of every page, following `next` links; asserts that no resource comes twice.
async fn all_pages(server: &TestServer, path: &str) -> (Vec<String>, usize) {
    let mut found = Vec::new();
    let mut pages = 0;
    let mut next = Some(server.url(path));
    while let Some(url) = next.take() {
        assert!(pages < 100, "{path}: too many pages");
        let resp = server.get(&url).await;
        found.extend(page(&resp, &url));
        next = link(&resp.json, "next");
        pages += 1;
    }
    assert_unique(&found, path);
    (found, pages)
}

#[track_caller]
fn assert_unique(found: &[String], what: &str) {
    let unique: BTreeSet<&String> = found.iter().collect();
    assert_eq!(unique.len(), found.len(), "{what}: duplicates in {found:?}");
}

fn ids(found: &[String]) -> BTreeSet<String> {
    found.iter().cloned().collect()
}

#[tokio::test]
async fn a_patients_record_and_nothing_of_another() {
    let server = seeded().await;

    let resp = server.get("Patient/e-a/$everything").await;
    let found = page(&resp, "A's record");
    assert_unique(&found, "A's record");
    assert_eq!(ids(&found), set(&A_RECORD), "A's record");
    assert_eq!(
        resp.json["total"], 10,
        "a first page holding every match has a total"
    );
    assert!(link(&resp.json, "next").is_none());
    let own = link(&resp.json, "self").unwrap();
    assert!(
        own.starts_with(&server.url("Patient/e-a/$everything")),
        "self link {own}"
    );

    let found = page(&server.get("Patient/e-b/$everything").await, "B's record");
    assert_eq!(ids(&found), set(&B_RECORD), "B's record");
    let found = page(&server.get("Patient/e-c/$everything").await, "C's record");
    assert_eq!(ids(&found), set(&C_RECORD), "C's record");

    // An Invoice only as `recipient` still belongs to the patient; once it refers elsewhere
    // it leaves the record, and so does the Group only it referred to.
    let mut invoice = seed().into_iter().find(|r| r["id"] == "e-inv-a2").unwrap();
    invoice["recipient"] = json!({"reference": "Organization/e-org-none"});
    assert_eq!(server.put("Invoice/e-inv-a2", &invoice).await.status, 200);
    let found = page(&server.get("Patient/e-a/$everything").await, "A, later");
    let mut expected = set(&A_RECORD);
    expected.remove("Invoice/e-inv-a2");
    expected.remove("Group/e-grp-ref");
    assert_eq!(ids(&found), expected, "A's record without e-inv-a2");

    // XML, as any Bundle.
    let resp = server
        .get_with(
            "Patient/e-b/$everything",
            &[("accept", "application/fhir+xml")],
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(resp.text.contains("<Bundle"), "{}", resp.describe());
}

#[tokio::test]
async fn type_since_and_parameters() {
    let server = seeded().await;

    let found = page(
        &server
            .get("Patient/e-a/$everything?_type=Account,Invoice")
            .await,
        "_type=Account,Invoice",
    );
    assert_eq!(
        ids(&found),
        set(&["Account/e-acc-a", "Invoice/e-inv-a1", "Invoice/e-inv-a2"])
    );
    // Repeated `_type`s add up; an Organization shows through what refers to it, whether
    // those are returned or not.
    let found = page(
        &server
            .get("Patient/e-a/$everything?_type=Organization&_type=Group")
            .await,
        "_type twice",
    );
    assert_eq!(
        ids(&found),
        set(&[
            "Organization/e-org",
            "Organization/e-org-issuer",
            "Group/e-grp-ref",
            "Group/e-grp-ab"
        ])
    );

    // `_since`: what changed at or after the instant, the Patient included.
    let mut invoice = seed().into_iter().find(|r| r["id"] == "e-inv-a1").unwrap();
    invoice["status"] = json!("balanced");
    let first = server.put("Invoice/e-inv-a1", &invoice).await;
    assert_eq!(first.status, 200, "{}", first.describe());
    let t1 = first.json["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_owned();
    let org = json!({"resourceType": "Organization", "id": "e-org-b", "name": "Renamed"});
    let second = server.put("Organization/e-org-b", &org).await;
    let t2 = second.json["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_owned();
    let since = |patient: &str, at: &str| {
        let at: String = url::form_urlencoded::byte_serialize(at.as_bytes()).collect();
        format!("Patient/{patient}/$everything?_since={at}")
    };
    let found = page(&server.get(&since("e-a", &t1)).await, "A since t1");
    assert_eq!(ids(&found), set(&["Invoice/e-inv-a1"]));
    let found = page(&server.get(&since("e-b", &t1)).await, "B since t1");
    assert_eq!(ids(&found), set(&["Organization/e-org-b"]));
    let found = page(&server.get(&since("e-a", &t2)).await, "A since t2");
    assert!(found.is_empty(), "A since t2: {found:?}");
    let found = page(
        &server.get(&since("e-b", "2000-01-01T00:00:00Z")).await,
        "B since 2000",
    );
    assert_eq!(ids(&found), set(&B_RECORD));
    let resp = server.get("Patient/e-a/$everything?_since=yesterday").await;
    assert_outcome(&resp, 400);

    // `start` and `end` are not supported, nor is anything unknown: left out with a
    // warning, or refused in strict handling.
    let resp = server
        .get("Patient/e-c/$everything?start=2020-01-01&bogus=1")
        .await;
    assert_eq!(ids(&page(&resp, "lenient")), set(&C_RECORD));
    let outcome = entries(&resp.json)
        .into_iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .unwrap_or_else(|| panic!("no warning: {}", resp.describe()));
    let text = outcome["resource"].to_string();
    assert!(text.contains("start") && text.contains("bogus"), "{text}");
    let resp = server
        .get_with(
            "Patient/e-c/$everything?start=2020-01-01",
            &[("prefer", "handling=strict")],
        )
        .await;
    let issue = assert_outcome(&resp, 400);
    assert_eq!(issue["code"], "not-supported", "{issue}");
    assert!(
        issue["diagnostics"].as_str().unwrap().contains("start"),
        "{issue}"
    );
    let resp = server
        .get_with(
            "Patient/e-c/$everything?_type=Observation",
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_outcome(&resp, 400);

    // POST: a Parameters body, or a form.
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueCode": "Account"},
        {"name": "_type", "valueCode": "Patient"},
        {"name": "_count", "valueInteger": 1},
    ]});
    let resp = server.post("Patient/e-a/$everything", &body).await;
    assert_eq!(page(&resp, "POST Parameters"), ["Patient/e-a"]);
    let next = link(&resp.json, "next").unwrap();
    assert_eq!(
        page(&server.get(&next).await, "POST, next page"),
        ["Account/e-acc-a"]
    );
    let req = server
        .request(Method::POST, &server.url("Patient/e-b/$everything"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("_type=Invoice");
    let found = page(&server.send(req).await, "POST form");
    assert_eq!(ids(&found), set(&["Invoice/e-inv-b"]));
    let req = server
        .request(Method::POST, &server.url("Patient/e-b/$everything"))
        .header("content-type", FHIR_JSON)
        .body(r#"{"resourceType": "Patient"}"#);
    assert_outcome(&server.send(req).await, 400);
}

#[tokio::test]
async fn paging_is_stable_and_repeats_nothing() {
    let server = seeded().await;

    let (found, pages) = all_pages(&server, "Patient/e-a/$everything?_count=2").await;
    assert_eq!(ids(&found), set(&A_RECORD));
    assert_eq!(pages, 5, "10 resources, 2 a page");

    // Writes between pages: a resource created meanwhile comes after every one there was.
    let first = server.get("Patient/e-a/$everything?_count=2").await;
    let mut found = page(&first, "page 1");
    assert_eq!(found.len(), 2);
    let invoice = json!({"resourceType": "Invoice", "id": "e-inv-a3", "status": "draft",
        "subject": {"reference": "Patient/e-a"}});
    assert_eq!(server.put("Invoice/e-inv-a3", &invoice).await.status, 201);
    let other = json!({"resourceType": "Patient", "id": "e-d"});
    assert_eq!(server.put("Patient/e-d", &other).await.status, 201);
    let mut next = link(&first.json, "next");
    let mut previous = None;
    while let Some(url) = next.take() {
        let resp = server.get(&url).await;
        let items = page(&resp, &url);
        assert!(items.len() <= 2, "{url}: {items:?}");
        found.extend(items);
        previous = link(&resp.json, "previous");
        next = link(&resp.json, "next");
    }
    assert_unique(&found, "A while writing");
    let mut expected = set(&A_RECORD);
    expected.insert("Invoice/e-inv-a3".into());
    assert_eq!(ids(&found), expected);
    assert_eq!(found.last().map(String::as_str), Some("Invoice/e-inv-a3"));

    // `previous` goes back one page.
    let back = page(&server.get(&previous.unwrap()).await, "previous");
    assert_eq!(back, found[found.len() - 3..found.len() - 1]);

    // A cursor works only with the request that issued it.
    let next = link(&first.json, "next").unwrap();
    let cursor = next.split("_cursor=").nth(1).unwrap();
    let resp = server
        .get(&format!(
            "Patient/e-b/$everything?_count=2&_cursor={cursor}"
        ))
        .await;
    assert_outcome(&resp, 400);
    let resp = server
        .get(&format!(
            "Patient/e-a/$everything?_count=3&_cursor={cursor}"
        ))
        .await;
    assert_outcome(&resp, 400);
    let resp = server
        .get("Patient/e-a/$everything?_count=2&_cursor=eyJrIjoxfQ.AAAAAAAAAAAAAAAAAAAAAA")
        .await;
    assert_outcome(&resp, 400);
}

#[tokio::test]
async fn unknown_and_deleted_patients() {
    let server = seeded().await;
    assert_outcome(&server.get("Patient/nobody/$everything").await, 404);
    assert_outcome(&server.get("Patient/e-gone/$everything").await, 410);
    assert_outcome(&server.get("Account/e-acc-a/$everything").await, 404);
    assert_outcome(&server.get("Account/$everything").await, 404);
    assert_outcome(&server.get("Observation/x/$everything").await, 404);
    let resp = server
        .send(server.request(Method::DELETE, &server.url("Patient/e-a/$everything")))
        .await;
    assert_outcome(&resp, 405);
}

#[tokio::test]
async fn type_level_is_every_record_once() {
    let server = seeded().await;
    let mut expected = set(&A_RECORD);
    expected.extend(set(&B_RECORD));
    expected.extend(set(&C_RECORD));

    let found = page(&server.get("Patient/$everything").await, "type level");
    assert_unique(&found, "type level");
    assert_eq!(
        ids(&found),
        expected,
        "the deleted patient's Account is not there"
    );

    let (found, _) = all_pages(&server, "Patient/$everything?_count=3").await;
    assert_eq!(ids(&found), expected, "paged by 3");

    let found = page(
        &server.get("Patient/$everything?_type=Patient,Group").await,
        "type level, _type",
    );
    assert_eq!(
        ids(&found),
        set(&[
            "Patient/e-a",
            "Patient/e-b",
            "Patient/e-c",
            "Group/e-grp-ref",
            "Group/e-grp-ab",
            "Group/e-grp-b"
        ])
    );
}

/// Patient A of the Keycloak realm (`patient` claim `demo-patient-a`) and patient B.
const A: &str = "demo-patient-a";
const B: &str = "demo-patient-b";

#[tokio::test]
async fn a_patient_token_reaches_its_own_record_only() {
    let Some(kc) = keycloak().await else { return };
    let server = kc.server(&[]).await;
    let admin = Caller::new(&server, &kc.system_token("system/*.cruds").await);
    let resources = [
        json!({"resourceType": "Organization", "id": "s-org"}),
        json!({"resourceType": "Practitioner", "id": "s-doc"}),
        json!({"resourceType": "Patient", "id": A,
            "managingOrganization": {"reference": "Organization/s-org"}}),
        json!({"resourceType": "Patient", "id": B,
            "generalPractitioner": [{"reference": "Practitioner/s-doc"}]}),
        json!({"resourceType": "Account", "id": "s-acc-a", "status": "active",
            "subject": [{"reference": format!("Patient/{A}")}]}),
        json!({"resourceType": "Account", "id": "s-acc-b", "status": "active",
            "subject": [{"reference": format!("Patient/{B}")}]}),
        json!({"resourceType": "Invoice", "id": "s-inv-a", "status": "issued",
            "subject": {"reference": format!("Patient/{A}")},
            "participant": [{"actor": {"reference": "Practitioner/s-doc"}}]}),
        json!({"resourceType": "Invoice", "id": "s-inv-b", "status": "issued",
            "subject": {"reference": format!("Patient/{B}")}}),
        json!({"resourceType": "Group", "id": "s-grp-b", "type": "person", "actual": true,
            "member": [{"entity": {"reference": format!("Patient/{B}")}}]}),
    ];
    for resource in &resources {
        let path = path_of(resource);
        let resp = admin.put(&path, resource).await;
        assert!(matches!(resp.status, 200 | 201), "{}", resp.describe());
    }
    let a_record = [
        "Organization/s-org",
        "Practitioner/s-doc",
        "Patient/demo-patient-a",
        "Account/s-acc-a",
        "Invoice/s-inv-a",
    ];

    let patient_a = Caller::new(
        &server,
        &kc.user_token("patient-a", "launch/patient patient/*.rs")
            .await,
    );
    let found = patient_a.get(&format!("Patient/{A}/$everything")).await;
    assert_eq!(ids(&page(&found, "A's own record")), set(&a_record));
    let found = patient_a.get("Patient/$everything").await;
    assert_eq!(ids(&page(&found, "type level for A")), set(&a_record));
    assert_outcome(
        &patient_a.get(&format!("Patient/{B}/$everything")).await,
        404,
    );

    // Types the token does not grant are left out, or 403 when `_type` names them.
    let narrow = Caller::new(
        &server,
        &kc.user_token(
            "patient-a",
            "launch/patient patient/Patient.rs patient/Invoice.rs",
        )
        .await,
    );
    let found = narrow.get(&format!("Patient/{A}/$everything")).await;
    assert_eq!(
        ids(&page(&found, "Patient and Invoice only")),
        set(&["Patient/demo-patient-a", "Invoice/s-inv-a"])
    );
    assert_outcome(
        &narrow
            .get(&format!("Patient/{A}/$everything?_type=Account"))
            .await,
        403,
    );

    // A backend with system/ scopes sees B's record whole.
    let backend = Caller::new(&server, &kc.system_token("system/*.rs").await);
    let found = backend.get(&format!("Patient/{B}/$everything")).await;
    assert_eq!(
        ids(&page(&found, "B for the backend")),
        set(&[
            "Patient/demo-patient-b",
            "Practitioner/s-doc",
            "Account/s-acc-b",
            "Invoice/s-inv-b",
            "Group/s-grp-b"
        ])
    );
}
