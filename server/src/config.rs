//! Server configuration, read once from the environment at start-up (see `.env.example`).

use std::fmt;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use store::ReferentialIntegrity;
use url::Url;

/// Everything the server is told by its environment.
#[derive(Clone)]
pub struct Config {
    /// `FHIR_LISTEN_ADDR`: where to listen.
    pub listen_addr: SocketAddr,
    /// `FHIR_BASE_URL`: the public FHIR base; routes are served under its path.
    pub base_url: Url,
    /// `DATABASE_URL`: PostgreSQL connection string (holds a secret).
    pub database_url: String,
    /// `DATABASE_MAX_CONNECTIONS`: pool size.
    pub database_max_connections: u32,
    /// `DATABASE_READ_LANES`: reads by id run at most this many statements at once; more
    /// wait and are answered together (at least 1).
    pub database_read_lanes: usize,
    /// `FHIR_WORKERS`: threads serving requests, each with its share of the connections
    /// and read lanes (at least 1; by default one per core).
    pub workers: usize,
    /// `FHIR_MAX_BODY_BYTES`: larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `FHIR_MAX_REQUESTS_IN_FLIGHT`: requests being answered at once; one more is answered
    /// 503 at once instead of waiting (at least 1).
    pub max_requests_in_flight: usize,
    /// `FHIR_UNIQUE_PATIENT_EMAIL`: refuse two current Patients with the same email.
    pub unique_patient_email: bool,
    /// `FHIR_VALIDATE_PROFILES`: a write claiming a known profile in `meta.profile` must
    /// conform to it (422 otherwise).
    pub validate_profiles: bool,
    /// `FHIR_REFERENTIAL_INTEGRITY`: a write whose local references name resources that do
    /// not exist is refused (400); `FHIR_REFERENTIAL_INTEGRITY_DELETE` (by default the same
    /// as `FHIR_REFERENTIAL_INTEGRITY`): a delete of a resource that current resources refer
    /// to is refused (409). See docs/rest.md, "Referential integrity".
    pub referential_integrity: ReferentialIntegrity,
    /// `FHIR_DEFAULT_PAGE_SIZE`: entries per page when `_count` is absent.
    pub default_page_size: u32,
    /// `FHIR_MAX_PAGE_SIZE`: the largest `_count` honoured (larger ones are cut to it).
    pub max_page_size: u32,
    /// `FHIR_CONDITIONAL_DELETE_MAX`: the most resources one conditional delete removes
    /// (1: single deletes only; more matches are 412).
    pub conditional_delete_max: usize,
    /// `FHIR_BUNDLE_MAX_ENTRIES`: the most entries of a batch or transaction Bundle (more
    /// are 413).
    pub bundle_max_entries: usize,
    /// `FHIR_AUTH`: `smart` (bearer tokens of the issuer, the default) or `none` (no
    /// authorisation at all: local experiments only).
    pub auth_enabled: bool,
    /// `FHIR_AUTH_ISSUER`: the token issuer (its `iss`; discovery and keys under it).
    pub auth_issuer: String,
    /// `FHIR_AUTH_AUDIENCE`: what `aud` must contain; the FHIR base URL by default.
    pub auth_audience: String,
    /// `FHIR_AUTH_ISSUER_INTERNAL_URL`: where this server reaches the issuer when not at the
    /// issuer's own origin (a container network), e.g. `http://keycloak:8081`.
    pub auth_issuer_internal: Option<String>,
    /// `FHIR_AUTH_INTROSPECTION_CLIENT_ID` and `FHIR_AUTH_INTROSPECTION_CLIENT_SECRET`
    /// (holds a secret): when both are set, tokens that are not JWTs are introspected.
    pub auth_introspection: Option<(String, String)>,
    /// `FHIR_AUTH_INTROSPECT_ALL`: introspect JWTs too (revoked tokens are refused at once,
    /// at the cost of a call to the issuer per request).
    pub auth_introspect_all: bool,
    /// `FHIR_LOG_FORMAT`: `text` or `json`.
    pub log_json: bool,
    /// `RABBITMQ_URL`: the broker change events are published to (may hold a secret).
    pub rabbitmq_url: String,
    /// Bulk Data export (`FHIR_EXPORT_*`).
    pub export: ExportConfig,
    /// `FHIR_OUTBOX_RETENTION_HOURS`: how long sent change events stay in the outbox.
    pub outbox_retention: std::time::Duration,
    /// `FHIR_EVENTS`: run the relay that publishes change events. When false the outbox
    /// still fills, so nothing is lost when it is turned back on.
    pub events: bool,
}

