//! The facts the reports count, read from one resource: pure functions, no I/O. The worker
//! (from an event) and the rebuild (from the stored resource) both go through
//! [`Facts::of`], so the same version always gives the same row.
//!
//! Reading never fails: an element that is absent, of the wrong JSON type, or not a
//! well-formed FHIR value is left out of the facts (the column is null), and the resource
//! is still counted.

use chrono::{Datelike as _, NaiveDate};
use serde_json::Value;

/// The longest text kept as a fact (a code, a state or country name); longer values are
/// treated as absent rather than grouped on.
const MAX_TEXT_LEN: usize = 256;
/// The longest decimal kept (FHIR decimals have at most 18 significant digits in practice).
const MAX_DECIMAL_LEN: usize = 64;
/// The largest decimal exponent kept: far beyond any amount, far within `numeric`.
const MAX_EXPONENT: i32 = 1000;

/// The resource types the worker projects, in the order their changes are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `Patient`
    Patient,
    /// `Account`
    Account,
    /// `Invoice`
    Invoice,
}

impl Kind {
    /// Every projected type.
    pub const ALL: [Kind; 3] = [Kind::Patient, Kind::Account, Kind::Invoice];

    /// The FHIR resource type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Patient => "Patient",
            Kind::Account => "Account",
            Kind::Invoice => "Invoice",
        }
    }

    /// The projected type named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// The facts of one resource version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facts {
    /// Of a Patient.
    Patient(PatientFacts),
    /// Of an Account.
    Account(AccountFacts),
    /// Of an Invoice.
    Invoice(InvoiceFacts),
}

impl Facts {
    /// Reads the facts of `resource`, a resource of type `kind`.
    pub fn of(kind: Kind, resource: &Value) -> Facts {
        match kind {
            Kind::Patient => Facts::Patient(PatientFacts::of(resource)),
            Kind::Account => Facts::Account(AccountFacts::of(resource)),
            Kind::Invoice => Facts::Invoice(InvoiceFacts::of(resource)),
        }
    }
}

/// What the patient reports count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientFacts {
    /// `Patient.gender`.
    pub gender: Option<String>,
    /// `Patient.birthDate`; a partial date is its first day.
    pub birth_date: Option<NaiveDate>,
    /// `state` of the reporting address ([`reporting_address`]).
    pub state: Option<String>,
    /// `country` of the reporting address.
    pub country: Option<String>,
    /// `Patient.active` as written.
    pub active: Option<bool>,
    /// `deceasedBoolean` true, or any `deceasedDateTime`.
    pub deceased: bool,
}

impl PatientFacts {
    /// Reads a Patient.
    pub fn of(patient: &Value) -> PatientFacts {
        let address = reporting_address(patient);
        PatientFacts {
            gender: text(&patient["gender"]),
            birth_date: patient["birthDate"].as_str().and_then(partial_date),
            state: address.and_then(|a| text(&a["state"])),
            country: address.and_then(|a| text(&a["country"])),
            active: patient["active"].as_bool(),
            deceased: patient["deceasedBoolean"].as_bool() == Some(true)
                || patient["deceasedDateTime"].is_string(),
        }
    }
}

/// What the account reports count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFacts {
    /// `Account.status`.
    pub status: Option<String>,
    /// The first code in `Account.type.coding`.
    pub type_code: Option<String>,
    /// The first `Account.subject` that is a Patient.
    pub patient_id: Option<String>,
}

impl AccountFacts {
    /// Reads an Account.
    pub fn of(account: &Value) -> AccountFacts {
        let patient_id = account["subject"]
            .as_array()
            .and_then(|subjects| subjects.iter().find_map(|s| reference_id(s, "Patient")));
        AccountFacts {
            status: text(&account["status"]),
            type_code: first_code(&account["type"]),
            patient_id,
        }
    }
}

/// What the invoice reports count and sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceFacts {
    /// `Invoice.status`.
    pub status: Option<String>,
    /// The first day of the month of `Invoice.date`, as written; none when the date gives
    /// the year only.
    pub month: Option<NaiveDate>,
    /// The currency of `totalGross`, else of `totalNet`.
    pub currency: Option<String>,
    /// `Invoice.totalNet.value`.
    pub total_net: Option<Decimal>,
    /// `Invoice.totalGross.value`.
    pub total_gross: Option<Decimal>,
    /// `Invoice.subject` when it is a Patient.
    pub patient_id: Option<String>,
    /// `Invoice.account`.
    pub account_id: Option<String>,
}

