//! What the SQLite and PostgreSQL stores share: the [`Store`] implementation itself,
//! written once over [`Db`], with SQL text in PostgreSQL's `$n` form (SQLite reads the
//! same text with `?n`, see [`Stmt::sqlite_sql`]), row → domain mapping over either
//! driver's row ([`FromRow`]), and the value each event column takes ([`EventRow`]).
//!
//! Each dialect keeps only what really differs: how a statement reaches its connection,
//! the monthly bucket expression, and the ingest transaction (SQLite inserts row by row
//! on its one writer; PostgreSQL sends column arrays in one round trip).
//!
//! Parameters whose type the SQL cannot tell (`$1 IS NULL`) are written
//! `CAST($1 AS TEXT)`: PostgreSQL needs the type, SQLite takes the cast as a no-op.

use super::*;
use sqlx::Arguments as _;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgRow, Postgres};
use std::borrow::Cow;

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// A value both drivers can bind with its own type (TEXT, BIGINT, DOUBLE), so a
/// statement's parameters are listed once for both.
pub trait Param: Send + Sync + 'static {
    fn sqlite(&self) -> &dyn rusqlite::ToSql;
    fn add_pg(self: Box<Self>, args: &mut PgArguments) -> std::result::Result<(), BoxDynError>;
}

impl<T> Param for T
where
    T: rusqlite::ToSql
        + for<'q> sqlx::Encode<'q, Postgres>
        + sqlx::Type<Postgres>
        + Send
        + Sync
        + 'static,
{
    fn sqlite(&self) -> &dyn rusqlite::ToSql {
        self
    }
    fn add_pg(self: Box<Self>, args: &mut PgArguments) -> std::result::Result<(), BoxDynError> {
        args.add(*self)
    }
}

/// One SQL statement (PostgreSQL's `$n` parameters) and its parameters in order.
pub struct Stmt {
    pub sql: Cow<'static, str>,
    pub params: Vec<Box<dyn Param>>,
}

/// `stmt!(SQL, p1, p2, ...)`: a [`Stmt`] whose parameters are bound in that order.
macro_rules! stmt {
    ($sql:expr $(, $p:expr)* $(,)?) => {
        $crate::store::sql::Stmt {
            sql: ($sql).into(),
            params: vec![$(Box::new($p) as Box<dyn $crate::store::sql::Param>),*],
        }
    };
}

impl Stmt {
    /// The same statement with SQLite's `?n` parameters (the text never holds a `$`
    /// otherwise).
    pub fn sqlite_sql(&self) -> String {
        self.sql.replace('$', "?")
    }

    pub fn sqlite_params(&self) -> impl rusqlite::Params + '_ {
        rusqlite::params_from_iter(self.params.iter().map(|p| p.sqlite()))
    }

    pub fn into_pg(
        self,
    ) -> std::result::Result<sqlx::query::Query<'static, Postgres, PgArguments>, sqlx::Error> {
        let mut args = PgArguments::default();
        for p in self.params {
            p.add_pg(&mut args).map_err(sqlx::Error::Encode)?;
        }
        Ok(sqlx::query_with(sqlx::AssertSqlSafe(self.sql), args))
    }
}

/// A column type both drivers decode.
pub trait Column:
    rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>
{
}
impl<T> Column for T where
    T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>
{
}

/// A result row of either driver, read by column index.
pub trait SqlRow {
    type Error;
    fn col<T: Column>(&self, i: usize) -> std::result::Result<T, Self::Error>;

    /// Instants are stored as epoch milliseconds in both dialects.
    fn time(&self, i: usize) -> std::result::Result<DateTime<Utc>, Self::Error> {
        Ok(from_ms(self.col(i)?))
    }
    fn opt_time(&self, i: usize) -> std::result::Result<Option<DateTime<Utc>>, Self::Error> {
        Ok(self.col::<Option<i64>>(i)?.map(from_ms))
    }
    /// Flags are BIGINT 0/1 in both dialects (SQLite has no boolean type).
    fn flag(&self, i: usize) -> std::result::Result<bool, Self::Error> {
        Ok(self.col::<i64>(i)? != 0)
    }
    fn status(&self, i: usize) -> std::result::Result<DeviceStatus, Self::Error> {
        Ok(DeviceStatus::parse(&self.col::<String>(i)?))
    }
    /// A budget's department: the organization-wide budget is stored under '' so that
    /// (org_id, department) can be a plain primary key.
    fn department(&self, i: usize) -> std::result::Result<Option<String>, Self::Error> {
        let dep: String = self.col(i)?;
        Ok((!dep.is_empty()).then_some(dep))
    }
}

