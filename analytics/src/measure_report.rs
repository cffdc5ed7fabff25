//! The reports as FHIR R4 MeasureReports (http://hl7.org/fhir/R4/measurereport.html):
//! one `summary` MeasureReport per report area (patients, accounts, invoices), each
//! report a `group`, each breakdown a `stratifier`. Pure functions of [`Reports`].
//!
//! - `measure` is `urn:ferrum:Measure:<area>`; group and stratifier codes come from
//!   `urn:ferrum:CodeSystem:analytics` (the report names of `docs/analytics.md`).
//! - `period` is the report date (`asOf`, start and end); the counts are of the current
//!   resources.
//! - A group's `population` (code `initial-population`) counts the resources the report
//!   is about; so does each stratum's.
//! - A breakdown by one element gives strata with a `value`; by several (status and
//!   currency, country and state), strata with a `component` each (invariant mrp-2).
//!   A value the resources did not record is data-absent-reason `unknown`.
//! - Amounts are a stratum's `measureScore`: a Quantity in the currency (ISO 4217), with
//!   every digit PostgreSQL computed. Net and gross sums are groups of their own.

use chrono::{DateTime, Utc};
use fhir_core::resource::format_instant;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::reports::{AccountReport, Amount, Count, InvoiceReport, PatientReport, Reports, Totals};

/// The canonical URL of each report area's measure: this prefix and the area.
pub const MEASURE_PREFIX: &str = "urn:ferrum:Measure:";
/// The code system of the group and stratifier codes.
pub const CODE_SYSTEM: &str = "urn:ferrum:CodeSystem:analytics";
const POPULATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/measure-population";
const DATA_ABSENT_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
const CURRENCY_SYSTEM: &str = "urn:iso:std:iso:4217";

/// The report areas, in the order [`measure_reports`] returns them.
pub const AREAS: [&str; 3] = ["patients", "accounts", "invoices"];

/// The three MeasureReports (patients, accounts, invoices), written at `date`.
pub fn measure_reports(reports: &Reports, date: DateTime<Utc>) -> Vec<Value> {
    let groups = [
        patient_groups(&reports.patients),
        account_groups(&reports.accounts),
        invoice_groups(&reports.invoices),
    ];
    AREAS
        .iter()
        .zip(groups)
        .map(|(area, groups)| {
            json!({
                "resourceType": "MeasureReport",
                "status": "complete",
                "type": "summary",
                "measure": format!("{MEASURE_PREFIX}{area}"),
                "date": format_instant(date),
                "period": {
                    "start": reports.as_of.to_string(),
                    "end": reports.as_of.to_string(),
                },
                "group": groups,
            })
        })
        .collect()
}

/// A `collection` Bundle of the [`measure_reports`], each entry named by a fresh
/// `urn:uuid:`.
pub fn bundle(reports: &Reports, date: DateTime<Utc>) -> Value {
    let entries: Vec<Value> = measure_reports(reports, date)
        .into_iter()
        .map(|resource| {
            json!({
                "fullUrl": format!("urn:uuid:{}", Uuid::new_v4()),
                "resource": resource,
            })
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": format_instant(date),
        "entry": entries,
    })
}

fn patient_groups(report: &PatientReport) -> Vec<Value> {
    let keyed = |counts: &[Count]| -> Vec<Value> {
        counts
            .iter()
            .map(|c| stratum(c.key.as_deref(), c.count, None))
            .collect()
    };
    let states = report
        .by_state
        .iter()
        .map(|s| {
            components(
                &[
                    ("country", s.country.as_deref()),
                    ("state", s.state.as_deref()),
                ],
                s.count,
                None,
            )
        })
        .collect();
    let periods = |counts: &[crate::reports::PeriodCount]| -> Vec<Value> {
        counts
            .iter()
            .map(|c| stratum(Some(&c.period), c.count, None))
            .collect()
    };
    vec![group(
        "patients",
        "Current patients",
        Some(report.total),
        vec![
            stratifier("gender", "By gender", keyed(&report.by_gender)),
            stratifier(
                "age-band",
                "By age band at the report date",
                keyed(&report.by_age_band),
            ),
            stratifier("country", "By country", keyed(&report.by_country)),
            stratifier("state", "By country and state", states),
            stratifier(
                "active",
                "Active or inactive",
                vec![
                    stratum(Some("active"), report.active, None),
                    stratum(Some("inactive"), report.inactive, None),
                ],
            ),
            stratifier(
                "deceased",
                "Deceased or living",
                vec![
                    stratum(Some("deceased"), report.deceased, None),
                    stratum(Some("living"), report.living, None),
                ],
            ),
            stratifier(
                "registrations-per-day",
                "Registrations per day (UTC)",
                periods(&report.registrations_per_day),
            ),
            stratifier(
                "registrations-per-month",
                "Registrations per month (UTC)",
                periods(&report.registrations_per_month),
            ),
        ],
    )]
}

