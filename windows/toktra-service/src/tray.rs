//! What the tray shows, computed from the service's answers (the Win32 part is in
//! bin/tray.rs). Kept apart so it is tested without a desktop.

use toktra_proto::{BudgetState, BudgetStatus};

use crate::protocol::{AgentStatus, DriverState};

/// Shell_NotifyIconW's tooltip holds 127 characters plus NUL.
pub const TOOLTIP_MAX: usize = 127;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayView {
    pub tooltip: String,
    /// Informational menu lines (shown greyed out above the commands).
    pub lines: Vec<String>,
    pub dashboard_url: Option<String>,
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn budget_line(budget: &BudgetStatus, user: Option<&str>) -> Option<String> {
    let e = match user {
        Some(u) => budget.for_user(u),
        None => budget.entries.iter().find(|e| e.user.is_none()),
    }
    .or_else(|| budget.entries.first())?;
    let pct = e
        .used
        .saturating_mul(100)
        .checked_div(e.limit)
        .unwrap_or(100);
    let scope = e.department.as_deref().unwrap_or("Organization");
    let state = match e.state {
        BudgetState::Ok => "",
        BudgetState::Warning => " - nearing limit",
        BudgetState::Exceeded if e.hard_cap => " - hard cap reached",
        BudgetState::Exceeded => " - over budget",
    };
    Some(format!(
        "{scope}: {pct} % of {} tokens used ({}){state}",
        thousands(e.limit),
        e.period
    ))
}

pub fn view(
    status: Option<&AgentStatus>,
    budget: Option<&BudgetStatus>,
    user: Option<&str>,
) -> TrayView {
    let Some(st) = status else {
        return TrayView {
            tooltip: "Toktra Agent: service not running".into(),
            lines: vec!["The Toktra Agent service is not running.".into()],
            dashboard_url: None,
        };
    };
    let budget_text = budget.and_then(|b| budget_line(b, user));
    let mut lines = vec![format!("Toktra Agent {}", st.version)];
    lines.push(if st.enrolled {
        "Enrolled".into()
    } else {
        "Not enrolled yet".into()
    });
    lines.push(match st.driver {
        DriverState::Present => "Capture driver: running".into(),
        DriverState::NotPresent => "Capture driver: not present".into(),
        DriverState::Incompatible => "Capture driver: incompatible version".into(),
    });
    if let Some(b) = &budget_text {
        lines.push(b.clone());
    }
    let mut tooltip = format!(
        "Toktra: {}",
        budget_text.as_deref().unwrap_or("no budget set")
    );
    if tooltip.chars().count() > TOOLTIP_MAX {
        tooltip = tooltip.chars().take(TOOLTIP_MAX - 3).collect::<String>() + "...";
    }
    TrayView {
        tooltip,
        lines,
        dashboard_url: Some(st.dashboard_url.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toktra_proto::BudgetEntry;

    fn status() -> AgentStatus {
        AgentStatus {
            version: "0.1.0".into(),
            org_id: "acme".into(),
            device_id: "d1".into(),
            ingest_url: "https://x".into(),
            dashboard_url: "https://x/dash".into(),
            cert_subject: "Toktra Device".into(),
            enrolled: true,
            cert_not_after: None,
            driver: DriverState::NotPresent,
            driver_events: 0,
            extension_events: 0,
            spool_events: 0,
            uploaded_events: 0,
            last_upload: None,
            last_error: None,
        }
    }

    #[test]
    fn tooltip_and_menu_show_the_users_budget() {
        let b = BudgetStatus {
            entries: vec![BudgetEntry {
                user: None,
                department: Some("Research".into()),
                period: "2026-11".into(),
                limit: 1_000_000,
                used: 950_000,
                remaining: 50_000,
                state: BudgetState::Warning,
                hard_cap: true,
                threshold_pct: Some(90),
            }],
        };
        let v = view(Some(&status()), Some(&b), Some("jsmith"));
        assert_eq!(
            v.tooltip,
            "Toktra: Research: 95 % of 1,000,000 tokens used (2026-11) - nearing limit"
        );
        assert!(v.lines.contains(&"Capture driver: not present".to_owned()));
        assert_eq!(v.dashboard_url.as_deref(), Some("https://x/dash"));
        assert!(v.tooltip.chars().count() <= TOOLTIP_MAX);
        let down = view(None, None, None);
        assert!(down.tooltip.contains("not running"));
    }
}
