//! PostgreSQL store (sqlx, runtime queries). Stateless ingest nodes can share one
//! database: every write is one transaction, duplicates are resolved by unique keys
//! (`ON CONFLICT DO NOTHING`) and roll-ups by atomic upserts taken in key order. The
//! queries themselves are shared with SQLite (`sql.rs`); this file says how they reach
//! the pool, and the ingest transaction (column arrays, one round trip per table).

use super::sql::{self, Batch, Db, EventColumns, EventRow, FromRow, Stmt, ms};
use super::*;
use sqlx::Arguments as _;
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions};
use std::sync::LazyLock;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres_0001_init.sql")),
    (
        2,
        include_str!("../../migrations/postgres_0002_admin_users.sql"),
    ),
];
/// Serializes migrations between nodes starting at once.
const MIGRATION_LOCK: i64 = 0x746f_6b74_7261;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(url)
            .await?;
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        for (version, sql) in MIGRATIONS {
            let done = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !done {
                sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                    .bind(version)
                    .bind(ms(Utc::now()))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(Self { pool })
    }

    /// Drops every Toktra table: test suites use it to start from an empty database.
    pub async fn reset(url: &str) -> Result<()> {
        let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
        sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
            .execute(&pool)
            .await?;
        pool.close().await;
        Ok(())
    }
}

/// The events of a batch as column arrays, unnested server-side: one round trip.
static INSERT_EVENTS: LazyLock<String> = LazyLock::new(|| {
    let arrays: Vec<String> = sql::EVENT_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 4))
        .collect();
    sql::insert_events_sql(&format!(
        "SELECT $1, $2, $3, * FROM UNNEST({})",
        arrays.join(", ")
    )) + " RETURNING event_id"
});

static UPSERT_ROLLUP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO usage_hourly ({}) \
         SELECT $1, * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::FLOAT8[]) {}",
        sql::ROLLUP_COLS,
        sql::ROLLUP_UPSERT
    )
});

#[async_trait]
impl Db for PgStore {
    async fn execute(&self, s: Stmt) -> Result<u64> {
        Ok(s.into_pg()?.execute(&self.pool).await?.rows_affected())
    }

    async fn execute_all(&self, stmts: Vec<Stmt>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for s in stmts {
            s.into_pg()?.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn fetch_all<T: FromRow>(&self, s: Stmt) -> Result<Vec<T>> {
        let rows = s.into_pg()?.fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(T::from_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn fetch_optional<T: FromRow>(&self, s: Stmt) -> Result<Option<T>> {
        let row = s.into_pg()?.fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(T::from_row).transpose()?)
    }

    async fn write_returning<T: FromRow>(&self, s: Stmt) -> Result<Option<T>> {
        self.fetch_optional(s).await
    }

    const MONTH_BUCKET: &'static str = "CAST(EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(u.hour) AT TIME ZONE 'UTC')) AS BIGINT)";

    async fn ingest_batch(&self, b: Batch<'_>) -> Result<IngestOutcome> {
        let mut tx = self.pool.begin().await?;
        let batch_new = b
            .insert()
            .into_pg()?
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let mut accepted: Vec<&StoredEvent> = Vec::new();
        if batch_new == 1 && !b.events.is_empty() {
            let mut cols = EventColumns::default();
            for se in b.events {
                cols.push(EventRow::of(se));
            }
            let mut args = PgArguments::default();
            let bound = (|| {
                args.add(b.org_id)?;
                args.add(b.device_id)?;
                args.add(b.batch_id.to_string())?;
                cols.add_to(&mut args)
            })();
            bound.map_err(sqlx::Error::Encode)?;
            let inserted: Vec<String> =
                sqlx::query_scalar_with(sqlx::AssertSqlSafe(INSERT_EVENTS.as_str()), args)
                    .fetch_all(&mut *tx)
                    .await?;
            let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
            // An id repeated inside one batch is inserted once: count its first copy.
            let mut seen = std::collections::HashSet::new();
            accepted = b
                .events
                .iter()
                .filter(|e| {
                    let id = e.event.event_id.to_string();
                    inserted.contains(&id) && seen.insert(id)
                })
                .collect();
            let roll = rollup(accepted.iter().copied());
            if !roll.is_empty() {
                let mut r: (
                    Vec<String>,
                    Vec<String>,
                    Vec<String>,
                    Vec<i64>,
                    Vec<i64>,
                    Vec<i64>,
                    Vec<i64>,
                    Vec<f64>,
                ) = Default::default();
                for ((user, prov, prod, hour), (n, i, o, c)) in roll {
                    r.0.push(user);
                    r.1.push(prov);
                    r.2.push(prod);
                    r.3.push(hour);
                    r.4.push(n);
                    r.5.push(i);
                    r.6.push(o);
                    r.7.push(c);
                }
                sqlx::query(sqlx::AssertSqlSafe(UPSERT_ROLLUP.as_str()))
                    .bind(b.org_id)
                    .bind(&r.0)
                    .bind(&r.1)
                    .bind(&r.2)
                    .bind(&r.3)
                    .bind(&r.4)
                    .bind(&r.5)
                    .bind(&r.6)
                    .bind(&r.7)
                    .execute(&mut *tx)
                    .await?;
            }
            let users: Vec<&str> = sql::batch_users(accepted.iter().copied())
                .into_iter()
                .collect();
            if !users.is_empty() {
                sqlx::query("INSERT INTO device_users (org_id, device_id, user_id) SELECT $1, $2, * FROM UNNEST($3::TEXT[]) ON CONFLICT DO NOTHING")
                    .bind(b.org_id)
                    .bind(b.device_id)
                    .bind(&users)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        b.touch_device().into_pg()?.execute(&mut *tx).await?;
        tx.commit().await?;
        let n = accepted.len() as u32;
        Ok(IngestOutcome {
            accepted: n,
            duplicates: b.events.len() as u32 - n,
        })
    }
}
