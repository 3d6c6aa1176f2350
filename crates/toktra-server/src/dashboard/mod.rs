//! The admin dashboard: server-rendered pages on the admin face of `toktra server`.
//!
//! Sign-in with an administrator account (argon2id), a server-side session behind an
//! HttpOnly, SameSite=Strict cookie (Secure when the admin face speaks TLS), and a
//! CSRF token in every form. Pages: overview, usage, devices, budgets, enrollment.
//! All under `/dashboard/`; `router` returns a stateless `Router` to `.merge()` into
//! the admin face.

pub mod auth;
pub mod charts;
pub mod data;
pub mod model;
pub mod store_data;
pub mod views;

use auth::{Flash, LOGIN_CSRF_COOKIE, SESSION_COOKIE, Session, Sessions};
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{Duration, Utc};
use data::{BudgetInput, DashboardData, DataError, UsageFilter, UsageRow};
use maud::Markup;
use model::Selection;
use serde::Deserialize;
use std::sync::Arc;
use views::{BASE, Page, Viewer};

/// How the dashboard is reached and what it tells agents.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// The agent face's URL, written into the deployment commands (INGEST_URL).
    pub ingest_url: String,
    /// The admin face is served over TLS: session cookies get the Secure flag.
    pub secure_cookies: bool,
    /// The server's root CA (PEM), offered for download: agents of a private server
    /// need it to trust the agent face.
    pub root_ca_pem: String,
}

struct Dashboard {
    data: Arc<dyn DashboardData>,
    sessions: Sessions,
    throttle: auth::LoginThrottle,
    config: DashboardConfig,
}

type Shared = Arc<Dashboard>;

/// The dashboard's routes, ready to merge into the admin face's router. They do
/// their own authentication (session cookie), independent of the API's keys.
pub fn router(data: Arc<dyn DashboardData>, config: DashboardConfig) -> Router {
    let state: Shared = Arc::new(Dashboard {
        data,
        sessions: Sessions::default(),
        throttle: auth::LoginThrottle::default(),
        config,
    });
    Router::new()
        .route("/", get(to_overview))
        .route(BASE, get(to_overview))
        .route(&format!("{BASE}/"), get(to_overview))
        .route(&format!("{BASE}/login"), get(login_form).post(login))
        .route(&format!("{BASE}/logout"), post(logout))
        .route(&format!("{BASE}/overview"), get(overview))
        .route(&format!("{BASE}/usage"), get(usage))
        .route(&format!("{BASE}/usage.csv"), get(usage_csv))
        .route(&format!("{BASE}/devices"), get(devices))
        .route(
            &format!("{BASE}/devices/{{id}}/{{action}}"),
            post(device_action),
        )
        .route(&format!("{BASE}/budgets"), get(budgets).post(save_budget))
        .route(&format!("{BASE}/budgets/mapping"), post(map_user))
        .route(
            &format!("{BASE}/budgets/mapping/import"),
            post(import_mapping),
        )
        .route(&format!("{BASE}/enrollment"), get(enrollment))
        .route(&format!("{BASE}/enrollment/tokens"), post(create_token))
        .route(
            &format!("{BASE}/enrollment/tokens/{{id}}/revoke"),
            post(revoke_token),
        )
        .route(&format!("{BASE}/toktra-server-ca.pem"), get(root_ca))
        .route(&format!("{BASE}/assets/{{file}}"), get(asset))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
pub enum CreateAdminError {
    #[error("not an e-mail address: {0:?}")]
    BadEmail(String),
    #[error(transparent)]
    Password(#[from] auth::AuthError),
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Creates an administrator who can sign in to the dashboard of `org_id`; the
/// password is hashed with argon2id before it reaches the store.
pub async fn create_admin(
    data: &dyn DashboardData,
    org_id: &str,
    email: &str,
    password: &str,
) -> Result<data::AdminAccount, CreateAdminError> {
    let email = email.trim();
    if !valid_email(email) {
        return Err(CreateAdminError::BadEmail(email.to_owned()));
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| auth::AuthError::Hash(e.to_string()))??;
    Ok(data
        .create_admin(org_id, &email.to_lowercase(), &hash)
        .await?)
}

/// The sign-in name `toktra up` gives the administrator it creates at first start.
pub const FIRST_ADMIN_EMAIL: &str = "admin@toktra.local";

/// Creates an administrator with a random 24-character password and returns the
/// password (for a one-time display: only its argon2id hash is stored).
pub async fn create_first_admin(
    data: &dyn DashboardData,
    org_id: &str,
    email: &str,
) -> Result<String, CreateAdminError> {
    // Letters and digits only, so it copies cleanly from a terminal (~143 bits).
    let mut password = String::new();
    while password.len() < 24 {
        password.extend(
            auth::random_token()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(24 - password.len()),
        );
    }
    create_admin(data, org_id, email, &password).await?;
    Ok(password)
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

// ---- responses -------------------------------------------------------------------

/// Why a request did not get its page.
enum PageError {
    /// No (live) session: go to the sign-in page.
    SignIn,
    /// The form's CSRF token did not match the session's.
    Csrf,
    NotFound(String),
    Store(String),
}

impl From<DataError> for PageError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::NotFound(what) => PageError::NotFound(what),
            DataError::Invalid(t) | DataError::Store(t) => PageError::Store(t),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => Redirect::to(&format!("{BASE}/login")).into_response(),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                views::error_page(403, "This form expired or did not come from this dashboard. Reload the page and try again."),
            )
                .into_response(),
            PageError::NotFound(what) => {
                (StatusCode::NOT_FOUND, views::error_page(404, &format!("{what} not found."))).into_response()
            }
            PageError::Store(detail) => {
                tracing::error!(%detail, "dashboard: store failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    views::error_page(500, "The server could not read its data. The server log has the details."),
                )
                    .into_response()
            }
        }
    }
}

