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

/// The certificate chains the corpus server presents, one listener each, so that
/// exchanges see handshakes of different sizes as they do across real providers
/// (a Cloudflare front with one ECDSA intermediate, RSA chains of two or three
/// certificates): the estimate must not depend on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Chain {
    /// A bare P-256 leaf issued by the root: the smallest a server sends.
    #[serde(rename = "p256-1")]
    P256One,
    /// P-256 leaf and intermediate padded to public-CA size: the calibration chain.
    #[serde(rename = "p256-2")]
    P256Two,
    /// P-256 leaf and two intermediates (a cross-signed path).
    #[serde(rename = "p256-3")]
    P256Three,
    /// RSA-2048 leaf and intermediate.
    #[serde(rename = "rsa2048-2")]
    Rsa2048Two,
    /// RSA-2048 leaf and two intermediates.
    #[serde(rename = "rsa2048-3")]
    Rsa2048Three,
}

impl Chain {
    pub const ALL: [Chain; 5] = [
        Chain::P256One,
        Chain::P256Two,
        Chain::P256Three,
        Chain::Rsa2048Two,
        Chain::Rsa2048Three,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Chain::P256One => "p256-1",
            Chain::P256Two => "p256-2",
            Chain::P256Three => "p256-3",
            Chain::Rsa2048Two => "rsa2048-2",
            Chain::Rsa2048Three => "rsa2048-3",
        }
    }

    fn rsa(self) -> bool {
        matches!(self, Chain::Rsa2048Two | Chain::Rsa2048Three)
    }

    fn intermediates(self) -> usize {
        match self {
            Chain::P256One => 0,
            Chain::P256Two | Chain::Rsa2048Two => 1,
            Chain::P256Three | Chain::Rsa2048Three => 2,
        }
    }
}

pub struct Certs {
    pub ca_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// A fresh key: P-256 from rcgen, RSA-2048 from openssl (ring, rcgen's backend,
/// signs with RSA keys but cannot make them).
fn key(rsa: bool) -> Result<KeyPair> {
    if !rsa {
        return Ok(KeyPair::generate()?);
    }
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .context("running openssl genpkey (scripts/setup.d/15-estimate.sh installs openssl)")?;
    if !out.status.success() {
        anyhow::bail!(
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pem = String::from_utf8(out.stdout).context("openssl output")?;
    KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).context("loading the RSA key")
}

/// One chain under one root CA (the root is not sent, as public servers do not).
pub fn certs(chain: Chain, ca_params_name: &str) -> Result<Certs> {
    let rsa = chain.rsa();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_params_name);
    let ca = CertifiedIssuer::self_signed(ca_params, key(rsa)?)?;
    let mut issuers: Vec<CertifiedIssuer<'static, KeyPair>> = Vec::new();
    for n in 0..chain.intermediates() {
        let mut int_params = CertificateParams::new(Vec::<String>::new())?;
        int_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        int_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("Corpus Issuing CA {}", n + 1),
        );
        int_params.custom_extensions.push(padding(700));
        let issued = match issuers.last() {
            Some(parent) => CertifiedIssuer::signed_by(int_params, key(rsa)?, parent)?,
            None => CertifiedIssuer::signed_by(int_params, key(rsa)?, &ca)?,
        };
        issuers.push(issued);
    }
    let hosts: Vec<String> = Shape::ALL.iter().map(|s| s.host().to_owned()).collect();
    let mut leaf_params = CertificateParams::new(hosts)?;
    if chain != Chain::P256One {
        leaf_params.custom_extensions.push(padding(900));
    }
    let leaf_key = key(rsa)?;
    let leaf = match issuers.last() {
        Some(parent) => leaf_params.signed_by(&leaf_key, parent)?,
        None => leaf_params.signed_by(&leaf_key, &ca)?,
    };
    let mut der = vec![leaf.der().clone()];
    der.extend(issuers.iter().rev().map(|i| i.der().clone()));
    Ok(Certs {
        ca_pem: ca.pem(),
        chain: der,
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
