//! TLS for both faces and the accept loop that hands each request the verified client
//! certificate of its connection.

use crate::ServerError;
use crate::ca::{Ca, PeerIdentity, peer_identity};
use crate::metrics::Metrics;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The verified client certificate of the connection a request came on, if any.
/// A certificate that verified but carries no Toktra identity is `Some(Err(..))`.
#[derive(Clone)]
pub struct Peer(pub Option<Arc<Result<PeerIdentity, String>>>);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_cert(
    ca: &Ca,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ServerError> {
    let chain = rustls_pemfile::certs(&mut ca.server_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut ca.server_key_pem.as_bytes())
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .ok_or_else(|| ServerError::Tls("server key missing".into()))?;
    Ok((chain, key))
}

/// Client certificates are optional at the handshake (enrollment has none yet) and
/// required per route. Only certificates issued by our intermediate verify: it is the
/// one trust anchor, so a certificate of another CA, an expired or a not-yet-valid one
/// fails the handshake itself.
pub fn agent_server_config(ca: &Ca) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.intermediate_der().to_vec()))
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let (chain, key) = server_cert(ca)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

pub fn admin_server_config(ca: &Ca) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let (chain, key) = server_cert(ca)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts connections until `stop` turns true. Each connection's requests carry a
/// [`Peer`] extension.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let (tcp, _remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        let metrics = metrics.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match acceptor {
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                metrics.tls_failure();
                                tracing::debug!("TLS handshake refused: {e}");
                                return;
                            }
                            Err(_) => {
                                metrics.tls_failure();
                                return;
                            }
                        };
                    let peer = Peer(
                        tls.get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| Arc::new(peer_identity(c).map_err(|e| e.to_string()))),
                    );
                    let svc = hyper::service::service_fn(
                        move |mut req: hyper::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(peer.clone());
                            router.clone().oneshot(req.map(axum::body::Body::new))
                        },
                    );
                    let conn = builder.serve_connection(TokioIo::new(tls), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                }
                None => {
                    let svc = hyper::service::service_fn(
                        move |mut req: hyper::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(Peer(None));
                            router.clone().oneshot(req.map(axum::body::Body::new))
                        },
                    );
                    let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        });
    }
}
