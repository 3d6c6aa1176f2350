//! SQLite store: one writer connection (SQLite serializes writers anyway) and a small
//! set of reader connections, WAL mode so readers never wait for the writer. Every call
//! runs on tokio's blocking pool.

use super::*;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

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

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}
fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
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

fn row_org(r: &rusqlite::Row) -> rusqlite::Result<Org> {
    Ok(Org {
        id: r.get(0)?,
        name: r.get(1)?,
        cert_subject: r.get(2)?,
        created_at: from_ms(r.get(3)?),
    })
}

fn row_token(r: &rusqlite::Row) -> rusqlite::Result<EnrollmentToken> {
    Ok(EnrollmentToken {
        id: r.get(0)?,
        org_id: r.get(1)?,
        created_at: from_ms(r.get(2)?),
        expires_at: r.get::<_, Option<i64>>(3)?.map(from_ms),
        max_uses: r.get(4)?,
        uses: r.get(5)?,
        revoked: r.get::<_, i64>(6)? != 0,
    })
}

const DEVICE_COLS: &str = "org_id, id, hostname, platform, agent_version, status, cert_serial, prev_cert_serial, cert_expires_at, enrolled_at, last_seen";

fn row_device(r: &rusqlite::Row) -> rusqlite::Result<Device> {
    Ok(Device {
        org_id: r.get(0)?,
        id: r.get(1)?,
        hostname: r.get(2)?,
        platform: r.get(3)?,
        agent_version: r.get(4)?,
        status: DeviceStatus::parse(&r.get::<_, String>(5)?),
        cert_serial: r.get(6)?,
        prev_cert_serial: r.get(7)?,
        cert_expires_at: r.get::<_, Option<i64>>(8)?.map(from_ms),
        enrolled_at: from_ms(r.get(9)?),
        last_seen: r.get::<_, Option<i64>>(10)?.map(from_ms),
    })
}

fn not_found_if_zero(n: usize, what: String) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    }
}

