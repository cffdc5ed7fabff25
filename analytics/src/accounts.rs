//! Billing accounts for new patients: every `Patient.create` event gets the Patient an
//! Account (status `active`, subject the Patient, name from the Patient's name), written
//! through the store like any other write, so it has its history and its own change event.
//!
//! Exactly once, through the database: the Account's id is derived from the Patient's
//! ([`account_id`]), and it is written only when no resource ever had that id: the insert
//! of version 1 does nothing when the id is taken ([`Store::create_new_all`]), and of
//! concurrent inserts of one id the others wait for the first to commit. A redelivered
//! event, the same event published twice, or several workers racing on it all find the
//! Account there and write nothing; an Account deleted since is not brought back. A
//! Patient deleted before its event is handled gets none: the store refuses an Account that
//! would refer to nothing (referential integrity). See `docs/analytics.md`.
//!
//! Logs name event ids and outcomes, never a name or any other content.

use std::time::Duration;

use events::{Action, Envelope};
use fhir_core::resource::{self, Format};
use fhir_core::{Id, Issue, ResourceType};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use store::{NewOutcome, Store, StoreError};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::Config;
use crate::step::{Disposition, MAX_BACKOFF, MIN_BACKOFF, Message, describe, is_transient, pause};

/// The prefix of a billing Account's id: `patient-<Patient id>`.
pub const ID_PREFIX: &str = "patient-";
/// The namespace of the version 5 UUIDs that name the Accounts of Patients whose id is
/// too long for [`ID_PREFIX`].
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_0c8e_5b7a_4a4e_9a0e_3f7c_2b1d_8e55);
/// `Account.type`: v3 ActCode `PBILLACCT`, a patient billing account.
const ACCOUNT_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const ACCOUNT_TYPE_CODE: &str = "PBILLACCT";
const ACCOUNT_TYPE_DISPLAY: &str = "patient billing account";
/// The longest Account name kept; a longer Patient name is cut (at a character boundary).
const MAX_NAME_LEN: usize = 1024;
/// How long a connection may be waited for.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The id of the billing Account of Patient `patient_id`: `patient-<id>` when that is a
/// valid FHIR id (at most 64 characters), else a version 5 UUID of the Patient id in
/// [`ID_NAMESPACE`]. The same Patient always gets the same id.
pub fn account_id(patient_id: &str) -> Id {
    let readable = format!("{ID_PREFIX}{patient_id}");
    readable.parse().unwrap_or_else(|_| {
        Uuid::new_v5(&ID_NAMESPACE, patient_id.as_bytes())
            .to_string()
            .parse()
            // 36 characters of hex digits and hyphens, always a valid FHIR id.
            .expect("a hyphenated UUID is a FHIR id")
    })
}

/// The name an Account takes from a Patient: its `official` HumanName, else the first one
/// not marked `old`, else the first; the name's `text`, else its prefixes, given names,
/// family name and suffixes joined by spaces. `None` when the Patient has no usable name.
pub fn display_name(patient: &Value) -> Option<String> {
    let names = patient.get("name")?.as_array()?;
    let uses =
        |name: &&Value, wanted: &str| name.get("use").and_then(Value::as_str) == Some(wanted);
    let name = names
        .iter()
        .find(|name| uses(name, "official"))
        .or_else(|| names.iter().find(|name| !uses(name, "old")))
        .or_else(|| names.first())?;
    let text = match name.get("text").and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => collapse(text),
        _ => {
            let strings = |key: &str| -> Vec<&str> {
                match name.get(key) {
                    Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                    Some(Value::String(text)) => vec![text.as_str()],
                    _ => Vec::new(),
                }
            };
            let mut parts = strings("prefix");
            parts.extend(strings("given"));
            parts.extend(strings("family"));
            parts.extend(strings("suffix"));
            collapse(&parts.join(" "))
        }
    };
    (!text.is_empty()).then(|| truncate(text, MAX_NAME_LEN))
}

/// Whitespace runs as one space, none at either end.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// The billing Account of `patient` (a stored Patient, with its `id`), not yet validated.
pub fn account_for(patient_id: &str, patient: &Value) -> Value {
    let mut account = json!({
        "resourceType": "Account",
        "id": account_id(patient_id).as_str(),
        "status": "active",
        "type": {"coding": [{
            "system": ACCOUNT_TYPE_SYSTEM,
            "code": ACCOUNT_TYPE_CODE,
            "display": ACCOUNT_TYPE_DISPLAY,
        }]},
        "subject": [{"reference": format!("Patient/{patient_id}")}],
    });
    if let Some(name) = display_name(patient) {
        account["name"] = Value::String(name);
    }
    account
}

