//! The running agent's state, written to `status.json` in the state directory so that
//! `toktra agent status` (another process, possibly another user) can print it
//! without talking to the agent.

use crate::spool::SpoolStats;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toktra_proto::BudgetStatus;

pub const STATUS_FILE: &str = "status.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub pid: u32,
    pub version: String,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub ingest_url: String,
    pub org_id: String,
    pub device_id: Option<String>,
    pub enrolled: bool,
    pub cert_not_after: Option<DateTime<Utc>>,
    pub cert_renew_at: Option<DateTime<Utc>>,
    pub enroll_error: Option<String>,
    pub spool: SpoolStats,
    /// The spool file that was found corrupt at start and set aside.
    pub spool_set_aside: Option<String>,
    pub disk_full: bool,
    pub last_upload_at: Option<DateTime<Utc>>,
    pub last_upload_error: Option<String>,
    pub flows_seen: u64,
    pub non_llm_dropped: u64,
    pub capture: Option<String>,
    pub budget: Option<BudgetStatus>,
}

pub fn status_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATUS_FILE)
}

/// Replaces the status file atomically (readers never see half of it). World-readable
/// on purpose: it holds no secret, and `toktra agent status` should work for users.
pub fn write(state_dir: &Path, status: &AgentStatus) -> std::io::Result<()> {
    let path = status_path(state_dir);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    match std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, &path)) {
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            // A full disk has no block for a second file, but the status it must
            // report fits in the blocks the old one holds: overwritten in place
            // (a reader may catch it half-written, and then reads it again).
            let _ = std::fs::remove_file(&tmp);
            overwrite(&path, &text)
        }
        r => r,
    }
}

fn overwrite(path: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(text)?;
    f.set_len(text.len() as u64)
}

pub fn read(state_dir: &Path) -> std::io::Result<AgentStatus> {
    let text = std::fs::read(status_path(state_dir))?;
    serde_json::from_slice(&text)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - t).num_seconds().max(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

/// The human-readable report of `toktra agent status`.
pub fn render(st: &AgentStatus, now: DateTime<Utc>) -> String {
    let mut o = String::new();
    let line = |o: &mut String, k: &str, v: String| o.push_str(&format!("{k:<16} {v}\n"));
    let fresh = st
        .updated_at
        .map(|u| (now - u).num_seconds() < 30)
        .unwrap_or(false);
    line(
        &mut o,
        "agent",
        format!(
            "{} (pid {}, version {}, status written {})",
            if fresh {
                "running"
            } else {
                "NOT RUNNING (status is stale)"
            },
            st.pid,
            st.version,
            st.updated_at
                .map(|u| ago(u, now))
                .unwrap_or_else(|| "never".into())
        ),
    );
    line(&mut o, "server", st.ingest_url.clone());
    line(
        &mut o,
        "enrollment",
        if st.enrolled {
            format!(
                "enrolled as org {} device {}",
                st.org_id,
                st.device_id.clone().unwrap_or_default()
            )
        } else {
            format!(
                "NOT enrolled{}",
                st.enroll_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        },
    );
    line(
        &mut o,
        "certificate",
        match st.cert_not_after {
            Some(t) => format!(
                "expires {} (renewal from {})",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                st.cert_renew_at
                    .map(|r| r.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "-".into())
            ),
            None => "none".into(),
        },
    );
    line(
        &mut o,
        "spool",
        format!(
            "{} events waiting, {} bytes, oldest {}{}",
            st.spool.depth,
            st.spool.bytes,
            st.spool
                .oldest
                .map(|t| ago(t, now))
                .unwrap_or_else(|| "-".into()),
            if st.disk_full || st.spool.disk_full {
                " — DISK FULL: new events are dropped and counted until space is freed; spooled ones are still uploaded"
            } else {
                ""
            }
        ),
    );
    if let Some(a) = &st.spool_set_aside {
        line(
            &mut o,
            "spool notice",
            format!("a corrupt spool was set aside as {a}"),
        );
    }
    line(
        &mut o,
        "last upload",
        match (&st.last_upload_at, &st.last_upload_error) {
            (_, Some(e)) => format!(
                "FAILING: {e} (last success {})",
                st.last_upload_at
                    .map(|t| ago(t, now))
                    .unwrap_or_else(|| "never".into())
            ),
            (Some(t), None) => ago(*t, now),
            (None, None) => "never".into(),
        },
    );
    line(
        &mut o,
        "events",
        format!(
            "{} captured, {} uploaded, {} dropped (spool bounds or full disk); {} flows seen, {} non-LLM flows discarded in memory",
            st.spool.captured_total,
            st.spool.uploaded_total,
            st.spool.dropped_total,
            st.flows_seen,
            st.non_llm_dropped
        ),
    );
    line(
        &mut o,
        "capture",
        st.capture.clone().unwrap_or_else(|| "-".into()),
    );
    match &st.budget {
        None => line(&mut o, "budget", "no status from the server yet".into()),
        Some(b) if b.entries.is_empty() => line(&mut o, "budget", "no budget applies".into()),
        Some(b) => {
            for e in &b.entries {
                line(
                    &mut o,
                    "budget",
                    format!(
                        "{}{}: {} of {} tokens in {} ({:?}{})",
                        e.department
                            .clone()
                            .unwrap_or_else(|| "organization".into()),
                        e.user
                            .as_ref()
                            .map(|u| format!(" / {u}"))
                            .unwrap_or_default(),
                        e.used,
                        e.limit,
                        e.period,
                        e.state,
                        if e.hard_cap { ", hard cap" } else { "" }
                    )
                    .to_lowercase(),
                );
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_render() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let st = AgentStatus {
            pid: 7,
            version: "0.1.0".into(),
            updated_at: Some(now),
            org_id: "acme".into(),
            device_id: Some("d1".into()),
            enrolled: true,
            cert_not_after: Some(now + chrono::Duration::days(90)),
            spool: SpoolStats {
                depth: 3,
                dropped_total: 2,
                ..Default::default()
            },
            last_upload_error: Some("connection refused".into()),
            ..Default::default()
        };
        write(dir.path(), &st).unwrap();
        let back = read(dir.path()).unwrap();
        assert_eq!(back, st);
        let text = render(&back, now);
        assert!(text.contains("running (pid 7"), "{text}");
        assert!(text.contains("enrolled as org acme device d1"), "{text}");
        assert!(text.contains("3 events waiting"), "{text}");
        assert!(text.contains("2 dropped"), "{text}");
        assert!(text.contains("FAILING: connection refused"), "{text}");
        assert!(!text.contains("DISK FULL"), "{text}");
        let mut full = back.clone();
        full.spool.disk_full = true;
        assert!(render(&full, now).contains("DISK FULL"));
        let stale = render(&back, now + chrono::Duration::minutes(5));
        assert!(stale.contains("NOT RUNNING"), "{stale}");
    }
}