type PageResult = Result<Response, PageError>;

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    // No inline script or style anywhere, so the policy can be strict.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

fn html(m: Markup) -> Response {
    m.into_response()
}

fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

// ---- sign-in ---------------------------------------------------------------------

/// A signed-in administrator, extracted from the session cookie.
struct Admin {
    token: String,
    session: Session,
}

impl Admin {
    fn check_csrf(&self, form_csrf: &str) -> Result<(), PageError> {
        if auth::constant_time_eq(&self.session.csrf, form_csrf) {
            Ok(())
        } else {
            Err(PageError::Csrf)
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Admin
where
    Shared: FromRef<S>,
{
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        let dash = Shared::from_ref(state);
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or(PageError::SignIn)?;
        let session = dash
            .sessions
            .get(&token, Utc::now())
            .ok_or(PageError::SignIn)?;
        Ok(Admin { token, session })
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| auth::cookie_value(h, name).map(str::to_owned))
}

async fn to_overview() -> Response {
    see_other(&format!("{BASE}/overview"))
}

async fn login_form(State(d): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(t) = cookie(&headers, SESSION_COOKIE)
        && d.sessions.get(&t, Utc::now()).is_some()
    {
        return see_other(&format!("{BASE}/overview"));
    }
    login_page(&d, &headers, None, "", StatusCode::OK)
}

/// The sign-in form with a double-submit CSRF token (there is no session yet).
fn login_page(
    d: &Dashboard,
    headers: &HeaderMap,
    error: Option<&str>,
    email: &str,
    status: StatusCode,
) -> Response {
    let csrf = cookie(headers, LOGIN_CSRF_COOKIE).unwrap_or_else(auth::random_token);
    let set = auth::set_cookie(LOGIN_CSRF_COOKIE, &csrf, d.config.secure_cookies, None);
    (
        status,
        [(header::SET_COOKIE, set)],
        views::login(&csrf, error, email),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    email: String,
    password: String,
}

async fn login(
    State(d): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> PageResult {
    let cookie_csrf = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if cookie_csrf.is_empty() || !auth::constant_time_eq(&cookie_csrf, &f.csrf) {
        return Err(PageError::Csrf);
    }
    let email = f.email.trim().to_lowercase();
    if let Some(minutes) = d.throttle.blocked_for(&email, Utc::now()) {
        tracing::warn!(email = %email, "dashboard sign-in throttled");
        let text =
            format!("Too many failed sign-ins for this e-mail. Try again in {minutes} minutes.");
        return Ok(login_page(
            &d,
            &headers,
            Some(&text),
            &email,
            StatusCode::TOO_MANY_REQUESTS,
        ));
    }
    let account = d.data.admin_by_email(&email).await?;
    let phc = account
        .as_ref()
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| auth::decoy_hash().to_owned());
    let password = f.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &phc))
        .await
        .map_err(|e| PageError::Store(e.to_string()))?
        .map_err(|e| PageError::Store(e.to_string()))?;
    match account {
        Some(a) if ok => {
            d.throttle.succeeded(&email);
            let token = d.sessions.create(&a.id, &a.org_id, &a.email, Utc::now());
            tracing::info!(admin = %a.email, "dashboard sign-in");
            let mut res = see_other(&format!("{BASE}/overview"));
            let h = res.headers_mut();
            for c in [
                auth::set_cookie(SESSION_COOKIE, &token, d.config.secure_cookies, None),
                auth::set_cookie(LOGIN_CSRF_COOKIE, "", d.config.secure_cookies, Some(0)),
            ] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    h.append(header::SET_COOKIE, v);
                }
            }
            Ok(res)
        }
        _ => {
            tracing::warn!(email = %email, "dashboard sign-in refused");
            d.throttle.failed(&email, Utc::now());
            Ok(login_page(
                &d,
                &headers,
                Some("Wrong e-mail or password."),
                &email,
                StatusCode::UNAUTHORIZED,
            ))
        }
    }
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn logout(State(d): State<Shared>, admin: Admin, Form(f): Form<CsrfOnly>) -> PageResult {
    admin.check_csrf(&f.csrf)?;
    d.sessions.remove(&admin.token);
    let mut res = see_other(&format!("{BASE}/login"));
    let c = auth::set_cookie(SESSION_COOKIE, "", d.config.secure_cookies, Some(0));
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

// ---- pages -----------------------------------------------------------------------

async fn page(d: &Dashboard, admin: &Admin, page: Page, title: &str, body: Markup) -> PageResult {
    let org_name = d
        .data
        .org_name(&admin.session.org_id)
        .await?
        .unwrap_or_else(|| admin.session.org_id.clone());
    let flash = d.sessions.take_flash(&admin.token);
    let viewer = Viewer {
        email: &admin.session.email,
        org_name: &org_name,
        csrf: &admin.session.csrf,
    };
    Ok(html(views::layout(
        page,
        title,
        &viewer,
        flash.as_ref(),
        body,
    )))
}

async fn usage_rows(
    d: &Dashboard,
    org: &str,
    days: u32,
) -> Result<(u32, UsageFilter, Vec<UsageRow>), PageError> {
    let days = if model::WINDOWS.contains(&days) {
        days
    } else {
        30
    };
    let (start, end) = model::window(Utc::now().date_naive(), days);
    let filter = UsageFilter { start, end };
    let rows = d.data.usage(org, &filter).await?;
    Ok((days, filter, rows))
}

async fn overview(State(d): State<Shared>, admin: Admin) -> PageResult {
    let org = &admin.session.org_id;
    let now = Utc::now();
    let (_, f, rows) = usage_rows(&d, org, 30).await?;
    let all: Vec<&UsageRow> = rows.iter().collect();
    let summary = model::summarize(&all, f.start, f.end);
    let devices = d.data.devices(org).await?;
    let activity = d.data.recent_activity(org, 12).await?;
    let budgets = d.data.budgets(org, now).await?;
    let body = views::overview(&views::OverviewData {
        now,
        summary: &summary,
        devices: &devices,
        activity: &activity,
        budgets: &budgets,
    });
    page(&d, &admin, Page::Overview, "Overview", body).await
}

#[derive(Deserialize, Default)]
struct UsageParams {
    days: Option<u32>,
    user: Option<String>,
    provider: Option<String>,
    department: Option<String>,
}

impl UsageParams {
    fn selection(&self) -> Selection {
        let some = |v: &Option<String>| {
            v.as_ref()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        Selection {
            user: some(&self.user),
            provider: some(&self.provider),
            department: some(&self.department),
        }
    }
}

async fn usage(State(d): State<Shared>, admin: Admin, Query(q): Query<UsageParams>) -> PageResult {
    let (days, f, rows) = usage_rows(&d, &admin.session.org_id, q.days.unwrap_or(30)).await?;
    let selection = q.selection();
    let options = model::filter_options(&rows);
    let shown: Vec<&UsageRow> = rows.iter().filter(|r| selection.matches(r)).collect();
    let summary = model::summarize(&shown, f.start, f.end);
    let body = views::usage(&views::UsageView {
        days,
        selection: &selection,
        options: &options,
        summary: &summary,
    });
    page(&d, &admin, Page::Usage, "Usage", body).await
}

/// The rows behind the usage page as shown (same period and filters), one line per
/// day, user, provider and category.
async fn usage_csv(
    State(d): State<Shared>,
    admin: Admin,
    Query(q): Query<UsageParams>,
) -> PageResult {
    let (days, f, mut rows) = usage_rows(&d, &admin.session.org_id, q.days.unwrap_or(30)).await?;
    let selection = q.selection();
    rows.retain(|r| selection.matches(r) && r.day >= f.start && r.day <= f.end);
    rows.sort_by(|a, b| {
        (a.day, &a.user_id, &a.provider, &a.category).cmp(&(
            b.day,
            &b.user_id,
            &b.provider,
            &b.category,
        ))
    });
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "date",
        "user_id",
        "user_email",
        "department",
        "provider",
        "category",
        "requests",
        "input_tokens",
        "output_tokens",
        "estimated_cost_usd",
    ];
    let write = |w: &mut csv::Writer<Vec<u8>>| -> Result<(), csv::Error> {
        w.write_record(header)?;
        for r in &rows {
            w.write_record([
                r.day.to_string(),
                r.user_id.clone(),
                r.user_email.clone().unwrap_or_default(),
                r.department.clone().unwrap_or_default(),
                r.provider.clone(),
                r.category.clone(),
                r.requests.to_string(),
                r.input_tokens.to_string(),
                r.output_tokens.to_string(),
                format!("{:.6}", r.cost_usd),
            ])?;
        }
        w.flush()?;
        Ok(())
    };
    write(&mut w).map_err(|e| PageError::Store(e.to_string()))?;
    let body = w
        .into_inner()
        .map_err(|e| PageError::Store(e.to_string()))?;
    let name = format!(
        "attachment; filename=\"toktra-usage-{}-{days}d.csv\"",
        f.end
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response())
}

async fn devices(State(d): State<Shared>, admin: Admin) -> PageResult {
    let mut list = d.data.devices(&admin.session.org_id).await?;
    list.sort_by_key(|a| a.hostname.to_lowercase());
    let body = views::devices(&list, Utc::now(), &admin.session.csrf);
    page(&d, &admin, Page::Devices, "Devices", body).await
}

async fn device_action(
    State(d): State<Shared>,
    admin: Admin,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<CsrfOnly>,
) -> PageResult {
    admin.check_csrf(&f.csrf)?;
    let locked = match action.as_str() {
        "lock" => true,
        "unlock" => false,
        _ => return Err(PageError::NotFound(format!("action {action:?}"))),
    };
    let org = &admin.session.org_id;
    d.data.set_device_locked(org, &id, locked).await?;
    tracing::info!(admin = %admin.session.email, device = %id, locked, "dashboard: device lock changed");
    let name = d
        .data
        .devices(org)
        .await?
        .into_iter()
        .find(|x| x.id == id)
        .map_or(id, |x| x.hostname);
    let what = if locked {
        "locked: its uploads and renewals are refused"
    } else {
        "unlocked"
    };
    flash(&d, &admin, true, format!("{name} {what}."));
    Ok(see_other(&format!("{BASE}/devices")))
}

fn flash(d: &Dashboard, admin: &Admin, ok: bool, text: String) {
    d.sessions.set_flash(
        &admin.token,
        Flash {
            ok,
            text,
            new_token: None,
        },
    );
}

async fn budgets(State(d): State<Shared>, admin: Admin) -> PageResult {
    let org = &admin.session.org_id;
    let list = d.data.budgets(org, Utc::now()).await?;
    let users = d.data.users(org).await?;
    let mut departments: Vec<String> = list
        .iter()
        .filter_map(|b| b.department.clone())
        .chain(users.iter().filter_map(|m| m.department.clone()))
        .collect();
    departments.sort();
    departments.dedup();
    let body = views::budgets(&list, &users, &departments, &admin.session.csrf);
    page(&d, &admin, Page::Budgets, "Budgets", body).await
}

#[derive(Deserialize)]
struct BudgetForm {
    csrf: String,
    #[serde(default)]
    department: String,
    limit_tokens: String,
    #[serde(default)]
    cap: String,
    #[serde(default)]
    rollover: Option<String>,
}

async fn save_budget(
    State(d): State<Shared>,
    admin: Admin,
    Form(f): Form<BudgetForm>,
) -> PageResult {
    admin.check_csrf(&f.csrf)?;
    let back = format!("{BASE}/budgets");
    let Ok(limit) = f
        .limit_tokens
        .trim()
        .replace([',', '_', ' '], "")
        .parse::<u64>()
    else {
        flash(
            &d,
            &admin,
            false,
            format!(
                "The limit must be a whole number of tokens, not {:?}.",
                f.limit_tokens
            ),
        );
        return Ok(see_other(&back));
    };
    let department = Some(f.department.trim().to_owned()).filter(|s| !s.is_empty());
    if department.as_ref().is_some_and(|s| s.chars().count() > 100) {
        flash(
            &d,
            &admin,
            false,
            "A department name has at most 100 characters.".into(),
        );
        return Ok(see_other(&back));
    }
    let input = BudgetInput {
        department: department.clone(),
        limit_tokens: limit,
        hard_cap: f.cap == "hard",
        rollover: f.rollover.is_some(),
    };
    match d.data.upsert_budget(&admin.session.org_id, &input).await {
        Ok(()) => {
            let who = department.as_deref().unwrap_or("the organization");
            flash(
                &d,
                &admin,
                true,
                format!(
                    "Budget for {who} saved: {} tokens a month.",
                    charts::grouped(limit)
                ),
            );
        }
        Err(DataError::Invalid(t)) => flash(&d, &admin, false, t),
        Err(e) => return Err(e.into()),
    }
    Ok(see_other(&back))
}

#[derive(Deserialize)]
struct MapForm {
    csrf: String,
    user_id: String,
    department: String,
}

async fn map_user(State(d): State<Shared>, admin: Admin, Form(f): Form<MapForm>) -> PageResult {
    admin.check_csrf(&f.csrf)?;
    let (user, department) = (f.user_id.trim(), f.department.trim());
    if user.is_empty() || department.is_empty() {
        flash(
            &d,
            &admin,
            false,
            "Both the user and the department are needed.".into(),
        );
    } else {
        match d
            .data
            .set_user_department(&admin.session.org_id, user, department)
            .await
        {
            Ok(()) => flash(
                &d,
                &admin,
                true,
                format!("{user} now counts against {department}."),
            ),
            Err(DataError::Invalid(t)) => flash(&d, &admin, false, t),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(see_other(&format!("{BASE}/budgets")))
}

#[derive(Deserialize)]
struct ImportForm {
    csrf: String,
    csv: String,
}

async fn import_mapping(
    State(d): State<Shared>,
    admin: Admin,
    Form(f): Form<ImportForm>,
) -> PageResult {
    admin.check_csrf(&f.csrf)?;
    match d.data.import_users_csv(&admin.session.org_id, &f.csv).await {
        Ok(0) => flash(&d, &admin, false, "The CSV has no rows.".into()),
        Ok(n) => flash(&d, &admin, true, format!("Imported {n} users.")),
        Err(DataError::Invalid(t)) => flash(&d, &admin, false, format!("Nothing imported: {t}")),
        Err(e) => return Err(e.into()),
    }
    Ok(see_other(&format!("{BASE}/budgets")))
}

async fn enrollment(State(d): State<Shared>, admin: Admin) -> PageResult {
    let org = &admin.session.org_id;
    let tokens = d.data.enrollment_tokens(org).await?;
    let new_token = d.sessions.take_flash(&admin.token);
    let body = views::enrollment(
        &views::EnrollView {
            tokens: &tokens,
            new_token: new_token
                .as_ref()
                .and_then(|f| f.new_token.as_ref())
                .map(|(id, s)| (id.as_str(), s.as_str())),
            ingest_url: &d.config.ingest_url,
            org_id: org,
            now: Utc::now(),
        },
        &admin.session.csrf,
    );
    // Put the message back so the layout shows it above the page.
    if let Some(f) = new_token {
        d.sessions.set_flash(
            &admin.token,
            Flash {
                new_token: None,
                ..f
            },
        );
    }
    page(&d, &admin, Page::Enrollment, "Enrollment", body).await
}

#[derive(Deserialize)]
struct TokenForm {
    csrf: String,
    #[serde(default)]
    expires_days: String,
    #[serde(default)]
    max_uses: String,
}

async fn create_token(
    State(d): State<Shared>,
    admin: Admin,
    Form(f): Form<TokenForm>,
) -> PageResult {
    admin.check_csrf(&f.csrf)?;
    let back = format!("{BASE}/enrollment");
    let number = |s: &str, what: &str, max: u64| -> Result<Option<u64>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        match s.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "{what} must be a whole number from 1 to {max}, not {s:?}."
            )),
        }
    };
    let (days, uses) = match (
        number(&f.expires_days, "Expiry (days)", 3650),
        number(&f.max_uses, "Max uses", 1_000_000),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            flash(&d, &admin, false, e);
            return Ok(see_other(&back));
        }
    };
    let expires = days.map(|n| Utc::now() + Duration::days(n as i64));
    let t = d
        .data
        .create_enrollment_token(&admin.session.org_id, expires, uses)
        .await?;
    tracing::info!(admin = %admin.session.email, token = %t.id, "dashboard: enrollment token created");
    d.sessions.set_flash(
        &admin.token,
        Flash {
            ok: true,
            text: "Token created.".into(),
            new_token: Some((t.id, t.secret)),
        },
    );
    Ok(see_other(&back))
}

