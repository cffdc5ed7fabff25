//! The analytics dashboard in a real browser: the `fhir-server` binary on a database of
//! the test's own holding a few resources, the facts rebuilt by the `analytics-worker`
//! binary (`rebuild`), the reports read over HTTP as JSON, then headless Chromium loads
//! `$analytics.html`, whose script fetches the JSON and draws the charts; the DOM it
//! dumps must hold every chart with the expected bars.
//!
//! Chromium is Debian's `chromium` (installed by `scripts/test`); set `CHROMIUM` to use
//! another binary. Without one the browser test prints why and passes.
//! The worker binary is `FERRUM_WORKER_BIN`, else the one beside the server binary.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ferrum_tests::{DEFAULT_DATABASE_URL, TestServer, json};
use sqlx::{Connection, Executor, PgConnection};
use tokio::process::Command;

/// How long the browser may take to load the page, run its script and dump the DOM.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);
/// Virtual time the page gets before its DOM is dumped; it does not pass while the
/// script's fetch is pending, so this only bounds a page that never settles.
const VIRTUAL_TIME_BUDGET_MS: u32 = 15_000;

/// A database of the test's own, dropped with it. The server and the worker both use it,
/// so that the worker's rebuild sees what the server wrote.
struct Database {
    admin_url: String,
    name: String,
    url: String,
}

impl Database {
    async fn create() -> Self {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        let name = format!("ferrum_e2e_dashboard_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url).await.unwrap();
        conn.execute(format!("create database \"{name}\"").as_str())
            .await
            .unwrap();
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        Database {
            admin_url,
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("drop database if exists \"{}\" with (force)", self.name);
        // A thread with a runtime of its own: Drop may run inside or outside of one.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = conn.execute(sql.as_str()).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

fn worker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FERRUM_WORKER_BIN") {
        return PathBuf::from(path);
    }
    let server = std::env::var_os("FERRUM_SERVER_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/fhir-server"),
        PathBuf::from,
    );
    server.with_file_name("analytics-worker")
}

/// The browser: `CHROMIUM`, else the first of the usual names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Writes a few resources: three patients, two accounts, three invoices.
async fn load(server: &TestServer) {
    let resources = [
        json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-05-01",
            "address": [{"use": "home", "state": "BY", "country": "DE"}]}),
        json!({"resourceType": "Patient", "id": "p2", "gender": "female", "birthDate": "2015-01-01",
            "address": [{"use": "home", "state": "BY", "country": "DE"}]}),
        json!({"resourceType": "Patient", "id": "p3", "gender": "male", "deceasedBoolean": true}),
        json!({"resourceType": "Account", "id": "a1", "status": "active",
            "subject": [{"reference": "Patient/p1"}]}),
        json!({"resourceType": "Account", "id": "a2", "status": "inactive",
            "subject": [{"reference": "Patient/p2"}]}),
        json!({"resourceType": "Invoice", "id": "i1", "status": "issued", "date": "2025-11-03",
            "subject": {"reference": "Patient/p1"}, "account": {"reference": "Account/a1"},
            "totalNet": {"value": 100.10, "currency": "EUR"},
            "totalGross": {"value": 119.12, "currency": "EUR"}}),
        json!({"resourceType": "Invoice", "id": "i2", "status": "balanced", "date": "2025-12-01",
            "subject": {"reference": "Patient/p1"}, "account": {"reference": "Account/a1"},
            "totalNet": {"value": 50, "currency": "EUR"},
            "totalGross": {"value": 59.5, "currency": "EUR"}}),
        json!({"resourceType": "Invoice", "id": "i3", "status": "issued", "date": "2025-12-02",
            "subject": {"reference": "Patient/p2"}, "account": {"reference": "Account/a2"},
            "totalNet": {"value": 10, "currency": "EUR"},
            "totalGross": {"value": 11.9, "currency": "EUR"}}),
    ];
    for resource in resources {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let resp = server.put(&path, &resource).await;
        assert_eq!(resp.status, 201, "PUT {path}: {}", resp.describe());
    }
}

/// `analytics-worker rebuild` on `database_url`, with none of the caller's settings.
async fn rebuild(database_url: &str) {
    let bin = worker_binary();
    assert!(
        bin.is_file(),
        "worker binary {} not found: build it with `cargo build --bins` or set FERRUM_WORKER_BIN",
        bin.display()
    );
    let mut command = Command::new(&bin);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if ["FHIR_", "DATABASE_", "ANALYTICS_", "RABBITMQ_"]
            .iter()
            .any(|prefix| text.starts_with(prefix))
        {
            command.env_remove(&name);
        }
    }
    let output = command
        .arg("rebuild")
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "analytics-worker rebuild failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The markup of the chart `id` in the dumped DOM.
fn chart<'a>(dom: &'a str, id: &str) -> &'a str {
    let marker = format!(r#"data-chart="{id}""#);
    let start = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no chart {id} in the page:\n{}", excerpt(dom)));
    let end = dom[start..]
        .find("</figure>")
        .map_or(dom.len(), |end| start + end);
    &dom[start..end]
}

