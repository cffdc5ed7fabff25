//! Search paging against a real PostgreSQL: the keyset order with several keys, missing
//! values and ties, forwards and backwards, stable while others write; cursors that do not
//! belong to the search (each test gets a fresh database from `#[sqlx::test]`).

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use fhir_core::{Id, ResourceType};
use serde_json::{Value, json};
use sqlx::PgPool;
use store::{SearchPage, Store, StoreError};

fn id(s: &str) -> Id {
    s.parse().unwrap()
}

/// Patients `p00`..: birth dates with ties and gaps, families with ties.
fn patients() -> Vec<(String, Option<&'static str>, &'static str)> {
    let births = [
        Some("1990"),
        None,
        Some("1985-03-02"),
        Some("1990"),
        Some("2001-07"),
        None,
        Some("1985-03-02"),
        Some("1970-01-01"),
        Some("1990"),
        Some("2001-07-15"),
        None,
    ];
    let families = ["Nash", "Abel", "Zorn", "Abel", "Marx", "Nash", "Abel"];
    births
        .iter()
        .enumerate()
        .map(|(n, birth)| (format!("p{n:02}"), *birth, families[n % families.len()]))
        .collect()
}

async fn load(store: &Store) {
    for (pid, birth, family) in patients() {
        let mut patient = json!({"resourceType": "Patient", "name": [{"family": family}]});
        if let Some(birth) = birth {
            patient["birthDate"] = json!(birth);
        }
        store
            .update(ResourceType::Patient, &id(&pid), patient, None, &[])
            .await
            .unwrap();
    }
}

fn ids(page: &SearchPage) -> Vec<String> {
    page.matches.iter().map(|f| f.id.clone()).collect()
}

/// Every page of `query`, following `next`; then back from the last page, following
/// `previous`. Returns the ids forwards, and the ids read backwards (in forward order).
async fn walk(store: &Store, query: &str) -> (Vec<String>, Vec<String>) {
    let mut forwards = Vec::new();
    let mut cursor: Option<String> = None;
    let last = loop {
        let mut q = support::search(Some(ResourceType::Patient), query);
        q.cursor = cursor.clone();
        let page = store.search(&q).await.unwrap();
        forwards.extend(ids(&page));
        match page.next.clone() {
            Some(next) => cursor = Some(next),
            None => break page,
        }
        assert!(forwards.len() < 100, "paging does not end");
    };
    let mut backwards = Vec::new();
    let mut page = last;
    backwards.splice(0..0, ids(&page));
    while let Some(previous) = page.previous.clone() {
        let mut q = support::search(Some(ResourceType::Patient), query);
        q.cursor = Some(previous);
        page = store.search(&q).await.unwrap();
        backwards.splice(0..0, ids(&page));
        assert!(backwards.len() < 100, "paging back does not end");
    }
    (forwards, backwards)
}

