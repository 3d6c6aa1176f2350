//! What every store-backed test file shares: one store of each kind, and `both!`, which
//! runs a test body once on SQLite and once on PostgreSQL so the two implementations
//! are held to the same assertions.

use std::sync::Arc;
use toktra_server::Store;

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
