//! Search results, end to end: GET and POST `_search` at type and system level, the
//! searchset Bundle, `_include` / `_revinclude`, `_sort`, paging with signed cursors,
//! `_total`, `_summary`, `_elements`, `_count`, unknown and malformed parameters, inputs that
//! must never make the server fail, and conditional create with a search.
//!
//! Every expected result is worked out here from the resources the test stores (hand-written
//! ids, or an oracle sort over their JSON), never by the server's search code.

#![allow(clippy::unwrap_used, reason = "tests")]

mod search_support;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ferrum_tests::{
    FHIR_JSON, Resp, TestServer, assert_outcome, json, link, outcome_problems, parse,
};
use reqwest::Method;
use search_support::{
    check_searchset, date_range, duplicates, encode, fold, form_body, ids_with_mode,
    outcome_entries, query_pairs, search_all, search_path, strs,
};
use serde_json::Value;

const FORM: &str = "application/x-www-form-urlencoded";
const SUBSETTED: &str = "SUBSETTED";

/// The stored resources: Patients for sorting and paging (birth dates with ties, at year
/// and day precision, some without birth date or name), and Organizations, a Practitioner,
/// Accounts, Invoices and a Group that point at them, for includes.
const SEED: &str = r#"[
{"resourceType": "Organization", "id": "r-org-parent", "name": "Parent Org"},
{"resourceType": "Organization", "id": "r-org", "name": "Billing Org",
 "partOf": {"reference": "Organization/r-org-parent"}},
{"resourceType": "Practitioner", "id": "r-doc", "name": [{"family": "Careful", "given": ["Adam"]}]},
{"resourceType": "Patient", "id": "r-p01", "active": true,
 "name": [{"family": "Alvarez", "given": ["Ana"]}], "gender": "female", "birthDate": "1980-05-01",
 "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
 "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}]}}],
 "generalPractitioner": [{"reference": "Practitioner/r-doc"}],
 "managingOrganization": {"reference": "Organization/r-org"}},
{"resourceType": "Patient", "id": "r-p02", "name": [{"family": "Brown", "given": ["Bob"]}],
 "gender": "male", "birthDate": "1975-01-01", "link": [{"other": {"reference": "Patient/r-p01"}, "type": "seealso"}]},
{"resourceType": "Patient", "id": "r-p03", "name": [{"family": "Éclair", "given": ["Émile"]}],
 "gender": "female", "birthDate": "1980-05-01"},
{"resourceType": "Patient", "id": "r-p04", "name": [{"family": "Dupont", "given": ["Didier"]}],
 "gender": "male", "birthDate": "1990"},
{"resourceType": "Patient", "id": "r-p05", "name": [{"family": "Chen", "given": ["Chloe"]}],
 "gender": "female", "birthDate": "1975-01-01"},
{"resourceType": "Patient", "id": "r-p06", "name": [{"family": "Fischer", "given": ["Fritz"]}],
 "gender": "male"},
{"resourceType": "Patient", "id": "r-p07", "name": [{"family": "Garcia", "given": ["Gael"]}],
 "gender": "male", "birthDate": "1980-05-01"},
{"resourceType": "Patient", "id": "r-p08", "name": [{"family": "Hoffmann", "given": ["Hanna"]}],
 "gender": "female", "birthDate": "1960-12-31"},
{"resourceType": "Patient", "id": "r-p09", "birthDate": "1985-07-07"},
{"resourceType": "Patient", "id": "r-p10", "name": [{"family": "Ibsen", "given": ["Ivar"]}],
 "gender": "male", "birthDate": "1990-03-03"},
{"resourceType": "Account", "id": "r-acc1", "status": "active", "name": "Ana's account",
 "subject": [{"reference": "Patient/r-p01"}], "owner": {"reference": "Organization/r-org"}},
{"resourceType": "Account", "id": "r-acc2", "status": "active", "name": "Bob's account",
 "subject": [{"reference": "Patient/r-p02"}], "owner": {"reference": "Organization/r-org-parent"}},
{"resourceType": "Invoice", "id": "r-inv1", "status": "issued",
 "subject": {"reference": "Patient/r-p01"}, "recipient": {"reference": "Organization/r-org"},
 "participant": [{"actor": {"reference": "Practitioner/r-doc"}}],
 "account": {"reference": "Account/r-acc1"}},
{"resourceType": "Invoice", "id": "r-inv2", "status": "issued",
 "subject": {"reference": "Patient/r-p02"}, "account": {"reference": "Account/r-acc1"}},
{"resourceType": "Invoice", "id": "r-inv3", "status": "draft",
 "subject": {"reference": "Patient/r-p03"}, "account": {"reference": "Account/r-acc2"}},
{"resourceType": "Group", "id": "r-grp", "type": "person", "actual": true, "name": "Pair",
 "member": [{"entity": {"reference": "Patient/r-p01"}}, {"entity": {"reference": "Patient/r-p02"}}]}
]"#;

/// Stores [`SEED`] with PUT; returns its resources in the order they were written.
async fn seeded(server: &TestServer) -> Vec<Value> {
    let seed = parse(SEED);
    let resources = seed.as_array().unwrap().clone();
    for resource in &resources {
        server.upsert(resource).await;
    }
    resources
}