impl SqlRow for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn col<T: Column>(&self, i: usize) -> rusqlite::Result<T> {
        self.get(i)
    }
}

impl SqlRow for PgRow {
    type Error = sqlx::Error;
    fn col<T: Column>(&self, i: usize) -> std::result::Result<T, sqlx::Error> {
        sqlx::Row::try_get(self, i)
    }
}

/// A domain value read from the columns its `SELECT` lists, in that order.
pub trait FromRow: Sized + Send + 'static {
    fn from_row<R: SqlRow>(r: &R) -> std::result::Result<Self, R::Error>;
}

/// For `SELECT 1 ...` existence checks: the row's presence is the answer.
impl FromRow for () {
    fn from_row<R: SqlRow>(_: &R) -> std::result::Result<Self, R::Error> {
        Ok(())
    }
}

impl FromRow for String {
    fn from_row<R: SqlRow>(r: &R) -> std::result::Result<Self, R::Error> {
        r.col(0)
    }
}

impl FromRow for i64 {
    fn from_row<R: SqlRow>(r: &R) -> std::result::Result<Self, R::Error> {
        r.col(0)
    }
}

/// `from_row!(Type, COLS { field, field: conv, ... })`: `COLS`, the column list (named
/// like the fields), and `FromRow` for `Type` reading field i from column i, with
/// [`SqlRow`]'s `conv` (`time`, `opt_time`, `flag`, ...) where one is named, else `col`.
/// A query selecting `COLS` and the mapping cannot drift apart.
macro_rules! from_row {
    ($ty:ident, $cols:ident { $first:ident $(: $fconv:ident)? $(, $field:ident $(: $conv:ident)?)* $(,)? }) => {
        const $cols: &str = concat!(stringify!($first) $(, ", ", stringify!($field))*);

        impl FromRow for $ty {
            fn from_row<R: SqlRow>(r: &R) -> std::result::Result<Self, R::Error> {
                let mut i = 0..;
                Ok($ty {
                    $first: from_row!(@get r, i $(, $fconv)?),
                    $($field: from_row!(@get r, i $(, $conv)?),)*
                })
            }
        }
    };
    (@get $r:ident, $i:ident) => {
        $r.col($i.next().unwrap_or_default())?
    };
    (@get $r:ident, $i:ident, $conv:ident) => {
        $r.$conv($i.next().unwrap_or_default())?
    };
}

from_row! { Org, ORG_COLS { id, name, cert_subject, created_at: time } }

from_row! { EnrollmentToken, TOKEN_COLS {
    id, org_id, created_at: time, expires_at: opt_time, max_uses, uses, revoked: flag,
} }

from_row! { ApiKeyInfo, API_KEY_COLS { id, name, created_at: time, revoked: flag } }

from_row! { Device, DEVICE_COLS {
    org_id, id, hostname, platform, agent_version, status: status, cert_serial,
    prev_cert_serial, cert_expires_at: opt_time, enrolled_at: time, last_seen: opt_time,
} }

from_row! { Budget, BUDGET_COLS {
    org_id, department: department, monthly_tokens, hard_cap: flag, rollover: flag,
} }

from_row! { User, USER_COLS { org_id, user_id, email, department } }

from_row! { AdminUser, ADMIN_USER_COLS { id, org_id, email, password_hash, created_at: time } }

// The columns of `usage_sql`; the e-mail comes from the joined users table.
from_row! { UsageRow, USAGE_COLS {
    bucket, org_id, user_id, provider, product, requests, input_tokens, output_tokens,
    cost_usd, user_email,
} }