impl InvoiceFacts {
    /// Reads an Invoice.
    pub fn of(invoice: &Value) -> InvoiceFacts {
        let net = &invoice["totalNet"];
        let gross = &invoice["totalGross"];
        InvoiceFacts {
            status: text(&invoice["status"]),
            month: invoice["date"].as_str().and_then(month_of),
            currency: text(&gross["currency"]).or_else(|| text(&net["currency"])),
            total_net: decimal(&net["value"]),
            total_gross: decimal(&gross["value"]),
            patient_id: reference_id(&invoice["subject"], "Patient"),
            account_id: reference_id(&invoice["account"], "Account"),
        }
    }
}

/// An exact decimal as written in the resource (a FHIR `decimal`), summed as PostgreSQL
/// `numeric`: money is never a float.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal(String);

impl Decimal {
    /// Accepts the JSON number grammar (`-?int(.frac)?(e[+-]?exp)?`) within the limits
    /// `numeric` takes without error.
    pub fn parse(text: &str) -> Option<Decimal> {
        if text.len() > MAX_DECIMAL_LEN {
            return None;
        }
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((mantissa, exponent)) => (mantissa, Some(exponent)),
            None => (unsigned, None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (mantissa, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let exponent_ok = exponent.is_none_or(|e| {
            let unsigned = e.strip_prefix(['+', '-']).unwrap_or(e);
            digits(unsigned) && e.parse::<i32>().is_ok_and(|e| e.abs() <= MAX_EXPONENT)
        });
        (digits(int) && frac.is_none_or(digits) && exponent_ok).then(|| Decimal(text.to_owned()))
    }

    /// The decimal as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The address the reports place a patient by: the first home address, else the first
/// one not marked `old`.
pub fn reporting_address(patient: &Value) -> Option<&Value> {
    let addresses = patient["address"].as_array()?;
    let current = |address: &&Value| address["use"].as_str() != Some("old");
    addresses
        .iter()
        .filter(current)
        .find(|address| address["use"].as_str() == Some("home"))
        .or_else(|| addresses.iter().find(current))
}

/// A non-empty string of reasonable length, trimmed.
fn text(value: &Value) -> Option<String> {
    let text = value.as_str()?.trim();
    (!text.is_empty() && text.len() <= MAX_TEXT_LEN).then(|| text.to_owned())
}

fn decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(number) => Decimal::parse(&number.to_string()),
        _ => None,
    }
}

/// The first non-empty `coding.code` of a CodeableConcept.
fn first_code(concept: &Value) -> Option<String> {
    concept["coding"]
        .as_array()?
        .iter()
        .find_map(|coding| text(&coding["code"]))
}

/// The id of a literal reference to `target` (`Patient/1`, `Patient/1/_history/2`, or an
/// absolute URL ending so). Contained, logical and `urn:` references have none.
fn reference_id(reference: &Value, target: &str) -> Option<String> {
    let literal = reference["reference"].as_str()?;
    let path = literal.split("/_history/").next()?;
    let mut segments = path.rsplit('/');
    let id = segments.next()?;
    let resource_type = segments.next()?;
    (resource_type == target && is_id(id)).then(|| id.to_owned())
}

fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A FHIR `date` (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`) as its first day.
fn partial_date(date: &str) -> Option<NaiveDate> {
    let number = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let mut parts = date.split('-');
    let year = i32::try_from(number(parts.next()?, 4)?).ok()?;
    let month = parts.next().map(|m| number(m, 2)).unwrap_or(Some(1))?;
    let day = parts.next().map(|d| number(d, 2)).unwrap_or(Some(1))?;
    if parts.next().is_some() {
        return None;
    }
    NaiveDate::from_ymd_opt(year, month, day)
}

/// The first day of the month of a FHIR `dateTime`, read from its date part as written;
/// none when it gives the year only.
fn month_of(date_time: &str) -> Option<NaiveDate> {
    let date = date_time.split('T').next()?;
    if date.len() < 7 {
        return None;
    }
    partial_date(date).and_then(|d| d.with_day(1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn patient_facts_come_from_the_reporting_address() {
        let patient = json!({
            "resourceType": "Patient", "gender": "female", "birthDate": "1980-02-29",
            "active": false, "deceasedDateTime": "2020-01-01",
            "address": [
                {"use": "old", "state": "Old", "country": "XX"},
                {"use": "work", "state": "Work", "country": "DE"},
                {"use": "home", "state": " Bavaria ", "country": "DE"}
            ]
        });
        assert_eq!(
            PatientFacts::of(&patient),
            PatientFacts {
                gender: Some("female".into()),
                birth_date: date(1980, 2, 29),
                state: Some("Bavaria".into()),
                country: Some("DE".into()),
                active: Some(false),
                deceased: true,
            }
        );
        let work_only = json!({"address": [{"use": "old", "country": "XX"}, {"country": "FR"}]});
        assert_eq!(PatientFacts::of(&work_only).country.as_deref(), Some("FR"));
        assert_eq!(PatientFacts::of(&json!({})), PatientFacts::default());
    }

    #[test]
    fn malformed_elements_are_left_out() {
        let patient = json!({
            "gender": 7, "birthDate": "1980-02-30", "active": "yes",
            "deceasedBoolean": "true", "address": {"state": "not a list"}
        });
        assert_eq!(PatientFacts::of(&patient), PatientFacts::default());
        let invoice: Value = serde_json::from_str(
            r##"{"status": "", "date": "20xx-01", "totalNet": {"value": "12.5"},
                "totalGross": {"value": 1e2000}, "subject": {"reference": "Group/1"},
                "account": {"reference": "#contained"}}"##,
        )
        .unwrap();
        assert_eq!(InvoiceFacts::of(&invoice), InvoiceFacts::default());
    }

    #[test]
    fn partial_dates_are_their_first_day() {
        assert_eq!(partial_date("1975"), date(1975, 1, 1));
        assert_eq!(partial_date("1975-06"), date(1975, 6, 1));
        assert_eq!(partial_date("1975-06-15"), date(1975, 6, 15));
        for bad in [
            "75",
            "1975-6",
            "1975-13",
            "1975-06-15T10:00:00Z",
            "+1975",
            "",
        ] {
            assert_eq!(partial_date(bad), None, "{bad}");
        }
        assert_eq!(month_of("2026-03-31T23:30:00-05:00"), date(2026, 3, 1));
        assert_eq!(month_of("2026-03"), date(2026, 3, 1));
        assert_eq!(month_of("2026"), None);
    }

    #[test]
    fn account_and_invoice_references_resolve_to_ids() {
        let account = json!({
            "status": "active",
            "type": {"coding": [{"system": "s"}, {"code": "PBILLACCT"}]},
            "subject": [{"reference": "Device/d"}, {"reference": "http://h/fhir/Patient/p1/_history/3"}]
        });
        assert_eq!(
            AccountFacts::of(&account),
            AccountFacts {
                status: Some("active".into()),
                type_code: Some("PBILLACCT".into()),
                patient_id: Some("p1".into()),
            }
        );
        let invoice: Value = serde_json::from_str(
            r#"{"status": "issued", "date": "2026-01-15", "subject": {"reference": "Patient/p1"},
                "account": {"reference": "Account/a1"},
                "totalNet": {"value": 100.10, "currency": "EUR"},
                "totalGross": {"value": 119.119}}"#,
        )
        .unwrap();
        assert_eq!(
            InvoiceFacts::of(&invoice),
            InvoiceFacts {
                status: Some("issued".into()),
                month: date(2026, 1, 1),
                currency: Some("EUR".into()),
                total_net: Decimal::parse("100.10"),
                total_gross: Decimal::parse("119.119"),
                patient_id: Some("p1".into()),
                account_id: Some("a1".into()),
            }
        );
    }

    #[test]
    fn decimals_keep_their_digits() {
        assert_eq!(Decimal::parse("100.10").unwrap().as_str(), "100.10");
        for good in ["0", "-1", "1.5e3", "2E-2", "12345678901234567.89"] {
            assert!(Decimal::parse(good).is_some(), "{good}");
        }
        for bad in [
            "", "-", "1.", ".5", "1e", "1e1001", "0x10", "1,5", "NaN", "1e+",
        ] {
            assert_eq!(Decimal::parse(bad), None, "{bad}");
        }
    }
}