fn of_type(resources: &[Value], rtype: &str) -> Vec<String> {
    resources
        .iter()
        .filter(|r| r["resourceType"] == rtype)
        .map(search_support::type_and_id)
        .collect()
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// GET a search written as a person writes it; asserts a 200 searchset.
async fn get_search(server: &TestServer, query: &str) -> Resp {
    let resp = server.get(&search_path(query, &server.base)).await;
    if let Err(e) = check_searchset(&resp) {
        panic!("GET {query}: {e}");
    }
    resp
}

/// POST `[path]/_search` with the query's parameters as a form body.
async fn post_search(server: &TestServer, query: &str) -> Resp {
    let (rtype, _) = query.split_once('?').unwrap_or((query, ""));
    let path = if rtype.is_empty() {
        "_search".to_owned()
    } else {
        format!("{rtype}/_search")
    };
    let body = form_body(&query_pairs(query, &server.base));
    server
        .send(
            server
                .request(Method::POST, &path)
                .header("content-type", FORM)
                .body(body),
        )
        .await
}

/// Every match of a search, following `next` links; panics on a failure.
async fn all_matches(server: &TestServer, query: &str) -> Vec<String> {
    let result = search_all(server, &search_path(query, &server.base))
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    let dups = duplicates(&result.matches);
    assert!(dups.is_empty(), "{query}: duplicated matches {dups:?}");
    result.matches
}

// ---------------------------------------------------------------------------------------
// GET, POST and the Bundle
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn get_and_post_search_agree_at_type_and_system_level() {
    let server = TestServer::start().await;
    let stored = seeded(&server).await;

    for query in [
        "Patient?gender=female&birthdate=ge1975",
        "Patient?_sort=-birthdate,family&_count=4",
        "Patient?name=a,b&_total=accurate",
        "Invoice?account.owner.name=billing&_include=Invoice:account",
        "Patient?_has:Invoice:subject:status=issued&_revinclude=Group:member",
    ] {
        let get = get_search(&server, query).await;
        let post = post_search(&server, query).await;
        check_searchset(&post).unwrap_or_else(|e| panic!("POST {query}: {e}"));
        assert_eq!(
            ids_with_mode(&get.json, "match"),
            ids_with_mode(&post.json, "match"),
            "{query}: GET and POST find the same, in the same order"
        );
        assert_eq!(
            ids_with_mode(&get.json, "include"),
            ids_with_mode(&post.json, "include"),
            "{query}"
        );
        assert_eq!(get.json["total"], post.json["total"], "{query}");
        assert_eq!(
            link(&get.json, "self"),
            link(&post.json, "self"),
            "{query}: the same self link"
        );
    }

    // The charset parameter of the form type is fine; parameters may also be in the URL of
    // a POST, and then both apply.
    let resp = server
        .send(
            server
                .request(Method::POST, "Patient/_search?gender=female")
                .header(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )
                .body("birthdate=1980-05-01"),
        )
        .await;
    check_searchset(&resp).unwrap();
    assert_eq!(
        set(&ids_with_mode(&resp.json, "match")),
        strings(&["Patient/r-p01", "Patient/r-p03"]),
        "{}",
        resp.describe()
    );
    // An empty body needs no content type: the URL's parameters are the search.
    let resp = server
        .send(server.request(Method::POST, "Patient/_search?family=brown"))
        .await;
    check_searchset(&resp).unwrap();
    assert_eq!(ids_with_mode(&resp.json, "match"), ["Patient/r-p02"]);

    // Another content type is refused.
    for content_type in [FHIR_JSON, "application/json", "text/plain"] {
        let resp = server
            .send(
                server
                    .request(Method::POST, "Patient/_search")
                    .header("content-type", content_type)
                    .body(r#"{"family": "brown"}"#),
            )
            .await;
        assert_outcome(&resp, 415);
        let resp = server
            .send(
                server
                    .request(Method::POST, "_search")
                    .header("content-type", content_type)
                    .body("_type=Patient"),
            )
            .await;
        assert_outcome(&resp, 415);
    }

    // System level: `_type` picks the types, each with its own criteria.
    let both = all_matches(&server, "?_type=Patient,Organization&_count=4").await;
    let mut expected = of_type(&stored, "Patient");
    expected.extend(of_type(&stored, "Organization"));
    assert_eq!(set(&both), set(&expected));
    let resp = post_search(&server, "?_type=Account,Invoice&status=active,draft").await;
    check_searchset(&resp).unwrap();
    assert_eq!(
        set(&ids_with_mode(&resp.json, "match")),
        strings(&["Account/r-acc1", "Account/r-acc2", "Invoice/r-inv3"]),
        "{}",
        resp.describe()
    );
    let get = get_search(&server, "?_type=Account,Invoice&status=active,draft").await;
    assert_eq!(
        ids_with_mode(&get.json, "match"),
        ids_with_mode(&resp.json, "match")
    );
    // Without `_type`: every type.
    let everything = all_matches(&server, "?_count=7").await;
    let all_ids: Vec<String> = stored.iter().map(search_support::type_and_id).collect();
    assert_eq!(set(&everything), set(&all_ids));
    let resp = get_search(&server, "?_id=r-p01,r-acc1,r-grp,r-doc").await;
    assert_eq!(
        set(&ids_with_mode(&resp.json, "match")),
        strings(&[
            "Patient/r-p01",
            "Account/r-acc1",
            "Group/r-grp",
            "Practitioner/r-doc"
        ])
    );
}

#[tokio::test]
async fn the_searchset_bundle_has_the_r4_shape() {
    let server = TestServer::start().await;
    seeded(&server).await;
    let resp = get_search(
        &server,
        "Invoice?status=issued&_include=Invoice:account&_total=accurate&_count=1",
    )
    .await;
    assert!(resp.is_fhir_json(), "{}", resp.describe());
    let bundle = &resp.json;
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 2, "{}", resp.describe());
    let self_link = link(bundle, "self").expect("a self link");
    assert!(
        self_link.starts_with(&format!("{}/Invoice?", server.base)),
        "{self_link}"
    );
    let next = link(bundle, "next").expect("a next link: 2 matches, 1 per page");
    assert!(next.contains("_cursor="), "{next}");
    assert!(
        link(bundle, "previous").is_none(),
        "no previous on the first page"
    );
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(
        ids_with_mode(bundle, "match").len(),
        1,
        "_count=1: {}",
        resp.describe()
    );
    for entry in entries {
        let resource = &entry["resource"];
        let mode = entry["search"]["mode"].as_str().unwrap_or("");
        assert!(
            ["match", "include", "outcome"].contains(&mode),
            "search.mode {mode:?}"
        );
        assert_eq!(
            entry["fullUrl"],
            format!(
                "{}/{}/{}",
                server.base,
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            ),
            "fullUrl is the absolute URL of the resource"
        );
        assert!(entry.get("request").is_none() && entry.get("response").is_none());
        assert!(resource["meta"]["versionId"].is_string());
    }
    assert_eq!(ids_with_mode(bundle, "include"), ["Account/r-acc1"]);
    // The next page: the other match, a previous link, and the same total.
    let page2 = server.get(&next).await;
    check_searchset(&page2).unwrap();
    assert_eq!(page2.json["total"], 2);
    assert!(link(&page2.json, "previous").is_some());
    assert!(link(&page2.json, "next").is_none());
    let mut both = ids_with_mode(bundle, "match");
    both.extend(ids_with_mode(&page2.json, "match"));
    assert_eq!(set(&both), strings(&["Invoice/r-inv1", "Invoice/r-inv2"]));
    // A search that finds nothing is still a Bundle, with total 0 and no entry.
    let none = get_search(&server, "Patient?family=nobody").await;
    assert_eq!(none.json["total"], 0);
    assert!(ferrum_tests::entries(&none.json).is_empty());
}

// ---------------------------------------------------------------------------------------
// _include and _revinclude
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn include_and_revinclude_add_each_resource_once() {
    let server = TestServer::start().await;
    seeded(&server).await;
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "Invoice?_id=r-inv1&_include=Invoice:account",
            &["Invoice/r-inv1"],
            &["Account/r-acc1"],
        ),
        // Both invoices point at r-acc1: it is included once.
        (
            "Invoice?_id=r-inv1,r-inv2&_include=Invoice:account",
            &["Invoice/r-inv1", "Invoice/r-inv2"],
            &["Account/r-acc1"],
        ),
        (
            "Invoice?_id=r-inv1&_include=Invoice:*",
            &["Invoice/r-inv1"],
            &[
                "Account/r-acc1",
                "Patient/r-p01",
                "Organization/r-org",
                "Practitioner/r-doc",
            ],
        ),
        (
            "Invoice?_id=r-inv1&_include=Invoice:subject:Patient",
            &["Invoice/r-inv1"],
            &["Patient/r-p01"],
        ),
        (
            "Invoice?_id=r-inv1&_include=Invoice:recipient:Patient",
            &["Invoice/r-inv1"],
            &[],
        ),
        // Without :iterate, an include applies to the matches only.
        (
            "Invoice?_id=r-inv1&_include=Invoice:account&_include=Account:owner",
            &["Invoice/r-inv1"],
            &["Account/r-acc1"],
        ),
        (
            "Invoice?_id=r-inv1&_include=Invoice:account&_include:iterate=Account:owner",
            &["Invoice/r-inv1"],
            &["Account/r-acc1", "Organization/r-org"],
        ),
        (
            "Invoice?_id=r-inv1&_include=Invoice:account&_include:iterate=Account:owner&_include:iterate=Organization:partof",
            &["Invoice/r-inv1"],
            &[
                "Account/r-acc1",
                "Organization/r-org",
                "Organization/r-org-parent",
            ],
        ),
        (
            "Patient?_id=r-p01&_revinclude=Invoice:subject",
            &["Patient/r-p01"],
            &["Invoice/r-inv1"],
        ),
        (
            "Patient?_id=r-p01,r-p02&_revinclude=Invoice:subject&_revinclude=Group:member",
            &["Patient/r-p01", "Patient/r-p02"],
            &["Invoice/r-inv1", "Invoice/r-inv2", "Group/r-grp"],
        ),
        (
            "Patient?_id=r-p01&_revinclude=*",
            &["Patient/r-p01"],
            &[
                "Invoice/r-inv1",
                "Account/r-acc1",
                "Group/r-grp",
                "Patient/r-p02",
            ],
        ),
        (
            "Account?_id=r-acc1&_revinclude=Invoice:account&_include=Account:owner",
            &["Account/r-acc1"],
            &["Invoice/r-inv1", "Invoice/r-inv2", "Organization/r-org"],
        ),
        (
            "Account?_id=r-acc1&_revinclude=Invoice:account&_include:iterate=Invoice:subject",
            &["Account/r-acc1"],
            &[
                "Invoice/r-inv1",
                "Invoice/r-inv2",
                "Patient/r-p01",
                "Patient/r-p02",
            ],
        ),
        // A match is not repeated as an include: r-p02 links to r-p01, both match.
        (
            "Patient?_id=r-p01,r-p02&_include=Patient:link",
            &["Patient/r-p01", "Patient/r-p02"],
            &[],
        ),
        (
            "Patient?_id=r-p02&_include=Patient:link",
            &["Patient/r-p02"],
            &["Patient/r-p01"],
        ),
        (
            "Organization?_id=r-org-parent&_revinclude:iterate=Organization:partof&_revinclude:iterate=Account:owner",
            &["Organization/r-org-parent"],
            &["Organization/r-org", "Account/r-acc1", "Account/r-acc2"],
        ),
        (
            "?_type=Invoice,Group&_id=r-inv3,r-grp&_include=Invoice:subject&_include=Group:member",
            &["Invoice/r-inv3", "Group/r-grp"],
            &["Patient/r-p03", "Patient/r-p01", "Patient/r-p02"],
        ),
    ];
    let mut failures = Vec::new();
    for (query, matches, included) in cases {
        let resp = get_search(&server, query).await;
        let found = ids_with_mode(&resp.json, "match");
        let added = ids_with_mode(&resp.json, "include");
        let problems = [
            (set(&found) != strings(matches)).then(|| format!("matches {found:?}")),
            (set(&added) != strings(included)).then(|| format!("included {added:?}")),
            (!duplicates(&added).is_empty()).then(|| format!("included twice {added:?}")),
            added
                .iter()
                .find(|a| found.contains(a))
                .map(|a| format!("{a} is a match and an include")),
        ];
        let problems: Vec<String> = problems.into_iter().flatten().collect();
        if !problems.is_empty() {
            failures.push(format!("{query}: {}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A reference to another server is not a reference to this one's resource of the same
/// type and id (R4 resolves relative references against this server's base; docs/search.md:
/// absolute references elsewhere are matched by their URL), so `_include` must not follow it
/// to a local resource, nor `_revinclude` find it from one.
#[tokio::test]
async fn includes_do_not_follow_references_to_other_servers() {
    let server = TestServer::start().await;
    seeded(&server).await;
    server
        .upsert(&json!({
            "resourceType": "Group", "id": "r-grp-ext", "type": "person", "actual": true,
            "member": [{"entity": {"reference": "http://other.example/fhir/Patient/r-p01"}}]
        }))
        .await;
    let resp = get_search(&server, "Group?_id=r-grp-ext&_include=Group:member").await;
    assert_eq!(
        ids_with_mode(&resp.json, "include"),
        Vec::<String>::new(),
        "{}",
        resp.describe()
    );
    let resp = get_search(&server, "Patient?_id=r-p01&_revinclude=Group:member").await;
    assert_eq!(
        ids_with_mode(&resp.json, "include"),
        ["Group/r-grp"],
        "{}",
        resp.describe()
    );
}

// ---------------------------------------------------------------------------------------
// _sort and paging
// ---------------------------------------------------------------------------------------

/// A sort key as R4 and docs/search.md describe it: a resource sorts by its lowest value
/// ascending and its highest descending (a date by the start or the end of its range); one
/// without a value sorts last either way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Date(DateTime<Utc>),
    Text(String),
}

fn key_of(patient: &Value, param: &str, descending: bool) -> Option<Key> {
    let pick = |keys: Vec<Key>| {
        if descending {
            keys.into_iter().max()
        } else {
            keys.into_iter().min()
        }
    };
    match param {
        "birthdate" => pick(
            strs(patient, "birthDate")
                .iter()
                .map(|d| {
                    let (low, high) = date_range(d);
                    Key::Date(if descending { high } else { low })
                })
                .collect(),
        ),
        "family" => pick(
            strs(patient, "name.family")
                .iter()
                .map(|f| Key::Text(fold(f)))
                .collect(),
        ),
        "gender" => pick(strs(patient, "gender").into_iter().map(Key::Text).collect()),
        other => panic!("no oracle for _sort={other}"),
    }
}

/// The ids of `patients` in the order of `_sort=<spec>`.
fn oracle_sort(patients: &[Value], spec: &str) -> Vec<String> {
    let keys: Vec<(&str, bool)> = spec
        .split(',')
        .map(|k| match k.strip_prefix('-') {
            Some(name) => (name, true),
            None => (k, false),
        })
        .collect();
    let mut sorted: Vec<&Value> = patients.iter().collect();
    sorted.sort_by(|a, b| {
        for (param, descending) in &keys {
            let order = match (key_of(a, param, *descending), key_of(b, param, *descending)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) if *descending => y.cmp(&x),
                (Some(x), Some(y)) => x.cmp(&y),
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        Ordering::Equal
    });
    sorted
        .into_iter()
        .map(search_support::type_and_id)
        .collect()
}

/// Asserts that no two patients tie on every key of `spec`, a missing value counting as a
/// value (the server's tie-break is not the test's business).
fn assert_total_order(patients: &[Value], spec: &str) {
    let mut seen = BTreeMap::new();
    for p in patients {
        let keys: Vec<Option<Key>> = spec
            .split(',')
            .map(|k| match k.strip_prefix('-') {
                Some(name) => key_of(p, name, true),
                None => key_of(p, k, false),
            })
            .collect();
        if let Some(other) = seen.insert(keys, p["id"].clone()) {
            panic!("test data: {} and {other} tie on _sort={spec}", p["id"]);
        }
    }
}

/// Pages of a search, following `next` (or `previous`) links from `first`.
async fn follow(server: &TestServer, first: &str, relation: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut next = Some(server.url(first));
    while let Some(url) = next.take() {
        assert!(pages.len() < 100, "too many pages from {first}");
        let resp = server.get(&url).await;
        check_searchset(&resp).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        next = link(&resp.json, relation);
        pages.push(resp.json);
    }
    pages
}

fn page_ids(pages: &[Value]) -> Vec<Vec<String>> {
    pages.iter().map(|p| ids_with_mode(p, "match")).collect()
}

#[tokio::test]
async fn sort_orders_by_several_keys_and_pages_follow_it() {
    let server = TestServer::start().await;
    let stored = seeded(&server).await;
    let mut patients: Vec<Value> = stored
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .cloned()
        .collect();

    for spec in [
        "birthdate,family",
        "-birthdate,family",
        "family",
        "-family",
        "gender,-birthdate,family",
    ] {
        assert_total_order(&patients, spec);
        let expected = oracle_sort(&patients, spec);
        let query = format!("Patient?_sort={spec}&_count=100");
        let found = ids_with_mode(&get_search(&server, &query).await.json, "match");
        assert_eq!(found, expected, "{query}");

        // Pages of 3, forwards: the same order, nothing twice, nothing left out.
        let paged = format!("Patient?_sort={spec}&_count=3");
        let pages = follow(&server, &search_path(&paged, &server.base), "next").await;
        let ids = page_ids(&pages);
        assert!(ids.iter().all(|p| p.len() <= 3), "{paged}: {ids:?}");
        assert_eq!(ids.concat(), found, "{paged}: pages {ids:?}");
        assert_eq!(pages.len(), found.len().div_ceil(3), "{paged}");
        // And backwards from the last page: the same pages in reverse.
        let last = link(pages.last().unwrap(), "self").unwrap();
        let back = follow(&server, &last, "previous").await;
        let mut back_ids = page_ids(&back);
        back_ids.reverse();
        assert_eq!(back_ids, ids, "{paged}: previous links lead back");
    }

    // An unsorted search pages too, in a stable order.
    let full = all_matches(&server, "Patient?_count=100").await;
    assert_eq!(set(&full), set(&of_type(&stored, "Patient")));
    let pages = follow(&server, "Patient?_count=3", "next").await;
    assert_eq!(page_ids(&pages).concat(), full);
    let back = follow(
        &server,
        &link(pages.last().unwrap(), "self").unwrap(),
        "previous",
    )
    .await;
    let mut back_ids = page_ids(&back);
    back_ids.reverse();
    assert_eq!(back_ids, page_ids(&pages));

    // A cursor stays where it was while resources are written: new resources with larger
    // keys come at the end of an unsorted search, and nothing is seen twice.
    let first = get_search(&server, "Patient?_count=3").await;
    let mut seen = ids_with_mode(&first.json, "match");
    let new_patients = [
        json!({"resourceType": "Patient", "id": "r-new1", "name": [{"family": "Aaberg"}], "birthDate": "1950"}),
        json!({"resourceType": "Patient", "id": "r-new2", "name": [{"family": "Zander"}], "birthDate": "1999"}),
    ];
    for p in &new_patients {
        server.upsert(p).await;
    }
    // An update of a resource already seen does not bring it back either.
    let mut updated = stored.iter().find(|r| r["id"] == "r-p01").unwrap().clone();
    updated["active"] = json!(false);
    server.upsert(&updated).await;
    for page in follow(&server, &link(&first.json, "next").unwrap(), "next").await {
        seen.extend(ids_with_mode(&page, "match"));
    }
    let mut expected = full.clone();
    expected.extend(["Patient/r-new1".to_owned(), "Patient/r-new2".to_owned()]);
    assert_eq!(seen, expected, "unsorted paging while writing");

    // Sorted: the rest of the order after the cursor's row, as it is now. Aaberg sorts
    // before the first page's end and is not seen; Zander is.
    let first = get_search(&server, "Patient?_sort=family&_count=3").await;
    let mut seen = ids_with_mode(&first.json, "match");
    let fresh = [
        json!({"resourceType": "Patient", "id": "r-new3", "name": [{"family": "Abbott"}]}),
        json!({"resourceType": "Patient", "id": "r-new4", "name": [{"family": "Zimmer"}]}),
    ];
    for p in &fresh {
        server.upsert(p).await;
    }
    for page in follow(&server, &link(&first.json, "next").unwrap(), "next").await {
        seen.extend(ids_with_mode(&page, "match"));
    }
    patients.extend(new_patients.iter().cloned());
    patients.extend(fresh.iter().cloned());
    let now_sorted = oracle_sort(&patients, "family");
    let cut = now_sorted
        .iter()
        .position(|id| Some(id) == seen.get(2))
        .unwrap();
    let mut expected = seen[..3].to_vec();
    expected.extend(now_sorted[cut + 1..].iter().cloned());
    assert_eq!(seen, expected, "sorted paging while writing");
    assert!(!seen.contains(&"Patient/r-new3".to_owned()));
    assert!(duplicates(&seen).is_empty(), "{seen:?}");
}

#[tokio::test]
async fn a_cursor_only_works_unchanged_and_for_its_own_search() {
    let server = TestServer::start().await;
    seeded(&server).await;
    let first = get_search(&server, "Patient?_sort=family&_count=3").await;
    let next = link(&first.json, "next").unwrap();
    let cursor = next
        .split('&')
        .find_map(|p| p.strip_prefix("_cursor="))
        .unwrap()
        .to_owned();
    let ok = server.get(&next).await;
    check_searchset(&ok).unwrap();

    let flip = |text: &str, at: usize| {
        let mut chars: Vec<char> = text.chars().collect();
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    let (payload, mac) = cursor.split_once('.').unwrap();
    let forged_payload = base64_url(br#"{"k":1}"#);
    let tampered = [
        flip(&cursor, 0),
        flip(&cursor, cursor.len() - 3),
        format!("{forged_payload}.{mac}"),
        payload.to_owned(),
        format!("{payload}."),
        format!("{cursor}x"),
        "garbage".to_owned(),
        "a.b".to_owned(),
    ];
    for bad in &tampered {
        let url = format!("Patient?_sort=family&_count=3&_cursor={}", encode(bad));
        let resp = server.get(&url).await;
        let issue = assert_outcome(&resp, 400);
        assert!(
            issue["diagnostics"]
                .as_str()
                .unwrap_or("")
                .contains("_cursor"),
            "{url}: {}",
            resp.describe()
        );
    }
    // The cursor of one search on others.
    for other in [
        "Patient?_sort=family&_count=4",
        "Patient?_sort=-family&_count=3",
        "Patient?_sort=family&_count=3&gender=male",
        "Patient?_count=3",
        "Organization?_sort=name&_count=3",
        "?_type=Patient&_sort=family&_count=3",
    ] {
        let url = format!(
            "{}&_cursor={}",
            search_path(other, &server.base),
            encode(&cursor)
        );
        let resp = server.get(&url).await;
        assert_outcome(&resp, 400);
    }
    // Parameters in another order are the same search: the cursor works.
    let reordered = format!("Patient?_count=3&_sort=family&_cursor={}", encode(&cursor));
    let resp = server.get(&reordered).await;
    check_searchset(&resp).unwrap();
    assert_eq!(
        ids_with_mode(&resp.json, "match"),
        ids_with_mode(&ok.json, "match")
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------
// _total, _summary, _elements, _count
// ---------------------------------------------------------------------------------------

fn has_subsetted_tag(resource: &Value) -> bool {
    resource["meta"]["tag"].as_array().is_some_and(|tags| {
        tags.iter().any(|t| {
            t["code"] == SUBSETTED
                && t["system"] == "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
        })
    })
}

#[tokio::test]
async fn totals_summaries_and_elements() {
    let server = TestServer::start().await;
    let stored = seeded(&server).await;
    let patients = of_type(&stored, "Patient");
    let females = stored
        .iter()
        .filter(|r| r["resourceType"] == "Patient" && r["gender"] == "female")
        .count() as u64;

    let resp = get_search(&server, "Patient?_total=accurate&_count=2").await;
    assert_eq!(
        resp.json["total"],
        patients.len() as u64,
        "{}",
        resp.describe()
    );
    assert_eq!(ids_with_mode(&resp.json, "match").len(), 2);
    let resp = get_search(&server, "Patient?gender=female&_total=accurate&_count=1").await;
    assert_eq!(resp.json["total"], females);
    // A later page says the same.
    let page2 = server.get(&link(&resp.json, "next").unwrap()).await;
    assert_eq!(page2.json["total"], females, "{}", page2.describe());
    let resp = get_search(&server, "Patient?_total=estimate&_count=2").await;
    assert!(
        resp.json["total"].is_u64(),
        "an estimate: {}",
        resp.describe()
    );
    let resp = get_search(&server, "Patient?_total=none&_count=2").await;
    assert_eq!(ids_with_mode(&resp.json, "match").len(), 2);

    for query in ["Patient?_summary=count", "Patient?_summary=count&_count=1"] {
        let resp = get_search(&server, query).await;
        assert_eq!(resp.json["total"], patients.len() as u64, "{query}");
        assert!(
            ids_with_mode(&resp.json, "match").is_empty(),
            "{query}: no entries: {}",
            resp.describe()
        );
    }
    let resp = get_search(&server, "Patient?gender=female&_summary=count").await;
    assert_eq!(resp.json["total"], females);

    // _summary=true: the summary elements only, tagged SUBSETTED.
    let resp = get_search(&server, "Patient?_id=r-p01&_summary=true").await;
    let p = &resp.json["entry"][0]["resource"];
    assert_eq!(p["id"], "r-p01", "{}", resp.describe());
    for kept in [
        "name",
        "gender",
        "birthDate",
        "active",
        "managingOrganization",
    ] {
        assert!(p.get(kept).is_some(), "_summary=true keeps {kept}: {p}");
    }
    for dropped in ["maritalStatus", "communication", "generalPractitioner"] {
        assert!(
            p.get(dropped).is_none(),
            "_summary=true drops {dropped}: {p}"
        );
    }
    assert!(has_subsetted_tag(p), "{p}");

    // _elements: the elements named, plus id and meta, plus the mandatory ones.
    let resp = get_search(&server, "Patient?_id=r-p01,r-p02&_elements=name,birthDate").await;
    for entry in ferrum_tests::entries(&resp.json) {
        let p = &entry["resource"];
        let keys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["resourceType", "id", "meta", "name", "birthDate"]
                .into_iter()
                .collect(),
            "{p}"
        );
        assert!(has_subsetted_tag(p), "{p}");
    }
    let resp = get_search(&server, "Account?_id=r-acc1&_elements=name").await;
    let a = &resp.json["entry"][0]["resource"];
    assert_eq!(a["status"], "active", "Account.status is 1..1: kept: {a}");
    assert_eq!(a["name"], "Ana's account");
    assert!(
        a.get("subject").is_none() && a.get("owner").is_none(),
        "{a}"
    );
    let resp = get_search(&server, "Group?_id=r-grp&_elements=name").await;
    let g = &resp.json["entry"][0]["resource"];
    assert_eq!(g["type"], "person", "Group.type is 1..1: {g}");
    assert_eq!(g["actual"], true, "Group.actual is 1..1: {g}");
    assert!(g.get("member").is_none(), "{g}");
    // Without either, entries are whole and untagged.
    let resp = get_search(&server, "Patient?_id=r-p01").await;
    let p = &resp.json["entry"][0]["resource"];
    assert!(
        p.get("maritalStatus").is_some() && !has_subsetted_tag(p),
        "{p}"
    );
}

#[tokio::test]
async fn count_is_lowered_to_the_configured_maximum() {
    let server =
        TestServer::start_with_env(&[("FHIR_MAX_PAGE_SIZE", "4"), ("FHIR_DEFAULT_PAGE_SIZE", "3")])
            .await;
    for n in 0..6 {
        server
            .create(&json!({"resourceType": "Patient", "name": [{"family": format!("Cap{n}")}]}))
            .await;
    }
    let resp = get_search(&server, "Patient?_count=100").await;
    assert_eq!(ids_with_mode(&resp.json, "match").len(), 4);
    let self_link = link(&resp.json, "self").unwrap();
    assert!(self_link.contains("_count=4"), "{self_link}");
    assert!(link(&resp.json, "next").is_some());
    let resp = get_search(&server, "Patient").await;
    assert_eq!(
        ids_with_mode(&resp.json, "match").len(),
        3,
        "the default page size"
    );
    assert!(link(&resp.json, "self").unwrap().contains("_count=3"));
    let resp = get_search(&server, "Patient?_count=2").await;
    assert_eq!(ids_with_mode(&resp.json, "match").len(), 2);
    let all = all_matches(&server, "Patient?_count=1000").await;
    assert_eq!(all.len(), 6);
}

// ---------------------------------------------------------------------------------------
// Unknown, unsupported and malformed parameters
// ---------------------------------------------------------------------------------------

/// The diagnostics of every issue of every outcome entry of a page.
fn warnings(bundle: &Value) -> Vec<String> {
    outcome_entries(bundle)
        .iter()
        .flat_map(|o| {
            o["issue"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|i| {
                    format!(
                        "{} {}",
                        i["severity"].as_str().unwrap_or(""),
                        i["diagnostics"].as_str().unwrap_or("")
                    )
                })
        })
        .collect()
}

#[tokio::test]
async fn unknown_parameters_are_ignored_with_a_warning_unless_strict() {
    let server = TestServer::start().await;
    seeded(&server).await;
    let plain = get_search(&server, "Patient?family=brown").await;
    let strict = [("prefer", "handling=strict")];
    // (query, the name the warning and the error quote)
    let cases: &[(&str, &str)] = &[
        ("Patient?family=brown&foo=bar", "foo"),
        (
            "Patient?family=brown&family:sounds-like=x",
            "family:sounds-like",
        ),
        ("Patient?family=brown&_text=x", "_text"),
        ("Patient?family=brown&_content=x", "_content"),
        ("Patient?family=brown&_list=x", "_list"),
        ("Patient?family=brown&_query=x", "_query"),
        ("Patient?family=brown&_filter=x", "_filter"),
        ("Patient?family=brown&_contained=true", "_contained"),
        (
            "Patient?family=brown&_containedType=contained",
            "_containedType",
        ),
        ("Patient?family=brown&gender:in=http://x/vs", "gender:in"),
        // An include naming a parameter the type does not have: R4 asks servers to ignore
        // unknown and unsupported parameters (search.html#errors), with `Prefer:
        // handling=strict` making them an error.
        ("Patient?family=brown&_include=Patient:foo", "_include"),
        ("Patient?family=brown&_sort=unknown", "_sort"),
        // A parameter the source type of `_has` does not have, or the end of a chain.
        (
            "Patient?family=brown&_has:Invoice:nothing:status=issued",
            "_has:Invoice:nothing:status",
        ),
        (
            "Patient?family=brown&organization.nothing=x",
            "organization.nothing",
        ),
        ("Patient?family=brown&given=", "given"),
    ];
    for (query, name) in cases {
        let resp = get_search(&server, query).await;
        assert_eq!(
            ids_with_mode(&resp.json, "match"),
            ids_with_mode(&plain.json, "match"),
            "{query}: the rest of the search still applies"
        );
        let self_link = link(&resp.json, "self").unwrap();
        assert_eq!(
            self_link,
            link(&plain.json, "self").unwrap(),
            "{query}: what was ignored is not in the self link"
        );
        let found = warnings(&resp.json);
        assert!(
            found
                .iter()
                .any(|w| w.starts_with("warning") && w.contains(&format!("`{name}`"))),
            "{query}: an outcome entry warns about {name}: {found:?}"
        );
        let resp = server
            .get_with(&search_path(query, &server.base), &strict)
            .await;
        let issue = assert_outcome(&resp, 400);
        assert!(
            issue["diagnostics"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("`{name}`")),
            "{query} (strict): {}",
            resp.describe()
        );
    }
    // Without unknown parameters, no outcome entry.
    assert!(outcome_entries(&plain.json).is_empty());
    let resp = server.get_with("Patient?family=brown", &strict).await;
    check_searchset(&resp).unwrap();
}

#[tokio::test]
async fn malformed_values_are_refused_naming_the_parameter() {
    let server = TestServer::start().await;
    seeded(&server).await;
    let cases: &[(&str, &str)] = &[
        ("Patient?birthdate=zz2020", "birthdate"),
        ("Patient?birthdate=2020-02-30", "birthdate"),
        ("Patient?birthdate=20200101", "birthdate"),
        ("Patient?_lastUpdated=gt", "_lastUpdated"),
        ("Invoice?totalnet=ten", "totalnet"),
        ("Invoice?totalnet=1|2|3|4", "totalnet"),
        ("Patient?organization=Organization/", "organization"),
        ("Patient?gender:missing=yes", "gender:missing"),
        ("Patient?_id=a,,b", "_id"),
        ("Invoice?account.subject.family=x", "account.subject.family"),
        ("Invoice?subject:Organization=x", "subject:Organization"),
        ("Patient?_has:Invoice:subject=x", "_has:Invoice:subject"),
        ("Patient?_include=nonsense", "_include"),
        ("Invoice?_include=Invoice:subject:Organization", "_include"),
        ("Patient?_count=abc", "_count"),
        ("Patient?_count=-1", "_count"),
        ("Patient?_count=2&_count=3", "_count"),
        ("Patient?_sort=family&_sort=given", "_sort"),
        ("Patient?_summary=maybe", "_summary"),
        ("Patient?_total=all", "_total"),
    ];
    let mut failures = Vec::new();
    for (query, name) in cases {
        for strictness in [&[][..], &[("prefer", "handling=strict")][..]] {
            let resp = server
                .get_with(&search_path(query, &server.base), strictness)
                .await;
            let problems = outcome_problems(&resp, 400);
            let diagnostics = resp.json["issue"][0]["diagnostics"].as_str().unwrap_or("");
            if !problems.is_empty() || !diagnostics.contains(&format!("`{name}`")) {
                failures.push(format!("{query} {strictness:?}: {}", resp.describe()));
            }
        }
        let resp = post_search(&server, query).await;
        if !outcome_problems(&resp, 400).is_empty() {
            failures.push(format!("POST {query}: {}", resp.describe()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Weird input: every answer is a 200 searchset or a 4xx OperationOutcome, never a 5xx.
async fn never_5xx(server: &TestServer, paths: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    for path in paths {
        let shown: String = path.chars().take(150).collect();
        let resp = match server.try_send(server.request(Method::GET, path)).await {
            Ok(resp) => resp,
            Err(e) => {
                failures.push(format!("GET {shown}: {e}"));
                continue;
            }
        };
        let fine = match resp.status {
            200 => check_searchset(&resp).is_ok(),
            400..=499 => resp.json["resourceType"] == "OperationOutcome",
            _ => false,
        };
        if !fine {
            let mut described = resp.describe();
            described.truncate(400);
            failures.push(format!("GET {shown}: {described}"));
        }
    }
    failures
}

#[tokio::test]
async fn weird_input_never_answers_5xx() {
    let server = TestServer::start().await;
    seeded(&server).await;
    let long = "a".repeat(10_000);
    let long_digits = "9".repeat(10_000);
    let mut paths: Vec<String> = [
        "Patient?family=",
        "Patient?=x",
        "Patient?&&&",
        "Patient?_id=",
        "Patient?family=%",
        "Patient?family=%ZZ",
        "Patient?family=%FF%FE",
        "Patient?family=%F0%9F%98%80",
        "Patient?family=\\",
        "Patient?family=\\\\,",
        "Patient?family=a\\",
        "Patient?identifier=|||",
        "Patient?identifier=%7C",
        "Patient?_count=-1",
        "Patient?_count=abc",
        "Patient?_count=0",
        "Patient?_count=99999999999999999999",
        "Patient?_sort=unknown",
        "Patient?_sort=-",
        "Patient?_sort=,",
        "Patient?_sort=--family",
        "Patient?_elements=",
        "Patient?_summary=",
        "Patient?_include=*&_revinclude=*&_include:iterate=*&_revinclude:iterate=*",
        "Patient?_cursor=",
        "Patient?_cursor=%2E%2E%2E",
        "Patient?birthdate=ap9999-12-31",
        "Patient?birthdate=0001",
        "Patient?birthdate=gt9999-12-31T23:59:59Z",
        "Patient?birthdate=2020-01-01T10:00:00+14:00",
        "Patient?_lastUpdated=ap1900",
        "Invoice?totalnet=1e999999",
        "Invoice?totalnet=-0",
        "Invoice?totalnet=ap0",
        "Invoice?totalnet=1e-999999",
        "Group?characteristic-value=$$$",
        "Group?characteristic-value=a$b$c",
        "Group?characteristic-value=gender$",
        "Patient?name:exact=",
        "Patient?_has=x",
        "Patient?_has:::=x",
        "Patient?general-practitioner:Organization.partof.partof.partof.partof.partof.partof.partof.partof.name=x",
        "Patient?link:Patient.link:Patient.link:Patient.link:Patient.link:Patient.link:Patient.link:Patient.link:Patient.link:Patient.family=x",
        "Patient?_has:Patient:link:_has:Patient:link:_has:Patient:link:_has:Patient:link:_has:Patient:link:_has:Patient:link:_has:Patient:link:_has:Patient:link:_has:Patient:link:family=x",
        "?_type=",
        "?_type=Foo,,Patient",
        "?_type=Patient&_type=Group",
        "?family=x",
        "Patient?_type=Patient",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for param in [
        "family",
        "name:contains",
        "family:exact",
        "phonetic",
        "identifier",
        "identifier:of-type",
        "identifier:text",
        "gender:not",
        "birthdate",
        "organization",
        "organization:identifier",
        "general-practitioner:Practitioner.name",
        "_id",
        "_profile",
        "_profile:above",
        "_source:below",
        "_sort",
        "_include",
        "_elements",
        "_cursor",
        "_has:Invoice:subject:status",
    ] {
        paths.push(format!("Patient?{param}={long}"));
    }
    paths.push(format!("Invoice?totalnet={long_digits}"));
    paths.push(format!("Invoice?totalgross=1|{long}|{long}"));
    paths.push(format!("Group?characteristic-value={long}${long}"));
    paths.push(format!("?_type={long}"));
    paths.push(format!("Patient?{long}=x"));
    paths.push(format!(
        "Patient?_id={}",
        (0..2000)
            .map(|n| format!("id{n}"))
            .collect::<Vec<_>>()
            .join(",")
    ));
    let failures = never_5xx(&server, &paths).await;
    assert!(
        failures.is_empty(),
        "{} of {} weird searches failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
    // A weird form body.
    for body in ["%ZZ", "family", "=&=", "family=%FF"] {
        let resp = server
            .send(
                server
                    .request(Method::POST, "Patient/_search")
                    .header("content-type", FORM)
                    .body(body),
            )
            .await;
        assert!(resp.status < 500, "POST {body}: {}", resp.describe());
    }
}

#[tokio::test]
async fn many_repeated_parameters_never_answer_5xx() {
    let server = TestServer::start().await;
    seeded(&server).await;
    // 100 take about a second; 300 more than the server's 60 s timeout. An answer (no
    // match) or a refusal (400, too costly) are both fine; a 5xx is not.
    let paths: Vec<String> = [100, 300]
        .iter()
        .map(|n| {
            let given: Vec<String> = (0..*n).map(|i| format!("given=g{i}")).collect();
            format!("Patient?{}", given.join("&"))
        })
        .collect();
    let failures = never_5xx(&server, &paths).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn nul_characters_in_values_never_answer_5xx() {
    let server = TestServer::start().await;
    seeded(&server).await;
    let paths: Vec<String> = [
        "Patient?name=%00",
        "Patient?family=a%00b",
        "Patient?family:exact=%00",
        "Patient?family:contains=%00",
        "Patient?identifier=%00",
        "Patient?identifier=sys%00|%00",
        "Patient?identifier:of-type=a|b|%00",
        "Patient?identifier:text=%00",
        "Patient?_id=%00",
        "Patient?_profile=%00",
        "Patient?_source:below=%00",
        "Patient?_tag=%00",
        "Patient?general-practitioner:identifier=%00",
        "Patient?organization=http://x/%00",
        "Invoice?totalgross=1|%00|%00",
        "Group?characteristic-value=%00$%00",
        "Patient?_sort=%00",
        "Patient?%00=x",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let failures = never_5xx(&server, &paths).await;
    assert!(
        failures.is_empty(),
        "{} of {} searches failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Conditional create
// ---------------------------------------------------------------------------------------

async fn create_if_none_exist(server: &TestServer, resource: &Value, condition: &str) -> Resp {
    server
        .send(
            server
                .request(Method::POST, resource["resourceType"].as_str().unwrap())
                .header("content-type", FHIR_JSON)
                .header("if-none-exist", condition)
                .body(resource.to_string()),
        )
        .await
}

#[tokio::test]
async fn conditional_create_uses_any_search() {
    let server = TestServer::start().await;
    seeded(&server).await;
    let castellanos = json!({
        "resourceType": "Patient",
        "name": [{"family": "Castellanos", "given": ["Ana"]}],
        "birthDate": "1950-05-05",
        "generalPractitioner": [{"reference": "Practitioner/r-doc"}]
    });
    let condition = "name=castellanos&birthdate=1950-05-05";
    // No match: created.
    let first = create_if_none_exist(&server, &castellanos, condition).await;
    assert_eq!(first.status, 201, "{}", first.describe());
    let id = first.id().unwrap().to_owned();
    // One match: 200 with the existing resource, nothing created.
    let again = create_if_none_exist(&server, &castellanos, condition).await;
    assert_eq!(again.status, 200, "{}", again.describe());
    assert_eq!(again.id(), Some(id.as_str()));
    assert_eq!(again.version_id(), Some("1"));
    // The same through other kinds of criteria: prefixes, :exact, a chain, _has.
    for other in [
        "family:exact=Castellanos&birthdate=ge1950-05-05&birthdate=le1950-05-05",
        "general-practitioner:Practitioner.family=careful&given=ana&birthdate=1950",
        "Patient?name=castellanos",
        "?birthdate=1950-05",
    ] {
        let resp = create_if_none_exist(&server, &castellanos, other).await;
        assert_eq!(resp.status, 200, "{other}: {}", resp.describe());
        assert_eq!(resp.id(), Some(id.as_str()), "{other}");
    }
    let found = all_matches(&server, "Patient?family=castellanos").await;
    assert_eq!(found, [format!("Patient/{id}")]);
    // Two matches: 412, nothing created.
    server.create(&castellanos).await;
    let resp = create_if_none_exist(&server, &castellanos, condition).await;
    assert_outcome(&resp, 412);
    assert_eq!(
        all_matches(&server, "Patient?family=castellanos")
            .await
            .len(),
        2
    );
    // A condition that matches none of them creates.
    let resp = create_if_none_exist(
        &server,
        &castellanos,
        "name=castellanos&birthdate=1950-05-06",
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    // Criteria that cannot be understood are refused, not ignored (ignoring one would
    // widen the match): a 400 and nothing created.
    for bad in ["name=castellanos&foo=bar", "birthdate=zz", "_count=1"] {
        let resp = create_if_none_exist(&server, &castellanos, bad).await;
        assert_outcome(&resp, 400);
    }
    assert_eq!(
        all_matches(&server, "Patient?family=castellanos")
            .await
            .len(),
        3
    );
}
