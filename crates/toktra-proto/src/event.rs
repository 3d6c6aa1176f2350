//! Event v1: one observed LLM connection (or, from the browser extension, one request).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use uuid::Uuid;

/// The most events the server takes in one batch; agents send at most
/// [`AGENT_BATCH_EVENTS`] so a batch is always far from the limit.
pub const MAX_EVENTS_PER_BATCH: usize = 1_000;
/// Agents close a batch at this many events (or after [`AGENT_BATCH_SECONDS`]).
pub const AGENT_BATCH_EVENTS: usize = 50;
/// Agents close a batch after this many seconds even if it is not full.
pub const AGENT_BATCH_SECONDS: u64 = 5;
/// Largest request body the server reads off the wire (compressed or not).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest body after gzip decompression; beyond it the request is a 413.
pub const MAX_DECOMPRESSED_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Longest string field accepted in an event (a DNS name is at most 253 bytes; paths
/// and process names get more room, but never unbounded).
const MAX_TEXT: usize = 1024;
const MAX_HOSTNAME: usize = 253;
const MAX_ALPN_IDS: usize = 32;
/// A flow or request longer than a week is a clock or tracking bug, not usage.
const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Events may lag (offline spool) but never come from the future beyond clock skew.
const MAX_CLOCK_SKEW: Duration = Duration::minutes(10);

/// What observed the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The Windows kernel driver toktra-wfp.sys.
    Wfp,
    /// The Linux passive packet tap.
    Linux,
    /// The Edge/Chrome extension through the native messaging host.
    Extension,
    /// An offline packet capture file.
    Pcap,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Wfp => "wfp",
            Source::Linux => "linux",
            Source::Extension => "extension",
            Source::Pcap => "pcap",
        }
    }
}

/// How the event travelled: a TLS-over-TCP flow, a QUIC connection, or (extension
/// events only) one HTTP request seen by the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Quic,
    Http,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
            Transport::Http => "http",
        }
    }
}

/// The local program that owned the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
}

/// Event v1. Field names and meanings are those of ARCHITECTURE.md, "Event v1".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowEvent {
    /// UUIDv7, unique per event; the server de-duplicates on it.
    pub event_id: Uuid,
    pub source: Source,
    /// First packet (or request start), UTC.
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub transport: Transport,
    /// Host name as the client sent it (SNI, or the request host for extension events).
    #[serde(default)]
    pub sni: Option<String>,
    /// Offered ALPN protocol ids, in the client's order.
    #[serde(default)]
    pub alpn: Vec<String>,
    #[serde(default)]
    pub ja4: Option<String>,
    /// The ClientHello carried an Encrypted Client Hello extension: `sni` is then the
    /// outer (public) name and must not be attributed as the real destination.
    #[serde(default)]
    pub ech: bool,
    /// The agent's classification; the server re-classifies with its own catalog.
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// TLS application-data records sent by the server (a streamed response sends many).
    #[serde(default)]
    pub records_in: Option<u64>,
    /// Estimates from byte counts, never exact token counts.
    pub est_input_tokens: u64,
    pub est_output_tokens: u64,
    /// Local account, `DOMAIN\user` on Windows, `user` on Linux.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub process: Option<ProcessInfo>,
    #[serde(default)]
    pub dst_ip: Option<IpAddr>,
    #[serde(default)]
    pub dst_port: Option<u16>,
    /// Extension events only: the request path (no query string).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Extension events only: the host of the page that made the request.
    #[serde(default)]
    pub source_domain: Option<String>,
    /// Extension events only: the response was streamed (SSE or chunked).
    #[serde(default)]
    pub streaming: Option<bool>,
}

#[cfg(any(test, feature = "test-util"))]
impl FlowEvent {
    /// A classified LLM event as a Linux agent reports it — an HTTPS connection of
    /// `user` to api.openai.com that ended now, bytes and estimates small and fixed —
    /// for tests and benchmarks to adjust with struct update syntax.
    pub fn example(user: &str) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            source: Source::Linux,
            started_at: chrono::Utc::now(),
            duration_ms: 100,
            transport: Transport::Tcp,
            sni: Some("api.openai.com".into()),
            alpn: vec!["h2".into()],
            ja4: None,
            ech: false,
            provider: Some("openai".into()),
            product: None,
            category: None,
            bytes_out: 10,
            bytes_in: 20,
            records_in: None,
            est_input_tokens: 1,
            est_output_tokens: 2,
            user: Some(user.into()),
            process: None,
            dst_ip: None,
            dst_port: Some(443),
            endpoint: None,
            source_domain: None,
            streaming: None,
        }
    }
}