/// The arguments of [`Store::ingest`].
pub struct Batch<'a> {
    pub org_id: &'a str,
    pub device_id: &'a str,
    pub batch_id: Uuid,
    pub agent_version: &'a str,
    pub dropped: Option<i64>,
    pub events: &'a [StoredEvent],
    pub now: DateTime<Utc>,
}

/// How statements reach one dialect's connections, and the little that differs.
#[async_trait]
pub trait Db: Send + Sync + 'static {
    /// Runs a statement that changes rows; how many it changed.
    async fn execute(&self, s: Stmt) -> Result<u64>;
    /// Runs statements in one transaction.
    async fn execute_all(&self, s: Vec<Stmt>) -> Result<()>;
    async fn fetch_all<T: FromRow>(&self, s: Stmt) -> Result<Vec<T>>;
    async fn fetch_optional<T: FromRow>(&self, s: Stmt) -> Result<Option<T>>;
    /// A statement that writes and returns a row (`UPDATE ... RETURNING`).
    async fn write_returning<T: FromRow>(&self, s: Stmt) -> Result<Option<T>>;

    /// The start of `u.hour`'s calendar month (UTC, epoch seconds): the one period
    /// bucket plain arithmetic cannot give.
    const MONTH_BUCKET: &'static str;

    /// [`Store::ingest`]: one transaction, de-duplicating on batch and event id.
    async fn ingest_batch(&self, b: Batch<'_>) -> Result<IngestOutcome>;
}

fn not_found_if_zero(n: u64, what: String) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    }
}

/// Turns a constraint violation into `Conflict(what)`; other errors pass through.
fn conflict(e: StoreError, what: impl FnOnce() -> String) -> StoreError {
    if e.is_constraint_violation() {
        StoreError::Conflict(what())
    } else {
        e
    }
}

fn owned(s: &str) -> String {
    s.to_owned()
}

const INSERT_DEPARTMENT: &str =
    "INSERT INTO departments (org_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING";

#[async_trait]
impl<D: Db> Store for D {
    async fn create_org(&self, org: &Org) -> Result<()> {
        self.execute(stmt!(
            format!("INSERT INTO orgs ({ORG_COLS}) VALUES ($1, $2, $3, $4)"),
            org.id.clone(),
            org.name.clone(),
            org.cert_subject.clone(),
            ms(org.created_at),
        ))
        .await
        .map(drop)
    }

    async fn get_org(&self, id: &str) -> Result<Option<Org>> {
        self.fetch_optional(stmt!(
            format!("SELECT {ORG_COLS} FROM orgs WHERE id = $1"),
            owned(id)
        ))
        .await
    }

    async fn list_orgs(&self) -> Result<Vec<Org>> {
        self.fetch_all(stmt!(format!(
            "SELECT {ORG_COLS} FROM orgs ORDER BY created_at, id"
        )))
        .await
    }

    async fn create_enrollment_token(&self, t: &EnrollmentToken, hash: &str) -> Result<()> {
        self.execute(stmt!(
            "INSERT INTO enrollment_tokens (id, org_id, token_hash, created_at, expires_at, max_uses, uses, revoked) VALUES ($1, $2, $3, $4, $5, $6, 0, 0)",
            t.id.clone(),
            t.org_id.clone(),
            owned(hash),
            ms(t.created_at),
            t.expires_at.map(ms),
            t.max_uses,
        ))
        .await
        .map(drop)
    }

    async fn list_enrollment_tokens(&self, org_id: &str) -> Result<Vec<EnrollmentToken>> {
        self.fetch_all(stmt!(
            format!(
                "SELECT {TOKEN_COLS} FROM enrollment_tokens WHERE org_id = $1 ORDER BY created_at, id"
            ),
            owned(org_id)
        ))
        .await
    }

    async fn revoke_enrollment_token(&self, id: &str) -> Result<()> {
        let n = self
            .execute(stmt!(
                "UPDATE enrollment_tokens SET revoked = 1 WHERE id = $1",
                owned(id)
            ))
            .await?;
        not_found_if_zero(n, format!("enrollment token {id}"))
    }

