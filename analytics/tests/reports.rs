//! The worker against a real PostgreSQL (`#[sqlx::test]`, a database per test) and
//! RabbitMQ (an exchange and queue per test): change events written by the store and
//! delivered through the broker produce the expected reports; updates move resources
//! between buckets and deletes remove them; duplicated and reordered deliveries change
//! nothing; a rebuild while the worker runs changes nothing either; and every result
//! equals a rebuild from the stored resources.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use analytics_worker::reports::{
    AccountReport, AccountsPerPatient, Count, InvoiceReport, PatientReport, Reports, StateCount,
    Totals,
};
use analytics_worker::{Applied, Change, apply, apply_all};
use fhir_core::ResourceType::{Account, Invoice, Patient};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::{Broker, Data, Worker, assert_equals_rebuild, outbox, processed};

fn count(key: Option<&str>, count: i64) -> Count {
    Count {
        key: key.map(str::to_owned),
        count,
    }
}

fn state(country: Option<&str>, state: Option<&str>, count: i64) -> StateCount {
    StateCount {
        country: country.map(str::to_owned),
        state: state.map(str::to_owned),
        count,
    }
}

/// (status or month, currency, invoices, net, gross) of a totals row, amounts as text.
type Row = (Option<String>, Option<String>, i64, String, String);

fn totals(rows: &[Totals]) -> Vec<Row> {
    rows.iter()
        .map(|t| {
            (
                t.status.clone().or(t.month.clone()),
                t.currency.clone(),
                t.invoices,
                t.total_net.as_text(),
                t.total_gross.as_text(),
            )
        })
        .collect()
}

fn row(key: Option<&str>, currency: Option<&str>, invoices: i64, net: &str, gross: &str) -> Row {
    (
        key.map(str::to_owned),
        currency.map(str::to_owned),
        invoices,
        net.to_owned(),
        gross.to_owned(),
    )
}

/// An Invoice from "status date totalNet totalGross currency patient account"; the
/// amounts are JSON numbers written as given.
fn invoice(fields: &str) -> Value {
    let fields: Vec<&str> = fields.split(' ').collect();
    let [status, date, net, gross, currency, patient, account] = fields[..] else {
        panic!("seven fields");
    };
    serde_json::from_str(&format!(
        r#"{{"status": "{status}", "date": "{date}",
            "totalNet": {{"value": {net}, "currency": "{currency}"}},
            "totalGross": {{"value": {gross}, "currency": "{currency}"}},
            "subject": {{"reference": "Patient/{patient}"}},
            "account": {{"reference": "Account/{account}"}}}}"#
    ))
    .unwrap()
}

/// A Patient from its gender, birth date, active flag, and home state and country.
fn patient(gender: &str, birth_date: &str, active: bool, place: [&str; 2]) -> Value {
    let [state, country] = place;
    json!({
        "gender": gender, "birthDate": birth_date, "active": active,
        "address": [{"use": "home", "state": state, "country": country}]
    })
}

/// An Account from its status, type code and patient.
fn account(status: &str, code: Option<&str>, patient: &str) -> Value {
    let mut account = json!({
        "status": status, "subject": [{"reference": format!("Patient/{patient}")}]
    });
    if let Some(code) = code {
        account["type"] = json!({"coding": [{"code": code}]});
    }
    account
}

/// Three patients, three accounts, four invoices: every report has something to count.
async fn first_day(data: &Data) {
    let p1 = patient("female", "1990-05-10", true, ["CA", "US"]);
    let p2 = patient("male", "2015-01-01", false, ["Bavaria", "DE"]);
    let p3 = json!({"birthDate": "1950", "deceasedBoolean": true});
    for (id, resource) in [("p1", p1), ("p2", p2), ("p3", p3)] {
        data.put(Patient, id, resource).await;
    }
    let accounts = [
        ("a1", account("active", Some("PBILLACCT"), "p1")),
        ("a2", account("inactive", Some("PBILLACCT"), "p1")),
        ("a3", account("active", None, "p2")),
    ];
    for (id, resource) in accounts {
        data.put(Account, id, resource).await;
    }
    for (id, fields) in [
        ("i1", "issued 2025-11-03 100.10 119.12 EUR p1 a1"),
        ("i2", "balanced 2025-11-20 50.00 59.50 EUR p1 a1"),
        ("i3", "issued 2025-12-01T10:00:00+01:00 10 12.5 USD p2 a3"),
    ] {
        data.put(Invoice, id, invoice(fields)).await;
    }
    let draft = json!({"status": "draft", "subject": {"reference": "Patient/p2"}});
    data.put(Invoice, "i4", draft).await;
}

