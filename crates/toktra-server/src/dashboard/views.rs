//! The pages, as maud templates. Everything is server-rendered HTML that reads fine
//! without JavaScript; the small script only adds conveniences (copy buttons,
//! auto-submitting filters, reading a CSV file into the import box).

use super::auth::Flash;
use super::charts::{self, PALETTE, Series, compact, grouped};

/// The same provider keeps its colour on every page, period and filter.
pub fn provider_color(p: &str) -> &'static str {
    match p {
        "openai" => PALETTE[0],
        "anthropic" => PALETTE[1],
        "github" => PALETTE[2],
        "perplexity" => PALETTE[3],
        "microsoft" => PALETTE[4],
        "google" => PALETTE[5],
        "mistral" => PALETTE[6],
        // Others by a stable hash of the name over the palette.
        other => {
            PALETTE[other
                .bytes()
                .fold(7usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
                % PALETTE.len()]
        }
    }
}
use super::data::{ActivityRow, BudgetRow, DeviceRow, DeviceStatus, EnrollmentTokenRow, UserRow};
use super::model::{self, Selection, UsageSummary};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

pub const BASE: &str = "/dashboard";

/// Who is looking, for the header and every form's CSRF field.
pub struct Viewer<'a> {
    pub email: &'a str,
    pub org_name: &'a str,
    pub csrf: &'a str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Overview,
    Usage,
    Devices,
    Budgets,
    Enrollment,
}

const NAV: [(Page, &str, &str); 5] = [
    (Page::Overview, "overview", "Overview"),
    (Page::Usage, "usage", "Usage"),
    (Page::Devices, "devices", "Devices"),
    (Page::Budgets, "budgets", "Budgets"),
    (Page::Enrollment, "enrollment", "Enrollment"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light";
            title { (title) " · Toktra" }
            link rel="icon" href=(format!("{BASE}/assets/favicon.svg")) type="image/svg+xml";
            link rel="stylesheet" href=(format!("{BASE}/assets/dashboard.css"));
            script src=(format!("{BASE}/assets/dashboard.js")) defer {}
        }
    }
}

pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

fn logo() -> Markup {
    html! {
        svg class="logo" viewBox="0 0 24 24" aria-hidden="true" {
            rect x="2" y="13" width="4" height="9" rx="1" {}
            rect x="10" y="7" width="4" height="15" rx="1" {}
            rect x="18" y="2" width="4" height="20" rx="1" {}
        }
    }
}

pub fn layout(
    page: Page,
    title: &str,
    viewer: &Viewer<'_>,
    flash: Option<&Flash>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href=(format!("{BASE}/overview")) { (logo()) span { "Toktra" } }
                    span.org title="Organization" { (viewer.org_name) }
                    nav.tabs aria-label="Sections" {
                        @for (p, path, label) in NAV {
                            a href=(format!("{BASE}/{path}")) aria-current=[(p == page).then_some("page")] { (label) }
                        }
                    }
                    form.signout method="post" action=(format!("{BASE}/logout")) {
                        (csrf_field(viewer.csrf))
                        span.who { (viewer.email) }
                        button.link type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(f) = flash {
                        p.flash.(if f.ok { "ok" } else { "err" }) role="status" { (f.text) }
                    }
                    (body)
                }
                footer {
                    "Token counts are estimates from connection metadata; Toktra never reads prompts or responses."
                }
            }
        }
    }
}

