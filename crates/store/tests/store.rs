//! Store tests against a real PostgreSQL: each test gets a fresh database from
//! `#[sqlx::test]` (DATABASE_URL names the server; its role needs CREATEDB).

mod support;

use fhir_core::{Id, ResourceType, VersionId};
use serde_json::{Value, json};
use sqlx::PgPool;
use store::{Claim, Created, HistoryQuery, HistoryScope, NewOutcome, Store, StoreError};

fn id(s: &str) -> Id {
    s.parse().unwrap_or_else(|_| panic!("{s} is a valid id"))
}

fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "active": true})
}

fn email(value: &str) -> Vec<Claim> {
    vec![Claim {
        rule: "Patient.email",
        value: value.into(),
        expression: "Patient.telecom[0].value".into(),
    }]
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn parallel_updates_lose_nothing(pool: PgPool) {
    let store = Store::from_pool(pool);
    let p = id("p");
    let writes = (0..24).map(|_| store.update(ResourceType::Patient, &p, patient("p"), None, &[]));
    for result in futures::future::join_all(writes).await {
        assert!(result.is_ok(), "{result:?}");
    }
    let current = store.read(ResourceType::Patient, &p).await.ok().flatten();
    assert_eq!(current.map(|c| c.version), Some(VersionId::new(24)));
    let page = store
        .history(&HistoryQuery {
            scope: HistoryScope::Instance(ResourceType::Patient, p),
            since: None,
            before: None,
            count: 100,
        })
        .await
        .ok();
    let versions: Vec<i64> = page
        .iter()
        .flat_map(|p| &p.rows)
        .map(|r| r.version.get())
        .collect();
    assert_eq!(versions, (1..=24).rev().collect::<Vec<_>>());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn if_match_admits_one_winner(pool: PgPool) {
    let store = Store::from_pool(pool);
    let p = id("p");
    assert!(
        store
            .update(ResourceType::Patient, &p, patient("p"), None, &[])
            .await
            .is_ok()
    );
    let writes = (0..8).map(|_| {
        store.update(
            ResourceType::Patient,
            &p,
            patient("p"),
            Some(VersionId::FIRST),
            &[],
        )
    });
    let results = futures::future::join_all(writes).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(StoreError::VersionConflict { current: Some(_) })))
    );
}

/// A request cancelled in the middle of a transaction (the client went away) must not leave
/// its connection holding the row lock until that connection happens to be used again.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_interrupted_update_leaves_no_lock_behind(pool: PgPool) {
    use std::time::Duration;
    use tokio::time::timeout;

    let store = Store::from_pool(pool.clone());
    let p = id("p");
    assert!(
        store
            .update(ResourceType::Patient, &p, patient("p"), None, &[])
            .await
            .is_ok()
    );
    // Several idle connections, so that the next requests are not all given the
    // interrupted one.
    let reads = (0..4).map(|_| store.read(ResourceType::Patient, &p));
    assert!(
        futures::future::join_all(reads)
            .await
            .iter()
            .all(Result::is_ok)
    );
    // Another session holds the row, so the store's update waits inside its transaction;
    // then the update is cancelled there.
    let mut holder = pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("select 1 from resources where id = 'p' for update")
        .execute(&mut *holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let interrupted = timeout(
        Duration::from_millis(300),
        store.update(ResourceType::Patient, &p, patient("p"), None, &[]),
    )
    .await;
    assert!(interrupted.is_err(), "the update should still be waiting");
    holder.commit().await.unwrap_or_else(|e| panic!("{e}"));

    // Every later update gets the row promptly, whichever connection it is given.
    for _ in 0..4 {
        let next = timeout(
            Duration::from_secs(5),
            store.update(ResourceType::Patient, &p, patient("p"), None, &[]),
        )
        .await;
        assert!(matches!(next, Ok(Ok(_))), "{next:?}");
    }
    let current = store.read(ResourceType::Patient, &p).await.ok().flatten();
    assert_eq!(current.map(|c| c.version), Some(VersionId::new(5)));
}

