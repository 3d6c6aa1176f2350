//! The agent assembled: pipeline, spool, enrollment and renewal, uploader, budget
//! poller and status file, independent of where the flows come from. The Linux CLI
//! feeds it from the AF_PACKET tap; the Windows service from its driver poller.

use crate::budget::{BudgetWatcher, Notifier};
use crate::config::Config;
use crate::identity::{Enroller, IdentityError, IdentityStore, StoredIdentity};
use crate::pipeline::{self, Classifier, ObservedFlow, PipelineCounters, SharedSpool};
use crate::spool::{Spool, SpoolError, SpoolLimits};
use crate::status::AgentStatus;
use crate::uploader::{Backoff, UploadError};
use chrono::Utc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, RwLock, mpsc, oneshot};
use toktra_proto::{BudgetStatus, FlowEvent, Source};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("state directory {path}: {reason}")]
    StateDir { path: String, reason: String },
}

/// Everything the agent needs from its host program.
pub struct AgentParts {
    pub config: Config,
    pub device_id: String,
    pub source: Source,
    pub identity_store: Arc<dyn IdentityStore>,
    pub classifier: Arc<dyn Classifier>,
    pub notifier: Arc<dyn Notifier>,
    pub flows: mpsc::Receiver<ObservedFlow>,
    /// A line for `toktra agent status` about the capture source, kept current by it.
    pub capture_status: Arc<Mutex<Option<String>>>,
    /// How often to ask for budget status between uploads.
    pub budget_poll: Duration,
}

struct Ctx {
    config: Config,
    spool: SharedSpool,
    store: Arc<dyn IdentityStore>,
    enroller: Enroller,
    /// The mTLS client of the current certificate; replaced only after a new
    /// certificate is installed, so the old one serves until then.
    client: RwLock<Option<reqwest::Client>>,
    enrolled: Notify,
    reenroll_now: Notify,
    spooled: Arc<Notify>,
    status: Mutex<AgentStatus>,
    budget: Mutex<BudgetWatcher>,
    notifier: Arc<dyn Notifier>,
}

impl Ctx {
    fn status(&self) -> std::sync::MutexGuard<'_, AgentStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_budget(&self, b: BudgetStatus) {
        let notices = self
            .budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(b.clone());
        self.status().budget = Some(b);
        for n in notices {
            self.notifier
                .notify_user(n.user.as_deref(), &n.summary, &n.body);
        }
    }

    fn install(&self, id: &StoredIdentity) -> Result<reqwest::Client, IdentityError> {
        let info = id.cert_info()?;
        let client = crate::tls::http_client(crate::tls::client_config(
            self.config.server_ca.as_deref(),
            Some(id),
        )?)?;
        let mut st = self.status();
        st.enrolled = true;
        st.enroll_error = None;
        st.cert_not_after = Some(info.not_after);
        if let Some(i) = info.identity {
            st.device_id = Some(i.device_id);
        }
        Ok(client)
    }
}

/// Checks, before anything runs, that the agent can obtain an identity at all: a
/// stored certificate that is still valid, or an enrollment token.
pub fn preflight(config: &Config, store: &dyn IdentityStore) -> Result<(), IdentityError> {
    let valid = match store.load()? {
        Some(id) => !id.cert_info()?.is_expired(Utc::now()),
        None => false,
    };
    if !valid && config.enroll_token.is_none() {
        return Err(IdentityError::NoToken);
    }
    Ok(())
}

/// Events made ready elsewhere (the Windows service's browser-extension host):
/// already validated and classified, so they go straight into the agent's spool and
/// batches. `stored`, if given, learns whether they became durable.
pub struct ReadyEvents {
    pub events: Vec<FlowEvent>,
    pub stored: Option<oneshot::Sender<Result<(), SpoolError>>>,
}

/// Runs the agent until `shutdown` resolves. The spool is transactional, so stopping
/// at any point loses nothing that was acknowledged as captured.
pub async fn run(
    parts: AgentParts,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    // A receiver whose sender is gone: the ready-events task ends at once.
    run_with_events(parts, mpsc::channel(1).1, shutdown).await
}

