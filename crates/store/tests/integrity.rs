//! Referential integrity against a real PostgreSQL: what a write and a delete are refused
//! for, what a refused write leaves (nothing), the reference record, and the two orders in
//! which a write and a delete of its target can meet (the lock of one waits for the other,
//! which then decides).

use std::time::Duration;

use fhir_core::{Id, ResourceType};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use store::{Created, NewResource, ReferentialIntegrity, Store, StoreError};

fn id(s: &str) -> Id {
    s.parse().unwrap_or_else(|_| panic!("{s} is a valid id"))
}

fn empty_patient() -> Value {
    json!({"resourceType": "Patient"})
}

fn account(subject: &str) -> Value {
    json!({"resourceType": "Account", "status": "active", "subject": [{"reference": subject}]})
}

async fn put(store: &Store, rtype: ResourceType, name: &str, resource: Value) {
    let result = store.update(rtype, &id(name), resource, None, &[]).await;
    assert!(result.is_ok(), "{result:?}");
}

/// Rows in resources, resource_history, outbox and resource_references.
async fn rows(pool: &PgPool) -> [i64; 4] {
    let row = sqlx::query(
        "select (select count(*) from resources), (select count(*) from resource_history),
                (select count(*) from outbox), (select count(*) from resource_references)",
    )
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("counting rows: {e}"));
    [row.get(0), row.get(1), row.get(2), row.get(3)]
}

/// The reference record of `Type/id`: its targets, sorted.
async fn record(pool: &PgPool, rtype: ResourceType, name: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select x.target_type || '/' || x.target_id
         from resource_references x join resources r on r.key = x.res_key
         where r.res_type = $1 and r.id = $2 order by 1",
    )
    .bind(rtype.as_str())
    .bind(name)
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_write_naming_a_missing_resource_writes_nothing(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let before = rows(&pool).await;
    let created = store
        .create(ResourceType::Account, account("Patient/p1"), &[], None)
        .await;
    assert!(
        matches!(&created, Err(StoreError::DanglingReference { target, expression })
            if target == "Patient/p1" && expression == "Account.subject[0].reference"),
        "{created:?}"
    );
    let updated = store
        .update(
            ResourceType::Account,
            &id("a1"),
            account("Patient/p1"),
            None,
            &[],
        )
        .await;
    assert!(
        matches!(updated, Err(StoreError::DanglingReference { .. })),
        "{updated:?}"
    );
    assert_eq!(rows(&pool).await, before);

    put(&store, ResourceType::Patient, "p1", empty_patient()).await;
    let created = store
        .create(ResourceType::Account, account("Patient/p1"), &[], None)
        .await;
    let Ok(Created::New(stored)) = created else {
        panic!("{created:?}")
    };
    assert_eq!(
        record(&pool, ResourceType::Account, stored.id.as_str()).await,
        ["Patient/p1"]
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_record_follows_the_current_version(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    for name in ["p1", "p2"] {
        put(&store, ResourceType::Patient, name, empty_patient()).await;
    }
    put(&store, ResourceType::Account, "a1", account("Patient/p1")).await;
    put(&store, ResourceType::Account, "a1", account("Patient/p2")).await;
    assert_eq!(
        record(&pool, ResourceType::Account, "a1").await,
        ["Patient/p2"]
    );
    // Patient/p1 is free again; Patient/p2 is held.
    assert!(store.delete(ResourceType::Patient, &id("p1")).await.is_ok());
    let refused = store.delete(ResourceType::Patient, &id("p2")).await;
    assert!(
        matches!(&refused, Err(StoreError::Referenced { target, count: 1, more: false, referrers })
            if target == "Patient/p2" && referrers == &["Account/a1"]),
        "{refused:?}"
    );
    assert!(store.delete(ResourceType::Account, &id("a1")).await.is_ok());
    assert!(record(&pool, ResourceType::Account, "a1").await.is_empty());
    assert!(store.delete(ResourceType::Patient, &id("p2")).await.is_ok());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_unit_checks_once_all_its_writes_are_done(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let (patient, acct) = (Id::generate(), Id::generate());
    // The Account is written before the Patient it refers to.
    let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let created = tx
        .create_all(vec![new(
            ResourceType::Account,
            &acct,
            account(&format!("Patient/{patient}")),
        )])
        .await;
    assert!(created.is_ok(), "{created:?}");
    let updated = tx
        .update(ResourceType::Patient, &patient, empty_patient(), None, &[])
        .await;
    assert!(updated.is_ok(), "{updated:?}");
    assert!(tx.check_integrity().await.is_ok());
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));

    // Deleting the Patient alone fails, naming it; with the Account, it passes.
    let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let deleted = tx.delete(ResourceType::Patient, &patient, None).await;
    assert!(matches!(deleted, Ok(Some(_))), "{deleted:?}");
    let checked = tx.check_integrity().await;
    assert!(
        matches!(&checked, Err((Some((ResourceType::Patient, p)), StoreError::Referenced { .. }))
            if p == &patient),
        "{checked:?}"
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
    for (rtype, id) in [
        (ResourceType::Patient, &patient),
        (ResourceType::Account, &acct),
    ] {
        let deleted = tx.delete(rtype, id, None).await;
        assert!(matches!(deleted, Ok(Some(_))), "{deleted:?}");
    }
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));

    // A unit that refers to a missing resource does not commit, and names the referrer.
    let before = rows(&pool).await;
    let other = Id::generate();
    let mut tx = dangling_unit(&store, &other).await;
    let checked = tx.check_integrity().await;
    assert!(
        matches!(&checked, Err((Some((ResourceType::Account, a)), StoreError::DanglingReference { .. }))
            if a == &other),
        "{checked:?}"
    );
    drop(tx);
    // The commit checks too.
    let committed = dangling_unit(&store, &other).await.commit().await;
    assert!(
        matches!(committed, Err(StoreError::DanglingReference { .. })),
        "{committed:?}"
    );
    assert_eq!(rows(&pool).await, before);
}