fn account_groups(report: &AccountReport) -> Vec<Value> {
    let keyed = |counts: &[Count]| -> Vec<Value> {
        counts
            .iter()
            .map(|c| stratum(c.key.as_deref(), c.count, None))
            .collect()
    };
    let patients: i64 = report.per_patient.iter().map(|p| p.patients).sum();
    let per_patient = report
        .per_patient
        .iter()
        .map(|p| stratum(Some(&p.accounts.to_string()), p.patients, None))
        .collect();
    vec![
        group(
            "accounts",
            "Current accounts",
            Some(report.total),
            vec![
                stratifier("status", "By status", keyed(&report.by_status)),
                stratifier("type", "By type", keyed(&report.by_type)),
            ],
        ),
        group(
            "accounts-without-patient",
            "Accounts without a Patient subject",
            Some(report.without_patient),
            Vec::new(),
        ),
        group(
            "accounts-per-patient",
            "Current patients by their number of accounts",
            Some(patients),
            vec![stratifier("accounts", "Number of accounts", per_patient)],
        ),
    ]
}

/// What a group of invoice sums measures.
#[derive(Debug, Clone, Copy)]
enum Sum {
    Net,
    Gross,
}

fn invoice_groups(report: &InvoiceReport) -> Vec<Value> {
    let sums = |sum: Sum| {
        let score = |totals: &Totals| {
            let amount = match sum {
                Sum::Net => &totals.total_net,
                Sum::Gross => &totals.total_gross,
            };
            money(amount, totals.currency.as_deref())
        };
        let by = |key: &str, rows: &[Totals], value: fn(&Totals) -> Option<&str>| -> Vec<Value> {
            rows.iter()
                .map(|row| {
                    components(
                        &[(key, value(row)), ("currency", row.currency.as_deref())],
                        row.invoices,
                        Some(score(row)),
                    )
                })
                .collect()
        };
        let by_currency = report
            .by_currency
            .iter()
            .map(|row| stratum(row.currency.as_deref(), row.invoices, Some(score(row))))
            .collect();
        vec![
            stratifier2(
                ("status", "By status"),
                ("currency", "By currency"),
                by("status", &report.by_status, |t| t.status.as_deref()),
            ),
            stratifier2(
                ("month", "By month of the invoice date"),
                ("currency", "By currency"),
                by("month", &report.by_month, |t| t.month.as_deref()),
            ),
            stratifier("currency", "By currency", by_currency),
        ]
    };
    let billed = report
        .billed_per_patient
        .iter()
        .map(|row| {
            let patient = format!("Patient/{}", row.patient_id);
            components(
                &[
                    ("patient", Some(&patient)),
                    ("currency", row.currency.as_deref()),
                ],
                row.invoices,
                Some(money(&row.billed, row.currency.as_deref())),
            )
        })
        .collect();
    let outstanding = report
        .outstanding_per_account
        .iter()
        .map(|row| {
            let account = format!("Account/{}", row.account_id);
            components(
                &[
                    ("account", Some(&account)),
                    ("currency", row.currency.as_deref()),
                ],
                row.invoices,
                Some(money(&row.outstanding, row.currency.as_deref())),
            )
        })
        .collect();
    vec![
        group(
            "invoice-total-net",
            "Current invoices: count and sum of totalNet",
            Some(report.total),
            sums(Sum::Net),
        ),
        group(
            "invoice-total-gross",
            "Current invoices: count and sum of totalGross",
            Some(report.total),
            sums(Sum::Gross),
        ),
        group(
            "billed-per-patient",
            "The patients billed most: totalGross of issued and balanced invoices",
            None,
            vec![stratifier2(
                ("patient", "By patient"),
                ("currency", "By currency"),
                billed,
            )],
        ),
        group(
            "outstanding-per-account",
            "The accounts owing most: totalGross of issued invoices",
            None,
            vec![stratifier2(
                ("account", "By account"),
                ("currency", "By currency"),
                outstanding,
            )],
        ),
    ]
}

/// A CodeableConcept of [`CODE_SYSTEM`].
fn concept(code: &str, display: &str) -> Value {
    json!({
        "coding": [{"system": CODE_SYSTEM, "code": code, "display": display}],
        "text": display,
    })
}

/// A stratum's value: the recorded text, or data-absent-reason `unknown`.
fn stratum_value(key: Option<&str>) -> Value {
    match key {
        Some(key) => json!({"text": key}),
        None => json!({
            "coding": [{"system": DATA_ABSENT_SYSTEM, "code": "unknown", "display": "Unknown"}],
            "text": "not recorded",
        }),
    }
}

