//! LLM-like TLS traffic for `toktra up --demo` and for benchmarks: a throw-away CA,
//! a server that presents certificates for provider host names and answers
//! OpenAI/Anthropic/Gemini-shaped requests (streamed SSE or plain JSON) over HTTP/1.1,
//! and a client that sends such requests. Nothing here talks to a real provider: the
//! server runs on this machine (inside a network namespace for the demo).

use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Host names the demo server answers for, one per API shape.
pub const DEMO_HOSTS: [&str; 3] = [
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo certificates: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("demo TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("demo I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A throw-away CA and a server certificate for [`DEMO_HOSTS`].
pub struct DemoPki {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl DemoPki {
    pub fn new(hosts: &[&str]) -> Result<Self, DemoError> {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Toktra demo CA (throw-away)");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let leaf_params =
            rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())?;
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

        let chain = vec![leaf.der().clone(), ca_cert.der().clone()];
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca_cert.der().clone())
            .map_err(|e| DemoError::Tls(rustls::Error::General(e.to_string())))?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca_cert.pem(),
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// Serves provider-shaped answers on `listener` until the task is dropped. A request
/// with `"stream": true` gets `chunks` SSE events; otherwise one JSON body.
pub async fn serve(listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut s) = acceptor.accept(tcp).await else {
                return;
            };
            let host = s.get_ref().1.server_name().unwrap_or("").to_owned();
            let mut buf = Vec::with_capacity(8192);
            let mut tmp = [0u8; 8192];
            // Headers, then Content-Length bytes of body.
            let (head_end, len) = loop {
                let Ok(n) = s.read(&mut tmp).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&tmp[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (i + 4, len);
                }
                if buf.len() > 1 << 20 {
                    return;
                }
            };
            while buf.len() < head_end + len {
                let Ok(n) = s.read(&mut tmp).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
            let stream = body.contains("\"stream\":true") || body.contains("\"stream\": true");
            let _ = respond(&mut s, &host, stream).await;
            let _ = s.shutdown().await;
        });
    }
}

fn chunk_json(host: &str, word: &str) -> String {
    if host.contains("anthropic") {
        format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{word} \"}}}}\n\n"
        )
    } else if host.contains("googleapis") {
        format!(
            "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"{word} \"}}],\"role\":\"model\"}},\"index\":0}}]}}\n\n"
        )
    } else {
        format!(
            "data: {{\"id\":\"chatcmpl-demo\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word} \"}}}}]}}\n\n"
        )
    }
}

const WORDS: [&str; 8] = [
    "Toktra",
    "sees",
    "connection",
    "metadata",
    "only",
    "never",
    "the",
    "content",
];

async fn respond<S: tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    stream: bool,
) -> std::io::Result<()> {
    if stream {
        s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n",
        )
        .await?;
        for i in 0..60 {
            s.write_all(chunk_json(host, WORDS[i % WORDS.len()]).as_bytes())
                .await?;
            s.flush().await?;
            // Tokens arrive over time from a real model, too.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        s.write_all(b"data: [DONE]\n\n").await?;
    } else {
        // A model takes a moment before a non-streamed answer.
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        let text: Vec<&str> = (0..120).map(|i| WORDS[i % WORDS.len()]).collect();
        let body = format!(
            "{{\"id\":\"demo\",\"object\":\"chat.completion\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{}\"}}}}],\"usage\":{{\"prompt_tokens\":40,\"completion_tokens\":120}}}}",
            text.join(" ")
        );
        s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
    }
    s.flush().await
}

/// One request to `addr` as if to `host`, reading the whole answer. Returns the
/// response size in bytes.
pub async fn request(
    client: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    host: &str,
    stream: bool,
) -> Result<usize, DemoError> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| DemoError::Io(std::io::Error::other(e)))?;
    let mut s = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await?;
    let body = format!(
        "{{\"model\":\"demo\",\"stream\":{stream},\"messages\":[{{\"role\":\"user\",\"content\":\"Explain in a few words what an LLM usage dashboard shows about a team.\"}}]}}"
    );
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out).await {
        Ok(_) => {}
        // The demo server closes without close_notify sometimes; what was read counts.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.into()),
    }
    Ok(out.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn demo_server_answers_each_shape_over_real_tls() {
        let pki = DemoPki::new(&DEMO_HOSTS).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, pki.server.clone()));
        for host in DEMO_HOSTS {
            let streamed = request(pki.client.clone(), addr, host, true).await.unwrap();
            let plain = request(pki.client.clone(), addr, host, false)
                .await
                .unwrap();
            assert!(streamed > 2000, "{host}: {streamed}");
            assert!(plain > 500, "{host}: {plain}");
        }
        // A host the certificate does not name fails verification.
        assert!(
            request(pki.client.clone(), addr, "example.org", false)
                .await
                .is_err()
        );
        server.abort();
    }
}
