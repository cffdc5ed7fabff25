//! End-to-end test support.
//!
//! [`TestServer::start`] creates a fresh PostgreSQL database, starts the real
//! `fhir-server` binary against it on a free loopback port, and waits until
//! `GET /fhir/metadata` answers. Tests then talk to it over HTTP only, as any
//! client would. Dropping the [`TestServer`] kills the process and drops the
//! database (best effort); when the test failed, the server log is kept under
//! `target/e2e-logs/` and its tail is printed.
//!
//! Environment:
//! - `DATABASE_URL`: an admin connection whose role may create databases
//!   (default [`DEFAULT_DATABASE_URL`]);
//! - `FERRUM_SERVER_BIN`: the server binary (default `target/debug/fhir-server`;
//!   build it first with `cargo build -p fhir-server`);
//! - `FHIR_R4_EXAMPLES_DIR`: the unpacked `hl7.fhir.r4.examples@4.0.1` package
//!   (the directory holding `Patient-example.json` and friends);
//! - `FERRUM_E2E_RUST_LOG`: log filter for the server (default `warn`);
//! - `RABBITMQ_URL`: the broker the server publishes change events to, and that
//!   event tests consume from (default [`DEFAULT_RABBITMQ_URL`]).
//!
//! The server process does not inherit the caller's `FHIR_*` and `DATABASE_*`
//! variables: it gets its own listen address, base URL, database, a body
//! limit of [`MAX_BODY_BYTES`] and `FHIR_AUTH=none`, plus whatever a test passes
//! to [`TestServer::start_with_env`] (`FHIR_AUTH=smart` for authorisation tests).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

pub use serde_json::json;

/// Admin database URL used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://ferrum:ferrum@127.0.0.1:5432/ferrum";
/// Broker URL used when `RABBITMQ_URL` is not set.
pub const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";
/// The FHIR XML media type.
pub const FHIR_XML: &str = "application/fhir+xml";
/// The request body limit the harness gives the server (`FHIR_MAX_BODY_BYTES`).
pub const MAX_BODY_BYTES: usize = 1_048_576;
/// The resource types the server serves.
pub const RESOURCE_TYPES: [&str; 6] = [
    "Patient",
    "Account",
    "Invoice",
    "Organization",
    "Practitioner",
    "Group",
];

/// Every code of the FHIR R4 `IssueType` value set (required binding of
/// `OperationOutcome.issue.code`).
pub const ISSUE_TYPES: &[&str] = &[
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "unknown",
    "expired",
    "forbidden",
    "suppressed",
    "processing",
    "not-supported",
    "duplicate",
    "multiple-matches",
    "not-found",
    "deleted",
    "too-long",
    "code-invalid",
    "extension",
    "too-costly",
    "business-rule",
    "conflict",
    "transient",
    "lock-error",
    "no-store",
    "exception",
    "timeout",
    "incomplete",
    "throttled",
    "informational",
];

/// A running server with its own database.
#[derive(Debug)]
pub struct TestServer {
    /// The FHIR base, e.g. `http://127.0.0.1:PORT/fhir` (no trailing slash).
    pub base: String,
    /// A client without redirects, with a 60 s timeout.
    pub client: reqwest::Client,
    addr: String,
    child: Option<Child>,
    bin: PathBuf,
    db_url: String,
    extra_env: Vec<(String, String)>,
    admin_url: String,
    db_name: Option<String>,
    log_path: PathBuf,
}

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body as text (lossy UTF-8).
    pub text: String,
    /// The body parsed as JSON, or `Value::Null` when it is empty or not JSON.
    pub json: Value,
}

impl Resp {
    /// A header's value, when present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Content-Type`, lower-cased and without blanks (`""` when absent).
    pub fn content_type(&self) -> String {
        self.header("content-type")
            .unwrap_or("")
            .to_ascii_lowercase()
            .replace([' ', '\t'], "")
    }

    /// True when the Content-Type is exactly `application/fhir+json; charset=utf-8`.
    pub fn is_fhir_json(&self) -> bool {
        self.content_type() == "application/fhir+json;charset=utf-8"
    }

    /// The `ETag`.
    pub fn etag(&self) -> Option<&str> {
        self.header("etag")
    }

    /// A one-line description for assertion messages.
    pub fn describe(&self) -> String {
        let mut body = self.text.clone();
        if body.len() > 1500 {
            let mut cut = 1500;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str("...");
        }
        format!(
            "HTTP {} (content-type {:?}) body: {}",
            self.status,
            self.header("content-type").unwrap_or(""),
            body
        )
    }