/// Asserts that chart `id` has a drawn bar for each `(key, value)`, labelled with its key.
#[track_caller]
fn assert_bars(dom: &str, id: &str, bars: &[(&str, &str)]) {
    let chart = chart(dom, id);
    assert!(chart.contains("<svg"), "chart {id} has no SVG:\n{chart}");
    for (key, value) in bars {
        let bar = format!(r#"<g class="bar" data-key="{key}" data-value="{value}">"#);
        let start = chart
            .find(&bar)
            .unwrap_or_else(|| panic!("chart {id} has no bar {key} = {value}:\n{chart}"));
        let end = chart[start..]
            .find("</g>")
            .map_or(chart.len(), |end| start + end);
        let drawn = &chart[start..end];
        assert!(
            drawn.contains("<rect"),
            "bar {key} of {id} is not drawn: {drawn}"
        );
        assert!(
            drawn.contains(&format!(">{key}</text>")),
            "bar {key} of {id} has no label: {drawn}"
        );
    }
}

fn excerpt(dom: &str) -> String {
    let mut end = dom.len().min(4000);
    while !dom.is_char_boundary(end) {
        end -= 1;
    }
    dom[..end].to_owned()
}

#[tokio::test]
async fn the_dashboard_draws_the_reports_in_a_browser() {
    let database = Database::create().await;
    let server = TestServer::start_with_env(&[
        ("DATABASE_URL", &database.url),
        // The test's database is not the one the shared change stream is about.
        ("FHIR_EVENTS", "false"),
    ])
    .await;
    load(&server).await;
    rebuild(&database.url).await;

    // The data the page draws, as JSON and as MeasureReports, from the real binary.
    let reports = server.get("$analytics.json?asOf=2026-01-01").await;
    assert_eq!(reports.status, 200, "{}", reports.describe());
    assert_eq!(reports.json["patients"]["total"], 3);
    assert_eq!(reports.json["accounts"]["total"], 2);
    assert_eq!(reports.json["invoices"]["total"], 3);
    let bundle = server.get("$analytics?asOf=2026-01-01").await;
    assert_eq!(bundle.status, 200, "{}", bundle.describe());
    assert!(bundle.is_fhir_json(), "{}", bundle.describe());
    assert_eq!(
        bundle.json["entry"][0]["resource"]["resourceType"],
        "MeasureReport"
    );

    let Some(browser) = chromium() else {
        eprintln!(
            "skipped the browser part: no chromium found (scripts/test installs Debian's chromium; or set CHROMIUM)"
        );
        return;
    };
    let profile = std::env::temp_dir().join(format!("ferrum-chromium-{}", uuid::Uuid::new_v4()));
    let url = server.url("$analytics.html?asOf=2026-01-01");
    let run = Command::new(&browser)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"))
        .arg("--dump-dom")
        .arg(&url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} did not dump the page within {BROWSER_TIMEOUT:?}",
                browser.display()
            )
        })
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", browser.display()));
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && dom.contains("<body"),
        "{} failed ({}): {}",
        browser.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        dom.contains(r#"<body data-state="ready">"#),
        "the page did not render the reports:\n{}",
        excerpt(&dom)
    );
    assert!(
        dom.contains("Reports as of 2026-01-01"),
        "{}",
        excerpt(&dom)
    );

    assert!(
        dom.contains(r#"data-total="patients"><span class="number">3</span>"#),
        "{}",
        excerpt(&dom)
    );
    assert_bars(
        &dom,
        "patients-by-gender",
        &[("female", "2"), ("male", "1")],
    );
    assert_bars(
        &dom,
        "patients-by-age-band",
        &[
            ("0-17", "1"),
            ("18-34", "0"),
            ("35-49", "1"),
            ("65+", "0"),
            ("not recorded", "1"),
        ],
    );
    assert_bars(
        &dom,
        "patients-by-country",
        &[("DE", "2"), ("not recorded", "1")],
    );
    assert_bars(
        &dom,
        "patients-status",
        &[("deceased", "1"), ("living", "2")],
    );
    assert_bars(
        &dom,
        "accounts-by-status",
        &[("active", "1"), ("inactive", "1")],
    );
    assert_bars(
        &dom,
        "accounts-per-patient",
        &[("0 accounts", "1"), ("1 account", "2")],
    );
    assert_bars(
        &dom,
        "invoices-by-status",
        &[("balanced", "1"), ("issued", "2")],
    );
    assert_bars(&dom, "billed-per-patient", &[("Patient/p1", "178.62")]);
    assert_bars(
        &dom,
        "outstanding-per-account",
        &[("Account/a1", "119.12"), ("Account/a2", "11.9")],
    );
    let months = chart(&dom, "invoices-gross-by-month");
    assert!(months.contains(r#"data-key="2025-11 EUR""#), "{months}");
    assert!(months.contains(r#"data-key="2025-12 EUR""#), "{months}");
    let registrations = chart(&dom, "registrations-per-month");
    assert_eq!(
        registrations.matches(r#"<g class="bar""#).count(),
        1,
        "{registrations}"
    );
    assert!(
        registrations.contains(r#"data-value="3""#),
        "{registrations}"
    );
}
