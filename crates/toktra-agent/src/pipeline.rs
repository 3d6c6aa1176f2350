//! The transform stage: completed flows in, Event v1 into the spool.
//!
//! Sources (the Linux tap, the Windows driver poller, a test) hand in
//! [`ObservedFlow`]s, one per finished connection, through a channel; this stage
//! classifies each against the catalog, drops everything that is not an LLM flow (in
//! memory — it is never written anywhere), estimates tokens, and makes the event
//! durable in the spool. Only then does it count as captured.

use crate::spool::{Spool, SpoolError};
use chrono::{DateTime, Utc};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use toktra_proto::{FlowEvent, ProcessInfo, Source, Transport};
use uuid::Uuid;

/// One finished connection as a source observed it (the shape of the flow tracker's
/// record, plus the attribution the source adds).
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedFlow {
    pub transport: Transport,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub ja4: Option<String>,
    pub ech: bool,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub records_in: Option<u64>,
    /// The handshake and framing as the flow tracker measured them (token
    /// estimates use them in place of constants); default when not measured.
    pub overhead: toktra_catalog::FlowOverhead,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub user: Option<String>,
    pub process: Option<ProcessInfo>,
}

/// What the catalog says about a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The catalog entry that matched, so estimation uses its ratios.
    pub entry_id: Option<String>,
    pub provider: String,
    pub product: Option<String>,
    pub category: Option<String>,
}

/// Catalog lookup and token estimation, behind a trait so the pipeline does not care
/// which catalog version (or, in tests, which fixed table) answers.
pub trait Classifier: Send + Sync {
    fn classify(&self, host: &str) -> Option<Classification>;
    /// (input, output) token estimates for a classified flow.
    fn estimate(&self, class: &Classification, flow: &ObservedFlow) -> (u64, u64);
}

/// An LLM event for a flow, or None when the flow is not an LLM flow.
pub fn to_event(
    source: Source,
    classifier: &dyn Classifier,
    flow: &ObservedFlow,
) -> Option<FlowEvent> {
    // With ECH the SNI is the outer, public name: classifying by it would
    // misattribute the flow, so such flows are only kept if the outer name itself is
    // a catalog host.
    let host = flow.sni.as_deref()?;
    let class = classifier.classify(host)?;
    let (est_in, est_out) = classifier.estimate(&class, flow);
    Some(FlowEvent {
        event_id: Uuid::now_v7(),
        source,
        started_at: flow.started_at,
        duration_ms: flow.duration_ms,
        transport: flow.transport,
        sni: flow.sni.clone(),
        alpn: flow.alpn.clone(),
        ja4: flow.ja4.clone(),
        ech: flow.ech,
        provider: Some(class.provider),
        product: class.product,
        category: class.category,
        bytes_out: flow.bytes_out,
        bytes_in: flow.bytes_in,
        records_in: flow.records_in,
        est_input_tokens: est_in,
        est_output_tokens: est_out,
        user: flow.user.clone(),
        process: flow.process.clone(),
        dst_ip: flow.dst_ip,
        dst_port: flow.dst_port,
        endpoint: None,
        source_domain: None,
        streaming: None,
    })
}

pub type SharedSpool = Arc<Mutex<Spool>>;

/// Counters the pipeline keeps for the status report.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    pub flows_seen: std::sync::atomic::AtomicU64,
    pub non_llm_dropped: std::sync::atomic::AtomicU64,
    pub disk_full: std::sync::atomic::AtomicBool,
}

/// How long the first flow of a burst waits for others to share its transaction:
/// each transaction waits for the disk (fsync), and under a stream of connections
/// the Linux tap hands finished flows over ten times a second, so a shorter window
/// would mostly cost more transactions. It bounds what a crash of the agent can
/// take with it: flows that ended in the last half second, not yet captured.
const GATHER: std::time::Duration = std::time::Duration::from_millis(500);
/// Flows in one transaction at most (a source's queue holds 4096).
const MAX_GATHERED: usize = 4096;

