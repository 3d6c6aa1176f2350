//! The service pipe `\\.\pipe\toktra-agent`: one JSON object per line each way.
//!
//! Clients (the tray, the native messaging host, `ToktraAgent.exe status`) send a
//! [`Request`]; the service answers with one [`Response`] line. Every line carries the
//! protocol version `v`; a client speaking another major version gets an error naming
//! both. What a client may do is deliberately small: read the status, the budget and
//! the notifications, and hand in extension events (which the service validates as if
//! they came from the network). Nothing on the pipe changes configuration or identity.

use serde::{Deserialize, Serialize};
use toktra_proto::{BudgetStatus, FlowEvent};

pub const PIPE_NAME: &str = r"\\.\pipe\toktra-agent";
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line the service reads: one native message (1 MiB) plus framing.
pub const MAX_LINE: usize = 1024 * 1024 + 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Status,
    Budget,
    /// Notifications with an id greater than `after` (0 for all that are kept).
    Notifications {
        #[serde(default)]
        after: u64,
    },
    /// Extension events from the native messaging host.
    Events {
        events: Vec<FlowEvent>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AgentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Vec<Notification>>,
    /// Events: how many were accepted into the spool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<u32>,
}

impl Response {
    pub fn ok() -> Self {
        Self {
            v: PROTOCOL_VERSION,
            ok: true,
            error: None,
            status: None,
            budget: None,
            notifications: None,
            accepted: None,
        }
    }
    pub fn error(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(msg.into()),
            ..Self::ok()
        }
    }
}

/// State of the capture driver as the service sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverState {
    /// \\.\ToktraWfp does not exist: the service runs on extension events alone.
    NotPresent,
    Present,
    /// The driver answered with another ABI version.
    Incompatible,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub version: String,
    pub org_id: String,
    pub device_id: String,
    pub ingest_url: String,
    pub dashboard_url: String,
    pub cert_subject: String,
    /// Enrolled and holding a valid certificate.
    pub enrolled: bool,
    #[serde(default)]
    pub cert_not_after: Option<String>,
    pub driver: DriverState,
    pub driver_events: u64,
    pub extension_events: u64,
    pub spool_events: u64,
    pub uploaded_events: u64,
    #[serde(default)]
    pub last_upload: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Something the tray should show the user once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Increasing; clients remember the last one they showed.
    pub id: u64,
    pub title: String,
    pub message: String,
    /// The user it is for (None: everyone on the device).
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("request is not valid JSON for protocol v{PROTOCOL_VERSION}: {0}")]
    Json(#[from] serde_json::Error),
    #[error("protocol version {got} is not supported (this service speaks v{PROTOCOL_VERSION})")]
    Version { got: u32 },
    #[error("request line longer than {MAX_LINE} bytes")]
    TooLong,
}

pub fn parse_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > MAX_LINE {
        return Err(ProtocolError::TooLong);
    }
    // Look at the version before the shape, so an old/new client is told the real reason.
    #[derive(Deserialize)]
    struct Versioned {
        v: u32,
    }
    let Versioned { v } = serde_json::from_slice(line)?;
    if v != PROTOCOL_VERSION {
        return Err(ProtocolError::Version { got: v });
    }
    Ok(serde_json::from_slice(line)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_versions_are_checked() {
        let r = parse_request(br#"{"v":1,"op":"status"}"#).unwrap();
        assert_eq!(r.op, Op::Status);
        let r = parse_request(br#"{"v":1,"op":"notifications","after":7}"#).unwrap();
        assert_eq!(r.op, Op::Notifications { after: 7 });
        let e = parse_request(br#"{"v":2,"op":"status"}"#).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        assert!(parse_request(br#"{"v":1,"op":"set_config"}"#).is_err());
        assert!(parse_request(br#"{"op":"status"}"#).is_err());
    }
}
