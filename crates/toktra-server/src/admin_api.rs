//! The admin face: usage API, organizations, devices, enrollment tokens, budgets,
//! departments, users and API keys, all behind `Authorization: Bearer <API key>`;
//! `/v1/openapi.json` (generated from these handlers) and `/metrics` are open.
//!
//! [`admin_router`] returns a plain `axum::Router` so the dashboard can `.merge()` its
//! own routes onto it.

use crate::AppState;
use crate::agent_api::ApiError;
use crate::ops::{Admin, AdminError, CreatedApiKey, CreatedToken, secret_hash};
use crate::store::{
    ApiKeyInfo, Budget, Device, DeviceStatus, EnrollmentToken, Org, Period, UsageCursor,
    UsageQuery, UsageRow, User,
};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Store(s) => s.into(),
            AdminError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", m),
        }
    }
}

fn bad_request(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", m)
}

/// Parses a JSON object body. Serde would also take an array for a struct, which no
/// client means, so the object shape is checked first.
fn json_body<T: serde::de::DeserializeOwned>(
    r: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<T, ApiError> {
    let v = r.map(|Json(v)| v).map_err(|e| match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ),
        other => bad_request(other.body_text()),
    })?;
    if !v.is_object() {
        return Err(bad_request("the body must be a JSON object"));
    }
    serde_json::from_value(v).map_err(|e| bad_request(format!("invalid body: {e}")))
}

/// JSON Schema's integers include `5.0`; serde's i64 does not. Accepts both.
fn int_like<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!(
            "expected an integer, got {n}"
        ))),
    }
}

fn opt_int_like<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "int_like")] i64);
    Ok(Option::<W>::deserialize(d)?.map(|W(i)| i))
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}

fn query<T>(r: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    r.map(|Query(v)| v).map_err(|e| bad_request(e.body_text()))
}

// Deserialize: `toktra admin --server` reads it back.
/// Error body of every 4xx/5xx.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: String,
    /// What was wrong and what to do.
    pub message: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UsageItem {
    pub user_id: String,
    pub user_email: Option<String>,
    /// The product as the catalog names it.
    pub model: String,
    pub provider: String,
    /// Start of the period: `YYYY-MM-DDTHH:00:00Z` (hourly), `YYYY-MM-DD` (daily, and
    /// weekly: the Monday), `YYYY-MM` (monthly).
    pub period: String,
    pub total_requests: i64,
    pub total_input_tokens: i64,
    pub total_output_tokens: i64,
    pub estimated_cost_usd: f64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UsagePage {
    pub items: Vec<UsageItem>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
    /// Items over all pages.
    pub total_count: i64,
}

/// The query of `GET /v1/usage`; `toktra admin usage` sends the same struct.
#[derive(Serialize, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Bucket size; default daily.
    #[param(value_type = Option<Period>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// First day (UTC, inclusive), `YYYY-MM-DD`.
    #[param(value_type = Option<String>, format = Date)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    /// Last day (UTC, inclusive), `YYYY-MM-DD`.
    #[param(value_type = Option<String>, format = Date)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The product (catalog name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Only this organization (all organizations otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// From `next_cursor` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1 to 100; default 25.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

fn parse_day(field: &str, s: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad_request(format!("{field}: expected YYYY-MM-DD, got {s:?}")))
}

fn period_label(p: Period, bucket: i64) -> String {
    let t = DateTime::from_timestamp(bucket, 0).unwrap_or_default();
    match p {
        Period::Hourly => t.format("%Y-%m-%dT%H:00:00Z").to_string(),
        Period::Daily | Period::Weekly => t.format("%Y-%m-%d").to_string(),
        Period::Monthly => t.format("%Y-%m").to_string(),
    }
}

fn encode_cursor(c: &UsageCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_cursor(s: &str) -> Result<UsageCursor, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad_request("cursor: not a cursor this API returned"))
}