/// Buckets change: a patient moves, an invoice is paid, an account, a patient and an
/// invoice are deleted.
async fn second_day(data: &Data) {
    let mut p2 = patient("female", "2015-01-01", true, ["NY", "US"]);
    p2["address"][0]["use"] = json!("work");
    data.put(Patient, "p2", p2).await;
    let i1 = invoice("balanced 2025-11-03 100.10 119.12 EUR p1 a1");
    data.put(Invoice, "i1", i1).await;
    data.delete(Account, "a2").await;
    data.delete(Patient, "p3").await;
    data.delete(Invoice, "i4").await;
}

fn per_patient(pairs: &[(i64, i64)]) -> Vec<AccountsPerPatient> {
    pairs
        .iter()
        .map(|&(accounts, patients)| AccountsPerPatient { accounts, patients })
        .collect()
}

/// Registrations counted per day.
fn registered(patients: &PatientReport) -> i64 {
    patients.registrations_per_day.iter().map(|d| d.count).sum()
}

fn check_first_day_patients(patients: &PatientReport) {
    let status = [patients.active, patients.inactive, patients.deceased];
    assert_eq!((patients.total, status, patients.living), (3, [2, 1, 1], 2));
    let genders = [Some("female"), Some("male"), None].map(|g| count(g, 1));
    assert_eq!(patients.by_gender, genders);
    let bands = [
        ("0-17", 1),
        ("18-34", 0),
        ("35-49", 1),
        ("50-64", 0),
        ("65+", 1),
    ];
    let mut expected: Vec<Count> = bands.iter().map(|&(b, n)| count(Some(b), n)).collect();
    expected.push(count(None, 0));
    assert_eq!(patients.by_age_band, expected);
    let countries = [Some("DE"), Some("US"), None].map(|c| count(c, 1));
    assert_eq!(patients.by_country, countries);
    let places = [
        (Some("DE"), Some("Bavaria")),
        (Some("US"), Some("CA")),
        (None, None),
    ];
    assert_eq!(patients.by_state, places.map(|(c, s)| state(c, s, 1)));
    assert_eq!(registered(patients), 3);
    assert_eq!(patients.registrations_per_month.len(), 1);
}

fn check_first_day_accounts(accounts: &AccountReport) {
    assert_eq!((accounts.total, accounts.without_patient), (3, 0));
    let statuses = [count(Some("active"), 2), count(Some("inactive"), 1)];
    assert_eq!(accounts.by_status, statuses);
    let types = [count(Some("PBILLACCT"), 2), count(None, 1)];
    assert_eq!(accounts.by_type, types);
    assert_eq!(accounts.per_patient, per_patient(&[(0, 1), (1, 1), (2, 1)]));
}

