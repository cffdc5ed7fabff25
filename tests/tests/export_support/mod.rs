//! Support for `export.rs`: a server with its own export directory, a Bulk Data client
//! (kick-off, polling, manifest, downloads) that checks what every answer must be on the
//! way, and the resources the tests load.
//!
//! The client checks, wherever it meets them: a kick-off answers 202 with an absolute
//! `Content-Location`; a status in progress answers 202 with `X-Progress` (under 100
//! characters) and `Retry-After`; a manifest answers 200, `application/json`, `Expires`, and
//! holds `transactionTime` (an instant), `request`, `requiresAccessToken`, `output` and
//! `error` whose entries have `type`, an absolute `url` under the server's base and `count`;
//! a file answers 200 `application/fhir+ndjson`, each line a resource of the entry's type,
//! as many lines as `count`, and no resource twice in one export.

#![allow(dead_code, reason = "each test uses a part of the helpers")]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use ferrum_tests::{FHIR_JSON, Resp, TestServer, json, parse_http_date, parse_instant, unique};
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

/// The NDJSON media type of export files.
pub const NDJSON: &str = "application/fhir+ndjson";
/// How long a test waits for an export to finish.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// A server with an export directory of its own (removed when dropped).
pub struct ExportServer {
    pub server: TestServer,
    /// `FHIR_EXPORT_DIR`.
    pub dir: PathBuf,
}

