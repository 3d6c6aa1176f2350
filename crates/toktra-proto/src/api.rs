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

/// Enrollment request headers (EST `simpleenroll`/`simplereenroll`). The device id is
/// a *hint* on enrollment (the server may assign another and echoes the one it used in
/// the response's [`HEADER_DEVICE_ID`]); the others describe the device for the
/// server's device list. Lower case because HTTP/2 requires it on the wire.
pub const HEADER_DEVICE_ID: &str = "x-toktra-device-id";
pub const HEADER_HOSTNAME: &str = "x-toktra-hostname";
pub const HEADER_PLATFORM: &str = "x-toktra-platform";
pub const HEADER_AGENT_VERSION: &str = "x-toktra-agent-version";
