//! Budget status: kept from upload acknowledgements and polls of
//! `GET /v1/agent/budget`; a crossing of a threshold or of a hard cap is told to the
//! user through a [`Notifier`] (a desktop notification on Linux, the tray on Windows).

use std::collections::HashMap;
use toktra_proto::{BudgetEntry, BudgetState, BudgetStatus};

/// Tells the user something about their budget.
pub trait Notifier: Send + Sync {
    fn notify(&self, summary: &str, body: &str);
}

/// Writes the notice to the log: used when there is no desktop to show it on.
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn notify(&self, summary: &str, body: &str) {
        tracing::info!("budget notice: {summary}: {body}");
    }
}

/// A notice for the user, decided by comparing a new status with the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub summary: String,
    pub body: String,
}

/// (user, department, period) of a budget entry.
type EntryKey = (Option<String>, Option<String>, String);

/// Remembers what the user was last told so each crossing is told once.
#[derive(Debug, Default)]
pub struct BudgetWatcher {
    last: Option<BudgetStatus>,
    told: HashMap<EntryKey, (Option<u8>, BudgetState)>,
}

fn scope(e: &BudgetEntry) -> String {
    match (&e.department, &e.user) {
        (Some(d), _) => format!("department {d}"),
        (None, Some(u)) => format!("user {u}"),
        (None, None) => "organization".into(),
    }
}

impl BudgetWatcher {
    pub fn current(&self) -> Option<&BudgetStatus> {
        self.last.as_ref()
    }

    /// Takes a new status and returns the notices it calls for.
    pub fn update(&mut self, status: BudgetStatus) -> Vec<Notice> {
        let mut out = Vec::new();
        for e in &status.entries {
            let key = (e.user.clone(), e.department.clone(), e.period.clone());
            let prev = self.told.get(&key).copied();
            let (prev_pct, prev_state) = prev.unwrap_or((None, BudgetState::Ok));
            let crossed_threshold = e.threshold_pct.is_some() && e.threshold_pct > prev_pct;
            let newly_exceeded =
                e.state == BudgetState::Exceeded && prev_state != BudgetState::Exceeded;
            if crossed_threshold || newly_exceeded {
                let pct = e
                    .threshold_pct
                    .unwrap_or(if newly_exceeded { 100 } else { 75 });
                let summary = if e.state == BudgetState::Exceeded && e.hard_cap {
                    format!("Toktra: LLM budget of the {} reached (hard cap)", scope(e))
                } else if e.state == BudgetState::Exceeded {
                    format!("Toktra: LLM budget of the {} exceeded", scope(e))
                } else {
                    format!("Toktra: {pct} % of the {} LLM budget used", scope(e))
                };
                let body = format!(
                    "{} of {} tokens used in {} ({} left).{}",
                    e.used,
                    e.limit,
                    e.period,
                    e.remaining,
                    if e.hard_cap && e.state == BudgetState::Exceeded {
                        " LLM requests from the browser may now be blocked."
                    } else {
                        ""
                    }
                );
                out.push(Notice { summary, body });
            }
            self.told
                .insert(key, (e.threshold_pct.max(prev_pct), e.state));
        }
        self.last = Some(status);
        out
    }
}

/// Linux: freedesktop notifications over the session D-Bus; without a session bus
/// (a headless server, the system service) the notice goes to the log instead.
#[cfg(target_os = "linux")]
pub struct DesktopNotifier;

#[cfg(target_os = "linux")]
impl DesktopNotifier {
    fn session_bus_present() -> bool {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty()) {
            return true;
        }
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        std::path::Path::new(&format!("/run/user/{uid}/bus")).exists()
    }
}

#[cfg(target_os = "linux")]
impl Notifier for DesktopNotifier {
    fn notify(&self, summary: &str, body: &str) {
        if !Self::session_bus_present() {
            tracing::info!(
                "budget notice (no desktop session bus, so logged instead of shown): {summary}: {body}"
            );
            return;
        }
        match notify_rust::Notification::new()
            .appname("Toktra")
            .summary(summary)
            .body(body)
            .show()
        {
            Ok(_) => tracing::info!("budget notice shown: {summary}"),
            Err(e) => tracing::info!(
                "budget notice (desktop notification failed: {e}): {summary}: {body}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(used: u64, pct: Option<u8>, hard: bool) -> BudgetEntry {
        BudgetEntry {
            user: Some("alice".into()),
            department: Some("research".into()),
            period: "2026-11".into(),
            limit: 1000,
            used,
            remaining: 1000u64.saturating_sub(used),
            state: BudgetState::for_usage(used, 1000),
            hard_cap: hard,
            threshold_pct: pct,
        }
    }

    #[test]
    fn each_crossing_is_told_once() {
        let mut w = BudgetWatcher::default();
        let st = |e| BudgetStatus { entries: vec![e] };
        assert!(w.update(st(entry(100, None, true))).is_empty());
        let n = w.update(st(entry(760, Some(75), true)));
        assert_eq!(n.len(), 1);
        assert!(n[0].summary.contains("75 %"), "{n:?}");
        assert!(w.update(st(entry(800, Some(75), true))).is_empty());
        assert_eq!(w.update(st(entry(910, Some(90), true))).len(), 1);
        let n = w.update(st(entry(1000, Some(100), true)));
        assert_eq!(n.len(), 1);
        assert!(n[0].summary.contains("hard cap"), "{n:?}");
        assert!(n[0].summary.contains("department research"), "{n:?}");
        assert!(w.update(st(entry(1200, Some(100), true))).is_empty());
        assert_eq!(w.current().unwrap().entries[0].used, 1200);
    }
}
