//! The `fhir-server` binary: configuration from the environment, telemetry, then serve;
//! `fhir-server reindex` rebuilds the search index instead, and exits.

use fhir_server::{Config, run, telemetry};
use store::{MIGRATOR, Store};

/// mimalloc: a request allocates and frees many small values (JSON trees, headers), where
/// it is markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `arena_eager_commit` (the option's index in mimalloc's `mi_option_e`).
#[cfg(target_os = "linux")]
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Off: by default mimalloc commits its arena up front on Linux, and the pages it frees then
/// stay in the resident set, so that the set grows with how long the process has been busy
/// (an export of 1,000,000 resources peaked 10 to 20 MB above one of 100,000). Without it,
/// freed pages go back to the system after the purge delay, and the peak is the working set
/// (bench/README.md, "Benchmark: export"). `MIMALLOC_ARENA_EAGER_COMMIT` in the environment
/// still overrides this default.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
extern "C" fn allocator_defaults() {
    // SAFETY: sets a default in mimalloc's option table; nothing else runs yet.
    unsafe { libmimalloc_sys::mi_option_set_default(ARENA_EAGER_COMMIT, 0) };
}

/// Runs [`allocator_defaults`] when the binary is loaded: after mimalloc's own initialisation
/// (a constructor of priority 101) and before the runtime's first allocation, which reserves
/// the arena.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static ALLOCATOR_DEFAULTS: extern "C" fn() = allocator_defaults;

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
        .with_server_base(&config.base())
        .with_referential_integrity(config.referential_integrity);
    MIGRATOR.run(store.pool()).await?;
    let done = store.reindex_all().await?;
    tracing::info!(resources = done.resources, "re-indexed");
    Ok(())
}
