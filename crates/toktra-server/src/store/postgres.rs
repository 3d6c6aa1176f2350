//! PostgreSQL store (sqlx, runtime queries). Stateless ingest nodes can share one
//! database: every write is one transaction, duplicates are resolved by unique keys
//! (`ON CONFLICT DO NOTHING`) and roll-ups by atomic upserts taken in key order.

use super::*;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};

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

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}
fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
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

fn row_org(r: &PgRow) -> std::result::Result<Org, sqlx::Error> {
    Ok(Org {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        cert_subject: r.try_get(2)?,
        created_at: from_ms(r.try_get(3)?),
    })
}

const DEVICE_COLS: &str = "org_id, id, hostname, platform, agent_version, status, cert_serial, prev_cert_serial, cert_expires_at, enrolled_at, last_seen";

fn row_device(r: &PgRow) -> std::result::Result<Device, sqlx::Error> {
    Ok(Device {
        org_id: r.try_get(0)?,
        id: r.try_get(1)?,
        hostname: r.try_get(2)?,
        platform: r.try_get(3)?,
        agent_version: r.try_get(4)?,
        status: DeviceStatus::parse(r.try_get(5)?),
        cert_serial: r.try_get(6)?,
        prev_cert_serial: r.try_get(7)?,
        cert_expires_at: r.try_get::<Option<i64>, _>(8)?.map(from_ms),
        enrolled_at: from_ms(r.try_get(9)?),
        last_seen: r.try_get::<Option<i64>, _>(10)?.map(from_ms),
    })
}

fn not_found_if_zero(n: u64, what: String) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    }
}