fn population(count: i64) -> Value {
    json!([{
        "code": {"coding": [{
            "system": POPULATION_SYSTEM,
            "code": "initial-population",
            "display": "Initial Population",
        }]},
        "count": count,
    }])
}

fn money(amount: &Amount, currency: Option<&str>) -> Value {
    let mut quantity = json!({"value": amount});
    if let Some(currency) = currency {
        quantity["unit"] = json!(currency);
        quantity["system"] = json!(CURRENCY_SYSTEM);
        quantity["code"] = json!(currency);
    }
    quantity
}

/// A stratum of a one-element breakdown.
fn stratum(key: Option<&str>, count: i64, score: Option<Value>) -> Value {
    let mut stratum = json!({"value": stratum_value(key), "population": population(count)});
    if let Some(score) = score {
        stratum["measureScore"] = score;
    }
    stratum
}

/// A stratum of a breakdown by several elements: `(code, value)` each.
fn components(parts: &[(&str, Option<&str>)], count: i64, score: Option<Value>) -> Value {
    let component: Vec<Value> = parts
        .iter()
        .map(|(code, key)| json!({"code": concept(code, code), "value": stratum_value(*key)}))
        .collect();
    let mut stratum = json!({"component": component, "population": population(count)});
    if let Some(score) = score {
        stratum["measureScore"] = score;
    }
    stratum
}

/// A stratifier by one element; no `stratum` member when there is none (ele-1).
fn stratifier(code: &str, display: &str, strata: Vec<Value>) -> Value {
    let mut stratifier = json!({"code": [concept(code, display)]});
    if !strata.is_empty() {
        stratifier["stratum"] = Value::Array(strata);
    }
    stratifier
}

/// A stratifier by two elements (its strata have components).
fn stratifier2(first: (&str, &str), second: (&str, &str), strata: Vec<Value>) -> Value {
    let mut stratifier = json!({"code": [concept(first.0, first.1), concept(second.0, second.1)]});
    if !strata.is_empty() {
        stratifier["stratum"] = Value::Array(strata);
    }
    stratifier
}