impl Config {
    /// Reads the configuration, failing fast on anything malformed.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration from `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str, default: &str| lookup(name).unwrap_or_else(|| default.to_owned());
        let base_url: Url = get("FHIR_BASE_URL", "http://localhost:8080/fhir")
            .parse()
            .context("FHIR_BASE_URL is not a URL")?;
        if base_url.query().is_some() || base_url.fragment().is_some() {
            bail!("FHIR_BASE_URL must not have a query or fragment");
        }
        let log_json = match get("FHIR_LOG_FORMAT", "text").as_str() {
            "text" => false,
            "json" => true,
            _ => bail!("FHIR_LOG_FORMAT must be text or json"),
        };
        let default_page_size = parse(
            &get("FHIR_DEFAULT_PAGE_SIZE", "50"),
            "FHIR_DEFAULT_PAGE_SIZE",
        )?;
        let max_page_size = parse(&get("FHIR_MAX_PAGE_SIZE", "500"), "FHIR_MAX_PAGE_SIZE")?;
        if default_page_size == 0 || default_page_size > max_page_size {
            bail!("FHIR_DEFAULT_PAGE_SIZE must be between 1 and FHIR_MAX_PAGE_SIZE");
        }
        let auth_enabled = match get("FHIR_AUTH", "smart").as_str() {
            "smart" => true,
            "none" => false,
            _ => bail!("FHIR_AUTH must be smart or none"),
        };
        let auth_issuer = get("FHIR_AUTH_ISSUER", "http://localhost:8081/realms/fhir");
        auth_issuer
            .parse::<Url>()
            .context("FHIR_AUTH_ISSUER is not a URL")?;
        let auth_audience = lookup("FHIR_AUTH_AUDIENCE")
            .unwrap_or_else(|| base_url.as_str().trim_end_matches('/').to_owned());
        let auth_introspection = match (
            lookup("FHIR_AUTH_INTROSPECTION_CLIENT_ID"),
            lookup("FHIR_AUTH_INTROSPECTION_CLIENT_SECRET"),
        ) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (None, None) => None,
            _ => bail!(
                "FHIR_AUTH_INTROSPECTION_CLIENT_ID and FHIR_AUTH_INTROSPECTION_CLIENT_SECRET \
                 go together"
            ),
        };
        let auth_introspect_all = parse(
            &get("FHIR_AUTH_INTROSPECT_ALL", "false"),
            "FHIR_AUTH_INTROSPECT_ALL",
        )?;
        if auth_introspect_all && auth_introspection.is_none() {
            bail!("FHIR_AUTH_INTROSPECT_ALL needs FHIR_AUTH_INTROSPECTION_CLIENT_ID and _SECRET");
        }
        let integrity_writes: bool = parse(
            &get("FHIR_REFERENTIAL_INTEGRITY", "true"),
            "FHIR_REFERENTIAL_INTEGRITY",
        )?;
        let referential_integrity = ReferentialIntegrity {
            writes: integrity_writes,
            deletes: match lookup("FHIR_REFERENTIAL_INTEGRITY_DELETE") {
                Some(value) => parse(&value, "FHIR_REFERENTIAL_INTEGRITY_DELETE")?,
                None => integrity_writes,
            },
        };
        let auth_issuer_internal = lookup("FHIR_AUTH_ISSUER_INTERNAL_URL");
        if let Some(internal) = &auth_issuer_internal {
            internal
                .parse::<Url>()
                .context("FHIR_AUTH_ISSUER_INTERNAL_URL is not a URL")?;
        }
        Ok(Config {
            auth_enabled,
            auth_issuer,
            auth_audience,
            auth_issuer_internal,
            auth_introspection,
            auth_introspect_all,
            listen_addr: parse(&get("FHIR_LISTEN_ADDR", "0.0.0.0:8080"), "FHIR_LISTEN_ADDR")?,
            base_url,
            database_url: get(
                "DATABASE_URL",
                "postgres://ferrum:ferrum@127.0.0.1:5432/ferrum",
            ),
            database_max_connections: parse(
                &get("DATABASE_MAX_CONNECTIONS", "16"),
                "DATABASE_MAX_CONNECTIONS",
            )?,
            database_read_lanes: match parse(
                &get(
                    "DATABASE_READ_LANES",
                    &store::DEFAULT_READ_LANES.to_string(),
                ),
                "DATABASE_READ_LANES",
            )? {
                0 => bail!("DATABASE_READ_LANES must be at least 1"),
                n => n,
            },
            workers: match parse(
                &get(
                    "FHIR_WORKERS",
                    &std::thread::available_parallelism()
                        .map_or(1, std::num::NonZeroUsize::get)
                        .to_string(),
                ),
                "FHIR_WORKERS",
            )? {
                0 => bail!("FHIR_WORKERS must be at least 1"),
                n => n,
            },
            max_body_bytes: parse(
                &get("FHIR_MAX_BODY_BYTES", "8388608"),
                "FHIR_MAX_BODY_BYTES",
            )?,
            max_requests_in_flight: parse::<usize>(
                &get("FHIR_MAX_REQUESTS_IN_FLIGHT", "1024"),
                "FHIR_MAX_REQUESTS_IN_FLIGHT",
            )
            .and_then(|n| match n {
                0 => anyhow::bail!("FHIR_MAX_REQUESTS_IN_FLIGHT must be at least 1"),
                n => Ok(n),
            })?,
            unique_patient_email: parse(
                &get("FHIR_UNIQUE_PATIENT_EMAIL", "true"),
                "FHIR_UNIQUE_PATIENT_EMAIL",
            )?,
            validate_profiles: parse(
                &get("FHIR_VALIDATE_PROFILES", "true"),
                "FHIR_VALIDATE_PROFILES",
            )?,
            referential_integrity,
            default_page_size,
            max_page_size,
            conditional_delete_max: match parse(
                &get("FHIR_CONDITIONAL_DELETE_MAX", "1"),
                "FHIR_CONDITIONAL_DELETE_MAX",
            )? {
                0 => bail!("FHIR_CONDITIONAL_DELETE_MAX must be at least 1"),
                n => n,
            },
            bundle_max_entries: match parse(
                &get("FHIR_BUNDLE_MAX_ENTRIES", "1000"),
                "FHIR_BUNDLE_MAX_ENTRIES",
            )? {
                0 => bail!("FHIR_BUNDLE_MAX_ENTRIES must be at least 1"),
                n => n,
            },
            log_json,
            rabbitmq_url: get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            events: parse(&get("FHIR_EVENTS", "true"), "FHIR_EVENTS")?,
            export: ExportConfig {
                dir: lookup("FHIR_EXPORT_DIR")
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| std::env::temp_dir().join("ferrum-export")),
                max_file_bytes: parse(
                    &get("FHIR_EXPORT_MAX_FILE_BYTES", "104857600"),
                    "FHIR_EXPORT_MAX_FILE_BYTES",
                )?,
                retention: std::time::Duration::from_secs(parse(
                    &get("FHIR_EXPORT_RETENTION_SECONDS", "86400"),
                    "FHIR_EXPORT_RETENTION_SECONDS",
                )?),
                max_jobs: parse(&get("FHIR_EXPORT_MAX_JOBS", "4"), "FHIR_EXPORT_MAX_JOBS")?,
                poll_interval: std::time::Duration::from_millis(parse(
                    &get("FHIR_EXPORT_POLL_INTERVAL_MS", "2000"),
                    "FHIR_EXPORT_POLL_INTERVAL_MS",
                )?),
            },
            outbox_retention: std::time::Duration::from_secs(
                3600 * parse::<u64>(
                    &get("FHIR_OUTBOX_RETENTION_HOURS", "24"),
                    "FHIR_OUTBOX_RETENTION_HOURS",
                )?,
            ),
        })
    }

    /// The FHIR base without a trailing slash, as written in links and `Location`.
    pub fn base(&self) -> String {
        self.base_url.as_str().trim_end_matches('/').to_owned()
    }

    /// The path the FHIR routes are served under (`/fhir`), or empty for the root.
    pub fn base_path(&self) -> String {
        self.base_url.path().trim_end_matches('/').to_owned()
    }
}