    /// The resource's `meta.versionId`.
    pub fn version_id(&self) -> Option<&str> {
        self.json.pointer("/meta/versionId").and_then(Value::as_str)
    }

    /// The resource's `id`.
    pub fn id(&self) -> Option<&str> {
        self.json.get("id").and_then(Value::as_str)
    }
}

impl TestServer {
    /// Starts a server with the default configuration.
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// Starts a server with extra environment variables (e.g.
    /// `FHIR_UNIQUE_PATIENT_EMAIL=false`).
    pub async fn start_with_env(extra_env: &[(&str, &str)]) -> Self {
        let bin = server_binary();
        assert!(
            bin.is_file(),
            "server binary {} not found: build it with `cargo build -p fhir-server` or set FERRUM_SERVER_BIN",
            bin.display()
        );
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        let db_name = format!("ferrum_e2e_{}", uuid::Uuid::new_v4().simple());
        create_database(&admin_url, &db_name).await;
        let mut db_url = url::Url::parse(&admin_url).expect("DATABASE_URL must be a URL");
        db_url.set_path(&format!("/{db_name}"));

        let log_dir = target_dir().join("e2e-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let log_path = log_dir.join(format!("{db_name}.log"));

        // Constructed before the child so that a failed start still drops the database.
        let mut server = TestServer {
            base: String::new(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            addr: String::new(),
            child: None,
            bin,
            db_url: db_url.to_string(),
            extra_env: extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            admin_url,
            db_name: Some(db_name),
            log_path,
        };
        server.launch().await;
        server
    }

    /// Stops the server process and starts it again on the same database (on
    /// another port, so `base` changes).
    pub async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.launch().await;
    }

    /// Sets (or replaces) an environment variable for the next [`TestServer::restart`].
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.extra_env.retain(|(n, _)| n != name);
        self.extra_env.push((name.to_owned(), value.to_owned()));
    }

    /// Spawns the process and waits until it serves.
    async fn launch(&mut self) {
        // The free port is found by binding and releasing it, so another process
        // may take it first: then the server exits, and it is tried again.
        for attempt in 1..=3 {
            let port = free_port();
            self.addr = format!("127.0.0.1:{port}");
            self.base = format!("http://{}/fhir", self.addr);
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log_path)
                .unwrap();
            let mut cmd = Command::new(&self.bin);
            for (name, _) in std::env::vars_os() {
                let text = name.to_string_lossy();
                if text.starts_with("FHIR_") || text.starts_with("DATABASE_") {
                    cmd.env_remove(&name);
                }
            }
            let log_filter = std::env::var("FERRUM_E2E_RUST_LOG").unwrap_or_else(|_| "warn".into());
            cmd.env("FHIR_LISTEN_ADDR", &self.addr)
                .env("RABBITMQ_URL", rabbitmq_url())
                .env("FHIR_BASE_URL", &self.base)
                .env("DATABASE_URL", &self.db_url)
                .env("FHIR_MAX_BODY_BYTES", MAX_BODY_BYTES.to_string())
                // Authorisation is on by default; tests of other things turn it off, and
                // those of authorisation turn it on (`start_with_env`).
                .env("FHIR_AUTH", "none")
                .env("RUST_LOG", log_filter);
            for (name, value) in &self.extra_env {
                cmd.env(name, value);
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .kill_on_drop(true);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
            self.child = Some(child);
            match self.wait_until_ready().await {
                Ok(()) => return,
                Err(exit) if attempt < 3 => {
                    eprintln!("the server exited during start-up ({exit}); trying another port");
                }
                Err(exit) => panic!(
                    "the server exited during start-up ({exit}); log {}:\n{}",
                    self.log_path.display(),
                    self.log_tail(60)
                ),
            }
        }
    }

