//! Applying changes to the fact tables, in one transaction that for each change records
//! the event as processed, claims the resource's version, and replaces (or removes) its
//! fact row. A redelivered event or an older version changes nothing, so deliveries may
//! repeat and arrive in any order.

use std::cmp::Reverse;
use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use events::{Action, DecodeError, Envelope};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::facts::{AccountFacts, Facts, InvoiceFacts, Kind, PatientFacts};

/// One change as the worker applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The envelope's `eventId`.
    pub event_id: Uuid,
    /// The resource type.
    pub kind: Kind,
    /// The resource id.
    pub id: String,
    /// The version the change produced.
    pub version: i64,
    /// When that version was written.
    pub last_updated: DateTime<Utc>,
    /// The facts of the new version; `None` for a delete.
    pub facts: Option<Facts>,
}

/// Why a message cannot be applied, whatever is tried: it is dead-lettered. The text
/// names the defect, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedMessage {
    /// The body is not a usable envelope.
    #[error(transparent)]
    Envelope(#[from] DecodeError),
    /// `lastUpdated` is not an instant.
    #[error("the envelope's lastUpdated is not an instant")]
    LastUpdated,
}

impl Change {
    /// Reads a message body. `Ok(None)` for a resource type the worker does not project.
    pub fn decode(body: &[u8]) -> Result<Option<Change>, MalformedMessage> {
        let envelope = Envelope::decode(body)?;
        Change::from_envelope(&envelope)
    }

    /// The change an envelope announces. `Ok(None)` for a type the worker does not project.
    pub fn from_envelope(envelope: &Envelope) -> Result<Option<Change>, MalformedMessage> {
        let Some(kind) = Kind::parse(&envelope.resource_type) else {
            return Ok(None);
        };
        let last_updated = DateTime::parse_from_rfc3339(&envelope.last_updated)
            .map_err(|_| MalformedMessage::LastUpdated)?
            .with_timezone(&Utc);
        let facts = match (envelope.action, &envelope.resource) {
            (Action::Delete, _) => None,
            (_, Some(resource)) => Some(Facts::of(kind, resource)),
            (action, None) => return Err(DecodeError::MissingResource(action).into()),
        };
        Ok(Some(Change {
            event_id: envelope.event_id,
            kind,
            id: envelope.id.clone(),
            version: envelope.version_id,
            last_updated,
            facts,
        }))
    }
}

/// What applying a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The fact row now reflects the change.
    Applied,
    /// The event was processed before: nothing changed.
    Duplicate,
    /// A version at least as new was applied before: nothing changed but the marker.
    Stale,
}

impl Applied {
    /// A word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Applied => "applied",
            Applied::Duplicate => "duplicate",
            Applied::Stale => "stale",
        }
    }
}

/// Serialises the worker's transactions with a rebuild: each worker transaction holds it
/// shared, a rebuild exclusively, so neither sees the other half done.
pub(crate) const PROJECTION_LOCK: i64 = 0x616e_616c_7974_6963;

/// Begins a worker transaction: [`PROJECTION_LOCK`] taken in the same round trip, and the
/// batch statements run with their generic plans, made without sequential scans.
/// PostgreSQL estimates an `unnest` of an array at ten rows without the array and at its
/// length with it, and would otherwise plan many batches anew; every row is found by key,
/// and a generic plan made while a table was empty must not scan it once it has grown.
static BEGIN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "begin; set local plan_cache_mode = force_generic_plan; set local enable_seqscan = off; \
         select pg_advisory_xact_lock_shared({PROJECTION_LOCK})"
    )
});

/// Applies `change` in one transaction with its processed marker.
pub async fn apply(pool: &PgPool, change: &Change) -> Result<Applied, sqlx::Error> {
    let applied = apply_all(pool, std::slice::from_ref(change)).await?;
    Ok(applied.first().copied().unwrap_or(Applied::Duplicate))
}

