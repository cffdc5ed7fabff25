//! The reports: GROUP BY queries over the fact tables, returned as serialisable structs
//! (camelCase JSON) for the server to answer with. Row order is fixed (by key, nulls last;
//! rankings by amount, then id), so two reports over the same facts are equal.
//!
//! A `null` key means the resources did not record the element. Amounts are exact
//! decimals (JSON numbers with every digit kept) and are summed per currency: amounts in
//! different currencies are never added together.

use std::str::FromStr;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

/// Rows in the rankings unless asked otherwise.
pub const DEFAULT_TOP: i64 = 10;

/// The age bands, lowest first: label, first and last year of age (`None`: no upper end).
pub const AGE_BANDS: [(&str, i32, Option<i32>); 5] = [
    ("0-17", 0, Some(17)),
    ("18-34", 18, Some(34)),
    ("35-49", 35, Some(49)),
    ("50-64", 50, Some(64)),
    ("65+", 65, None),
];

/// What the reports are computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// The date ages are computed at.
    pub as_of: NaiveDate,
    /// Rows in the rankings (billed per patient, outstanding per account).
    pub top: i64,
}

impl ReportOptions {
    /// Ages at today's date (UTC), [`DEFAULT_TOP`] rows per ranking.
    pub fn today() -> Self {
        ReportOptions {
            as_of: Utc::now().date_naive(),
            top: DEFAULT_TOP,
        }
    }
}

/// An exact decimal amount, written as a JSON number with all its digits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(serde_json::Number);

impl Amount {
    /// The amount as PostgreSQL wrote it, e.g. `1234.50`.
    pub fn as_text(&self) -> String {
        self.0.to_string()
    }
}

impl FromStr for Amount {
    type Err = serde_json::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        serde_json::Number::from_str(text).map(Amount)
    }
}

/// Every report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reports {
    /// The date ages were computed at.
    pub as_of: NaiveDate,
    /// About current Patients.
    pub patients: PatientReport,
    /// About current Accounts.
    pub accounts: AccountReport,
    /// About current Invoices.
    pub invoices: InvoiceReport,
}

/// A number of resources with one value of an element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// The value (a code, a name, an age band); `null` when not recorded.
    pub key: Option<String>,
    /// How many resources have it.
    pub count: i64,
}

/// Patients per state, within their country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCount {
    /// The address country.
    pub country: Option<String>,
    /// The address state.
    pub state: Option<String>,
    /// How many patients live there.
    pub count: i64,
}

/// Patients registered in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodCount {
    /// The day (`YYYY-MM-DD`) or month (`YYYY-MM`), in UTC.
    pub period: String,
    /// Patients first created then (and not deleted since).
    pub count: i64,
}

/// The patient reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientReport {
    /// Current patients.
    pub total: i64,
    /// `Patient.active` true or absent.
    pub active: i64,
    /// `Patient.active` false.
    pub inactive: i64,
    /// Deceased (a `deceasedBoolean` true or a `deceasedDateTime`).
    pub deceased: i64,
    /// Not deceased.
    pub living: i64,
    /// Per `Patient.gender`.
    pub by_gender: Vec<Count>,
    /// Per age band at the report date, every band listed; key `null`: no (full or
    /// partial) birth date, or one after the report date.
    pub by_age_band: Vec<Count>,
    /// Per country of the reporting address.
    pub by_country: Vec<Count>,
    /// Per state and country of the reporting address.
    pub by_state: Vec<StateCount>,
    /// New registrations per day.
    pub registrations_per_day: Vec<PeriodCount>,
    /// New registrations per month.
    pub registrations_per_month: Vec<PeriodCount>,
}

/// Patients with a number of accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountsPerPatient {
    /// Accounts whose subject is the patient.
    pub accounts: i64,
    /// Patients with that many.
    pub patients: i64,
}

/// The account reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountReport {
    /// Current accounts.
    pub total: i64,
    /// Accounts with no Patient among their subjects.
    pub without_patient: i64,
    /// Per `Account.status`.
    pub by_status: Vec<Count>,
    /// Per first code of `Account.type`.
    pub by_type: Vec<Count>,
    /// How many current patients have 0, 1, 2, … accounts.
    pub per_patient: Vec<AccountsPerPatient>,
}

/// Invoice count and sums of one group, in one currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// `Invoice.status`, for the per-status rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `YYYY-MM` of `Invoice.date`, for the per-month rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    /// The currency the sums are in (`null`: the invoices name none).
    pub currency: Option<String>,
    /// Invoices in the group.
    pub invoices: i64,
    /// Sum of `totalNet` (absent totals count as nothing).
    pub total_net: Amount,
    /// Sum of `totalGross`.
    pub total_gross: Amount,
}

/// What one patient was billed, in one currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientBilled {
    /// The Patient id.
    pub patient_id: String,
    /// The currency.
    pub currency: Option<String>,
    /// Invoices issued or balanced.
    pub invoices: i64,
    /// Sum of their `totalGross`.
    pub billed: Amount,
}

