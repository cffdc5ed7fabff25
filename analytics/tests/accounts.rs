//! Billing accounts against a real PostgreSQL (`#[sqlx::test]`) and RabbitMQ (an exchange
//! and queues per test): every new Patient gets exactly one Account, written through the
//! store (version 1, its history row, its own `Account.create` event), however often its
//! event is delivered and however many consumers race on it; updates create none; a
//! deleted Account is not brought back; nothing is created when the feature is off; the
//! Accounts of a batch of deliveries are written together, and lost database connections
//! are waited out, not dead-lettered; and the Account's own event reaches the reports like
//! any other.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use analytics_worker::accounts::{AccountWriter, Ensured, account_id};
use analytics_worker::step::{Disposition, Message};
use analytics_worker::worker::{Handler, consume_with};
use analytics_worker::{Config, consume_all};
use events::lapin::options::QueueDeclareOptions;
use events::lapin::types::FieldTable;
use fhir_core::ResourceType::{Account, Patient};
use fhir_core::resource::{self, Format};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::{Broker, Data, Event, eventually, outbox, processed};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The current Accounts: id, version and content, by id.
async fn accounts(pool: &PgPool) -> Vec<(String, i64, Value)> {
    sqlx::query_as(
        "select id, version, content from resources
         where res_type = 'Account' and not deleted order by id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Rows of Account history (every version ever written).
async fn account_versions(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from resource_history where res_type = 'Account'")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The routing keys of the Account events in the outbox.
async fn account_events(pool: &PgPool) -> Vec<String> {
    outbox(pool)
        .await
        .into_iter()
        .map(|e| e.routing_key)
        .filter(|key| key.starts_with("Account."))
        .collect()
}

fn with_key<'a>(events: &'a [Event], routing_key: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.routing_key == routing_key)
        .collect()
}

/// An account consumer (a worker replica's) running in this process.
struct Consumer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Consumer {
    fn start(pool: &PgPool, config: &Config) -> Self {
        let (stop, stopped) = watch::channel(false);
        let writer = AccountWriter::new(pool, 4);
        let config = config.clone();
        let task =
            tokio::spawn(
                async move { consume_with(Handler::Accounts(writer), &config, stopped).await },
            );
        Consumer { stop, task }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(support::PATIENCE, self.task)
            .await
            .expect("the consumer did not stop")
            .unwrap();
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_new_patient_gets_one_account_whatever_the_deliveries(pool: PgPool) {
    let broker = Broker::with_accounts(5).await;
    let data = Data::new(&pool);
    let long_id = "l".repeat(60);
    data.put(
        Patient,
        "p1",
        json!({"name": [
            {"use": "nickname", "given": ["Jim"]},
            {"use": "official", "given": ["Peter", "James"], "family": "Chalmers"}
        ]}),
    )
    .await;
    data.put(Patient, "p2", json!({"gender": "female"})).await;
    data.put(Patient, &long_id, json!({"name": [{"text": "Long Id"}]}))
        .await;
    data.put(Patient, "p1", json!({"name": [{"family": "Renamed"}]}))
        .await;
    let events = outbox(&pool).await;
    assert_eq!(with_key(&events, "Patient.create").len(), 3);
    assert_eq!(with_key(&events, "Patient.update").len(), 1);

    // Two replicas; every event published three times, and a malformed message.
    let replicas = [
        Consumer::start(&pool, &broker.config),
        Consumer::start(&pool, &broker.config),
    ];
    for _ in 0..3 {
        broker.publish(&events).await;
    }
    broker.publish_raw("Patient.create", b"not json").await;
    let queue = broker.config.account_queue.clone();
    let dead = broker.config.account_durable_queue().dead_letter_queue();
    eventually("three accounts and an empty queue", || async {
        accounts(&pool).await.len() == 3
            && broker.ready(&queue).await == 0
            && broker.ready(&dead).await == 1
    })
    .await;
    for replica in replicas {
        replica.stop().await;
    }
    assert_eq!(broker.ready(&queue).await, 0, "every delivery settled");

    let stored = accounts(&pool).await;
    let ids: Vec<&str> = stored.iter().map(|(id, _, _)| id.as_str()).collect();
    let long_account = account_id(&long_id).to_string();
    let mut expected = vec!["patient-p1", "patient-p2", long_account.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert!(
        stored.iter().all(|(_, version, _)| *version == 1),
        "written once"
    );
    assert_eq!(account_versions(&pool).await, 3, "one version each");
    assert_eq!(
        account_events(&pool).await,
        ["Account.create", "Account.create", "Account.create"],
        "one change event each, nothing else"
    );

    let by_id = |id: &str| &stored.iter().find(|(i, _, _)| i == id).unwrap().2;
    let p1 = by_id("patient-p1");
    assert_eq!(p1["status"], "active");
    assert_eq!(p1["subject"], json!([{"reference": "Patient/p1"}]));
    assert_eq!(p1["name"], "Peter James Chalmers", "the official name");
    assert_eq!(p1["type"]["coding"][0]["code"], "PBILLACCT");
    assert!(by_id("patient-p2").get("name").is_none(), "no name to take");
    assert_eq!(by_id(&long_account)["name"], "Long Id");
    assert_eq!(
        by_id(&long_account)["subject"][0]["reference"],
        format!("Patient/{long_id}")
    );
    for (id, _, content) in &stored {
        let body = serde_json::to_vec(content).unwrap();
        resource::parse(&body, Format::Json, Account)
            .unwrap_or_else(|issues| panic!("{id} is not a valid Account: {issues:?}"));
    }
    broker.remove().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn racing_writers_write_the_account_once_and_never_bring_it_back(pool: PgPool) {
    let data = Data::new(&pool);
    data.put(Patient, "p1", json!({"name": [{"family": "Race"}]}))
        .await;
    let patient = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Race"}]});
    let writers = [AccountWriter::new(&pool, 4), AccountWriter::new(&pool, 4)];
    for n in 0..8 {
        data.put(Patient, &format!("w{n}"), json!({})).await;
    }
    // Connections opened and the validator built first, so that the attempts overlap.
    let warm_up = (0..8).map(|n| {
        let writer = writers[n % 2].clone();
        tokio::spawn(async move {
            let id = format!("w{n}");
            let patient = json!({"resourceType": "Patient", "id": id});
            writer.ensure(&id, &patient).await.unwrap()
        })
    });
    for warm in warm_up.collect::<Vec<_>>() {
        assert_eq!(warm.await.unwrap(), Ensured::Created);
    }
    let attempts = (0..16).map(|n| {
        let writer = writers[n % 2].clone();
        let patient = patient.clone();
        tokio::spawn(async move { writer.ensure("p1", &patient).await.unwrap() })
    });
    let mut outcomes = Vec::new();
    for attempt in attempts.collect::<Vec<_>>() {
        outcomes.push(attempt.await.unwrap());
    }
    let created = outcomes.iter().filter(|o| **o == Ensured::Created).count();
    assert_eq!(created, 1, "{outcomes:?}");
    let versions: i64 = sqlx::query_scalar(
        "select count(*) from resource_history where res_type = 'Account' and id = 'patient-p1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(versions, 1, "one version, one event");

    // Deleted by a user: a late redelivery of the Patient's event does not recreate it.
    data.delete(Account, "patient-p1").await;
    assert_eq!(
        writers[0].ensure("p1", &patient).await.unwrap(),
        Ensured::Exists
    );
    let current: Vec<String> = accounts(&pool).await.into_iter().map(|a| a.0).collect();
    assert!(!current.contains(&"patient-p1".to_owned()), "{current:?}");
    let events = account_events(&pool).await;
    assert_eq!(
        events.len(),
        8 + 2,
        "the warm-up's, one create and one delete"
    );
    assert_eq!(events.last().map(String::as_str), Some("Account.delete"));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn updates_and_other_events_create_no_account(pool: PgPool) {
    let data = Data::new(&pool);
    data.put(Patient, "p1", json!({"gender": "male"})).await;
    data.put(Patient, "p1", json!({"gender": "female"})).await;
    data.delete(Patient, "p1").await;
    data.put(Account, "a1", json!({"status": "active"})).await;
    let events = outbox(&pool).await;
    let others: Vec<&Event> = events
        .iter()
        .filter(|e| e.routing_key != "Patient.create")
        .collect();
    assert_eq!(others.len(), 3);
    // Even delivered to the account queue (it is bound to Patient.create only), an
    // update, a delete or another type's event is acknowledged without a write.
    let messages: Vec<Message<'_>> = others
        .iter()
        .map(|e| Message {
            body: &e.payload,
            message_id: &e.event_id,
        })
        .collect();
    let writer = AccountWriter::new(&pool, 1);
    let (_running, mut stopping) = watch::channel(false);
    let dispositions = analytics_worker::accounts::step(&writer, &messages, &mut stopping).await;
    assert_eq!(dispositions, [Disposition::Ack; 3]);
    let ids: Vec<String> = accounts(&pool).await.into_iter().map(|a| a.0).collect();
    assert_eq!(ids, ["a1"], "only the account written by the test");

    // Through the broker: the update and the delete are not even routed to the queue.
    let broker = Broker::with_accounts(5).await;
    let consumer = Consumer::start(&pool, &broker.config);
    for event in &others {
        broker.publish_raw(&event.routing_key, &event.payload).await;
    }
    assert_eq!(broker.ready(&broker.config.account_queue).await, 0);
    consumer.stop().await;
    assert_eq!(account_versions(&pool).await, 1);
    broker.remove().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_worker_creates_accounts_whose_events_reach_the_reports(pool: PgPool) {
    let broker = Broker::with_accounts(5).await;
    let data = Data::new(&pool);
    data.put(Patient, "p1", json!({"name": [{"family": "One"}]}))
        .await;
    data.put(Patient, "p2", json!({"name": [{"family": "Two"}]}))
        .await;
    let (stop, stopped) = watch::channel(false);
    let worker = {
        let pool = pool.clone();
        let mut config = broker.config.clone();
        config.database_url = support::database_url(&pool).await;
        tokio::spawn(async move { consume_all(pool, &config, stopped).await.unwrap() })
    };
    let patients = outbox(&pool).await;
    broker.publish(&patients).await;
    eventually("two accounts", || async {
        accounts(&pool).await.len() == 2
    })
    .await;

    // The relay would publish the Accounts' own events: they flow like any other.
    let all = outbox(&pool).await;
    let account_creates = with_key(&all, "Account.create");
    assert_eq!(account_creates.len(), 2);
    for event in account_creates {
        broker.publish_raw(&event.routing_key, &event.payload).await;
    }
    broker.wait_processed(&pool, 4).await;
    stop.send(true).unwrap();
    tokio::time::timeout(support::PATIENCE, worker)
        .await
        .expect("the worker did not stop")
        .unwrap();

    let reports = analytics_worker::reports(&pool, support::options())
        .await
        .unwrap();
    assert_eq!(reports.accounts.total, 2);
    assert_eq!(reports.accounts.without_patient, 0);
    assert_eq!(
        reports.accounts.per_patient,
        [analytics_worker::reports::AccountsPerPatient {
            accounts: 1,
            patients: 2
        }]
    );
    support::assert_equals_rebuild(&pool).await;
    broker.remove().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn no_account_is_created_when_switched_off(pool: PgPool) {
    let broker = Broker::new(5).await;
    assert!(!broker.config.auto_account);
    let data = Data::new(&pool);
    data.put(Patient, "p1", json!({"name": [{"family": "Off"}]}))
        .await;
    let (stop, stopped) = watch::channel(false);
    let worker = {
        let pool = pool.clone();
        let mut config = broker.config.clone();
        config.database_url = support::database_url(&pool).await;
        tokio::spawn(async move { consume_all(pool, &config, stopped).await.unwrap() })
    };
    broker.publish(&outbox(&pool).await).await;
    broker.wait_processed(&pool, 1).await;
    stop.send(true).unwrap();
    tokio::time::timeout(support::PATIENCE, worker)
        .await
        .expect("the worker did not stop")
        .unwrap();
    assert_eq!(processed(&pool).await, 1, "the projection ran");
    assert!(accounts(&pool).await.is_empty());
    assert!(account_events(&pool).await.is_empty());

    // The account queue was never declared.
    let (_connection, channel) = support::channel().await;
    let declared = channel
        .queue_declare(
            broker.config.account_queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(declared.is_err(), "no account queue when switched off");
    broker.remove().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_patient_deleted_before_its_event_gets_no_account(pool: PgPool) {
    let data = Data::new(&pool);
    data.put(Patient, "gone", json!({"name": [{"family": "Gone"}]}))
        .await;
    data.delete(Patient, "gone").await;
    let patient = json!({"resourceType": "Patient", "id": "gone", "name": [{"family": "Gone"}]});
    let writer = AccountWriter::new(&pool, 1);
    assert_eq!(
        writer.ensure("gone", &patient).await.unwrap(),
        Ensured::PatientGone
    );
    assert!(accounts(&pool).await.is_empty());
    assert_eq!(account_versions(&pool).await, 0);
    assert!(account_events(&pool).await.is_empty());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_batch_of_deliveries_gets_each_new_patient_one_account(pool: PgPool) {
    let data = Data::new(&pool);
    for id in ["p1", "p2", "gone"] {
        data.put(Patient, id, json!({"name": [{"family": id}]}))
            .await;
    }
    data.put(Patient, "p1", json!({"name": [{"family": "Again"}]}))
        .await;
    data.delete(Patient, "gone").await;
    let events = outbox(&pool).await;
    let creates = with_key(&events, "Patient.create");
    let update = with_key(&events, "Patient.update")[0];
    assert_eq!(creates.len(), 3);
    let bodies: Vec<&[u8]> = vec![
        &creates[0].payload,
        &creates[1].payload,
        &creates[0].payload,
        &update.payload,
        b"{not json",
        &creates[2].payload,
    ];
    let messages: Vec<Message<'_>> = bodies
        .iter()
        .map(|body| Message {
            body,
            message_id: "m",
        })
        .collect();
    let writer = AccountWriter::new(&pool, 1);
    let (_stop, mut shutdown) = watch::channel(false);
    let dispositions = analytics_worker::accounts::step(&writer, &messages, &mut shutdown).await;
    use Disposition::{Ack, DeadLetter};
    assert_eq!(dispositions, [Ack, Ack, Ack, Ack, DeadLetter, Ack]);
    let written: Vec<(String, i64)> = accounts(&pool)
        .await
        .into_iter()
        .map(|(id, version, _)| (id, version))
        .collect();
    assert_eq!(
        written,
        [
            (account_id("p1").to_string(), 1),
            (account_id("p2").to_string(), 1)
        ]
    );
    assert_eq!(account_versions(&pool).await, 2);
    assert_eq!(account_events(&pool).await, ["Account.create"; 2]);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn lost_database_connections_are_waited_out_and_each_patient_gets_one_account(pool: PgPool) {
    // One delivery only: an event held against the message would be dead-lettered at once.
    let broker = Broker::with_accounts(1).await;
    let data = Data::new(&pool);
    for n in 0..60 {
        let name = json!({"name": [{"family": format!("F{n}")}]});
        data.put(Patient, &format!("p{n}"), name).await;
    }
    let patients = outbox(&pool).await;
    assert_eq!(patients.len(), 60);
    const NAME: &str = "billing-accounts-under-test";
    let writer_pool = support::named_pool(&pool, NAME, 1).await;
    let consumer = Consumer::start(&writer_pool, &broker.config);
    let terminate = || support::terminate_backends(&pool, NAME);
    // A first Account, so that the consumer holds connections; they are cut before the
    // rest arrives, so that its batches meet lost connections however fast it is.
    broker.publish(&patients[..1]).await;
    eventually("the first account", || async {
        accounts(&pool).await.len() == 1
    })
    .await;
    let mut cut = terminate().await;
    broker.publish(&patients[1..]).await;
    while accounts(&pool).await.len() < 60 && cut < 20 {
        cut += terminate().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    eventually("an account for every patient", || async {
        accounts(&pool).await.len() == 60
    })
    .await;
    consumer.stop().await;

    assert!(cut > 0, "no connection was cut");
    assert_eq!(account_versions(&pool).await, 60);
    assert_eq!(account_events(&pool).await.len(), 60);
    let dead_letters = broker.config.account_durable_queue().dead_letter_queue();
    assert_eq!(broker.ready(&dead_letters).await, 0);
    broker.remove().await;
}