    /// Waits for `GET /metadata` to answer 200; `Err` when the process exited.
    async fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/metadata", self.base);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                self.child = None;
                return Err(status.to_string());
            }
            let answer = self
                .client
                .get(&url)
                .header("accept", FHIR_JSON)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if answer.is_ok_and(|resp| resp.status().as_u16() == 200) {
                // Make sure it was our process that answered.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                    self.child = None;
                    return Err(status.to_string());
                }
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "the server did not answer GET {url} with 200 within 60 s; log {}:\n{}",
                self.log_path.display(),
                self.log_tail(60)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `host:port` the server listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The connection string of the server's own database (for tests that look at its
    /// tables: history, outbox).
    pub fn database_url(&self) -> &str {
        &self.db_url
    }

    /// An absolute URL: `path` relative to the base (`Patient/1`), or already absolute.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        }
    }

    /// A request that accepts FHIR JSON.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("accept", FHIR_JSON)
    }

    /// Sends a request and reads the whole response; panics on transport errors.
    pub async fn send(&self, req: RequestBuilder) -> Resp {
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"))
    }

    /// Sends a request and reads the whole response.
    pub async fn try_send(&self, req: RequestBuilder) -> Result<Resp, String> {
        let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| format!("{e:?}"))?;
        Ok(make_resp(status, headers, &bytes))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.request(Method::GET, path)).await
    }

    /// `GET path` with extra headers; each replaces a default of the same name
    /// (e.g. `accept`).
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        self.send(self.request(Method::GET, path).headers(map))
            .await
    }

    /// `POST path` with a FHIR JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.post_text(path, &body.to_string()).await
    }

    /// `POST path` with a FHIR JSON body given as text.
    pub async fn post_text(&self, path: &str, body: &str) -> Resp {
        self.send(
            self.request(Method::POST, path)
                .header("content-type", FHIR_JSON)
                .body(body.to_owned()),
        )
        .await
    }

    /// `PUT path` with a FHIR JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.put_text(path, &body.to_string()).await
    }

    /// `PUT path` with a FHIR JSON body given as text.
    pub async fn put_text(&self, path: &str, body: &str) -> Resp {
        self.send(
            self.request(Method::PUT, path)
                .header("content-type", FHIR_JSON)
                .body(body.to_owned()),
        )
        .await
    }

    /// `PUT path` with a FHIR JSON body and an `If-Match` header.
    pub async fn put_if_match(&self, path: &str, body: &Value, etag: &str) -> Resp {
        self.send(
            self.request(Method::PUT, path)
                .header("content-type", FHIR_JSON)
                .header("if-match", etag)
                .body(body.to_string()),
        )
        .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// Creates `resource` with POST to its type; asserts 201 and returns the stored resource.
    pub async fn create(&self, resource: &Value) -> Value {
        let rtype = resource["resourceType"].as_str().unwrap();
        let resp = self.post(rtype, resource).await;
        assert_eq!(resp.status, 201, "create {rtype}: {}", resp.describe());
        resp.json
    }

    /// Stores `resource` with PUT at its own id; asserts 200 or 201 and returns the response.
    pub async fn upsert(&self, resource: &Value) -> Resp {
        let rtype = resource["resourceType"].as_str().unwrap();
        let id = resource["id"].as_str().unwrap();
        let resp = self.put(&format!("{rtype}/{id}"), resource).await;
        assert!(
            resp.status == 200 || resp.status == 201,
            "PUT {rtype}/{id}: {}",
            resp.describe()
        );
        resp
    }

    /// Reads `type/id`; asserts 200 and returns the resource.
    pub async fn read_json(&self, rtype: &str, id: &str) -> Value {
        let resp = self.get(&format!("{rtype}/{id}")).await;
        assert_eq!(resp.status, 200, "read {rtype}/{id}: {}", resp.describe());
        resp.json
    }

    /// Every page of a history (or any Bundle) following `next` links, as
    /// the list of pages; asserts 200 and a Bundle on each page.
    pub async fn pages(&self, path: &str) -> Vec<Value> {
        let mut pages = Vec::new();
        let mut next = Some(self.url(path));
        while let Some(url) = next.take() {
            assert!(pages.len() < 1000, "more than 1000 pages from {path}");
            let resp = self.get(&url).await;
            assert_eq!(resp.status, 200, "GET {url}: {}", resp.describe());
            assert_eq!(
                resp.json["resourceType"],
                "Bundle",
                "GET {url}: {}",
                resp.describe()
            );
            next = link(&resp.json, "next");
            pages.push(resp.json);
        }
        pages
    }

    /// All entries of a history, following `next` links.
    pub async fn history(&self, path: &str) -> Vec<Value> {
        self.pages(path)
            .await
            .into_iter()
            .flat_map(|page| entries(&page))
            .collect()
    }

    /// Sends a hand-written HTTP/1.1 request over a plain TCP connection, for
    /// requests `reqwest` will not send (e.g. without any `Accept` header).
    /// `path` is relative to the base unless it starts with `/`.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let target = if path.starts_with('/') {
            path.to_owned()
        } else {
            let base_path = url::Url::parse(&self.base).unwrap().path().to_owned();
            format!("{}/{}", base_path.trim_end_matches('/'), path)
        };
        let chunked = headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
        });
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if !chunked && (!body.is_empty() || method != "GET") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut payload = head.into_bytes();
        if chunked {
            for chunk in body.chunks(64 * 1024) {
                payload.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                payload.extend_from_slice(chunk);
                payload.extend_from_slice(b"\r\n");
            }
            payload.extend_from_slice(b"0\r\n\r\n");
        } else {
            payload.extend_from_slice(body);
        }
        let stream = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        // The server may answer (e.g. 413) before it has read everything: write
        // and read at the same time, and let a refused write pass.
        let write = tokio::spawn(async move {
            let _ = writer.write_all(&payload).await;
            writer
        });
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut buf))
            .await
            .expect("raw request timed out")
            .unwrap_or_else(|e| panic!("reading the response failed: {e}"));
        let _writer = write.await;
        parse_raw_response(&buf)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            // Gone before its database is dropped: a server still running can open a
            // connection while the drop runs, and the drop then fails.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "server log kept at {}; its tail:\n{}",
                self.log_path.display(),
                self.log_tail(40)
            );
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
        if let Some(db_name) = self.db_name.take() {
            drop_database(&self.admin_url, &db_name);
        }
    }
}

