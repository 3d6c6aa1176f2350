//! What every store-backed test file shares: one store of each kind, and `both!`, which
//! runs a test body once on SQLite and once on PostgreSQL so the two implementations
//! are held to the same assertions.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use toktra_proto::FlowEvent;
use toktra_server::store::{Device, DeviceStatus, IngestOutcome, StoredEvent};
use toktra_server::{Admin, Store};
use uuid::Uuid;

pub async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = toktra_server::open_store(dir.path(), None).await.unwrap();
    (dir, s)
}

pub async fn pg() -> Arc<dyn Store> {
    let url = std::env::var("TOKTRA_TEST_DATABASE_URL").expect(
        "TOKTRA_TEST_DATABASE_URL is not set: the PostgreSQL half needs a database \
         (scripts/test.d/30-server.sh and 50-dashboard.sh start one)",
    );
    toktra_server::open_store(std::path::Path::new("/nonexistent"), Some(&url))
        .await
        .unwrap()
}

/// `both!(a, b)` makes `a::sqlite`, `a::postgres`, ... from `async fn a(Arc<dyn Store>)`.
/// The PostgreSQL halves are ignored by a plain `cargo test`; the suites that start a
/// database run them with `--include-ignored`, and then they fail, not skip, without one.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let (_dir, s) = crate::common::sqlite().await;
                super::$name(s).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs PostgreSQL (TOKTRA_TEST_DATABASE_URL); scripts/test.d/30-server.sh and 50-dashboard.sh run it"]
            async fn postgres() {
                super::$name(crate::common::pg().await).await
            }
        }
    )*};
}

/// A classified HTTPS event of `user` using `provider`'s `product` at `at`, with the
/// given token estimates and cost; everything else fixed.
pub fn event(
    user: &str,
    provider: &str,
    product: &str,
    at: DateTime<Utc>,
    (tin, tout): (u64, u64),
    cost_usd: f64,
) -> StoredEvent {
    StoredEvent {
        event: FlowEvent {
            started_at: at,
            sni: None,
            provider: Some(provider.into()),
            product: Some(product.into()),
            est_input_tokens: tin,
            est_output_tokens: tout,
            ..FlowEvent::example(user)
        },
        provider: Some(provider.into()),
        product: Some(product.into()),
        category: None,
        cost_usd,
    }
}

/// A fresh organization (unique name, so the PostgreSQL database can be shared) with
/// one enrolled device on `hostname`/`platform`: (org id, device id).
pub async fn org_with_device(
    s: &Arc<dyn Store>,
    hostname: &str,
    platform: &str,
) -> (String, String) {
    let org = Admin::new(s.clone())
        .create_org(&format!("Org {}", Uuid::now_v7()), None)
        .await
        .unwrap();
    let dev = Uuid::now_v7().to_string();
    s.insert_device(&Device {
        org_id: org.id.clone(),
        id: dev.clone(),
        hostname: Some(hostname.into()),
        platform: Some(platform.into()),
        agent_version: Some("0.1.0".into()),
        status: DeviceStatus::Enrolled,
        cert_serial: Some("01".into()),
        prev_cert_serial: None,
        cert_expires_at: Some(Utc::now() + Duration::days(90)),
        enrolled_at: Utc::now(),
        last_seen: None,
    })
    .await
    .unwrap();
    (org.id, dev)
}

/// Ingests `events` as a new batch (fresh batch id) from `dev` at `now`.
pub async fn ingest(
    s: &Arc<dyn Store>,
    org: &str,
    dev: &str,
    events: &[StoredEvent],
    now: DateTime<Utc>,
) -> IngestOutcome {
    s.ingest(org, dev, Uuid::now_v7(), "0.1.0", None, events, now)
        .await
        .unwrap()
}