pub fn login(csrf: &str, error: Option<&str>, email: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body.login {
                main.login-card {
                    div.brand { (logo()) span { "Toktra" } }
                    h1 { "Sign in" }
                    p.muted { "Administrators of this Toktra server." }
                    @if let Some(e) = error { p.flash.err role="alert" { (e) } }
                    form method="post" action=(format!("{BASE}/login")) {
                        (csrf_field(csrf))
                        label for="email" { "E-mail" }
                        input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
                        label for="password" { "Password" }
                        input #password type="password" name="password" autocomplete="current-password" required;
                        button.primary type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

fn ago(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(t) = t else { return "never".into() };
    let s = (now - t).num_seconds();
    match s {
        ..60 => "just now".into(),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

fn usd(v: f64) -> String {
    let cents = (v * 100.0).round() as u64;
    format!("${}.{:02}", grouped(cents / 100), cents % 100)
}

/// A cost, or "not priced" where tokens were used but the catalog has no list price
/// for the products (a $0.00 there would read as "free").
fn cost(usd_value: f64, tokens: u64) -> String {
    if usd_value == 0.0 && tokens > 0 {
        "not priced".into()
    } else {
        usd(usd_value)
    }
}

fn tile(id: &str, label: &str, value: &str, exact: Option<u64>, note: Markup) -> Markup {
    html! {
        section.tile data-tile=(id) {
            h2 { (label) }
            p.value title=[exact.map(grouped)] data-value=[exact] { (value) }
            p.note { (note) }
        }
    }
}

pub struct OverviewData<'a> {
    pub now: DateTime<Utc>,
    pub summary: &'a UsageSummary,
    pub devices: &'a [DeviceRow],
    pub activity: &'a [ActivityRow],
    pub budgets: &'a [BudgetRow],
}

pub fn overview(d: &OverviewData<'_>) -> Markup {
    let enrolled = d
        .devices
        .iter()
        .filter(|x| x.status == DeviceStatus::Enrolled)
        .count();
    let locked = d
        .devices
        .iter()
        .filter(|x| x.status == DeviceStatus::Locked)
        .count();
    let pending = d
        .devices
        .iter()
        .filter(|x| x.status == DeviceStatus::Pending)
        .count();
    let reporting: Vec<&DeviceRow> = d
        .devices
        .iter()
        .filter(|x| x.status == DeviceStatus::Enrolled)
        .collect();
    let seen = reporting
        .iter()
        .filter(|x| {
            x.last_seen
                .is_some_and(|t| d.now - t < chrono::Duration::hours(24))
        })
        .count();
    let silent: Vec<&&DeviceRow> = reporting
        .iter()
        .filter(|x| {
            x.last_seen
                .is_none_or(|t| d.now - t >= chrono::Duration::hours(24))
        })
        .collect();
    let t = &d.summary.totals;
    let series = provider_series(d.summary, |_, i, o| {
        i.iter().zip(o).map(|(a, b)| a + b).collect()
    });
    html! {
        div.tiles {
            (tile("devices", "Enrolled devices", &enrolled.to_string(), Some(enrolled as u64),
                html! { (locked) " locked · " (pending) " pending" }))
            (tile("users", "Active users · 30 days", &d.summary.active_users.to_string(),
                Some(d.summary.active_users as u64), html! { "with any LLM traffic" }))
            (tile("tokens", "Estimated tokens · 30 days", &compact(t.tokens()), Some(t.tokens()),
                html! { (compact(t.input_tokens)) " in · " (compact(t.output_tokens)) " out" }))
            (tile("cost", "Estimated cost · 30 days", &cost(t.cost_usd, t.tokens()), None,
                html! {
                    @if t.cost_usd == 0.0 && t.tokens() > 0 { "no list prices for these products yet · " }
                    @else { "at list prices · " }
                    (grouped(t.requests)) " requests"
                }))
            section.tile.health.(if silent.is_empty() { "good" } else { "bad" }) data-tile="health" {
                h2 { "Capture health" }
                p.value data-seen=(seen) data-silent=(silent.len()) { (seen) " / " (reporting.len()) }
                p.note {
                    @if silent.is_empty() { "all enrolled devices reported in the last 24 h" }
                    @else { (silent.len()) " silent for more than 24 h" }
                }
            }
        }
        div.grid2 {
            section.card {
                h2 { "Tokens per day · last 30 days" }
                (charts::stacked_bars("Estimated tokens per day by provider, last 30 days", &d.summary.days, &series))
                (legend(&series))
            }
            section.card {
                h2 { "Budgets this month" }
                @if d.budgets.is_empty() {
                    p.muted { "No budgets yet. " a href=(format!("{BASE}/budgets")) { "Create one" } "." }
                } @else {
                    ul.budget-mini {
                        @for b in d.budgets {
                            li {
                                span.name { (b.department.as_deref().unwrap_or("Organization")) }
                                (progress(b.used_tokens, b.limit_tokens))
                                span.pct { (model::percent(b.used_tokens, b.limit_tokens)) }
                            }
                        }
                    }
                }
                @if !silent.is_empty() {
                    h3 { "Silent devices" }
                    ul.silent {
                        @for x in silent.iter().take(8) {
                            li { strong { (x.hostname) } " · last seen " (ago(x.last_seen, d.now)) }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Recent activity" }
            div.table-wrap {
                table.data #activity {
                    thead { tr { th { "Hour (UTC)" } th { "User" } th { "Product" } th.hide-phone { "Provider" } th.num.hide-phone { "Requests" } th.num { "Est. tokens" } } }
                    tbody {
                        @for a in d.activity {
                            tr {
                                td title=(ago(Some(a.hour), d.now)) { (a.hour.format("%b %-d, %H:00")) }
                                td.mono { (a.user_id) }
                                td { (a.product) }
                                td.hide-phone { (provider_label(&a.provider)) }
                                td.num.hide-phone { (grouped(a.requests)) }
                                td.num { (grouped(a.input_tokens + a.output_tokens)) }
                            }
                        }
                        @if d.activity.is_empty() {
                            tr { td colspan="6" .muted { "Nothing reported yet. Enroll a device on the Enrollment page." } }
                        }
                    }
                }
            }
        }
    }
}

fn provider_series<'a>(
    s: &'a UsageSummary,
    pick: impl Fn(&str, &[u64], &[u64]) -> Vec<u64>,
) -> Vec<Series<'a>> {
    s.by_provider
        .iter()
        .map(|(name, i, o, _)| Series {
            name: provider_label(name),
            color: provider_color(name),
            values: pick(name, i, o),
        })
        .collect()
}

fn legend(series: &[Series<'_>]) -> Markup {
    html! {
        ul.legend {
            @for s in series {
                li { svg viewBox="0 0 10 10" aria-hidden="true" { rect width="10" height="10" rx="2" fill=(s.color) {} } (s.name) }
            }
        }
    }
}

/// A progress bar as SVG (no inline style, so the strict CSP holds).
fn progress(used: u64, limit: u64) -> Markup {
    let level = model::budget_level(used, limit);
    let w = if limit == 0 {
        100.0
    } else {
        (used as f64 / limit as f64 * 100.0).min(100.0)
    };
    html! {
        svg.progress.(level) viewBox="0 0 100 8" preserveAspectRatio="none" role="img"
            aria-label=(format!("{} used", model::percent(used, limit))) data-level=(level) {
            rect.track width="100" height="8" rx="4" {}
            rect.fill width=(format!("{w:.1}")) height="8" rx="4" {}
        }
    }
}

pub struct UsageView<'a> {
    pub days: u32,
    pub selection: &'a Selection,
    pub options: &'a [Vec<String>; 3],
    pub summary: &'a UsageSummary,
}

fn query_string(days: u32, sel: &Selection) -> String {
    let mut q = format!("days={days}");
    for (k, v) in [
        ("user", &sel.user),
        ("provider", &sel.provider),
        ("department", &sel.department),
    ] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", urlencode(v)));
        }
    }
    q
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn select(
    name: &str,
    label: &str,
    all: &str,
    options: &[String],
    chosen: &Option<String>,
) -> Markup {
    html! {
        label.field {
            span { (label) }
            select name=(name) data-autosubmit {
                option value="" { (all) }
                @for o in options {
                    option value=(o) selected[chosen.as_deref() == Some(o.as_str())] {
                        (if name == "provider" { provider_label(o) } else { o.as_str() })
                    }
                }
            }
        }
    }
}

pub fn usage(v: &UsageView<'_>) -> Markup {
    let s = v.summary;
    let heaviest = s.users.first().map(|u| u.totals.tokens()).unwrap_or(0);
    let input = provider_series(s, |_, i, _| i.to_vec());
    let output = provider_series(s, |_, _, o| o.to_vec());
    let cat_total: u64 = s.by_category.iter().map(|c| c.1.tokens()).sum();
    html! {
        form.filters method="get" action=(format!("{BASE}/usage")) {
            div.switch role="group" aria-label="Period" {
                @for d in model::WINDOWS {
                    a href=(format!("{BASE}/usage?{}", query_string(d, v.selection)))
                        aria-current=[(d == v.days).then_some("true")] { (d) " days" }
                }
            }
            input type="hidden" name="days" value=(v.days);
            (select("user", "User", "All users", &v.options[0], &v.selection.user))
            (select("provider", "Provider", "All providers", &v.options[1], &v.selection.provider))
            (select("department", "Department", "All departments", &v.options[2], &v.selection.department))
            button.secondary.nojs-only type="submit" { "Apply" }
            a.button.secondary #csv href=(format!("{BASE}/usage.csv?{}", query_string(v.days, v.selection))) download { "Export CSV" }
        }
        div.tiles.small {
            (tile("tokens", "Estimated tokens", &compact(s.totals.tokens()), Some(s.totals.tokens()), html! { "last " (v.days) " days" }))
            (tile("input", "Input tokens", &compact(s.totals.input_tokens), Some(s.totals.input_tokens), html! { "sent to providers" }))
            (tile("output", "Output tokens", &compact(s.totals.output_tokens), Some(s.totals.output_tokens), html! { "received from providers" }))
            (tile("cost", "Estimated cost", &cost(s.totals.cost_usd, s.totals.tokens()), None, html! { (grouped(s.totals.requests)) " requests" }))
        }
        div.grid2 {
            section.card {
                h2 { "Input tokens by provider" }
                (charts::stacked_bars("Input tokens per day by provider", &s.days, &input))
                (legend(&input))
            }
            section.card {
                h2 { "Output tokens by provider" }
                (charts::stacked_bars("Output tokens per day by provider", &s.days, &output))
                (legend(&output))
            }
        }
        section.card {
            h2 { "Top users" }
            div.table-wrap {
                table.data.bars #top-users {
                    thead { tr { th { "User" } th.hide-phone { "Department" } th.barcol { "Relative to the heaviest user" } th.num.hide-phone { "Requests" } th.num { "Tokens" } th.num.hide-phone { "Cost" } } }
                    tbody {
                        @for u in s.users.iter().take(10) {
                            tr data-user=(u.user_id) {
                                td { span.mono { (u.user_id) } @if let Some(e) = &u.email { br; small.muted { (e) } } }
                                td.hide-phone { (u.department.as_deref().unwrap_or("—")) }
                                td.barcol { (bar(u.totals.tokens(), heaviest)) }
                                td.num.hide-phone { (grouped(u.totals.requests)) }
                                td.num data-tokens=(u.totals.tokens()) { (grouped(u.totals.tokens())) }
                                td.num.hide-phone { (cost(u.totals.cost_usd, u.totals.tokens())) }
                            }
                        }
                        @if s.users.is_empty() { tr { td colspan="6" .muted { "No usage in this period." } } }
                    }
                }
            }
            @if s.users.len() > 10 { p.muted { small { (s.users.len() - 10) " more users in the CSV export." } } }
        }
        div.grid2 {
            section.card {
                h2 { "By category" }
                @let parts: Vec<(&str, &str, u64)> = s.by_category.iter().enumerate()
                    .map(|(k, (c, t))| (category_label(c), category_color(k), t.tokens())).collect();
                (charts::share_bar("Tokens by category", &parts))
                div.table-wrap {
                    table.data #categories {
                        thead { tr { th { "Category" } th.num { "Tokens" } th.num { "Share" } th.num { "Cost" } } }
                        tbody {
                            @for (k, (c, t)) in s.by_category.iter().enumerate() {
                                tr data-category=(c) {
                                    td { svg.swatch viewBox="0 0 10 10" aria-hidden="true" { rect width="10" height="10" rx="2" fill=(category_color(k)) {} } (category_label(c)) }
                                    td.num data-tokens=(t.tokens()) { (grouped(t.tokens())) }
                                    td.num { (model::percent(t.tokens(), cat_total)) }
                                    td.num { (cost(t.cost_usd, t.tokens())) }
                                }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "By provider" }
                div.table-wrap {
                    table.data #providers {
                        thead { tr { th { "Provider" } th.num { "Input" } th.num { "Output" } th.num { "Cost" } } }
                        tbody {
                            @for (p, _, _, t) in &s.by_provider {
                                tr data-provider=(p) {
                                    td { svg.swatch viewBox="0 0 10 10" aria-hidden="true" { rect width="10" height="10" rx="2" fill=(provider_color(p)) {} } (provider_label(p)) }
                                    td.num { (grouped(t.input_tokens)) }
                                    td.num { (grouped(t.output_tokens)) }
                                    td.num { (cost(t.cost_usd, t.tokens())) }
                                }
                            }
                            @if s.by_provider.is_empty() { tr { td colspan="4" .muted { "No usage in this period." } } }
                        }
                    }
                }
            }
        }
    }
}

/// How people write the provider's name; the raw id stays in URLs and CSV.
pub fn provider_label(p: &str) -> &str {
    match p {
        "openai" => "OpenAI",
        "anthropic" => "Anthropic",
        "google" => "Google",
        "microsoft" => "Microsoft",
        "github" => "GitHub",
        "aws" => "AWS",
        "mistral" => "Mistral",
        "perplexity" => "Perplexity",
        "anysphere" => "Anysphere (Cursor)",
        "meta" => "Meta",
        "cohere" => "Cohere",
        "xai" => "xAI",
        "deepseek" => "DeepSeek",
        other => other,
    }
}

/// Category colours: one blue family, so they never read as providers.
const CATEGORY_COLORS: [&str; 5] = ["#12355b", "#2f6db5", "#7aa7dc", "#b7d0ee", "#9aa3af"];

fn category_color(k: usize) -> &'static str {
    CATEGORY_COLORS[k.min(CATEGORY_COLORS.len() - 1)]
}

fn category_label(c: &str) -> &str {
    match c {
        "api" => "API",
        "chat" => "Chat",
        "coding" => "Coding",
        "platform" => "Platform",
        other => other,
    }
}

fn bar(v: u64, max: u64) -> Markup {
    let w = if max == 0 {
        0.0
    } else {
        v as f64 / max as f64 * 100.0
    };
    html! {
        svg.bar viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true" {
            rect width=(format!("{w:.1}")) height="10" rx="2" {}
        }
    }
}

pub fn devices(devices: &[DeviceRow], now: DateTime<Utc>, csrf: &str) -> Markup {
    html! {
        section.card {
        p.muted { (devices.len()) " devices. A locked device's uploads and renewals are refused until it is unlocked." }
        div.table-wrap {
            table.data #devices {
                thead { tr { th { "Hostname" } th.hide-phone { "Platform" } th.hide-phone { "Agent" } th { "Status" } th.hide-phone { "Certificate expires" } th { "Last seen" } th { span.sr { "Action" } } } }
                tbody {
                    @for d in devices {
                        @let days_left = d.cert_expires_at.map(|t| (t - now).num_days());
                        tr data-device=(d.id) data-status=(d.status.as_str()) {
                            td {
                                strong { (d.hostname) } br;
                                small.muted.mono.hide-phone { (d.id) }
                                small.muted.phone-only { (d.platform) " · agent " (d.agent_version) }
                            }
                            td.hide-phone { (d.platform) }
                            td.mono.hide-phone { (d.agent_version) }
                            td { span.badge.(d.status.as_str()) { (d.status.as_str()) } }
                            td.hide-phone.(if days_left.is_some_and(|n| n < 14) { "warn-text" } else { "" }) {
                                @match d.cert_expires_at {
                                    Some(t) => { (t.format("%Y-%m-%d")) br; small.muted { "in " (days_left.unwrap_or(0)) " days" } }
                                    None => { "—" }
                                }
                            }
                            td.(if d.last_seen.is_none_or(|t| now - t > chrono::Duration::hours(24)) { "warn-text" } else { "" })
                                title=[d.last_seen.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())] { (ago(d.last_seen, now)) }
                            td {
                                @let (action, label) = if d.status == DeviceStatus::Locked { ("unlock", "Unlock") } else { ("lock", "Lock") };
                                form method="post" action=(format!("{BASE}/devices/{}/{action}", urlencode(&d.id))) {
                                    (csrf_field(csrf))
                                    button.small.(if action == "lock" { "danger" } else { "secondary" }) type="submit"
                                        data-confirm=[(action == "lock").then(|| format!("Lock {}? Its uploads will be refused.", d.hostname))] { (label) }
                                }
                            }
                        }
                    }
                    @if devices.is_empty() { tr { td colspan="7" .muted { "No devices yet." } } }
                }
            }
        }
        }
    }
}

pub fn budgets(
    budgets: &[BudgetRow],
    users: &[UserRow],
    departments: &[String],
    csrf: &str,
) -> Markup {
    html! {
        section.card {
            h2 { "Budgets · " (budgets.first().map(|b| b.period.as_str()).unwrap_or("this month")) }
            div.table-wrap {
                table.data #budgets {
                    thead { tr { th { "Department" } th.num.hide-phone { "Limit" } th.num { "Used" } th.num.hide-phone { "Remaining" } th.barcol { "Progress" } th { "Cap" } th { span.sr { "Edit" } } } }
                    tbody {
                        @for b in budgets {
                            @let name = b.department.as_deref().unwrap_or("");
                            tr data-department=(name) data-level=(model::budget_level(b.used_tokens, b.limit_tokens)) {
                                td { strong { (b.department.as_deref().unwrap_or("Organization-wide")) }
                                    @if b.department.is_none() { br; small.muted.hide-phone { "everyone; users without a department count only here" } } }
                                td.num.hide-phone data-limit=(b.limit_tokens) { (grouped(b.limit_tokens)) }
                                td.num data-used=(b.used_tokens) { (grouped(b.used_tokens)) }
                                td.num.hide-phone { (grouped(b.limit_tokens.saturating_sub(b.used_tokens))) }
                                td.barcol { (progress(b.used_tokens, b.limit_tokens)) span.pct { (model::percent(b.used_tokens, b.limit_tokens)) } }
                                td { span.badge.(if b.hard_cap { "hard" } else { "soft" }) { (if b.hard_cap { "hard" } else { "soft" }) } @if b.rollover { " " small.muted { "rollover" } } }
                                td {
                                    details.edit {
                                        summary { "Edit" }
                                        (budget_form(csrf, Some(b), departments))
                                    }
                                }
                            }
                        }
                        @if budgets.is_empty() { tr { td colspan="7" .muted { "No budgets yet." } } }
                    }
                }
            }
            details.create {
                summary.button.secondary { "New budget" }
                (budget_form(csrf, None, departments))
            }
        }
        section.card {
            h2 { "People and departments" }
            p.muted { "Users that are not mapped fall under the organization budget." }
            div.grid2 {
                div {
                    div.table-wrap {
                        table.data #mapping {
                            thead { tr { th { "User" } th.hide-phone { "E-mail" } th { "Department" } } }
                            tbody {
                                @for m in users {
                                    tr data-user=(m.user_id) {
                                        td.mono { (m.user_id) }
                                        td.hide-phone { (m.email.as_deref().unwrap_or("—")) }
                                        td { (m.department.as_deref().unwrap_or("— (organization)")) }
                                    }
                                }
                                @if users.is_empty() { tr { td colspan="3" .muted { "No users known yet." } } }
                            }
                        }
                    }
                    form.inline method="post" action=(format!("{BASE}/budgets/mapping")) {
                        (csrf_field(csrf))
                        label.field { span { "User" } input name="user_id" required placeholder="ACME\\jsmith"; }
                        label.field { span { "Department" } input name="department" required list="departments"; }
                        button.secondary type="submit" { "Map" }
                    }
                }
                form #csv-import method="post" action=(format!("{BASE}/budgets/mapping/import")) {
                    (csrf_field(csrf))
                    label for="csv" { "Import CSV: " code { "user_id,email,department" } " per line (a header line is optional; empty fields mean none)" }
                    input #csv-file type="file" accept=".csv,text/csv" hidden;
                    textarea #csv name="csv" rows="6" placeholder="user_id,email,department\nACME\\jsmith,jsmith@acme.example,Engineering" {}
                    button.secondary type="submit" { "Import" }
                }
            }
            datalist #departments { @for d in departments { option value=(d) {} } }
        }
    }
}

