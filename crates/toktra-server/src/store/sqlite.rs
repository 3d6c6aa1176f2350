//! SQLite store: one writer connection (SQLite serializes writers anyway) and a small
//! set of reader connections, WAL mode so readers never wait for the writer. Every call
//! runs on tokio's blocking pool. The queries themselves are shared with PostgreSQL
//! (`sql.rs`); this file says how they reach a connection, and the ingest transaction.

use super::sql::{self, Batch, Db, EventRow, FromRow, Stmt, ms};
use super::*;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite_0001_init.sql")),
    (
        2,
        include_str!("../../migrations/sqlite_0002_admin_users.sql"),
    ),
];
const READERS: usize = 4;

pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: std::sync::atomic::AtomicUsize,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(30))?;
    // WAL + NORMAL: a commit is durable against process crashes and ordered on disk;
    // an OS crash may lose the last commits but never corrupts (SQLite's documented
    // trade-off). Agents keep unacknowledged batches in their spool anyway.
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    Ok(c)
}

fn migrate(c: &mut Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    for (version, sql) in MIGRATIONS {
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done: bool = tx
            .query_row(
                "SELECT 1 FROM schema_migrations WHERE version = ?1",
                [version],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !done {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, ms(Utc::now())],
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        let mut w = open(path)?;
        migrate(&mut w)?;
        let mut readers = Vec::new();
        for _ in 0..READERS {
            readers.push(Mutex::new(open(path)?));
        }
        Ok(Self {
            writer: Arc::new(Mutex::new(w)),
            readers: Arc::new(readers),
            next_reader: Default::default(),
        })
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let w = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = w.lock().map_err(|e| StoreError::Worker(e.to_string()))?;
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % READERS;
        let rs = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let c = rs[i]
                .lock()
                .map_err(|e| StoreError::Worker(e.to_string()))?;
            f(&c)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }
}

fn execute(c: &Connection, s: &Stmt) -> Result<u64> {
    Ok(c.prepare_cached(&s.sqlite_sql())?
        .execute(s.sqlite_params())? as u64)
}

fn query_all<T: FromRow>(c: &Connection, s: &Stmt) -> Result<Vec<T>> {
    let mut st = c.prepare_cached(&s.sqlite_sql())?;
    let rows = st.query_map(s.sqlite_params(), |r| T::from_row(r))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn query_optional<T: FromRow>(c: &Connection, s: &Stmt) -> Result<Option<T>> {
    let mut st = c.prepare_cached(&s.sqlite_sql())?;
    Ok(st
        .query_row(s.sqlite_params(), |r| T::from_row(r))
        .optional()?)
}

static INSERT_EVENT: LazyLock<String> = LazyLock::new(|| {
    let n = 3 + sql::EVENT_COLUMNS.len();
    let values: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    sql::insert_events_sql(&format!("VALUES ({})", values.join(", ")))
});

static UPSERT_ROLLUP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO usage_hourly ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) {}",
        sql::ROLLUP_COLS,
        sql::ROLLUP_UPSERT
    )
});

#[async_trait]
impl Db for SqliteStore {
    async fn execute(&self, s: Stmt) -> Result<u64> {
        self.write(move |c| execute(c, &s)).await
    }

    async fn execute_all(&self, stmts: Vec<Stmt>) -> Result<()> {
        self.write(move |c| {
            let tx = c.transaction()?;
            for s in &stmts {
                execute(&tx, s)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn fetch_all<T: FromRow>(&self, s: Stmt) -> Result<Vec<T>> {
        self.read(move |c| query_all(c, &s)).await
    }

    async fn fetch_optional<T: FromRow>(&self, s: Stmt) -> Result<Option<T>> {
        self.read(move |c| query_optional(c, &s)).await
    }

    async fn write_returning<T: FromRow>(&self, s: Stmt) -> Result<Option<T>> {
        self.write(move |c| query_optional(c, &s)).await
    }

    const MONTH_BUCKET: &'static str =
        "CAST(strftime('%s', u.hour, 'unixepoch', 'start of month') AS INTEGER)";

    async fn ingest_batch(&self, b: Batch<'_>) -> Result<IngestOutcome> {
        // The blocking pool needs owned values.
        let (o, d) = (b.org_id.to_owned(), b.device_id.to_owned());
        let batch_s = b.batch_id.to_string();
        let (insert_batch, touch_device) = (b.insert(), b.touch_device());
        let events = b.events.to_vec();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let batch_new = execute(&tx, &insert_batch)?;
            let mut accepted = Vec::with_capacity(events.len());
            if batch_new == 1 {
                let mut ins = tx.prepare_cached(&INSERT_EVENT)?;
                for se in &events {
                    let row = EventRow::of(se);
                    if ins.execute(&row.sqlite_params([&o, &d, &batch_s])[..])? == 1 {
                        accepted.push(se);
                    }
                }
                let mut up = tx.prepare_cached(&UPSERT_ROLLUP)?;
                for ((user, prov, prod, hour), (n, i, out, cost)) in
                    rollup(accepted.iter().copied())
                {
                    up.execute(params![o, user, prov, prod, hour, n, i, out, cost])?;
                }
                let mut du = tx.prepare_cached(
                    "INSERT INTO device_users (org_id, device_id, user_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                )?;
                for u in sql::batch_users(accepted.iter().copied()) {
                    du.execute(params![o, d, u])?;
                }
            }
            execute(&tx, &touch_device)?;
            tx.commit()?;
            let accepted = accepted.len() as u32;
            Ok(IngestOutcome {
                accepted,
                duplicates: events.len() as u32 - accepted,
            })
        })
        .await
    }
}