    async fn use_enrollment_token(
        &self,
        org_id: Option<&str>,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        self.write_returning(stmt!(
            "UPDATE enrollment_tokens SET uses = uses + 1 WHERE (CAST($1 AS TEXT) IS NULL OR org_id = $1) AND token_hash = $2 AND revoked = 0 AND (expires_at IS NULL OR expires_at > $3) AND (max_uses IS NULL OR uses < max_uses) RETURNING org_id",
            org_id.map(owned),
            owned(hash),
            ms(now),
        ))
        .await
    }

    async fn create_api_key(&self, k: &ApiKeyInfo, hash: &str) -> Result<()> {
        self.execute(stmt!(
            "INSERT INTO api_keys (id, name, key_hash, created_at, revoked) VALUES ($1, $2, $3, $4, 0)",
            k.id.clone(),
            k.name.clone(),
            owned(hash),
            ms(k.created_at),
        ))
        .await
        .map(drop)
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        self.fetch_all(stmt!(format!(
            "SELECT {API_KEY_COLS} FROM api_keys ORDER BY created_at, id"
        )))
        .await
    }

    async fn revoke_api_key(&self, id: &str) -> Result<()> {
        let n = self
            .execute(stmt!(
                "UPDATE api_keys SET revoked = 1 WHERE id = $1",
                owned(id)
            ))
            .await?;
        not_found_if_zero(n, format!("API key {id}"))
    }

    async fn api_key_valid(&self, hash: &str) -> Result<bool> {
        Ok(self
            .fetch_optional::<()>(stmt!(
                "SELECT 1 FROM api_keys WHERE key_hash = $1 AND revoked = 0",
                owned(hash)
            ))
            .await?
            .is_some())
    }

    async fn device_exists(&self, org_id: &str, device_id: &str) -> Result<bool> {
        Ok(self.get_device(org_id, device_id).await?.is_some())
    }

