//! [`DashboardData`] over the server's [`Store`]: the dashboard reads the same
//! roll-up the usage API reads, through the same administrative operations the API
//! and `toktra admin` use, so the numbers on the page and in the API cannot differ.

use super::data::*;
use crate::budget;
use crate::ops::{Admin, AdminError};
use crate::store::{self, Budget, Period, Store, StoreError, UsageCursor, UsageQuery};
use chrono::{DateTime, Duration, NaiveTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub struct StoreData {
    admin: Admin,
}

impl StoreData {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            admin: Admin::new(store),
        }
    }

    fn store(&self) -> &dyn Store {
        self.admin.store().as_ref()
    }

    /// Every roll-up row of a query, following the keyset cursor page by page.
    async fn all_usage(&self, mut q: UsageQuery) -> DataResult<Vec<store::UsageRow>> {
        q.limit = 10_000;
        let mut out = Vec::new();
        loop {
            let page = self.store().usage(&q).await.map_err(from_store)?;
            let last = page.rows.last().map(|r| UsageCursor {
                bucket: r.bucket,
                org: r.org_id.clone(),
                user: r.user_id.clone(),
                provider: r.provider.clone(),
                product: r.product.clone(),
            });
            out.extend(page.rows);
            match (page.has_more, last) {
                (true, Some(c)) => q.after = Some(c),
                _ => return Ok(out),
            }
        }
    }
}

fn from_store(e: StoreError) -> DataError {
    match e {
        StoreError::NotFound(what) => DataError::NotFound(what),
        StoreError::Conflict(t) => DataError::Invalid(t),
        other => DataError::Store(other.to_string()),
    }
}

fn from_admin(e: AdminError) -> DataError {
    match e {
        AdminError::Store(s) => from_store(s),
        AdminError::Invalid(t) => DataError::Invalid(t),
    }
}

/// The catalog's category for a product, looked up by the product's name or id (the
/// roll-up keeps what the classifier wrote). Unknown products count as "other".
fn category_of(product: &str) -> &'static str {
    static MAP: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    let map = MAP.get_or_init(|| {
        let mut m = HashMap::new();
        for e in toktra_catalog::Catalog::embedded().entries() {
            m.insert(e.product.to_lowercase(), e.category.as_str());
            m.insert(e.id.to_lowercase(), e.category.as_str());
        }
        m
    });
    map.get(&product.to_lowercase()).copied().unwrap_or("other")
}

#[async_trait::async_trait]
impl DashboardData for StoreData {
    async fn admin_by_email(&self, email: &str) -> DataResult<Option<AdminAccount>> {
        Ok(self
            .store()
            .admin_user_by_email(email)
            .await
            .map_err(from_store)?
            .map(|a| AdminAccount {
                id: a.id,
                org_id: a.org_id,
                email: a.email,
                password_hash: a.password_hash,
            }))
    }

    async fn create_admin(
        &self,
        org_id: &str,
        email: &str,
        password_hash: &str,
    ) -> DataResult<AdminAccount> {
        if self
            .store()
            .get_org(org_id)
            .await
            .map_err(from_store)?
            .is_none()
        {
            return Err(DataError::NotFound(format!("organization {org_id}")));
        }
        let a = store::AdminUser {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org_id.to_owned(),
            email: email.to_owned(),
            password_hash: password_hash.to_owned(),
            created_at: Utc::now(),
        };
        self.store()
            .create_admin_user(&a)
            .await
            .map_err(from_store)?;
        Ok(AdminAccount {
            id: a.id,
            org_id: a.org_id,
            email: a.email,
            password_hash: a.password_hash,
        })
    }

    async fn org_name(&self, org_id: &str) -> DataResult<Option<String>> {
        Ok(self
            .store()
            .get_org(org_id)
            .await
            .map_err(from_store)?
            .map(|o| o.name))
    }