fn check_first_day_invoices(invoices: &InvoiceReport) {
    assert_eq!(invoices.total, 4);
    let by_status = [
        row(Some("balanced"), Some("EUR"), 1, "50.00", "59.50"),
        row(Some("draft"), None, 1, "0", "0"),
        row(Some("issued"), Some("EUR"), 1, "100.10", "119.12"),
        row(Some("issued"), Some("USD"), 1, "10", "12.5"),
    ];
    assert_eq!(totals(&invoices.by_status), by_status);
    let by_month = [
        row(Some("2025-11"), Some("EUR"), 2, "150.10", "178.62"),
        row(Some("2025-12"), Some("USD"), 1, "10", "12.5"),
        row(None, None, 1, "0", "0"),
    ];
    assert_eq!(totals(&invoices.by_month), by_month);
    let by_currency = [
        row(None, Some("EUR"), 2, "150.10", "178.62"),
        row(None, Some("USD"), 1, "10", "12.5"),
        row(None, None, 1, "0", "0"),
    ];
    assert_eq!(totals(&invoices.by_currency), by_currency);
    let billed: Vec<_> = invoices
        .billed_per_patient
        .iter()
        .map(|b| {
            (
                b.patient_id.as_str(),
                b.currency.as_deref(),
                b.invoices,
                b.billed.as_text(),
            )
        })
        .collect();
    let expected = [
        ("p1", Some("EUR"), 2, "178.62"),
        ("p2", Some("USD"), 1, "12.5"),
    ];
    assert_eq!(billed, expected.map(|(p, c, n, a)| (p, c, n, a.to_owned())));
    assert_eq!(
        outstanding(invoices),
        [("a1", "119.12".into()), ("a3", "12.5".into())]
    );
}

/// (account, amount) of the outstanding ranking.
fn outstanding(invoices: &InvoiceReport) -> Vec<(&str, String)> {
    invoices
        .outstanding_per_account
        .iter()
        .map(|o| (o.account_id.as_str(), o.outstanding.as_text()))
        .collect()
}

