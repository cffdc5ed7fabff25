//! Bulk Data `$export` end to end (Bulk Data Access IG 2.0,
//! http://hl7.org/fhir/uv/bulkdata/export.html): the real
//! server against a fresh database, driven over HTTP as a bulk client would.
//!
//! - kick-off by GET and POST (`Parameters`) at system, Patient and Group level; what it
//!   refuses (no `Prefer: respond-async`, other output formats, unknown parameters unless
//!   `handling=lenient`, which reports them in the manifest's `error`, unknown `_type`,
//!   malformed `_since`, types outside the patient compartment, bad `_typeFilter`, unknown
//!   Group);
//! - status: 202 with `X-Progress` and `Retry-After` in progress, 429 when polled sooner than
//!   `FHIR_EXPORT_POLL_INTERVAL_MS`, 200 with the manifest and `Expires`;
//! - files: one type per file, NDJSON, latest versions only, counts, split at
//!   `FHIR_EXPORT_MAX_FILE_BYTES`, the union equal to what the test loaded;
//! - `_type`, `_since` (an instant between two batches of writes), incremental export from
//!   `transactionTime` (also with writes running during the first export), `_typeFilter`;
//! - the Patient compartment (Patient, and Accounts/Invoices that refer to a Patient) and a
//!   Group's members' compartments, with the Organizations and Practitioners they refer to
//!   (each once, not deleted ones, narrowed by `_type`, `_typeFilter`, `_since` and the
//!   token's grant);
//! - DELETE, too many exports (`FHIR_EXPORT_MAX_JOBS`), expiry
//!   (`FHIR_EXPORT_RETENTION_SECONDS`), a job that cannot write its files, a server restart
//!   right after a kick-off;
//! - with the real Keycloak (skipped without `FHIR_AUTH_ISSUER`): backend tokens, 401 and
//!   404 for the status and files without a token or with another client's, a patient
//!   token's export confined to its compartment, 403 for a `_type` the token cannot read.
//!
//! Every expected set is worked out here from the resources the test loads.

#![allow(clippy::unwrap_used, reason = "tests")]

mod export_support;
mod smart_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chrono::{FixedOffset, SecondsFormat};
use export_support::{
    Client, ExportServer, NDJSON, account, assert_accepted, check_in_progress, check_manifest,
    encode, group, invoice, job_id, key, keys, load, organization, patient, practitioner, read_all,
    retry_after, start, start_with,
};
use ferrum_tests::{FHIR_JSON, TestServer, assert_outcome, json, parse_http_date, parse_instant};
use serde_json::Value;
use smart_support::{Keycloak, assert_401, assert_403, demo_resources, keycloak};

// --- the data ------------------------------------------------------------------------------

/// Two Organizations, a Practitioner, five Patients, Accounts and Invoices that refer to
/// Patients, Organizations, a Group or nothing, and two Groups.
fn population() -> Vec<Value> {
    vec![
        organization("o1"),
        organization("o2"),
        practitioner("dr1"),
        patient("p1", "Ames", "female", "1940-01-01"),
        patient("p2", "Baker", "male", "1980-02-02"),
        patient("p3", "Cole", "female", "1990-03-03"),
        patient("p4", "Dunn", "male", "1945-04-04"),
        patient("p5", "Ernst", "female", "2000-05-05"),
        account("a1", &["Patient/p1"]),
        account("a2", &["Patient/p2"]),
        account("a3", &["Organization/o1"]),
        account("a4", &[]),
        account("a5", &["Organization/o2", "Patient/p4"]),
        invoice("i1", Some("Patient/p1"), None),
        invoice("i2", None, Some("Patient/p2")),
        invoice("i3", Some("Group/g1"), Some("Organization/o1")),
        invoice("i4", Some("Patient/p3"), Some("Patient/p3")),
        invoice("i5", None, Some("Organization/o2")),
        group("g1", &["Patient/p1", "Patient/p2", "Practitioner/dr1"]),
        group("g2", &["Patient/p3", "Patient/p4"]),
    ]
}

fn population_keys() -> BTreeSet<String> {
    population().iter().map(key).collect()
}

const PATIENTS: [&str; 5] = [
    "Patient/p1",
    "Patient/p2",
    "Patient/p3",
    "Patient/p4",
    "Patient/p5",
];

/// The Patient-level export of [`population`]: every Patient, the Accounts with a Patient
/// subject, the Invoices whose subject or recipient is a Patient, and o2, a5's other subject.
fn patient_level() -> BTreeSet<String> {
    let mut ids = keys(&PATIENTS);
    ids.extend(keys(&[
        "Account/a1",
        "Account/a2",
        "Account/a5",
        "Invoice/i1",
        "Invoice/i2",
        "Invoice/i4",
        "Organization/o2",
    ]));
    ids
}

/// Group g1's export: members p1 and p2 (dr1 is no Patient), their Accounts and Invoices
/// (not i3, whose subject is the Group itself).
fn g1_level() -> BTreeSet<String> {
    keys(&[
        "Patient/p1",
        "Patient/p2",
        "Account/a1",
        "Account/a2",
        "Invoice/i1",
        "Invoice/i2",
    ])
}

/// Group g2's export: members p3 and p4, a5 and i4, and o2 (a5's other subject).
fn g2_level() -> BTreeSet<String> {
    keys(&[
        "Patient/p3",
        "Patient/p4",
        "Account/a5",
        "Invoice/i4",
        "Organization/o2",
    ])
}

/// The members of `ids` of the `types`.
fn of_types(ids: &BTreeSet<String>, types: &[&str]) -> BTreeSet<String> {
    ids.iter()
        .filter(|k| types.iter().any(|t| k.starts_with(&format!("{t}/"))))
        .cloned()
        .collect()
}

/// `n` Patients `bulk-0000`... with a bit of text each.
fn many_patients(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let gender = if i % 2 == 0 { "female" } else { "male" };
            let mut p = patient(
                &format!("bulk-{i:04}"),
                &format!("Family{i}"),
                gender,
                "1970-01-01",
            );
            p["address"] = json!([{"line": [format!("{i} Long Street")], "city": "Springfield",
                "postalCode": format!("{:05}", i), "country": "US"}]);
            p
        })
        .collect()
}

/// Asserts that each exported resource is the server's current version of it.
async fn assert_current(server: &TestServer, export: &export_support::Export, what: &str) {
    let current = read_all(server, &export.ids()).await;
    for resource in export.resources() {
        let k = key(resource);
        assert_eq!(
            resource, &current[&k],
            "{what}: the exported {k} is not its current version"
        );
    }
}

// --- kick-off --------------------------------------------------------------------------------

#[tokio::test]
async fn kick_off_by_get_and_post_at_each_level() {
    let server = start(&[]).await;
    load(&server, &population()).await;
    let c = Client::anonymous(&server);
    for (path, expected) in [
        ("$export", population_keys()),
        ("Patient/$export", patient_level()),
        ("Group/g1/$export", g1_level()),
        ("Group/g2/$export", g2_level()),
    ] {
        let export = c.export(path).await;
        assert_eq!(export.ids(), expected, "GET {path}");
        assert_current(&server, &export, path).await;

        // The same by POST with a Parameters body (valueString parameters).
        let resp = c
            .kick_post(
                path,
                &[
                    ("_outputFormat", json!({"valueString": NDJSON})),
                    ("_type", json!({"valueString": "Patient,Invoice"})),
                ],
            )
            .await;
        let url = c.accepted(&resp, &format!("POST {path}"));
        let manifest = c.complete(&url).await;
        assert_eq!(
            manifest["request"],
            server.url(path),
            "POST {path}: request is the kick-off URL"
        );
        let export = c.fetch(&manifest).await;
        assert_eq!(
            export.ids(),
            of_types(&expected, &["Patient", "Invoice"]),
            "POST {path} with _type=Patient,Invoice"
        );
    }
}

