//! What the service runs: toktra-agent's pipeline (spool, enrollment, uploader, budget)
//! fed by the driver poller, plus the Windows pieces around it — the identity in the
//! certificate store, the service pipe, extension events from the native host and
//! notifications for the tray.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use tokio::sync::{mpsc, oneshot, watch};
use toktra_agent::config::ConfigLayer;
use toktra_agent::pipeline::{CatalogClassifier, Classifier, ObservedFlow};
use toktra_agent::runner::ReadyEvents;
use toktra_proto::{BudgetState, BudgetStatus, FlowEvent, Source, Transport};

use crate::config::AgentConfig;
use crate::identity::WindowsIdentityStore;
use crate::paths;
use crate::pipe::{self, Handler};
use crate::protocol::{AgentStatus, DriverState, Notification, Op, Response};

/// Notifications kept for tray clients that connect later (a user logging on).
const KEEP_NOTIFICATIONS: usize = 50;

/// State the pipe reports and the driver poller and notifier update.
pub struct Shared {
    pub config: AgentConfig,
    pub state_dir: PathBuf,
    pub driver: Mutex<DriverState>,
    pub driver_events: AtomicU64,
    pub extension_events: AtomicU64,
    pub extension_rejected: AtomicU64,
    notifications: Mutex<Notifications>,
    /// Extension events go to the agent's own spool and uploader through this.
    ready: mpsc::Sender<ReadyEvents>,
    classifier: Arc<dyn Classifier>,
}

#[derive(Default)]
struct Notifications {
    next_id: u64,
    kept: Vec<Notification>,
    announced: std::collections::HashSet<String>,
}

/// The budget crossings the tray announces: a department (or the organization) at
/// 90 % or more of its budget, or at its hard cap. Each (scope, period, level) once.
pub fn budget_alerts(status: &BudgetStatus) -> Vec<(String, Notification)> {
    let mut out = Vec::new();
    for e in &status.entries {
        let pct = e
            .used
            .saturating_mul(100)
            .checked_div(e.limit)
            .unwrap_or(100);
        let scope = e
            .department
            .clone()
            .unwrap_or_else(|| "Your organization".into());
        let at_cap = e.hard_cap && e.state == BudgetState::Exceeded;
        let (level, title, message) = if at_cap {
            (
                "cap",
                "LLM budget: hard cap reached".to_owned(),
                format!(
                    "{scope} has reached its hard cap for {} ({} of {} tokens). LLM requests may be blocked until the budget resets.",
                    e.period, e.used, e.limit
                ),
            )
        } else if pct >= 90 {
            (
                "90",
                "LLM budget: 90 % used".to_owned(),
                format!(
                    "{scope} has used {pct} % of its LLM budget for {} ({} of {} tokens).",
                    e.period, e.used, e.limit
                ),
            )
        } else {
            continue;
        };
        let key = format!(
            "{}|{}|{}|{level}",
            e.user.as_deref().unwrap_or("*"),
            e.department.as_deref().unwrap_or("*"),
            e.period
        );
        out.push((
            key,
            Notification {
                id: 0,
                title,
                message,
                user: e.user.clone(),
            },
        ));
    }
    out
}

impl Shared {
    /// Turns the pipeline's latest budget status into tray notifications, once each.
    fn notifications_after(&self, after: u64) -> Vec<Notification> {
        let budget = toktra_agent::status::read(&self.state_dir)
            .ok()
            .and_then(|a| a.budget);
        let mut n = self.notifications.lock().unwrap_or_else(|p| p.into_inner());
        for (key, mut note) in budget.as_ref().map(budget_alerts).unwrap_or_default() {
            if n.announced.insert(key) {
                n.next_id += 1;
                note.id = n.next_id;
                tracing::info!(
                    "tray notification {}: {}: {}",
                    note.id,
                    note.title,
                    note.message
                );
                n.kept.push(note);
            }
        }
        let excess = n.kept.len().saturating_sub(KEEP_NOTIFICATIONS);
        n.kept.drain(..excess);
        n.kept.iter().filter(|x| x.id > after).cloned().collect()
    }

