//! The unit of work (`Store::begin`): several writes in one database transaction, committed
//! together or, when dropped, rolled back without a trace (history, index, claims, events).

mod support;

use fhir_core::{Id, ResourceType, VersionId};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use store::{Claim, NewResource, Store, StoreError};

fn patient(email: &str) -> Value {
    json!({"resourceType": "Patient", "active": true,
           "identifier": [{"system": "urn:test", "value": email}],
           "telecom": [{"system": "email", "value": email}]})
}

fn claim(email: &str) -> Vec<Claim> {
    vec![Claim {
        rule: "Patient.email",
        value: email.into(),
        expression: "Patient.telecom[0].value".into(),
    }]
}

/// Rows in resources, resource_history, outbox and unique_claims, and search lexemes.
async fn rows(pool: &PgPool) -> [i64; 5] {
    let row = sqlx::query(
        "select (select count(*) from resources), (select count(*) from resource_history),
                (select count(*) from outbox), (select count(*) from unique_claims),
                (select count(*) from search_terms, unnest(tsvector_to_array(terms)))",
    )
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("counting rows: {e}"));
    [row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)]
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_unit_commits_its_writes_together(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let old = Id::generate();
    store
        .update(
            ResourceType::Patient,
            &old,
            patient("old@x.org"),
            None,
            &claim("old@x.org"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (Id::generate(), Id::generate());
    let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
    // The delete frees the claim the create then takes, inside the one transaction.
    let deleted = tx
        .delete(ResourceType::Patient, &old, Some(VersionId::FIRST))
        .await;
    assert!(matches!(deleted, Ok(Some(_))), "{deleted:?}");
    tx.create(
        ResourceType::Patient,
        &a,
        patient("old@x.org"),
        &claim("old@x.org"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tx.update(ResourceType::Patient, &b, patient("b@x.org"), None, &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The transaction sees its own writes.
    let condition = support::Condition::new(ResourceType::Patient, "identifier=urn:test|old@x.org");
    let conditional = condition.get();
    let found = tx.matching(conditional.query, 5).await;
    assert_eq!(found.ok(), Some(vec![a.clone()]));
    let read = tx.read(ResourceType::Patient, &b).await;
    assert!(
        matches!(read, Ok(Some(ref c)) if c.version == VersionId::FIRST),
        "{read:?}"
    );
    // Nothing is visible outside it yet.
    assert!(matches!(
        store.read(ResourceType::Patient, &a).await,
        Ok(None)
    ));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        store.read(ResourceType::Patient, &a).await,
        Ok(Some(_))
    ));
    assert!(matches!(
        store.read(ResourceType::Patient, &b).await,
        Ok(Some(_))
    ));
    let [resources, history, outbox, claims, _] = rows(&pool).await;
    assert_eq!((resources, history, outbox, claims), (3, 4, 4, 1));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_dropped_unit_leaves_nothing_and_its_connection_serves_again(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let before = rows(&pool).await;
    for _ in 0..3 {
        let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
        tx.create(
            ResourceType::Patient,
            &Id::generate(),
            patient("a@x.org"),
            &claim("a@x.org"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        // A failing statement aborts the transaction: the unit is dropped.
        let twice = tx
            .create(
                ResourceType::Patient,
                &Id::generate(),
                patient("a@x.org"),
                &claim("a@x.org"),
            )
            .await;
        assert!(
            matches!(twice, Err(StoreError::Duplicate { .. })),
            "{twice:?}"
        );
        drop(tx);
        let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let stale = tx
            .update(
                ResourceType::Patient,
                &Id::generate(),
                patient("b@x.org"),
                Some(VersionId::FIRST),
                &[],
            )
            .await;
        assert!(matches!(
            stale,
            Err(StoreError::VersionConflict { current: None })
        ));
    }
    // Give the pool a moment to settle the dropped connections.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(rows(&pool).await, before);
    let ids: Vec<Id> = (0..20).map(|_| Id::generate()).collect();
    let reads = ids.iter().map(|id| store.read(ResourceType::Patient, id));
    for read in futures::future::join_all(reads).await {
        assert!(matches!(read, Ok(None)), "{read:?}");
    }
    let created = store
        .create(
            ResourceType::Patient,
            patient("a@x.org"),
            &claim("a@x.org"),
            None,
        )
        .await;
    assert!(created.is_ok(), "the claim was never taken: {created:?}");
}

fn new(rtype: ResourceType, resource: Value, claims: Vec<Claim>) -> NewResource {
    NewResource {
        rtype,
        id: Id::generate(),
        resource,
        claims,
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn creates_together_write_what_single_creates_write(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let mut batch = Vec::new();
    for n in 0..3 {
        let mut p = patient(&format!("p{n}@x.org"));
        p["name"] = json!([{"family": format!("Family{n}")}]);
        batch.push(new(ResourceType::Patient, p, claim(&format!("p{n}@x.org"))));
    }
    let subject = format!("Patient/{}", batch[1].id);
    batch.push(new(
        ResourceType::Account,
        json!({"resourceType": "Account", "status": "active",
               "subject": [{"reference": subject}]}),
        vec![],
    ));
    let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let stored = tx
        .create_all(batch.clone())
        .await
        .unwrap_or_else(|(n, e)| panic!("{n}: {e}"));
    // The same kind of resource written alone, for its index rows.
    let single = tx
        .create(
            ResourceType::Patient,
            &Id::generate(),
            {
                let mut p = patient("single@x.org");
                p["name"] = json!([{"family": "Family9"}]);
                p
            },
            &claim("single@x.org"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(stored.len(), 4);
    let at = stored[0].last_updated;
    for (s, b) in stored.iter().zip(&batch) {
        assert_eq!(s.id, b.id);
        assert_eq!(s.version, VersionId::FIRST);
        assert!(s.created);
        // One clock for the unit: the one read under the write barrier when it began.
        assert_eq!(s.last_updated, at);
        assert_eq!(single.last_updated, at);
        let content: Value = serde_json::from_str(&s.content).unwrap_or_default();
        assert_eq!(content["id"], b.id.as_str());
        assert_eq!(
            content["meta"]["lastUpdated"],
            fhir_core::resource::format_instant(at)
        );
    }
    // Every row agrees on the instant: column, stored meta, history and event.
    let disagreeing: i64 = sqlx::query_scalar(
        "select count(*) from resources r
         join resource_history h using (res_type, id)
         join outbox o on o.res_key = r.key
         join outbox_envelopes e on e.id = o.id
         where r.last_updated <> $1 or h.last_updated <> $1
            or (r.content->'meta'->>'lastUpdated')::timestamptz <> $1
            or (h.content->'meta'->>'lastUpdated')::timestamptz <> $1
            or (e.payload::jsonb->>'lastUpdated')::timestamptz <> $1
            or e.payload::jsonb->'resource' <> r.content",
    )
    .bind(at)
    .fetch_one(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(disagreeing, 0);
    // One create event per resource, in the order given.
    let events: Vec<(String, String)> =
        sqlx::query_as("select routing_key, res_id from outbox order by id")
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let expected: Vec<(String, String)> = batch
        .iter()
        .map(|b| (format!("{}.create", b.rtype), b.id.to_string()))
        .chain([("Patient.create".to_owned(), single.id.to_string())])
        .collect();
    assert_eq!(events, expected);
    let [resources, history, outbox, claims, _] = rows(&pool).await;
    assert_eq!((resources, history, outbox, claims), (5, 5, 5, 4));
    // Each resource's index rows are its own: found by its values, as many as alone.
    let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
    for (n, b) in batch.iter().take(3).enumerate() {
        let condition =
            support::Condition::new(ResourceType::Patient, &format!("family=Family{n}"));
        let found = tx.matching(condition.get().query, 5).await;
        assert_eq!(found.ok(), Some(vec![b.id.clone()]), "Family{n}");
    }
    drop(tx);
    let per_resource: Vec<i64> = sqlx::query_scalar(
        "select (select count(*) from search_terms s, unnest(tsvector_to_array(s.terms))
                 where s.res_key = r.key)
         from resources r where res_type = 'Patient' order by key",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(per_resource.len(), 4);
    assert!(
        per_resource.iter().all(|n| *n == per_resource[3] && *n > 0),
        "{per_resource:?}"
    );
    let subject_of: Option<String> = sqlx::query_scalar(
        "select r.id from search_reference s join resources r on r.key = s.res_key
         where s.target_type = 'Patient' and s.target_id = $1",
    )
    .bind(batch[1].id.as_str())
    .fetch_optional(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(subject_of.as_deref(), Some(batch[3].id.as_str()));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn creates_together_name_the_one_that_fails(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    store
        .create(
            ResourceType::Patient,
            patient("held@x.org"),
            &claim("held@x.org"),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = rows(&pool).await;
    let cases = [
        // Two of the batch claim the same value: the second is named.
        (vec!["a@x.org", "b@x.org", "a@x.org"], 2),
        // A committed resource holds the claim.
        (vec!["a@x.org", "held@x.org", "c@x.org"], 1),
    ];
    for (emails, failing) in cases {
        let batch: Vec<NewResource> = emails
            .iter()
            .map(|e| new(ResourceType::Patient, patient(e), claim(e)))
            .collect();
        let mut tx = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let result = tx.create_all(batch).await;
        assert!(
            matches!(result, Err((n, StoreError::Duplicate { .. })) if n == failing),
            "{emails:?}: {result:?}"
        );
        drop(tx);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(rows(&pool).await, before);
}