fn budget_form(csrf: &str, b: Option<&BudgetRow>, _departments: &[String]) -> Markup {
    let dept = b.and_then(|b| b.department.clone()).unwrap_or_default();
    html! {
        form.budget method="post" action=(format!("{BASE}/budgets")) {
            (csrf_field(csrf))
            @if b.is_some() {
                input type="hidden" name="department" value=(dept);
            } @else {
                label.field { span { "Department (empty: organization)" } input name="department" list="departments"; }
            }
            label.field { span { "Monthly limit (tokens)" }
                input name="limit_tokens" type="number" min="0" step="1" required value=[b.map(|b| b.limit_tokens)]; }
            fieldset.cap {
                legend { "Cap" }
                label { input type="radio" name="cap" value="soft" checked[!b.is_some_and(|b| b.hard_cap)]; " Soft (alerts only)" }
                label { input type="radio" name="cap" value="hard" checked[b.is_some_and(|b| b.hard_cap)]; " Hard (extension may block)" }
            }
            label.check { input type="checkbox" name="rollover" value="on" checked[b.is_some_and(|b| b.rollover)]; " Roll unused tokens over" }
            button.primary type="submit" { "Save budget" }
        }
    }
}

pub struct EnrollView<'a> {
    pub tokens: &'a [EnrollmentTokenRow],
    pub new_token: Option<(&'a str, &'a str)>,
    pub ingest_url: &'a str,
    pub org_id: &'a str,
    pub now: DateTime<Utc>,
}