/// Refused writes (an error inside the transaction) hand back connections that work.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn refused_writes_leave_the_connections_usable(pool: PgPool) {
    let store = Store::from_pool(pool);
    let p = id("p");
    assert!(
        store
            .update(ResourceType::Patient, &p, patient("p"), None, &[])
            .await
            .is_ok()
    );
    for _ in 0..40 {
        let stale = store
            .update(
                ResourceType::Patient,
                &p,
                patient("p"),
                Some(VersionId::new(9)),
                &[],
            )
            .await;
        assert!(matches!(stale, Err(StoreError::VersionConflict { .. })));
    }
    let reads = (0..40).map(|_| store.read(ResourceType::Patient, &p));
    for read in futures::future::join_all(reads).await {
        assert!(matches!(read, Ok(Some(_))), "{read:?}");
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn delete_writes_one_tombstone_and_update_revives(pool: PgPool) {
    let store = Store::from_pool(pool);
    let p = id("p");
    assert!(
        store
            .update(ResourceType::Patient, &p, patient("p"), None, &[])
            .await
            .is_ok()
    );
    let deleted = store.delete(ResourceType::Patient, &p).await.ok().flatten();
    assert_eq!(deleted.map(|d| d.0), Some(VersionId::new(2)));
    assert!(matches!(
        store.delete(ResourceType::Patient, &p).await,
        Ok(None)
    ));
    assert!(matches!(
        store.delete(ResourceType::Patient, &id("never")).await,
        Ok(None)
    ));
    let current = store.read(ResourceType::Patient, &p).await.ok().flatten();
    assert!(current.is_some_and(|c| c.deleted && c.content.is_none()));
    let tombstone = store
        .vread(ResourceType::Patient, &p, VersionId::new(2))
        .await
        .ok()
        .flatten();
    assert!(tombstone.is_some_and(|t| t.content.is_none() && t.method == "DELETE"));
    let revived = store
        .update(ResourceType::Patient, &p, patient("p"), None, &[])
        .await;
    assert!(matches!(revived, Ok(ref s) if s.created && s.version == VersionId::new(3)));
}

/// [`Store::create_new_all`] of one resource.
async fn create_new(store: &Store, rtype: ResourceType, id: &Id, resource: Value) -> NewOutcome {
    let outcomes = store
        .create_new_all(rtype, vec![(id.clone(), resource)])
        .await
        .unwrap_or_default();
    assert_eq!(outcomes.len(), 1, "one outcome");
    outcomes[0]
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn create_new_writes_an_id_only_if_it_never_existed(pool: PgPool) {
    let store = Store::from_pool(pool);
    let (p, gone) = (id("p"), id("gone"));
    let first = create_new(&store, ResourceType::Patient, &p, patient("p")).await;
    assert_eq!(first, NewOutcome::Written);
    // Taken: nothing written, the current version stays.
    let again = json!({"resourceType": "Patient", "id": "p"});
    let again = create_new(&store, ResourceType::Patient, &p, again).await;
    assert_eq!(again, NewOutcome::IdTaken);
    let current = store.read(ResourceType::Patient, &p).await.ok().flatten();
    assert!(
        current.is_some_and(|c| c.version == VersionId::FIRST
            && c.content.is_some_and(|text| text.contains("active")))
    );
    // Deleted: not brought back.
    assert!(
        store
            .update(ResourceType::Patient, &gone, patient("gone"), None, &[])
            .await
            .is_ok()
    );
    assert!(store.delete(ResourceType::Patient, &gone).await.is_ok());
    let revived = create_new(&store, ResourceType::Patient, &gone, patient("gone")).await;
    assert_eq!(revived, NewOutcome::IdTaken);
    // Concurrent calls for one id: one writes.
    let racing = id("racing");
    let written = futures::future::join_all(
        (0..8).map(|_| create_new(&store, ResourceType::Patient, &racing, patient("racing"))),
    )
    .await;
    assert_eq!(
        written
            .iter()
            .filter(|w| **w == NewOutcome::Written)
            .count(),
        1
    );
    assert!(written.iter().all(|w| *w != NewOutcome::DanglingReference));
    // A reference to nothing is refused.
    let account = json!({"resourceType": "Account", "id": "a", "status": "active",
                         "subject": [{"reference": "Patient/nobody"}]});
    let dangling = create_new(&store, ResourceType::Account, &id("a"), account).await;
    assert_eq!(dangling, NewOutcome::DanglingReference);
    assert!(
        store
            .read(ResourceType::Account, &id("a"))
            .await
            .ok()
            .flatten()
            .is_none()
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn create_new_all_writes_each_new_id_once_and_says_what_it_did(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let p = id("p");
    assert_eq!(
        create_new(&store, ResourceType::Patient, &p, patient("p")).await,
        NewOutcome::Written
    );
    let account = |id: &str, subject: &str| {
        json!({"resourceType": "Account", "id": id, "status": "active",
               "subject": [{"reference": subject}]})
    };
    let taken = id("taken");
    let first = account("taken", "Patient/p");
    assert_eq!(
        create_new(&store, ResourceType::Account, &taken, first).await,
        NewOutcome::Written
    );
    let outcomes = store
        .create_new_all(
            ResourceType::Account,
            vec![
                (id("a1"), account("a1", "Patient/p")),
                (taken.clone(), account("taken", "Patient/p")),
                (id("a1"), account("a1", "Patient/p")),
                (id("a2"), account("a2", "Patient/nobody")),
                (id("a3"), account("a3", "Patient/p")),
            ],
        )
        .await;
    assert_eq!(
        outcomes.ok(),
        Some(vec![
            NewOutcome::Written,
            NewOutcome::IdTaken,
            NewOutcome::IdTaken,
            NewOutcome::DanglingReference,
            NewOutcome::Written,
        ])
    );
    for (name, exists) in [("a1", true), ("a2", false), ("a3", true)] {
        let current = store
            .read(ResourceType::Account, &id(name))
            .await
            .ok()
            .flatten();
        assert_eq!(
            current.map(|c| c.version),
            exists.then_some(VersionId::FIRST),
            "{name}"
        );
    }
    // One history row, one event and the reference record of each written Account.
    let counts: Option<(i64, i64, i64)> = sqlx::query_as(
        "select (select count(*) from resource_history where res_type = 'Account'),
                (select count(*) from outbox where routing_key = 'Account.create'),
                (select count(*) from resource_references r join resources c on c.key = r.res_key
                 where c.res_type = 'Account' and r.target_id = 'p')",
    )
    .fetch_one(&pool)
    .await
    .ok();
    assert_eq!(counts, Some((3, 3, 3)));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn claims_are_unique_among_current_resources(pool: PgPool) {
    let store = Store::from_pool(pool);
    let (a, b) = (id("a"), id("b"));
    assert!(
        store
            .update(
                ResourceType::Patient,
                &a,
                patient("a"),
                None,
                &email("x@y.org")
            )
            .await
            .is_ok()
    );
    // The holder may keep its own claim.
    assert!(
        store
            .update(
                ResourceType::Patient,
                &a,
                patient("a"),
                None,
                &email("x@y.org")
            )
            .await
            .is_ok()
    );
    let taken = store
        .update(
            ResourceType::Patient,
            &b,
            patient("b"),
            None,
            &email("x@y.org"),
        )
        .await;
    assert!(
        matches!(taken, Err(StoreError::Duplicate { ref expression, .. }) if expression == "Patient.telecom[0].value")
    );
    // Nothing of the refused write is left behind.
    assert!(
        store
            .read(ResourceType::Patient, &b)
            .await
            .ok()
            .flatten()
            .is_none()
    );
    let created = store
        .create(ResourceType::Patient, patient("c"), &email("x@y.org"), None)
        .await;
    assert!(matches!(created, Err(StoreError::Duplicate { .. })));
    // Deleting the holder frees the value.
    assert!(store.delete(ResourceType::Patient, &a).await.is_ok());
    assert!(
        store
            .update(
                ResourceType::Patient,
                &b,
                patient("b"),
                None,
                &email("x@y.org")
            )
            .await
            .is_ok()
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn conditional_create_finds_by_identifier(pool: PgPool) {
    let store = Store::from_pool(pool);
    let with_identifier = json!({"resourceType": "Patient",
        "identifier": [{"system": "http://hospital.example/mrn", "value": "123"}]});
    let condition = support::Condition::new(
        ResourceType::Patient,
        "identifier=http://hospital.example/mrn|123",
    );
    let first = store
        .create(
            ResourceType::Patient,
            with_identifier.clone(),
            &[],
            Some(condition.get()),
        )
        .await;
    let Ok(Created::New(first)) = first else {
        panic!("first create stores: {first:?}")
    };
    let second = store
        .create(
            ResourceType::Patient,
            with_identifier.clone(),
            &[],
            Some(condition.get()),
        )
        .await;
    assert!(matches!(second, Ok(Created::Existing { ref id, .. }) if *id == first.id));
    let no_system = support::Condition::new(ResourceType::Patient, "identifier=|123");
    let third = store
        .create(
            ResourceType::Patient,
            with_identifier.clone(),
            &[],
            Some(no_system.get()),
        )
        .await;
    assert!(
        matches!(third, Ok(Created::New(_))),
        "the stored identifier has a system"
    );
    let any_system = support::Condition::new(ResourceType::Patient, "identifier=123");
    let fourth = store
        .create(
            ResourceType::Patient,
            with_identifier,
            &[],
            Some(any_system.get()),
        )
        .await;
    assert!(matches!(fourth, Err(StoreError::MultipleMatches)));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn history_pages_by_cursor(pool: PgPool) {
    let store = Store::from_pool(pool);
    for n in 0..7 {
        let name = format!("p{n}");
        assert!(
            store
                .update(ResourceType::Patient, &id(&name), patient(&name), None, &[])
                .await
                .is_ok()
        );
    }
    assert!(
        store
            .update(
                ResourceType::Account,
                &id("a"),
                json!({"resourceType": "Account", "id": "a", "status": "active"}),
                None,
                &[]
            )
            .await
            .is_ok()
    );
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .history(&HistoryQuery {
                scope: HistoryScope::Type(ResourceType::Patient),
                since: None,
                before,
                count: 3,
            })
            .await;
        let Ok(page) = page else {
            panic!("history: {page:?}")
        };
        seen.extend(page.rows.iter().map(|r| r.id.clone()));
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["p6", "p5", "p4", "p3", "p2", "p1", "p0"]);
}

/// Runs `write` while another transaction holds the row of `Patient/p` and, once `write` has
/// read its clock and waits for that row, stamps the row an hour ahead and commits. Returns
/// what `write` gave and the instant the other transaction stamped.
async fn behind_a_later_writer<T>(
    pool: &PgPool,
    write: impl std::future::Future<Output = T>,
) -> (T, chrono::DateTime<chrono::Utc>) {
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let mut holder = pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("select from resources where res_type = 'Patient' and id = 'p' for update")
        .execute(&mut *holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let hold = async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        sqlx::query(
            "update resources set last_updated = $1 where res_type = 'Patient' and id = 'p'",
        )
        .bind(later)
        .execute(&mut *holder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        holder.commit().await.unwrap_or_else(|e| panic!("{e}"));
    };
    let (written, ()) = futures::join!(write, hold);
    (written, later)
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_version_is_stamped_after_the_one_it_follows(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let p = id("p");
    let created = store
        .update(ResourceType::Patient, &p, patient("p"), None, &[])
        .await;
    assert!(created.is_ok(), "{created:?}");

    let update = store.update(ResourceType::Patient, &p, patient("p"), None, &[]);
    let (updated, later) = behind_a_later_writer(&pool, update).await;
    let updated = updated.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(updated.last_updated > later, "{updated:?} after {later}");
    let content: Value = serde_json::from_str(&updated.content).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        content["meta"]["lastUpdated"],
        fhir_core::resource::format_instant(updated.last_updated)
    );

    let delete = store.delete(ResourceType::Patient, &p);
    let (deleted, later) = behind_a_later_writer(&pool, delete).await;
    let (_, deleted_at) = deleted
        .unwrap_or_else(|e| panic!("{e:?}"))
        .unwrap_or_else(|| panic!("deleted"));
    assert!(deleted_at > later, "{deleted_at} after {later}");

    // The history and the events carry the same instants.
    let stamped: Vec<(i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "select version, last_updated from resource_history where id = 'p' order by version",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stamped[1..], [(2, updated.last_updated), (3, deleted_at)]);
    let events: Vec<String> = sqlx::query_scalar(
        "select payload::jsonb->>'lastUpdated' from outbox_envelopes order by id",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        events[1..],
        [
            fhir_core::resource::format_instant(updated.last_updated),
            fhir_core::resource::format_instant(deleted_at)
        ]
    );
}

/// PostgreSQL on the machines this runs on is built with lz4 (Debian's, the official
/// images): the JSON columns use it, and what they hold reads back unchanged.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_json_columns_are_compressed_with_lz4(pool: PgPool) {
    let methods: Vec<(String, String)> = sqlx::query_as(
        "select attrelid::regclass::text, attcompression::text from pg_attribute
         where (attrelid, attname) in (('resources'::regclass, 'content'),
                                       ('resource_history'::regclass, 'content'))
         order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let expected = ["resource_history", "resources"].map(|t| (t.to_owned(), "l".to_owned()));
    assert_eq!(methods, expected);

    let store = Store::from_pool(pool);
    let long = "x".repeat(4000);
    let resource = json!({"resourceType": "Patient", "id": "long", "name": [{"text": long}]});
    store
        .update(ResourceType::Patient, &id("long"), resource, None, &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let read = store
        .read(ResourceType::Patient, &id("long"))
        .await
        .ok()
        .flatten();
    let content: Option<Value> = read
        .and_then(|c| c.content)
        .and_then(|text| serde_json::from_str(&text).ok());
    assert_eq!(content.map(|c| c["name"][0]["text"] == long), Some(true));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn concurrent_create_new_all_calls_with_ids_in_common_both_finish(pool: PgPool) {
    let store = Store::from_pool(pool);
    let patient_of = |name: &str| (id(name), patient(name));
    for round in 0..100 {
        let (x, y) = (format!("x{round}"), format!("y{round}"));
        let (one, other) = futures::future::join(
            store.create_new_all(ResourceType::Patient, vec![patient_of(&x), patient_of(&y)]),
            store.create_new_all(ResourceType::Patient, vec![patient_of(&y), patient_of(&x)]),
        )
        .await;
        let (Ok(one), Ok(other)) = (one, other) else {
            panic!("round {round}: a call failed (a deadlock?)");
        };
        // x is first in `one`, second in `other`; y the other way round.
        let written = |a: NewOutcome, b: NewOutcome| {
            [a, b].iter().filter(|o| **o == NewOutcome::Written).count()
        };
        assert_eq!(
            written(one[0], other[1]),
            1,
            "round {round}: x written once"
        );
        assert_eq!(
            written(one[1], other[0]),
            1,
            "round {round}: y written once"
        );
    }
}
