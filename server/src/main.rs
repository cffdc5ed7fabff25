//! The `fhir-server` binary: configuration from the environment, telemetry, then serve.

use fhir_server::{Config, run, telemetry};

/// mimalloc: a request allocates and frees many small values (JSON trees, headers), where
/// it is markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_json);
    tracing::info!(?config, "starting");
    run(config).await
}