/// What [`AccountWriter::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The Account was written (version 1, with its `Account.create` event).
    Created,
    /// A resource with the Account's id exists, or existed and was deleted: nothing written.
    Exists,
    /// The Patient is not stored any more (deleted before its event was handled): an
    /// Account would refer to nothing (referential integrity), so nothing is written.
    PatientGone,
}

impl Ensured {
    /// A word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Ensured::Created => "created",
            Ensured::Exists => "exists",
            Ensured::PatientGone => "patient gone",
        }
    }
}

/// Why an Account was not written.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The Account built from the Patient is not a valid R4 Account: the issues name the
    /// elements, never their values.
    #[error("the billing account would not be valid ({} issues)", .0.len())]
    Invalid(Vec<Issue>),
    /// The Patient id is not a FHIR id.
    #[error("the patient id is not valid")]
    PatientId,
    /// The store refused the write or could not be reached.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// The Account could not be encoded.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl AccountError {
    /// Worth waiting for: the database is unavailable, not refusing this Account.
    fn is_transient(&self) -> bool {
        match self {
            AccountError::Invalid(_) | AccountError::PatientId => false,
            AccountError::Database(error) | AccountError::Store(StoreError::Database(error)) => {
                is_transient(error)
            }
            AccountError::Store(StoreError::Migrate(_)) => true,
            AccountError::Store(_) => false,
        }
    }

    /// The error without any value PostgreSQL may quote.
    fn describe(&self) -> String {
        match self {
            AccountError::Database(error) | AccountError::Store(StoreError::Database(error)) => {
                describe(error)
            }
            other => other.to_string(),
        }
    }
}

/// Writes billing Accounts through the store.
#[derive(Debug, Clone)]
pub struct AccountWriter {
    store: Store,
}

impl AccountWriter {
    /// The worker's writer: a store connection per task. Fails when the database cannot be
    /// reached or the store's search parameter definitions do not load.
    pub async fn connect(config: &Config) -> Result<Self, StoreError> {
        let tasks = u32::try_from(config.concurrency).unwrap_or(u32::MAX);
        let store = Store::connect(&config.database_url, tasks).await?;
        Ok(AccountWriter { store })
    }

