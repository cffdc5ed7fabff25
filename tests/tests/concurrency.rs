//! Parallel writers: no lost update, and optimistic locking picks one winner.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;

use ferrum_tests::{FHIR_JSON, Resp, TestServer, assert_outcome, json, unique};
use futures::future::join_all;
use reqwest::Method;
use serde_json::Value;

const WRITERS: usize = 32;

fn patient(id: &str, writer: usize) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "name": [{"family": "Parallel", "given": [format!("writer{writer}")]}]
    })
}

async fn parallel_puts(server: &TestServer, id: &str, if_match: Option<&str>) -> Vec<Resp> {
    let requests = (0..WRITERS).map(|writer| {
        let mut req = server
            .request(Method::PUT, &format!("Patient/{id}"))
            .header("content-type", FHIR_JSON)
            .body(patient(id, writer).to_string());
        if let Some(etag) = if_match {
            req = req.header("if-match", etag);
        }
        server.send(req)
    });
    join_all(requests).await
}

fn writer_of(resource: &Value) -> String {
    resource["name"][0]["given"][0].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_updates_lose_nothing() {
    let server = TestServer::start().await;
    let id = unique("race");
    let first = server.upsert(&patient(&id, 999)).await;
    assert_eq!(first.status, 201);

    let answers = parallel_puts(&server, &id, None).await;
    let mut versions = BTreeSet::new();
    for resp in &answers {
        assert_eq!(resp.status, 200, "{}", resp.describe());
        versions.insert(resp.version_id().unwrap().parse::<usize>().unwrap());
    }
    let expected: BTreeSet<usize> = (2..=WRITERS + 1).collect();
    assert_eq!(versions, expected, "each update got its own version");

    let current = server.read_json("Patient", &id).await;
    assert_eq!(current["meta"]["versionId"], (WRITERS + 1).to_string());

    let history = server.history(&format!("Patient/{id}/_history")).await;
    assert_eq!(history.len(), WRITERS + 1);
    let writers: BTreeSet<String> = history.iter().map(|e| writer_of(&e["resource"])).collect();
    let mut expected: BTreeSet<String> = (0..WRITERS).map(|w| format!("writer{w}")).collect();
    expected.insert("writer999".into());
    assert_eq!(writers, expected, "every write is in the history");
    let history_versions: Vec<usize> = history
        .iter()
        .map(|e| {
            e["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let descending: Vec<usize> = (1..=WRITERS + 1).rev().collect();
    assert_eq!(history_versions, descending);
    // The newest version in the history is what a read answers.
    assert_eq!(history[0]["resource"], current);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_update_as_create_creates_once() {
    let server = TestServer::start().await;
    let id = unique("race-new");
    let answers = parallel_puts(&server, &id, None).await;
    let created = answers.iter().filter(|r| r.status == 201).count();
    let updated = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        (created, updated),
        (1, WRITERS - 1),
        "statuses: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let history = server.history(&format!("Patient/{id}/_history")).await;
    assert_eq!(history.len(), WRITERS);
    let current = server.read_json("Patient", &id).await;
    assert_eq!(current["meta"]["versionId"], WRITERS.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_match_race_has_exactly_one_winner() {
    let server = TestServer::start().await;
    let id = unique("lock");
    server.upsert(&patient(&id, 999)).await;

    let answers = parallel_puts(&server, &id, Some("W/\"1\"")).await;
    let winners: Vec<&Resp> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "statuses: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for resp in answers.iter().filter(|r| r.status != 200) {
        assert_outcome(resp, 412);
    }
    let current = server.read_json("Patient", &id).await;
    assert_eq!(current["meta"]["versionId"], "2");
    assert_eq!(writer_of(&current), writer_of(&winners[0].json));
    assert_eq!(
        server
            .history(&format!("Patient/{id}/_history"))
            .await
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_get_distinct_ids() {
    let server = TestServer::start().await;
    let requests = (0..WRITERS).map(|writer| {
        let mut body = patient("ignored", writer);
        body.as_object_mut().unwrap().remove("id");
        let server = &server;
        async move { server.post("Patient", &body).await }
    });
    let answers = join_all(requests).await;
    let mut ids = BTreeSet::new();
    for resp in &answers {
        assert_eq!(resp.status, 201, "{}", resp.describe());
        ids.insert(resp.id().unwrap().to_owned());
    }
    assert_eq!(ids.len(), WRITERS);
    assert_eq!(
        server.history("Patient/_history?_count=100").await.len(),
        WRITERS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_deletes_leave_one_tombstone() {
    let server = TestServer::start().await;
    let id = unique("del");
    server.upsert(&patient(&id, 1)).await;
    let path = format!("Patient/{id}");
    let answers = join_all((0..16).map(|_| server.delete(&path))).await;
    for resp in &answers {
        assert_eq!(resp.status, 204, "{}", resp.describe());
    }
    let history = server.history(&format!("{path}/_history")).await;
    let methods: Vec<&str> = history
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, vec!["DELETE", "PUT"]);
    assert_outcome(&server.get(&path).await, 410);
}