#[tokio::test]
async fn kick_off_refuses_what_it_cannot_do() {
    let server = start(&[]).await;
    load(&server, &population()).await;
    let gone = server.delete("Group/g2").await;
    assert_eq!(gone.status, 204, "{}", gone.describe());
    let c = Client::anonymous(&server);

    // No Prefer: respond-async (none at all, or another preference).
    for (path, prefer) in [
        ("$export", None),
        ("Patient/$export", None),
        ("Group/g1/$export", None),
        ("$export", Some("return=representation")),
        ("$export", Some("handling=lenient")),
    ] {
        let headers: Vec<(&str, &str)> = prefer.map(|p| ("prefer", p)).into_iter().collect();
        let resp = c.get_with(path, &headers).await;
        assert_outcome(&resp, 400);
        assert!(
            resp.header("content-location").is_none(),
            "GET {path} with Prefer {prefer:?}: {}",
            resp.describe()
        );
    }
    let resp = server
        .send(
            server
                .request(reqwest::Method::POST, "$export")
                .header("content-type", FHIR_JSON)
                .body(json!({"resourceType": "Parameters"}).to_string()),
        )
        .await;
    assert_outcome(&resp, 400);

    let filter = |f: &str| format!("_typeFilter={}", encode(f));
    let refused: Vec<(String, u16)> = vec![
        // Output formats other than NDJSON.
        (
            "$export?_outputFormat=application%2Ffhir%2Bjson".into(),
            400,
        ),
        ("$export?_outputFormat=application%2Fjson".into(), 400),
        ("$export?_outputFormat=text%2Fcsv".into(), 400),
        (
            "Patient/$export?_outputFormat=application%2Ffhir%2Bxml".into(),
            400,
        ),
        // Parameters that $export does not have.
        ("$export?foo=bar".into(), 400),
        ("$export?_count=10".into(), 400),
        ("Group/g1/$export?unknown=1".into(), 400),
        // Types the server does not serve.
        ("$export?_type=Foo".into(), 400),
        ("$export?_type=Patient,Foo".into(), 400),
        ("$export?_type=Observation".into(), 400),
        // _since that is no instant.
        ("$export?_since=yesterday".into(), 400),
        ("$export?_since=2024-13-45T00:00:00Z".into(), 400),
        ("Patient/$export?_since=not-a-date".into(), 400),
        // Types outside the patient compartment (and not referred to) at Patient and Group
        // level.
        ("Patient/$export?_type=Group".into(), 400),
        ("Patient/$export?_type=Patient,Group".into(), 400),
        ("Group/g1/$export?_type=Group".into(), 400),
        // _typeFilter: not Type?search, an unknown parameter, a type not served or not
        // exported, includes, a malformed value.
        (format!("$export?{}", filter("Patient")), 400),
        (format!("$export?{}", filter("Patient?nonsense=1")), 400),
        (
            format!("$export?{}", filter("Observation?status=final")),
            400,
        ),
        (
            format!("$export?_type=Patient&{}", filter("Invoice?status=issued")),
            400,
        ),
        (format!("Patient/$export?{}", filter("Group?name=x")), 400),
        (
            format!(
                "Patient/$export?_type=Patient&{}",
                filter("Organization?name=x")
            ),
            400,
        ),
        (
            format!(
                "$export?{}",
                filter("Patient?_include=Patient:organization")
            ),
            400,
        ),
        (
            format!("$export?{}", filter("Patient?birthdate=not-a-date")),
            400,
        ),
        // Groups that do not exist (never, deleted, another type's id).
        ("Group/unknown/$export".into(), 404),
        ("Group/g2/$export".into(), 404),
        ("Group/p1/$export".into(), 404),
    ];
    for (path, status) in &refused {
        let resp = c.kick(path).await;
        let issue = assert_outcome(&resp, *status);
        assert!(
            resp.header("content-location").is_none(),
            "GET {path}: {}",
            resp.describe()
        );
        assert!(
            issue["diagnostics"].is_string() || issue["details"].is_object(),
            "GET {path}: the OperationOutcome says why: {}",
            resp.describe()
        );
    }
    // The same refusals by POST.
    for parameters in [
        vec![(
            "_outputFormat",
            json!({"valueString": "application/fhir+json"}),
        )],
        vec![("foo", json!({"valueString": "bar"}))],
        vec![("_type", json!({"valueString": "Foo"}))],
        vec![("_since", json!({"valueString": "yesterday"}))],
        vec![("_typeFilter", json!({"valueString": "Patient?nonsense=1"}))],
    ] {
        let resp = c.kick_post("$export", &parameters).await;
        assert_eq!(resp.status, 400, "POST {parameters:?}: {}", resp.describe());
        assert_outcome(&resp, 400);
    }
    for body in [
        json!({"resourceType": "Patient"}).to_string(),
        "not json".to_owned(),
    ] {
        let resp = c.kick_post_body("$export", &body).await;
        assert_outcome(&resp, 400);
    }

    // Every NDJSON spelling is accepted, by GET and by POST.
    for format in ["application/fhir+ndjson", "application/ndjson", "ndjson"] {
        let path = format!("$export?_type=Patient&_outputFormat={}", encode(format));
        let export = c.export(&path).await;
        assert_eq!(export.ids(), keys(&PATIENTS), "{path}");
        let resp = c
            .kick_post(
                "Patient/$export",
                &[("_outputFormat", json!({"valueString": format}))],
            )
            .await;
        let url = c.accepted(&resp, &format!("POST _outputFormat {format}"));
        let export = c.fetch(&c.complete(&url).await).await;
        assert_eq!(export.ids(), patient_level(), "POST _outputFormat {format}");
    }
}

#[tokio::test]
async fn lenient_handling_reports_ignored_parameters_in_error() {
    let server = start(&[]).await;
    load(&server, &population()).await;
    let c = Client::anonymous(&server);
    for headers in [
        vec![("prefer", "respond-async, handling=lenient")],
        vec![("prefer", "respond-async"), ("prefer", "handling=lenient")],
    ] {
        let resp = c
            .get_with("$export?_type=Patient&foo=bar&_elements=id", &headers)
            .await;
        let url = assert_accepted(&server, &resp, &format!("lenient {headers:?}"));
        let manifest = c.complete(&url).await;
        let export = c.fetch(&manifest).await;
        assert_eq!(
            export.ids(),
            keys(&PATIENTS),
            "{headers:?}: the output as if without foo"
        );
        let errors = manifest["error"].as_array().unwrap();
        assert!(
            !errors.is_empty(),
            "{headers:?}: the ignored parameters are reported in error: {manifest}"
        );
        let mut diagnostics = String::new();
        for entry in errors {
            assert_eq!(entry["type"], "OperationOutcome", "{manifest}");
            let file = c.fetch_file(entry).await;
            assert!(file.count >= 1, "{manifest}");
            for outcome in &file.lines {
                let issues = outcome["issue"].as_array().unwrap();
                assert!(!issues.is_empty(), "{outcome}");
                for issue in issues {
                    assert!(
                        ferrum_tests::ISSUE_TYPES.contains(&issue["code"].as_str().unwrap()),
                        "{issue}"
                    );
                    diagnostics.push_str(&issue.to_string());
                }
            }
        }
        assert!(
            diagnostics.contains("foo") && diagnostics.contains("_elements"),
            "{headers:?}: the OperationOutcomes name the ignored parameters: {diagnostics}"
        );
    }
    // With nothing ignored, error is empty.
    let url = c.start("$export?_type=Patient").await;
    let manifest = c.complete(&url).await;
    assert_eq!(manifest["error"], json!([]), "{manifest}");
}

// --- status ----------------------------------------------------------------------------------

