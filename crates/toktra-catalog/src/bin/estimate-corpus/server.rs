//! The provider stand-in: a real TLS server (rustls, ring) speaking HTTP/1.1 and
//! HTTP/2 (hyper) that answers each corpus request with its prepared response,
//! writing every SSE event as its own write, paced as a model generates: the
//! headers at once, the first token after a wait, then each event after a time in
//! proportion to the tokens it carries.

use crate::shapes::{Exchange, Shape};
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, channel::Channel};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A model's pace, scaled down about 20x from the 50-100 tokens/s hosted models
/// generate, so that the corpus captures in seconds: this much per token ...
const PER_TOKEN: Duration = Duration::from_micros(500);
/// ... and this long before the first token (time to first token), after the
/// response headers and any opening events (Anthropic's message_start) went out.
const FIRST_TOKEN: Duration = Duration::from_millis(20);
/// Between text-less events (stop, usage, `[DONE]`), which servers flush one by one.
const FRAMING_GAP: Duration = Duration::from_millis(1);

/// How long the server waits before writing each event of a stream.
fn pacing(event_tokens: &[usize]) -> Vec<Duration> {
    let mut first = true;
    event_tokens
        .iter()
        .map(|&n| {
            if n == 0 {
                FRAMING_GAP
            } else if std::mem::take(&mut first) {
                FIRST_TOKEN
            } else {
                (PER_TOKEN * n as u32).max(FRAMING_GAP)
            }
        })
        .collect()
}

/// Header naming the corpus item a request is for.
pub const ITEM_HEADER: &str = "x-corpus-item";

/// A private-arc extension that pads a certificate to the size of the public chains
/// the providers serve (a leaf with SCTs, AIA and policies is 1.2–2 KB, its
/// intermediate about 1.1 KB), so handshake bytes are realistic.
fn padding(len: usize) -> CustomExtension {
    let mut der = vec![0x04, 0x82, (len >> 8) as u8, len as u8];
    der.extend((0..len).map(|i| (i * 131 % 251) as u8));
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55_555, 1], der)
}

pub struct Certs {
    pub ca_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

pub fn certs() -> Result<Certs> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Corpus Root CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut int_params = CertificateParams::new(Vec::<String>::new())?;
    int_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    int_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Corpus Issuing CA 1");
    int_params.custom_extensions.push(padding(700));
    let intermediate = CertifiedIssuer::signed_by(int_params, KeyPair::generate()?, &ca)?;
    let hosts: Vec<String> = Shape::ALL.iter().map(|s| s.host().to_owned()).collect();
    let mut leaf_params = CertificateParams::new(hosts)?;
    leaf_params.custom_extensions.push(padding(900));
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &intermediate)?;
    Ok(Certs {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone(), intermediate.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    })
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

async fn handle(req: Request<Incoming>, items: Arc<Vec<Exchange>>) -> Result<Response<Body>> {
    let item = req
        .headers()
        .get(ITEM_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // Read the whole request, as a real server does before answering.
    let _ = req.into_body().collect().await;
    let Some(x) = item.and_then(|i| items.get(i)) else {
        return Ok(Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()).boxed_unsync())?);
    };
    let mut builder = Response::builder()
        .status(200)
        .header("date", "Thu, 26 Nov 2026 07:00:00 GMT");
    for (k, v) in &x.response_headers {
        builder = builder.header(k, v);
    }
    let body = if x.streamed {
        let (mut tx, body) = Channel::<Bytes, Infallible>::new(1);
        let events: Vec<Bytes> = x.response_events.iter().cloned().map(Bytes::from).collect();
        let waits = pacing(&x.event_tokens);
        tokio::spawn(async move {
            for (e, wait) in events.into_iter().zip(waits) {
                tokio::time::sleep(wait).await;
                if tx.send_data(e).await.is_err() {
                    return;
                }
            }
            // The end of the body (HTTP/1.1's last chunk, HTTP/2's END_STREAM) in its
            // own record, as when a server closes the stream after its last flush.
            tokio::time::sleep(FRAMING_GAP).await;
        });
        body.boxed_unsync()
    } else {
        let all: Vec<u8> = x.response_events.concat();
        Full::new(Bytes::from(all)).boxed_unsync()
    };
    Ok(builder.body(body)?)
}

/// Serves `items` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, certs: Certs, items: Arc<Vec<Exchange>>) -> Result<()> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs.chain, certs.key)
        .context("server certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let items = items.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |req| handle(req, items.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
