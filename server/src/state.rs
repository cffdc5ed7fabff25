//! The one application state every handler shares.

use std::sync::Arc;

use store::Store;

use crate::config::Config;

/// Cheap to clone: a pool handle and shared configuration.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    /// `config.base()`, computed once.
    pub base: Arc<str>,
    /// When the server started (the CapabilityStatement's date).
    pub started: chrono::DateTime<chrono::Utc>,
}

impl AppState {
    /// State over a connected store.
    pub fn new(store: Store, config: Config) -> Self {
        AppState {
            base: config.base().into(),
            store,
            config: Arc::new(config),
            started: chrono::Utc::now(),
        }
    }
}