/// [`run`], plus a second source of events that need no classification: each
/// [`ReadyEvents`] is appended to the same spool the pipeline writes, and wakes the
/// same uploader, so one upload path and one spool file serve both.
pub async fn run_with_events(
    parts: AgentParts,
    ready: mpsc::Receiver<ReadyEvents>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let cfg = parts.config.clone();
    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| AgentError::StateDir {
        path: cfg.state_dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let (spool, report) = Spool::open(
        &cfg.state_dir.join("spool.db"),
        SpoolLimits {
            max_bytes: cfg.spool_max_bytes,
            max_age_secs: cfg.spool_max_age_secs,
        },
    )?;
    let spool: SharedSpool = Arc::new(Mutex::new(spool));
    let status = AgentStatus {
        pid: std::process::id(),
        version: AGENT_VERSION.into(),
        started_at: Some(Utc::now()),
        ingest_url: cfg.ingest_url.clone(),
        org_id: cfg.org_id.clone(),
        device_id: Some(parts.device_id.clone()),
        spool_set_aside: report
            .set_aside
            .as_ref()
            .map(|(p, why)| format!("{} ({why})", p.display())),
        ..Default::default()
    };
    let ctx = Arc::new(Ctx {
        enroller: Enroller {
            base_url: cfg.ingest_url.clone(),
            org_id: cfg.org_id.clone(),
            device_id: parts.device_id.clone(),
            cert_subject: cfg.cert_subject.clone(),
        },
        config: cfg.clone(),
        spool: spool.clone(),
        store: parts.identity_store,
        client: RwLock::new(None),
        enrolled: Notify::new(),
        reenroll_now: Notify::new(),
        spooled: Arc::new(Notify::new()),
        status: Mutex::new(status),
        budget: Mutex::new(BudgetWatcher::default()),
        notifier: parts.notifier,
    });
    let counters = Arc::new(PipelineCounters::default());

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(pipeline::run(
        parts.source,
        parts.classifier,
        parts.flows,
        spool,
        counters.clone(),
        ctx.spooled.clone(),
    ));
    tasks.spawn(ready_events_loop(ctx.clone(), ready));
    tasks.spawn(identity_loop(ctx.clone()));
    tasks.spawn(upload_loop(ctx.clone()));
    tasks.spawn(budget_loop(ctx.clone(), parts.budget_poll));
    tasks.spawn(status_loop(
        ctx.clone(),
        counters.clone(),
        parts.capture_status.clone(),
    ));

    shutdown.await;
    tracing::info!("stopping the agent");
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    write_status(&ctx, &counters, &parts.capture_status);
    Ok(())
}

async fn identity_loop(ctx: Arc<Ctx>) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    loop {
        let stored = match ctx.store.load() {
            Ok(s) => s,
            Err(e) => {
                // An unreadable identity is replaced by enrolling again.
                tracing::error!("{e}; enrolling again");
                None
            }
        };
        let valid = stored.and_then(|id| match id.cert_info() {
            Ok(info) if !info.is_expired(Utc::now()) => Some((id, info)),
            _ => None,
        });
        let Some((id, info)) = valid else {
            let Some(token) = ctx.config.enroll_token.clone() else {
                let msg = IdentityError::NoToken.to_string();
                tracing::error!("{msg}");
                ctx.status().enroll_error = Some(msg);
                ctx.status().enrolled = false;
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            };
            let bootstrap = crate::tls::client_config(ctx.config.server_ca.as_deref(), None)
                .map_err(IdentityError::from)
                .and_then(|c| crate::tls::http_client(c).map_err(IdentityError::from));
            let result = match bootstrap {
                Ok(client) => ctx.enroller.enroll(&client, &token).await,
                Err(e) => Err(e),
            };
            match result.and_then(|id| ctx.store.save(&id).map(|()| id)) {
                Ok(id) => {
                    tracing::info!("enrolled with the server at {}", ctx.config.ingest_url);
                    backoff.reset();
                    match ctx.install(&id) {
                        Ok(c) => {
                            *ctx.client.write().await = Some(c);
                            ctx.enrolled.notify_waiters();
                        }
                        Err(e) => tracing::error!("the new certificate cannot be used: {e}"),
                    }
                }
                Err(e) => {
                    tracing::error!("enrollment failed: {e}");
                    {
                        let mut st = ctx.status();
                        st.enroll_error = Some(e.to_string());
                        st.enrolled = false;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
            continue;
        };
        if ctx.client.read().await.is_none() {
            match ctx.install(&id) {
                Ok(c) => {
                    *ctx.client.write().await = Some(c);
                    ctx.enrolled.notify_waiters();
                }
                Err(e) => {
                    tracing::error!("stored certificate unusable ({e}); enrolling again");
                    let _ = std::fs::remove_file(ctx.config.state_dir.join("identity.pem"));
                    continue;
                }
            }
        }
        let renew_at = info.renew_at(&mut rand::rng());
        ctx.status().cert_renew_at = Some(renew_at);
        let wait = (renew_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.reenroll_now.notified() => {}
        }
        if info.is_expired(Utc::now()) {
            // Offline past expiry: the loop enrolls with the token.
            *ctx.client.write().await = None;
            continue;
        }
        let Some(client) = ctx.client.read().await.clone() else {
            continue;
        };
        match ctx.enroller.reenroll(&client).await {
            Ok(new_id) => match ctx.store.save(&new_id) {
                Ok(()) => match ctx.install(&new_id) {
                    Ok(c) => {
                        tracing::info!("certificate renewed");
                        *ctx.client.write().await = Some(c);
                        backoff.reset();
                    }
                    Err(e) => tracing::error!("renewed certificate unusable: {e}"),
                },
                Err(e) => tracing::error!("could not store the renewed certificate: {e}"),
            },
            Err(e) => {
                tracing::warn!("certificate renewal failed, the current one stays in use: {e}");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

async fn wait_for_client(ctx: &Ctx) -> reqwest::Client {
    loop {
        let notified = ctx.enrolled.notified();
        if let Some(c) = ctx.client.read().await.clone() {
            return c;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn with_spool<T: Send + 'static>(
    ctx: &Arc<Ctx>,
    f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    let sp = ctx.spool.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = sp.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    })
    .await
    .unwrap_or_else(|e| {
        Err(SpoolError::Io {
            path: "spool".into(),
            reason: e.to_string(),
        })
    })
}

async fn ready_events_loop(ctx: Arc<Ctx>, mut ready: mpsc::Receiver<ReadyEvents>) {
    while let Some(ReadyEvents { events, stored }) = ready.recv().await {
        let result = with_spool(&ctx, move |s| s.append(&events, Utc::now())).await;
        if result.is_ok() {
            ctx.spooled.notify_one();
        }
        match stored {
            Some(reply) => {
                let _ = reply.send(result);
            }
            None => {
                if let Err(e) = result {
                    tracing::error!("events from another source not stored: {e}");
                }
            }
        }
    }
}

async fn upload_loop(ctx: Arc<Ctx>) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    // The server's acknowledgement of the last batch, applied to the spool together
    // with reading the next batch: one trip to a blocking thread per upload instead
    // of two (at 200 connections a second that is four uploads a second). Should
    // the agent stop in between, the batch is sent again and the server counts it
    // once, by its ids.
    let mut acked: Option<uuid::Uuid> = None;
    loop {
        let client = wait_for_client(&ctx).await;
        let ack = acked.take();
        let batch = with_spool(&ctx, move |s| {
            if let Some(id) = ack
                && let Err(e) = s.ack(id)
            {
                tracing::error!("could not remove an acknowledged batch from the spool: {e}");
            }
            s.enforce_bounds(Utc::now())?;
            s.next_batch(Utc::now(), false, AGENT_VERSION)
        })
        .await;
        let batch = match batch {
            Ok(Some(b)) => b,
            Ok(None) => {
                tokio::select! {
                    _ = ctx.spooled.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            Err(e) => {
                tracing::error!("reading the spool: {e}");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let id = batch.batch_id;
        match crate::uploader::send_batch(&client, &ctx.config.ingest_url, &batch).await {
            Ok(ack) => {
                backoff.reset();
                acked = Some(id);
                tracing::debug!(
                    batch = %id,
                    accepted = ack.accepted,
                    duplicates = ack.duplicates,
                    "batch acknowledged"
                );
                {
                    let mut st = ctx.status();
                    st.last_upload_at = Some(Utc::now());
                    st.last_upload_error = None;
                }
                if let Some(b) = ack.budget {
                    ctx.take_budget(b);
                }
            }
            Err(UploadError::RetryAfter { after, .. }) => {
                ctx.status().last_upload_error = Some(format!("server asked to wait {after:?}"));
                tokio::time::sleep(after).await;
            }
            Err(UploadError::Rejected { status, message }) => {
                // Retrying would block every later event behind this batch. The
                // events become a counted gap, which the server does see.
                tracing::error!(
                    "the server rejected batch {id} (HTTP {status}): {message}; its {} events are dropped and reported as a gap",
                    batch.events.len()
                );
                let n = batch.events.len() as u64;
                let since = batch
                    .events
                    .iter()
                    .map(|e| e.started_at)
                    .min()
                    .unwrap_or_else(Utc::now);
                let _ = with_spool(&ctx, move |s| {
                    s.ack(id)?;
                    if n > 0 {
                        s.record_gap(n, since)?;
                    }
                    Ok(())
                })
                .await;
                ctx.status().last_upload_error =
                    Some(format!("batch rejected (HTTP {status}): {message}"));
            }
            Err(e @ UploadError::Unauthorized(_)) => {
                tracing::warn!("{e}");
                ctx.status().last_upload_error = Some(e.to_string());
                ctx.reenroll_now.notify_one();
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => {
                let d = backoff.next_delay();
                tracing::warn!("upload failed, retrying in {d:?}: {e}");
                ctx.status().last_upload_error = Some(e.to_string());
                tokio::time::sleep(d).await;
            }
        }
    }
}

async fn budget_loop(ctx: Arc<Ctx>, every: Duration) {
    loop {
        let client = wait_for_client(&ctx).await;
        let url = format!(
            "{}{}",
            ctx.config.ingest_url,
            toktra_proto::api::AGENT_BUDGET
        );
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => match r.json::<BudgetStatus>().await {
                Ok(b) => ctx.take_budget(b),
                Err(e) => tracing::warn!("budget status from {url} unreadable: {e}"),
            },
            Ok(r) => tracing::debug!("budget status: HTTP {}", r.status()),
            Err(e) => tracing::debug!("budget status: {}", crate::identity::error_chain(&e)),
        }
        tokio::time::sleep(every).await;
    }
}

fn write_status(ctx: &Ctx, counters: &PipelineCounters, capture: &Mutex<Option<String>>) {
    let stats = ctx.spool.lock().unwrap_or_else(|p| p.into_inner()).stats();
    let mut st = ctx.status();
    if let Ok(s) = stats {
        st.spool = s;
    }
    st.updated_at = Some(Utc::now());
    st.flows_seen = counters.flows_seen.load(Relaxed);
    st.non_llm_dropped = counters.non_llm_dropped.load(Relaxed);
    st.disk_full = counters.disk_full.load(Relaxed);
    st.capture = capture.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Err(e) = crate::status::write(&ctx.config.state_dir, &st) {
        tracing::debug!("status file not written: {e}");
    }
}

async fn status_loop(
    ctx: Arc<Ctx>,
    counters: Arc<PipelineCounters>,
    capture: Arc<Mutex<Option<String>>>,
) {
    loop {
        let c = ctx.clone();
        let k = counters.clone();
        let cap = capture.clone();
        let _ = tokio::task::spawn_blocking(move || write_status(&c, &k, &cap)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigLayer;
    use crate::identity::FileIdentityStore;
    use crate::pipeline::CatalogClassifier;

    #[tokio::test]
    async fn ready_events_reach_the_spool_the_pipeline_writes() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigLayer {
            // Nothing listens there: the events must stay in the spool.
            ingest_url: Some("https://127.0.0.1:9".into()),
            org_id: Some("org".into()),
            enroll_token: Some("token".into()),
            state_dir: Some(dir.path().to_owned()),
            ..ConfigLayer::default()
        }
        .resolve()
        .unwrap();
        let (_flows_tx, flows) = mpsc::channel(1);
        let parts = AgentParts {
            config,
            device_id: "device".into(),
            source: Source::Wfp,
            identity_store: Arc::new(FileIdentityStore::new(dir.path())),
            classifier: Arc::new(CatalogClassifier::embedded()),
            notifier: Arc::new(crate::budget::LogNotifier),
            flows,
            capture_status: Arc::new(Mutex::new(None)),
            budget_poll: Duration::from_secs(300),
        };
        let (ready_tx, ready) = mpsc::channel(4);
        let (stop_tx, stop) = oneshot::channel::<()>();
        let agent = tokio::spawn(run_with_events(parts, ready, async move {
            let _ = stop.await;
        }));
        let event = |bytes_out: u64| FlowEvent {
            source: Source::Extension,
            transport: toktra_proto::Transport::Http,
            alpn: Vec::new(),
            bytes_out,
            bytes_in: 2 * bytes_out,
            user: None,
            dst_port: None,
            source_domain: Some("chat.example.com".into()),
            ..FlowEvent::example("")
        };
        let events = vec![event(7), event(8)];
        let (stored, was_stored) = oneshot::channel();
        ready_tx
            .send(ReadyEvents {
                events: events.clone(),
                stored: Some(stored),
            })
            .await
            .unwrap();
        was_stored.await.unwrap().unwrap();
        stop_tx.send(()).unwrap();
        agent.await.unwrap().unwrap();

        let (mut spool, _) = Spool::open(
            &dir.path().join("spool.db"),
            SpoolLimits {
                max_bytes: 1 << 20,
                max_age_secs: 3600,
            },
        )
        .unwrap();
        let batch = spool
            .next_batch(Utc::now(), true, AGENT_VERSION)
            .unwrap()
            .expect("the ready events are in the spool");
        let ids: Vec<_> = batch.events.iter().map(|e| e.event_id).collect();
        assert_eq!(ids, [events[0].event_id, events[1].event_id]);
        assert_eq!(batch.events[0].source, Source::Extension);
    }
}
