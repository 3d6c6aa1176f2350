//! Administrative operations as library calls: what `toktra admin`, the admin API and
//! `toktra up` share.

use crate::store::{
    ApiKeyInfo, Budget, Device, DeviceStatus, EnrollmentToken, Org, Store, StoreError, User,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use toktra_proto::config::DEFAULT_CERT_SUBJECT;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// A token or key shown once: only its hash is stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// Give this to the device (EnrollToken).
    pub token: String,
    #[serde(flatten)]
    pub info: EnrollmentToken,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    /// The Bearer key for the admin API.
    pub key: String,
    #[serde(flatten)]
    pub info: ApiKeyInfo,
}

/// SHA-256, hex: how tokens and API keys are stored and looked up.
pub fn secret_hash(secret: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Ids follow the device URI's rules (letters, digits, `-`, `_`, `.`; 64 at most).
pub fn valid_id(s: &str) -> bool {
    toktra_proto::identity::DeviceIdentity::new(s, "x").is_ok()
}

#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn Store>,
}

impl Admin {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Opens the store of a data directory (or PostgreSQL) without running a server.
    pub async fn open(
        data_dir: &std::path::Path,
        database_url: Option<&str>,
    ) -> Result<Self, AdminError> {
        Ok(Self::new(crate::open_store(data_dir, database_url).await?))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn create_org(
        &self,
        name: &str,
        cert_subject: Option<&str>,
    ) -> Result<Org, AdminError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(AdminError::Invalid(
                "organization name must be 1 to 200 characters".into(),
            ));
        }
        let subject = cert_subject.unwrap_or(DEFAULT_CERT_SUBJECT);
        if subject.is_empty() || subject.len() > 64 {
            return Err(AdminError::Invalid(
                "cert subject must be 1 to 64 characters".into(),
            ));
        }
        let org = Org {
            id: Uuid::new_v4().to_string(),
            name: name.to_owned(),
            cert_subject: subject.to_owned(),
            created_at: Utc::now(),
        };
        self.store.create_org(&org).await?;
        Ok(org)
    }

    async fn require_org(&self, org_id: &str) -> Result<Org, AdminError> {
        self.store
            .get_org(org_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("organization {org_id}")).into())
    }

    pub async fn create_enrollment_token(
        &self,
        org_id: &str,
        expires_at: Option<DateTime<Utc>>,
        max_uses: Option<i64>,
    ) -> Result<CreatedToken, AdminError> {
        self.require_org(org_id).await?;
        if max_uses.is_some_and(|n| n < 1) {
            return Err(AdminError::Invalid("max_uses must be at least 1".into()));
        }
        let token = new_secret("tkn_");
        let info = EnrollmentToken {
            id: Uuid::now_v7().to_string(),
            org_id: org_id.to_owned(),
            created_at: Utc::now(),
            expires_at,
            max_uses,
            uses: 0,
            revoked: false,
        };
        self.store
            .create_enrollment_token(&info, &secret_hash(&token))
            .await?;
        Ok(CreatedToken { token, info })
    }

    pub async fn create_api_key(&self, name: &str) -> Result<CreatedApiKey, AdminError> {
        if name.len() > 200 {
            return Err(AdminError::Invalid(
                "API key name: at most 200 characters".into(),
            ));
        }
        let key = new_secret("tka_");
        let info = ApiKeyInfo {
            id: Uuid::now_v7().to_string(),
            name: name.to_owned(),
            created_at: Utc::now(),
            revoked: false,
        };
        self.store.create_api_key(&info, &secret_hash(&key)).await?;
        Ok(CreatedApiKey { key, info })
    }

    pub async fn set_device_locked(
        &self,
        org_id: &str,
        device_id: &str,
        locked: bool,
    ) -> Result<Device, AdminError> {
        let status = if locked {
            DeviceStatus::Locked
        } else {
            DeviceStatus::Enrolled
        };
        self.store
            .set_device_status(org_id, device_id, status)
            .await?;
        Ok(self
            .store
            .get_device(org_id, device_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("device {device_id}")))?)
    }

    pub async fn set_budget(&self, b: &Budget) -> Result<(), AdminError> {
        self.require_org(&b.org_id).await?;
        if b.monthly_tokens < 0 {
            return Err(AdminError::Invalid(
                "monthly_tokens must not be negative".into(),
            ));
        }
        if let Some(d) = &b.department {
            self.store.create_department(&b.org_id, d).await?;
        }
        Ok(self.store.upsert_budget(b).await?)
    }

    pub async fn set_user(&self, u: &User) -> Result<(), AdminError> {
        self.require_org(&u.org_id).await?;
        if u.user_id.is_empty() || u.user_id.len() > 1024 {
            return Err(AdminError::Invalid(
                "user_id must be 1 to 1024 bytes".into(),
            ));
        }
        Ok(self.store.upsert_user(u).await?)
    }

    /// Imports `user_id,email,department` lines (a header line naming those columns is
    /// optional; empty email or department means none). Returns the number of users.
    pub async fn import_users_csv(
        &self,
        org_id: &str,
        csv_text: &str,
    ) -> Result<usize, AdminError> {
        self.require_org(org_id).await?;
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(csv_text.as_bytes());
        let mut users = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| AdminError::Invalid(format!("CSV line {}: {e}", i + 1)))?;
            let field = |n: usize| rec.get(n).filter(|s| !s.is_empty()).map(str::to_owned);
            let Some(user_id) = field(0) else { continue };
            if i == 0 && user_id.eq_ignore_ascii_case("user_id") {
                continue;
            }
            if rec.len() > 3 {
                return Err(AdminError::Invalid(format!(
                    "CSV line {}: expected user_id,email,department, got {} fields",
                    i + 1,
                    rec.len()
                )));
            }
            users.push(User {
                org_id: org_id.to_owned(),
                user_id,
                email: field(1),
                department: field(2),
            });
        }
        for u in &users {
            self.set_user(u).await?;
        }
        Ok(users.len())
    }
}