/// The expected order: birth date descending by the end of its range (none last), then
/// family ascending, then creation order.
fn expected_by_birth_then_family() -> Vec<String> {
    let end = |birth: &str| -> String {
        // The end of the range a partial date covers, comparable as text.
        match birth.len() {
            4 => format!("{birth}-12-31"),
            7 => format!("{birth}-31"),
            _ => birth.to_string(),
        }
    };
    let mut rows: Vec<(usize, String, Option<&str>, &str)> = patients()
        .into_iter()
        .enumerate()
        .map(|(n, (pid, birth, family))| (n, pid, birth, family))
        .collect();
    rows.sort_by(|a, b| {
        let birth = match (a.2, b.2) {
            (Some(x), Some(y)) => end(y).cmp(&end(x)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        birth.then(a.3.cmp(b.3)).then(a.0.cmp(&b.0))
    });
    rows.into_iter().map(|r| r.1).collect()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn pages_follow_the_sort_keys_with_ties_and_missing_values(pool: PgPool) {
    let store = Store::from_pool(pool);
    load(&store).await;
    let expected = expected_by_birth_then_family();
    for count in [1, 2, 3, 4, 20] {
        let (forwards, backwards) =
            walk(&store, &format!("_sort=-birthdate,family&_count={count}")).await;
        assert_eq!(forwards, expected, "_count={count}");
        assert_eq!(backwards, expected, "_count={count}, read backwards");
    }
    // Unsorted: creation order.
    let all: Vec<String> = patients().into_iter().map(|p| p.0).collect();
    let (forwards, backwards) = walk(&store, "_count=4").await;
    assert_eq!(forwards, all);
    assert_eq!(backwards, all);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_cursor_is_stable_while_others_write(pool: PgPool) {
    let store = Store::from_pool(pool);
    load(&store).await;
    let q = support::search(Some(ResourceType::Patient), "_count=4");
    let first = store.search(&q).await.unwrap();
    // Created and deleted between pages: the boundary does not move.
    store
        .delete(ResourceType::Patient, &id("p01"))
        .await
        .unwrap();
    store
        .delete(ResourceType::Patient, &id("p05"))
        .await
        .unwrap();
    store
        .update(
            ResourceType::Patient,
            &id("late"),
            json!({"resourceType": "Patient"}),
            None,
            &[],
        )
        .await
        .unwrap();
    let mut rest = Vec::new();
    let mut cursor = first.next.clone();
    while let Some(next) = cursor {
        let mut q = q.clone();
        q.cursor = Some(next);
        let page = store.search(&q).await.unwrap();
        rest.extend(ids(&page));
        cursor = page.next;
    }
    assert_eq!(ids(&first), ["p00", "p01", "p02", "p03"]);
    assert_eq!(rest, ["p04", "p06", "p07", "p08", "p09", "p10", "late"]);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_cursor_only_opens_for_the_search_that_issued_it(pool: PgPool) {
    let store = Store::from_pool(pool);
    load(&store).await;
    let page = store
        .search(&support::search(
            Some(ResourceType::Patient),
            "family=abel&_count=1",
        ))
        .await
        .unwrap();
    let cursor = page.next.unwrap();
    for other in ["family=nash&_count=1", "family=abel&_count=2", "_count=1"] {
        let mut q = support::search(Some(ResourceType::Patient), other);
        q.cursor = Some(cursor.clone());
        assert!(
            matches!(store.search(&q).await, Err(StoreError::BadCursor)),
            "{other}"
        );
    }
    let mut tampered = cursor.clone().into_bytes();
    tampered[3] ^= 1;
    let mut q = support::search(Some(ResourceType::Patient), "family=abel&_count=1");
    q.cursor = Some(String::from_utf8(tampered).unwrap());
    assert!(matches!(store.search(&q).await, Err(StoreError::BadCursor)));
    // Another store on the same database shares the key.
    let mut q = support::search(Some(ResourceType::Patient), "family=abel&_count=1");
    q.cursor = Some(cursor);
    let other = Store::from_pool(store.pool().clone());
    let next = other.search(&q).await.unwrap();
    assert_eq!(next.matches.len(), 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn totals_count_every_match(pool: PgPool) {
    let store = Store::from_pool(pool);
    load(&store).await;
    let total = |query: &'static str| {
        let store = store.clone();
        async move {
            store
                .search(&support::search(Some(ResourceType::Patient), query))
                .await
                .unwrap()
        }
    };
    // Bounds that exclude each other match nothing (and are no error).
    assert_eq!(
        total("birthdate=ge2000&birthdate=lt1990&_total=accurate")
            .await
            .total,
        Some(0)
    );
    assert_eq!(
        total("birthdate=ge1985&birthdate=lt1986&_total=accurate")
            .await
            .total,
        Some(2)
    );
    let accurate = total("family=abel&_count=1&_total=accurate").await;
    assert_eq!(accurate.total, Some(5));
    assert_eq!(accurate.matches.len(), 1);
    let counted = total("family=abel&_summary=count").await;
    assert_eq!(counted.total, Some(5));
    assert!(counted.matches.is_empty());
    // Known for free when the first page holds every match; not given otherwise.
    assert_eq!(total("family=abel").await.total, Some(5));
    assert_eq!(total("family=abel&_count=2").await.total, None);
    assert_eq!(total("family=abel&_total=none").await.total, None);
    assert!(total("_total=estimate&_count=1").await.total.is_some());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn includes_follow_references_both_ways_and_iterate(pool: PgPool) {
    let store = Store::from_pool(pool);
    let put = |rtype: ResourceType, rid: &'static str, resource: Value| {
        let store = store.clone();
        async move {
            store
                .update(rtype, &id(rid), resource, None, &[])
                .await
                .unwrap();
        }
    };
    put(
        ResourceType::Organization,
        "o1",
        json!({"resourceType": "Organization", "name": "Clinic"}),
    )
    .await;
    put(
        ResourceType::Patient,
        "p1",
        json!({"resourceType": "Patient", "managingOrganization": {"reference": "Organization/o1"}}),
    )
    .await;
    put(
        ResourceType::Account,
        "a1",
        json!({"resourceType": "Account", "status": "active",
        "subject": [{"reference": "Patient/p1"}], "owner": {"reference": "Organization/o1"}}),
    )
    .await;
    for n in ["i1", "i2"] {
        put(
            ResourceType::Invoice,
            n,
            json!({"resourceType": "Invoice", "status": "issued",
            "subject": {"reference": "Patient/p1"}, "account": {"reference": "Account/a1"}}),
        )
        .await;
    }
    let included = |query: &'static str, rtype: ResourceType| {
        let store = store.clone();
        async move {
            let page = store
                .search(&support::search(Some(rtype), query))
                .await
                .unwrap();
            let mut found: Vec<String> = page
                .included
                .iter()
                .map(|f| format!("{}/{}", f.resource_type, f.id))
                .collect();
            found.sort();
            (ids(&page), found)
        }
    };
    let (matches, inc) = included(
        "_id=i1&_include=Invoice:subject&_include=Invoice:account",
        ResourceType::Invoice,
    )
    .await;
    assert_eq!(matches, ["i1"]);
    assert_eq!(inc, ["Account/a1", "Patient/p1"]);
    // Without :iterate, an include applies to the matches only.
    let (_, inc) = included(
        "_id=i1&_include=Invoice:account&_include=Account:owner",
        ResourceType::Invoice,
    )
    .await;
    assert_eq!(inc, ["Account/a1"]);
    let (_, inc) = included(
        "_id=i1&_include=Invoice:account&_include:iterate=Account:owner",
        ResourceType::Invoice,
    )
    .await;
    assert_eq!(inc, ["Account/a1", "Organization/o1"]);
    // Both invoices, once each; a match is never included again.
    let (_, inc) = included(
        "_id=p1&_revinclude=Invoice:subject&_revinclude=Invoice:patient",
        ResourceType::Patient,
    )
    .await;
    assert_eq!(inc, ["Invoice/i1", "Invoice/i2"]);
    let (matches, inc) = included(
        "status=issued&_include=Invoice:subject&_revinclude:iterate=Invoice:subject",
        ResourceType::Invoice,
    )
    .await;
    assert_eq!(matches, ["i1", "i2"]);
    assert_eq!(inc, ["Patient/p1"]);
}
