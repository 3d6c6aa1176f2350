//! Budget status as the server reports it to agents (`GET /v1/agent/budget` and the
//! `budget` field of every ingest acknowledgement).

use serde::{Deserialize, Serialize};

/// Thresholds (percent of the limit) at which users are told.
pub const THRESHOLDS_PCT: [u8; 3] = [75, 90, 100];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetState {
    /// Below 75 % of the limit.
    Ok,
    /// At or above 75 % but below the limit.
    Warning,
    /// At or above the limit.
    Exceeded,
}

impl BudgetState {
    /// The state for `used` out of `limit` tokens. A zero limit is exceeded at once.
    pub fn for_usage(used: u64, limit: u64) -> Self {
        if used >= limit {
            BudgetState::Exceeded
        } else if used.saturating_mul(100) >= limit.saturating_mul(75) {
            BudgetState::Warning
        } else {
            BudgetState::Ok
        }
    }
}

/// One budget that applies to users of this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetEntry {
    /// The local user this entry is for; None for the device as a whole.
    #[serde(default)]
    pub user: Option<String>,
    /// Department name; None means the organization-wide budget.
    #[serde(default)]
    pub department: Option<String>,
    /// Calendar month in UTC, `YYYY-MM`.
    pub period: String,
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    pub state: BudgetState,
    /// A hard cap: at `exceeded`, the extension may block LLM requests.
    pub hard_cap: bool,
    /// Highest threshold crossed this period (75, 90 or 100), for notifications.
    #[serde(default)]
    pub threshold_pct: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BudgetStatus {
    pub entries: Vec<BudgetEntry>,
}

impl BudgetStatus {
    /// The entry for a local user, falling back to the device-wide one.
    pub fn for_user(&self, user: &str) -> Option<&BudgetEntry> {
        self.entries
            .iter()
            .find(|e| e.user.as_deref() == Some(user))
            .or_else(|| self.entries.iter().find(|e| e.user.is_none()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_thresholds() {
        assert_eq!(BudgetState::for_usage(0, 100), BudgetState::Ok);
        assert_eq!(BudgetState::for_usage(74, 100), BudgetState::Ok);
        assert_eq!(BudgetState::for_usage(75, 100), BudgetState::Warning);
        assert_eq!(BudgetState::for_usage(99, 100), BudgetState::Warning);
        assert_eq!(BudgetState::for_usage(100, 100), BudgetState::Exceeded);
        assert_eq!(BudgetState::for_usage(0, 0), BudgetState::Exceeded);
        assert_eq!(
            BudgetState::for_usage(u64::MAX, u64::MAX - 1),
            BudgetState::Exceeded
        );
        let s = serde_json::to_string(&BudgetState::Exceeded).unwrap();
        assert_eq!(s, "\"exceeded\"");
    }
}