    fn status(&self) -> AgentStatus {
        // The pipeline writes its status file on every change; it is the one source
        // of truth for enrollment, spool, uploads and budget.
        let agent = toktra_agent::status::read(&self.state_dir).ok();
        AgentStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            org_id: self.config.org_id.clone(),
            device_id: self.config.device_id.clone(),
            ingest_url: self.config.ingest_url.clone(),
            dashboard_url: self.config.dashboard_url.clone(),
            cert_subject: self.config.cert_subject.clone(),
            enrolled: agent.as_ref().is_some_and(|a| a.enrolled),
            cert_not_after: agent
                .as_ref()
                .and_then(|a| a.cert_not_after)
                .map(|t| t.to_rfc3339()),
            driver: *self.driver.lock().unwrap_or_else(|p| p.into_inner()),
            driver_events: self.driver_events.load(Relaxed),
            extension_events: self.extension_events.load(Relaxed),
            spool_events: agent.as_ref().map_or(0, |a| a.spool.depth),
            uploaded_events: agent.as_ref().map_or(0, |a| a.spool.uploaded_total),
            last_upload: agent
                .as_ref()
                .and_then(|a| a.last_upload_at)
                .map(|t| t.to_rfc3339()),
            last_error: agent.as_ref().and_then(|a| {
                a.enroll_error
                    .clone()
                    .or_else(|| a.last_upload_error.clone())
            }),
        }
    }

    /// Extension events: checked like network input (they come from a browser), kept
    /// only if the catalog knows the host, estimated, then made durable.
    fn take_extension_events(&self, events: Vec<FlowEvent>) -> Response {
        let now = Utc::now();
        let mut keep = Vec::with_capacity(events.len());
        for (i, mut e) in events.into_iter().enumerate() {
            if e.source != Source::Extension || e.transport != Transport::Http {
                self.extension_rejected.fetch_add(1, Relaxed);
                return Response::error(format!(
                    "events[{i}]: the pipe takes only source=extension, transport=http events"
                ));
            }
            if let Err(err) = e.validate(i, now) {
                self.extension_rejected.fetch_add(1, Relaxed);
                return Response::error(err.to_string());
            }
            let Some(class) = e.sni.as_deref().and_then(|h| self.classifier.classify(h)) else {
                continue; // not an LLM host: dropped here, in memory
            };
            let flow = ObservedFlow {
                transport: Transport::Http,
                started_at: e.started_at,
                duration_ms: e.duration_ms,
                sni: e.sni.clone(),
                alpn: Vec::new(),
                ja4: None,
                ech: false,
                bytes_out: e.bytes_out,
                bytes_in: e.bytes_in,
                records_in: None,
                overhead: Default::default(),
                dst_ip: None,
                dst_port: None,
                user: e.user.clone(),
                process: e.process.clone(),
            };
            let (est_in, est_out) = self.classifier.estimate(&class, &flow);
            e.provider = Some(class.provider);
            e.product = class.product;
            e.category = class.category;
            e.est_input_tokens = est_in;
            e.est_output_tokens = est_out;
            keep.push(e);
        }
        let accepted = keep.len() as u32;
        if !keep.is_empty() {
            // The pipe's caller learns "accepted" only once the events are durable.
            // (The pipe handler runs on a blocking thread, so blocking here is fine.)
            let (stored, was_stored) = oneshot::channel();
            let ready = ReadyEvents {
                events: keep,
                stored: Some(stored),
            };
            if self.ready.blocking_send(ready).is_err() {
                return Response::error("the agent is stopping; events not taken");
            }
            match was_stored.blocking_recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Response::error(format!("spool: {e}")),
                Err(_) => {
                    return Response::error("the agent is stopping; events not taken");
                }
            }
            self.extension_events
                .fetch_add(u64::from(accepted), Relaxed);
        }
        Response {
            accepted: Some(accepted),
            ..Response::ok()
        }
    }
}

struct PipeHandler(Arc<Shared>);

impl Handler for PipeHandler {
    fn handle(&self, op: Op) -> Response {
        match op {
            Op::Status => Response {
                status: Some(self.0.status()),
                ..Response::ok()
            },
            Op::Budget => Response {
                budget: Some(
                    toktra_agent::status::read(&self.0.state_dir)
                        .ok()
                        .and_then(|a| a.budget)
                        .unwrap_or_default(),
                ),
                ..Response::ok()
            },
            Op::Notifications { after } => Response {
                notifications: Some(self.0.notifications_after(after)),
                ..Response::ok()
            },
            Op::Events { events } => self.0.take_extension_events(events),
        }
    }
}

