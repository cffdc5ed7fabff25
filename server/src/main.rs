//! The `fhir-server` binary: configuration from the environment, telemetry, then serve.

use fhir_server::{Config, run, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_json);
    tracing::info!(?config, "starting");
    run(config).await
}