/// Runs until the channel closes (every sender dropped). `on_spooled` is called after
/// each durable append so the uploader can look for a full batch at once.
pub async fn run(
    source: Source,
    classifier: Arc<dyn Classifier>,
    mut flows: tokio::sync::mpsc::Receiver<ObservedFlow>,
    spool: SharedSpool,
    counters: Arc<PipelineCounters>,
    on_spooled: Arc<tokio::sync::Notify>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    // Events that could not be made durable because the disk was full: counted and
    // reported as a gap as soon as the spool can take the record.
    let mut lost: Option<(u64, DateTime<Utc>)> = None;
    let mut buf = Vec::with_capacity(256);
    while let Some(first) = flows.recv().await {
        let mut events = Vec::new();
        buf.clear();
        buf.push(first);
        // Flows arriving within a short window go into the same transaction: one
        // fsync (and one uploader wake-up) for a burst instead of one per flow. At
        // hundreds of connections a second this is most of the pipeline's cost; the
        // window only delays when an event counts as captured. The task sleeps
        // through the window and then takes what queued up, instead of waiting for
        // each flow: a waiting receiver is woken by every send, which cost the
        // source a syscall and this thread a context switch per flow.
        tokio::time::sleep(GATHER).await;
        while buf.len() < MAX_GATHERED {
            match flows.try_recv() {
                Ok(f) => buf.push(f),
                Err(_) => break,
            }
        }
        for f in &buf {
            counters.flows_seen.fetch_add(1, Relaxed);
            match to_event(source, classifier.as_ref(), f) {
                Some(ev) => events.push(ev),
                None => {
                    counters.non_llm_dropped.fetch_add(1, Relaxed);
                }
            }
        }
        if events.is_empty() && lost.is_none() {
            continue;
        }
        let sp = spool.clone();
        let pending_lost = lost.take();
        let result = tokio::task::spawn_blocking(move || {
            let mut s = sp.lock().unwrap_or_else(|p| p.into_inner());
            store(&mut s, &events, pending_lost)
        })
        .await
        .unwrap_or_else(|e| Err((0, Utc::now(), format!("spool task failed: {e}"))));
        // The spool says when the disk fills and when space returns; one line per
        // refused burst after that would only flood the log.
        let refused = |msg: &str| {
            if counters.disk_full.swap(true, Relaxed) {
                tracing::debug!("{msg}");
            } else {
                tracing::error!("{msg}");
            }
        };
        match result {
            Ok(None) => {
                counters.disk_full.store(false, Relaxed);
                on_spooled.notify_one();
            }
            Ok(Some(msg)) => {
                // Refused but counted: the gap goes to the server with the next batch.
                refused(&msg);
                on_spooled.notify_one();
            }
            Err((count, since, msg)) => {
                // `store` folded the earlier loss (taken above) into this count.
                refused(&msg);
                lost = Some((count, since));
            }
        }
    }
}

/// Appends `events` (and a pending gap). Events the spool refuses — a full disk
/// above all — are recorded as a gap at once, which the spool takes even on a full
/// disk, so that the count survives a restart: then `Ok(Some(why))`. Only what
/// could not even be counted comes back as `Err`, to be kept in memory and recorded
/// later. Nothing already spooled is given up to make room: those events count as
/// captured.
fn store(
    s: &mut Spool,
    events: &[FlowEvent],
    pending_lost: Option<(u64, DateTime<Utc>)>,
) -> Result<Option<String>, (u64, DateTime<Utc>, String)> {
    let now = Utc::now();
    // A spool that cannot count the earlier loss cannot store either: the events
    // join the count.
    let refused = pending_lost
        .and_then(|(c, since)| s.record_gap(c, since).err().map(|e| (c, since, e)))
        .or_else(|| s.append(events, now).err().map(|e| (0, now, e)));
    let Some((c, since, e)) = refused else {
        return Ok(None);
    };
    let first = events.iter().map(|e| e.started_at).min().unwrap_or(now);
    let (count, since) = (c + events.len() as u64, since.min(first));
    let why = match e {
        SpoolError::DiskFull(_) => e.to_string(),
        e => format!("events could not be spooled: {e}"),
    };
    if count == 0 {
        return Ok(Some(why));
    }
    match s.record_gap(count, since) {
        Ok(()) => Ok(Some(why)),
        Err(_) => Err((count, since, why)),
    }
}

/// The embedded provider catalog (toktra-catalog) and its estimator.
pub struct CatalogClassifier {
    catalog: &'static toktra_catalog::Catalog,
}

impl CatalogClassifier {
    pub fn embedded() -> Self {
        Self {
            catalog: toktra_catalog::Catalog::embedded(),
        }
    }
}

impl Classifier for CatalogClassifier {
    fn classify(&self, host: &str) -> Option<Classification> {
        let e = self.catalog.lookup(host)?;
        Some(Classification {
            entry_id: Some(e.id.clone()),
            provider: e.provider.clone(),
            product: Some(e.product.clone()),
            category: Some(e.category.as_str().to_owned()),
        })
    }