fn make_resp(status: u16, headers: HeaderMap, bytes: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let json = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    Resp {
        status,
        headers,
        text,
        json,
    }
}

fn parse_raw_response(buf: &[u8]) -> Resp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers in the response");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut rest = &buf[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.append(
                HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                HeaderValue::from_str(value.trim()).unwrap(),
            );
        }
    }
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("bad chunk");
            let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .expect("bad chunk size");
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        out
    } else if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    make_resp(status, headers, &body)
}

/// The URL of a Bundle link with relation `rel`.
pub fn link(bundle: &Value, rel: &str) -> Option<String> {
    bundle["link"].as_array().and_then(|links| {
        links
            .iter()
            .find(|l| l["relation"] == rel)
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned)
    })
}

/// The entries of a Bundle (empty when it has none).
pub fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

/// Checks that `resp` is an error OperationOutcome with status `status`;
/// returns a description of every problem (empty when all is well).
pub fn outcome_problems(resp: &Resp, status: u16) -> Vec<String> {
    let mut problems = Vec::new();
    if resp.status != status {
        problems.push(format!("status {} instead of {status}", resp.status));
    }
    if !resp.is_fhir_json() {
        problems.push(format!(
            "content-type {:?} instead of application/fhir+json; charset=utf-8",
            resp.header("content-type").unwrap_or("")
        ));
    }
    if resp.json["resourceType"] != "OperationOutcome" {
        problems.push("the body is not an OperationOutcome".into());
        return problems;
    }
    let issue = &resp.json["issue"][0];
    if issue["severity"] != "error" {
        problems.push(format!(
            "issue[0].severity is {} instead of \"error\"",
            issue["severity"]
        ));
    }
    match issue["code"].as_str() {
        Some(code) if ISSUE_TYPES.contains(&code) => {}
        _ => problems.push(format!(
            "issue[0].code {} is not an IssueType code",
            issue["code"]
        )),
    }
    problems
}

/// Asserts that `resp` is an error OperationOutcome with status `status`; returns `issue[0]`.
#[track_caller]
pub fn assert_outcome(resp: &Resp, status: u16) -> Value {
    let problems = outcome_problems(resp, status);
    assert!(
        problems.is_empty(),
        "expected an OperationOutcome with status {status}: {}\n{}",
        problems.join("; "),
        resp.describe()
    );
    resp.json["issue"][0].clone()
}

/// The resource without `meta.versionId` and `meta.lastUpdated` (and without
/// `meta` when nothing else is left in it).
pub fn without_server_meta(resource: &Value) -> Value {
    let mut copy = resource.clone();
    if let Some(obj) = copy.as_object_mut() {
        let mut drop_meta = false;
        if let Some(meta) = obj.get_mut("meta").and_then(Value::as_object_mut) {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            drop_meta = meta.is_empty();
        }
        if drop_meta {
            obj.remove("meta");
        }
    }
    copy
}

/// Parses a FHIR `instant` (RFC 3339 with seconds and a zone); panics otherwise.
#[track_caller]
pub fn parse_instant(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not a FHIR instant: {e}"))
}

/// Parses an HTTP date (`Last-Modified`); panics otherwise.
#[track_caller]
pub fn parse_http_date(text: &str) -> std::time::SystemTime {
    httpdate::parse_http_date(text).unwrap_or_else(|e| panic!("{text:?} is not an HTTP date: {e}"))
}

/// A fresh identifier-like string: `prefix-` and 12 random hex digits.
pub fn unique(prefix: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &random[..12])
}

/// Parses JSON text (keeping decimals and property order as written).
#[track_caller]
pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON in a test: {e}: {text}"))
}

