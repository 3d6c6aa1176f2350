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
    /// Lifetime of the device certificates issued from now on: a number with a unit,
    /// s, m, h or d (e.g. 90d, 12h, 600s). Agents renew at two thirds of it with
    /// simplereenroll, and re-enroll with their token if it expired while they were
    /// offline. Shorter lifetimes limit what a stolen device key is worth; at least 60s.
    /// Certificates already issued keep their lifetime.
    #[arg(
        long,
        value_name = "DURATION",
        env = "TOKTRA_DEVICE_CERT_LIFETIME",
        default_value = "90d",
        value_parser = parse_lifetime
    )]
    device_cert_lifetime: std::time::Duration,
    /// Log filter (error, warn, info, debug, or a tracing directive).
    #[arg(
        long,
        value_name = "FILTER",
        env = "TOKTRA_LOG",
        default_value = "info"
    )]
    log: String,
}

/// `90d`, `12h`, `15m`, `600s`: what --device-cert-lifetime accepts.
fn parse_lifetime(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, e.g. 90d or 600s"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use s, m, h or d (e.g. 90d or 600s)"
            ));
        }
    };
    if secs < toktra_server::ca::MIN_DEVICE_CERT_LIFETIME.as_secs() {
        return Err(format!(
            "{text:?} is shorter than the minimum of 60s; agents renew at two thirds of it"
        ));
    }
    Ok(std::time::Duration::from_secs(secs))
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
        config.device_cert_lifetime = args.device_cert_lifetime;
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

#[cfg(test)]
mod tests {
    use super::parse_lifetime;
    use std::time::Duration;

    #[test]
    fn lifetimes_with_units() {
        assert_eq!(parse_lifetime("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_lifetime("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_lifetime("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_lifetime("600s"), Ok(Duration::from_secs(600)));
        assert!(parse_lifetime("30s").unwrap_err().contains("minimum"));
        assert!(parse_lifetime("10y").unwrap_err().contains("unknown unit"));
        assert!(
            parse_lifetime("d")
                .unwrap_err()
                .contains("expected a number")
        );
    }
}