/// A gap: events the device had to drop (spool full or too old) since a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub count: u64,
    pub since: DateTime<Utc>,
}

/// What an agent uploads: `POST /v1/ingest/batches`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Unique per batch; a retried batch keeps its id, so the server acknowledges it
    /// again without counting it twice.
    pub batch_id: Uuid,
    pub agent_version: String,
    pub events: Vec<FlowEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<Dropped>,
}

/// The server's answer to an accepted batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestResponse {
    pub batch_id: Uuid,
    /// Events stored by this request.
    pub accepted: u32,
    /// Events already stored earlier (a retry), acknowledged but not counted again.
    pub duplicates: u32,
    /// The device's budget status after this batch, so agents need not poll as often.
    #[serde(default)]
    pub budget: Option<crate::BudgetStatus>,
}

/// Why an event or batch was refused. The message names the field and the limit so
/// the agent's log tells an administrator what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("events[{index}].{field}: {reason}")]
    Event {
        index: usize,
        field: &'static str,
        reason: String,
    },
    #[error("events: a batch holds at most {max} events, this one has {got}")]
    TooManyEvents { max: usize, got: usize },
    #[error("agent_version: {0}")]
    AgentVersion(String),
    #[error("dropped.count: must be at least 1 when present")]
    EmptyGap,
}

impl FlowEvent {
    /// Checks the bounds the type system cannot express. `now` is the receiver's clock.
    pub fn validate(&self, index: usize, now: DateTime<Utc>) -> Result<(), ValidationError> {
        let bad = |field: &'static str, reason: String| ValidationError::Event {
            index,
            field,
            reason,
        };
        if self.event_id.is_nil() {
            return Err(bad("event_id", "must not be the nil UUID".into()));
        }
        if self.started_at > now + MAX_CLOCK_SKEW {
            return Err(bad(
                "started_at",
                format!(
                    "{} is more than {} minutes in the future; check the device clock",
                    self.started_at.to_rfc3339(),
                    MAX_CLOCK_SKEW.num_minutes()
                ),
            ));
        }
        if self.duration_ms > MAX_DURATION_MS {
            return Err(bad(
                "duration_ms",
                format!(
                    "{} exceeds the maximum of {MAX_DURATION_MS}",
                    self.duration_ms
                ),
            ));
        }
        if let Some(sni) = &self.sni {
            if sni.is_empty() || sni.len() > MAX_HOSTNAME {
                return Err(bad(
                    "sni",
                    format!("must be 1 to {MAX_HOSTNAME} bytes long"),
                ));
            }
            if sni.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(bad(
                    "sni",
                    "contains whitespace or control characters".into(),
                ));
            }
        }
        if self.alpn.len() > MAX_ALPN_IDS {
            return Err(bad("alpn", format!("at most {MAX_ALPN_IDS} protocol ids")));
        }
        if self.alpn.iter().any(|a| a.is_empty() || a.len() > 255) {
            return Err(bad("alpn", "each protocol id is 1 to 255 bytes".into()));
        }
        let texts: [(&'static str, Option<&str>); 9] = [
            ("ja4", self.ja4.as_deref()),
            ("provider", self.provider.as_deref()),
            ("product", self.product.as_deref()),
            ("category", self.category.as_deref()),
            ("user", self.user.as_deref()),
            ("endpoint", self.endpoint.as_deref()),
            ("source_domain", self.source_domain.as_deref()),
            (
                "process.name",
                self.process.as_ref().map(|p| p.name.as_str()),
            ),
            (
                "process.path",
                self.process.as_ref().and_then(|p| p.path.as_deref()),
            ),
        ];
        for (field, value) in texts {
            if value.is_some_and(|v| v.len() > MAX_TEXT) {
                return Err(bad(field, format!("longer than {MAX_TEXT} bytes")));
            }
        }
        if self.dst_port == Some(0) {
            return Err(bad("dst_port", "0 is not a destination port".into()));
        }
        let is_extension = self.source == Source::Extension;
        if is_extension != (self.transport == Transport::Http) {
            return Err(bad(
                "transport",
                "`http` is used by, and only by, source `extension`".into(),
            ));
        }
        Ok(())
    }
}