/// What one account still owes, in one currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountOutstanding {
    /// The Account id.
    pub account_id: String,
    /// The currency.
    pub currency: Option<String>,
    /// Invoices issued and not yet balanced.
    pub invoices: i64,
    /// Sum of their `totalGross`.
    pub outstanding: Amount,
}

/// The invoice reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceReport {
    /// Current invoices.
    pub total: i64,
    /// Per status and currency.
    pub by_status: Vec<Totals>,
    /// Per month of `Invoice.date` and currency (`month` absent: no month recorded).
    pub by_month: Vec<Totals>,
    /// Per currency.
    pub by_currency: Vec<Totals>,
    /// The patients billed most (issued and balanced invoices), per currency.
    pub billed_per_patient: Vec<PatientBilled>,
    /// The accounts owing most (issued invoices), per currency.
    pub outstanding_per_account: Vec<AccountOutstanding>,
}

/// Every report, each from its own query, all in one read-only snapshot: they count the
/// same facts even while the worker applies events.
pub async fn reports(pool: &PgPool, options: ReportOptions) -> Result<Reports, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let reports = Reports {
        as_of: options.as_of,
        patients: patient_report(&mut tx, options.as_of).await?,
        accounts: account_report(&mut tx).await?,
        invoices: invoice_report(&mut tx, options.top).await?,
    };
    tx.commit().await?;
    Ok(reports)
}

/// The patient reports, ages at `as_of`, on `conn` (in the caller's transaction).
pub async fn patient_report(
    conn: &mut PgConnection,
    as_of: NaiveDate,
) -> Result<PatientReport, sqlx::Error> {
    let (total, active, inactive, deceased): (i64, i64, i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where coalesce(active, true)),
                count(*) filter (where active = false), count(*) filter (where deceased)
         from analytics.patient_facts",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(PatientReport {
        total,
        active,
        inactive,
        deceased,
        living: total - deceased,
        by_gender: counts(&mut *conn, "analytics.patient_facts", "gender").await?,
        by_age_band: age_bands(&mut *conn, as_of).await?,
        by_country: counts(&mut *conn, "analytics.patient_facts", "country").await?,
        by_state: states(&mut *conn).await?,
        registrations_per_day: registrations(&mut *conn, "YYYY-MM-DD").await?,
        registrations_per_month: registrations(&mut *conn, "YYYY-MM").await?,
    })
}

/// Rows per value of `column` of `table` (both fixed names from this module).
async fn counts(
    conn: &mut PgConnection,
    table: &str,
    column: &str,
) -> Result<Vec<Count>, sqlx::Error> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(&format!(
        "select {column}, count(*) from {table} group by {column} order by {column} nulls last"
    ))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(key, count)| Count { key, count })
        .collect())
}

async fn age_bands(conn: &mut PgConnection, as_of: NaiveDate) -> Result<Vec<Count>, sqlx::Error> {
    let labels: Vec<&str> = AGE_BANDS.iter().map(|band| band.0).collect();
    let lows: Vec<i32> = AGE_BANDS.iter().map(|band| band.1).collect();
    let highs: Vec<Option<i32>> = AGE_BANDS.iter().map(|band| band.2).collect();
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "with bands as (
             select * from unnest($2::text[], $3::int[], $4::int[]) with ordinality
                 as b(label, low, high, position)
         ), ages as (
             select date_part('year', age($1::date, birth_date))::int as age
             from analytics.patient_facts where birth_date <= $1::date
         )
         select label, count(ages.age) from bands
         left join ages on ages.age >= low and (high is null or ages.age <= high)
         group by label, position
         union all
         select null, count(*) from analytics.patient_facts
         where birth_date is null or birth_date > $1::date",
    )
    .bind(as_of)
    .bind(&labels)
    .bind(&lows)
    .bind(&highs)
    .fetch_all(&mut *conn)
    .await?;
    let mut bands: Vec<Count> = rows
        .into_iter()
        .map(|(key, count)| Count { key, count })
        .collect();
    // `union all` keeps no order: the bands as declared, then the unknown ages.
    bands.sort_by_key(|count| {
        count
            .key
            .as_deref()
            .and_then(|key| labels.iter().position(|label| *label == key))
            .unwrap_or(labels.len())
    });
    Ok(bands)
}

async fn states(conn: &mut PgConnection) -> Result<Vec<StateCount>, sqlx::Error> {
    let rows: Vec<(Option<String>, Option<String>, i64)> = sqlx::query_as(
        "select country, state, count(*) from analytics.patient_facts
         group by country, state order by country nulls last, state nulls last",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(country, state, count)| StateCount {
            country,
            state,
            count,
        })
        .collect())
}

/// Registrations of current patients per period, `format` being a `to_char` pattern.
async fn registrations(
    conn: &mut PgConnection,
    format: &str,
) -> Result<Vec<PeriodCount>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select to_char(registered_at at time zone 'UTC', $1) as period, count(*)
         from analytics.patient_registrations join analytics.patient_facts using (id)
         group by period order by period",
    )
    .bind(format)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(period, count)| PeriodCount { period, count })
        .collect())
}