fn bucket_expr(p: Period) -> &'static str {
    match p {
        Period::Hourly => "u.hour",
        Period::Daily => "(u.hour - (u.hour % 86400))",
        Period::Weekly => "(u.hour - ((u.hour + 259200) % 604800))",
        Period::Monthly => {
            "CAST(EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(u.hour) AT TIME ZONE 'UTC')) AS BIGINT)"
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_org(&self, org: &Org) -> Result<()> {
        sqlx::query(
            "INSERT INTO orgs (id, name, cert_subject, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&org.id)
        .bind(&org.name)
        .bind(&org.cert_subject)
        .bind(ms(org.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_org(&self, id: &str) -> Result<Option<Org>> {
        let r = sqlx::query("SELECT id, name, cert_subject, created_at FROM orgs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.as_ref().map(row_org).transpose()?)
    }

    async fn list_orgs(&self) -> Result<Vec<Org>> {
        let rows = sqlx::query(
            "SELECT id, name, cert_subject, created_at FROM orgs ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(row_org)
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn create_enrollment_token(&self, t: &EnrollmentToken, hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO enrollment_tokens (id, org_id, token_hash, created_at, expires_at, max_uses, uses, revoked) VALUES ($1, $2, $3, $4, $5, $6, 0, 0)")
            .bind(&t.id)
            .bind(&t.org_id)
            .bind(hash)
            .bind(ms(t.created_at))
            .bind(t.expires_at.map(ms))
            .bind(t.max_uses)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_enrollment_tokens(&self, org_id: &str) -> Result<Vec<EnrollmentToken>> {
        let rows = sqlx::query("SELECT id, org_id, created_at, expires_at, max_uses, uses, revoked FROM enrollment_tokens WHERE org_id = $1 ORDER BY created_at, id")
            .bind(org_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(EnrollmentToken {
                    id: r.try_get(0)?,
                    org_id: r.try_get(1)?,
                    created_at: from_ms(r.try_get(2)?),
                    expires_at: r.try_get::<Option<i64>, _>(3)?.map(from_ms),
                    max_uses: r.try_get(4)?,
                    uses: r.try_get(5)?,
                    revoked: r.try_get::<i64, _>(6)? != 0,
                })
            })
            .collect()
    }

    async fn revoke_enrollment_token(&self, id: &str) -> Result<()> {
        let n = sqlx::query("UPDATE enrollment_tokens SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        not_found_if_zero(n, format!("enrollment token {id}"))
    }

    async fn use_enrollment_token(
        &self,
        org_id: Option<&str>,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("UPDATE enrollment_tokens SET uses = uses + 1 WHERE ($1::TEXT IS NULL OR org_id = $1) AND token_hash = $2 AND revoked = 0 AND (expires_at IS NULL OR expires_at > $3) AND (max_uses IS NULL OR uses < max_uses) RETURNING org_id")
            .bind(org_id)
            .bind(hash)
            .bind(ms(now))
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn create_api_key(&self, k: &ApiKeyInfo, hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO api_keys (id, name, key_hash, created_at, revoked) VALUES ($1, $2, $3, $4, 0)")
            .bind(&k.id)
            .bind(&k.name)
            .bind(hash)
            .bind(ms(k.created_at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, revoked FROM api_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiKeyInfo {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    created_at: from_ms(r.try_get(2)?),
                    revoked: r.try_get::<i64, _>(3)? != 0,
                })
            })
            .collect()
    }

    async fn revoke_api_key(&self, id: &str) -> Result<()> {
        let n = sqlx::query("UPDATE api_keys SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        not_found_if_zero(n, format!("API key {id}"))
    }

    async fn api_key_valid(&self, hash: &str) -> Result<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM api_keys WHERE key_hash = $1 AND revoked = 0")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    async fn device_exists(&self, org_id: &str, device_id: &str) -> Result<bool> {
        Ok(self.get_device(org_id, device_id).await?.is_some())
    }

    async fn insert_device(&self, d: &Device) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO devices ({DEVICE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")))
            .bind(&d.org_id)
            .bind(&d.id)
            .bind(&d.hostname)
            .bind(&d.platform)
            .bind(&d.agent_version)
            .bind(d.status.as_str())
            .bind(&d.cert_serial)
            .bind(&d.prev_cert_serial)
            .bind(d.cert_expires_at.map(ms))
            .bind(ms(d.enrolled_at))
            .bind(d.last_seen.map(ms))
            .execute(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::Conflict(format!("device {} already exists in org {}", d.id, d.org_id))
                }
                other => other.into(),
            })?;
        Ok(())
    }

    async fn get_device(&self, org_id: &str, device_id: &str) -> Result<Option<Device>> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE org_id = $1 AND id = $2"
        )))
        .bind(org_id)
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.as_ref().map(row_device).transpose()?)
    }

    async fn list_devices(&self, org_id: Option<&str>) -> Result<Vec<Device>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE $1::TEXT IS NULL OR org_id = $1 ORDER BY org_id, enrolled_at, id"
        )))
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(row_device)
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn set_device_status(
        &self,
        org_id: &str,
        device_id: &str,
        s: DeviceStatus,
    ) -> Result<()> {
        let n = sqlx::query("UPDATE devices SET status = $3 WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(device_id)
            .bind(s.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        not_found_if_zero(n, format!("device {device_id} in org {org_id}"))
    }

    async fn renew_device_cert(
        &self,
        org_id: &str,
        device_id: &str,
        serial: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let n = sqlx::query("UPDATE devices SET prev_cert_serial = cert_serial, cert_serial = $3, cert_expires_at = $4 WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(device_id)
            .bind(serial)
            .bind(ms(expires_at))
            .execute(&self.pool)
            .await?
            .rows_affected();
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
        let mut tx = self.pool.begin().await?;
        let batch_new = sqlx::query("INSERT INTO batches (org_id, batch_id, device_id, agent_version, received_at, event_count, dropped) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING")
            .bind(org_id)
            .bind(batch_id.to_string())
            .bind(device_id)
            .bind(agent_version)
            .bind(ms(now))
            .bind(events.len() as i64)
            .bind(dropped)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let mut accepted: Vec<&StoredEvent> = Vec::new();
        if batch_new == 1 && !events.is_empty() {
            // One round trip for the whole batch: column arrays unnested server-side.
            let mut ids = Vec::with_capacity(events.len());
            let mut cols: (
                Vec<String>,
                Vec<i64>,
                Vec<i64>,
                Vec<String>,
                Vec<Option<String>>,
                Vec<String>,
                Vec<Option<String>>,
                Vec<i64>,
            ) = Default::default();
            let mut cls: (
                Vec<Option<String>>,
                Vec<Option<String>>,
                Vec<Option<String>>,
                Vec<Option<String>>,
                Vec<Option<String>>,
            ) = Default::default();
            let mut nums: (
                Vec<i64>,
                Vec<i64>,
                Vec<Option<i64>>,
                Vec<i64>,
                Vec<i64>,
                Vec<f64>,
            ) = Default::default();
            let mut rest: (
                Vec<Option<String>>,
                Vec<Option<i64>>,
                Vec<Option<String>>,
                Vec<Option<String>>,
                Vec<Option<String>>,
                Vec<Option<i64>>,
                Vec<Option<String>>,
                Vec<Option<String>>,
                Vec<Option<i64>>,
            ) = Default::default();
            for se in events {
                let e = &se.event;
                ids.push(e.event_id.to_string());
                cols.0.push(e.source.as_str().to_owned());
                cols.1.push(ms(e.started_at));
                cols.2.push(e.duration_ms as i64);
                cols.3.push(e.transport.as_str().to_owned());
                cols.4.push(e.sni.clone());
                cols.5
                    .push(serde_json::to_string(&e.alpn).unwrap_or_else(|_| "[]".into()));
                cols.6.push(e.ja4.clone());
                cols.7.push(e.ech as i64);
                cls.0.push(se.provider.clone());
                cls.1.push(se.product.clone());
                cls.2.push(se.category.clone());
                cls.3.push(e.provider.clone());
                cls.4.push(e.product.clone());
                nums.0.push(e.bytes_out as i64);
                nums.1.push(e.bytes_in as i64);
                nums.2.push(e.records_in.map(|x| x as i64));
                nums.3.push(e.est_input_tokens as i64);
                nums.4.push(e.est_output_tokens as i64);
                nums.5.push(se.cost_usd);
                rest.0.push(e.user.clone());
                rest.1.push(e.process.as_ref().map(|p| p.pid as i64));
                rest.2.push(e.process.as_ref().map(|p| p.name.clone()));
                rest.3.push(e.process.as_ref().and_then(|p| p.path.clone()));
                rest.4.push(e.dst_ip.map(|i| i.to_string()));
                rest.5.push(e.dst_port.map(|p| p as i64));
                rest.6.push(e.endpoint.clone());
                rest.7.push(e.source_domain.clone());
                rest.8.push(e.streaming.map(|b| b as i64));
            }
            let inserted: Vec<String> = sqlx::query_scalar(
                "INSERT INTO events (org_id, device_id, batch_id, event_id, source, started_at, duration_ms, transport, sni, alpn, ja4, ech, provider, product, category, agent_provider, agent_product, bytes_out, bytes_in, records_in, est_input_tokens, est_output_tokens, cost_usd, user_name, process_pid, process_name, process_path, dst_ip, dst_port, endpoint, source_domain, streaming) \
                 SELECT $1, $2, $3, * FROM UNNEST($4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::BIGINT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::BIGINT[], $13::TEXT[], $14::TEXT[], $15::TEXT[], $16::TEXT[], $17::TEXT[], $18::BIGINT[], $19::BIGINT[], $20::BIGINT[], $21::BIGINT[], $22::BIGINT[], $23::FLOAT8[], $24::TEXT[], $25::BIGINT[], $26::TEXT[], $27::TEXT[], $28::TEXT[], $29::BIGINT[], $30::TEXT[], $31::TEXT[], $32::BIGINT[]) \
                 ON CONFLICT DO NOTHING RETURNING event_id",
            )
            .bind(org_id)
            .bind(device_id)
            .bind(batch_id.to_string())
            .bind(&ids)
            .bind(&cols.0).bind(&cols.1).bind(&cols.2).bind(&cols.3).bind(&cols.4).bind(&cols.5).bind(&cols.6).bind(&cols.7)
            .bind(&cls.0).bind(&cls.1).bind(&cls.2).bind(&cls.3).bind(&cls.4)
            .bind(&nums.0).bind(&nums.1).bind(&nums.2).bind(&nums.3).bind(&nums.4).bind(&nums.5)
            .bind(&rest.0).bind(&rest.1).bind(&rest.2).bind(&rest.3).bind(&rest.4).bind(&rest.5).bind(&rest.6).bind(&rest.7).bind(&rest.8)
            .fetch_all(&mut *tx)
            .await?;
            let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
            // An id repeated inside one batch is inserted once: count its first copy.
            let mut seen = std::collections::HashSet::new();
            accepted = events
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
                sqlx::query(
                    "INSERT INTO usage_hourly (org_id, user_id, provider, product, hour, requests, input_tokens, output_tokens, cost_usd) \
                     SELECT $1, * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::FLOAT8[]) \
                     ON CONFLICT (org_id, hour, user_id, provider, product) DO UPDATE SET requests = usage_hourly.requests + excluded.requests, input_tokens = usage_hourly.input_tokens + excluded.input_tokens, output_tokens = usage_hourly.output_tokens + excluded.output_tokens, cost_usd = usage_hourly.cost_usd + excluded.cost_usd",
                )
                .bind(org_id)
                .bind(&r.0).bind(&r.1).bind(&r.2).bind(&r.3).bind(&r.4).bind(&r.5).bind(&r.6).bind(&r.7)
                .execute(&mut *tx)
                .await?;
            }
            let users: Vec<String> = accepted
                .iter()
                .filter_map(|e| e.event.user.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if !users.is_empty() {
                sqlx::query("INSERT INTO device_users (org_id, device_id, user_id) SELECT $1, $2, * FROM UNNEST($3::TEXT[]) ON CONFLICT DO NOTHING")
                    .bind(org_id)
                    .bind(device_id)
                    .bind(&users)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "UPDATE devices SET last_seen = $3, agent_version = $4 WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id)
        .bind(device_id)
        .bind(ms(now))
        .bind(agent_version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let n = accepted.len() as u32;
        Ok(IngestOutcome {
            accepted: n,
            duplicates: events.len() as u32 - n,
        })
    }

    async fn count_events(&self, org_id: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE org_id = $1")
                .bind(org_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn upsert_budget(&self, b: &Budget) -> Result<()> {
        sqlx::query("INSERT INTO budgets (org_id, department, monthly_tokens, hard_cap, rollover) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, department) DO UPDATE SET monthly_tokens = excluded.monthly_tokens, hard_cap = excluded.hard_cap, rollover = excluded.rollover")
            .bind(&b.org_id)
            .bind(b.department.clone().unwrap_or_default())
            .bind(b.monthly_tokens)
            .bind(b.hard_cap as i64)
            .bind(b.rollover as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_budget(&self, org_id: &str, department: Option<&str>) -> Result<()> {
        let d = department.unwrap_or("");
        let n = sqlx::query("DELETE FROM budgets WHERE org_id = $1 AND department = $2")
            .bind(org_id)
            .bind(d)
            .execute(&self.pool)
            .await?
            .rows_affected();
        not_found_if_zero(n, format!("budget {d:?} of org {org_id}"))
    }

    async fn list_budgets(&self, org_id: &str) -> Result<Vec<Budget>> {
        let rows = sqlx::query("SELECT org_id, department, monthly_tokens, hard_cap, rollover FROM budgets WHERE org_id = $1 ORDER BY department")
            .bind(org_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let dep: String = r.try_get(1)?;
                Ok(Budget {
                    org_id: r.try_get(0)?,
                    department: (!dep.is_empty()).then_some(dep),
                    monthly_tokens: r.try_get(2)?,
                    hard_cap: r.try_get::<i64, _>(3)? != 0,
                    rollover: r.try_get::<i64, _>(4)? != 0,
                })
            })
            .collect()
    }

    async fn create_department(&self, org_id: &str, name: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO departments (org_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(org_id)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_departments(&self, org_id: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM departments WHERE org_id = $1 ORDER BY name")
                .bind(org_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn upsert_user(&self, u: &User) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Some(d) = &u.department {
            sqlx::query(
                "INSERT INTO departments (org_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(&u.org_id)
            .bind(d)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("INSERT INTO users (org_id, user_id, email, department) VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, user_id) DO UPDATE SET email = excluded.email, department = excluded.department")
            .bind(&u.org_id)
            .bind(&u.user_id)
            .bind(&u.email)
            .bind(&u.department)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_users(&self, org_id: &str) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT org_id, user_id, email, department FROM users WHERE org_id = $1 ORDER BY user_id")
            .bind(org_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(User {
                    org_id: r.try_get(0)?,
                    user_id: r.try_get(1)?,
                    email: r.try_get(2)?,
                    department: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn device_users(&self, org_id: &str, device_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT user_id FROM device_users WHERE org_id = $1 AND device_id = $2 ORDER BY user_id")
            .bind(org_id)
            .bind(device_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn tokens_used(
        &self,
        org_id: &str,
        department: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT) FROM usage_hourly u WHERE u.org_id = $1 AND u.hour >= $2 AND u.hour < $3 AND ($4::TEXT IS NULL OR u.user_id IN (SELECT user_id FROM users WHERE org_id = $1 AND department = $4))",
        )
        .bind(org_id)
        .bind(start.timestamp())
        .bind(end.timestamp())
        .bind(department)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn create_admin_user(&self, a: &AdminUser) -> Result<()> {
        sqlx::query("INSERT INTO admin_users (id, org_id, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&a.id)
            .bind(&a.org_id)
            .bind(&a.email)
            .bind(&a.password_hash)
            .bind(ms(a.created_at))
            .execute(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(db) if db.is_unique_violation() || db.is_foreign_key_violation() => {
                    StoreError::Conflict(format!("an administrator {} already exists (or org {} does not)", a.email, a.org_id))
                }
                other => other.into(),
            })?;
        Ok(())
    }

    async fn admin_user_by_email(&self, email: &str) -> Result<Option<AdminUser>> {
        let r = sqlx::query(
            "SELECT id, org_id, email, password_hash, created_at FROM admin_users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| -> std::result::Result<AdminUser, sqlx::Error> {
            Ok(AdminUser {
                id: r.try_get(0)?,
                org_id: r.try_get(1)?,
                email: r.try_get(2)?,
                password_hash: r.try_get(3)?,
                created_at: from_ms(r.try_get(4)?),
            })
        })
        .transpose()?)
    }

    async fn usage(&self, q: &UsageQuery) -> Result<UsagePage> {
        let a = UsageArgs::new(q);
        // Parameters in `$n IS NULL` positions need their types spelled out for
        // PostgreSQL; the casts are harmless where the type is known.
        let typed = |sql: String| {
            sql.replace("$1 IS NULL", "$1::TEXT IS NULL")
                .replace("$2 IS NULL", "$2::BIGINT IS NULL")
                .replace("$3 IS NULL", "$3::BIGINT IS NULL")
                .replace("$4 IS NULL", "$4::TEXT IS NULL")
                .replace("$5 IS NULL", "$5::TEXT IS NULL")
                .replace("$6 IS NULL", "$6::TEXT IS NULL")
                .replace("$7 IS NULL", "$7::TEXT IS NULL")
                .replace("$8 IS NULL", "$8::BIGINT IS NULL")
        };
        let count_sql = typed(usage_count_sql(bucket_expr(q.period)));
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql))
            .bind(&a.org)
            .bind(a.start)
            .bind(a.end)
            .bind(&a.user)
            .bind(&a.provider)
            .bind(&a.model)
            .bind(&a.department)
            .fetch_one(&self.pool)
            .await?;
        let sql = typed(usage_sql(bucket_expr(q.period)));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&a.org)
            .bind(a.start)
            .bind(a.end)
            .bind(&a.user)
            .bind(&a.provider)
            .bind(&a.model)
            .bind(&a.department)
            .bind(a.c_bucket)
            .bind(&a.c_org)
            .bind(&a.c_user)
            .bind(&a.c_provider)
            .bind(&a.c_product)
            .bind(a.limit + 1)
            .fetch_all(&self.pool)
            .await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(UsageRow {
                    bucket: r.try_get(0)?,
                    org_id: r.try_get(1)?,
                    user_id: r.try_get(2)?,
                    provider: r.try_get(3)?,
                    product: r.try_get(4)?,
                    requests: r.try_get(5)?,
                    input_tokens: r.try_get(6)?,
                    output_tokens: r.try_get(7)?,
                    cost_usd: r.try_get(8)?,
                    user_email: r.try_get(9)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        Ok(page(rows, q.limit, total))
    }
}