    async fn insert_device(&self, d: &Device) -> Result<()> {
        self.execute(stmt!(
            format!(
                "INSERT INTO devices ({DEVICE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            d.org_id.clone(),
            d.id.clone(),
            d.hostname.clone(),
            d.platform.clone(),
            d.agent_version.clone(),
            d.status.as_str(),
            d.cert_serial.clone(),
            d.prev_cert_serial.clone(),
            d.cert_expires_at.map(ms),
            ms(d.enrolled_at),
            d.last_seen.map(ms),
        ))
        .await
        .map_err(|e| {
            conflict(e, || {
                format!("device {} already exists in org {}", d.id, d.org_id)
            })
        })
        .map(drop)
    }

    async fn get_device(&self, org_id: &str, device_id: &str) -> Result<Option<Device>> {
        self.fetch_optional(stmt!(
            format!("SELECT {DEVICE_COLS} FROM devices WHERE org_id = $1 AND id = $2"),
            owned(org_id),
            owned(device_id),
        ))
        .await
    }

    async fn list_devices(&self, org_id: Option<&str>) -> Result<Vec<Device>> {
        self.fetch_all(stmt!(
            format!(
                "SELECT {DEVICE_COLS} FROM devices WHERE CAST($1 AS TEXT) IS NULL OR org_id = $1 ORDER BY org_id, enrolled_at, id"
            ),
            org_id.map(owned),
        ))
        .await
    }

    async fn set_device_status(
        &self,
        org_id: &str,
        device_id: &str,
        s: DeviceStatus,
    ) -> Result<()> {
        let n = self
            .execute(stmt!(
                "UPDATE devices SET status = $3 WHERE org_id = $1 AND id = $2",
                owned(org_id),
                owned(device_id),
                s.as_str(),
            ))
            .await?;
        not_found_if_zero(n, format!("device {device_id} in org {org_id}"))
    }

    async fn renew_device_cert(
        &self,
        org_id: &str,
        device_id: &str,
        serial: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let n = self
            .execute(stmt!(
                "UPDATE devices SET prev_cert_serial = cert_serial, cert_serial = $3, cert_expires_at = $4 WHERE org_id = $1 AND id = $2",
                owned(org_id),
                owned(device_id),
                owned(serial),
                ms(expires_at),
            ))
            .await?;
        not_found_if_zero(n, format!("device {device_id} in org {org_id}"))
    }

    async fn ingest(
        &self,
        org_id: &str,
        device_id: &str,
        batch_id: Uuid,
        agent_version: &str,
        dropped: Option<i64>,
        events: &[StoredEvent],
        now: DateTime<Utc>,
    ) -> Result<IngestOutcome> {
        self.ingest_batch(Batch {
            org_id,
            device_id,
            batch_id,
            agent_version,
            dropped,
            events,
            now,
        })
        .await
    }

    async fn count_events(&self, org_id: &str) -> Result<i64> {
        let n = self
            .fetch_optional(stmt!(
                "SELECT COUNT(*) FROM events WHERE org_id = $1",
                owned(org_id)
            ))
            .await?;
        Ok(n.unwrap_or_default())
    }

    async fn upsert_budget(&self, b: &Budget) -> Result<()> {
        self.execute(stmt!(
            format!(
                "INSERT INTO budgets ({BUDGET_COLS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, department) DO UPDATE SET monthly_tokens = excluded.monthly_tokens, hard_cap = excluded.hard_cap, rollover = excluded.rollover"
            ),
            b.org_id.clone(),
            b.department.clone().unwrap_or_default(),
            b.monthly_tokens,
            b.hard_cap as i64,
            b.rollover as i64,
        ))
        .await
        .map(drop)
    }

    async fn delete_budget(&self, org_id: &str, department: Option<&str>) -> Result<()> {
        let d = department.unwrap_or("");
        let n = self
            .execute(stmt!(
                "DELETE FROM budgets WHERE org_id = $1 AND department = $2",
                owned(org_id),
                owned(d),
            ))
            .await?;
        not_found_if_zero(n, format!("budget {d:?} of org {org_id}"))
    }

    async fn list_budgets(&self, org_id: &str) -> Result<Vec<Budget>> {
        self.fetch_all(stmt!(
            format!("SELECT {BUDGET_COLS} FROM budgets WHERE org_id = $1 ORDER BY department"),
            owned(org_id)
        ))
        .await
    }

    async fn create_department(&self, org_id: &str, name: &str) -> Result<()> {
        self.execute(stmt!(INSERT_DEPARTMENT, owned(org_id), owned(name)))
            .await
            .map(drop)
    }

    async fn list_departments(&self, org_id: &str) -> Result<Vec<String>> {
        self.fetch_all(stmt!(
            "SELECT name FROM departments WHERE org_id = $1 ORDER BY name",
            owned(org_id)
        ))
        .await
    }

    async fn upsert_user(&self, u: &User) -> Result<()> {
        let mut s = Vec::with_capacity(2);
        if let Some(d) = &u.department {
            s.push(stmt!(INSERT_DEPARTMENT, u.org_id.clone(), d.clone()));
        }
        s.push(stmt!(
            format!(
                "INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, user_id) DO UPDATE SET email = excluded.email, department = excluded.department"
            ),
            u.org_id.clone(),
            u.user_id.clone(),
            u.email.clone(),
            u.department.clone(),
        ));
        self.execute_all(s).await
    }

    async fn list_users(&self, org_id: &str) -> Result<Vec<User>> {
        self.fetch_all(stmt!(
            format!("SELECT {USER_COLS} FROM users WHERE org_id = $1 ORDER BY user_id"),
            owned(org_id)
        ))
        .await
    }

    async fn device_users(&self, org_id: &str, device_id: &str) -> Result<Vec<String>> {
        self.fetch_all(stmt!(
            "SELECT user_id FROM device_users WHERE org_id = $1 AND device_id = $2 ORDER BY user_id",
            owned(org_id),
            owned(device_id),
        ))
        .await
    }

    async fn tokens_used(
        &self,
        org_id: &str,
        department: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<i64> {
        let n = self
            .fetch_optional(stmt!(
                "SELECT CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT) FROM usage_hourly u WHERE u.org_id = $1 AND u.hour >= $2 AND u.hour < $3 AND (CAST($4 AS TEXT) IS NULL OR u.user_id IN (SELECT user_id FROM users WHERE org_id = $1 AND department = $4))",
                owned(org_id),
                start.timestamp(),
                end.timestamp(),
                department.map(owned),
            ))
            .await?;
        Ok(n.unwrap_or_default())
    }

    async fn usage(&self, q: &UsageQuery) -> Result<UsagePage> {
        let bucket = bucket_expr::<D>(q.period);
        let c = q.after.as_ref();
        let filters = || -> Vec<Box<dyn Param>> {
            vec![
                Box::new(q.org_id.clone()),
                Box::new(q.start.map(|t| t.timestamp())),
                Box::new(q.end.map(|t| t.timestamp())),
                Box::new(q.user_id.clone()),
                Box::new(q.provider.clone()),
                Box::new(q.model.clone()),
                Box::new(q.department.clone()),
            ]
        };
        let total = self
            .fetch_optional(Stmt {
                sql: format!("SELECT COUNT(*) FROM ({}) b", grouped_sql(bucket)).into(),
                params: filters(),
            })
            .await?
            .unwrap_or_default();
        let mut params = filters();
        params.extend([
            Box::new(c.map(|c| c.bucket)) as Box<dyn Param>,
            Box::new(c.map(|c| c.org.clone())),
            Box::new(c.map(|c| c.user.clone())),
            Box::new(c.map(|c| c.provider.clone())),
            Box::new(c.map(|c| c.product.clone())),
            Box::new(q.limit as i64 + 1),
        ]);
        let rows = self
            .fetch_all(Stmt {
                sql: usage_sql(bucket).into(),
                params,
            })
            .await?;
        Ok(page(rows, q.limit, total))
    }

    async fn create_admin_user(&self, a: &AdminUser) -> Result<()> {
        self.execute(stmt!(
            format!("INSERT INTO admin_users ({ADMIN_USER_COLS}) VALUES ($1, $2, $3, $4, $5)"),
            a.id.clone(),
            a.org_id.clone(),
            a.email.clone(),
            a.password_hash.clone(),
            ms(a.created_at),
        ))
        .await
        .map_err(|e| {
            conflict(e, || {
                format!(
                    "an administrator {} already exists (or org {} does not)",
                    a.email, a.org_id
                )
            })
        })
        .map(drop)
    }

    async fn admin_user_by_email(&self, email: &str) -> Result<Option<AdminUser>> {
        self.fetch_optional(stmt!(
            format!("SELECT {ADMIN_USER_COLS} FROM admin_users WHERE email = $1"),
            owned(email)
        ))
        .await
    }
}

/// The period bucket (epoch seconds) of `u.hour`.
fn bucket_expr<D: Db>(p: Period) -> &'static str {
    match p {
        Period::Hourly => "u.hour",
        Period::Daily => "(u.hour - (u.hour % 86400))",
        // 1970-01-01 was a Thursday: shift by 3 days so weeks start on Monday (ISO).
        Period::Weekly => "(u.hour - ((u.hour + 259200) % 604800))",
        Period::Monthly => D::MONTH_BUCKET,
    }
}

/// Usage grouped by period bucket, org, user, provider and product, filtered by
/// `$1`..`$7` (org, start hour, end hour, user, provider, product, department).
fn grouped_sql(bucket: &str) -> String {
    format!(
        "SELECT {bucket} AS bucket, u.org_id, u.user_id, u.provider, u.product, \
         CAST(SUM(u.requests) AS BIGINT) AS requests, CAST(SUM(u.input_tokens) AS BIGINT) AS input_tokens, \
         CAST(SUM(u.output_tokens) AS BIGINT) AS output_tokens, SUM(u.cost_usd) AS cost_usd \
         FROM usage_hourly u \
         WHERE (CAST($1 AS TEXT) IS NULL OR u.org_id = $1) AND (CAST($2 AS BIGINT) IS NULL OR u.hour >= $2) AND (CAST($3 AS BIGINT) IS NULL OR u.hour < $3) \
         AND (CAST($4 AS TEXT) IS NULL OR u.user_id = $4) AND (CAST($5 AS TEXT) IS NULL OR u.provider = $5) AND (CAST($6 AS TEXT) IS NULL OR u.product = $6) \
         AND (CAST($7 AS TEXT) IS NULL OR u.user_id IN (SELECT us.user_id FROM users us WHERE us.org_id = u.org_id AND us.department = $7)) \
         GROUP BY 1, u.org_id, u.user_id, u.provider, u.product"
    )
}

/// One page of [`grouped_sql`] after the keyset cursor `$8`..`$12`, at most `$13` rows,
/// with each user's e-mail ([`UsageRow`]'s columns).
fn usage_sql(bucket: &str) -> String {
    format!(
        "WITH b AS ({}), \
         p AS (SELECT b.*, us.email AS user_email FROM b LEFT JOIN users us ON us.org_id = b.org_id AND us.user_id = b.user_id) \
         SELECT {USAGE_COLS} FROM p \
         WHERE (CAST($8 AS BIGINT) IS NULL OR (bucket, org_id, user_id, provider, product) > ($8, $9, $10, $11, $12)) \
         ORDER BY bucket, org_id, user_id, provider, product LIMIT $13",
        grouped_sql(bucket)
    )
}

/// `rows` holds up to `limit + 1` rows: the extra one only tells that there is more.
fn page(mut rows: Vec<UsageRow>, limit: u32, total_count: i64) -> UsagePage {
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    UsagePage {
        rows,
        has_more,
        total_count,
    }
}

// ---- ingest: what both dialects' transactions share

impl Batch<'_> {
    /// Records the batch; changes no row when its id was seen before (a retry).
    pub(super) fn insert(&self) -> Stmt {
        stmt!(
            "INSERT INTO batches (org_id, batch_id, device_id, agent_version, received_at, event_count, dropped) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            owned(self.org_id),
            self.batch_id.to_string(),
            owned(self.device_id),
            owned(self.agent_version),
            ms(self.now),
            self.events.len() as i64,
            self.dropped,
        )
    }