/// The Windows command that deploys an agent enrolled with `token`.
pub fn msiexec_command(ingest_url: &str, org_id: &str, token: &str) -> String {
    format!(
        "msiexec /i ToktraAgent.msi /qn INGEST_URL={ingest_url} ORG_ID={org_id} ENROLL_TOKEN={token}"
    )
}

/// The Linux equivalent: the same keys in /etc/toktra/agent.toml (plus the server's
/// CA, which a private server needs), then the agent.
pub fn linux_command(ingest_url: &str, org_id: &str, token: &str) -> String {
    format!(
        "sudo install -d -m 0755 /etc/toktra\n\
         sudo install -m 0644 toktra-server-ca.pem /etc/toktra/server-ca.pem\n\
         sudo tee /etc/toktra/agent.toml >/dev/null <<'EOF'\n\
         ingest_url = \"{ingest_url}\"\n\
         org_id = \"{org_id}\"\n\
         enroll_token = \"{token}\"\n\
         server_ca = \"/etc/toktra/server-ca.pem\"\n\
         EOF\n\
         sudo chmod 0600 /etc/toktra/agent.toml\n\
         sudo toktra agent run"
    )
}

pub fn enrollment(v: &EnrollView<'_>, csrf: &str) -> Markup {
    let token_for_cmd = v.new_token.map(|t| t.1).unwrap_or("<ENROLL_TOKEN>");
    html! {
        @if let Some((id, secret)) = v.new_token {
            section.card.new-token #new-token data-token-id=(id) {
                h2 { "New enrollment token" }
                p { "Copy it now: it is shown only once." }
                p { code.secret #token-secret { (secret) } button.small.secondary type="button" data-copy="#token-secret" { "Copy" } }
            }
        }
        section.card {
            h2 { "Deploy the agent" }
            p.muted {
                @if v.new_token.is_some() { "These commands carry the new token." }
                @else { "Create a token below; the commands are then filled in with it." }
            }
            h3 { "Windows (MSI, e.g. through Intune or Group Policy)" }
            div.cmd { pre.wrap #cmd-windows { (msiexec_command(v.ingest_url, v.org_id, token_for_cmd)) } button.small.secondary type="button" data-copy="#cmd-windows" { "Copy" } }
            h3 { "Linux" }
            p.muted { small { "Download " a href=(format!("{BASE}/toktra-server-ca.pem")) download { "toktra-server-ca.pem" } " (this server's root CA) next to where you run it." } }
            div.cmd { pre #cmd-linux { (linux_command(v.ingest_url, v.org_id, token_for_cmd)) } button.small.secondary type="button" data-copy="#cmd-linux" { "Copy" } }
        }
        section.card {
            h2 { "Enrollment tokens" }
            div.table-wrap {
                table.data #tokens {
                    thead { tr { th { "Token" } th.hide-phone { "Created" } th.hide-phone { "Expires" } th.num { "Uses" } th { "State" } th { span.sr { "Action" } } } }
                    tbody {
                        @for t in v.tokens {
                            @let expired = t.expires_at.is_some_and(|e| e <= v.now);
                            @let used_up = t.max_uses.is_some_and(|m| t.uses >= m);
                            @let state = if t.revoked { "revoked" } else if expired { "expired" } else if used_up { "used up" } else { "active" };
                            tr data-token=(t.id) data-state=(state) {
                                td.mono { (t.id) }
                                td.hide-phone { (t.created_at.format("%Y-%m-%d")) }
                                td.hide-phone { @match t.expires_at { Some(e) => (e.format("%Y-%m-%d %H:%M")), None => "never" } }
                                td.num { (t.uses) @if let Some(m) = t.max_uses { " / " (m) } }
                                td { span.badge.(state.replace(' ', "-")) { (state) } }
                                td {
                                    @if !t.revoked {
                                        form method="post" action=(format!("{BASE}/enrollment/tokens/{}/revoke", urlencode(&t.id))) {
                                            (csrf_field(csrf))
                                            button.small.danger type="submit" data-confirm="Revoke this token? Devices not yet enrolled with it will be refused." { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                        @if v.tokens.is_empty() { tr { td colspan="6" .muted { "No tokens yet." } } }
                    }
                }
            }
            form.inline #create-token method="post" action=(format!("{BASE}/enrollment/tokens")) {
                (csrf_field(csrf))
                label.field { span { "Expires in (days)" } input name="expires_days" type="number" min="1" max="3650" placeholder="never"; }
                label.field { span { "Max uses" } input name="max_uses" type="number" min="1" placeholder="unlimited"; }
                button.primary type="submit" { "Create token" }
            }
        }
    }
}

/// A page for errors the administrator can act on.
pub fn error_page(status: u16, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Error"))
            body.login {
                main.login-card {
                    h1 { (status) }
                    p { (text) }
                    p { a href=(format!("{BASE}/overview")) { "Back to the dashboard" } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_commands_carry_the_three_values() {
        assert_eq!(
            msiexec_command("https://ingest.acme.example:8443", "org1", "tkn_abc"),
            "msiexec /i ToktraAgent.msi /qn INGEST_URL=https://ingest.acme.example:8443 ORG_ID=org1 ENROLL_TOKEN=tkn_abc"
        );
        let linux = linux_command("https://ingest.acme.example:8443", "org1", "tkn_abc");
        for line in [
            "ingest_url = \"https://ingest.acme.example:8443\"",
            "org_id = \"org1\"",
            "enroll_token = \"tkn_abc\"",
            "sudo toktra agent run",
        ] {
            assert!(
                linux.lines().any(|l| l == line),
                "{line} missing in\n{linux}"
            );
        }
    }

    #[test]
    fn providers_keep_their_colour() {
        let known = [
            "openai",
            "anthropic",
            "github",
            "perplexity",
            "microsoft",
            "google",
            "mistral",
        ];
        let colours: std::collections::HashSet<_> =
            known.iter().map(|p| provider_color(p)).collect();
        assert_eq!(
            colours.len(),
            known.len(),
            "known providers never share a colour"
        );
        assert_eq!(provider_color("newco"), provider_color("newco"));
        assert_eq!(provider_label("openai"), "OpenAI");
        assert_eq!(provider_label("newco"), "newco");
    }

    #[test]
    fn costs_without_prices_are_not_zero_dollars() {
        assert_eq!(cost(0.0, 0), "$0.00");
        assert_eq!(cost(0.0, 10), "not priced");
        assert_eq!(cost(1234.567, 10), "$1,234.57");
    }
}
