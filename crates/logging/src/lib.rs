//! Log output of Ferrum's binaries: `RUST_LOG` filters (default `info`), `FHIR_LOG_FORMAT`
//! picks text or JSON lines. What the events say (ids and types, never patient data) is
//! each binary's own concern.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: text or JSON lines, coloured only on a terminal (a log
/// file or collector gets plain text).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