    /// A writer on the database of `pool` with up to `connections` of its own, opened on
    /// first use (tests, and callers that hold a pool already).
    pub fn new(pool: &PgPool, connections: u32) -> Self {
        let options = (*pool.connect_options()).clone();
        let own = PgPoolOptions::new()
            .max_connections(connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        AccountWriter {
            store: Store::from_pool(own),
        }
    }

    /// Creates the billing Account of Patient `patient_id` (the stored `patient`) unless a
    /// resource with its id exists or existed. Concurrent calls for one Patient write it
    /// once.
    pub async fn ensure(&self, patient_id: &str, patient: &Value) -> Result<Ensured, AccountError> {
        let mut results = self.ensure_all(&[(patient_id, patient)]).await?;
        results.pop().unwrap_or(Ok(Ensured::Exists))
    }

    /// [`AccountWriter::ensure`] for several Patients at once: the valid Accounts are
    /// written by one statement, in one commit. The outer error is the database's, about
    /// them all; an inner one is about that Patient's Account alone.
    pub async fn ensure_all(
        &self,
        patients: &[(&str, &Value)],
    ) -> Result<Vec<Result<Ensured, AccountError>>, AccountError> {
        let mut results: Vec<Option<Result<Ensured, AccountError>>> = Vec::new();
        let mut accounts = Vec::new();
        // The position in `patients` of each of `accounts`.
        let mut places = Vec::new();
        for (place, (patient_id, patient)) in patients.iter().enumerate() {
            match valid_account(patient_id, patient) {
                Ok(account) => {
                    accounts.push((account_id(patient_id), account));
                    places.push(place);
                    results.push(None);
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        if !accounts.is_empty() {
            let outcomes = self
                .store
                .create_new_all(ResourceType::Account, accounts)
                .await?;
            for (place, outcome) in places.into_iter().zip(outcomes) {
                results[place] = Some(Ok(match outcome {
                    NewOutcome::Written => Ensured::Created,
                    NewOutcome::IdTaken => Ensured::Exists,
                    NewOutcome::DanglingReference => Ensured::PatientGone,
                }));
            }
        }
        Ok(results
            .into_iter()
            .map(|result| result.unwrap_or(Ok(Ensured::Exists)))
            .collect())
    }
}

/// The billing Account of `patient`, through the gate every write passes: the R4
/// definitions, then the strict R4 model.
fn valid_account(patient_id: &str, patient: &Value) -> Result<Value, AccountError> {
    let _: Id = patient_id.parse().map_err(|_| AccountError::PatientId)?;
    let account = account_for(patient_id, patient);
    let body = serde_json::to_vec(&account).map_err(|e| sqlx::Error::Encode(e.into()))?;
    resource::parse(&body, Format::Json, ResourceType::Account).map_err(AccountError::Invalid)
}

/// Handles deliveries of the account queue: the `Patient.create` events among them get
/// their Accounts ([`AccountWriter::ensure_all`], one statement for them all); other
/// events are acknowledged untouched; malformed ones are dead-lettered. An unavailable
/// database is waited for with a back-off, until `shutdown` turns true; when the database
/// refuses the Accounts together, each is tried alone, so that only its event fails.
pub async fn step(
    writer: &AccountWriter,
    messages: &[Message<'_>],
    shutdown: &mut watch::Receiver<bool>,
) -> Vec<Disposition> {
    let mut dispositions = vec![Disposition::Ack; messages.len()];
    let mut new_patients = Vec::new();
    for (position, message) in messages.iter().enumerate() {
        match new_patient(message) {
            Ok(Some(envelope)) => new_patients.push((position, envelope)),
            Ok(None) => {}
            Err(disposition) => dispositions[position] = disposition,
        }
    }
    let patients: Vec<&NewPatient> = new_patients.iter().map(|(_, p)| p).collect();
    let settled = match patients.as_slice() {
        [] => Vec::new(),
        [one] => vec![ensure_one(writer, one, shutdown).await],
        several => match ensure_together(writer, several, shutdown).await {
            Some(settled) => settled,
            None => {
                let mut alone = Vec::with_capacity(several.len());
                for patient in several {
                    alone.push(ensure_one(writer, patient, shutdown).await);
                }
                alone
            }
        },
    };
    for ((position, _), disposition) in new_patients.iter().zip(settled) {
        dispositions[*position] = disposition;
    }
    dispositions
}

/// A Patient created, as its event tells.
struct NewPatient {
    event_id: String,
    id: String,
    patient: Value,
}

/// The new Patient of a `Patient.create` event; `None` for any other event; the
/// disposition of a malformed one.
fn new_patient(message: &Message<'_>) -> Result<Option<NewPatient>, Disposition> {
    let envelope = Envelope::decode(message.body).map_err(|error| {
        tracing::warn!(%error, message_id = message.message_id,
            "dead-lettering a malformed change event");
        Disposition::DeadLetter
    })?;
    Ok(match envelope.resource {
        Some(patient)
            if envelope.action == Action::Create && envelope.resource_type == "Patient" =>
        {
            Some(NewPatient {
                event_id: envelope.event_id.to_string(),
                id: envelope.id,
                patient,
            })
        }
        _ => None,
    })
}

/// The Accounts of several new Patients in one statement, waiting out an unavailable
/// database; `None` when the database refuses them together.
async fn ensure_together(
    writer: &AccountWriter,
    new: &[&NewPatient],
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Vec<Disposition>> {
    let patients: Vec<(&str, &Value)> = new.iter().map(|p| (p.id.as_str(), &p.patient)).collect();
    let mut backoff = MIN_BACKOFF;
    loop {
        let error = match writer.ensure_all(&patients).await {
            Ok(results) => {
                return Some(
                    new.iter()
                        .zip(results)
                        .map(|(patient, result)| settle(patient, result))
                        .collect(),
                );
            }
            Err(error) => error,
        };
        if !error.is_transient() {
            return None;
        }
        if !wait_for_database(&error, &mut backoff, shutdown).await {
            return Some(vec![Disposition::Abandon; new.len()]);
        }
    }
}

/// The Account of one new Patient, waiting out an unavailable database.
async fn ensure_one(
    writer: &AccountWriter,
    new: &NewPatient,
    shutdown: &mut watch::Receiver<bool>,
) -> Disposition {
    let mut backoff = MIN_BACKOFF;
    loop {
        match writer.ensure(&new.id, &new.patient).await {
            Err(error) if error.is_transient() => {
                if !wait_for_database(&error, &mut backoff, shutdown).await {
                    return Disposition::Abandon;
                }
            }
            result => return settle(new, result),
        }
    }
}

/// What becomes of an event once its Account is written, found there, or refused.
fn settle(new: &NewPatient, result: Result<Ensured, AccountError>) -> Disposition {
    let event_id = new.event_id.as_str();
    match result {
        Ok(ensured) => {
            tracing::debug!(event_id, outcome = ensured.as_str(), "billing account");
            if ensured == Ensured::Created {
                tracing::info!(event_id, "billing account created for a new patient");
            }
            Disposition::Ack
        }
        Err(AccountError::Invalid(issues)) => {
            let elements: Vec<&str> = issues
                .iter()
                .filter_map(|issue| issue.expression.as_deref())
                .collect();
            tracing::warn!(
                event_id,
                ?elements,
                "dead-lettering: the billing account would not be valid"
            );
            Disposition::DeadLetter
        }
        Err(error) => {
            tracing::warn!(
                event_id,
                error = error.describe(),
                "billing account refused by the database"
            );
            Disposition::Retry
        }
    }
}

/// Logs `error` and waits out `backoff` (doubled for next time); false when stopping.
async fn wait_for_database(
    error: &AccountError,
    backoff: &mut Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tracing::warn!(
        error = error.describe(),
        retry_in_ms = backoff.as_millis() as u64,
        "database unavailable; retrying"
    );
    if !pause(*backoff, shutdown).await {
        return false;
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_account_id_follows_from_the_patient_id() {
        assert_eq!(account_id("p1").as_str(), "patient-p1");
        let longest_readable = "x".repeat(64 - ID_PREFIX.len());
        assert_eq!(
            account_id(&longest_readable).as_str(),
            format!("patient-{longest_readable}")
        );
        let long = "y".repeat(64);
        let id = account_id(&long);
        assert_eq!(id.as_str().len(), 36, "a UUID");
        assert_eq!(id, account_id(&long), "the same every time");
        assert_ne!(id, account_id(&"z".repeat(64)));
        assert_eq!(Uuid::parse_str(id.as_str()).unwrap().get_version_num(), 5);
    }

    #[test]
    fn the_name_is_the_official_one_rendered_as_text() {
        let patient = json!({"name": [
            {"use": "usual", "given": ["Jim"]},
            {"use": "official", "prefix": ["Mr."], "given": ["Peter", "James"], "family": "Chalmers"}
        ]});
        assert_eq!(
            display_name(&patient).as_deref(),
            Some("Mr. Peter James Chalmers")
        );
        let with_text = json!({"name": [{"text": "  Dr.  Eve\tAdams ", "family": "ignored"}]});
        assert_eq!(display_name(&with_text).as_deref(), Some("Dr. Eve Adams"));
        let old_first = json!({"name": [{"use": "old", "family": "Before"}, {"family": "Now"}]});
        assert_eq!(display_name(&old_first).as_deref(), Some("Now"));
        assert_eq!(
            display_name(&json!({"name": [{"use": "old", "family": "Only"}]})).as_deref(),
            Some("Only")
        );
        assert_eq!(display_name(&json!({})), None);
        assert_eq!(display_name(&json!({"name": [{"given": []}]})), None);
        assert_eq!(display_name(&json!({"name": [{"family": 7}]})), None);
    }

    #[test]
    fn the_account_is_a_valid_r4_account() {
        let patient = json!({"resourceType": "Patient", "id": "p1",
            "name": [{"family": "Chalmers", "given": ["Peter"]}]});
        let account = account_for("p1", &patient);
        assert_eq!(account["name"], "Peter Chalmers");
        assert_eq!(account["status"], "active");
        assert_eq!(account["subject"][0]["reference"], "Patient/p1");
        let body = serde_json::to_vec(&account).unwrap();
        resource::parse(&body, Format::Json, ResourceType::Account).unwrap();
        let nameless = account_for("p2", &json!({"resourceType": "Patient", "id": "p2"}));
        assert!(nameless.get("name").is_none());
        let body = serde_json::to_vec(&nameless).unwrap();
        resource::parse(&body, Format::Json, ResourceType::Account).unwrap();
    }
}
