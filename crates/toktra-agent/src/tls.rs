//! The agent's TLS client configuration: rustls with the ring provider, the server's
//! CA (or the public web PKI), and the device certificate for mTLS when there is one.

use crate::identity::StoredIdentity;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "server CA file {path}: {reason}. Fix: point server_ca (TOKTRA_SERVER_CA) at the PEM file of the CA that signed the server's certificate"
    )]
    ServerCa { path: PathBuf, reason: String },
    #[error("device key or certificate unusable: {0}")]
    Identity(String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("HTTP client setup: {0}")]
    Client(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(server_ca: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match server_ca {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let bad = |reason: String| TlsError::ServerCa {
                path: path.to_owned(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let mut rd = pem.as_slice();
            for cert in rustls_pemfile::certs(&mut rd) {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("holds no CERTIFICATE".into()));
            }
        }
    }
    Ok(roots)
}

/// A rustls client configuration; with `identity`, it presents the device certificate.
pub fn client_config(
    server_ca: Option<&Path>,
    identity: Option<&StoredIdentity>,
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(server_ca)?);
    let mut cfg = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let mut rd = id.cert_pem.as_bytes();
            let chain: Result<Vec<_>, _> = rustls_pemfile::certs(&mut rd).collect();
            let chain = chain.map_err(|e| TlsError::Identity(e.to_string()))?;
            let mut rd = id.key_pem.as_bytes();
            let key = rustls_pemfile::private_key(&mut rd)
                .map_err(|e| TlsError::Identity(e.to_string()))?
                .ok_or_else(|| TlsError::Identity("no private key".into()))?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// An HTTP client with keep-alive over the given TLS configuration.
pub fn http_client(cfg: rustls::ClientConfig) -> Result<reqwest::Client, TlsError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .tcp_keepalive(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| TlsError::Client(crate::identity::error_chain(&e)))
}
