//! The `fhir-server` binary: configuration from the environment, telemetry, then serve;
//! `fhir-server reindex` rebuilds the search index instead, and exits.

use fhir_server::{Config, run, telemetry};
use store::{MIGRATOR, Store};

/// mimalloc: a request allocates and frees many small values (JSON trees, headers), where
/// it is markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_json);
    match std::env::args().nth(1).as_deref() {
        None => {
            tracing::info!(?config, "starting");
            run(config).await
        }
        Some("reindex") => reindex(config).await,
        Some(other) => anyhow::bail!("unknown command `{other}` (known: reindex)"),
    }
}

/// Re-indexes every current resource with the built-in search parameter definitions
/// (after applying pending migrations); a server may keep serving meanwhile.
async fn reindex(config: Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database_url, config.database_max_connections)
        .await?
        .with_server_base(&config.base());
    MIGRATOR.run(store.pool()).await?;
    let done = store.reindex_all().await?;
    tracing::info!(resources = done.resources, "re-indexed");
    Ok(())
}