impl Deref for ExportServer {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl DerefMut for ExportServer {
    fn deref_mut(&mut self) -> &mut TestServer {
        &mut self.server
    }
}

impl Drop for ExportServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The export settings of the tests (polled as often as they like, many jobs at once, a
/// directory of their own), with `extra` on top (later entries win). Referential integrity
/// is off: the tests load their resources in parallel in any order, refer to resources they
/// never store (`Practitioner/dr-missing`) and delete resources others refer to, to see
/// what an export makes of them.
pub fn export_env(dir: &std::path::Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("FHIR_EXPORT_POLL_INTERVAL_MS".into(), "0".into()),
        ("FHIR_EXPORT_MAX_JOBS".into(), "50".into()),
        ("FHIR_EXPORT_DIR".into(), dir.display().to_string()),
        ("FHIR_REFERENTIAL_INTEGRITY".into(), "false".into()),
    ];
    for (name, value) in extra {
        env.retain(|(n, _)| n != name);
        env.push(((*name).to_owned(), (*value).to_owned()));
    }
    env
}

fn fresh_dir() -> PathBuf {
    std::env::temp_dir().join(unique("ferrum-export-e2e"))
}

/// A server without authorisation and the export settings of [`export_env`].
pub async fn start(extra: &[(&str, &str)]) -> ExportServer {
    let dir = fresh_dir();
    let env = export_env(&dir, extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    ExportServer {
        server: TestServer::start_with_env(&env).await,
        dir,
    }
}

/// A server with `env` as is, plus an export directory of its own.
pub async fn start_with(env: &[(&str, &str)], extra: &[(&str, &str)]) -> ExportServer {
    let dir = fresh_dir();
    let mut all: Vec<(String, String)> = env
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    for (name, value) in export_env(&dir, extra) {
        all.retain(|(n, _)| *n != name);
        all.push((name, value));
    }
    let all: Vec<(&str, &str)> = all.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    ExportServer {
        server: TestServer::start_with_env(&all).await,
        dir,
    }
}

/// `Type/id` of a resource.
pub fn key(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or("?"),
        resource["id"].as_str().unwrap_or("?")
    )
}

/// A set of `Type/id`s.
pub fn keys(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The job id: the last segment of a status URL.
pub fn job_id(status_url: &str) -> String {
    status_url.rsplit('/').next().unwrap_or_default().to_owned()
}

/// Stores `resources` with PUT at their ids, 16 at a time; returns them as stored, by
/// `Type/id`.
pub async fn load(server: &TestServer, resources: &[Value]) -> BTreeMap<String, Value> {
    let stored: Vec<(String, Value)> = futures::stream::iter(resources.iter().cloned())
        .map(|resource| async move {
            let resp = server.upsert(&resource).await;
            let body = if resp.json.is_object() {
                resp.json
            } else {
                server
                    .read_json(
                        resource["resourceType"].as_str().unwrap(),
                        resource["id"].as_str().unwrap(),
                    )
                    .await
            };
            (key(&resource), body)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    stored.into_iter().collect()
}

/// Every current resource of `keys` as the server reads it now.
pub async fn read_all(server: &TestServer, keys: &BTreeSet<String>) -> BTreeMap<String, Value> {
    let read: Vec<(String, Value)> = futures::stream::iter(keys.iter().cloned())
        .map(|k| async move {
            let (rtype, id) = k.split_once('/').unwrap();
            let body = server.read_json(rtype, id).await;
            (k, body)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    read.into_iter().collect()
}

// --- resources ---------------------------------------------------------------------------

pub fn patient(id: &str, family: &str, gender: &str, birth: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "active": true,
        "name": [{"family": family, "given": ["Test"]}],
        "gender": gender,
        "birthDate": birth,
    })
}

pub fn organization(id: &str) -> Value {
    json!({"resourceType": "Organization", "id": id, "name": format!("Org {id}")})
}

pub fn practitioner(id: &str) -> Value {
    json!({"resourceType": "Practitioner", "id": id, "name": [{"family": format!("Doc {id}")}]})
}

/// An Account with `subjects` (references, e.g. `Patient/p1`).
pub fn account(id: &str, subjects: &[&str]) -> Value {
    let mut account = json!({"resourceType": "Account", "id": id, "status": "active",
        "name": format!("Account {id}")});
    if !subjects.is_empty() {
        account["subject"] = subjects
            .iter()
            .map(|s| json!({"reference": s}))
            .collect::<Vec<_>>()
            .into();
    }
    account
}

/// An Invoice with an optional `subject` and `recipient` (references).
pub fn invoice(id: &str, subject: Option<&str>, recipient: Option<&str>) -> Value {
    let mut invoice = json!({"resourceType": "Invoice", "id": id, "status": "issued",
        "totalGross": {"value": 12.5, "currency": "EUR"}});
    if let Some(subject) = subject {
        invoice["subject"] = json!({"reference": subject});
    }
    if let Some(recipient) = recipient {
        invoice["recipient"] = json!({"reference": recipient});
    }
    invoice
}

/// A Group whose `member.entity` are `members` (references).
pub fn group(id: &str, members: &[&str]) -> Value {
    json!({
        "resourceType": "Group",
        "id": id,
        "type": "person",
        "actual": true,
        "member": members.iter().map(|m| json!({"entity": {"reference": m}})).collect::<Vec<_>>(),
    })
}

// --- the client --------------------------------------------------------------------------

/// A Bulk Data client of `server`, with a bearer token or none.
#[derive(Clone)]
pub struct Client<'a> {
    pub server: &'a TestServer,
    pub token: Option<String>,
}

impl<'a> Client<'a> {
    pub fn anonymous(server: &'a TestServer) -> Self {
        Client {
            server,
            token: None,
        }
    }

    pub fn bearer(server: &'a TestServer, token: &str) -> Self {
        Client {
            server,
            token: Some(token.to_owned()),
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.server.request(method, path);
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// `GET path` (relative to the base, or absolute) with `headers`.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.request(Method::GET, path);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.server.send(req).await
    }

    /// A `GET` kick-off with `Prefer: respond-async`.
    pub async fn kick(&self, path: &str) -> Resp {
        self.get_with(path, &[("prefer", "respond-async")]).await
    }

    /// A `POST` kick-off with `Prefer: respond-async` and a `Parameters` body of
    /// `parameters` (name, and the value element, e.g. `{"valueString": "Patient"}`).
    pub async fn kick_post(&self, path: &str, parameters: &[(&str, Value)]) -> Resp {
        let body = json!({
            "resourceType": "Parameters",
            "parameter": parameters.iter().map(|(name, value)| {
                let mut p = value.clone();
                p["name"] = json!(name);
                p
            }).collect::<Vec<_>>(),
        });
        self.kick_post_body(path, &body.to_string()).await
    }

    /// A `POST` kick-off with `Prefer: respond-async` and `body` as is.
    pub async fn kick_post_body(&self, path: &str, body: &str) -> Resp {
        let req = self
            .request(Method::POST, path)
            .header("prefer", "respond-async")
            .header("content-type", FHIR_JSON)
            .body(body.to_owned());
        self.server.send(req).await
    }

    /// A `GET` kick-off that must be accepted: the status URL.
    #[track_caller]
    pub fn accepted(&self, resp: &Resp, what: &str) -> String {
        assert_accepted(self.server, resp, what)
    }

    /// Kicks off `path` by `GET`, which must be accepted: the status URL.
    pub async fn start(&self, path: &str) -> String {
        let resp = self.kick(path).await;
        assert_accepted(self.server, &resp, &format!("GET {path}"))
    }

    /// `GET` the status URL.
    pub async fn status(&self, url: &str) -> Resp {
        self.get_with(url, &[]).await
    }

    /// `DELETE` the status URL.
    pub async fn cancel(&self, url: &str) -> Resp {
        self.server.send(self.request(Method::DELETE, url)).await
    }

    /// Polls `url` until it no longer answers 202 (or 429), checking each 202; the last
    /// answer. Panics after [`EXPORT_TIMEOUT`].
    pub async fn wait(&self, url: &str) -> Resp {
        let deadline = Instant::now() + EXPORT_TIMEOUT;
        loop {
            let resp = self.status(url).await;
            let pause = match resp.status {
                202 => {
                    check_in_progress(&resp, url);
                    Duration::from_millis(100)
                }
                429 => Duration::from_secs(retry_after(&resp, url)),
                _ => return resp,
            };
            assert!(
                Instant::now() < deadline,
                "{url} still in progress after {EXPORT_TIMEOUT:?}: {}",
                resp.describe()
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// Waits for `url` and checks its manifest; returns it.
    pub async fn complete(&self, url: &str) -> Value {
        let resp = self.wait(url).await;
        check_manifest(self.server, &resp, self.token.is_some(), url)
    }

    /// `GET` an output file (`Accept: application/fhir+ndjson`).
    pub async fn download(&self, url: &str) -> Resp {
        self.get_with(url, &[("accept", NDJSON)]).await
    }

    /// Downloads and checks every `output` file of a manifest.
    pub async fn fetch(&self, manifest: &Value) -> Export {
        let mut files = Vec::new();
        for entry in manifest["output"].as_array().unwrap() {
            files.push(self.fetch_file(entry).await);
        }
        let export = Export {
            manifest: manifest.clone(),
            files,
        };
        let mut seen = BTreeSet::new();
        for resource in export.resources() {
            assert!(
                seen.insert(key(resource)),
                "{} is exported twice: {}",
                key(resource),
                manifest
            );
        }
        export
    }

    /// Downloads and checks one manifest entry's file.
    pub async fn fetch_file(&self, entry: &Value) -> File {
        let rtype = entry["type"].as_str().unwrap().to_owned();
        let url = entry["url"].as_str().unwrap().to_owned();
        let resp = self.download(&url).await;
        assert_eq!(resp.status, 200, "GET {url}: {}", resp.describe());
        assert!(
            resp.content_type().starts_with(NDJSON),
            "GET {url}: content type {:?} instead of {NDJSON}",
            resp.header("content-type")
        );
        let lines = ndjson_lines(&resp.text, &url);
        for line in &lines {
            assert_eq!(
                line["resourceType"], rtype,
                "a line of the {rtype} file {url} is not a {rtype}: {line}"
            );
            // Resources have ids; the OperationOutcomes of `error` need none.
            assert!(
                rtype == "OperationOutcome" || line["id"].is_string(),
                "{url}: a line without id: {line}"
            );
        }
        let count = entry["count"].as_u64().unwrap();
        assert_eq!(
            lines.len() as u64,
            count,
            "{url}: the manifest's count is not the number of lines"
        );
        File {
            rtype,
            url,
            count,
            bytes: resp.text.len(),
            lines,
        }
    }

    /// Kicks off `path` by `GET`, waits, downloads: the whole export.
    pub async fn export(&self, path: &str) -> Export {
        let url = self.start(path).await;
        let manifest = self.complete(&url).await;
        let expected_request = self.server.url(path);
        assert_eq!(
            manifest["request"], expected_request,
            "the manifest's request is the kick-off URL: {manifest}"
        );
        self.fetch(&manifest).await
    }
}

/// The lines of an NDJSON text, each parsed; panics on an empty line or one that is not a
/// JSON object.
#[track_caller]
pub fn ndjson_lines(text: &str, what: &str) -> Vec<Value> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Vec::new();
    }
    body.split('\n')
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: a line is not JSON ({e}): {line:?}"));
            assert!(value.is_object(), "{what}: a line is not an object: {line}");
            value
        })
        .collect()
}

/// A kick-off that must be accepted: 202 with an absolute `Content-Location` under the
/// server's base; the status URL.
#[track_caller]
pub fn assert_accepted(server: &TestServer, resp: &Resp, what: &str) -> String {
    assert_eq!(resp.status, 202, "{what}: {}", resp.describe());
    let location = resp
        .header("content-location")
        .unwrap_or_else(|| panic!("{what}: 202 without Content-Location: {}", resp.describe()))
        .to_owned();
    let parsed = url::Url::parse(&location)
        .unwrap_or_else(|e| panic!("{what}: Content-Location {location:?} is not absolute: {e}"));
    assert!(
        matches!(parsed.scheme(), "http" | "https"),
        "{what}: Content-Location {location}"
    );
    assert!(
        location.starts_with(&format!("{}/", server.base)),
        "{what}: Content-Location {location} is not under the base {}",
        server.base
    );
    location
}

/// `Retry-After` in seconds (a number, as the server writes it).
#[track_caller]
pub fn retry_after(resp: &Resp, what: &str) -> u64 {
    let value = resp
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After: {}", resp.describe()));
    value
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After {value:?} is not a number of seconds"))
}

/// A status answer in progress: 202, `X-Progress` under 100 characters, `Retry-After`.
#[track_caller]
pub fn check_in_progress(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 202, "{what}: {}", resp.describe());
    let progress = resp
        .header("x-progress")
        .unwrap_or_else(|| panic!("{what}: 202 without X-Progress: {}", resp.describe()));
    assert!(
        !progress.trim().is_empty() && progress.chars().count() < 100,
        "{what}: X-Progress {progress:?} is not a short text"
    );
    retry_after(resp, what);
}

/// A completed status answer: 200, `application/json`, `Expires` in the future, and the
/// manifest's keys; returns the manifest.
#[track_caller]
pub fn check_manifest(server: &TestServer, resp: &Resp, requires_token: bool, what: &str) -> Value {
    assert_eq!(resp.status, 200, "{what}: {}", resp.describe());
    assert!(
        resp.content_type().starts_with("application/json"),
        "{what}: the manifest's content type {:?} is not application/json",
        resp.header("content-type")
    );
    let expires = parse_http_date(
        resp.header("expires")
            .unwrap_or_else(|| panic!("{what}: no Expires: {}", resp.describe())),
    );
    assert!(
        expires + Duration::from_secs(1) >= SystemTime::now(),
        "{what}: Expires is in the past: {}",
        resp.describe()
    );
    let manifest = resp.json.clone();
    let time = manifest["transactionTime"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no transactionTime: {manifest}"));
    let time = parse_instant(time);
    assert!(
        time.timestamp() > 1_700_000_000,
        "{what}: transactionTime {time}"
    );
    assert!(
        manifest["request"].is_string(),
        "{what}: no request: {manifest}"
    );
    assert_eq!(
        manifest["requiresAccessToken"], requires_token,
        "{what}: requiresAccessToken: {manifest}"
    );
    for list in ["output", "error"] {
        let entries = manifest[list]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {list} is not an array: {manifest}"));
        for entry in entries {
            assert!(
                entry["type"].is_string(),
                "{what}: {list} entry without type: {entry}"
            );
            let url = entry["url"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {list} entry without url: {entry}"));
            assert!(
                url.starts_with(&format!("{}/", server.base)) && url::Url::parse(url).is_ok(),
                "{what}: {list} url {url} is not an absolute URL under {}",
                server.base
            );
            assert!(
                entry["count"].is_u64(),
                "{what}: {list} entry without count: {entry}"
            );
        }
    }
    let urls: BTreeSet<&str> = ["output", "error"]
        .iter()
        .flat_map(|l| manifest[*l].as_array().unwrap())
        .filter_map(|e| e["url"].as_str())
        .collect();
    let total =
        manifest["output"].as_array().unwrap().len() + manifest["error"].as_array().unwrap().len();
    assert_eq!(
        urls.len(),
        total,
        "{what}: two entries share a url: {manifest}"
    );
    manifest
}

/// A downloaded export.
#[derive(Debug)]
pub struct Export {
    pub manifest: Value,
    pub files: Vec<File>,
}

/// One downloaded file.
#[derive(Debug)]
pub struct File {
    pub rtype: String,
    pub url: String,
    pub count: u64,
    pub bytes: usize,
    pub lines: Vec<Value>,
}

impl Export {
    pub fn resources(&self) -> impl Iterator<Item = &Value> {
        self.files.iter().flat_map(|f| f.lines.iter())
    }

    /// Every `Type/id` exported.
    pub fn ids(&self) -> BTreeSet<String> {
        self.resources().map(key).collect()
    }

    /// The types of the output files.
    pub fn types(&self) -> BTreeSet<String> {
        self.files.iter().map(|f| f.rtype.clone()).collect()
    }

    /// The resource `Type/id`, when exported.
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.resources().find(|r| key(r) == k)
    }

    /// The transactionTime.
    pub fn transaction_time(&self) -> String {
        self.manifest["transactionTime"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}