    /// Marks the device seen now, with the agent version it sent.
    pub(super) fn touch_device(&self) -> Stmt {
        stmt!(
            "UPDATE devices SET last_seen = $3, agent_version = $4 WHERE org_id = $1 AND id = $2",
            owned(self.org_id),
            owned(self.device_id),
            ms(self.now),
            owned(self.agent_version),
        )
    }
}

/// Adds a roll-up increment to the existing row (the upsert both dialects append to
/// their `INSERT INTO usage_hourly`).
pub(super) const ROLLUP_UPSERT: &str = "ON CONFLICT (org_id, hour, user_id, provider, product) DO UPDATE SET requests = usage_hourly.requests + excluded.requests, input_tokens = usage_hourly.input_tokens + excluded.input_tokens, output_tokens = usage_hourly.output_tokens + excluded.output_tokens, cost_usd = usage_hourly.cost_usd + excluded.cost_usd";

pub(super) const ROLLUP_COLS: &str =
    "org_id, user_id, provider, product, hour, requests, input_tokens, output_tokens, cost_usd";

/// The distinct local users of newly stored events, sorted (lock order).
pub(super) fn batch_users<'a>(
    accepted: impl Iterator<Item = &'a StoredEvent>,
) -> std::collections::BTreeSet<&'a str> {
    accepted.filter_map(|e| e.event.user.as_deref()).collect()
}

