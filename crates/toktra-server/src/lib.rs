//! The Toktra backend as a library: the enrollment CA (EST), the mTLS agent face
//! (ingest, budget status), the admin face (usage API, devices, budgets, tokens, API
//! keys, OpenAPI, metrics) and the store (SQLite or PostgreSQL).
//!
//! Start a server with [`Server::start`]; administer one (running or not) with
//! [`Admin`]. `toktra server`, `toktra admin` and `toktra up` are thin layers over these.
//!
//! Enrollment contract for agents (`POST /.well-known/est/simpleenroll`):
//! - body: base64 DER PKCS#10 (RFC 7030; PEM and raw DER are accepted too), CN equal to
//!   the org's CertSubject (default "Toktra Device"), key Ed25519 or ECDSA P-256;
//! - auth: HTTP Basic `ORG_ID:TOKEN` or `Authorization: Bearer TOKEN`;
//! - optional headers [`HEADER_DEVICE_ID`] (a *hint*: used only if it is a valid id that
//!   no device of the org has yet, otherwise the server picks a fresh UUIDv7; the org is
//!   always the token's), [`HEADER_HOSTNAME`], [`HEADER_PLATFORM`],
//!   [`HEADER_AGENT_VERSION`];
//! - reply: `application/pkcs7-mime; smime-type=certs-only`, base64 certs-only PKCS#7
//!   with the device certificate; the identity is in its SAN URI
//!   (`urn:toktra:org:<org>:device:<device>`) and is echoed in [`HEADER_DEVICE_ID`].

pub mod admin_api;
pub mod agent_api;
pub mod budget;
pub mod ca;
mod classify;
pub mod dashboard;
pub mod metrics;
pub mod ops;
pub mod store;
mod tls;

pub use ops::{Admin, CreatedApiKey, CreatedToken};
pub use store::Store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

// One definition in toktra-proto, shared with the agents; re-exported for callers
// of this crate.
pub use toktra_proto::api::{
    HEADER_AGENT_VERSION, HEADER_DEVICE_ID, HEADER_HOSTNAME, HEADER_PLATFORM,
};

/// Name of the SQLite database under the data directory.
pub const SQLITE_FILE: &str = "toktra.db";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("CA: {0}")]
    Ca(#[from] ca::CaError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How to run a server. [`ServerConfig::new`] gives the defaults of `toktra server`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Holds the CA (`ca/`), the SQLite database and nothing else.
    pub data_dir: PathBuf,
    /// The agent face (TLS, client certificates). Port 0 picks a free port.
    pub agent_listen: SocketAddr,
    /// The admin face (API keys). Loopback by default.
    pub admin_listen: SocketAddr,
    /// Names (DNS or IP) in the agent face's TLS certificate.
    pub agent_hostnames: Vec<String>,
    /// `postgres://...`; None keeps everything in SQLite under `data_dir`.
    pub database_url: Option<String>,
    /// Serve the admin face over TLS (same server certificate) instead of plain HTTP.
    pub admin_tls: bool,
    /// Lifetime of the device certificates the CA issues (default 90 days).
    pub device_cert_lifetime: std::time::Duration,
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            agent_listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            agent_hostnames: vec!["localhost".into()],
            database_url: None,
            admin_tls: false,
            device_cert_lifetime: ca::default_device_cert_lifetime(),
        }
    }
}

/// Opens the store a configuration names: PostgreSQL if a URL is given, else SQLite in
/// the data directory (created if needed). Migrations run here.
pub async fn open_store(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> Result<Arc<dyn Store>, store::StoreError> {
    match database_url {
        Some(url) => Ok(Arc::new(store::postgres::PgStore::connect(url).await?)),
        None => {
            std::fs::create_dir_all(data_dir).map_err(|source| store::StoreError::Io {
                path: data_dir.to_owned(),
                source,
            })?;
            let path = data_dir.join(SQLITE_FILE);
            Ok(Arc::new(
                tokio::task::spawn_blocking(move || store::sqlite::SqliteStore::open(&path))
                    .await
                    .map_err(|e| store::StoreError::Worker(e.to_string()))??,
            ))
        }
    }
}

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ca: Arc<ca::Ca>,
    pub metrics: Arc<metrics::Metrics>,
}

pub struct Server;

/// A running server. Dropping it does not stop it; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    pub agent_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The root CA in PEM: what agents trust for the agent face (and what
    /// `/.well-known/est/cacerts` serves, with the intermediate).
    pub root_ca_pem: String,
    state: AppState,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    /// Administration of this server's store, in-process.
    pub fn admin(&self) -> Admin {
        Admin::new(self.state.store.clone())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting, closes the listeners and waits for the accept loops to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

impl Server {
    /// Creates or loads the CA, opens (and migrates) the store, binds both faces and
    /// serves them on the current tokio runtime.
    pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
        let ca_dir = config.data_dir.join("ca");
        let hostnames = config.agent_hostnames.clone();
        let ca = tokio::task::spawn_blocking(move || ca::Ca::load_or_create(&ca_dir, &hostnames))
            .await
            .map_err(|e| ServerError::Tls(e.to_string()))??;
        let mut ca = ca;
        ca.set_device_cert_lifetime(config.device_cert_lifetime);
        let ca = Arc::new(ca);
        let store = open_store(&config.data_dir, config.database_url.as_deref()).await?;
        let state = AppState {
            store,
            ca: ca.clone(),
            metrics: Arc::new(metrics::Metrics::default()),
        };
        let (stop, stop_rx) = watch::channel(false);

        let agent_listener = tokio::net::TcpListener::bind(config.agent_listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.agent_listen,
                source,
            })?;
        let admin_listener = tokio::net::TcpListener::bind(config.admin_listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.admin_listen,
                source,
            })?;
        let agent_addr = agent_listener
            .local_addr()
            .map_err(|source| ServerError::Bind {
                addr: config.agent_listen,
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| ServerError::Bind {
                addr: config.admin_listen,
                source,
            })?;

        let agent_tls = tls::agent_server_config(&ca)?;
        let agent_router = agent_api::router(state.clone());
        let mut tasks = vec![tokio::spawn(tls::serve(
            agent_listener,
            Some(agent_tls),
            agent_router,
            stop_rx.clone(),
            state.metrics.clone(),
        ))];
        let admin_router = admin_api::admin_router(state.clone()).merge(dashboard::router(
            Arc::new(dashboard::store_data::StoreData::new(state.store.clone())),
            dashboard::DashboardConfig {
                ingest_url: format!(
                    "https://{}:{}",
                    config
                        .agent_hostnames
                        .first()
                        .map_or("localhost", String::as_str),
                    agent_addr.port()
                ),
                secure_cookies: config.admin_tls,
                root_ca_pem: ca.root_pem(),
            },
        ));
        let admin_tls = if config.admin_tls {
            Some(tls::admin_server_config(&ca)?)
        } else {
            None
        };
        tasks.push(tokio::spawn(tls::serve(
            admin_listener,
            admin_tls,
            admin_router,
            stop_rx,
            state.metrics.clone(),
        )));
        tracing::info!(%agent_addr, %admin_addr, "toktra server listening");
        Ok(ServerHandle {
            agent_addr,
            admin_addr,
            root_ca_pem: ca.root_pem(),
            state,
            stop,
            tasks,
        })
    }
}