/// The period bucket (epoch seconds) of an hour, in SQLite's dialect.
fn bucket_expr(p: Period) -> &'static str {
    match p {
        Period::Hourly => "u.hour",
        Period::Daily => "(u.hour - (u.hour % 86400))",
        // 1970-01-01 was a Thursday: shift by 3 days so weeks start on Monday (ISO).
        Period::Weekly => "(u.hour - ((u.hour + 259200) % 604800))",
        Period::Monthly => "CAST(strftime('%s', u.hour, 'unixepoch', 'start of month') AS INTEGER)",
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_org(&self, org: &Org) -> Result<()> {
        let org = org.clone();
        self.write(move |c| {
            c.execute(
                "INSERT INTO orgs (id, name, cert_subject, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![org.id, org.name, org.cert_subject, ms(org.created_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_org(&self, id: &str) -> Result<Option<Org>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT id, name, cert_subject, created_at FROM orgs WHERE id = ?1",
                [id],
                row_org,
            )
            .optional()?)
        })
        .await
    }

    async fn list_orgs(&self) -> Result<Vec<Org>> {
        self.read(|c| {
            let mut s = c.prepare(
                "SELECT id, name, cert_subject, created_at FROM orgs ORDER BY created_at, id",
            )?;
            Ok(s.query_map([], row_org)?.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn create_enrollment_token(&self, t: &EnrollmentToken, hash: &str) -> Result<()> {
        let (t, hash) = (t.clone(), hash.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO enrollment_tokens (id, org_id, token_hash, created_at, expires_at, max_uses, uses, revoked) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0)",
                params![t.id, t.org_id, hash, ms(t.created_at), t.expires_at.map(ms), t.max_uses],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_enrollment_tokens(&self, org_id: &str) -> Result<Vec<EnrollmentToken>> {
        let org_id = org_id.to_owned();
        self.read(move |c| {
            let mut s = c.prepare("SELECT id, org_id, created_at, expires_at, max_uses, uses, revoked FROM enrollment_tokens WHERE org_id = ?1 ORDER BY created_at, id")?;
            Ok(s.query_map([org_id], row_token)?.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn revoke_enrollment_token(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            let n = c.execute(
                "UPDATE enrollment_tokens SET revoked = 1 WHERE id = ?1",
                [&id],
            )?;
            not_found_if_zero(n, format!("enrollment token {id}"))
        })
        .await
    }

    async fn use_enrollment_token(
        &self,
        org_id: Option<&str>,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        let (org_id, hash) = (org_id.map(str::to_owned), hash.to_owned());
        self.write(move |c| {
            Ok(c.query_row(
                "UPDATE enrollment_tokens SET uses = uses + 1 WHERE (?1 IS NULL OR org_id = ?1) AND token_hash = ?2 AND revoked = 0 AND (expires_at IS NULL OR expires_at > ?3) AND (max_uses IS NULL OR uses < max_uses) RETURNING org_id",
                params![org_id, hash, ms(now)],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn create_api_key(&self, k: &ApiKeyInfo, hash: &str) -> Result<()> {
        let (k, hash) = (k.clone(), hash.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO api_keys (id, name, key_hash, created_at, revoked) VALUES (?1, ?2, ?3, ?4, 0)",
                params![k.id, k.name, hash, ms(k.created_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        self.read(|c| {
            let mut s = c.prepare(
                "SELECT id, name, created_at, revoked FROM api_keys ORDER BY created_at, id",
            )?;
            Ok(s.query_map([], |r| {
                Ok(ApiKeyInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_at: from_ms(r.get(2)?),
                    revoked: r.get::<_, i64>(3)? != 0,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn revoke_api_key(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            let n = c.execute("UPDATE api_keys SET revoked = 1 WHERE id = ?1", [&id])?;
            not_found_if_zero(n, format!("API key {id}"))
        })
        .await
    }

    async fn api_key_valid(&self, hash: &str) -> Result<bool> {
        let hash = hash.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT 1 FROM api_keys WHERE key_hash = ?1 AND revoked = 0",
                [hash],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
        .await
    }

    async fn device_exists(&self, org_id: &str, device_id: &str) -> Result<bool> {
        Ok(self.get_device(org_id, device_id).await?.is_some())
    }

    async fn insert_device(&self, d: &Device) -> Result<()> {
        let d = d.clone();
        self.write(move |c| {
            c.execute(
                &format!("INSERT INTO devices ({DEVICE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![
                    d.org_id, d.id, d.hostname, d.platform, d.agent_version, d.status.as_str(),
                    d.cert_serial, d.prev_cert_serial, d.cert_expires_at.map(ms), ms(d.enrolled_at),
                    d.last_seen.map(ms)
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    StoreError::Conflict(format!("device {} already exists in org {}", d.id, d.org_id))
                }
                other => other.into(),
            })?;
            Ok(())
        })
        .await
    }

    async fn get_device(&self, org_id: &str, device_id: &str) -> Result<Option<Device>> {
        let (o, d) = (org_id.to_owned(), device_id.to_owned());
        self.read(move |c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {DEVICE_COLS} FROM devices WHERE org_id = ?1 AND id = ?2"
            ))?;
            Ok(s.query_row([o, d], row_device).optional()?)
        })
        .await
    }

    async fn list_devices(&self, org_id: Option<&str>) -> Result<Vec<Device>> {
        let o = org_id.map(str::to_owned);
        self.read(move |c| {
            let mut s = c.prepare(&format!(
                "SELECT {DEVICE_COLS} FROM devices WHERE ?1 IS NULL OR org_id = ?1 ORDER BY org_id, enrolled_at, id"
            ))?;
            Ok(s.query_map([o], row_device)?.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn set_device_status(
        &self,
        org_id: &str,
        device_id: &str,
        st: DeviceStatus,
    ) -> Result<()> {
        let (o, d) = (org_id.to_owned(), device_id.to_owned());
        self.write(move |c| {
            let n = c.execute(
                "UPDATE devices SET status = ?3 WHERE org_id = ?1 AND id = ?2",
                params![o, d, st.as_str()],
            )?;
            not_found_if_zero(n, format!("device {d} in org {o}"))
        })
        .await
    }

    async fn renew_device_cert(
        &self,
        org_id: &str,
        device_id: &str,
        serial: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let (o, d, s) = (org_id.to_owned(), device_id.to_owned(), serial.to_owned());
        self.write(move |c| {
            let n = c.execute(
                "UPDATE devices SET prev_cert_serial = cert_serial, cert_serial = ?3, cert_expires_at = ?4 WHERE org_id = ?1 AND id = ?2",
                params![o, d, s, ms(expires_at)],
            )?;
            not_found_if_zero(n, format!("device {d} in org {o}"))
        })
        .await
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
        let (o, d, v) = (
            org_id.to_owned(),
            device_id.to_owned(),
            agent_version.to_owned(),
        );
        let events = events.to_vec();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let batch_new = tx.prepare_cached(
                "INSERT INTO batches (org_id, batch_id, device_id, agent_version, received_at, event_count, dropped) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )?
            .execute(params![o, batch_id.to_string(), d, v, ms(now), events.len() as i64, dropped])?;
            let mut accepted_events = Vec::with_capacity(events.len());
            if batch_new == 1 {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO events (org_id, event_id, device_id, batch_id, source, started_at, duration_ms, transport, sni, alpn, ja4, ech, provider, product, category, agent_provider, agent_product, bytes_out, bytes_in, records_in, est_input_tokens, est_output_tokens, cost_usd, user_name, process_pid, process_name, process_path, dst_ip, dst_port, endpoint, source_domain, streaming) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32) ON CONFLICT DO NOTHING",
                )?;
                let batch_s = batch_id.to_string();
                for se in &events {
                    let e = &se.event;
                    let alpn = serde_json::to_string(&e.alpn).unwrap_or_else(|_| "[]".into());
                    let n = ins.execute(params![
                        o, e.event_id.to_string(), d, batch_s, e.source.as_str(), ms(e.started_at),
                        e.duration_ms as i64, e.transport.as_str(), e.sni, alpn, e.ja4, e.ech as i64,
                        se.provider, se.product, se.category, e.provider, e.product,
                        e.bytes_out as i64, e.bytes_in as i64, e.records_in.map(|x| x as i64),
                        e.est_input_tokens as i64, e.est_output_tokens as i64, se.cost_usd, e.user,
                        e.process.as_ref().map(|p| p.pid as i64), e.process.as_ref().map(|p| p.name.clone()),
                        e.process.as_ref().and_then(|p| p.path.clone()), e.dst_ip.map(|i| i.to_string()),
                        e.dst_port.map(|p| p as i64), e.endpoint, e.source_domain, e.streaming.map(|b| b as i64)
                    ])?;
                    if n == 1 {
                        accepted_events.push(se);
                    }
                }
                let mut up = tx.prepare_cached(
                    "INSERT INTO usage_hourly (org_id, user_id, provider, product, hour, requests, input_tokens, output_tokens, cost_usd) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (org_id, hour, user_id, provider, product) DO UPDATE SET requests = requests + excluded.requests, input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, cost_usd = cost_usd + excluded.cost_usd",
                )?;
                for ((user, prov, prod, hour), (n, i, out, cost)) in rollup(accepted_events.iter().copied()) {
                    up.execute(params![o, user, prov, prod, hour, n, i, out, cost])?;
                }
                let mut du = tx.prepare_cached(
                    "INSERT INTO device_users (org_id, device_id, user_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                )?;
                let users: std::collections::BTreeSet<&str> =
                    accepted_events.iter().filter_map(|e| e.event.user.as_deref()).collect();
                for u in users {
                    du.execute(params![o, d, u])?;
                }
            }
            tx.prepare_cached("UPDATE devices SET last_seen = ?3, agent_version = ?4 WHERE org_id = ?1 AND id = ?2")?
                .execute(params![o, d, ms(now), v])?;
            tx.commit()?;
            let accepted = accepted_events.len() as u32;
            Ok(IngestOutcome {
                accepted,
                duplicates: events.len() as u32 - accepted,
            })
        })
        .await
    }

    async fn count_events(&self, org_id: &str) -> Result<i64> {
        let o = org_id.to_owned();
        self.read(move |c| {
            Ok(
                c.query_row("SELECT COUNT(*) FROM events WHERE org_id = ?1", [o], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    async fn upsert_budget(&self, b: &Budget) -> Result<()> {
        let b = b.clone();
        self.write(move |c| {
            c.execute(
                "INSERT INTO budgets (org_id, department, monthly_tokens, hard_cap, rollover) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (org_id, department) DO UPDATE SET monthly_tokens = excluded.monthly_tokens, hard_cap = excluded.hard_cap, rollover = excluded.rollover",
                params![b.org_id, b.department.clone().unwrap_or_default(), b.monthly_tokens, b.hard_cap as i64, b.rollover as i64],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_budget(&self, org_id: &str, department: Option<&str>) -> Result<()> {
        let (o, d) = (org_id.to_owned(), department.unwrap_or("").to_owned());
        self.write(move |c| {
            let n = c.execute(
                "DELETE FROM budgets WHERE org_id = ?1 AND department = ?2",
                params![o, d],
            )?;
            not_found_if_zero(n, format!("budget {d:?} of org {o}"))
        })
        .await
    }

    async fn list_budgets(&self, org_id: &str) -> Result<Vec<Budget>> {
        let o = org_id.to_owned();
        self.read(move |c| {
            let mut s = c.prepare_cached("SELECT org_id, department, monthly_tokens, hard_cap, rollover FROM budgets WHERE org_id = ?1 ORDER BY department")?;
            Ok(s.query_map([o], |r| {
                let dep: String = r.get(1)?;
                Ok(Budget {
                    org_id: r.get(0)?,
                    department: (!dep.is_empty()).then_some(dep),
                    monthly_tokens: r.get(2)?,
                    hard_cap: r.get::<_, i64>(3)? != 0,
                    rollover: r.get::<_, i64>(4)? != 0,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn create_department(&self, org_id: &str, name: &str) -> Result<()> {
        let (o, n) = (org_id.to_owned(), name.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO departments (org_id, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![o, n],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_departments(&self, org_id: &str) -> Result<Vec<String>> {
        let o = org_id.to_owned();
        self.read(move |c| {
            let mut s =
                c.prepare("SELECT name FROM departments WHERE org_id = ?1 ORDER BY name")?;
            Ok(s.query_map([o], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn upsert_user(&self, u: &User) -> Result<()> {
        let u = u.clone();
        self.write(move |c| {
            let tx = c.transaction()?;
            if let Some(d) = &u.department {
                tx.execute("INSERT INTO departments (org_id, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING", params![u.org_id, d])?;
            }
            tx.execute(
                "INSERT INTO users (org_id, user_id, email, department) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (org_id, user_id) DO UPDATE SET email = excluded.email, department = excluded.department",
                params![u.org_id, u.user_id, u.email, u.department],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_users(&self, org_id: &str) -> Result<Vec<User>> {
        let o = org_id.to_owned();
        self.read(move |c| {
            let mut s = c.prepare("SELECT org_id, user_id, email, department FROM users WHERE org_id = ?1 ORDER BY user_id")?;
            Ok(s.query_map([o], |r| {
                Ok(User { org_id: r.get(0)?, user_id: r.get(1)?, email: r.get(2)?, department: r.get(3)? })
            })?
            .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn device_users(&self, org_id: &str, device_id: &str) -> Result<Vec<String>> {
        let (o, d) = (org_id.to_owned(), device_id.to_owned());
        self.read(move |c| {
            let mut s = c.prepare_cached("SELECT user_id FROM device_users WHERE org_id = ?1 AND device_id = ?2 ORDER BY user_id")?;
            Ok(s.query_map([o, d], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn tokens_used(
        &self,
        org_id: &str,
        department: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<i64> {
        let (o, d) = (org_id.to_owned(), department.map(str::to_owned));
        let (s, e) = (start.timestamp(), end.timestamp());
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT COALESCE(SUM(input_tokens + output_tokens), 0) FROM usage_hourly u WHERE u.org_id = ?1 AND u.hour >= ?2 AND u.hour < ?3 AND (?4 IS NULL OR u.user_id IN (SELECT user_id FROM users WHERE org_id = ?1 AND department = ?4))",
            )?;
            Ok(st.query_row(params![o, s, e, d], |r| r.get(0))?)
        })
        .await
    }

    async fn create_admin_user(&self, a: &AdminUser) -> Result<()> {
        let a = a.clone();
        self.write(move |c| {
            c.execute(
                "INSERT INTO admin_users (id, org_id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.id, a.org_id, a.email, a.password_hash, ms(a.created_at)],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    StoreError::Conflict(format!("an administrator {} already exists (or org {} does not)", a.email, a.org_id))
                }
                other => other.into(),
            })?;
            Ok(())
        })
        .await
    }

    async fn admin_user_by_email(&self, email: &str) -> Result<Option<AdminUser>> {
        let e = email.to_owned();
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT id, org_id, email, password_hash, created_at FROM admin_users WHERE email = ?1",
            )?;
            let mut rows = s.query_map([e], |r| {
                Ok(AdminUser {
                    id: r.get(0)?,
                    org_id: r.get(1)?,
                    email: r.get(2)?,
                    password_hash: r.get(3)?,
                    created_at: from_ms(r.get(4)?),
                })
            })?;
            Ok(rows.next().transpose()?)
        })
        .await
    }

    async fn usage(&self, q: &UsageQuery) -> Result<UsagePage> {
        let q = q.clone();
        self.read(move |c| {
            let sql = super::usage_sql(bucket_expr(q.period)).replace('$', "?");
            let count_sql = super::usage_count_sql(bucket_expr(q.period)).replace('$', "?");
            let a = super::UsageArgs::new(&q);
            let total: i64 = c.query_row(
                &count_sql,
                params![
                    a.org,
                    a.start,
                    a.end,
                    a.user,
                    a.provider,
                    a.model,
                    a.department
                ],
                |r| r.get(0),
            )?;
            let mut st = c.prepare(&sql)?;
            let rows = st
                .query_map(
                    params![
                        a.org,
                        a.start,
                        a.end,
                        a.user,
                        a.provider,
                        a.model,
                        a.department,
                        a.c_bucket,
                        a.c_org,
                        a.c_user,
                        a.c_provider,
                        a.c_product,
                        a.limit + 1
                    ],
                    |r| {
                        Ok(UsageRow {
                            bucket: r.get(0)?,
                            org_id: r.get(1)?,
                            user_id: r.get(2)?,
                            provider: r.get(3)?,
                            product: r.get(4)?,
                            requests: r.get(5)?,
                            input_tokens: r.get(6)?,
                            output_tokens: r.get(7)?,
                            cost_usd: r.get(8)?,
                            user_email: r.get(9)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(super::page(rows, q.limit, total))
        })
        .await
    }
}