/// Runs the agent until `shutdown` turns true.
pub async fn run(config: AgentConfig, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let state_dir = paths::data_dir();
    let agent_config = ConfigLayer {
        ingest_url: Some(config.ingest_url.clone()),
        org_id: Some(config.org_id.clone()),
        device_id: Some(config.device_id.clone()),
        cert_subject: Some(config.cert_subject.clone()),
        log_level: Some(config.log_level.into()),
        enroll_token: config.enroll_token.clone(),
        server_ca: config.server_ca.clone(),
        state_dir: Some(state_dir.clone()),
        ..ConfigLayer::default()
    }
    .resolve()?;
    let store = Arc::new(WindowsIdentityStore {
        key_file: paths::key_file(),
        cert_subject: config.cert_subject.clone(),
    });
    toktra_agent::runner::preflight(&agent_config, store.as_ref())?;
    let classifier: Arc<dyn Classifier> = Arc::new(CatalogClassifier::embedded());
    let (ready_tx, ready_rx) = mpsc::channel(64);
    let shared = Arc::new(Shared {
        config: config.clone(),
        state_dir: state_dir.clone(),
        driver: Mutex::new(DriverState::NotPresent),
        driver_events: AtomicU64::new(0),
        extension_events: AtomicU64::new(0),
        extension_rejected: AtomicU64::new(0),
        notifications: Mutex::new(Notifications::default()),
        ready: ready_tx,
        classifier: classifier.clone(),
    });

    let pipe_task = tokio::spawn(pipe::serve(
        Arc::new(PipeHandler(shared.clone())),
        shutdown.clone(),
    ));
    let (flows_tx, flows_rx) = mpsc::channel(4096);
    let capture_status = Arc::new(Mutex::new(Some(
        "probing for the capture driver".to_owned(),
    )));
    let poller = tokio::spawn(crate::driver::poll(
        shared.clone(),
        flows_tx,
        capture_status.clone(),
        shutdown.clone(),
    ));
    let parts = toktra_agent::runner::AgentParts {
        config: agent_config,
        device_id: config.device_id.clone(),
        source: Source::Wfp,
        identity_store: store,
        classifier,
        // The pipeline's own notices (75 % too) go to the log; the tray gets the
        // 90 % / hard-cap ones from `budget_alerts`.
        notifier: Arc::new(toktra_agent::budget::LogNotifier),
        flows: flows_rx,
        capture_status,
        budget_poll: Duration::from_secs(300),
    };
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    let result = toktra_agent::runner::run_with_events(parts, ready_rx, stop)
        .await
        .context("agent pipeline");
    poller.abort();
    match pipe_task.await {
        Ok(Err(e)) => tracing::error!("service pipe: {e:#}"),
        Err(e) if !e.is_cancelled() => tracing::error!("service pipe task: {e}"),
        _ => {}
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use toktra_proto::BudgetEntry;

    fn entry(used: u64, hard_cap: bool) -> BudgetStatus {
        BudgetStatus {
            entries: vec![BudgetEntry {
                user: None,
                department: Some("Research".into()),
                period: "2026-11".into(),
                limit: 1000,
                used,
                remaining: 1000u64.saturating_sub(used),
                state: BudgetState::for_usage(used, 1000),
                hard_cap,
                threshold_pct: None,
            }],
        }
    }

    #[test]
    fn tray_alerts_at_90_percent_and_at_the_hard_cap_only() {
        assert!(
            budget_alerts(&entry(750, false)).is_empty(),
            "75 % is not a tray alert"
        );
        assert!(budget_alerts(&entry(899, true)).is_empty());
        let at90 = budget_alerts(&entry(900, false));
        assert_eq!(at90.len(), 1);
        assert!(
            at90[0].1.message.contains("Research has used 90 %"),
            "{}",
            at90[0].1.message
        );
        let cap = budget_alerts(&entry(1000, true));
        assert!(cap[0].1.title.contains("hard cap"));
        assert_ne!(cap[0].0, at90[0].0, "the cap is announced apart from 90 %");
        let over_soft = budget_alerts(&entry(1200, false));
        assert_eq!(
            over_soft[0].0, at90[0].0,
            "over a soft budget is still the 90 % notice"
        );
    }
}