/// Usage per user, product and period.
#[utoipa::path(get, path = "/v1/usage", params(UsageParams), security(("api_key" = [])),
    responses((status = 200, body = UsagePage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn usage(
    State(st): State<AppState>,
    q: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Json<UsagePage>, ApiError> {
    Ok(Json(query_usage(st.store.as_ref(), query(q)?).await?))
}

/// The usage API as a library call (the CLI and the dashboard use it too).
pub async fn query_usage(store: &dyn crate::Store, p: UsageParams) -> Result<UsagePage, ApiError> {
    let p = UsageParams {
        period: non_empty(p.period),
        start_date: p.start_date,
        end_date: p.end_date,
        user_id: non_empty(p.user_id),
        provider: non_empty(p.provider),
        model: non_empty(p.model),
        department: non_empty(p.department),
        org_id: non_empty(p.org_id),
        cursor: non_empty(p.cursor),
        limit: non_empty(p.limit),
    };
    let period = match p.period.as_deref() {
        None => Period::Daily,
        Some("hourly") => Period::Hourly,
        Some("daily") => Period::Daily,
        Some("weekly") => Period::Weekly,
        Some("monthly") => Period::Monthly,
        Some(other) => {
            return Err(bad_request(format!(
                "period: hourly, daily, weekly or monthly, not {other:?}"
            )));
        }
    };
    let limit = match p.limit.as_deref() {
        None => 25,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(bad_request(format!(
                    "limit: an integer from 1 to 100, not {s:?}"
                )));
            }
        },
    };
    let start = p
        .start_date
        .as_deref()
        .map(|s| parse_day("start_date", s))
        .transpose()?;
    let end = p
        .end_date
        .as_deref()
        .map(|s| parse_day("end_date", s).map(|t| t + chrono::Duration::days(1)))
        .transpose()?;
    let after = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let q = UsageQuery {
        org_id: p.org_id,
        period,
        start,
        end,
        user_id: p.user_id,
        provider: p.provider,
        model: p.model,
        department: p.department,
        after,
        limit,
    };
    let page = store.usage(&q).await?;
    let next_cursor = if page.has_more {
        page.rows.last().map(|r: &UsageRow| {
            encode_cursor(&UsageCursor {
                bucket: r.bucket,
                org: r.org_id.clone(),
                user: r.user_id.clone(),
                provider: r.provider.clone(),
                product: r.product.clone(),
            })
        })
    } else {
        None
    };
    Ok(UsagePage {
        items: page
            .rows
            .into_iter()
            .map(|r| UsageItem {
                period: period_label(period, r.bucket),
                user_id: r.user_id,
                user_email: r.user_email,
                model: r.product,
                provider: r.provider,
                total_requests: r.requests,
                total_input_tokens: r.input_tokens,
                total_output_tokens: r.output_tokens,
                estimated_cost_usd: r.cost_usd,
            })
            .collect(),
        next_cursor,
        has_more: page.has_more,
        total_count: page.total_count,
    })
}

// The request bodies below are also what `toktra admin --server` sends: one definition
// of each request for the server and its client.

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NewOrg {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    /// CN that device CSRs must carry; default "Toktra Device".
    #[schema(min_length = 1, max_length = 64)]
    pub cert_subject: Option<String>,
}

#[utoipa::path(get, path = "/v1/orgs", security(("api_key" = [])),
    responses((status = 200, body = Vec<Org>), (status = 401, body = ErrorBody)))]
async fn list_orgs(State(st): State<AppState>) -> Result<Json<Vec<Org>>, ApiError> {
    Ok(Json(st.store.list_orgs().await?))
}

#[utoipa::path(post, path = "/v1/orgs", request_body = NewOrg, security(("api_key" = [])),
    responses((status = 201, body = Org), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn create_org(
    State(st): State<AppState>,
    b: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Org>), ApiError> {
    let b: NewOrg = json_body(b)?;
    let org = Admin::new(st.store.clone())
        .create_org(&b.name, b.cert_subject.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(org)))
}

async fn require_org(st: &AppState, org_id: &str) -> Result<Org, ApiError> {
    st.store.get_org(org_id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("organization {org_id} not found"),
        )
    })
}

#[utoipa::path(get, path = "/v1/orgs/{org_id}", security(("api_key" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = Org), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_org(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
) -> Result<Json<Org>, ApiError> {
    Ok(Json(require_org(&st, &org_id).await?))
}

#[utoipa::path(get, path = "/v1/orgs/{org_id}/devices", security(("api_key" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = Vec<Device>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_devices(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
) -> Result<Json<Vec<Device>>, ApiError> {
    require_org(&st, &org_id).await?;
    Ok(Json(st.store.list_devices(Some(&org_id)).await?))
}