#[tokio::test]
async fn status_in_progress_has_progress_and_retry_after() {
    let server = start(&[("FHIR_EXPORT_POLL_INTERVAL_MS", "50")]).await;
    load(&server, &many_patients(300)).await;
    let c = Client::anonymous(&server);
    // The runner claims a job within about a second: the first poll right after the kick-off
    // nearly always finds it in progress; a few tries make that certain enough.
    let mut in_progress = 0;
    for _ in 0..5 {
        let url = c.start("$export").await;
        let first = c.status(&url).await;
        match first.status {
            202 => {
                check_in_progress(&first, &url);
                in_progress += 1;
            }
            200 => {}
            _ => panic!("{url}: {}", first.describe()),
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        let export = c.fetch(&c.complete(&url).await).await;
        assert_eq!(export.ids().len(), 300);
        if in_progress >= 2 {
            break;
        }
    }
    assert!(
        in_progress > 0,
        "no status request right after a kick-off answered 202"
    );
}

#[tokio::test]
async fn polling_sooner_than_the_interval_is_429() {
    let server = start(&[("FHIR_EXPORT_POLL_INTERVAL_MS", "1000")]).await;
    load(&server, &population()).await;
    let c = Client::anonymous(&server);
    let url = c.start("$export").await;
    let first = c.status(&url).await;
    match first.status {
        202 => {
            check_in_progress(&first, &url);
            assert!(retry_after(&first, &url) >= 1, "{}", first.describe());
        }
        200 => {}
        _ => panic!("{}", first.describe()),
    }
    let second = c.status(&url).await;
    let issue = assert_outcome(&second, 429);
    assert_eq!(issue["code"], "throttled", "{}", second.describe());
    assert!(retry_after(&second, &url) >= 1, "{}", second.describe());
    // After the interval, the status answers again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = c.status(&url).await;
    assert!(
        matches!(third.status, 200 | 202),
        "after the interval: {}",
        third.describe()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let manifest = c.complete(&url).await;
    assert_eq!(c.fetch(&manifest).await.ids(), population_keys());
}

// --- the manifest and the files --------------------------------------------------------------

#[tokio::test]
async fn a_system_export_is_the_latest_version_of_everything_loaded() {
    let server = start(&[]).await;
    let loaded = load(&server, &population()).await;
    // p2 updated twice (version 3), a1 once; p5 and i5 deleted.
    for family in ["Baker-2", "Baker-3"] {
        server
            .upsert(&patient("p2", family, "male", "1980-02-02"))
            .await;
    }
    let mut a1 = loaded["Account/a1"].clone();
    a1["name"] = json!("Account a1, renamed");
    server.upsert(&a1).await;
    for path in ["Patient/p5", "Invoice/i5"] {
        let resp = server.delete(path).await;
        assert_eq!(resp.status, 204, "DELETE {path}: {}", resp.describe());
    }
    let mut expected = population_keys();
    expected.remove("Patient/p5");
    expected.remove("Invoice/i5");

    let c = Client::anonymous(&server);
    let url = c.start("$export").await;
    let done = c.wait(&url).await;
    let manifest = check_manifest(&server, &done, false, &url);
    assert_eq!(manifest["request"], server.url("$export"));
    assert_eq!(manifest["requiresAccessToken"], false);
    assert_eq!(manifest["error"], json!([]), "{manifest}");
    // Kept a day by default.
    let expires = parse_http_date(done.header("expires").unwrap());
    assert!(
        expires > SystemTime::now() + Duration::from_secs(23 * 3600),
        "Expires {:?}",
        done.header("expires")
    );
    let export = c.fetch(&manifest).await;
    assert_eq!(export.ids(), expected);
    assert_eq!(
        export.types(),
        keys(&[
            "Patient",
            "Account",
            "Invoice",
            "Organization",
            "Practitioner",
            "Group"
        ])
    );
    let total: u64 = export.files.iter().map(|f| f.count).sum();
    assert_eq!(total as usize, expected.len());
    assert_current(&server, &export, "$export").await;
    let p2 = export.get("Patient/p2").unwrap();
    assert_eq!(p2["meta"]["versionId"], "3", "{p2}");
    assert_eq!(p2["name"][0]["family"], "Baker-3", "{p2}");
    assert_eq!(
        export.get("Account/a1").unwrap()["name"],
        "Account a1, renamed"
    );
    // The snapshot holds every write before it: transactionTime is not before any.
    let tt = parse_instant(&export.transaction_time());
    for resource in export.resources() {
        let updated = parse_instant(resource["meta"]["lastUpdated"].as_str().unwrap());
        assert!(
            updated <= tt,
            "{} lastUpdated {updated} after transactionTime {tt}",
            key(resource)
        );
    }
}

#[tokio::test]
async fn files_are_split_at_the_size_limit() {
    let server = start(&[("FHIR_EXPORT_MAX_FILE_BYTES", "2000")]).await;
    let patients = many_patients(40);
    load(&server, &patients).await;
    load(&server, &[organization("o1")]).await;
    let c = Client::anonymous(&server);
    let export = c.export("$export").await;
    let patient_files: Vec<_> = export
        .files
        .iter()
        .filter(|f| f.rtype == "Patient")
        .collect();
    let patient_bytes: usize = patient_files.iter().map(|f| f.bytes).sum();
    assert!(
        patient_files.len() >= patient_bytes / 2000 && patient_files.len() >= 3,
        "{} bytes of Patients in {} files of at most about 2000 bytes",
        patient_bytes,
        patient_files.len()
    );
    for file in &patient_files {
        let longest = file
            .lines
            .iter()
            .map(|l| l.to_string().len())
            .max()
            .unwrap();
        assert!(
            file.bytes <= 2000 + longest + 1,
            "{}: {} bytes, past the limit by more than a line",
            file.url,
            file.bytes
        );
        assert!(file.count >= 1);
    }
    let exported: BTreeSet<String> = patient_files
        .iter()
        .flat_map(|f| f.lines.iter().map(key))
        .collect();
    let expected: BTreeSet<String> = patients.iter().map(key).collect();
    assert_eq!(
        exported, expected,
        "the Patient files together hold every Patient"
    );
    assert_eq!(
        export.ids(),
        expected
            .into_iter()
            .chain(["Organization/o1".to_owned()])
            .collect()
    );
}

// --- _type, _since, _typeFilter ----------------------------------------------------------

#[tokio::test]
async fn type_limits_the_types() {
    let server = start(&[]).await;
    load(&server, &population()).await;
    let c = Client::anonymous(&server);
    let all = population_keys();
    for (path, types) in [
        ("$export?_type=Patient,Invoice", vec!["Patient", "Invoice"]),
        (
            "$export?_type=Patient&_type=Group",
            vec!["Patient", "Group"],
        ),
        ("$export?_type=Organization", vec!["Organization"]),
        ("Patient/$export?_type=Invoice", vec!["Invoice"]),
        ("Group/g1/$export?_type=Account", vec!["Account"]),
    ] {
        let export = c.export(path).await;
        let base = if path.starts_with("Patient/") {
            patient_level()
        } else if path.starts_with("Group/") {
            g1_level()
        } else {
            all.clone()
        };
        assert_eq!(export.ids(), of_types(&base, &types), "{path}");
        assert!(
            export.types().iter().all(|t| types.contains(&t.as_str())),
            "{path}: {:?}",
            export.types()
        );
    }
    // Repeated in a Parameters body.
    let resp = c
        .kick_post(
            "$export",
            &[
                ("_type", json!({"valueString": "Account"})),
                ("_type", json!({"valueString": "Practitioner"})),
            ],
        )
        .await;
    let url = c.accepted(&resp, "POST _type twice");
    let export = c.fetch(&c.complete(&url).await).await;
    assert_eq!(export.ids(), of_types(&all, &["Account", "Practitioner"]));
}

/// The greatest `meta.lastUpdated` of `resources`.
fn latest(resources: &BTreeMap<String, Value>) -> String {
    resources
        .values()
        .map(|r| r["meta"]["lastUpdated"].as_str().unwrap().to_owned())
        .max_by_key(|t| parse_instant(t))
        .unwrap()
}

#[tokio::test]
async fn since_exports_exactly_the_later_changes() {
    let server = start(&[]).await;
    let first = load(&server, &population()).await;
    let cut = latest(&first);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The second batch: a new Patient and Invoice, an update, a deletion.
    load(
        &server,
        &[
            patient("p6", "Fox", "female", "1999-09-09"),
            invoice("i6", Some("Patient/p6"), None),
        ],
    )
    .await;
    server
        .upsert(&patient("p1", "Ames-2", "female", "1940-01-01"))
        .await;
    assert_eq!(server.delete("Account/a4").await.status, 204);
    let later = keys(&["Patient/p6", "Invoice/i6", "Patient/p1"]);
    let c = Client::anonymous(&server);

    // _since = the last write of the first batch (excluded: later than, not at).
    let export = c.export(&format!("$export?_since={}", encode(&cut))).await;
    assert_eq!(export.ids(), later, "_since={cut}");
    assert_current(&server, &export, "_since").await;
    // The same instant in another zone.
    let shifted = parse_instant(&cut)
        .with_timezone(&FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(SecondsFormat::Micros, false);
    let export = c
        .export(&format!("$export?_since={}", encode(&shifted)))
        .await;
    assert_eq!(export.ids(), later, "_since={shifted}");
    // By POST, as valueInstant.
    let resp = c
        .kick_post("$export", &[("_since", json!({"valueInstant": cut}))])
        .await;
    let url = c.accepted(&resp, "POST _since");
    assert_eq!(c.fetch(&c.complete(&url).await).await.ids(), later);
    // At Patient level with _type.
    let export = c
        .export(&format!(
            "Patient/$export?_type=Invoice&_since={}",
            encode(&cut)
        ))
        .await;
    assert_eq!(export.ids(), keys(&["Invoice/i6"]));
    // In the future: nothing.
    let future =
        (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let url = c
        .start(&format!("$export?_since={}", encode(&future)))
        .await;
    let manifest = c.complete(&url).await;
    assert_eq!(
        manifest["output"],
        json!([]),
        "_since in the future: {manifest}"
    );

    // Incremental: transactionTime of a full export as the _since of the next one.
    let full = c.export("$export").await;
    let mut expected_full = population_keys();
    expected_full.remove("Account/a4");
    expected_full.extend(keys(&["Patient/p6", "Invoice/i6"]));
    assert_eq!(full.ids(), expected_full);
    let tt = full.transaction_time();
    server
        .upsert(&patient("p2", "Baker-2", "male", "1980-02-02"))
        .await;
    load(
        &server,
        &[organization("o3"), account("a6", &["Patient/p6"])],
    )
    .await;
    assert_eq!(server.delete("Invoice/i1").await.status, 204);
    let incremental = c.export(&format!("$export?_since={}", encode(&tt))).await;
    assert_eq!(
        incremental.ids(),
        keys(&["Patient/p2", "Organization/o3", "Account/a6"]),
        "_since=transactionTime {tt}"
    );
    assert_current(&server, &incremental, "incremental").await;
    let incremental = c
        .export(&format!("Patient/$export?_since={}", encode(&tt)))
        .await;
    assert_eq!(
        incremental.ids(),
        keys(&["Patient/p2", "Account/a6"]),
        "Patient level, _since=transactionTime {tt}"
    );
}

#[tokio::test]
async fn type_filter_selects_and_several_filters_unite() {
    let server = start(&[]).await;
    load(&server, &population()).await;
    let c = Client::anonymous(&server);
    let all = population_keys();
    let not_patients: BTreeSet<String> = all
        .iter()
        .filter(|k| !k.starts_with("Patient/"))
        .cloned()
        .collect();
    let with = |patients: &[&str]| -> BTreeSet<String> {
        not_patients.iter().cloned().chain(keys(patients)).collect()
    };
    let female = encode("Patient?gender=female");
    let old = encode("Patient?birthdate=lt1950-01-01");
    for (path, expected) in [
        (
            format!("$export?_typeFilter={female}"),
            with(&["Patient/p1", "Patient/p3", "Patient/p5"]),
        ),
        // Two filters for one type: a Patient matching either (p1 matches both, once).
        (
            format!("$export?_typeFilter={female},{old}"),
            with(&["Patient/p1", "Patient/p3", "Patient/p4", "Patient/p5"]),
        ),
        (
            format!("$export?_typeFilter={female}&_typeFilter={old}"),
            with(&["Patient/p1", "Patient/p3", "Patient/p4", "Patient/p5"]),
        ),
        // Two criteria in one filter: both.
        (
            format!(
                "$export?_typeFilter={}",
                encode("Patient?gender=female&birthdate=lt1950-01-01")
            ),
            with(&["Patient/p1"]),
        ),
        // Filters of two types.
        (
            format!(
                "$export?_type=Patient,Invoice&_typeFilter={female},{}",
                encode("Invoice?subject=Patient/p1")
            ),
            keys(&["Patient/p1", "Patient/p3", "Patient/p5", "Invoice/i1"]),
        ),
        // At Patient level.
        (
            format!(
                "Patient/$export?_typeFilter={}",
                encode("Invoice?recipient=Patient/p2")
            ),
            patient_level()
                .into_iter()
                .filter(|k| !k.starts_with("Invoice/") || k == "Invoice/i2")
                .collect(),
        ),
        // At Group level.
        (
            format!("Group/g1/$export?_typeFilter={female}"),
            keys(&[
                "Patient/p1",
                "Account/a1",
                "Account/a2",
                "Invoice/i1",
                "Invoice/i2",
            ]),
        ),
    ] {
        let export = c.export(&path).await;
        assert_eq!(export.ids(), expected, "{path}");
    }
    // By POST.
    let resp = c
        .kick_post(
            "$export",
            &[
                ("_type", json!({"valueString": "Patient"})),
                (
                    "_typeFilter",
                    json!({"valueString": "Patient?gender=female"}),
                ),
                (
                    "_typeFilter",
                    json!({"valueString": "Patient?birthdate=lt1950-01-01"}),
                ),
            ],
        )
        .await;
    let url = c.accepted(&resp, "POST _typeFilter");
    assert_eq!(
        c.fetch(&c.complete(&url).await).await.ids(),
        keys(&["Patient/p1", "Patient/p3", "Patient/p4", "Patient/p5"])
    );
}

// --- Patient and Group level -------------------------------------------------------------

#[tokio::test]
async fn patient_and_group_level_export_the_patient_compartments() {
    let server = start(&[]).await;
    load(&server, &population()).await;
    load(&server, &[group("g3", &["Practitioner/dr1"])]).await;
    let c = Client::anonymous(&server);

    let export = c.export("Patient/$export").await;
    assert_eq!(export.ids(), patient_level());
    assert!(
        export.types().is_subset(&keys(&[
            "Patient",
            "Account",
            "Invoice",
            "Organization",
            "Practitioner"
        ])),
        "{:?}",
        export.types()
    );
    assert_eq!(c.export("Group/g1/$export").await.ids(), g1_level());
    assert_eq!(c.export("Group/g2/$export").await.ids(), g2_level());
    let empty = c.export("Group/g3/$export").await;
    assert_eq!(empty.ids(), BTreeSet::new(), "a Group without Patients");

    // Membership is read when the export runs: p2 leaves g1, p5 joins it.
    load(
        &server,
        &[group(
            "g1",
            &["Patient/p1", "Patient/p5", "Practitioner/dr1"],
        )],
    )
    .await;
    assert_eq!(
        c.export("Group/g1/$export").await.ids(),
        keys(&["Patient/p1", "Patient/p5", "Account/a1", "Invoice/i1"])
    );
    // A new Invoice of p5 by recipient only, and a Patient of no Group.
    load(
        &server,
        &[
            invoice("i7", None, Some("Patient/p5")),
            patient("p9", "Nobody", "unknown", "1950-01-01"),
        ],
    )
    .await;
    assert_eq!(
        c.export("Group/g1/$export").await.ids(),
        keys(&[
            "Patient/p1",
            "Patient/p5",
            "Account/a1",
            "Invoice/i1",
            "Invoice/i7"
        ])
    );
    let mut expected = patient_level();
    expected.extend(keys(&["Invoice/i7", "Patient/p9"]));
    assert_eq!(c.export("Patient/$export").await.ids(), expected);
}

/// Organizations and Practitioners that Patients, Accounts and Invoices refer to, and some
/// that nothing in a compartment refers to.
fn referring_population() -> Vec<Value> {
    let mut pa = patient("pa", "Ames", "female", "1950-01-01");
    pa["managingOrganization"] = json!({"reference": "Organization/org-a"});
    pa["generalPractitioner"] = json!([{"reference": "Practitioner/dr-missing"}]);
    let mut pb = patient("pb", "Baker", "male", "1960-01-01");
    pb["managingOrganization"] = json!({"reference": "Organization/org-b"});
    pb["generalPractitioner"] = json!([
        {"reference": "Practitioner/dr-a"},
        {"reference": "Organization/org-d"}
    ]);
    let mut acc_a = account("acc-a", &["Patient/pa"]);
    acc_a["owner"] = json!({"reference": "Organization/org-b"});
    let mut acc_x = account("acc-x", &["Organization/org-x"]);
    acc_x["owner"] = json!({"reference": "Organization/org-x"});
    let mut inv_b = invoice("inv-b", Some("Patient/pb"), None);
    inv_b["issuer"] = json!({"reference": "Organization/org-c"});
    inv_b["participant"] = json!([{"actor": {"reference": "Practitioner/dr-b"}}]);
    let mut inv_x = invoice("inv-x", Some("Group/grp-a"), None);
    inv_x["participant"] = json!([{"actor": {"reference": "Practitioner/dr-x"}}]);
    vec![
        organization("org-a"),
        organization("org-b"),
        organization("org-c"),
        organization("org-d"),
        organization("org-x"),
        organization("org-y"),
        practitioner("dr-a"),
        practitioner("dr-b"),
        practitioner("dr-x"),
        pa,
        pb,
        patient("pc", "Cole", "female", "1970-01-01"),
        acc_a,
        acc_x,
        inv_b,
        inv_x,
        group("grp-a", &["Patient/pa"]),
        group("grp-b", &["Patient/pb"]),
    ]
}

#[tokio::test]
async fn patient_and_group_exports_add_the_organizations_and_practitioners_referred_to() {
    let server = start(&[]).await;
    load(&server, &referring_population()).await;
    // org-d is referred to by pb, but deleted.
    assert_eq!(server.delete("Organization/org-d").await.status, 204);
    let c = Client::anonymous(&server);
    let compartments = keys(&[
        "Patient/pa",
        "Patient/pb",
        "Patient/pc",
        "Account/acc-a",
        "Invoice/inv-b",
    ]);
    // Not org-d (deleted), dr-missing (never stored), org-x and dr-x (referred to from
    // outside the compartments), org-y (referred to by nothing); org-b (two referrers) once.
    let referred = keys(&[
        "Organization/org-a",
        "Organization/org-b",
        "Organization/org-c",
        "Practitioner/dr-a",
        "Practitioner/dr-b",
    ]);
    let everything: BTreeSet<String> = compartments.union(&referred).cloned().collect();
    let export = c.export("Patient/$export").await;
    assert_eq!(export.ids(), everything, "Patient/$export");
    assert_current(&server, &export, "Patient/$export").await;
    assert_eq!(
        export.types(),
        keys(&[
            "Patient",
            "Account",
            "Invoice",
            "Organization",
            "Practitioner"
        ])
    );
    for (path, expected) in [
        (
            "Group/grp-a/$export",
            keys(&[
                "Patient/pa",
                "Account/acc-a",
                "Organization/org-a",
                "Organization/org-b",
            ]),
        ),
        (
            "Group/grp-b/$export",
            keys(&[
                "Patient/pb",
                "Invoice/inv-b",
                "Organization/org-b",
                "Organization/org-c",
                "Practitioner/dr-a",
                "Practitioner/dr-b",
            ]),
        ),
        // _type picks the files; the references are those of every compartment type.
        (
            "Patient/$export?_type=Organization",
            of_types(&everything, &["Organization"]),
        ),
        (
            "Patient/$export?_type=Patient,Practitioner",
            of_types(&everything, &["Patient", "Practitioner"]),
        ),
        ("Group/grp-a/$export?_type=Practitioner", BTreeSet::new()),
        // The system level exports every one of them, as before.
        (
            "$export?_type=Organization,Practitioner",
            keys(&[
                "Organization/org-a",
                "Organization/org-b",
                "Organization/org-c",
                "Organization/org-x",
                "Organization/org-y",
                "Practitioner/dr-a",
                "Practitioner/dr-b",
                "Practitioner/dr-x",
            ]),
        ),
    ] {
        assert_eq!(c.export(path).await.ids(), expected, "{path}");
    }

    // _typeFilter: of the referred type narrows it; of a referring type narrows what is
    // referred to (no Invoice matches, so nothing inv-b refers to unless another does).
    let path = format!(
        "Patient/$export?_type=Organization&_typeFilter={}",
        encode("Organization?name=Org org-b")
    );
    assert_eq!(
        c.export(&path).await.ids(),
        keys(&["Organization/org-b"]),
        "{path}"
    );
    let path = format!(
        "Patient/$export?_typeFilter={}",
        encode("Invoice?status=draft")
    );
    assert_eq!(
        c.export(&path).await.ids(),
        keys(&[
            "Patient/pa",
            "Patient/pb",
            "Patient/pc",
            "Account/acc-a",
            "Organization/org-a",
            "Organization/org-b",
            "Practitioner/dr-a",
        ]),
        "{path}"
    );

    // _since: what changed, what a changed resource refers to, and what the compartments
    // refer to that changed; not what changed outside them.
    let cut = c.export("Patient/$export").await.transaction_time();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut org_c = organization("org-c");
    org_c["name"] = json!("Org org-c, renamed");
    let mut org_x = organization("org-x");
    org_x["name"] = json!("Org org-x, renamed");
    let mut pc = patient("pc", "Cole-2", "female", "1970-01-01");
    pc["managingOrganization"] = json!({"reference": "Organization/org-y"});
    load(&server, &[org_c, org_x, pc]).await;
    let path = format!("Patient/$export?_since={}", encode(&cut));
    let export = c.export(&path).await;
    assert_eq!(
        export.ids(),
        keys(&["Patient/pc", "Organization/org-y", "Organization/org-c"]),
        "{path}"
    );
    assert_current(&server, &export, &path).await;
    let path = format!("Group/grp-a/$export?_since={}", encode(&cut));
    assert_eq!(c.export(&path).await.ids(), BTreeSet::new(), "{path}");
}

// --- DELETE, limits, expiry, restart ------------------------------------------------------

/// Waits up to `seconds` for `path` to disappear; whether it did.
async fn gone_within(path: &std::path::Path, seconds: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

#[tokio::test]
async fn delete_cancels_an_export_and_forgets_it() {
    let server = start(&[("FHIR_EXPORT_MAX_JOBS", "1")]).await;
    load(&server, &population()).await;
    let c = Client::anonymous(&server);

    // A completed export: its files go with it.
    let url = c.start("$export").await;
    let manifest = c.complete(&url).await;
    let export = c.fetch(&manifest).await;
    assert_eq!(export.ids(), population_keys());
    let dir = server.dir.join(job_id(&url));
    assert!(dir.is_dir(), "the files are under {}", dir.display());
    let resp = c.cancel(&url).await;
    assert_eq!(resp.status, 202, "DELETE {url}: {}", resp.describe());
    assert_outcome(&c.status(&url).await, 404);
    for file in &export.files {
        assert_outcome(&c.download(&file.url).await, 404);
    }
    assert_outcome(&c.cancel(&url).await, 404);
    assert!(gone_within(&dir, 5).await, "{} still exists", dir.display());

    // An export cancelled before it is done: gone at once, and the slot is free again.
    let url = c.start("$export").await;
    let resp = c.cancel(&url).await;
    assert_eq!(resp.status, 202, "DELETE {url}: {}", resp.describe());
    assert_outcome(&c.status(&url).await, 404);
    let next = c.start("$export?_type=Patient").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_outcome(&c.status(&url).await, 404);
    assert!(
        gone_within(&server.dir.join(job_id(&url)), 5).await,
        "the cancelled job's directory stays"
    );
    assert_eq!(
        c.fetch(&c.complete(&next).await).await.ids(),
        keys(&PATIENTS)
    );

    // Status and file URLs that never were.
    let unknown = format!("{}/$export-status/{}", server.base, uuid::Uuid::new_v4());
    assert_outcome(&c.status(&unknown).await, 404);
    assert_outcome(&c.cancel(&unknown).await, 404);
    assert_outcome(
        &c.status(&format!("{}/$export-status/nonsense", server.base))
            .await,
        404,
    );
    let next_manifest = c.complete(&next).await;
    let file_url = next_manifest["output"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (dir_url, _) = file_url.rsplit_once('/').unwrap();
    for other in [
        format!("{dir_url}/Patient-99.ndjson"),
        format!("{dir_url}/..%2F..%2Fetc%2Fpasswd"),
        format!("{dir_url}/%2e%2e"),
    ] {
        assert_outcome(&c.download(&other).await, 404);
    }
}

/// Kicks off two exports back to back with `FHIR_EXPORT_MAX_JOBS=1`: the second must be 429
/// while the first is accepted or running. (Should the first finish in the few milliseconds
/// between them, the pair is tried again.) Returns the 429.
async fn second_kick_off(server: &ExportServer) -> ferrum_tests::Resp {
    let c = Client::anonymous(server);
    for _ in 0..5 {
        let first = c.start("$export").await;
        let second = c.kick("Patient/$export").await;
        match second.status {
            429 => {
                c.complete(&first).await;
                return second;
            }
            202 => {
                let other = assert_accepted(server, &second, "second kick-off");
                c.complete(&first).await;
                c.complete(&other).await;
            }
            _ => panic!("second kick-off: {}", second.describe()),
        }
    }
    panic!("the second of two kick-offs back to back was never refused");
}

#[tokio::test]
async fn too_many_exports_are_429() {
    let server = start(&[("FHIR_EXPORT_MAX_JOBS", "1")]).await;
    load(&server, &many_patients(500)).await;
    let refused = second_kick_off(&server).await;
    let issue = assert_outcome(&refused, 429);
    assert_eq!(issue["code"], "throttled", "{}", refused.describe());
    assert!(refused.header("content-location").is_none());
    // Once the first is done, a kick-off is accepted again.
    let c = Client::anonymous(&server);
    let export = c.export("$export?_type=Patient").await;
    assert_eq!(export.ids().len(), 500);
}

#[tokio::test]
async fn too_many_exports_429_says_when_to_retry() {
    let server = start(&[("FHIR_EXPORT_MAX_JOBS", "1")]).await;
    load(&server, &many_patients(500)).await;
    let refused = second_kick_off(&server).await;
    assert!(
        retry_after(&refused, "the 429 of a kick-off") >= 1,
        "{}",
        refused.describe()
    );
}

#[tokio::test]
async fn finished_exports_expire_with_their_files() {
    let server = start(&[("FHIR_EXPORT_RETENTION_SECONDS", "2")]).await;
    load(&server, &population()).await;
    let c = Client::anonymous(&server);
    let url = c.start("$export").await;
    let done = c.wait(&url).await;
    let manifest = check_manifest(&server, &done, false, &url);
    let expires = parse_http_date(done.header("expires").unwrap());
    assert!(
        expires <= SystemTime::now() + Duration::from_secs(4),
        "Expires {:?} is about 2 s away",
        done.header("expires")
    );
    let export = c.fetch(&manifest).await;
    assert_eq!(export.ids(), population_keys());
    let dir = server.dir.join(job_id(&url));
    assert!(dir.is_dir());

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_outcome(&c.status(&url).await, 404);
    for file in &export.files {
        assert_outcome(&c.download(&file.url).await, 404);
    }
    assert!(
        gone_within(&dir, 4).await,
        "the expired job's files stay in {}",
        dir.display()
    );
}

#[tokio::test]
async fn an_export_kicked_off_before_a_restart_finishes_or_fails_readably() {
    let mut server = start(&[]).await;
    load(&server, &population()).await;
    let url = Client::anonymous(&server).start("$export").await;
    let old_base = server.base.clone();
    server.restart().await;
    let url = url.replacen(&old_base, &server.base, 1);
    let c = Client::anonymous(&server);
    // Accepted jobs are claimed at once, those of a dead runner after 30 s without a beat.
    let resp = c.wait(&url).await;
    match resp.status {
        200 => {
            eprintln!("the export completed after the restart");
            let manifest = check_manifest(&server, &resp, false, &url);
            let export = c.fetch(&manifest).await;
            assert_eq!(export.ids(), population_keys());
        }
        status if status >= 400 => {
            eprintln!("the export failed after the restart: {}", resp.describe());
            let issue = assert_outcome(&resp, status);
            assert!(
                issue["diagnostics"]
                    .as_str()
                    .is_some_and(|d| !d.trim().is_empty()),
                "a failed export says why: {}",
                resp.describe()
            );
        }
        _ => panic!("{}", resp.describe()),
    }
}

#[tokio::test]
async fn an_export_that_cannot_write_its_files_fails_readably() {
    // The export directory cannot be created (its parent is a file).
    let blocker = std::env::temp_dir().join(ferrum_tests::unique("ferrum-export-file"));
    std::fs::write(&blocker, b"not a directory").unwrap();
    let dir = blocker.join("exports");
    let dir_text = dir.display().to_string();
    let server = start(&[
        ("FHIR_EXPORT_DIR", dir_text.as_str()),
        ("FHIR_EXPORT_MAX_JOBS", "1"),
    ])
    .await;
    load(&server, &population()).await;
    let c = Client::anonymous(&server);
    let url = c.start("$export").await;
    let resp = c.wait(&url).await;
    let _ = std::fs::remove_file(&blocker);
    assert!(resp.status >= 500, "{}", resp.describe());
    let issue = assert_outcome(&resp, resp.status);
    assert!(
        issue["diagnostics"]
            .as_str()
            .is_some_and(|d| !d.trim().is_empty()),
        "{}",
        resp.describe()
    );
    // It stays failed, and no longer counts against FHIR_EXPORT_MAX_JOBS.
    assert_eq!(c.status(&url).await.status, resp.status);
    let next = c.kick("$export").await;
    assert_accepted(&server, &next, "a kick-off after a failed export");
    // DELETE forgets it.
    assert_eq!(c.cancel(&url).await.status, 202);
    assert_outcome(&c.status(&url).await, 404);
}

// --- consistency ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_during_an_export_are_in_it_or_in_the_next_incremental_export() {
    let server = start(&[]).await;
    const OWNED: usize = 5;
    const WRITERS: usize = 8;
    let initial: Vec<Value> = (0..OWNED * WRITERS)
        .map(|n| patient(&format!("c{n:02}"), "Start", "female", "1970-01-01"))
        .collect();
    load(&server, &initial).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = server.client.clone();
        let base = server.base.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                // Updates of the writer's own Patients, and now and then a new one.
                let id = if n % 4 == 3 {
                    format!("new-{w}-{n}")
                } else {
                    format!("c{:02}", w * OWNED + n % OWNED)
                };
                let body = patient(&id, &format!("W{w}-{n}"), "female", "1970-01-01");
                let resp = client
                    .put(format!("{base}/Patient/{id}"))
                    .header("content-type", FHIR_JSON)
                    .header("accept", FHIR_JSON)
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert!(
                    resp.status().is_success(),
                    "PUT Patient/{id}: {}",
                    resp.status()
                );
                written.push(format!("Patient/{id}"));
                n += 1;
            }
            written
        }));
    }
    let c = Client::anonymous(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A chain of exports while the writers write: a full one, then each from the previous
    // one's transactionTime; the last after the writers stopped.
    let mut chain = vec![c.export("$export").await];
    for _ in 0..3 {
        let tt = chain.last().unwrap().transaction_time();
        chain.push(c.export(&format!("$export?_since={}", encode(&tt))).await);
    }
    stop.store(true, Ordering::SeqCst);
    let mut all: BTreeSet<String> = initial.iter().map(key).collect();
    for writer in writers {
        all.extend(writer.await.unwrap());
    }
    let tt = chain.last().unwrap().transaction_time();
    chain.push(c.export(&format!("$export?_since={}", encode(&tt))).await);

    // Each export in turn, the later replacing the earlier, is the database now.
    let mut merged: BTreeMap<String, (usize, Value)> = BTreeMap::new();
    for (n, export) in chain.iter().enumerate() {
        for resource in export.resources() {
            merged.insert(key(resource), (n, resource.clone()));
        }
    }
    let current = read_all(&server, &all).await;
    let times: Vec<String> = chain.iter().map(|e| e.transaction_time()).collect();
    let mut lost = Vec::new();
    for (k, now) in &current {
        let found = merged.get(k);
        if found.map(|(_, r)| r) != Some(now) {
            lost.push(format!(
                "{k} v{} lastUpdated {}: exported {:?}",
                now["meta"]["versionId"],
                now["meta"]["lastUpdated"],
                found.map(|(n, r)| (
                    format!("export {n}"),
                    r["meta"]["versionId"].clone(),
                    r["meta"]["lastUpdated"].clone()
                ))
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} resources are not at their latest version in the chain of exports, each \
         from the transactionTime of the one before ({times:?}): {lost:#?}",
        lost.len(),
        current.len()
    );
    // No export holds a change made after its transactionTime.
    for export in &chain {
        let tt = parse_instant(&export.transaction_time());
        for resource in export.resources() {
            let updated = parse_instant(resource["meta"]["lastUpdated"].as_str().unwrap());
            assert!(
                updated <= tt,
                "{} lastUpdated {updated} is after the export's transactionTime {tt}",
                key(resource)
            );
        }
    }
}

// --- the CapabilityStatement ------------------------------------------------------------

#[tokio::test]
async fn the_capability_statement_declares_bulk_data_export() {
    let server = TestServer::start().await;
    let metadata = server.get("metadata").await;
    assert_eq!(metadata.status, 200, "{}", metadata.describe());
    let cs = &metadata.json;
    assert!(
        cs["instantiates"].as_array().is_some_and(|i| i
            .iter()
            .any(|u| u == "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data")),
        "instantiates: {}",
        cs["instantiates"]
    );
    let rest = &cs["rest"][0];
    let declares = |ops: &Value, definition: &str| {
        ops.as_array().is_some_and(|ops| {
            ops.iter()
                .any(|op| op["name"] == "export" && op["definition"] == definition)
        })
    };
    assert!(
        declares(
            &rest["operation"],
            "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
        ),
        "system export: {}",
        rest["operation"]
    );
    for (rtype, definition) in [
        (
            "Patient",
            "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
        ),
        (
            "Group",
            "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
        ),
    ] {
        let resource = rest["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == rtype)
            .unwrap();
        assert!(
            declares(&resource["operation"], definition),
            "{rtype}: {}",
            resource["operation"]
        );
    }
}

// --- authorisation (real Keycloak) ---------------------------------------------------------

const A: &str = "demo-patient-a";
const B: &str = "demo-patient-b";
/// A Group of patients A and B.
const GROUP_AB: &str = "demo-group-ab";

/// deploy/demo, an Account each for patients A and B (B's owned by an Organization of its
/// own), a second Invoice of each (B's by recipient only), and a Group of both.
fn demo() -> Vec<Value> {
    let mut all = demo_resources();
    let mut b_account = account(&format!("{B}-account"), &[&format!("Patient/{B}")]);
    b_account["owner"] = json!({"reference": "Organization/demo-b-insurer"});
    all.extend([
        organization("demo-b-insurer"),
        account(&format!("{A}-account"), &[&format!("Patient/{A}")]),
        b_account,
        invoice(
            &format!("{A}-invoice-2"),
            Some(&format!("Patient/{A}")),
            None,
        ),
        invoice(
            &format!("{B}-invoice-2"),
            None,
            Some(&format!("Patient/{B}")),
        ),
        group(
            GROUP_AB,
            &[&format!("Patient/{A}"), &format!("Patient/{B}")],
        ),
    ]);
    all
}

/// The compartment of `patient` in [`demo`] (what a Patient-level export selects by its
/// level).
fn compartment_of(patient: &str) -> BTreeSet<String> {
    keys(&[
        &format!("Patient/{patient}"),
        &format!("Account/{patient}-account"),
        &format!("Invoice/{patient}-invoice-1"),
        &format!("Invoice/{patient}-invoice-2"),
    ])
}

/// What the compartment of `patient` in [`demo`] refers to: the clinic (the Patient's
/// managing organization, the Invoices' issuer) and its clinician (the Patient's general
/// practitioner, the Invoices' participant); for B also the owner of its Account.
fn referred_by(patient: &str) -> BTreeSet<String> {
    let mut referred = keys(&["Organization/demo-clinic", "Practitioner/demo-clinician"]);
    if patient == B {
        referred.insert("Organization/demo-b-insurer".to_owned());
    }
    referred
}

/// The Patient-level export of [`demo`] for `patient`: its compartment and what it refers to.
fn export_of(patient: &str) -> BTreeSet<String> {
    compartment_of(patient)
        .into_iter()
        .chain(referred_by(patient))
        .collect()
}

/// A server requiring tokens of the realm, with [`demo`] loaded.
async fn demo_server(kc: &Keycloak) -> ExportServer {
    let audience = smart_support::fhir_base();
    let server = start_with(
        &[
            ("FHIR_AUTH", "smart"),
            ("FHIR_AUTH_ISSUER", kc.issuer.as_str()),
            ("FHIR_AUTH_AUDIENCE", audience.as_str()),
        ],
        &[],
    )
    .await;
    let admin = kc.system_token("system/*.cruds").await;
    for resource in demo() {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let resp = server
            .send(
                server
                    .request(reqwest::Method::PUT, &path)
                    .bearer_auth(&admin)
                    .header("content-type", FHIR_JSON)
                    .body(resource.to_string()),
            )
            .await;
        assert!(
            matches!(resp.status, 200 | 201),
            "PUT {path}: {}",
            resp.describe()
        );
    }
    server
}

#[tokio::test]
async fn with_authorisation_only_the_client_that_kicked_off_gets_the_export() {
    let Some(kc) = keycloak().await else { return };
    let server = demo_server(&kc).await;
    let dev = Client::bearer(&server, &kc.system_token("system/*.rs").await);
    let backend = Client::bearer(&server, &kc.backend_token("system/*.rs").await);
    let anonymous = Client::anonymous(&server);

    assert_401(&anonymous.kick("$export").await, "kick-off without a token");
    assert_401(
        &anonymous.kick("Patient/$export").await,
        "Patient kick-off without a token",
    );
    let url = dev.start("$export").await;
    assert_401(&anonymous.status(&url).await, "status without a token");
    assert_outcome(&backend.status(&url).await, 404);
    let manifest = dev.complete(&url).await;
    assert_eq!(manifest["requiresAccessToken"], true, "{manifest}");
    let export = dev.fetch(&manifest).await;
    let everything: BTreeSet<String> = demo().iter().map(key).collect();
    assert_eq!(export.ids(), everything);
    for file in &export.files {
        assert_401(
            &anonymous.download(&file.url).await,
            "a file without a token",
        );
        assert_outcome(&backend.download(&file.url).await, 404);
    }
    assert_401(
        &anonymous.status(&url).await,
        "a finished status without a token",
    );
    assert_outcome(&backend.status(&url).await, 404);
    assert_outcome(&backend.cancel(&url).await, 404);
    assert_401(&anonymous.cancel(&url).await, "DELETE without a token");
    // Still there for its owner.
    let again = dev.status(&url).await;
    assert_eq!(again.status, 200, "{}", again.describe());

    // The backend client's own export (private_key_jwt) works the same way.
    let own = backend.export("Patient/$export?_type=Patient").await;
    assert_eq!(
        own.ids(),
        demo()
            .iter()
            .filter(|r| r["resourceType"] == "Patient")
            .map(key)
            .collect()
    );

    // A token that cannot read Invoices: 403 when _type names them; without _type, the
    // types it can read.
    let patients_only = Client::bearer(&server, &kc.system_token("system/Patient.rs").await);
    for path in [
        "$export?_type=Patient,Invoice",
        "Patient/$export?_type=Invoice",
        "Group/nonexistent/$export?_type=Invoice",
    ] {
        let resp = patients_only.kick(path).await;
        if path.starts_with("Group/") {
            // A Group it may not read at all: 403, not a hint that it exists or not.
            assert!(
                matches!(resp.status, 403 | 404),
                "{path}: {}",
                resp.describe()
            );
            continue;
        }
        assert_403(&resp, path);
    }
    let export = patients_only.export("$export").await;
    assert_eq!(
        export.types(),
        keys(&["Patient"]),
        "system/Patient.rs exports Patients only"
    );
}

#[tokio::test]
async fn a_patient_token_exports_its_own_compartment_only() {
    let Some(kc) = keycloak().await else { return };
    let server = demo_server(&kc).await;
    let a = Client::bearer(
        &server,
        &kc.user_token("patient-a", "openid launch/patient patient/*.rs")
            .await,
    );
    let export = a.export("Patient/$export").await;
    assert_eq!(export.ids(), export_of(A));
    assert_eq!(export.manifest["requiresAccessToken"], true);
    let export = a.export("Patient/$export?_type=Invoice").await;
    assert_eq!(export.ids(), of_types(&compartment_of(A), &["Invoice"]));
    // A filter naming patient B finds nothing of B's.
    let path = format!(
        "Patient/$export?_typeFilter={}",
        encode(&format!("Invoice?subject=Patient/{B}"))
    );
    assert_eq!(
        a.export(&path).await.ids(),
        of_types(
            &export_of(A),
            &["Patient", "Account", "Organization", "Practitioner"]
        ),
        "{path}"
    );
    // A Group of A and B: A's compartment only, and what it refers to (not B's insurer);
    // the system client gets both.
    let path = format!("Group/{GROUP_AB}/$export");
    assert_eq!(a.export(&path).await.ids(), export_of(A), "{path}");
    let system = Client::bearer(&server, &kc.system_token("system/*.rs").await);
    let both: BTreeSet<String> = export_of(A).into_iter().chain(export_of(B)).collect();
    assert_eq!(
        system.export(&path).await.ids(),
        both,
        "{path}, system token"
    );
    // At system level too, nothing of another patient's compartment.
    let export = a.export("$export").await;
    let compartment_types = ["Patient", "Account", "Invoice"];
    assert_eq!(
        of_types(&export.ids(), &compartment_types),
        compartment_of(A),
        "$export with patient-a's token"
    );
    let groups = of_types(&export.ids(), &["Group"]);
    assert!(
        groups.is_subset(&keys(&[&format!("Group/{GROUP_AB}")])),
        "$export with patient-a's token: {groups:?}"
    );
}

#[tokio::test]
async fn referred_organizations_and_practitioners_follow_the_token_grant() {
    let Some(kc) = keycloak().await else { return };
    let server = demo_server(&kc).await;
    let group = format!("Group/{GROUP_AB}/$export");
    // A patient token (patient/ scopes read Organizations and Practitioners, which are in
    // no patient's compartment): what its own compartment refers to, not what B's does.
    let a = Client::bearer(
        &server,
        &kc.user_token("patient-a", "openid launch/patient patient/*.rs")
            .await,
    );
    let path = "Patient/$export?_type=Organization,Practitioner";
    assert_eq!(a.export(path).await.ids(), referred_by(A), "{path}");
    // Patients and Organizations only: the Organization the Patients refer to; no
    // Practitioner (not granted: 403 when named), and no reference of the Accounts it cannot
    // read is followed (B's insurer).
    let token = kc
        .system_token("system/Patient.rs system/Organization.rs system/Group.rs")
        .await;
    let limited = Client::bearer(&server, &token);
    assert_eq!(
        limited.export(&group).await.ids(),
        keys(&[
            &format!("Patient/{A}"),
            &format!("Patient/{B}"),
            "Organization/demo-clinic"
        ]),
        "{group} with Patient and Organization"
    );
    assert_403(
        &limited.kick("Patient/$export?_type=Practitioner").await,
        "_type=Practitioner without a grant of it",
    );
    // Invoices and Practitioners: the Practitioners the Invoices refer to.
    let token = kc
        .system_token("system/Invoice.rs system/Practitioner.rs")
        .await;
    let invoices = Client::bearer(&server, &token);
    let expected: BTreeSet<String> = demo()
        .iter()
        .filter(|r| r["resourceType"] == "Invoice")
        .map(key)
        .chain(keys(&[
            "Practitioner/demo-clinician",
            "Practitioner/demo-dr-jones",
        ]))
        .collect();
    assert_eq!(
        invoices.export("Patient/$export").await.ids(),
        expected,
        "Patient/$export with Invoice and Practitioner"
    );
}

#[tokio::test]
async fn another_user_of_the_same_client_cannot_see_an_export() {
    let Some(kc) = keycloak().await else { return };
    let server = demo_server(&kc).await;
    let scope = "openid launch/patient patient/*.rs";
    let a = Client::bearer(&server, &kc.user_token("patient-a", scope).await);
    let b = Client::bearer(&server, &kc.user_token("patient-b", scope).await);
    let url = a.start("Patient/$export").await;
    let manifest = a.complete(&url).await;
    let export = a.fetch(&manifest).await;
    assert_eq!(export.ids(), export_of(A));
    assert_outcome(&b.status(&url).await, 404);
    for file in &export.files {
        let resp = b.download(&file.url).await;
        assert_outcome(&resp, 404);
        assert!(
            !resp.text.contains(A),
            "patient B downloaded patient A's data from {}",
            file.url
        );
    }
    assert_outcome(&b.cancel(&url).await, 404);
    let again = a.status(&url).await;
    assert_eq!(again.status, 200, "{}", again.describe());
}
