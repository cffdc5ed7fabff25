//! The one application state every handler shares.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use store::Store;
use tokio::sync::Semaphore;

use crate::auth::Auth;
use crate::auth::introspection::Credentials;
use crate::auth::token::TokenValidator;
use crate::config::Config;

/// Connections the analytics reports may hold at once, beside the store's.
const ANALYTICS_CONNECTIONS: u32 = 2;

/// What every handler shares, behind one reference count: each request clones it a few
/// times (extractors, middleware), so a clone is one atomic increment.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of [`AppState`]: pool handles and configuration.
#[derive(Debug)]
pub struct Shared {
    pub store: Store,
    /// The analytics reports' connections (`analytics_worker::reports` reads the fact
    /// tables with them), opened on first use, so that a slow report never holds a
    /// connection the request paths or the relay need.
    pub analytics: PgPool,
    pub config: Arc<Config>,
    /// `config.base()`, computed once.
    pub base: Arc<str>,
    /// When the server started (the CapabilityStatement's date).
    pub started: chrono::DateTime<chrono::Utc>,
    /// How requests are authenticated.
    pub auth: Auth,
    /// A permit per request being answered (`FHIR_MAX_REQUESTS_IN_FLIGHT`).
    pub in_flight: Arc<Semaphore>,
}

impl AppState {
    /// State over a connected store. Fails when the token issuer's URL is not usable.
    pub fn new(store: Store, config: Config) -> anyhow::Result<Self> {
        let analytics = analytics_pool(&store);
        let auth = if config.auth_enabled {
            let mut validator = TokenValidator::new(
                &config.auth_issuer,
                &config.auth_audience,
                config.auth_issuer_internal.as_deref(),
            )?;
            if let Some((client_id, client_secret)) = &config.auth_introspection {
                let credentials = Credentials {
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                };
                validator = validator.with_introspection(credentials, config.auth_introspect_all);
            }
            Auth::Tokens(Arc::new(validator))
        } else {
            tracing::warn!(
                "FHIR_AUTH is none: every request may read and write everything; \
                 never run this way with real data"
            );
            Auth::Off
        };
        let config_in_flight = config.max_requests_in_flight;
        Ok(AppState(Arc::new(Shared {
            base: config.base().into(),
            store,
            analytics,
            config: Arc::new(config),
            started: chrono::Utc::now(),
            auth,
            in_flight: Arc::new(Semaphore::new(config_in_flight)),
        })))
    }

    /// The same state (configuration, authentication, the limit of requests in flight)
    /// over `store`, with analytics connections of its own: for a worker thread, whose
    /// runtime the new pools' connections then belong to (called on it).
    #[must_use]
    pub fn with_store(&self, store: Store) -> Self {
        AppState(Arc::new(Shared {
            analytics: analytics_pool(&store),
            store,
            config: Arc::clone(&self.config),
            base: Arc::clone(&self.base),
            started: self.started,
            auth: self.auth.clone(),
            in_flight: Arc::clone(&self.in_flight),
        }))
    }

    /// The same state with requests authenticated by `auth` (before it is shared).
    ///
    /// # Panics
    /// When the state is already shared (cloned).
    #[must_use]
    pub fn with_auth(mut self, auth: Auth) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("authentication is set before the state is shared")
            .auth = auth;
        self
    }
}

/// The analytics reports' pool on `store`'s database, opened on first use.
fn analytics_pool(store: &Store) -> PgPool {
    PgPoolOptions::new()
        .max_connections(ANALYTICS_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with((*store.pool().connect_options()).clone())
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