impl Batch {
    /// Validates the batch and every event in it; the first problem is returned.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), ValidationError> {
        if self.events.len() > MAX_EVENTS_PER_BATCH {
            return Err(ValidationError::TooManyEvents {
                max: MAX_EVENTS_PER_BATCH,
                got: self.events.len(),
            });
        }
        if self.agent_version.is_empty() || self.agent_version.len() > 64 {
            return Err(ValidationError::AgentVersion(
                "must be 1 to 64 bytes long".into(),
            ));
        }
        if self.dropped.as_ref().is_some_and(|d| d.count == 0) {
            return Err(ValidationError::EmptyGap);
        }
        for (i, e) in self.events.iter().enumerate() {
            e.validate(i, now)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FlowEvent {
        FlowEvent {
            started_at: "2026-11-26T06:00:00Z".parse().unwrap(),
            duration_ms: 1200,
            alpn: vec!["h2".into(), "http/1.1".into()],
            ja4: Some("t13d1516h2_8daaf6152771_b0da82dd1658".into()),
            product: Some("OpenAI API".into()),
            category: Some("api".into()),
            bytes_out: 2000,
            bytes_in: 9000,
            records_in: Some(40),
            est_input_tokens: 500,
            est_output_tokens: 2000,
            process: Some(ProcessInfo {
                pid: 42,
                name: "python3".into(),
                path: Some("/usr/bin/python3".into()),
            }),
            dst_ip: Some("104.18.7.192".parse().unwrap()),
            ..FlowEvent::example("jsmith")
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-26T07:00:00Z".parse().unwrap()
    }

    #[test]
    fn round_trips_through_json_with_architecture_field_names() {
        let e = sample();
        let v = serde_json::to_value(&e).unwrap();
        for key in [
            "event_id",
            "source",
            "started_at",
            "duration_ms",
            "transport",
            "sni",
            "alpn",
            "ja4",
            "provider",
            "product",
            "category",
            "bytes_out",
            "bytes_in",
            "records_in",
            "est_input_tokens",
            "est_output_tokens",
            "user",
            "process",
            "dst_ip",
            "dst_port",
            "endpoint",
            "source_domain",
            "streaming",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["source"], "linux");
        assert_eq!(v["dst_ip"], "104.18.7.192");
        let back: FlowEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_required_named() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["from_the_future"] = serde_json::json!(1);
        assert!(serde_json::from_value::<FlowEvent>(v.clone()).is_ok());
        v.as_object_mut().unwrap().remove("bytes_out");
        let err = serde_json::from_value::<FlowEvent>(v)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bytes_out"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut e = sample();
        e.sni = Some("bad host".into());
        let err = e.validate(3, now()).unwrap_err().to_string();
        assert!(err.starts_with("events[3].sni"), "{err}");

        let mut e = sample();
        e.started_at = now() + Duration::hours(1);
        assert!(matches!(
            e.validate(0, now()),
            Err(ValidationError::Event {
                field: "started_at",
                ..
            })
        ));

        let mut e = sample();
        e.transport = Transport::Http;
        assert!(e.validate(0, now()).is_err());
        e.source = Source::Extension;
        assert!(e.validate(0, now()).is_ok());
    }

    #[test]
    fn batch_limits() {
        let b = Batch {
            batch_id: Uuid::now_v7(),
            agent_version: "0.1.0".into(),
            events: vec![sample(); MAX_EVENTS_PER_BATCH + 1],
            dropped: None,
        };
        assert!(matches!(
            b.validate(now()),
            Err(ValidationError::TooManyEvents { .. })
        ));
        let json = serde_json::to_string(&Batch {
            events: vec![],
            ..b
        })
        .unwrap();
        assert!(!json.contains("dropped"), "absent gap is not serialized");
    }
}
