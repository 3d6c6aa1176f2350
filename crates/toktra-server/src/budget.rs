//! Budget status: tokens per calendar month (UTC) against organization and department
//! budgets. Usage comes from the hourly roll-up, which every batch updates inside its
//! own transaction, so a status read after an acknowledgement counts that batch and
//! concurrent batches can never under-count.

use crate::store::{Budget, Result, Store};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use std::collections::HashMap;
use toktra_proto::budget::THRESHOLDS_PCT;
use toktra_proto::{BudgetEntry, BudgetState, BudgetStatus};

/// The start of the UTC month containing `t`, shifted by `delta` months.
pub fn month_start(t: DateTime<Utc>, delta: i32) -> DateTime<Utc> {
    let months = t.year() * 12 + t.month0() as i32 + delta;
    Utc.with_ymd_and_hms(
        months.div_euclid(12),
        months.rem_euclid(12) as u32 + 1,
        1,
        0,
        0,
        0,
    )
    .single()
    .unwrap_or(t)
}

/// The status of one budget this month, without a user.
pub async fn entry_for(store: &dyn Store, b: &Budget, now: DateTime<Utc>) -> Result<BudgetEntry> {
    let (start, end) = (month_start(now, 0), month_start(now, 1));
    let used = store
        .tokens_used(&b.org_id, b.department.as_deref(), start, end)
        .await?
        .max(0) as u64;
    let base = b.monthly_tokens.max(0) as u64;
    let mut limit = base;
    if b.rollover {
        let prev = store
            .tokens_used(
                &b.org_id,
                b.department.as_deref(),
                month_start(now, -1),
                start,
            )
            .await?
            .max(0) as u64;
        limit += base.saturating_sub(prev);
    }
    let threshold_pct = THRESHOLDS_PCT
        .iter()
        .rev()
        .find(|t| limit > 0 && used.saturating_mul(100) >= limit.saturating_mul(u64::from(**t)))
        .copied()
        .or((limit == 0).then_some(100));
    Ok(BudgetEntry {
        user: None,
        department: b.department.clone(),
        period: start.format("%Y-%m").to_string(),
        limit,
        used,
        remaining: limit.saturating_sub(used),
        state: BudgetState::for_usage(used, limit),
        hard_cap: b.hard_cap,
        threshold_pct,
    })
}

/// Every budget of an organization, as the dashboard shows them.
pub async fn org_status(
    store: &dyn Store,
    org_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<BudgetEntry>> {
    let mut out = Vec::new();
    for b in store.list_budgets(org_id).await? {
        out.push(entry_for(store, &b, now).await?);
    }
    Ok(out)
}

/// What a device is told: the organization budget for the device as a whole, and per
/// local user the budget of their department (or the organization's when they have no
/// department or it has no budget).
pub async fn device_status(
    store: &dyn Store,
    org_id: &str,
    device_id: &str,
    now: DateTime<Utc>,
) -> Result<BudgetStatus> {
    let budgets = store.list_budgets(org_id).await?;
    if budgets.is_empty() {
        return Ok(BudgetStatus::default());
    }
    let mut cache: HashMap<Option<String>, BudgetEntry> = HashMap::new();
    for b in &budgets {
        cache.insert(b.department.clone(), entry_for(store, b, now).await?);
    }
    let mut entries = Vec::new();
    if let Some(org_entry) = cache.get(&None) {
        entries.push(org_entry.clone());
    }
    let users = store.device_users(org_id, device_id).await?;
    if !users.is_empty() {
        let departments: HashMap<String, Option<String>> = store
            .list_users(org_id)
            .await?
            .into_iter()
            .map(|u| (u.user_id, u.department))
            .collect();
        for user in users {
            let dep = departments.get(&user).cloned().flatten();
            let entry = cache.get(&dep).or_else(|| cache.get(&None));
            if let Some(e) = entry {
                entries.push(BudgetEntry {
                    user: Some(user),
                    ..e.clone()
                });
            }
        }
    }
    Ok(BudgetStatus { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_roll_over_years() {
        let t: DateTime<Utc> = "2026-01-15T10:00:00Z".parse().unwrap();
        assert_eq!(month_start(t, 0).to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(month_start(t, -1).to_rfc3339(), "2025-12-01T00:00:00+00:00");
        assert_eq!(month_start(t, 12).to_rfc3339(), "2027-01-01T00:00:00+00:00");
    }
}