async fn revoke_token(
    State(d): State<Shared>,
    admin: Admin,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> PageResult {
    admin.check_csrf(&f.csrf)?;
    d.data
        .revoke_enrollment_token(&admin.session.org_id, &id)
        .await?;
    tracing::info!(admin = %admin.session.email, token = %id, "dashboard: enrollment token revoked");
    flash(&d, &admin, true, format!("Token {id} revoked."));
    Ok(see_other(&format!("{BASE}/enrollment")))
}

async fn root_ca(State(d): State<Shared>, _admin: Admin) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"toktra-server-ca.pem\"",
            ),
        ],
        d.config.root_ca_pem.clone(),
    )
        .into_response()
}

// ---- static assets (embedded: the dashboard works offline) -------------------------

const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");
const FAVICON: &str = include_str!("../../assets/favicon.svg");

async fn asset(Path(file): Path<String>) -> Response {
    let (ctype, body) = match file.as_str() {
        "dashboard.css" => ("text/css; charset=utf-8", CSS),
        "dashboard.js" => ("text/javascript; charset=utf-8", JS),
        "favicon.svg" => ("image/svg+xml", FAVICON),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(valid_email("finance@example.com"));
        assert!(!valid_email("finance"));
        assert!(!valid_email("a b@example.com"));
        assert!(!valid_email("a@localhost"));
    }
}
