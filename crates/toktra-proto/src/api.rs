//! HTTP paths of the server's agent face. Clients and server both use these constants.

/// RFC 7030 (EST) paths.
pub const EST_CACERTS: &str = "/.well-known/est/cacerts";
pub const EST_SIMPLEENROLL: &str = "/.well-known/est/simpleenroll";
pub const EST_SIMPLEREENROLL: &str = "/.well-known/est/simplereenroll";

/// mTLS: upload a [`crate::Batch`], answered with a [`crate::IngestResponse`].
pub const INGEST_BATCHES: &str = "/v1/ingest/batches";
/// mTLS: the device's [`crate::BudgetStatus`].
pub const AGENT_BUDGET: &str = "/v1/agent/budget";

/// Certificates the server issues to devices live this long; agents renew at two
/// thirds of it.
pub const DEVICE_CERT_DAYS: i64 = 90;