    async fn usage(&self, org_id: &str, filter: &UsageFilter) -> DataResult<Vec<UsageRow>> {
        let q = UsageQuery {
            org_id: Some(org_id.to_owned()),
            period: Period::Daily,
            start: Some(filter.start.and_time(NaiveTime::MIN).and_utc()),
            // The store's end is exclusive; the filter's last day is included.
            end: Some(
                (filter.end + Duration::days(1))
                    .and_time(NaiveTime::MIN)
                    .and_utc(),
            ),
            ..Default::default()
        };
        let rows = self.all_usage(q).await?;
        let departments: HashMap<String, Option<String>> = self
            .store()
            .list_users(org_id)
            .await
            .map_err(from_store)?
            .into_iter()
            .map(|u| (u.user_id, u.department))
            .collect();
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let day = DateTime::from_timestamp(r.bucket, 0)?.date_naive();
                Some(UsageRow {
                    day,
                    department: departments.get(&r.user_id).cloned().flatten(),
                    category: category_of(&r.product).to_owned(),
                    user_id: r.user_id,
                    user_email: r.user_email,
                    provider: r.provider,
                    requests: r.requests.max(0) as u64,
                    input_tokens: r.input_tokens.max(0) as u64,
                    output_tokens: r.output_tokens.max(0) as u64,
                    cost_usd: r.cost_usd,
                })
            })
            .collect())
    }

    async fn recent_activity(&self, org_id: &str, limit: usize) -> DataResult<Vec<ActivityRow>> {
        let now = Utc::now();
        let q = UsageQuery {
            org_id: Some(org_id.to_owned()),
            period: Period::Hourly,
            start: Some(now - Duration::hours(48)),
            end: Some(now + Duration::hours(1)),
            ..Default::default()
        };
        let mut rows = self.all_usage(q).await?;
        rows.sort_by(|a, b| {
            b.bucket
                .cmp(&a.bucket)
                .then((b.input_tokens + b.output_tokens).cmp(&(a.input_tokens + a.output_tokens)))
        });
        Ok(rows
            .into_iter()
            .take(limit)
            .map(|r| ActivityRow {
                hour: DateTime::from_timestamp(r.bucket, 0).unwrap_or_default(),
                user_id: r.user_id,
                provider: r.provider,
                product: r.product,
                requests: r.requests.max(0) as u64,
                input_tokens: r.input_tokens.max(0) as u64,
                output_tokens: r.output_tokens.max(0) as u64,
            })
            .collect())
    }

    async fn devices(&self, org_id: &str) -> DataResult<Vec<DeviceRow>> {
        let list = self
            .store()
            .list_devices(Some(org_id))
            .await
            .map_err(from_store)?;
        Ok(list
            .into_iter()
            .map(|d| DeviceRow {
                hostname: d.hostname.unwrap_or_else(|| d.id.clone()),
                platform: d.platform.unwrap_or_else(|| "—".into()),
                agent_version: d.agent_version.unwrap_or_else(|| "—".into()),
                status: d.status,
                cert_expires_at: d.cert_expires_at,
                last_seen: d.last_seen,
                id: d.id,
            })
            .collect())
    }

    async fn set_device_locked(
        &self,
        org_id: &str,
        device_id: &str,
        locked: bool,
    ) -> DataResult<()> {
        self.admin
            .set_device_locked(org_id, device_id, locked)
            .await
            .map(|_| ())
            .map_err(from_admin)
    }

    async fn budgets(&self, org_id: &str, now: DateTime<Utc>) -> DataResult<Vec<BudgetRow>> {
        let rollover: HashMap<Option<String>, bool> = self
            .store()
            .list_budgets(org_id)
            .await
            .map_err(from_store)?
            .into_iter()
            .map(|b| (b.department, b.rollover))
            .collect();
        let mut rows: Vec<BudgetRow> = budget::org_status(self.store(), org_id, now)
            .await
            .map_err(from_store)?
            .into_iter()
            .map(|e| BudgetRow {
                rollover: rollover.get(&e.department).copied().unwrap_or(false),
                department: e.department,
                limit_tokens: e.limit,
                used_tokens: e.used,
                hard_cap: e.hard_cap,
                period: e.period,
            })
            .collect();
        // The organization first, then departments by name.
        rows.sort_by(|a, b| {
            (a.department.is_some(), &a.department).cmp(&(b.department.is_some(), &b.department))
        });
        Ok(rows)
    }

    async fn upsert_budget(&self, org_id: &str, b: &BudgetInput) -> DataResult<()> {
        let monthly_tokens = i64::try_from(b.limit_tokens)
            .map_err(|_| DataError::Invalid("the limit is too large".into()))?;
        self.admin
            .set_budget(&Budget {
                org_id: org_id.to_owned(),
                department: b.department.clone(),
                monthly_tokens,
                hard_cap: b.hard_cap,
                rollover: b.rollover,
            })
            .await
            .map_err(from_admin)
    }

    async fn users(&self, org_id: &str) -> DataResult<Vec<UserRow>> {
        Ok(self
            .store()
            .list_users(org_id)
            .await
            .map_err(from_store)?
            .into_iter()
            .map(|u| UserRow {
                user_id: u.user_id,
                email: u.email,
                department: u.department,
            })
            .collect())
    }

    async fn set_user_department(
        &self,
        org_id: &str,
        user_id: &str,
        department: &str,
    ) -> DataResult<()> {
        let email = self
            .store()
            .list_users(org_id)
            .await
            .map_err(from_store)?
            .into_iter()
            .find(|u| u.user_id == user_id)
            .and_then(|u| u.email);
        self.admin
            .set_user(&store::User {
                org_id: org_id.to_owned(),
                user_id: user_id.to_owned(),
                email,
                department: Some(department.to_owned()),
            })
            .await
            .map_err(from_admin)
    }

    async fn import_users_csv(&self, org_id: &str, csv: &str) -> DataResult<usize> {
        self.admin
            .import_users_csv(org_id, csv)
            .await
            .map_err(from_admin)
    }

    async fn enrollment_tokens(&self, org_id: &str) -> DataResult<Vec<EnrollmentTokenRow>> {
        let mut list: Vec<EnrollmentTokenRow> = self
            .store()
            .list_enrollment_tokens(org_id)
            .await
            .map_err(from_store)?
            .into_iter()
            .map(|t| EnrollmentTokenRow {
                id: t.id,
                created_at: t.created_at,
                expires_at: t.expires_at,
                uses: t.uses.max(0) as u64,
                max_uses: t.max_uses.map(|n| n.max(0) as u64),
                revoked: t.revoked,
            })
            .collect();
        list.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        Ok(list)
    }

    async fn create_enrollment_token(
        &self,
        org_id: &str,
        expires_at: Option<DateTime<Utc>>,
        max_uses: Option<u64>,
    ) -> DataResult<NewEnrollmentToken> {
        let max_uses = max_uses.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let t = self
            .admin
            .create_enrollment_token(org_id, expires_at, max_uses)
            .await
            .map_err(from_admin)?;
        Ok(NewEnrollmentToken {
            id: t.info.id,
            secret: t.token,
        })
    }

    async fn revoke_enrollment_token(&self, org_id: &str, token_id: &str) -> DataResult<()> {
        // Tokens are revoked by id alone in the store: check the organization first so
        // one organization's administrator cannot revoke another's.
        let owned = self
            .store()
            .list_enrollment_tokens(org_id)
            .await
            .map_err(from_store)?
            .iter()
            .any(|t| t.id == token_id);
        if !owned {
            return Err(DataError::NotFound(format!("enrollment token {token_id}")));
        }
        self.store()
            .revoke_enrollment_token(token_id)
            .await
            .map_err(from_store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_come_from_the_catalog() {
        assert_eq!(category_of("ChatGPT"), "chat");
        assert_eq!(category_of("chatgpt"), "chat");
        assert_eq!(category_of("OpenAI API"), "api");
        assert_eq!(category_of("no such product"), "other");
    }
}