fn group(code: &str, display: &str, count: Option<i64>, stratifiers: Vec<Value>) -> Value {
    let mut group = json!({"code": concept(code, display)});
    if let Some(count) = count {
        group["population"] = population(count);
    }
    if !stratifiers.is_empty() {
        group["stratifier"] = Value::Array(stratifiers);
    }
    group
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use chrono::NaiveDate;
    use fhir_core::validation;

    use super::*;
    use crate::reports::{
        AccountOutstanding, AccountsPerPatient, PatientBilled, PeriodCount, StateCount,
    };

    fn count(key: Option<&str>, count: i64) -> Count {
        Count {
            key: key.map(str::to_owned),
            count,
        }
    }

    fn amount(text: &str) -> Amount {
        text.parse().unwrap()
    }

    fn totals(status: Option<&str>, month: Option<&str>, currency: Option<&str>) -> Totals {
        Totals {
            status: status.map(str::to_owned),
            month: month.map(str::to_owned),
            currency: currency.map(str::to_owned),
            invoices: 2,
            total_net: amount("150.10"),
            total_gross: amount("178.62"),
        }
    }

    /// Reports with every kind of row, unknown values and empty lists included.
    fn sample() -> Reports {
        Reports {
            as_of: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            patients: PatientReport {
                total: 3,
                active: 2,
                inactive: 1,
                deceased: 1,
                living: 2,
                by_gender: vec![count(Some("female"), 2), count(None, 1)],
                by_age_band: vec![count(Some("0-17"), 1), count(Some("65+"), 0)],
                by_country: vec![count(Some("DE"), 3)],
                by_state: vec![StateCount {
                    country: Some("DE".into()),
                    state: None,
                    count: 3,
                }],
                registrations_per_day: vec![PeriodCount {
                    period: "2025-12-31".into(),
                    count: 3,
                }],
                registrations_per_month: Vec::new(),
            },
            accounts: AccountReport {
                total: 1,
                without_patient: 0,
                by_status: vec![count(Some("active"), 1)],
                by_type: vec![count(None, 1)],
                per_patient: vec![
                    AccountsPerPatient {
                        accounts: 0,
                        patients: 2,
                    },
                    AccountsPerPatient {
                        accounts: 1,
                        patients: 1,
                    },
                ],
            },
            invoices: InvoiceReport {
                total: 2,
                by_status: vec![totals(Some("issued"), None, Some("EUR"))],
                by_month: vec![totals(None, None, None)],
                by_currency: vec![totals(None, None, Some("EUR"))],
                billed_per_patient: vec![PatientBilled {
                    patient_id: "p1".into(),
                    currency: Some("EUR".into()),
                    invoices: 2,
                    billed: amount("178.62"),
                }],
                outstanding_per_account: vec![AccountOutstanding {
                    account_id: "a1".into(),
                    currency: None,
                    invoices: 1,
                    outstanding: amount("0"),
                }],
            },
        }
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn group<'a>(report: &'a Value, code: &str) -> &'a Value {
        report["group"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["code"]["coding"][0]["code"] == code)
            .unwrap_or_else(|| panic!("no group {code}"))
    }

    fn stratifier<'a>(group: &'a Value, code: &str) -> &'a Value {
        group["stratifier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["code"][0]["coding"][0]["code"] == code)
            .unwrap_or_else(|| panic!("no stratifier {code}"))
    }

    #[test]
    fn each_area_is_a_summary_measure_report() {
        let reports = measure_reports(&sample(), at());
        assert_eq!(reports.len(), 3);
        for (report, area) in reports.iter().zip(AREAS) {
            assert_eq!(report["resourceType"], "MeasureReport");
            assert_eq!(report["type"], "summary");
            assert_eq!(report["status"], "complete");
            assert_eq!(report["measure"], format!("urn:ferrum:Measure:{area}"));
            assert_eq!(report["period"]["start"], "2026-01-01");
        }
        let patients = group(&reports[0], "patients");
        assert_eq!(patients["population"][0]["count"], 3);
        let gender = stratifier(patients, "gender");
        assert_eq!(gender["stratum"][0]["value"]["text"], "female");
        assert_eq!(gender["stratum"][0]["population"][0]["count"], 2);
        assert_eq!(
            gender["stratum"][1]["value"]["coding"][0]["code"],
            "unknown"
        );
        let months = stratifier(patients, "registrations-per-month");
        assert!(months.get("stratum").is_none(), "no empty arrays");
    }

    #[test]
    fn amounts_keep_their_digits_and_currency() {
        let reports = measure_reports(&sample(), at());
        let gross = group(&reports[2], "invoice-total-gross");
        let by_status = stratifier(gross, "status");
        let stratum = &by_status["stratum"][0];
        assert_eq!(stratum["component"][0]["value"]["text"], "issued");
        assert_eq!(stratum["component"][1]["value"]["text"], "EUR");
        assert_eq!(stratum["measureScore"]["code"], "EUR");
        let text = serde_json::to_string(&stratum["measureScore"]).unwrap();
        assert!(text.contains(r#""value":178.62"#), "{text}");
        let net = group(&reports[2], "invoice-total-net");
        let text = serde_json::to_string(&stratifier(net, "status")["stratum"][0]).unwrap();
        assert!(text.contains(r#""value":150.10"#), "{text}");
        let billed = group(&reports[2], "billed-per-patient");
        assert_eq!(
            billed["stratifier"][0]["stratum"][0]["component"][0]["value"]["text"],
            "Patient/p1"
        );
    }

    /// Every stratum has a value or components, never both (mrp-2), and nothing is empty.
    fn check_shape(value: &Value, path: &str, problems: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if map.is_empty() {
                    problems.push(format!("{path}: empty object"));
                }
                if let Some(Value::Array(strata)) = map.get("stratum") {
                    for (i, stratum) in strata.iter().enumerate() {
                        let value = stratum.get("value").is_some();
                        let component = stratum.get("component").is_some();
                        if value == component {
                            problems.push(format!("{path}.stratum[{i}]: mrp-2"));
                        }
                    }
                }
                for (key, item) in map {
                    check_shape(item, &format!("{path}.{key}"), problems);
                }
            }
            Value::Array(items) => {
                if items.is_empty() {
                    problems.push(format!("{path}: empty array"));
                }
                for (i, item) in items.iter().enumerate() {
                    check_shape(item, &format!("{path}[{i}]"), problems);
                }
            }
            Value::String(text) if text.trim().is_empty() => {
                problems.push(format!("{path}: empty string"));
            }
            _ => {}
        }
    }

    #[test]
    fn the_bundle_and_its_measure_reports_are_valid_r4() {
        let bundle = bundle(&sample(), at());
        let mut problems = Vec::new();
        check_shape(&bundle, "Bundle", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let text = bundle.to_string();
        validation::parse_strict(&text, "Bundle").unwrap();
        let supported = validation::supported_resource_types();
        for entry in bundle["entry"].as_array().unwrap() {
            let report = &entry["resource"];
            validation::parse_strict(&report.to_string(), "MeasureReport").unwrap();
            if supported.contains(&"MeasureReport") {
                assert_eq!(validation::validate(report), Vec::new());
            }
        }
    }
}
