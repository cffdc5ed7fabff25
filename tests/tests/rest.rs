//! The RESTful interactions: create, read, vread, update, delete, history,
//! their headers, `Prefer`, conditional read and create, content negotiation
//! and history paging.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, SystemTime};

use ferrum_tests::{
    FHIR_JSON, FHIR_XML, Resp, TestServer, assert_outcome, entries, is_fhir_id, json, link, parse,
    parse_http_date, parse_instant, unique, without_server_meta,
};
use reqwest::Method;
use serde_json::Value;

fn patient(family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "active": true,
        "name": [{"family": family, "given": ["Ann", "Marie"]}],
        "gender": "female",
        "birthDate": "1980-01-02"
    })
}

fn with_id(mut resource: Value, id: &str) -> Value {
    resource["id"] = json!(id);
    resource
}

/// The checks every successful single-resource answer passes.
#[track_caller]
fn assert_resource_headers(resp: &Resp, version: &str) {
    assert!(resp.is_fhir_json(), "content type: {}", resp.describe());
    assert_eq!(
        resp.etag(),
        Some(format!("W/\"{version}\"").as_str()),
        "ETag: {}",
        resp.describe()
    );
    assert_eq!(resp.version_id(), Some(version), "{}", resp.describe());
    let last_updated = parse_instant(resp.json["meta"]["lastUpdated"].as_str().unwrap());
    let last_modified = parse_http_date(resp.header("last-modified").expect("Last-Modified"));
    let last_modified: chrono::DateTime<chrono::Utc> = last_modified.into();
    assert_eq!(
        last_modified.timestamp(),
        last_updated.timestamp(),
        "Last-Modified is meta.lastUpdated to the second: {}",
        resp.describe()
    );
}

#[tokio::test]
async fn create_assigns_id_and_version_and_answers_201_with_location() {
    let server = TestServer::start().await;
    let mut sent = patient("Create");
    sent["id"] = json!("client-chosen-id");
    sent["meta"] = json!({
        "versionId": "42",
        "lastUpdated": "2001-01-01T00:00:00Z",
        "profile": ["http://example.org/StructureDefinition/p"],
        "tag": [{"system": "http://example.org/tags", "code": "t1"}]
    });
    let resp = server.post("Patient", &sent).await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    assert_resource_headers(&resp, "1");
    let id = resp.id().expect("an id").to_owned();
    assert_ne!(id, "client-chosen-id", "the body id is replaced on create");
    assert!(is_fhir_id(&id), "server id {id:?} is a valid FHIR id");
    assert_eq!(
        resp.header("location"),
        Some(format!("{}/Patient/{id}/_history/1", server.base).as_str()),
        "{}",
        resp.describe()
    );
    let last_updated = parse_instant(resp.json["meta"]["lastUpdated"].as_str().unwrap());
    assert!(
        last_updated.timestamp() > 1_700_000_000,
        "lastUpdated is set by the server, not kept from the client"
    );
    // Everything else is stored as sent, including the client's profile and tag.
    let mut expected = without_server_meta(&sent);
    expected["id"] = json!(id);
    assert_eq!(without_server_meta(&resp.json), expected);

    let read = server.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, 200, "{}", read.describe());
    assert_resource_headers(&read, "1");
    assert_eq!(read.json, resp.json, "read answers what create answered");
}

#[tokio::test]
async fn create_without_id_and_two_creates_get_distinct_ids() {
    let server = TestServer::start().await;
    let a = server.create(&patient("One")).await;
    let b = server.create(&patient("Two")).await;
    assert_ne!(a["id"], b["id"]);
    for rtype in ferrum_tests::RESOURCE_TYPES {
        let body = minimal(rtype);
        let created = server.create(&body).await;
        assert_eq!(created["resourceType"], rtype);
        assert_eq!(created["meta"]["versionId"], "1");
    }
}

fn minimal(rtype: &str) -> Value {
    match rtype {
        "Patient" => patient("Minimal"),
        "Account" => json!({"resourceType": "Account", "status": "active", "name": "Main"}),
        "Invoice" => parse(
            r#"{"resourceType": "Invoice", "status": "draft",
                "totalGross": {"value": 1.50, "currency": "EUR"}}"#,
        ),
        "Organization" => json!({"resourceType": "Organization", "name": "Acme"}),
        "Practitioner" => json!({"resourceType": "Practitioner", "name": [{"family": "Doc"}]}),
        "Group" => json!({"resourceType": "Group", "type": "person", "actual": true}),
        other => panic!("no fixture for {other}"),
    }
}

#[tokio::test]
async fn prefer_header_chooses_the_create_body() {
    let server = TestServer::start().await;
    let minimal_resp = server
        .send(
            server
                .request(Method::POST, "Patient")
                .header("content-type", FHIR_JSON)
                .header("prefer", "return=minimal")
                .body(patient("Minimal").to_string()),
        )
        .await;
    assert_eq!(minimal_resp.status, 201, "{}", minimal_resp.describe());
    assert!(
        minimal_resp.text.is_empty(),
        "return=minimal has no body: {}",
        minimal_resp.describe()
    );
    let location = minimal_resp
        .header("location")
        .expect("Location")
        .to_owned();
    assert!(location.starts_with(&format!("{}/Patient/", server.base)));
    assert!(location.ends_with("/_history/1"), "{location}");
    assert_eq!(minimal_resp.etag(), Some("W/\"1\""));
    let id = location
        .trim_start_matches(&format!("{}/Patient/", server.base))
        .trim_end_matches("/_history/1");
    server.read_json("Patient", id).await;

    let outcome = server
        .send(
            server
                .request(Method::POST, "Patient")
                .header("content-type", FHIR_JSON)
                .header("prefer", "return=OperationOutcome")
                .body(patient("Outcome").to_string()),
        )
        .await;
    assert_eq!(outcome.status, 201, "{}", outcome.describe());
    assert!(outcome.is_fhir_json(), "{}", outcome.describe());
    assert_eq!(
        outcome.json["resourceType"],
        "OperationOutcome",
        "{}",
        outcome.describe()
    );
    assert!(outcome.header("location").is_some());

    let representation = server
        .send(
            server
                .request(Method::POST, "Patient")
                .header("content-type", FHIR_JSON)
                .header("prefer", "return=representation")
                .body(patient("Repr").to_string()),
        )
        .await;
    assert_eq!(representation.status, 201, "{}", representation.describe());
    assert_eq!(representation.json["resourceType"], "Patient");
    assert_eq!(representation.json["name"][0]["family"], "Repr");
}

