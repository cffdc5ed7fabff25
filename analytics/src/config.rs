//! Worker configuration, read once from the environment at start-up (see `.env.example`).

use std::fmt;

use anyhow::{Context, bail};
use events::DurableQueue;
use url::Url;

use crate::facts::Kind;

/// The most deliveries applied in one transaction.
const MAX_BATCH: usize = 100;

/// Everything the worker is told by its environment.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`: PostgreSQL, the database the server writes (holds a secret).
    pub database_url: String,
    /// `RABBITMQ_URL`: the broker (may hold a secret).
    pub rabbitmq_url: String,
    /// `ANALYTICS_EXCHANGE`: the change exchange the queue is bound to.
    pub exchange: String,
    /// `ANALYTICS_QUEUE`: the worker's durable queue; `<queue>.dead` holds what it refused.
    pub queue: String,
    /// `ANALYTICS_PREFETCH`: unacknowledged deliveries the broker may send ahead.
    pub prefetch: u16,
    /// `ANALYTICS_CONCURRENCY`: transactions applying events at once.
    pub concurrency: usize,
    /// `ANALYTICS_MAX_DELIVERIES`: deliveries of one message before it is dead-lettered.
    pub max_deliveries: u32,
    /// `ANALYTICS_AUTO_ACCOUNT`: create a billing Account for every new Patient.
    pub auto_account: bool,
    /// `ANALYTICS_ACCOUNT_QUEUE`: the durable queue of the billing account consumer;
    /// `<queue>.dead` holds what it refused.
    pub account_queue: String,
    /// `ANALYTICS_PROCESSED_RETENTION_DAYS`: how long a processed event's marker is kept.
    pub processed_retention: std::time::Duration,
    /// `FHIR_LOG_FORMAT`: `text` or `json`.
    pub log_json: bool,
}