    fn estimate(&self, class: &Classification, flow: &ObservedFlow) -> (u64, u64) {
        let Some(entry) = class
            .entry_id
            .as_deref()
            .and_then(|id| self.catalog.get(id))
        else {
            return (0, 0);
        };
        let est = toktra_catalog::estimate(
            entry,
            &toktra_catalog::FlowBytes {
                bytes_out: flow.bytes_out,
                bytes_in: flow.bytes_in,
                records_in: flow.records_in,
                http: toktra_catalog::HttpVersion::from_alpn(&flow.alpn),
                overhead: flow.overhead,
            },
        );
        (est.est_input_tokens, est.est_output_tokens)
    }
}

/// A classifier from a fixed host table, for tests and tools.
pub struct TableClassifier {
    pub entries: Vec<(String, Classification)>,
    pub bytes_per_token: f64,
}

impl Classifier for TableClassifier {
    fn classify(&self, host: &str) -> Option<Classification> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.entries
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, c)| c.clone())
    }
    fn estimate(&self, _class: &Classification, flow: &ObservedFlow) -> (u64, u64) {
        (
            (flow.bytes_out as f64 / self.bytes_per_token) as u64,
            (flow.bytes_in as f64 / self.bytes_per_token) as u64,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spool::SpoolLimits;

    pub(crate) fn flow(sni: &str, bytes: u64) -> ObservedFlow {
        ObservedFlow {
            transport: Transport::Tcp,
            started_at: Utc::now(),
            duration_ms: 5,
            sni: Some(sni.into()),
            alpn: vec!["h2".into()],
            ja4: None,
            ech: false,
            bytes_out: bytes,
            bytes_in: bytes * 4,
            records_in: Some(7),
            overhead: Default::default(),
            dst_ip: Some("10.0.0.1".parse().unwrap()),
            dst_port: Some(443),
            user: Some("alice".into()),
            process: Some(ProcessInfo {
                pid: 1,
                name: "curl".into(),
                path: Some("/usr/bin/curl".into()),
            }),
        }
    }

    pub(crate) fn classifier() -> Arc<dyn Classifier> {
        Arc::new(TableClassifier {
            entries: vec![(
                "api.openai.com".into(),
                Classification {
                    entry_id: None,
                    provider: "openai".into(),
                    product: Some("OpenAI API".into()),
                    category: Some("api".into()),
                },
            )],
            bytes_per_token: 4.0,
        })
    }

    #[test]
    fn the_embedded_catalog_classifies_and_estimates() {
        let c = CatalogClassifier::embedded();
        let class = c.classify("API.OpenAI.com").unwrap();
        assert_eq!(class.provider, "openai");
        assert!(c.classify("intranet.example").is_none());
        let (i, o) = c.estimate(&class, &flow("api.openai.com", 40_000));
        assert!(i > 0 && o > 0, "{i} {o}");
    }

    #[tokio::test]
    async fn llm_flows_are_spooled_and_others_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spool.db");
        let (spool, _) = Spool::open(
            &p,
            SpoolLimits {
                max_bytes: 1 << 30,
                max_age_secs: 3600,
            },
        )
        .unwrap();
        let spool = Arc::new(Mutex::new(spool));
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let counters = Arc::new(PipelineCounters::default());
        let task = tokio::spawn(run(
            Source::Linux,
            classifier(),
            rx,
            spool.clone(),
            counters.clone(),
            Arc::new(tokio::sync::Notify::new()),
        ));
        tx.send(flow("api.openai.com", 400)).await.unwrap();
        tx.send(flow("secret-intranet.example", 999)).await.unwrap();
        let mut ech = flow("cloudflare-ech.com", 1);
        ech.ech = true;
        tx.send(ech).await.unwrap();
        drop(tx);
        task.await.unwrap();
        let mut s = spool.lock().unwrap();
        let b = s.next_batch(Utc::now(), true, "t").unwrap().unwrap();
        assert_eq!(b.events.len(), 1);
        let e = &b.events[0];
        assert_eq!(e.provider.as_deref(), Some("openai"));
        assert_eq!(e.est_input_tokens, 100);
        assert_eq!(e.est_output_tokens, 400);
        assert_eq!(e.process.as_ref().unwrap().name, "curl");
        assert_eq!(
            counters
                .non_llm_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        drop(s);
        // Not a byte of the intranet host reached the disk.
        let mut raw = Vec::new();
        for f in std::fs::read_dir(dir.path()).unwrap() {
            raw.extend(std::fs::read(f.unwrap().path()).unwrap());
        }
        assert!(!raw.windows(15).any(|w| w == b"secret-intranet"));
        assert!(raw.windows(14).any(|w| w == b"api.openai.com"));
    }
}
