//! Ingest benchmark (run by `scripts/bench-ingest`): N simulated devices, each enrolled
//! through EST with its own Ed25519 certificate, each on its own keep-alive mTLS
//! connection, sending 50-event batches back to back. Prints events/s and p50/p99
//! acknowledgement latency, then checks the store: every event stored once, the
//! roll-up (what budgets read) equal to the events sent, and a re-sent batch counted as
//! duplicates only.
//!
//!   bench_ingest [--devices N] [--batches M] [--database-url URL]

use base64::Engine;
use chrono::{Duration, Utc};
use std::sync::Arc;
use std::time::Instant;
use toktra_proto::{Batch, FlowEvent, IngestResponse};
use toktra_server::{Server, ServerConfig};
use uuid::Uuid;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn event(user: &str) -> FlowEvent {
    FlowEvent {
        started_at: Utc::now() - Duration::seconds(5),
        duration_ms: 1200,
        alpn: vec!["h2".into(), "http/1.1".into()],
        ja4: Some("t13d1516h2_8daaf6152771_b0da82dd1658".into()),
        product: Some("OpenAI API".into()),
        category: Some("api".into()),
        bytes_out: 2000,
        bytes_in: 9000,
        records_in: Some(40),
        est_input_tokens: 500,
        est_output_tokens: 2000,
        dst_ip: Some("104.18.7.192".parse().unwrap()),
        ..FlowEvent::example(user)
    }
}

fn client(root_pem: &str, identity: Option<(Vec<u8>, Vec<u8>)>) -> anyhow::Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut root_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => b.with_client_auth_cert(
            vec![cert.into()],
            rustls::pki_types::PrivateKeyDer::try_from(key).map_err(anyhow::Error::msg)?,
        )?,
        None => b.with_no_client_auth(),
    };
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .pool_max_idle_per_host(1)
        .build()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let devices: usize = arg("--devices")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(16);
    let batches: usize = arg("--batches")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200);
    let database_url = arg("--database-url");
    let backend = if database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let dir = tempfile::tempdir()?;
    let mut config = ServerConfig::new(dir.path());
    config.agent_listen = "127.0.0.1:0".parse()?;
    config.admin_listen = "127.0.0.1:0".parse()?;
    config.database_url = database_url;
    let server = Server::start(config).await?;
    let admin = server.admin();
    let org = admin.create_org("Bench", None).await?;
    let token = admin
        .create_enrollment_token(&org.id, None, None)
        .await?
        .token;
    let base = format!("https://localhost:{}", server.agent_addr.port());

    // Enrollment through EST, like an agent.
    let anon = client(&server.root_ca_pem, None)?;
    let mut identities = Vec::new();
    for _ in 0..devices {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Toktra Device");
        let csr = params.serialize_request(&key)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(csr.der());
        let resp = anon
            .post(format!("{base}{}", toktra_proto::api::EST_SIMPLEENROLL))
            .bearer_auth(&token)
            .body(b64)
            .send()
            .await?
            .error_for_status()?;
        let text: String = resp.text().await?.split_whitespace().collect();
        let p7 = base64::engine::general_purpose::STANDARD.decode(text)?;
        let cert = toktra_server::ca::pkcs7_certs(&p7)
            .and_then(|c| c.into_iter().next())
            .ok_or_else(|| anyhow::anyhow!("no certificate in the EST reply"))?;
        identities.push((cert, key.serialize_der()));
    }

    let url = format!("{base}{}", toktra_proto::api::INGEST_BATCHES);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, id) in identities.into_iter().enumerate() {
        let c = client(&server.root_ca_pem, Some(id))?;
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(batches);
            let mut first: Option<Vec<u8>> = None;
            let user = format!("user{}", i % 8);
            for _ in 0..batches {
                let batch = Batch {
                    batch_id: Uuid::now_v7(),
                    agent_version: "0.1.0".into(),
                    events: (0..50).map(|_| event(&user)).collect(),
                    dropped: None,
                };
                let body = serde_json::to_vec(&batch).unwrap();
                let t = Instant::now();
                let r: IngestResponse = c
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .expect("ingest")
                    .json()
                    .await
                    .expect("ingest reply");
                lat.push(t.elapsed().as_secs_f64());
                assert_eq!((r.accepted, r.duplicates), (50, 0));
                first.get_or_insert(body);
            }
            (lat, c, first)
        }));
    }
    let mut lat = Vec::new();
    let mut resend = Vec::new();
    for t in tasks {
        let (l, c, first) = t.await?;
        lat.extend(l);
        resend.push((c, first));
    }
    let wall = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
            * 1000.0
    };
    let total = (devices * batches * 50) as i64;

    // Retries are acknowledged, not counted.
    let mut dup = 0;
    for (c, body) in resend.iter().take(4) {
        let r: IngestResponse = c
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone().unwrap())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        dup += r.duplicates;
        assert_eq!(r.accepted, 0);
    }
    let store = admin.store();
    let stored = store.count_events(&org.id).await?;
    let now = Utc::now();
    let tokens = store
        .tokens_used(
            &org.id,
            None,
            now - Duration::days(1),
            now + Duration::days(1),
        )
        .await?;
    let ok = stored == total && tokens == total * 2500 && dup == 200.min(resend.len() as u32 * 50);
    println!(
        "{{\"backend\":\"{backend}\",\"devices\":{devices},\"batches\":{},\"events\":{total},\"seconds\":{wall:.2},\"events_per_s\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"stored\":{stored},\"tokens\":{tokens},\"consistent\":{ok}}}",
        devices * batches,
        total as f64 / wall,
        pct(0.50),
        pct(0.99),
    );
    server.shutdown().await;
    if !ok {
        anyhow::bail!(
            "store mismatch: sent {total} events, stored {stored}, tokens {tokens}, duplicates acknowledged {dup}"
        );
    }
    Ok(())
}