#[utoipa::path(post, path = "/v1/orgs/{org_id}/devices/{device_id}/lock", security(("api_key" = [])),
    params(("org_id" = String, Path), ("device_id" = String, Path)),
    responses((status = 200, body = Device), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn lock_device(
    State(st): State<AppState>,
    Path((org_id, device_id)): Path<(String, String)>,
) -> Result<Json<Device>, ApiError> {
    Ok(Json(
        Admin::new(st.store.clone())
            .set_device_locked(&org_id, &device_id, true)
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/orgs/{org_id}/devices/{device_id}/unlock", security(("api_key" = [])),
    params(("org_id" = String, Path), ("device_id" = String, Path)),
    responses((status = 200, body = Device), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unlock_device(
    State(st): State<AppState>,
    Path((org_id, device_id)): Path<(String, String)>,
) -> Result<Json<Device>, ApiError> {
    Ok(Json(
        Admin::new(st.store.clone())
            .set_device_locked(&org_id, &device_id, false)
            .await?,
    ))
}

#[derive(Serialize, Deserialize, ToSchema, Default)]
pub struct NewToken {
    /// After this instant the token no longer enrolls.
    pub expires_at: Option<DateTime<Utc>>,
    /// How many devices may enroll with it.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "opt_int_like")]
    pub max_uses: Option<i64>,
}

#[utoipa::path(get, path = "/v1/orgs/{org_id}/enrollment-tokens", security(("api_key" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = Vec<EnrollmentToken>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_tokens(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
) -> Result<Json<Vec<EnrollmentToken>>, ApiError> {
    require_org(&st, &org_id).await?;
    Ok(Json(st.store.list_enrollment_tokens(&org_id).await?))
}

#[utoipa::path(post, path = "/v1/orgs/{org_id}/enrollment-tokens", request_body = NewToken, security(("api_key" = [])),
    params(("org_id" = String, Path)),
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn create_token(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
    b: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let b: NewToken = json_body(b)?;
    require_org(&st, &org_id).await?;
    let t = Admin::new(st.store.clone())
        .create_enrollment_token(&org_id, b.expires_at, b.max_uses)
        .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

#[utoipa::path(post, path = "/v1/orgs/{org_id}/enrollment-tokens/{token_id}/revoke", security(("api_key" = [])),
    params(("org_id" = String, Path), ("token_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(st): State<AppState>,
    Path((org_id, token_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let owned = st
        .store
        .list_enrollment_tokens(&org_id)
        .await?
        .iter()
        .any(|t| t.id == token_id);
    if !owned {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("enrollment token {token_id} not found in organization {org_id}"),
        ));
    }
    st.store.revoke_enrollment_token(&token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SetBudget {
    /// None: the organization-wide budget.
    pub department: Option<String>,
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "int_like")]
    pub monthly_tokens: i64,
    #[serde(default)]
    pub hard_cap: bool,
    #[serde(default)]
    pub rollover: bool,
}

impl SetBudget {
    /// The budget this request sets in `org_id`; an empty department means the
    /// organization-wide budget.
    pub fn into_budget(self, org_id: String) -> Budget {
        Budget {
            org_id,
            department: self.department.filter(|d| !d.is_empty()),
            monthly_tokens: self.monthly_tokens,
            hard_cap: self.hard_cap,
            rollover: self.rollover,
        }
    }
}

#[utoipa::path(get, path = "/v1/orgs/{org_id}/budgets", security(("api_key" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = Vec<Budget>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_budgets(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
) -> Result<Json<Vec<Budget>>, ApiError> {
    require_org(&st, &org_id).await?;
    Ok(Json(st.store.list_budgets(&org_id).await?))
}

#[utoipa::path(put, path = "/v1/orgs/{org_id}/budgets", request_body = SetBudget, security(("api_key" = [])),
    params(("org_id" = String, Path)),
    responses((status = 200, body = Budget), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn set_budget(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
    b: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<Budget>, ApiError> {
    let b: SetBudget = json_body(b)?;
    require_org(&st, &org_id).await?;
    let budget = b.into_budget(org_id);
    Admin::new(st.store.clone()).set_budget(&budget).await?;
    Ok(Json(budget))
}

/// Deletes the organization-wide budget.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/budgets/organization", security(("api_key" = [])),
    params(("org_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_org_budget(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    st.store.delete_budget(&org_id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a department's budget.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/budgets/departments/{department}", security(("api_key" = [])),
    params(("org_id" = String, Path), ("department" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_department_budget(
    State(st): State<AppState>,
    Path((org_id, department)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    st.store.delete_budget(&org_id, Some(&department)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One budget's state this month (as agents see it, without a user).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct BudgetStatusItem {
    pub department: Option<String>,
    /// `YYYY-MM`, UTC.
    pub period: String,
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    /// ok | warning | exceeded
    pub state: String,
    pub hard_cap: bool,
    pub threshold_pct: Option<u8>,
}

#[utoipa::path(get, path = "/v1/orgs/{org_id}/budgets/status", security(("api_key" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = Vec<BudgetStatusItem>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn budget_status(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
) -> Result<Json<Vec<BudgetStatusItem>>, ApiError> {
    require_org(&st, &org_id).await?;
    Ok(Json(
        budget_status_items(st.store.as_ref(), &org_id, Utc::now()).await?,
    ))
}

/// This month's status of every budget of an organization, as the API returns it (the
/// CLI uses it too, so its `--json` is the same contract).
pub async fn budget_status_items(
    store: &dyn crate::Store,
    org_id: &str,
    now: DateTime<Utc>,
) -> crate::store::Result<Vec<BudgetStatusItem>> {
    let entries = crate::budget::org_status(store, org_id, now).await?;
    Ok(entries.into_iter().map(BudgetStatusItem::from).collect())
}

impl From<toktra_proto::BudgetEntry> for BudgetStatusItem {
    fn from(e: toktra_proto::BudgetEntry) -> Self {
        BudgetStatusItem {
            department: e.department,
            period: e.period,
            limit: e.limit,
            used: e.used,
            remaining: e.remaining,
            state: serde_json::to_value(e.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            hard_cap: e.hard_cap,
            threshold_pct: e.threshold_pct,
        }
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct Department {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
}

#[utoipa::path(get, path = "/v1/orgs/{org_id}/departments", security(("api_key" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = Vec<Department>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_departments(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
) -> Result<Json<Vec<Department>>, ApiError> {
    require_org(&st, &org_id).await?;
    Ok(Json(
        st.store
            .list_departments(&org_id)
            .await?
            .into_iter()
            .map(|name| Department { name })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/v1/orgs/{org_id}/departments", request_body = Department, security(("api_key" = [])),
    params(("org_id" = String, Path)),
    responses((status = 201, body = Department), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn create_department(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
    b: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Department>), ApiError> {
    let b: Department = json_body(b)?;
    require_org(&st, &org_id).await?;
    if b.name.trim().is_empty() || b.name.len() > 200 {
        return Err(bad_request("name: 1 to 200 characters"));
    }
    st.store.create_department(&org_id, &b.name).await?;
    Ok((StatusCode::CREATED, Json(b)))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SetUser {
    /// The local account as agents report it (`ACME\jsmith`, `jsmith`).
    #[schema(min_length = 1, max_length = 1024)]
    pub user_id: String,
    pub email: Option<String>,
    pub department: Option<String>,
}

impl SetUser {
    /// The user this request sets in `org_id`; empty strings mean "none".
    pub fn into_user(self, org_id: String) -> User {
        User {
            org_id,
            user_id: self.user_id,
            email: self.email.filter(|s| !s.is_empty()),
            department: self.department.filter(|s| !s.is_empty()),
        }
    }
}

#[utoipa::path(get, path = "/v1/orgs/{org_id}/users", security(("api_key" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = Vec<User>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_users(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
) -> Result<Json<Vec<User>>, ApiError> {
    require_org(&st, &org_id).await?;
    Ok(Json(st.store.list_users(&org_id).await?))
}

/// Creates or updates a user's email and department.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/users", request_body = SetUser, security(("api_key" = [])),
    params(("org_id" = String, Path)),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn set_user(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
    b: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    let b: SetUser = json_body(b)?;
    require_org(&st, &org_id).await?;
    let u = b.into_user(org_id);
    Admin::new(st.store.clone()).set_user(&u).await?;
    Ok(Json(u))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    pub imported: usize,
}

/// CSV lines `user_id,email,department` (header optional).
#[utoipa::path(post, path = "/v1/orgs/{org_id}/users/import", request_body(content = String, content_type = "text/csv", description = "user_id,email,department lines"),
    security(("api_key" = [])), params(("org_id" = String, Path)),
    responses((status = 200, body = ImportResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn import_users(
    State(st): State<AppState>,
    Path(org_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ImportResult>, ApiError> {
    require_org(&st, &org_id).await?;
    let text = std::str::from_utf8(&body).map_err(|_| bad_request("the CSV is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(bad_request(
            "the CSV is empty; send user_id,email,department lines",
        ));
    }
    let imported = Admin::new(st.store.clone())
        .import_users_csv(&org_id, text)
        .await?;
    Ok(Json(ImportResult { imported }))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NewApiKey {
    #[schema(max_length = 200)]
    pub name: String,
}

#[utoipa::path(get, path = "/v1/api-keys", security(("api_key" = [])),
    responses((status = 200, body = Vec<ApiKeyInfo>), (status = 401, body = ErrorBody)))]
async fn list_api_keys(State(st): State<AppState>) -> Result<Json<Vec<ApiKeyInfo>>, ApiError> {
    Ok(Json(st.store.list_api_keys().await?))
}

#[utoipa::path(post, path = "/v1/api-keys", request_body = NewApiKey, security(("api_key" = [])),
    responses((status = 201, body = CreatedApiKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn create_api_key(
    State(st): State<AppState>,
    b: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let b: NewApiKey = json_body(b)?;
    Ok((
        StatusCode::CREATED,
        Json(Admin::new(st.store.clone()).create_api_key(&b.name).await?),
    ))
}

#[utoipa::path(post, path = "/v1/api-keys/{key_id}/revoke", security(("api_key" = [])), params(("key_id" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_api_key(
    State(st): State<AppState>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    st.store.revoke_api_key(&key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Toktra admin API", description = "Usage, devices, budgets, enrollment tokens and API keys of a Toktra server."),
    paths(usage, list_orgs, create_org, get_org, list_devices, lock_device, unlock_device, list_tokens, create_token,
        revoke_token, list_budgets, set_budget, delete_org_budget, delete_department_budget, budget_status, list_departments, create_department,
        list_users, set_user, import_users, list_api_keys, create_api_key, revoke_api_key),
    components(schemas(DeviceStatus, Period)),
    modifiers(&SecurityAddon)
)]
pub struct ApiDoc;

/// Requires a valid, unrevoked API key.
async fn require_api_key(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let key = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(key) = key else {
        st.metrics.rejection("admin_unauthorized");
        return unauthorized(
            "send Authorization: Bearer <API key> (create one with `toktra admin api-key create`)",
        );
    };
    match st.store.api_key_valid(&secret_hash(key)).await {
        Ok(true) => next.run(req).await,
        Ok(false) => {
            st.metrics.rejection("admin_unauthorized");
            unauthorized("the API key is unknown or revoked")
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn unauthorized(m: &str) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        Json(ErrorBody {
            error: "unauthorized".into(),
            message: m.into(),
        }),
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    r
}

/// The admin face. The dashboard merges its own routes onto this router.
pub fn admin_router(state: AppState) -> axum::Router {
    let protected = axum::Router::new()
        .route("/v1/usage", get(usage))
        .route("/v1/orgs", get(list_orgs).post(create_org))
        .route("/v1/orgs/{org_id}", get(get_org))
        .route("/v1/orgs/{org_id}/devices", get(list_devices))
        .route(
            "/v1/orgs/{org_id}/devices/{device_id}/lock",
            post(lock_device),
        )
        .route(
            "/v1/orgs/{org_id}/devices/{device_id}/unlock",
            post(unlock_device),
        )
        .route(
            "/v1/orgs/{org_id}/enrollment-tokens",
            get(list_tokens).post(create_token),
        )
        .route(
            "/v1/orgs/{org_id}/enrollment-tokens/{token_id}/revoke",
            post(revoke_token),
        )
        .route(
            "/v1/orgs/{org_id}/budgets",
            get(list_budgets).put(set_budget),
        )
        .route(
            "/v1/orgs/{org_id}/budgets/organization",
            axum::routing::delete(delete_org_budget),
        )
        .route(
            "/v1/orgs/{org_id}/budgets/departments/{department}",
            axum::routing::delete(delete_department_budget),
        )
        .route("/v1/orgs/{org_id}/budgets/status", get(budget_status))
        .route(
            "/v1/orgs/{org_id}/departments",
            get(list_departments).post(create_department),
        )
        .route("/v1/orgs/{org_id}/users", get(list_users).post(set_user))
        .route("/v1/orgs/{org_id}/users/import", post(import_users))
        .route("/v1/api-keys", get(list_api_keys).post(create_api_key))
        .route("/v1/api-keys/{key_id}/revoke", post(revoke_api_key))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    axum::Router::new()
        .route(
            "/v1/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        )
        .route(
            "/metrics",
            get(|State(st): State<AppState>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    st.metrics.render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .merge(protected)
        .with_state(state)
}
