//! peaqOS Machine Markets orchestrator: one server for `/health` and the `/api/v1` surface.
//! [`run`] is what `main` and the integration tests call.

pub mod agents;
pub mod audit;
pub mod catalog;
pub mod clients;
pub mod clock;
pub mod config;
pub mod console;
pub mod crypto;
pub mod engine;
pub mod error;
pub mod graph;
pub mod health;
pub mod http;
pub mod identity;
pub mod machines;
pub mod market;
pub mod metrics;
pub mod money;
pub mod openapi;
pub mod orders;
pub mod pairings;
pub mod payments;
pub mod policies;
pub mod routes;
pub mod runtime;
pub mod store;
pub mod tasks;
pub mod wire;
pub mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::clients::mcr::McrResolver;
use crate::clock::Clock;
use crate::config::{Config, Secret};
use crate::crypto::secrets::SecretBox;
use crate::http::auth::ApiKeys;
use crate::store::Store;

/// Shared state of one server process. Nothing correctness depends on lives only here: the
/// database is the source of truth (DESIGN.md).
pub struct App {
    pub config: Config,
    pub store: Store,
    pub clock: Clock,
    /// HS256 key for pairing JWTs and HMAC key for challenges.
    pub session_secret: Secret,
    /// Encryption of stored secrets and idempotent responses.
    pub secrets: SecretBox,
    pub api_keys: ApiKeys,
    /// Machine identity resolution against the peaqOS MCR API.
    pub mcr: McrResolver,
    /// Every outbound client: never follows redirects, refuses link-local and cloud-metadata
    /// addresses, and checks network scopes by the address connected to.
    pub outbound: clients::outbound::Outbound,
    pub worker: worker::WorkerState,
    /// The catalogue, loaded and validated at start-up; read-only.
    pub catalog: catalog::Catalog,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreStartError),
    #[error("cannot load the session secret: {0}")]
    SessionSecret(sqlx::Error),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(reqwest::Error),
    #[error("cannot serve: {0}")]
    Serve(#[from] std::io::Error),
    #[error("the catalogue is invalid:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Catalog(Vec<catalog::load::Problem>),
}

/// How long start-up waits for an unreachable database.
pub const DATABASE_WAIT: Duration = Duration::from_secs(30);

const SESSION_SECRET_NAME: &str = "agent-pairing-session-secret";

impl App {
    /// Connects, migrates and loads what the server needs before it takes requests.
    pub async fn start(config: Config, clock: Clock) -> Result<Arc<App>, StartError> {
        let (catalog, counts) = catalog::load::load(config.catalog_dir.as_deref(), clock.now_ms())
            .map_err(StartError::Catalog)?;
        tracing::info!(%counts, "catalogue loaded");
        let store = Store::connect(
            &config.database,
            DATABASE_WAIT,
            Duration::from_millis(config.database_timeout_ms),
        )
        .await?;
        store.migrate().await?;

        let session_secret = match &config.session_secret {
            Some(secret) => secret.clone(),
            None => {
                let candidate = hex::encode(store::random_bytes::<32>());
                let (value, created) = store::secrets::get_or_insert(
                    &store,
                    SESSION_SECRET_NAME,
                    &candidate,
                    clock.now_ms(),
                )
                .await
                .map_err(StartError::SessionSecret)?;
                if created {
                    tracing::warn!(
                        "PEAQOS_AGENT_PAIRING_SESSION_SECRET is unset: generated one and stored it in the database; set it explicitly for production"
                    );
                }
                Secret::new(value)
            }
        };
        let secrets = match &config.secrets_key {
            Some(key) => SecretBox::new(&key.0),
            None => SecretBox::derived_from(session_secret.expose().as_bytes()),
        };
        let api_keys = ApiKeys::new(config.api_keys.iter().map(Secret::expose));
        // Each call sets its own timeout.
        let outbound = clients::outbound::Outbound::new(&config.runtime_allowed_network_scopes)
            .map_err(StartError::HttpClient)?;
        let mcr = McrResolver::new(
            outbound.trusted().clone(),
            config.mcr_api_url.clone(),
            config.mcr_cache_ttl_ms,
            clock.clone(),
        )
        .with_timeout(Duration::from_millis(config.mcr_timeout_ms));

        Ok(Arc::new(App {
            config,
            store,
            clock,
            session_secret,
            secrets,
            api_keys,
            mcr,
            outbound,
            worker: worker::WorkerState::default(),
            catalog,
        }))
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; in-flight requests then complete.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    metrics::init();
    let router = routes::router(app.clone());
    let metrics_listener = match app.config.metrics_addr {
        Some(addr) => Some(TcpListener::bind(addr).await?),
        None => None,
    };
    let metrics_server = metrics_listener.map(|listener| {
        let router = routes::metrics_router(app.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::error!(error = %err, "the metrics listener stopped");
            }
        })
    });
    let purge = tokio::spawn(purge_idempotency_records(app.clone()));
    // The first lease attempt happens before requests are served, so readiness does not race it.
    worker::renew(&app).await;
    let background = tokio::spawn(worker::run(app.clone()));
    let config = &app.config;
    let limits = http::server::ConnectionLimits {
        header_read: Duration::from_millis(config.header_read_timeout_ms),
        keep_alive: Duration::from_millis(config.keep_alive_timeout_ms),
        max_connections: config.max_connections,
    };
    let served = http::server::serve(listener, router, limits, shutdown).await;
    purge.abort();
    background.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    worker::release(&app).await;
    app.store.close().await;
    served.map_err(StartError::from)
}

/// Keeps the idempotency table bounded; expiry itself is enforced at reservation time.
async fn purge_idempotency_records(app: Arc<App>) {
    let mut interval = tokio::time::interval(Duration::from_secs(3600));
    loop {
        interval.tick().await;
        if let Err(err) = store::idempotency::purge_expired(&app.store, app.clock.now_ms()).await {
            tracing::warn!(error = %err, "purging expired idempotency records failed");
        }
    }
}