#[tokio::test]
async fn read_unknown_id_is_404_and_unknown_type_is_404() {
    let server = TestServer::start().await;
    let resp = server.get("Patient/no-such-patient").await;
    assert_outcome(&resp, 404);
    let resp = server.get("Observation/x").await;
    assert_outcome(&resp, 404);
    let resp = server.get("NotAType/x").await;
    assert_outcome(&resp, 404);
    let resp = server.get("NotAType").await;
    assert_outcome(&resp, 404);
}

#[tokio::test]
async fn update_existing_increments_the_version_and_vread_returns_each_version() {
    let server = TestServer::start().await;
    let created = server.create(&patient("Before")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let mut changed = with_id(patient("After"), &id);
    changed["meta"] = json!({"versionId": "7", "lastUpdated": "2001-01-01T00:00:00Z"});
    let resp = server.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_resource_headers(&resp, "2");
    assert_eq!(resp.json["name"][0]["family"], "After");
    assert!(
        parse_instant(resp.json["meta"]["lastUpdated"].as_str().unwrap())
            > parse_instant(created["meta"]["lastUpdated"].as_str().unwrap()),
        "lastUpdated moves forward"
    );
    assert_eq!(
        without_server_meta(&resp.json),
        without_server_meta(&changed)
    );

    let read = server.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, 200);
    assert_resource_headers(&read, "2");
    assert_eq!(read.json, resp.json);

    let v1 = server.get(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(v1.status, 200, "{}", v1.describe());
    assert_resource_headers(&v1, "1");
    assert_eq!(v1.json, created, "vread 1 answers the first version");
    let v2 = server.get(&format!("Patient/{id}/_history/2")).await;
    assert_eq!(v2.status, 200, "{}", v2.describe());
    assert_eq!(v2.json, resp.json);
    assert_outcome(&server.get(&format!("Patient/{id}/_history/3")).await, 404);
    assert_outcome(&server.get("Patient/nobody/_history/1").await, 404);
}

#[tokio::test]
async fn update_as_create_answers_201_at_the_client_id() {
    let server = TestServer::start().await;
    let id = unique("uac");
    let resp = server
        .put(&format!("Patient/{id}"), &with_id(patient("New"), &id))
        .await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    assert_resource_headers(&resp, "1");
    assert_eq!(resp.id(), Some(id.as_str()));
    assert_eq!(
        resp.header("location"),
        Some(format!("{}/Patient/{id}/_history/1", server.base).as_str())
    );
    let again = server
        .put(&format!("Patient/{id}"), &with_id(patient("New"), &id))
        .await;
    assert_eq!(again.status, 200, "{}", again.describe());
    assert_eq!(again.version_id(), Some("2"));
    // Every type supports update-as-create.
    for rtype in ferrum_tests::RESOURCE_TYPES {
        let id = unique("uac");
        let resp = server
            .put(&format!("{rtype}/{id}"), &with_id(minimal(rtype), &id))
            .await;
        assert_eq!(resp.status, 201, "{rtype}: {}", resp.describe());
        let read = server.read_json(rtype, &id).await;
        assert_eq!(without_server_meta(&read), with_id(minimal(rtype), &id));
    }
}

#[tokio::test]
async fn if_match_guards_updates() {
    let server = TestServer::start().await;
    let id = unique("ifm");
    let path = format!("Patient/{id}");
    server.upsert(&with_id(patient("V1"), &id)).await;

    let resp = server
        .put_if_match(&path, &with_id(patient("V2"), &id), "W/\"1\"")
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.version_id(), Some("2"));

    let stale = server
        .put_if_match(&path, &with_id(patient("Stale"), &id), "W/\"1\"")
        .await;
    assert_outcome(&stale, 412);
    let ahead = server
        .put_if_match(&path, &with_id(patient("Ahead"), &id), "W/\"3\"")
        .await;
    assert_outcome(&ahead, 412);
    assert_eq!(
        server.read_json("Patient", &id).await["name"][0]["family"],
        "V2"
    );

    // The strong form of the same version is accepted too.
    let strong = server
        .put_if_match(&path, &with_id(patient("V3"), &id), "\"2\"")
        .await;
    assert_eq!(strong.status, 200, "{}", strong.describe());
    assert_eq!(strong.version_id(), Some("3"));
    let history = server.history(&format!("{path}/_history")).await;
    assert_eq!(history.len(), 3, "failed updates leave no version");
}