/// Applies several changes in one transaction, each with its processed marker: all of
/// them or none. The statements are per batch, not per change: the markers, the
/// registrations, the version claims and each table's facts are one statement each. Of
/// several fresh changes to one resource only the newest can change its facts (the others
/// are [`Applied::Stale`], as they would be applied one after the other), and resources
/// are claimed in one order, so that two transactions touching the same resources lock
/// their rows in the same order. Returns what each change did, in the order given.
pub async fn apply_all(pool: &PgPool, changes: &[Change]) -> Result<Vec<Applied>, sqlx::Error> {
    let mut outcomes = vec![Applied::Duplicate; changes.len()];
    let mut tx = pool.begin_with(BEGIN.as_str()).await?;

    // Markers, in event id order; of two copies of one event in the batch, the first counts.
    let mut event_ids: Vec<Uuid> = changes.iter().map(|c| c.event_id).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let fresh: HashSet<Uuid> = sqlx::query_scalar(
        "insert into analytics.processed_events (event_id)
         select * from unnest($1::uuid[]) order by 1
         on conflict (event_id) do nothing
         returning event_id",
    )
    .bind(&event_ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut seen = HashSet::new();
    let fresh: Vec<usize> = (0..changes.len())
        .filter(|&i| fresh.contains(&changes[i].event_id) && seen.insert(changes[i].event_id))
        .collect();

    // Registration is the time of version 1, whatever was applied since.
    let (registered, at): (Vec<&str>, Vec<DateTime<Utc>>) = fresh
        .iter()
        .map(|&i| &changes[i])
        .filter(|c| c.kind == Kind::Patient && c.version == 1)
        .map(|c| (c.id.as_str(), c.last_updated))
        .unzip();
    if !registered.is_empty() {
        sqlx::query(
            "insert into analytics.patient_registrations (id, registered_at)
             select * from unnest($1::text[], $2::timestamptz[])
             on conflict (id) do nothing",
        )
        .bind(&registered)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
    }

    // The newest fresh change of each resource claims its version; the row lock taken
    // also serialises concurrent changes to one resource.
    for &i in &fresh {
        outcomes[i] = Applied::Stale;
    }
    let mut newest: Vec<usize> = fresh;
    newest.sort_by_key(|&i| {
        let c = &changes[i];
        (c.kind, c.id.as_str(), Reverse(c.version), c.event_id)
    });
    newest.dedup_by_key(|i| (changes[*i].kind, changes[*i].id.as_str()));
    if newest.is_empty() {
        tx.commit().await?;
        return Ok(outcomes);
    }
    let (mut types, mut res_ids, mut versions, mut deletes) = (vec![], vec![], vec![], vec![]);
    for change in newest.iter().map(|&i| &changes[i]) {
        types.push(change.kind.as_str());
        res_ids.push(change.id.as_str());
        versions.push(change.version);
        deletes.push(change.facts.is_none());
    }
    let claimed: HashSet<(String, String)> = sqlx::query_as(
        "insert into analytics.applied_versions as applied (res_type, id, version, deleted)
         select * from unnest($1::text[], $2::text[], $3::int8[], $4::boolean[])
         on conflict (res_type, id) do update
         set version = excluded.version, deleted = excluded.deleted
         where applied.version < excluded.version
         returning res_type, id",
    )
    .bind(&types)
    .bind(&res_ids)
    .bind(&versions)
    .bind(&deletes)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();

    let mut batch = Batch::default();
    let mut removed: Vec<(Kind, &str)> = Vec::new();
    for &i in &newest {
        let change = &changes[i];
        if !claimed.contains(&(change.kind.as_str().to_owned(), change.id.clone())) {
            continue;
        }
        outcomes[i] = Applied::Applied;
        match &change.facts {
            None => removed.push((change.kind, &change.id)),
            Some(facts) => batch.push(change.id.clone(), facts.clone()),
        }
    }
    for kind in Kind::ALL {
        let ids: Vec<&str> = removed
            .iter()
            .filter(|r| r.0 == kind)
            .map(|r| r.1)
            .collect();
        if !ids.is_empty() {
            remove(&mut tx, kind, &ids).await?;
        }
    }
    batch.write(&mut tx).await?;
    tx.commit().await?;
    Ok(outcomes)
}

async fn remove(conn: &mut PgConnection, kind: Kind, ids: &[&str]) -> Result<(), sqlx::Error> {
    let sql = match kind {
        Kind::Patient => "delete from analytics.patient_facts where id = any($1)",
        Kind::Account => "delete from analytics.account_facts where id = any($1)",
        Kind::Invoice => "delete from analytics.invoice_facts where id = any($1)",
    };
    sqlx::query(sql).bind(ids).execute(conn).await?;
    Ok(())
}

/// Fact rows to insert or replace, written with one statement per table: the single row
/// of an event and the pages of a rebuild take the same path.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    patients: Vec<(String, PatientFacts)>,
    accounts: Vec<(String, AccountFacts)>,
    invoices: Vec<(String, InvoiceFacts)>,
}

impl Batch {
    /// Adds the facts of resource `id`.
    pub(crate) fn push(&mut self, id: String, facts: Facts) {
        match facts {
            Facts::Patient(facts) => self.patients.push((id, facts)),
            Facts::Account(facts) => self.accounts.push((id, facts)),
            Facts::Invoice(facts) => self.invoices.push((id, facts)),
        }
    }

    /// How many rows the batch holds, per type.
    pub(crate) fn counts(&self) -> [u64; 3] {
        [
            self.patients.len() as u64,
            self.accounts.len() as u64,
            self.invoices.len() as u64,
        ]
    }

    /// Inserts or replaces every row.
    pub(crate) async fn write(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if !self.patients.is_empty() {
            write_patients(conn, &self.patients).await?;
        }
        if !self.accounts.is_empty() {
            write_accounts(conn, &self.accounts).await?;
        }
        if !self.invoices.is_empty() {
            write_invoices(conn, &self.invoices).await?;
        }
        Ok(())
    }
}