/// The account reports.
pub async fn account_report(conn: &mut PgConnection) -> Result<AccountReport, sqlx::Error> {
    let (total, without_patient): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where patient_id is null)
         from analytics.account_facts",
    )
    .fetch_one(&mut *conn)
    .await?;
    let per_patient: Vec<(i64, i64)> = sqlx::query_as(
        "select accounts, count(*) from (
             select count(a.id) as accounts from analytics.patient_facts p
             left join analytics.account_facts a on a.patient_id = p.id
             group by p.id
         ) as per_patient
         group by accounts order by accounts",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(AccountReport {
        total,
        without_patient,
        by_status: counts(&mut *conn, "analytics.account_facts", "status").await?,
        by_type: counts(&mut *conn, "analytics.account_facts", "type_code").await?,
        per_patient: per_patient
            .into_iter()
            .map(|(accounts, patients)| AccountsPerPatient { accounts, patients })
            .collect(),
    })
}

/// The invoice reports, rankings cut at `top` rows.
pub async fn invoice_report(
    conn: &mut PgConnection,
    top: i64,
) -> Result<InvoiceReport, sqlx::Error> {
    let total: i64 = sqlx::query_scalar("select count(*) from analytics.invoice_facts")
        .fetch_one(&mut *conn)
        .await?;
    Ok(InvoiceReport {
        total,
        by_status: totals(&mut *conn, Group::Status).await?,
        by_month: totals(&mut *conn, Group::Month).await?,
        by_currency: totals(&mut *conn, Group::Currency).await?,
        billed_per_patient: billed_per_patient(&mut *conn, top).await?,
        outstanding_per_account: outstanding_per_account(&mut *conn, top).await?,
    })
}

/// What invoice totals are grouped by, besides the currency.
#[derive(Debug, Clone, Copy)]
enum Group {
    Status,
    Month,
    Currency,
}

impl Group {
    /// The key expression.
    fn key(self) -> &'static str {
        match self {
            Group::Status => "status",
            Group::Month => "to_char(month, 'YYYY-MM')",
            Group::Currency => "null::text",
        }
    }
}

/// One group of [`totals`], sums as `numeric` text.
#[derive(sqlx::FromRow)]
struct TotalsRow {
    key: Option<String>,
    currency: Option<String>,
    invoices: i64,
    total_net: String,
    total_gross: String,
}

/// Count and sums per group and currency.
async fn totals(conn: &mut PgConnection, group: Group) -> Result<Vec<Totals>, sqlx::Error> {
    let rows: Vec<TotalsRow> = sqlx::query_as(&format!(
        "select {} as key, currency, count(*) as invoices,
                coalesce(sum(total_net), 0)::text as total_net,
                coalesce(sum(total_gross), 0)::text as total_gross
         from analytics.invoice_facts
         group by key, currency order by key nulls last, currency nulls last",
        group.key()
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let (status, month) = match group {
                Group::Status => (row.key, None),
                Group::Month => (None, row.key),
                Group::Currency => (None, None),
            };
            Ok(Totals {
                status,
                month,
                currency: row.currency,
                invoices: row.invoices,
                total_net: amount(&row.total_net)?,
                total_gross: amount(&row.total_gross)?,
            })
        })
        .collect()
}

async fn billed_per_patient(
    conn: &mut PgConnection,
    top: i64,
) -> Result<Vec<PatientBilled>, sqlx::Error> {
    let rows: Vec<(String, Option<String>, i64, String)> = sqlx::query_as(
        "select patient_id, currency, count(*), coalesce(sum(total_gross), 0)::text
         from analytics.invoice_facts
         where status in ('issued', 'balanced') and patient_id is not null
         group by patient_id, currency
         order by coalesce(sum(total_gross), 0) desc, patient_id, currency nulls last
         limit $1",
    )
    .bind(top)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(patient_id, currency, invoices, billed)| {
            Ok(PatientBilled {
                patient_id,
                currency,
                invoices,
                billed: amount(&billed)?,
            })
        })
        .collect()
}

async fn outstanding_per_account(
    conn: &mut PgConnection,
    top: i64,
) -> Result<Vec<AccountOutstanding>, sqlx::Error> {
    let rows: Vec<(String, Option<String>, i64, String)> = sqlx::query_as(
        "select account_id, currency, count(*), coalesce(sum(total_gross), 0)::text
         from analytics.invoice_facts
         where status = 'issued' and account_id is not null
         group by account_id, currency
         order by coalesce(sum(total_gross), 0) desc, account_id, currency nulls last
         limit $1",
    )
    .bind(top)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(account_id, currency, invoices, outstanding)| {
            Ok(AccountOutstanding {
                account_id,
                currency,
                invoices,
                outstanding: amount(&outstanding)?,
            })
        })
        .collect()
}

fn amount(text: &str) -> Result<Amount, sqlx::Error> {
    text.parse()
        .map_err(|e: serde_json::Error| sqlx::Error::Decode(Box::new(e)))
}