/// Defines the `events` columns after (org_id, device_id, batch_id) once: name, Rust
/// type, PostgreSQL type and value. From it come [`EventRow`] (one event's values, bound
/// as a row on SQLite), [`EventColumns`] (the same as arrays, for PostgreSQL's UNNEST)
/// and [`EVENT_COLUMNS`].
macro_rules! event_columns {
    (|$se:ident: &$lt:lifetime StoredEvent, $e:ident| { $($name:ident: $ty:ty [$pg:literal] = $val:expr,)* }) => {
        /// One event's column values; text the event already holds is borrowed, not
        /// copied (ingest's hot path).
        pub(super) struct EventRow<$lt> { $(pub $name: $ty,)* }

        impl<$lt> EventRow<$lt> {
            pub fn of($se: &$lt StoredEvent) -> Self {
                let $e = &$se.event;
                Self { $($name: $val,)* }
            }

            /// `[org, device, batch]` and this row, in [`EVENT_COLUMNS`] order.
            pub fn sqlite_params<'p>(
                &'p self,
                ids: [&'p dyn rusqlite::ToSql; 3],
            ) -> [&'p dyn rusqlite::ToSql; 3 + EVENT_COLUMNS.len()] {
                let [org, device, batch] = ids;
                [org, device, batch, $(&self.$name),*]
            }
        }

        #[derive(Default)]
        pub(super) struct EventColumns<$lt> { $(pub $name: Vec<$ty>,)* }

        impl<$lt> EventColumns<$lt> {
            pub fn push(&mut self, r: EventRow<$lt>) {
                $(self.$name.push(r.$name);)*
            }

            pub fn add_to(self, args: &mut PgArguments) -> std::result::Result<(), BoxDynError> {
                $(args.add(self.$name)?;)*
                Ok(())
            }
        }

        /// (name, PostgreSQL type) of each column of [`EventRow`], in order.
        pub(super) const EVENT_COLUMNS: &[(&str, &str)] = &[$((stringify!($name), $pg)),*];
    };
}