#[tokio::test]
async fn delete_leaves_a_tombstone_and_history() {
    let server = TestServer::start().await;
    let created = server.create(&patient("Doomed")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("Patient/{id}");
    let updated = server.put(&path, &with_id(patient("Doomed2"), &id)).await;
    assert_eq!(updated.status, 200);

    let resp = server.delete(&path).await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    assert!(resp.text.is_empty(), "204 has no body: {}", resp.describe());

    assert_outcome(&server.get(&path).await, 410);
    assert_outcome(&server.get(&format!("{path}/_history/3")).await, 410);
    let v1 = server.get(&format!("{path}/_history/1")).await;
    assert_eq!(
        v1.status,
        200,
        "older versions stay readable: {}",
        v1.describe()
    );
    assert_eq!(v1.json, created);

    // Deleting again changes nothing; deleting the unknown is fine too.
    let again = server.delete(&path).await;
    assert_eq!(again.status, 204, "{}", again.describe());
    let unknown = server.delete("Patient/never-existed").await;
    assert_eq!(unknown.status, 204, "{}", unknown.describe());

    let history = server.pages(&format!("{path}/_history")).await;
    assert_eq!(history[0]["type"], "history");
    assert_eq!(history[0]["total"], 3, "POST, PUT and one DELETE");
    let all: Vec<Value> = history.iter().flat_map(entries).collect();
    assert_eq!(all.len(), 3);
    let tombstone = &all[0];
    assert_eq!(tombstone["request"]["method"], "DELETE");
    assert!(
        tombstone.get("resource").is_none(),
        "a deletion has no resource"
    );
    assert_eq!(tombstone["response"]["etag"], "W/\"3\"");
    assert!(
        tombstone["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("204"),
        "{tombstone}"
    );
    assert_eq!(all[1]["request"]["method"], "PUT");
    assert_eq!(all[2]["request"]["method"], "POST");
    assert!(
        server
            .history("Patient/never-existed/_history")
            .await
            .is_empty(),
        "deleting an unknown id writes nothing"
    );
}

#[tokio::test]
async fn update_after_delete_recreates_with_the_next_version() {
    let server = TestServer::start().await;
    let id = unique("phoenix");
    let path = format!("Patient/{id}");
    server.upsert(&with_id(patient("First"), &id)).await;
    assert_eq!(server.delete(&path).await.status, 204);
    let resp = server.put(&path, &with_id(patient("Again"), &id)).await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    assert_resource_headers(&resp, "3");
    assert_eq!(
        server.read_json("Patient", &id).await["name"][0]["family"],
        "Again"
    );
    let methods: Vec<Value> = server
        .history(&format!("{path}/_history"))
        .await
        .iter()
        .map(|e| e["request"]["method"].clone())
        .collect();
    assert_eq!(methods, vec![json!("PUT"), json!("DELETE"), json!("PUT")]);
}

#[tokio::test]
async fn instance_history_lists_every_version_newest_first() {
    let server = TestServer::start().await;
    let created = server.create(&patient("H1")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("Patient/{id}");
    let v2 = server.put(&path, &with_id(patient("H2"), &id)).await;
    assert_eq!(v2.status, 200);
    assert_eq!(server.delete(&path).await.status, 204);

    let resp = server.get(&format!("{path}/_history")).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(resp.is_fhir_json());
    let bundle = &resp.json;
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "history");
    assert_eq!(bundle["total"], 3);
    let all = entries(bundle);
    assert_eq!(all.len(), 3);
    let expected = [
        ("DELETE", "204", "3"),
        ("PUT", "200", "2"),
        ("POST", "201", "1"),
    ];
    for (entry, (method, status, version)) in all.iter().zip(expected) {
        assert_eq!(
            entry["fullUrl"],
            format!("{}/Patient/{id}", server.base),
            "{entry}"
        );
        assert_eq!(entry["request"]["method"], method, "{entry}");
        let url = entry["request"]["url"].as_str().expect("request.url");
        if method == "POST" {
            assert!(
                url.ends_with("Patient") || url.ends_with(&format!("Patient/{id}")),
                "{url}"
            );
        } else {
            assert!(url.ends_with(&format!("Patient/{id}")), "{url}");
        }
        assert!(
            entry["response"]["status"]
                .as_str()
                .unwrap()
                .starts_with(status),
            "{entry}"
        );
        assert_eq!(entry["response"]["etag"], format!("W/\"{version}\""));
        let modified = parse_instant(entry["response"]["lastModified"].as_str().unwrap());
        if method != "DELETE" {
            assert_eq!(entry["resource"]["meta"]["versionId"], version);
            let updated = parse_instant(entry["resource"]["meta"]["lastUpdated"].as_str().unwrap());
            assert_eq!(modified, updated, "{entry}");
        }
    }
    assert_eq!(all[2]["resource"], created);
    assert_eq!(all[1]["resource"], v2.json);
}

#[tokio::test]
async fn type_and_system_history_cover_the_right_resources() {
    let server = TestServer::start().await;
    let p1 = server.create(&patient("T1")).await;
    let account = server.create(&minimal("Account")).await;
    let p1_id = p1["id"].as_str().unwrap();
    let p1v2 = server
        .put(&format!("Patient/{p1_id}"), &with_id(patient("T1b"), p1_id))
        .await;
    assert_eq!(p1v2.status, 200);
    let p2 = server.create(&patient("T2")).await;

    let patients = server.pages("Patient/_history").await;
    assert_eq!(patients[0]["type"], "history");
    let entries_p: Vec<Value> = patients.iter().flat_map(entries).collect();
    let seen: Vec<(String, String)> = entries_p
        .iter()
        .map(|e| {
            (
                e["resource"]["id"].as_str().unwrap().to_owned(),
                e["resource"]["meta"]["versionId"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (p2["id"].as_str().unwrap().to_owned(), "1".to_owned()),
            (p1_id.to_owned(), "2".to_owned()),
            (p1_id.to_owned(), "1".to_owned()),
        ],
        "type history: the Patient versions only, newest first"
    );
    if let Some(total) = patients[0].get("total") {
        assert_eq!(total, 3);
    }

    let system = server.history("_history").await;
    assert_eq!(system.len(), 4, "system history has every version");
    let types: Vec<&str> = system
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["Patient", "Patient", "Account", "Patient"]);
    assert_eq!(system[2]["resource"], account);
    assert_eq!(
        system[2]["fullUrl"],
        format!(
            "{}/Account/{}",
            server.base,
            account["id"].as_str().unwrap()
        )
    );
    assert!(server.history("Group/_history").await.is_empty());
}

#[tokio::test]
async fn history_pages_follow_next_links() {
    let server = TestServer::start().await;
    let id = unique("paged");
    let path = format!("Patient/{id}");
    for n in 1..=7 {
        let resp = server
            .put(&path, &with_id(patient(&format!("V{n}")), &id))
            .await;
        assert!(
            resp.status == 200 || resp.status == 201,
            "{}",
            resp.describe()
        );
    }
    let first = server.get(&format!("{path}/_history?_count=3")).await;
    assert_eq!(first.status, 200, "{}", first.describe());
    assert_eq!(first.json["total"], 7);
    let pages = server.pages(&format!("{path}/_history?_count=3")).await;
    let sizes: Vec<usize> = pages.iter().map(|p| entries(p).len()).collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    for page in &pages[..2] {
        let next = link(page, "next").unwrap();
        assert!(next.starts_with(&server.base), "absolute next link: {next}");
    }
    assert!(
        link(&pages[2], "next").is_none(),
        "the last page has no next"
    );
    let versions: Vec<String> = pages
        .iter()
        .flat_map(entries)
        .map(|e| {
            e["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(versions, vec!["7", "6", "5", "4", "3", "2", "1"]);

    // Type history pages the same way.
    let other = unique("paged");
    server.upsert(&with_id(patient("Other"), &other)).await;
    let type_pages = server.pages("Patient/_history?_count=3").await;
    let sizes: Vec<usize> = type_pages.iter().map(|p| entries(p).len()).collect();
    assert_eq!(sizes, vec![3, 3, 2]);
    let system_pages = server.pages("_history?_count=5").await;
    let sizes: Vec<usize> = system_pages.iter().map(|p| entries(p).len()).collect();
    assert_eq!(sizes, vec![5, 3]);
}

#[tokio::test]
async fn history_since_keeps_versions_from_that_instant() {
    let server = TestServer::start().await;
    let id = unique("since");
    let path = format!("Patient/{id}");
    server.upsert(&with_id(patient("S1"), &id)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let v2 = server.upsert(&with_id(patient("S2"), &id)).await;
    let since = v2.json["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.upsert(&with_id(patient("S3"), &id)).await;

    let page = server
        .send(
            server
                .request(Method::GET, &format!("{path}/_history"))
                .query(&[("_since", since.as_str())]),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.describe());
    let versions: Vec<&str> = page.json["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(versions, vec!["3", "2"], "_since={since}");

    let type_level = server
        .send(
            server
                .request(Method::GET, "Patient/_history")
                .query(&[("_since", since.as_str())]),
        )
        .await;
    assert_eq!(
        entries(&type_level.json).len(),
        2,
        "{}",
        type_level.describe()
    );

    let future = server
        .get(&format!("{path}/_history?_since=2999-01-01T00:00:00Z"))
        .await;
    assert_eq!(future.status, 200, "{}", future.describe());
    assert!(entries(&future.json).is_empty());
    let past = server
        .get(&format!("{path}/_history?_since=2000-01-01T00:00:00Z"))
        .await;
    assert_eq!(entries(&past.json).len(), 3);
}

#[tokio::test]
async fn conditional_read_answers_304_when_unchanged() {
    let server = TestServer::start().await;
    let id = unique("cond-read");
    let path = format!("Patient/{id}");
    let first = server.upsert(&with_id(patient("C1"), &id)).await;
    let last_modified = first.header("last-modified").unwrap().to_owned();

    let same = server
        .get_with(&path, &[("if-none-match", "W/\"1\"")])
        .await;
    assert_eq!(same.status, 304, "{}", same.describe());
    assert!(same.text.is_empty(), "304 has no body");
    assert_eq!(same.etag(), Some("W/\"1\""), "304 repeats the ETag");
    assert_eq!(
        same.header("vary"),
        Some("accept"),
        "304 repeats the answer's Vary"
    );

    let other = server
        .get_with(&path, &[("if-none-match", "W/\"9\"")])
        .await;
    assert_eq!(other.status, 200, "{}", other.describe());

    let later = httpdate::fmt_http_date(parse_http_date(&last_modified) + Duration::from_secs(1));
    let resp = server
        .get_with(&path, &[("if-modified-since", later.as_str())])
        .await;
    assert_eq!(
        resp.status,
        304,
        "If-Modified-Since {later}: {}",
        resp.describe()
    );
    let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(86_400));
    let resp = server
        .get_with(&path, &[("if-modified-since", future.as_str())])
        .await;
    assert_eq!(resp.status, 304, "{}", resp.describe());
    let earlier =
        httpdate::fmt_http_date(parse_http_date(&last_modified) - Duration::from_secs(3600));
    let resp = server
        .get_with(&path, &[("if-modified-since", earlier.as_str())])
        .await;
    assert_eq!(
        resp.status,
        200,
        "If-Modified-Since {earlier}: {}",
        resp.describe()
    );

    // After an update the old ETag no longer matches.
    server.upsert(&with_id(patient("C2"), &id)).await;
    let changed = server
        .get_with(&path, &[("if-none-match", "W/\"1\"")])
        .await;
    assert_eq!(changed.status, 200, "{}", changed.describe());
    assert_eq!(changed.version_id(), Some("2"));
    let same = server
        .get_with(&path, &[("if-none-match", "W/\"2\"")])
        .await;
    assert_eq!(same.status, 304, "{}", same.describe());
}

/// A cache revalidates with exactly the `Last-Modified` it was given
/// (RFC 9110 13.1.3): the resource has not changed since, so 304.
#[tokio::test]
async fn if_modified_since_with_the_returned_last_modified_is_304() {
    let server = TestServer::start().await;
    let id = unique("ims");
    let first = server.upsert(&with_id(patient("I1"), &id)).await;
    let last_modified = first.header("last-modified").unwrap().to_owned();
    let resp = server
        .get_with(
            &format!("Patient/{id}"),
            &[("if-modified-since", last_modified.as_str())],
        )
        .await;
    assert_eq!(
        resp.status,
        304,
        "If-Modified-Since {last_modified}: {}",
        resp.describe()
    );
}

async fn conditional_create(server: &TestServer, body: &Value, criteria: &str) -> Resp {
    server
        .send(
            server
                .request(Method::POST, body["resourceType"].as_str().unwrap())
                .header("content-type", FHIR_JSON)
                .header("if-none-exist", criteria)
                .body(body.to_string()),
        )
        .await
}

async fn count_versions(server: &TestServer, path: &str) -> usize {
    server.history(path).await.len()
}

#[tokio::test]
async fn conditional_create_creates_once() {
    let server = TestServer::start().await;
    let system = "http://example.org/mrn";
    let value = unique("mrn");
    let mut body = patient("Cond");
    body["identifier"] = json!([{"system": system, "value": value}]);
    let criteria = format!("identifier={system}|{value}");

    let first = conditional_create(&server, &body, &criteria).await;
    assert_eq!(first.status, 201, "no match creates: {}", first.describe());
    let id = first.id().unwrap().to_owned();

    let second = conditional_create(&server, &body, &criteria).await;
    assert_eq!(
        second.status,
        200,
        "one match answers it: {}",
        second.describe()
    );
    assert_eq!(second.id(), Some(id.as_str()));
    assert_eq!(second.version_id(), Some("1"));

    let by_value = conditional_create(&server, &body, &format!("identifier={value}")).await;
    assert_eq!(by_value.status, 200, "{}", by_value.describe());
    assert_eq!(by_value.id(), Some(id.as_str()));

    let by_id = conditional_create(&server, &patient("ById"), &format!("_id={id}")).await;
    assert_eq!(by_id.status, 200, "{}", by_id.describe());
    assert_eq!(by_id.id(), Some(id.as_str()));
    assert_eq!(by_id.json["name"][0]["family"], "Cond", "the existing one");

    assert_eq!(
        count_versions(&server, "Patient/_history").await,
        1,
        "matches create nothing"
    );

    let other_system = conditional_create(
        &server,
        &body,
        &format!("identifier=http://example.org/other|{value}"),
    )
    .await;
    assert_eq!(other_system.status, 201, "{}", other_system.describe());
    assert_ne!(other_system.id(), Some(id.as_str()));

    let unknown_id = conditional_create(&server, &patient("NoSuch"), "_id=no-such-id").await;
    assert_eq!(unknown_id.status, 201, "{}", unknown_id.describe());
    assert_ne!(
        unknown_id.id(),
        Some("no-such-id"),
        "the id is still the server's"
    );
}

#[tokio::test]
async fn conditional_create_with_several_matches_is_412() {
    let server = TestServer::start().await;
    let value = unique("dup");
    let mut body = patient("Twin");
    body["identifier"] = json!([{"system": "http://example.org/mrn", "value": value}]);
    server.create(&body).await;
    server.create(&body).await;
    let resp = conditional_create(
        &server,
        &body,
        &format!("identifier=http://example.org/mrn|{value}"),
    )
    .await;
    assert_outcome(&resp, 412);
    assert_eq!(count_versions(&server, "Patient/_history").await, 2);
}

#[tokio::test]
async fn conditional_create_ignores_deleted_resources_and_rejects_unknown_parameters() {
    let server = TestServer::start().await;
    let value = unique("gone");
    let mut body = patient("Gone");
    body["identifier"] = json!([{"system": "http://example.org/mrn", "value": value}]);
    let created = server.create(&body).await;
    let old_id = created["id"].as_str().unwrap();
    assert_eq!(
        server.delete(&format!("Patient/{old_id}")).await.status,
        204
    );
    let resp = conditional_create(
        &server,
        &body,
        &format!("identifier=http://example.org/mrn|{value}"),
    )
    .await;
    assert_eq!(
        resp.status,
        201,
        "a deleted resource is no match: {}",
        resp.describe()
    );
    assert_ne!(resp.id(), Some(old_id));

    let before = count_versions(&server, "Patient/_history").await;
    let resp = conditional_create(&server, &body, "fruit=banana").await;
    assert_outcome(&resp, 400);
    assert_eq!(count_versions(&server, "Patient/_history").await, before);
}

#[tokio::test]
async fn json_is_served_for_json_accept_headers_and_format() {
    let server = TestServer::start().await;
    let id = unique("neg");
    server.upsert(&with_id(patient("Neg"), &id)).await;
    let path = format!("Patient/{id}");
    for accept in [
        FHIR_JSON,
        "application/fhir+json; charset=utf-8",
        "*/*",
        "text/plain, application/fhir+json",
    ] {
        let resp = server.get_with(&path, &[("accept", accept)]).await;
        assert_eq!(resp.status, 200, "Accept {accept}: {}", resp.describe());
        assert!(resp.is_fhir_json(), "Accept {accept}: {}", resp.describe());
        assert_eq!(resp.id(), Some(id.as_str()));
    }
    let resp = server
        .get_with(&path, &[("accept", "application/json")])
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(
        resp.is_fhir_json() || resp.content_type() == "application/json;charset=utf-8",
        "{}",
        resp.describe()
    );
    assert_eq!(resp.id(), Some(id.as_str()));

    let resp = server.get(&format!("{path}?_format=json")).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(resp.is_fhir_json());
    let resp = server
        .get_with(&format!("{path}?_format=json"), &[("accept", "text/plain")])
        .await;
    assert_eq!(
        resp.status,
        200,
        "_format wins over Accept: {}",
        resp.describe()
    );
    assert!(resp.is_fhir_json());

    let raw = server.raw("GET", &path, &[], b"").await;
    assert_eq!(raw.status, 200, "no Accept: {}", raw.describe());
    assert!(raw.is_fhir_json(), "no Accept: {}", raw.describe());
    assert_eq!(raw.id(), Some(id.as_str()));
}

#[tokio::test]
async fn unacceptable_accept_is_406() {
    let server = TestServer::start().await;
    let id = unique("na");
    server.upsert(&with_id(patient("NA"), &id)).await;
    for accept in ["text/plain", "text/html", "image/png"] {
        let resp = server
            .get_with(&format!("Patient/{id}"), &[("accept", accept)])
            .await;
        assert_outcome(&resp, 406);
    }
    assert_outcome(
        &server
            .get_with("metadata", &[("accept", "text/plain")])
            .await,
        406,
    );
}

fn strip_xml_declaration(text: &str) -> &str {
    let text = text.trim_start_matches('\u{feff}').trim_start();
    if text.starts_with("<?xml") {
        text.find("?>")
            .map_or(text, |end| text[end + 2..].trim_start())
    } else {
        text
    }
}

#[tokio::test]
async fn xml_is_served_when_asked_for() {
    let server = TestServer::start().await;
    let id = unique("xml");
    server.upsert(&with_id(patient("Xml"), &id)).await;
    let path = format!("Patient/{id}");
    for resp in [
        server.get_with(&path, &[("accept", FHIR_XML)]).await,
        server.get(&format!("{path}?_format=xml")).await,
    ] {
        assert_eq!(resp.status, 200, "{}", resp.describe());
        assert!(
            resp.content_type().starts_with(FHIR_XML),
            "{}",
            resp.describe()
        );
        let body = strip_xml_declaration(&resp.text);
        assert!(
            body.starts_with("<Patient xmlns=\"http://hl7.org/fhir\""),
            "{}",
            resp.describe()
        );
        assert!(body.contains(&format!("value=\"{id}\"")), "{body}");
        assert!(body.contains("value=\"Xml\""), "{body}");
        assert!(body.trim_end().ends_with("</Patient>"), "{body}");
        // The format follows `Accept`: a cache must not hand this answer to a JSON client.
        assert_eq!(resp.header("vary"), Some("accept"), "{}", resp.describe());
    }
}

#[tokio::test]
async fn writes_accept_json_media_types_with_parameters() {
    let server = TestServer::start().await;
    for content_type in [
        FHIR_JSON,
        "application/fhir+json; charset=utf-8",
        "application/json",
        "application/json;charset=UTF-8",
    ] {
        let resp = server
            .send(
                server
                    .request(Method::POST, "Patient")
                    .header("content-type", content_type)
                    .body(patient("Ct").to_string()),
            )
            .await;
        assert_eq!(
            resp.status,
            201,
            "Content-Type {content_type}: {}",
            resp.describe()
        );
    }
}

#[tokio::test]
async fn decimals_keep_their_precision() {
    let server = TestServer::start().await;
    let body = r#"{"resourceType": "Invoice", "status": "issued",
        "totalNet": {"value": 100.00, "currency": "EUR"},
        "totalGross": {"value": 1.50, "currency": "EUR"}}"#;
    let resp = server.post_text("Invoice", body).await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    assert!(resp.text.contains("1.50"), "{}", resp.describe());
    assert!(resp.text.contains("100.00"), "{}", resp.describe());
    let id = resp.id().unwrap().to_owned();
    let read = server.get(&format!("Invoice/{id}")).await;
    assert!(read.text.contains("1.50"), "{}", read.describe());
    assert!(read.text.contains("100.00"), "{}", read.describe());
    let mut expected = parse(body);
    expected["id"] = json!(id);
    assert_eq!(without_server_meta(&read.json), expected);
    let history = server.get(&format!("Invoice/{id}/_history")).await;
    assert!(history.text.contains("1.50"), "{}", history.describe());
}

#[tokio::test]
async fn errors_are_operation_outcomes_and_405_for_unsupported_methods() {
    let server = TestServer::start().await;
    let resp = server
        .send(server.request(Method::PUT, "Patient/_history").body("{}"))
        .await;
    assert_outcome(&resp, 405);
    let resp = server
        .send(
            server
                .request(Method::POST, "Patient/x")
                .header("content-type", FHIR_JSON)
                .body(patient("X").to_string()),
        )
        .await;
    assert_outcome(&resp, 405);
    assert!(server.history("Patient/_history").await.is_empty());
}

#[tokio::test]
async fn xml_create_is_read_back_as_json() {
    let server = TestServer::start().await;
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <active value="true"/>
  <name>
    <family value="Xmlson"/>
    <given value="Ann"/>
  </name>
  <gender value="female"/>
  <birthDate value="1980-01-02"/>
</Patient>"#;
    let resp = server
        .send(
            server
                .request(Method::POST, "Patient")
                .header("content-type", FHIR_XML)
                .body(xml),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    let id = resp
        .header("location")
        .unwrap()
        .split('/')
        .rev()
        .nth(2)
        .unwrap()
        .to_owned();
    let read = server.read_json("Patient", &id).await;
    assert_eq!(
        without_server_meta(&read),
        json!({
            "resourceType": "Patient",
            "id": id,
            "active": true,
            "name": [{"family": "Xmlson", "given": ["Ann"]}],
            "gender": "female",
            "birthDate": "1980-01-02"
        })
    );
    // The same rules apply to XML as to JSON.
    let bad = r#"<Patient xmlns="http://hl7.org/fhir"><gender value="robot"/></Patient>"#;
    let resp = server
        .send(
            server
                .request(Method::POST, "Patient")
                .header("content-type", FHIR_XML)
                .body(bad),
        )
        .await;
    assert_outcome(&resp, 400);
    assert_eq!(server.history("Patient/_history").await.len(), 1);
}

#[tokio::test]
async fn text_round_trips_unchanged() {
    let server = TestServer::start().await;
    let text = r#"{"resourceType": "Patient",
        "name": [{"family": "Müller-Łukasiewicz 山田 \"Q\" \\ 🚑", "given": ["Zoë", "Ægir"]}],
        "text": {"status": "generated",
                 "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Müller &amp; <b>山田</b></p></div>"}}"#;
    let resp = server.post_text("Patient", text).await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    let id = resp.id().unwrap().to_owned();
    let mut expected = parse(text);
    expected["id"] = json!(id);
    assert_eq!(without_server_meta(&resp.json), expected);
    assert_eq!(
        without_server_meta(&server.read_json("Patient", &id).await),
        expected
    );
}

#[tokio::test]
async fn since_accepts_any_zone_offset() {
    let server = TestServer::start().await;
    let id = unique("zone");
    server.upsert(&with_id(patient("Z1"), &id)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let v2 = server.upsert(&with_id(patient("Z2"), &id)).await;
    let since = parse_instant(v2.json["meta"]["lastUpdated"].as_str().unwrap());
    let offset = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
    let shifted = since
        .with_timezone(&offset)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
    assert!(shifted.ends_with("+02:00"), "{shifted}");
    let page = server
        .send(
            server
                .request(Method::GET, &format!("Patient/{id}/_history"))
                .query(&[("_since", shifted.as_str())]),
        )
        .await;
    assert_eq!(page.status, 200, "_since={shifted}: {}", page.describe());
    let versions: Vec<Value> = entries(&page.json)
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].clone())
        .collect();
    assert_eq!(versions, vec![json!("2")], "_since={shifted}");
}

/// Values at the edges of what FHIR allows are accepted and kept as sent.
#[tokio::test]
async fn valid_edge_values_are_accepted() {
    let server = TestServer::start().await;
    let bodies = [
        r#"{"resourceType": "Patient", "birthDate": "2000-02-29"}"#,
        r#"{"resourceType": "Patient", "birthDate": "1980"}"#,
        r#"{"resourceType": "Patient", "birthDate": "1980-07"}"#,
        r#"{"resourceType": "Patient", "deceasedDateTime": "2015-02-07T13:28:17.239+02:00"}"#,
        r#"{"resourceType": "Patient", "deceasedDateTime": "2015"}"#,
        r#"{"resourceType": "Patient", "deceasedBoolean": false}"#,
        r#"{"resourceType": "Patient", "multipleBirthInteger": 2147483647}"#,
        r#"{"resourceType": "Patient", "gender": "unknown"}"#,
        r#"{"resourceType": "Patient", "name": [{"given": ["Ann", null],
            "_given": [null, {"extension": [{"url": "http://example.org/x", "valueString": "v"}]}]}]}"#,
        r#"{"resourceType": "Patient", "_birthDate": {"extension": [{"url": "http://example.org/t", "valueTime": "10:30:00"}]}}"#,
        r#"{"resourceType": "Invoice", "status": "entered-in-error",
            "totalGross": {"value": -0.000100, "currency": "USD"}}"#,
        r#"{"resourceType": "Group", "type": "animal", "actual": false, "quantity": 0}"#,
    ];
    let mut failures = Vec::new();
    for body in bodies {
        let value: Value = match serde_json::from_str(body) {
            Ok(v) => v,
            Err(e) => panic!("bad fixture {body}: {e}"),
        };
        let rtype = value["resourceType"].as_str().unwrap();
        let resp = server.post_text(rtype, body).await;
        if resp.status != 201 {
            failures.push(format!("{body}\n    {}", resp.describe()));
            continue;
        }
        let mut expected = value.clone();
        expected["id"] = json!(resp.id().unwrap());
        if without_server_meta(&resp.json) != expected {
            failures.push(format!("{body}\n    stored as {}", resp.json));
        }
    }
    for id in ["a".repeat(64), "A.b-9.Z".to_owned(), "1".to_owned()] {
        let resp = server
            .put(&format!("Patient/{id}"), &with_id(patient("Edge"), &id))
            .await;
        if resp.status != 201 {
            failures.push(format!("PUT Patient/{id}\n    {}", resp.describe()));
        }
    }
    assert!(
        failures.is_empty(),
        "refused or changed:\n  {}",
        failures.join("\n  ")
    );
}

#[tokio::test]
async fn xml_escapes_text_and_embeds_the_narrative() {
    let server = TestServer::start().await;
    let body = r#"{"resourceType": "Patient",
        "text": {"status": "generated",
                 "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Seen by <b>Dr. Who</b></p></div>"},
        "name": [{"family": "O'Brien & <Sons>", "given": ["Zoë"]}]}"#;
    let created = server.post_text("Patient", body).await;
    assert_eq!(created.status, 201, "{}", created.describe());
    let id = created.id().unwrap().to_owned();
    let resp = server
        .get_with(&format!("Patient/{id}"), &[("accept", FHIR_XML)])
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let xml = strip_xml_declaration(&resp.text);
    assert!(
        xml.contains(r#"<div xmlns="http://www.w3.org/1999/xhtml">"#) && !xml.contains("&lt;div"),
        "the narrative is XHTML inside the XML, not escaped text: {xml}"
    );
    // Whitespace in XHTML mixed content is text: "Seen by Dr. Who" must not
    // become "Seen byDr. Who".
    let seen = xml.find("Seen by").expect("the narrative text");
    assert!(
        xml[seen + "Seen by".len()..].starts_with(char::is_whitespace),
        "the blank before <b> is kept: {xml}"
    );
    assert!(
        (xml.contains("&amp;") || xml.contains("&#38;"))
            && (xml.contains("&lt;Sons") || xml.contains("&#60;Sons")),
        "{xml}"
    );
    assert!(!xml.contains("& <Sons>"), "{xml}");
    assert!(xml.contains("Zoë"), "{xml}");

    let invoice = server
        .post_text(
            "Invoice",
            r#"{"resourceType": "Invoice", "status": "draft", "totalGross": {"value": 1.50, "currency": "EUR"}}"#,
        )
        .await;
    assert_eq!(invoice.status, 201, "{}", invoice.describe());
    let resp = server
        .get(&format!("Invoice/{}?_format=xml", invoice.id().unwrap()))
        .await;
    assert!(resp.text.contains(r#"value="1.50""#), "{}", resp.describe());
}

#[tokio::test]
async fn history_next_links_keep_since_and_count() {
    let server = TestServer::start().await;
    let id = unique("since-paged");
    let path = format!("Patient/{id}");
    server.upsert(&with_id(patient("P1"), &id)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let v2 = server.upsert(&with_id(patient("P2"), &id)).await;
    let since = v2.json["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    for n in 3..=5 {
        server
            .upsert(&with_id(patient(&format!("P{n}")), &id))
            .await;
    }
    let mut url = reqwest::Url::parse(&server.url(&format!("{path}/_history"))).unwrap();
    url.query_pairs_mut()
        .append_pair("_since", &since)
        .append_pair("_count", "1");
    let pages = server.pages(url.as_str()).await;
    let versions: Vec<String> = pages
        .iter()
        .flat_map(entries)
        .map(|e| {
            e["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(versions, vec!["5", "4", "3", "2"]);
    assert_eq!(pages.len(), 4, "one entry per page");

    // A _count above the largest page size is cut, not refused.
    let resp = server.get(&format!("{path}/_history?_count=100000")).await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(entries(&resp.json).len(), 5);
}

#[tokio::test]
async fn xml_narrative_is_kept_on_create() {
    let server = TestServer::start().await;
    let xml = r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>Seen by <b>Dr. Who</b> &amp; nurse</p></div></text><active value="true"/></Patient>"#;
    let resp = server
        .send(
            server
                .request(Method::POST, "Patient")
                .header("content-type", FHIR_XML)
                .body(xml),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    let div = resp.json["text"]["div"].as_str().expect("text.div");
    assert!(
        div.starts_with("<div xmlns=\"http://www.w3.org/1999/xhtml\">"),
        "{div}"
    );
    assert!(
        div.contains("<p>Seen by <b>Dr. Who</b> &amp; nurse</p>"),
        "the XHTML keeps its text and blanks: {div}"
    );
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let mut server = TestServer::start().await;
    let kept = unique("kept");
    server.upsert(&with_id(patient("K1"), &kept)).await;
    let v2 = server.upsert(&with_id(patient("K2"), &kept)).await;
    let gone = unique("gone");
    server.upsert(&with_id(patient("G1"), &gone)).await;
    assert_eq!(server.delete(&format!("Patient/{gone}")).await.status, 204);
    let old_base = server.base.clone();

    server.restart().await;
    assert_ne!(server.base, old_base);

    let read = server.get(&format!("Patient/{kept}")).await;
    assert_eq!(read.status, 200, "{}", read.describe());
    assert_eq!(read.json, v2.json);
    assert_outcome(&server.get(&format!("Patient/{gone}")).await, 410);
    let history = server.history(&format!("Patient/{kept}/_history")).await;
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[0]["fullUrl"],
        format!("{}/Patient/{kept}", server.base),
        "links follow the configured base"
    );
    let next = server
        .put(&format!("Patient/{kept}"), &with_id(patient("K3"), &kept))
        .await;
    assert_eq!(next.status, 200, "{}", next.describe());
    assert_eq!(next.version_id(), Some("3"));
    assert_eq!(server.history("_history").await.len(), 5);
}

/// With `FHIR_MAX_REQUESTS_IN_FLIGHT=1`, a request that arrives while another is being
/// answered is refused at once (503 with an OperationOutcome and `Retry-After`); once that
/// one ends, requests are served again. The refusals are logged as one warning with their
/// count, not a line (let alone an error) each.
#[tokio::test]
async fn a_request_past_the_in_flight_limit_is_refused_at_once() {
    let server =
        TestServer::start_with_env(&[("FHIR_MAX_REQUESTS_IN_FLIGHT", "1"), ("RUST_LOG", "warn")])
            .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut stalled = stalled_create(&server).await;
    let refused = loop {
        let resp = server.get("metadata").await;
        if resp.status == 503 || std::time::Instant::now() > deadline {
            break resp;
        }
        // A probe that reached the server before the stalled create took the permit
        // itself, and the create was the one refused: its connection has an answer.
        if was_answered(&mut stalled).await {
            stalled = stalled_create(&server).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let issue = assert_outcome(&refused, 503);
    assert_eq!(issue["code"], "throttled", "{}", refused.describe());
    assert!(
        refused.header("retry-after").is_some(),
        "{}",
        refused.describe()
    );
    for _ in 0..10 {
        let again = server.get("metadata").await;
        assert_eq!(again.status, 503, "{}", again.describe());
    }
    let log = server.log_tail(usize::MAX);
    assert_eq!(
        log.matches("busy: requests answered 503").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");

    drop(stalled);
    until(&server, 200).await;
}

/// A create whose body never comes: it holds a permit while the server waits for it.
async fn stalled_create(server: &TestServer) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;

    let url = url::Url::parse(&server.url("Patient")).unwrap();
    let mut stalled = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/fhir+json\r\n\
         Content-Length: 100\r\n\r\n{{",
        url.path(),
        server.addr()
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled
}

/// Whether the server answered (or closed) `conn` already.
async fn was_answered(conn: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;

    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(10), conn.read(&mut byte))
        .await
        .is_ok()
}

/// `GET metadata` until it answers `status` (within 10 s).
async fn until(server: &TestServer, status: u16) -> Resp {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = server.get("metadata").await;
        if resp.status == status || std::time::Instant::now() > deadline {
            assert_eq!(resp.status, status, "{}", resp.describe());
            return resp;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