/// A resource for `Transaction::create_all`, without claims.
fn new(rtype: ResourceType, id: &Id, resource: Value) -> NewResource {
    NewResource {
        rtype,
        id: id.clone(),
        resource,
        claims: Vec::new(),
    }
}

/// A unit that has created Account `id`, which refers to an Organization that does not
/// exist.
async fn dangling_unit<'s>(store: &'s Store, id: &Id) -> store::Transaction<'s> {
    let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let created = tx
        .create_all(vec![new(
            ResourceType::Account,
            id,
            account("Organization/none"),
        )])
        .await;
    assert!(created.is_ok(), "{created:?}");
    tx
}

/// Whether `task` is still running after a while (it waits for a lock).
async fn still_waiting<T>(task: &tokio::task::JoinHandle<T>) -> bool {
    tokio::time::sleep(Duration::from_millis(300)).await;
    !task.is_finished()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_delete_waits_for_a_write_that_locked_its_target_then_refuses(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    put(&store, ResourceType::Patient, "p1", empty_patient()).await;
    let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let created = tx
        .create_all(vec![new(
            ResourceType::Account,
            &id("a1"),
            account("Patient/p1"),
        )])
        .await;
    assert!(created.is_ok(), "{created:?}");
    // Locks Patient/p1 for share until the unit ends.
    assert!(tx.check_integrity().await.is_ok());
    let deleter = store.clone();
    let delete =
        tokio::spawn(async move { deleter.delete(ResourceType::Patient, &id("p1")).await });
    assert!(
        still_waiting(&delete).await,
        "the delete waits for the write"
    );
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let deleted = delete.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(deleted, Err(StoreError::Referenced { .. })),
        "{deleted:?}"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_write_waits_for_a_delete_of_its_target_then_refuses(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    put(&store, ResourceType::Patient, "p1", empty_patient()).await;
    let before = rows(&pool).await;
    let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let deleted = tx.delete(ResourceType::Patient, &id("p1"), None).await;
    assert!(matches!(deleted, Ok(Some(_))), "{deleted:?}");
    // The create (one statement) waits on the tombstone's row lock.
    let writer = store.clone();
    let create = tokio::spawn(async move {
        writer
            .create(ResourceType::Account, account("Patient/p1"), &[], None)
            .await
    });
    assert!(
        still_waiting(&create).await,
        "the write waits for the delete"
    );
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let created = create.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(created, Err(StoreError::DanglingReference { .. })),
        "{created:?}"
    );
    // The tombstone (history, event) and nothing of the Account.
    let [resources, history, outbox, references] = rows(&pool).await;
    assert_eq!(
        [resources, history, outbox, references],
        [before[0], before[1] + 1, before[2] + 1, 0]
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn with_the_checks_off_anything_goes(pool: PgPool) {
    let store = Store::from_pool(pool.clone()).with_referential_integrity(ReferentialIntegrity {
        writes: false,
        deletes: false,
    });
    put(&store, ResourceType::Account, "a1", account("Patient/p1")).await;
    put(&store, ResourceType::Patient, "p1", empty_patient()).await;
    // The record is kept all the same, for the day the delete check is on.
    assert_eq!(
        record(&pool, ResourceType::Account, "a1").await,
        ["Patient/p1"]
    );
    assert!(store.delete(ResourceType::Patient, &id("p1")).await.is_ok());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn updates_of_resources_that_refer_to_each_other_all_succeed(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let linked = |own: &str, other: &str, n: usize| {
        json!({"resourceType": "Patient", "id": own, "gender": if n.is_multiple_of(2) { "male" } else { "female" },
               "link": [{"other": {"reference": format!("Patient/{other}")}, "type": "seealso"}]})
    };
    put(&store, ResourceType::Patient, "p1", empty_patient()).await;
    put(&store, ResourceType::Patient, "p2", linked("p2", "p1", 0)).await;
    put(&store, ResourceType::Patient, "p1", linked("p1", "p2", 0)).await;
    // Each update locks its own row, then the other's: run at once, they can deadlock, and
    // the one PostgreSQL fails is tried again.
    for n in 0..6 {
        let (a, b) = (store.clone(), store.clone());
        let first = tokio::spawn(async move {
            a.update(
                ResourceType::Patient,
                &id("p1"),
                linked("p1", "p2", n),
                None,
                &[],
            )
            .await
        });
        let second = tokio::spawn(async move {
            b.update(
                ResourceType::Patient,
                &id("p2"),
                linked("p2", "p1", n),
                None,
                &[],
            )
            .await
        });
        for task in [first, second] {
            let updated = task.await.unwrap_or_else(|e| panic!("{e}"));
            assert!(updated.is_ok(), "{updated:?}");
        }
    }
}