event_columns!(|se: &'a StoredEvent, e| {
    event_id: String ["TEXT"] = e.event_id.to_string(),
    source: &'static str ["TEXT"] = e.source.as_str(),
    started_at: i64 ["BIGINT"] = ms(e.started_at),
    duration_ms: i64 ["BIGINT"] = e.duration_ms as i64,
    transport: &'static str ["TEXT"] = e.transport.as_str(),
    sni: Option<&'a str> ["TEXT"] = e.sni.as_deref(),
    alpn: String ["TEXT"] = serde_json::to_string(&e.alpn).unwrap_or_else(|_| "[]".into()),
    ja4: Option<&'a str> ["TEXT"] = e.ja4.as_deref(),
    ech: i64 ["BIGINT"] = e.ech as i64,
    provider: Option<&'a str> ["TEXT"] = se.provider.as_deref(),
    product: Option<&'a str> ["TEXT"] = se.product.as_deref(),
    category: Option<&'a str> ["TEXT"] = se.category.as_deref(),
    agent_provider: Option<&'a str> ["TEXT"] = e.provider.as_deref(),
    agent_product: Option<&'a str> ["TEXT"] = e.product.as_deref(),
    bytes_out: i64 ["BIGINT"] = e.bytes_out as i64,
    bytes_in: i64 ["BIGINT"] = e.bytes_in as i64,
    records_in: Option<i64> ["BIGINT"] = e.records_in.map(|x| x as i64),
    est_input_tokens: i64 ["BIGINT"] = e.est_input_tokens as i64,
    est_output_tokens: i64 ["BIGINT"] = e.est_output_tokens as i64,
    cost_usd: f64 ["FLOAT8"] = se.cost_usd,
    user_name: Option<&'a str> ["TEXT"] = e.user.as_deref(),
    process_pid: Option<i64> ["BIGINT"] = e.process.as_ref().map(|p| p.pid as i64),
    process_name: Option<&'a str> ["TEXT"] = e.process.as_ref().map(|p| p.name.as_str()),
    process_path: Option<&'a str> ["TEXT"] = e.process.as_ref().and_then(|p| p.path.as_deref()),
    dst_ip: Option<String> ["TEXT"] = e.dst_ip.map(|i| i.to_string()),
    dst_port: Option<i64> ["BIGINT"] = e.dst_port.map(|p| p as i64),
    endpoint: Option<&'a str> ["TEXT"] = e.endpoint.as_deref(),
    source_domain: Option<&'a str> ["TEXT"] = e.source_domain.as_deref(),
    streaming: Option<i64> ["BIGINT"] = e.streaming.map(|b| b as i64),
});

/// `INSERT INTO events (org_id, device_id, batch_id, <EVENT_COLUMNS>) <rows>`, where
/// `rows` is the dialect's VALUES or SELECT; duplicates of an event id are skipped.
pub(super) fn insert_events_sql(rows: &str) -> String {
    let names: Vec<&str> = EVENT_COLUMNS.iter().map(|(n, _)| *n).collect();
    format!(
        "INSERT INTO events (org_id, device_id, batch_id, {}) {rows} ON CONFLICT DO NOTHING",
        names.join(", ")
    )
}