async fn write_patients(
    conn: &mut PgConnection,
    rows: &[(String, PatientFacts)],
) -> Result<(), sqlx::Error> {
    let column = |f: fn(&PatientFacts) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(|(_, facts)| f(facts)).collect()
    };
    sqlx::query(
        "insert into analytics.patient_facts
             (id, gender, birth_date, state, country, active, deceased)
         select * from unnest($1::text[], $2::text[], $3::date[], $4::text[], $5::text[],
                              $6::boolean[], $7::boolean[])
         on conflict (id) do update
         set gender = excluded.gender, birth_date = excluded.birth_date,
             state = excluded.state, country = excluded.country,
             active = excluded.active, deceased = excluded.deceased",
    )
    .bind(ids(rows))
    .bind(column(|f| f.gender.clone()))
    .bind(rows.iter().map(|(_, f)| f.birth_date).collect::<Vec<_>>())
    .bind(column(|f| f.state.clone()))
    .bind(column(|f| f.country.clone()))
    .bind(rows.iter().map(|(_, f)| f.active).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, f)| f.deceased).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn write_accounts(
    conn: &mut PgConnection,
    rows: &[(String, AccountFacts)],
) -> Result<(), sqlx::Error> {
    let column = |f: fn(&AccountFacts) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(|(_, facts)| f(facts)).collect()
    };
    sqlx::query(
        "insert into analytics.account_facts (id, status, type_code, patient_id)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::text[])
         on conflict (id) do update
         set status = excluded.status, type_code = excluded.type_code,
             patient_id = excluded.patient_id",
    )
    .bind(ids(rows))
    .bind(column(|f| f.status.clone()))
    .bind(column(|f| f.type_code.clone()))
    .bind(column(|f| f.patient_id.clone()))
    .execute(conn)
    .await?;
    Ok(())
}

async fn write_invoices(
    conn: &mut PgConnection,
    rows: &[(String, InvoiceFacts)],
) -> Result<(), sqlx::Error> {
    let column = |f: fn(&InvoiceFacts) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(|(_, facts)| f(facts)).collect()
    };
    sqlx::query(
        "insert into analytics.invoice_facts
             (id, status, month, currency, total_net, total_gross, patient_id, account_id)
         select id, status, month, currency, total_net::numeric, total_gross::numeric,
                patient_id, account_id
         from unnest($1::text[], $2::text[], $3::date[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[])
              as t(id, status, month, currency, total_net, total_gross, patient_id, account_id)
         on conflict (id) do update
         set status = excluded.status, month = excluded.month, currency = excluded.currency,
             total_net = excluded.total_net, total_gross = excluded.total_gross,
             patient_id = excluded.patient_id, account_id = excluded.account_id",
    )
    .bind(ids(rows))
    .bind(column(|f| f.status.clone()))
    .bind(rows.iter().map(|(_, f)| f.month).collect::<Vec<_>>())
    .bind(column(|f| f.currency.clone()))
    .bind(column(|f| {
        f.total_net.as_ref().map(|d| d.as_str().to_owned())
    }))
    .bind(column(|f| {
        f.total_gross.as_ref().map(|d| d.as_str().to_owned())
    }))
    .bind(column(|f| f.patient_id.clone()))
    .bind(column(|f| f.account_id.clone()))
    .execute(conn)
    .await?;
    Ok(())
}

fn ids<T>(rows: &[(String, T)]) -> Vec<&str> {
    rows.iter().map(|(id, _)| id.as_str()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn envelope(action: &str, resource_type: &str, last_updated: &str) -> Vec<u8> {
        let resource = match action {
            "delete" => String::new(),
            _ => format!(
                r#","resource":{{"resourceType":"{resource_type}","id":"x1","gender":"other"}}"#
            ),
        };
        format!(
            r#"{{"specVersion":1,"eventId":"7d0c9a52-3f43-4f57-9a3e-6a4c2f0f1a11","action":"{action}","resourceType":"{resource_type}","id":"x1","versionId":2,"lastUpdated":"{last_updated}"{resource}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn an_update_carries_the_facts_of_its_version() {
        let change = Change::decode(&envelope("update", "Patient", "2026-01-02T03:04:05.5Z"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (change.kind, change.id.as_str(), change.version),
            (Kind::Patient, "x1", 2)
        );
        assert_eq!(
            change.last_updated.to_rfc3339(),
            "2026-01-02T03:04:05.500+00:00"
        );
        let Some(Facts::Patient(facts)) = change.facts else {
            panic!("patient facts expected");
        };
        assert_eq!(facts.gender.as_deref(), Some("other"));
    }

    #[test]
    fn a_delete_has_no_facts() {
        let change = Change::decode(&envelope("delete", "Invoice", "2026-01-02T03:04:05Z"))
            .unwrap()
            .unwrap();
        assert_eq!(change.facts, None);
    }

    #[test]
    fn other_types_are_skipped_and_bad_instants_refused() {
        let organization = envelope("create", "Organization", "2026-01-02T03:04:05Z");
        assert_eq!(Change::decode(&organization), Ok(None));
        let undated = envelope("create", "Account", "2026-01-02");
        assert_eq!(Change::decode(&undated), Err(MalformedMessage::LastUpdated));
    }
}
