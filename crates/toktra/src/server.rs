//! `toktra server`: the backend — enrollment CA (EST), mTLS ingest, usage API, metrics.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use toktra_server::{Server, ServerConfig};

/// Run the Toktra backend.
///
/// On first start the server creates a root CA and the "Toktra Intermediate CA" under
/// DIR/ca (files 0600; to bring your own CA, put root.pem, intermediate.pem and
/// intermediate.key there before the first start) and a TLS certificate for the agent
/// face naming every --agent-hostname. Agents trust DIR/ca/root.pem.
///
/// Agent face (TLS): GET /.well-known/est/cacerts, POST /.well-known/est/simpleenroll
/// (Basic ORG_ID:TOKEN or Bearer TOKEN), POST /.well-known/est/simplereenroll (mTLS),
/// POST /v1/ingest/batches (mTLS), GET /v1/agent/budget (mTLS).
///
/// Admin face (Bearer API key from `toktra admin api-key create`): /v1/usage, /v1/orgs/...,
/// /v1/api-keys; open: /v1/openapi.json, /metrics.
///
/// Dashboard on the admin face: /dashboard/ (and / redirects there). Sign in with an
/// account from `toktra admin dashboard-user create --org ORG_ID --email E
/// --password-stdin`; sessions are HttpOnly SameSite=Strict cookies, Secure with
/// --admin-tls.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Data directory: the CA (ca/) and the SQLite database (toktra.db).
    #[arg(
        long,
        value_name = "DIR",
        env = "TOKTRA_DATA",
        default_value = "/var/lib/toktra"
    )]
    data: PathBuf,
    /// Address of the agent face (TLS, client certificates).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    agent_listen: SocketAddr,
    /// Address of the admin face (API keys). Keep it on loopback unless --admin-tls.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    admin_listen: SocketAddr,
    /// DNS name or IP address agents use to reach the agent face; repeat for several.
    #[arg(
        long = "agent-hostname",
        value_name = "NAME",
        default_value = "localhost"
    )]
    agent_hostname: Vec<String>,
    /// Store in PostgreSQL (postgres://user:pass@host/db) instead of SQLite under --data.
    #[arg(long, value_name = "URL", env = "TOKTRA_DATABASE_URL")]
    database_url: Option<String>,
    /// Serve the admin face over TLS with the agent face's certificate.
    #[arg(long)]
    admin_tls: bool,
    /// Log filter (error, warn, info, debug, or a tracing directive).
    #[arg(
        long,
        value_name = "FILTER",
        env = "TOKTRA_LOG",
        default_value = "info"
    )]
    log: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let mut config = ServerConfig::new(&args.data);
        config.agent_listen = args.agent_listen;
        config.admin_listen = args.admin_listen;
        config.agent_hostnames = args.agent_hostname;
        config.database_url = args.database_url;
        config.admin_tls = args.admin_tls;
        let handle = Server::start(config).await.with_context(|| {
            format!(
                "starting the server with data directory {}",
                args.data.display()
            )
        })?;
        let scheme = if args.admin_tls { "https" } else { "http" };
        eprintln!(
            "toktra server: agent face https://{}, admin face {scheme}://{}, CA {}",
            handle.agent_addr,
            handle.admin_addr,
            args.data.join("ca/root.pem").display()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("toktra server: stopping");
        handle.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