impl Config {
    /// Reads the configuration, failing fast on anything malformed.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration from `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str, default: &str| lookup(name).unwrap_or_else(|| default.to_owned());
        let log_json = match get("FHIR_LOG_FORMAT", "text").as_str() {
            "text" => false,
            "json" => true,
            _ => bail!("FHIR_LOG_FORMAT must be text or json"),
        };
        let prefetch: u16 = parse(&get("ANALYTICS_PREFETCH", "128"), "ANALYTICS_PREFETCH")?;
        let concurrency: usize =
            parse(&get("ANALYTICS_CONCURRENCY", "4"), "ANALYTICS_CONCURRENCY")?;
        if prefetch == 0 || concurrency == 0 {
            bail!("ANALYTICS_PREFETCH and ANALYTICS_CONCURRENCY must be at least 1");
        }
        let config = Config {
            database_url: get(
                "DATABASE_URL",
                "postgres://ferrum:ferrum@127.0.0.1:5432/ferrum",
            ),
            rabbitmq_url: get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            exchange: get("ANALYTICS_EXCHANGE", events::EXCHANGE),
            queue: get("ANALYTICS_QUEUE", "analytics.changes"),
            prefetch,
            concurrency,
            max_deliveries: parse(
                &get("ANALYTICS_MAX_DELIVERIES", "10"),
                "ANALYTICS_MAX_DELIVERIES",
            )?,
            auto_account: parse(
                &get("ANALYTICS_AUTO_ACCOUNT", "true"),
                "ANALYTICS_AUTO_ACCOUNT",
            )?,
            account_queue: get("ANALYTICS_ACCOUNT_QUEUE", "analytics.accounts"),
            processed_retention: std::time::Duration::from_secs(
                86_400
                    * parse::<u64>(
                        &get("ANALYTICS_PROCESSED_RETENTION_DAYS", "7"),
                        "ANALYTICS_PROCESSED_RETENTION_DAYS",
                    )?,
            ),
            log_json,
        };
        config
            .durable_queue()
            .check()
            .context("ANALYTICS_QUEUE, ANALYTICS_EXCHANGE or ANALYTICS_MAX_DELIVERIES")?;
        config
            .account_durable_queue()
            .check()
            .context("ANALYTICS_ACCOUNT_QUEUE")?;
        if config.account_queue == config.queue {
            bail!("ANALYTICS_ACCOUNT_QUEUE must differ from ANALYTICS_QUEUE");
        }
        Ok(config)
    }

    /// The queue the worker consumes: bound to every change of the projected types.
    pub fn durable_queue(&self) -> DurableQueue {
        DurableQueue {
            exchange: self.exchange.clone(),
            name: self.queue.clone(),
            bindings: Kind::ALL
                .iter()
                .map(|kind| format!("{}.*", kind.as_str()))
                .collect(),
            max_deliveries: self.max_deliveries,
        }
    }

    /// The queue of the billing account consumer: bound to the creation of Patients only.
    pub fn account_durable_queue(&self) -> DurableQueue {
        DurableQueue {
            exchange: self.exchange.clone(),
            name: self.account_queue.clone(),
            bindings: vec![format!("{}.create", Kind::Patient.as_str())],
            max_deliveries: self.max_deliveries,
        }
    }

    /// Deliveries applied in one transaction, at most: the prefetch shared by the tasks,
    /// so that a backlog keeps every task busy.
    pub fn batch_size(&self) -> usize {
        (usize::from(self.prefetch) / self.concurrency).clamp(1, MAX_BATCH)
    }

    /// Database connections: one per batch applied at once, one for rebuilds and reports.
    pub fn database_connections(&self) -> u32 {
        u32::try_from(self.concurrency.saturating_add(1)).unwrap_or(u32::MAX)
    }
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
            .field("database_url", &redact(&self.database_url))
            .field("rabbitmq_url", &redact(&self.rabbitmq_url))
            .field("exchange", &self.exchange)
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("concurrency", &self.concurrency)
            .field("max_deliveries", &self.max_deliveries)
            .field("auto_account", &self.auto_account)
            .field("account_queue", &self.account_queue)
            .field("log_json", &self.log_json)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn with(pairs: &[(&str, &str)]) -> anyhow::Result<Config> {
        Config::from_lookup(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn defaults_match_the_documentation() {
        let config = with(&[]).unwrap();
        assert_eq!(config.queue, "analytics.changes");
        assert_eq!(config.exchange, "fhir.changes");
        assert_eq!(config.prefetch, 128);
        assert_eq!(config.concurrency, 4);
        assert_eq!(config.batch_size(), 32);
        assert_eq!(config.max_deliveries, 10);
        assert_eq!(config.rabbitmq_url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(
            config.durable_queue().bindings,
            ["Patient.*", "Account.*", "Invoice.*"]
        );
        assert!(config.auto_account);
        assert_eq!(config.account_queue, "analytics.accounts");
        assert_eq!(config.account_durable_queue().bindings, ["Patient.create"]);
    }

    #[test]
    fn malformed_values_fail_fast() {
        assert!(with(&[("ANALYTICS_PREFETCH", "0")]).is_err());
        assert!(with(&[("ANALYTICS_PREFETCH", "70000")]).is_err());
        assert!(with(&[("ANALYTICS_MAX_DELIVERIES", "0")]).is_err());
        assert!(with(&[("ANALYTICS_QUEUE", "")]).is_err());
        assert!(with(&[("ANALYTICS_QUEUE", &"q".repeat(300))]).is_err());
        assert!(with(&[("FHIR_LOG_FORMAT", "xml")]).is_err());
        assert!(with(&[("ANALYTICS_AUTO_ACCOUNT", "yes")]).is_err());
        assert!(with(&[("ANALYTICS_ACCOUNT_QUEUE", "amq.accounts")]).is_err());
        assert!(with(&[("ANALYTICS_ACCOUNT_QUEUE", "analytics.changes")]).is_err());
        assert!(
            !with(&[("ANALYTICS_AUTO_ACCOUNT", "false")])
                .unwrap()
                .auto_account
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let config = with(&[("DATABASE_URL", "postgres://u:secret@h/db")]).unwrap();
        assert!(!format!("{config:?}").contains("secret"));
    }
}