/// True when `id` is a valid FHIR id (`[A-Za-z0-9\-\.]{1,64}`).
pub fn is_fhir_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The directory of the official R4 examples, from `FHIR_R4_EXAMPLES_DIR`.
/// When it is not set, panics under CI and otherwise prints a skip notice and
/// returns `None`.
pub fn r4_examples_dir() -> Option<PathBuf> {
    match std::env::var_os("FHIR_R4_EXAMPLES_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("Patient-example.json").is_file(),
                "FHIR_R4_EXAMPLES_DIR={} does not hold Patient-example.json",
                dir.display()
            );
            Some(dir)
        }
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "FHIR_R4_EXAMPLES_DIR must be set under CI (the unpacked hl7.fhir.r4.examples@4.0.1 package)"
            )
        }
        None => {
            eprintln!(
                "skipped: FHIR_R4_EXAMPLES_DIR is not set (point it at the unpacked hl7.fhir.r4.examples@4.0.1 package)"
            );
            None
        }
    }
}

/// One official example resource.
#[derive(Debug, Clone)]
pub struct Example {
    /// File name, e.g. `Patient-example.json`.
    pub file: String,
    /// The resource type.
    pub resource_type: String,
    /// The resource as written in the file.
    pub resource: Value,
}

/// The examples of `types` in `dir`: files named `<Type>-*.json` whose
/// `resourceType` is that type, sorted by file name.
pub fn load_examples(dir: &Path, types: &[&str]) -> Vec<Example> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".json") else {
            continue;
        };
        let Some(rtype) = types.iter().find(|t| {
            stem.strip_prefix(**t)
                .is_some_and(|rest| rest.starts_with('-'))
        }) else {
            continue;
        };
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let resource: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
        if resource["resourceType"] != *rtype {
            continue;
        }
        found.insert(
            file.clone(),
            Example {
                file,
                resource_type: (*rtype).to_owned(),
                resource,
            },
        );
    }
    found.into_values().collect()
}

/// The broker URL: `RABBITMQ_URL`, or [`DEFAULT_RABBITMQ_URL`].
pub fn rabbitmq_url() -> String {
    std::env::var("RABBITMQ_URL").unwrap_or_else(|_| DEFAULT_RABBITMQ_URL.to_owned())
}

fn server_binary() -> PathBuf {
    match std::env::var_os("FERRUM_SERVER_BIN") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/fhir-server"),
    }
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn create_database(admin_url: &str, db_name: &str) {
    let mut conn = PgConnection::connect(admin_url).await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to PostgreSQL with DATABASE_URL (default {DEFAULT_DATABASE_URL}); \
             the role needs CREATEDB: {e}"
        )
    });
    conn.execute(format!("CREATE DATABASE \"{db_name}\"").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create database {db_name}: {e}"));
    let _ = conn.close().await;
}

/// Drops the database from a thread of its own, so that it works inside and
/// outside of a Tokio runtime.
fn drop_database(admin_url: &str, db_name: &str) {
    let admin_url = admin_url.to_owned();
    let db_name = db_name.to_owned();
    let sql = format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)");
    let worker = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let work = async {
                let mut conn = PgConnection::connect(&admin_url).await?;
                conn.execute(sql.as_str()).await?;
                conn.close().await
            };
            // A database left behind costs disk only; say why, so that it can be dropped.
            match tokio::time::timeout(Duration::from_secs(20), work).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => eprintln!("test database {db_name} not dropped: {error}"),
                Err(_) => eprintln!("test database {db_name} not dropped within 20 s"),
            }
        });
    });
    let _ = worker.join();
}

/// Where two JSON values differ, as `path: expected X, got Y` lines (at most
/// 20); empty when they are equal. Decimals compare by their text.
pub fn json_diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("$", expected, actual, &mut out);
    out.truncate(20);
    out
}

fn diff_at(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => diff_at(&format!("{path}.{key}"), value, other, out),
                    None => out.push(format!("{path}.{key}: missing (expected {value})")),
                }
            }
            for (key, value) in b {
                if !a.contains_key(key) {
                    out.push(format!("{path}.{key}: unexpected {value}"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                diff_at(&format!("{path}[{index}]"), x, y, out);
            }
        }
        _ if expected != actual => {
            let show = |v: &Value| {
                let mut text = v.to_string();
                if text.len() > 200 {
                    let mut cut = 200;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                    text.push_str("...");
                }
                text
            };
            out.push(format!(
                "{path}: expected {}, got {}",
                show(expected),
                show(actual)
            ));
        }
        _ => {}
    }
}
