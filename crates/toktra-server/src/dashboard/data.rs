//! What the dashboard reads and changes, as one narrow trait. The server's store
//! implements it; the dashboard never talks SQL itself, so the SQLite and PostgreSQL
//! stores show the same pages.

use chrono::{DateTime, NaiveDate, Utc};

/// A failure of the data source behind the dashboard.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The named object (device, budget, token) does not exist in this organization.
    #[error("{0} not found")]
    NotFound(String),
    /// The change was refused because of what the administrator entered.
    #[error("{0}")]
    Invalid(String),
    /// The store failed; the message is for the log, not for the page.
    #[error("store error: {0}")]
    Store(String),
}

pub type DataResult<T> = Result<T, DataError>;

/// An administrator who may sign in to the dashboard of one organization.
#[derive(Debug, Clone)]
pub struct AdminAccount {
    pub id: String,
    pub org_id: String,
    pub email: String,
    /// PHC string (argon2id); never the password.
    pub password_hash: String,
}

/// Which usage rows to read: calendar days in UTC, both ends included. (User,
/// provider and department filters are applied by the dashboard to these rows, so
/// the filter menus can list everything the period holds.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageFilter {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// Usage of one user with one provider and category on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub day: NaiveDate,
    pub user_id: String,
    pub user_email: Option<String>,
    pub department: Option<String>,
    pub provider: String,
    /// `api`, `chat`, `coding` or `platform` (the catalog's categories).
    pub category: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// The store's device status: the dashboard shows exactly what is stored.
pub use crate::store::DeviceStatus;

#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub id: String,
    pub hostname: String,
    pub platform: String,
    pub agent_version: String,
    pub status: DeviceStatus,
    pub cert_expires_at: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
}

/// One budget and how much of it this calendar month has used.
#[derive(Debug, Clone)]
pub struct BudgetRow {
    /// None is the organization-wide budget.
    pub department: Option<String>,
    /// Tokens per calendar month (UTC), including any rollover.
    pub limit_tokens: u64,
    pub used_tokens: u64,
    pub hard_cap: bool,
    pub rollover: bool,
    /// `YYYY-MM`.
    pub period: String,
}

/// A budget as the administrator creates or edits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetInput {
    pub department: Option<String>,
    pub limit_tokens: u64,
    pub hard_cap: bool,
    pub rollover: bool,
}

/// A user as agents report them (`ACME\jsmith`), with what the directory knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub user_id: String,
    pub email: Option<String>,
    pub department: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EnrollmentTokenRow {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub uses: u64,
    pub max_uses: Option<u64>,
    pub revoked: bool,
}

/// A freshly created token: the secret is shown once and never again.
#[derive(Debug, Clone)]
pub struct NewEnrollmentToken {
    pub id: String,
    pub secret: String,
}

/// Recent use: one user with one product in one hour.
#[derive(Debug, Clone)]
pub struct ActivityRow {
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    pub user_id: String,
    pub provider: String,
    pub product: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Everything the dashboard needs from the server's store, scoped by organization.
#[async_trait::async_trait]
pub trait DashboardData: Send + Sync + 'static {
    async fn admin_by_email(&self, email: &str) -> DataResult<Option<AdminAccount>>;
    /// Creates an administrator; the e-mail is unique across the server.
    async fn create_admin(
        &self,
        org_id: &str,
        email: &str,
        password_hash: &str,
    ) -> DataResult<AdminAccount>;
    async fn org_name(&self, org_id: &str) -> DataResult<Option<String>>;

    async fn usage(&self, org_id: &str, filter: &UsageFilter) -> DataResult<Vec<UsageRow>>;
    async fn recent_activity(&self, org_id: &str, limit: usize) -> DataResult<Vec<ActivityRow>>;

    async fn devices(&self, org_id: &str) -> DataResult<Vec<DeviceRow>>;
    async fn set_device_locked(
        &self,
        org_id: &str,
        device_id: &str,
        locked: bool,
    ) -> DataResult<()>;

    async fn budgets(&self, org_id: &str, now: DateTime<Utc>) -> DataResult<Vec<BudgetRow>>;
    async fn upsert_budget(&self, org_id: &str, budget: &BudgetInput) -> DataResult<()>;
    async fn users(&self, org_id: &str) -> DataResult<Vec<UserRow>>;
    /// Puts a user in a department (keeping the e-mail the directory has for them).
    async fn set_user_department(
        &self,
        org_id: &str,
        user_id: &str,
        department: &str,
    ) -> DataResult<()>;
    /// Imports `user_id,email,department` lines (the format of the admin API and
    /// `toktra admin`); returns how many users were written.
    async fn import_users_csv(&self, org_id: &str, csv: &str) -> DataResult<usize>;

    async fn enrollment_tokens(&self, org_id: &str) -> DataResult<Vec<EnrollmentTokenRow>>;
    async fn create_enrollment_token(
        &self,
        org_id: &str,
        expires_at: Option<DateTime<Utc>>,
        max_uses: Option<u64>,
    ) -> DataResult<NewEnrollmentToken>;
    async fn revoke_enrollment_token(&self, org_id: &str, token_id: &str) -> DataResult<()>;
}
