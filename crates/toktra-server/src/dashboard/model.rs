//! Turns usage rows into what the pages show: totals, per-day series by provider,
//! top users, the category mix. Pure functions, so the arithmetic is tested apart
//! from HTML.

use super::data::UsageRow;
use chrono::{Duration, NaiveDate};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The categories the catalog assigns, in the order the page lists them.
pub const CATEGORIES: [&str; 4] = ["api", "chat", "coding", "platform"];

/// The periods the usage page offers; anything else falls back to 30 days.
pub const WINDOWS: [u32; 3] = [7, 30, 90];

/// The last `days` calendar days (UTC) up to and including `today`.
pub fn window(today: NaiveDate, days: u32) -> (NaiveDate, NaiveDate) {
    let days = if WINDOWS.contains(&days) { days } else { 30 };
    (today - Duration::days(i64::from(days) - 1), today)
}

/// Filters chosen on the usage page; empty means "all".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub user: Option<String>,
    pub provider: Option<String>,
    pub department: Option<String>,
}

impl Selection {
    pub fn matches(&self, r: &UsageRow) -> bool {
        self.user.as_ref().is_none_or(|u| *u == r.user_id)
            && self.provider.as_ref().is_none_or(|p| *p == r.provider)
            && self
                .department
                .as_ref()
                .is_none_or(|d| r.department.as_deref() == Some(d.as_str()))
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

impl Totals {
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
    fn add(&mut self, r: &UsageRow) {
        self.requests += r.requests;
        self.input_tokens += r.input_tokens;
        self.output_tokens += r.output_tokens;
        self.cost_usd += r.cost_usd;
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserUsage {
    pub user_id: String,
    pub email: Option<String>,
    pub department: Option<String>,
    pub totals: Totals,
}

/// Everything the usage page shows for one period and selection.
#[derive(Debug, Clone, Default)]
pub struct UsageSummary {
    pub days: Vec<NaiveDate>,
    pub totals: Totals,
    /// Providers by volume, heaviest first, each with (input, output) per day.
    pub by_provider: Vec<(String, Vec<u64>, Vec<u64>, Totals)>,
    /// Users by tokens, heaviest first.
    pub users: Vec<UserUsage>,
    pub by_category: Vec<(String, Totals)>,
    pub active_users: usize,
}

pub fn summarize(rows: &[&UsageRow], start: NaiveDate, end: NaiveDate) -> UsageSummary {
    let days: Vec<NaiveDate> = start.iter_days().take_while(|d| *d <= end).collect();
    let index: HashMap<NaiveDate, usize> = days.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    let mut totals = Totals::default();
    let mut providers: BTreeMap<&str, (Vec<u64>, Vec<u64>, Totals)> = BTreeMap::new();
    let mut users: BTreeMap<&str, UserUsage> = BTreeMap::new();
    let mut categories: BTreeMap<&str, Totals> = BTreeMap::new();
    for r in rows {
        let Some(&i) = index.get(&r.day) else {
            continue;
        };
        totals.add(r);
        let p = providers
            .entry(&r.provider)
            .or_insert_with(|| (vec![0; days.len()], vec![0; days.len()], Totals::default()));
        p.0[i] += r.input_tokens;
        p.1[i] += r.output_tokens;
        p.2.add(r);
        let u = users.entry(&r.user_id).or_insert_with(|| UserUsage {
            user_id: r.user_id.clone(),
            email: None,
            department: None,
            totals: Totals::default(),
        });
        u.email = u.email.take().or_else(|| r.user_email.clone());
        u.department = u.department.take().or_else(|| r.department.clone());
        u.totals.add(r);
        categories.entry(&r.category).or_default().add(r);
    }
    let mut by_provider: Vec<_> = providers
        .into_iter()
        .map(|(name, (i, o, t))| (name.to_owned(), i, o, t))
        .collect();
    by_provider.sort_by(|a, b| b.3.tokens().cmp(&a.3.tokens()).then(a.0.cmp(&b.0)));
    let mut users: Vec<UserUsage> = users.into_values().collect();
    users.sort_by(|a, b| {
        b.totals
            .tokens()
            .cmp(&a.totals.tokens())
            .then(a.user_id.cmp(&b.user_id))
    });
    // The four known categories always show (an empty one is information too);
    // anything else the catalog may add later follows them.
    let mut by_category: Vec<(String, Totals)> = CATEGORIES
        .iter()
        .map(|c| (c.to_string(), categories.remove(c).unwrap_or_default()))
        .collect();
    by_category.extend(categories.into_iter().map(|(c, t)| (c.to_owned(), t)));
    UsageSummary {
        days,
        totals,
        active_users: users.len(),
        by_provider,
        users,
        by_category,
    }
}

/// The distinct values each filter menu offers.
pub fn filter_options(rows: &[UsageRow]) -> [Vec<String>; 3] {
    let mut users = BTreeSet::new();
    let mut providers = BTreeSet::new();
    let mut departments = BTreeSet::new();
    for r in rows {
        users.insert(r.user_id.clone());
        providers.insert(r.provider.clone());
        if let Some(d) = &r.department {
            departments.insert(d.clone());
        }
    }
    [
        users.into_iter().collect(),
        providers.into_iter().collect(),
        departments.into_iter().collect(),
    ]
}

/// Budget progress colour: under 75 % green, 75–90 % orange, over 90 % red.
pub fn budget_level(used: u64, limit: u64) -> &'static str {
    if limit == 0 {
        return if used == 0 { "ok" } else { "over" };
    }
    let pct = used as f64 * 100.0 / limit as f64;
    if pct < 75.0 {
        "ok"
    } else if pct <= 90.0 {
        "warn"
    } else {
        "over"
    }
}

/// Percent used, for labels: one decimal below 10 %, whole numbers above.
pub fn percent(used: u64, limit: u64) -> String {
    if limit == 0 {
        return "—".into();
    }
    let pct = used as f64 * 100.0 / limit as f64;
    if pct < 10.0 {
        format!("{pct:.1} %")
    } else {
        format!("{pct:.0} %")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        day: u32,
        user: &str,
        dept: Option<&str>,
        provider: &str,
        cat: &str,
        i: u64,
        o: u64,
    ) -> UsageRow {
        UsageRow {
            day: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
            user_id: user.into(),
            user_email: Some(format!("{user}@example.com")),
            department: dept.map(Into::into),
            provider: provider.into(),
            category: cat.into(),
            requests: 1,
            input_tokens: i,
            output_tokens: o,
            cost_usd: (i + o) as f64 / 1000.0,
        }
    }

    #[test]
    fn windows_include_today() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        assert_eq!(
            window(today, 7).0,
            NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
        );
        assert_eq!(
            window(today, 30).0,
            NaiveDate::from_ymd_opt(2026, 10, 28).unwrap()
        );
        assert_eq!(window(today, 12), window(today, 30));
    }

    #[test]
    fn summary_adds_up_and_ranks() {
        let rows = [
            row(1, "ann", Some("eng"), "openai", "chat", 100, 10),
            row(2, "ann", Some("eng"), "anthropic", "coding", 300, 30),
            row(2, "bob", Some("sales"), "openai", "chat", 50, 5),
            row(9, "bob", Some("sales"), "openai", "chat", 999, 999), // outside the window
        ];
        let sel = Selection {
            department: Some("eng".into()),
            ..Default::default()
        };
        let all: Vec<&UsageRow> = rows.iter().collect();
        let start = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
        let s = summarize(&all, start, end);
        assert_eq!(s.days.len(), 3);
        assert_eq!(s.totals.tokens(), 495);
        assert_eq!(s.active_users, 2);
        assert_eq!(s.users[0].user_id, "ann");
        assert_eq!(s.by_provider[0].0, "anthropic");
        assert_eq!(s.by_provider[1].1, vec![100, 50, 0]);
        assert_eq!(s.by_category[0].0, "api");
        assert_eq!(s.by_category[1].1.tokens(), 165);
        let eng: Vec<&UsageRow> = rows.iter().filter(|r| sel.matches(r)).collect();
        assert_eq!(summarize(&eng, start, end).totals.tokens(), 440);
        let [users, providers, depts] = filter_options(&rows);
        assert_eq!((users.len(), providers.len(), depts.len()), (2, 2, 2));
    }

    #[test]
    fn budget_colours_follow_thresholds() {
        assert_eq!(budget_level(74, 100), "ok");
        assert_eq!(budget_level(75, 100), "warn");
        assert_eq!(budget_level(90, 100), "warn");
        assert_eq!(budget_level(91, 100), "over");
        assert_eq!(budget_level(150, 100), "over");
        assert_eq!(budget_level(0, 0), "ok");
        assert_eq!(percent(5, 100), "5.0 %");
        assert_eq!(percent(755, 1000), "76 %");
    }
}