fn check_second_day(reports: &Reports) {
    let patients = &reports.patients;
    let status = [patients.active, patients.inactive, patients.deceased];
    assert_eq!((patients.total, status), (2, [2, 0, 0]));
    assert_eq!(patients.by_gender, [count(Some("female"), 2)]);
    assert_eq!(patients.by_country, [count(Some("US"), 2)]);
    let places = [(Some("US"), Some("CA")), (Some("US"), Some("NY"))];
    assert_eq!(patients.by_state, places.map(|(c, s)| state(c, s, 1)));
    assert_eq!(patients.by_age_band[4], count(Some("65+"), 0));
    assert_eq!(
        registered(patients),
        2,
        "a deleted patient is no registration"
    );
    assert_eq!(reports.accounts.per_patient, per_patient(&[(1, 2)]));
    assert_eq!(reports.accounts.by_status, [count(Some("active"), 2)]);
    let invoices = &reports.invoices;
    assert_eq!(invoices.total, 3);
    let by_status = [
        row(Some("balanced"), Some("EUR"), 2, "150.10", "178.62"),
        row(Some("issued"), Some("USD"), 1, "10", "12.5"),
    ];
    assert_eq!(totals(&invoices.by_status), by_status);
    let paid = "a balanced invoice is no longer outstanding";
    assert_eq!(outstanding(invoices), [("a3", "12.5".into())], "{paid}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn events_produce_the_expected_reports_and_updates_move_them(pool: PgPool) {
    let broker = Broker::new(5).await;
    let data = Data::new(&pool);
    let worker = Worker::start(&pool, &broker.config);

    first_day(&data).await;
    let events = outbox(&pool).await;
    broker.publish(&events).await;
    broker.wait_processed(&pool, events.len() as i64).await;
    let reports = analytics_worker::reports(&pool, support::options())
        .await
        .unwrap();
    check_first_day_patients(&reports.patients);
    check_first_day_accounts(&reports.accounts);
    check_first_day_invoices(&reports.invoices);
    let json = serde_json::to_string(&reports).unwrap();
    let exact = r#""totalNet":150.10"#;
    assert!(
        json.contains(exact),
        "amounts are exact JSON numbers: {json}"
    );
    assert_equals_rebuild(&pool).await;

    second_day(&data).await;
    let events = outbox(&pool).await;
    let already = usize::try_from(processed(&pool).await).unwrap();
    broker.publish(&events[already..]).await;
    broker.wait_processed(&pool, events.len() as i64).await;
    worker.stop().await;
    check_second_day(&assert_equals_rebuild(&pool).await.reports);
    broker.remove().await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn duplicated_and_reordered_deliveries_do_not_change_the_reports(pool: PgPool) {
    let broker = Broker::new(5).await;
    let data = Data::new(&pool);
    support::churn(&data, 24).await;
    let events = outbox(&pool).await;
    let distinct = events.len() as i64;

    // Once each, in order.
    let worker = Worker::start(&pool, &broker.config);
    broker.publish(&events).await;
    broker.wait_processed(&pool, distinct).await;
    worker.stop().await;
    let in_order = support::snapshot(&pool).await;

    // Every event two or three times, in a shuffled order, from scratch.
    support::reset_projections(&pool).await;
    let mut redelivered = events.clone();
    redelivered.extend(events.iter().step_by(2).cloned());
    redelivered.extend(events.iter().cloned());
    let redelivered = support::shuffled(&redelivered, 7);
    let first_ids = |events: &[support::Event]| -> Vec<String> {
        events.iter().take(20).map(|e| e.event_id.clone()).collect()
    };
    assert_ne!(first_ids(&redelivered), first_ids(&events), "reordered");
    let worker = Worker::start(&pool, &broker.config);
    broker.publish(&redelivered).await;
    broker.wait_processed(&pool, distinct).await;
    worker.stop().await;
    assert_eq!(broker.ready(&broker.config.queue).await, 0);

    assert_eq!(support::snapshot(&pool).await, in_order);
    assert_eq!(assert_equals_rebuild(&pool).await, in_order);
    assert!(in_order.reports.patients.total > 0 && in_order.reports.invoices.total > 0);
    broker.remove().await;
}

/// Batches as the worker forms them under load: several versions of one resource, and
/// copies of one event, in one transaction. Each batch is applied as if its changes came
/// one after the other.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn batches_with_copies_and_several_versions_apply_as_one_by_one(pool: PgPool) {
    let data = Data::new(&pool);
    support::churn(&data, 24).await;
    let events = outbox(&pool).await;
    let changes: Vec<Change> = events
        .iter()
        .filter_map(|e| Change::decode(&e.payload).unwrap())
        .collect();

    for change in &changes {
        apply(&pool, change).await.unwrap();
    }
    let one_by_one = support::snapshot(&pool).await;

    support::reset_projections(&pool).await;
    let mut redelivered = changes.clone();
    redelivered.extend(changes.iter().step_by(3).cloned());
    let redelivered = support::shuffled(&redelivered, 11);
    let mut outcomes = Vec::new();
    for batch in redelivered.chunks(40) {
        outcomes.extend(apply_all(&pool, batch).await.unwrap());
    }
    let count = |wanted: Applied| outcomes.iter().filter(|o| **o == wanted).count();
    assert_eq!(count(Applied::Duplicate), redelivered.len() - changes.len());
    assert!(
        count(Applied::Stale) > 0,
        "older versions came after or beside newer ones"
    );

    assert_eq!(support::snapshot(&pool).await, one_by_one);
    assert_eq!(processed(&pool).await, changes.len() as i64);
    assert_eq!(assert_equals_rebuild(&pool).await, one_by_one);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_rebuild_while_the_worker_runs_changes_nothing(pool: PgPool) {
    let broker = Broker::new(1).await;
    let data = Data::new(&pool);
    support::churn(&data, 80).await;
    let events = outbox(&pool).await;
    let total = events.len() as i64;
    broker.publish(&events).await;

    let worker = Worker::start(&pool, &broker.config);
    let mut rebuilds = 0;
    while processed(&pool).await < total {
        analytics_worker::rebuild(&pool).await.unwrap();
        rebuilds += 1;
    }
    broker.wait_processed(&pool, total).await;
    worker.stop().await;

    assert!(rebuilds > 0);
    let dead_letters = broker.config.durable_queue().dead_letter_queue();
    assert_eq!(broker.ready(&dead_letters).await, 0, "nothing failed");
    assert_equals_rebuild(&pool).await;
    broker.remove().await;
}