/// Bulk Data export settings (docs/bulk-export.md).
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// `FHIR_EXPORT_DIR`: where export files are written (shared by the servers of one
    /// database); a `ferrum-export` directory in the system's temporary directory by default.
    pub dir: std::path::PathBuf,
    /// `FHIR_EXPORT_MAX_FILE_BYTES`: a file is closed and the next one begun past this size.
    pub max_file_bytes: u64,
    /// `FHIR_EXPORT_RETENTION_SECONDS`: how long a finished job and its files are kept.
    pub retention: std::time::Duration,
    /// `FHIR_EXPORT_MAX_JOBS`: jobs accepted or running at once; more kick-offs are 429.
    pub max_jobs: i64,
    /// `FHIR_EXPORT_POLL_INTERVAL_MS`: the least time between two status requests of a job
    /// (sooner is 429), and the `Retry-After` of a job in progress.
    pub poll_interval: std::time::Duration,
}

fn parse<T: std::str::FromStr>(value: &str, name: &str) -> anyhow::Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{name} has an invalid value"))
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |text: &str| {
            let mut url = Url::parse(text).ok();
            if let Some(url) = url.as_mut().filter(|u| u.password().is_some()) {
                let _ = url.set_password(Some("redacted"));
            }
            url.map(String::from)
        };
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("base_url", &self.base_url.as_str())
            .field("database_url", &redact(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("database_read_lanes", &self.database_read_lanes)
            .field("workers", &self.workers)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_requests_in_flight", &self.max_requests_in_flight)
            .field("unique_patient_email", &self.unique_patient_email)
            .field("validate_profiles", &self.validate_profiles)
            .field("referential_integrity", &self.referential_integrity)
            .field("default_page_size", &self.default_page_size)
            .field("max_page_size", &self.max_page_size)
            .field("conditional_delete_max", &self.conditional_delete_max)
            .field("bundle_max_entries", &self.bundle_max_entries)
            .field("export", &self.export)
            .field("outbox_retention", &self.outbox_retention)
            .field("auth_enabled", &self.auth_enabled)
            .field("auth_issuer", &self.auth_issuer)
            .field("auth_audience", &self.auth_audience)
            .field("auth_issuer_internal", &self.auth_issuer_internal)
            .field(
                "auth_introspection_client",
                &self.auth_introspection.as_ref().map(|(id, _)| id),
            )
            .field("auth_introspect_all", &self.auth_introspect_all)
            .field("log_json", &self.log_json)
            .field("rabbitmq_url", &redact(&self.rabbitmq_url))
            .field("events", &self.events)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let config = Config::from_lookup(|_| None).expect("defaults are valid");
        assert_eq!(config.listen_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(config.base(), "http://localhost:8080/fhir");
        assert_eq!(config.base_path(), "/fhir");
        assert!(config.unique_patient_email);
        assert!(config.validate_profiles);
        assert_eq!(
            config.referential_integrity,
            ReferentialIntegrity {
                writes: true,
                deletes: true
            }
        );
        assert_eq!(config.bundle_max_entries, 1000);
        assert_eq!(config.database_read_lanes, 2);
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(config.workers, cores);
        assert_eq!(config.rabbitmq_url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert!(config.events);
    }

    #[test]
    fn debug_hides_the_database_password() {
        let config = Config::from_lookup(|name| {
            (name == "DATABASE_URL").then(|| "postgres://u:s3cret@h/db".to_owned())
        })
        .expect("valid");
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn debug_hides_the_broker_password() {
        let config = Config::from_lookup(|name| {
            (name == "RABBITMQ_URL").then(|| "amqp://u:s3cret@h:5672/%2f".to_owned())
        })
        .expect("valid");
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn the_delete_check_follows_the_write_check_unless_set() {
        let integrity = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect();
            Config::from_lookup(|name| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
                .expect("valid")
                .referential_integrity
        };
        let off = integrity(&[("FHIR_REFERENTIAL_INTEGRITY", "false")]);
        assert!(!off.writes && !off.deletes);
        let deletes_only = integrity(&[
            ("FHIR_REFERENTIAL_INTEGRITY", "false"),
            ("FHIR_REFERENTIAL_INTEGRITY_DELETE", "true"),
        ]);
        assert!(!deletes_only.writes && deletes_only.deletes);
        let writes_only = integrity(&[("FHIR_REFERENTIAL_INTEGRITY_DELETE", "false")]);
        assert!(writes_only.writes && !writes_only.deletes);
        assert!(
            Config::from_lookup(|n| (n == "FHIR_REFERENTIAL_INTEGRITY").then(|| "yes".into()))
                .is_err()
        );
    }

    #[test]
    fn rejects_malformed_values() {
        assert!(
            Config::from_lookup(|n| (n == "FHIR_MAX_BODY_BYTES").then(|| "lots".into())).is_err()
        );
        assert!(Config::from_lookup(|n| (n == "FHIR_LOG_FORMAT").then(|| "xml".into())).is_err());
        assert!(Config::from_lookup(|n| (n == "FHIR_WORKERS").then(|| "0".into())).is_err());
    }
}
