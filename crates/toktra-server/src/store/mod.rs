//! Storage behind one trait, with SQLite (embedded default) and PostgreSQL
//! implementations. Both keep the same tables (see `migrations/`) and the same
//! semantics; the shared test suite in `tests/store.rs` runs against each. The
//! [`Store`] implementation is written once (`sql.rs`, over a small per-dialect `Db`
//! trait); `sqlite.rs` and `postgres.rs` hold only connections, migrations, the month
//! bucket and the ingest transaction.
//!
//! Usage is kept twice: every event row (idempotence on `event_id`, audit) and an
//! hourly roll-up per (org, user, provider, product) updated in the same transaction
//! as the events, which the usage API and the budgets read.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use toktra_proto::FlowEvent;
use uuid::Uuid;

#[macro_use]
mod sql;
pub mod postgres;
pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the store's worker stopped: {0}")]
    Worker(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    /// A unique, primary-key or foreign-key constraint refused the write (either
    /// dialect).
    pub fn is_constraint_violation(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                f.code == rusqlite::ErrorCode::ConstraintViolation
            }
            StoreError::Postgres(sqlx::Error::Database(db)) => {
                db.is_unique_violation() || db.is_foreign_key_violation()
            }
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Org {
    pub id: String,
    pub name: String,
    /// The CN device CSRs must carry (CertSubject).
    pub cert_subject: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct EnrollmentToken {
    pub id: String,
    pub org_id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub revoked: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    Pending,
    Enrolled,
    Locked,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Enrolled => "enrolled",
            DeviceStatus::Locked => "locked",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "enrolled" => DeviceStatus::Enrolled,
            "locked" => DeviceStatus::Locked,
            _ => DeviceStatus::Pending,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Device {
    pub org_id: String,
    pub id: String,
    pub hostname: Option<String>,
    pub platform: Option<String>,
    pub agent_version: Option<String>,
    pub status: DeviceStatus,
    pub cert_serial: Option<String>,
    /// The serial before the last renewal: still accepted until it expires, so an agent
    /// that renewed but did not yet reconnect is not locked out.
    pub prev_cert_serial: Option<String>,
    pub cert_expires_at: Option<DateTime<Utc>>,
    pub enrolled_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
}

/// An event as stored: the agent's event plus the server's classification and cost.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event: FlowEvent,
    pub provider: Option<String>,
    pub product: Option<String>,
    pub category: Option<String>,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    pub accepted: u32,
    pub duplicates: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Budget {
    pub org_id: String,
    /// None: the organization-wide budget.
    pub department: Option<String>,
    /// Tokens per calendar month (UTC).
    pub monthly_tokens: i64,
    pub hard_cap: bool,
    /// Unused tokens of the previous month are added to this month's limit.
    pub rollover: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct User {
    pub org_id: String,
    /// The local account as agents report it (`ACME\jsmith`, `jsmith`).
    pub user_id: String,
    pub email: Option<String>,
    pub department: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hourly,
    #[default]
    Daily,
    Weekly,
    Monthly,
}

#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub org_id: Option<String>,
    pub period: Period,
    /// Inclusive lower bound (hour resolution).
    pub start: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub end: Option<DateTime<Utc>>,
    pub user_id: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub department: Option<String>,
    pub after: Option<UsageCursor>,
    pub limit: u32,
}

/// Keyset position: the grouping key of the last item returned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UsageCursor {
    pub bucket: i64,
    pub org: String,
    pub user: String,
    pub provider: String,
    pub product: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub bucket: i64,
    pub org_id: String,
    pub user_id: String,
    pub user_email: Option<String>,
    pub provider: String,
    pub product: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsagePage {
    pub rows: Vec<UsageRow>,
    pub has_more: bool,
    pub total_count: i64,
}

/// A dashboard administrator of one organization.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminUser {
    pub id: String,
    pub org_id: String,
    /// Stored lower-case; unique across the server.
    pub email: String,
    /// argon2id PHC string; never the password.
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// Everything the server persists. Implementations must make `ingest` one transaction
/// and safe under concurrency: two batches racing never lose or double an event or a
/// roll-up increment.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_org(&self, org: &Org) -> Result<()>;
    async fn get_org(&self, id: &str) -> Result<Option<Org>>;
    async fn list_orgs(&self) -> Result<Vec<Org>>;

    async fn create_enrollment_token(&self, t: &EnrollmentToken, hash: &str) -> Result<()>;
    async fn list_enrollment_tokens(&self, org_id: &str) -> Result<Vec<EnrollmentToken>>;
    async fn revoke_enrollment_token(&self, id: &str) -> Result<()>;
    /// Atomically checks (org, not revoked, not expired, uses left) and counts one use.
    /// Returns false when the token cannot be used.
    /// With `org_id` None (a Bearer token), the token's own org is used. Returns the org
    /// the device enrolls into, or None when the token cannot be used.
    async fn use_enrollment_token(
        &self,
        org_id: Option<&str>,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>>;

    async fn create_api_key(&self, k: &ApiKeyInfo, hash: &str) -> Result<()>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>>;
    async fn revoke_api_key(&self, id: &str) -> Result<()>;
    async fn api_key_valid(&self, hash: &str) -> Result<bool>;

    async fn device_exists(&self, org_id: &str, device_id: &str) -> Result<bool>;
    async fn insert_device(&self, d: &Device) -> Result<()>;
    async fn get_device(&self, org_id: &str, device_id: &str) -> Result<Option<Device>>;
    async fn list_devices(&self, org_id: Option<&str>) -> Result<Vec<Device>>;
    async fn set_device_status(&self, org_id: &str, device_id: &str, s: DeviceStatus)
    -> Result<()>;
    /// Records a renewal: the current serial becomes the previous one.
    async fn renew_device_cert(
        &self,
        org_id: &str,
        device_id: &str,
        serial: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;

    /// Stores a batch in one transaction, de-duplicating on batch and event id.
    #[allow(clippy::too_many_arguments)]
    async fn ingest(
        &self,
        org_id: &str,
        device_id: &str,
        batch_id: Uuid,
        agent_version: &str,
        dropped: Option<i64>,
        events: &[StoredEvent],
        now: DateTime<Utc>,
    ) -> Result<IngestOutcome>;
    async fn count_events(&self, org_id: &str) -> Result<i64>;

    async fn upsert_budget(&self, b: &Budget) -> Result<()>;
    async fn delete_budget(&self, org_id: &str, department: Option<&str>) -> Result<()>;
    async fn list_budgets(&self, org_id: &str) -> Result<Vec<Budget>>;

    async fn create_department(&self, org_id: &str, name: &str) -> Result<()>;
    async fn list_departments(&self, org_id: &str) -> Result<Vec<String>>;
    async fn upsert_user(&self, u: &User) -> Result<()>;
    async fn list_users(&self, org_id: &str) -> Result<Vec<User>>;
    /// Local users this device reported events for.
    async fn device_users(&self, org_id: &str, device_id: &str) -> Result<Vec<String>>;

    /// Tokens (input + output) used in `[start, end)`, for the whole org or the users of
    /// one department.
    async fn tokens_used(
        &self,
        org_id: &str,
        department: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<i64>;

    async fn usage(&self, q: &UsageQuery) -> Result<UsagePage>;

    /// Creates a dashboard administrator; `Conflict` if the e-mail is taken.
    async fn create_admin_user(&self, a: &AdminUser) -> Result<()>;
    /// The administrator with this (lower-case) e-mail.
    async fn admin_user_by_email(&self, email: &str) -> Result<Option<AdminUser>>;
}

/// Hour bucket (epoch seconds) of an event: the roll-up's time key.
pub fn hour_of(t: DateTime<Utc>) -> i64 {
    let s = t.timestamp();
    s - s.rem_euclid(3600)
}

/// (user, provider, product, hour) of the hourly roll-up.
pub(crate) type RollupKey = (String, String, String, i64);
/// (requests, input tokens, output tokens, cost).
pub(crate) type RollupSum = (i64, i64, i64, f64);

/// Roll-up increments of a set of newly stored events, sorted by key so concurrent
/// transactions lock roll-up rows in the same order (no deadlocks on PostgreSQL).
pub(crate) fn rollup<'a>(
    events: impl Iterator<Item = &'a StoredEvent>,
) -> Vec<(RollupKey, RollupSum)> {
    let mut map: std::collections::BTreeMap<RollupKey, RollupSum> = Default::default();
    for e in events {
        let key = (
            e.event.user.clone().unwrap_or_default(),
            e.provider.clone().unwrap_or_default(),
            e.product.clone().unwrap_or_default(),
            hour_of(e.event.started_at),
        );
        let v = map.entry(key).or_default();
        v.0 += 1;
        v.1 += e.event.est_input_tokens as i64;
        v.2 += e.event.est_output_tokens as i64;
        v.3 += e.cost_usd;
    }
    map.into_iter().collect()
}
