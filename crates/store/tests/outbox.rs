//! Outbox tests against a real PostgreSQL: every committed write leaves exactly one event
//! with its envelope, a refused write leaves none, and concurrent relays claim disjoint
//! batches.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::Duration;

use fhir_core::{Id, ResourceType, VersionId};
use serde_json::{Value, json};
use sqlx::PgPool;
use store::{Claim, Created, Store, StoreError};

fn id(s: &str) -> Id {
    s.parse().unwrap()
}

fn patient() -> Value {
    json!({"resourceType": "Patient", "active": true})
}

fn email(value: &str) -> Vec<Claim> {
    vec![Claim {
        rule: "Patient.email",
        value: value.into(),
        expression: "Patient.telecom[0].value".into(),
    }]
}

/// Every outbox row, oldest first: (routing key, payload, event id).
async fn events(pool: &PgPool) -> Vec<(String, Value, String)> {
    sqlx::query_as::<_, (String, Value, String)>(
        "select routing_key, payload::jsonb, event_id::text from outbox_envelopes order by id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn every_write_leaves_one_event(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let Created::New(created) = store
        .create(ResourceType::Patient, patient(), &[], None)
        .await
        .unwrap()
    else {
        panic!("not created");
    };
    let p = created.id.clone();
    let updated = store
        .update(ResourceType::Patient, &p, patient(), None, &[])
        .await
        .unwrap();
    let (deleted, deleted_at) = store
        .delete(ResourceType::Patient, &p)
        .await
        .unwrap()
        .unwrap();
    // Nothing to delete: no event.
    assert!(
        store
            .delete(ResourceType::Patient, &p)
            .await
            .unwrap()
            .is_none()
    );
    // Writing a deleted resource again brings it back: a create.
    store
        .update(ResourceType::Patient, &p, patient(), None, &[])
        .await
        .unwrap();
    // Update-as-create with a client id.
    store
        .update(
            ResourceType::Patient,
            &id("client-id"),
            patient(),
            None,
            &[],
        )
        .await
        .unwrap();

    let rows = events(&pool).await;
    let keys: Vec<&str> = rows.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "Patient.create",
            "Patient.update",
            "Patient.delete",
            "Patient.create",
            "Patient.create"
        ]
    );
    for (_, payload, event_id) in &rows {
        assert_eq!(payload["specVersion"], 1);
        assert_eq!(payload["eventId"], event_id.as_str());
        assert_eq!(payload["resourceType"], "Patient");
    }

    let (_, first, _) = &rows[0];
    assert_eq!(first["action"], "create");
    assert_eq!(first["id"], p.as_str());
    assert_eq!(first["versionId"], 1);
    assert_eq!(
        first["lastUpdated"].as_str(),
        Some(fhir_core::resource::format_instant(created.last_updated).as_str())
    );
    let stored: Value = serde_json::from_str(&created.content).unwrap();
    assert_eq!(first["resource"], stored);

    let (_, second, _) = &rows[1];
    assert_eq!(second["action"], "update");
    assert_eq!(second["versionId"], updated.version.get());
    assert_eq!(second["resource"]["meta"]["versionId"], "2");

    let (_, third, _) = &rows[2];
    assert_eq!(third["action"], "delete");
    assert_eq!(third["versionId"], deleted.get());
    assert_eq!(
        third["lastUpdated"].as_str(),
        Some(fhir_core::resource::format_instant(deleted_at).as_str())
    );
    assert!(third.get("resource").is_none(), "{third}");

    let (_, fourth, _) = &rows[3];
    assert_eq!(fourth["versionId"], 4);
    let (_, fifth, _) = &rows[4];
    assert_eq!(fifth["id"], "client-id");
    assert_eq!(fifth["versionId"], 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn conditional_create_writes_an_event_only_when_it_inserts(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let resource = json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:s", "value": "v"}]
    });
    let criteria = support::Condition::new(ResourceType::Patient, "identifier=urn:s|v");
    let first = store
        .create(
            ResourceType::Patient,
            resource.clone(),
            &[],
            Some(criteria.get()),
        )
        .await
        .unwrap();
    assert!(matches!(first, Created::New(_)));
    let second = store
        .create(ResourceType::Patient, resource, &[], Some(criteria.get()))
        .await
        .unwrap();
    assert!(matches!(second, Created::Existing { .. }));
    assert_eq!(events(&pool).await.len(), 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn refused_writes_leave_no_event(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    store
        .update(
            ResourceType::Patient,
            &id("a"),
            patient(),
            None,
            &email("x@example.org"),
        )
        .await
        .unwrap();
    store
        .update(ResourceType::Patient, &id("b"), patient(), None, &[])
        .await
        .unwrap();
    assert_eq!(events(&pool).await.len(), 2);

    let on_create = store
        .create(
            ResourceType::Patient,
            patient(),
            &email("x@example.org"),
            None,
        )
        .await;
    assert!(
        matches!(on_create, Err(StoreError::Duplicate { .. })),
        "{on_create:?}"
    );
    let on_update = store
        .update(
            ResourceType::Patient,
            &id("b"),
            patient(),
            None,
            &email("x@example.org"),
        )
        .await;
    assert!(
        matches!(on_update, Err(StoreError::Duplicate { .. })),
        "{on_update:?}"
    );
    let on_new_id = store
        .update(
            ResourceType::Patient,
            &id("c"),
            patient(),
            None,
            &email("x@example.org"),
        )
        .await;
    assert!(
        matches!(on_new_id, Err(StoreError::Duplicate { .. })),
        "{on_new_id:?}"
    );
    let conflict = store
        .update(
            ResourceType::Patient,
            &id("b"),
            patient(),
            Some(VersionId::new(7)),
            &[],
        )
        .await;
    assert!(
        matches!(conflict, Err(StoreError::VersionConflict { .. })),
        "{conflict:?}"
    );
    assert_eq!(events(&pool).await.len(), 2);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn concurrent_claims_get_disjoint_batches(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    for _ in 0..10 {
        store
            .create(ResourceType::Patient, patient(), &[], None)
            .await
            .unwrap();
    }
    let first = store.claim_outbox(6).await.unwrap();
    let second = store.claim_outbox(100).await.unwrap();
    let a: Vec<i64> = first.events().iter().map(|e| e.id).collect();
    let b: Vec<i64> = second.events().iter().map(|e| e.id).collect();
    assert_eq!(a.len(), 6);
    assert_eq!(b.len(), 4);
    assert!(
        a.iter().all(|id| !b.contains(id)),
        "{a:?} and {b:?} overlap"
    );
    assert!(
        first
            .events()
            .iter()
            .all(|e| e.routing_key == "Patient.create"
                && e.payload.contains(&e.event_id.to_string()))
    );

    // The first relay succeeds; the second fails and its rows go back unsent.
    first.mark_sent().await.unwrap();
    second.release().await.unwrap();
    let again = store.claim_outbox(100).await.unwrap();
    let c: Vec<i64> = again.events().iter().map(|e| e.id).collect();
    assert_eq!(c, b);
    again.mark_sent().await.unwrap();
    assert!(store.claim_outbox(100).await.unwrap().events().is_empty());
    let unsent: i64 = sqlx::query_scalar("select count(*) from outbox where sent_at is null")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(unsent, 0);
}

/// Waits for the next notification on the outbox channel.
async fn announced(listener: &mut sqlx::postgres::PgListener) {
    let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notification.channel(), store::OUTBOX_CHANNEL);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_committed_write_notifies_the_relay(pool: PgPool) {
    let store = Store::from_pool(pool);
    let mut listener = store.listen_outbox().await.unwrap();
    let Created::New(created) = store
        .create(ResourceType::Patient, patient(), &[], None)
        .await
        .unwrap()
    else {
        panic!("not created");
    };
    announced(&mut listener).await;
    store
        .update(ResourceType::Patient, &created.id, patient(), None, &[])
        .await
        .unwrap();
    announced(&mut listener).await;
    store
        .delete(ResourceType::Patient, &created.id)
        .await
        .unwrap();
    announced(&mut listener).await;
    let mut unit = store.begin().await.unwrap();
    unit.update(
        ResourceType::Patient,
        &id("in-a-unit"),
        patient(),
        None,
        &[],
    )
    .await
    .unwrap();
    unit.commit().await.unwrap();
    announced(&mut listener).await;
}

/// Whether a notification arrives within a moment.
async fn quiet(listener: &mut sqlx::postgres::PgListener) -> bool {
    tokio::time::timeout(Duration::from_millis(300), listener.recv())
        .await
        .is_err()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_unit_is_announced_once_committed_and_not_when_rolled_back(pool: PgPool) {
    let store = Store::from_pool(pool);
    let mut listener = store.listen_outbox().await.unwrap();
    let mut unit = store.begin().await.unwrap();
    unit.update(ResourceType::Patient, &id("kept"), patient(), None, &[])
        .await
        .unwrap();
    assert!(quiet(&mut listener).await, "announced before the commit");
    unit.commit().await.unwrap();
    announced(&mut listener).await;

    let mut unit = store.begin().await.unwrap();
    unit.update(ResourceType::Patient, &id("dropped"), patient(), None, &[])
        .await
        .unwrap();
    drop(unit);
    assert!(
        quiet(&mut listener).await,
        "a rolled-back unit was announced"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn simultaneous_claims_split_the_outbox(pool: PgPool) {
    let store = Store::from_pool(pool);
    for _ in 0..10 {
        store
            .create(ResourceType::Patient, patient(), &[], None)
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(store.claim_outbox(6), store.claim_outbox(6));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut ids: Vec<i64> = a.events().iter().chain(b.events()).map(|e| e.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        10,
        "both claimers together hold every row exactly once"
    );
    assert_eq!(a.events().len() + b.events().len(), 10);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn pruning_deletes_only_events_sent_before_the_retention(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    for _ in 0..5 {
        store
            .create(ResourceType::Patient, patient(), &[], None)
            .await
            .unwrap();
    }
    store
        .claim_outbox(3)
        .await
        .unwrap()
        .mark_sent()
        .await
        .unwrap();
    // Two of the three sent an hour ago, one just now; two never sent.
    sqlx::query(
        "update outbox set sent_at = now() - interval '1 hour'
         where id in (select id from outbox where sent_at is not null order by id limit 2)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let minute = Duration::from_secs(60);
    assert_eq!(store.prune_outbox(minute, 1).await.unwrap(), 1);
    assert_eq!(store.prune_outbox(minute, 100).await.unwrap(), 1);
    assert_eq!(store.prune_outbox(minute, 100).await.unwrap(), 0);
    let left: Vec<(bool,)> = sqlx::query_as("select sent_at is null from outbox order by id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, [(false,), (true,), (true,)]);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_changes_of_one_resource_are_claimed_in_version_order(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let pid: Id = "ordered".parse().unwrap();
    for _ in 0..3 {
        store
            .update(ResourceType::Patient, &pid, patient(), None, &[])
            .await
            .unwrap();
    }
    let other = store
        .create(ResourceType::Patient, patient(), &[], None)
        .await
        .unwrap();
    assert!(matches!(other, Created::New(_)));
    let version = |e: &store::OutboxEvent| -> i64 {
        let payload: Value = serde_json::from_str(&e.payload).unwrap();
        payload["versionId"].as_i64().unwrap()
    };
    // One relay holds version 1; a second gets the other resource only.
    let first = store.claim_outbox(100).await.unwrap();
    let second = store.claim_outbox(100).await.unwrap();
    assert_eq!(first.events().len(), 2, "version 1 and the other resource");
    assert!(second.events().is_empty());
    assert_eq!(version(&first.events()[0]), 1);
    first.mark_sent().await.unwrap();
    drop(second);
    for expected in [2, 3] {
        let batch = store.claim_outbox(100).await.unwrap();
        let versions: Vec<i64> = batch.events().iter().map(version).collect();
        assert_eq!(versions, [expected]);
        batch.mark_sent().await.unwrap();
    }
    assert!(store.claim_outbox(100).await.unwrap().events().is_empty());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn events_of_no_resource_are_claimed_together(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    sqlx::query(
        "with hist as (
             insert into resource_history (res_type, id, version, last_updated, method, status, content)
             select 'Patient', 'p' || n, 1, now(), 'POST', 201, '{}' from generate_series(1, 3) n
         )
         insert into outbox (event_id, routing_key, res_type, res_id, version)
         select gen_random_uuid(), 'Patient.create', 'Patient', 'p' || n, 1
         from generate_series(1, 3) n",
    )
    .execute(&pool)
    .await
    .unwrap();
    let batch = store.claim_outbox(100).await.unwrap();
    assert_eq!(batch.events().len(), 3);
}

/// Events written while the outbox held their envelopes (before migration 20261205000001)
/// are published after it with the same envelope, built from the history row they name.
#[sqlx::test(migrations = false)]
async fn events_written_with_their_envelope_are_published_alike(pool: PgPool) {
    const NAMES_THE_VERSION: i64 = 20261205000001;
    let before: Vec<_> = store::MIGRATOR
        .iter()
        .filter(|m| m.version < NAMES_THE_VERSION)
        .cloned()
        .collect();
    let earlier = sqlx::migrate::Migrator {
        migrations: before.into(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    earlier.run(&pool).await.unwrap();
    let resource = json!({"resourceType": "Patient", "id": "old", "active": true,
                          "meta": {"versionId": "1", "lastUpdated": "2026-01-02T03:04:05.060708Z"}});
    let envelope = json!({"specVersion": 1, "eventId": "00000000-0000-4000-8000-000000000001",
                          "action": "create", "resourceType": "Patient", "id": "old",
                          "versionId": 1, "lastUpdated": "2026-01-02T03:04:05.060708Z",
                          "resource": resource});
    sqlx::query(
        "with hist as (
             insert into resource_history (res_type, id, version, last_updated, method, status, content)
             values ('Patient', 'old', 1, '2026-01-02T03:04:05.060708Z', 'POST', 201, $1)
         )
         insert into outbox (event_id, routing_key, payload)
         values ('00000000-0000-4000-8000-000000000001', 'Patient.create', $2)",
    )
    .bind(&resource)
    .bind(&envelope)
    .execute(&pool)
    .await
    .unwrap();

    store::MIGRATOR.run(&pool).await.unwrap();
    let store = Store::from_pool(pool);
    let batch = store.claim_outbox(100).await.unwrap();
    let payloads: Vec<Value> = batch
        .events()
        .iter()
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect();
    assert_eq!(payloads, [envelope]);
}
