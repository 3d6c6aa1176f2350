//! Native messaging (Edge and Chrome) as the host sees it: every message is a 32-bit
//! length in native byte order followed by that many bytes of UTF-8 JSON. Messages
//! to the host and from it are limited to 1 MiB here (Chrome's limit for what a host
//! sends; we hold the browser to the same). Nothing from the browser is trusted: the
//! frame, the JSON and every field are checked before an event is built.

use std::io::{self, Read, Write};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toktra_proto::{FlowEvent, Source, Transport};
use uuid::Uuid;

pub const MAX_MESSAGE: usize = 1024 * 1024;
/// Events in one `events` message.
pub const MAX_EVENTS_PER_MESSAGE: usize = 100;
const MAX_PATH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    #[error("empty message")]
    Empty,
    #[error("stream ended inside a message ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads one message; Ok(None) at a clean end of input (the browser closed the port).
pub fn read_message(input: &mut impl Read) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated { got, want: 4 }),
            n => got += n,
        }
    }
    let want = u32::from_ne_bytes(len) as usize;
    if want == 0 {
        return Err(FrameError::Empty);
    }
    if want > MAX_MESSAGE {
        return Err(FrameError::TooLarge(want));
    }
    let mut buf = Vec::with_capacity(want);
    input.take(want as u64).read_to_end(&mut buf)?;
    if buf.len() != want {
        return Err(FrameError::Truncated {
            got: buf.len(),
            want,
        });
    }
    Ok(Some(buf))
}

pub fn write_message(out: &mut impl Write, body: &[u8]) -> Result<(), FrameError> {
    if body.len() > MAX_MESSAGE {
        return Err(FrameError::TooLarge(body.len()));
    }
    out.write_all(&(body.len() as u32).to_ne_bytes())?;
    out.write_all(body)?;
    out.flush()?;
    Ok(())
}

/// What the extension may send.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Incoming {
    /// Liveness and version check.
    Ping,
    /// The budget status, for the extension's badge.
    Budget,
    /// One observed LLM request.
    Event { event: ExtensionEvent },
    /// Several, at most [`MAX_EVENTS_PER_MESSAGE`].
    Events { events: Vec<ExtensionEvent> },
}

/// One request the extension observed with webRequest: sizes and timing only, never
/// bodies, headers or query strings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionEvent {
    /// The extension's id for the request, kept across retries so the server counts
    /// it once. A fresh one is made if absent.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// Request host (e.g. api.openai.com).
    pub host: String,
    /// Request path, without query string.
    pub path: String,
    /// Host of the page that made the request.
    #[serde(default)]
    pub source_domain: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    #[serde(default)]
    pub streaming: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("not a valid extension message: {0}")]
    Json(String),
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("at most {MAX_EVENTS_PER_MESSAGE} events per message, got {0}")]
    TooManyEvents(usize),
}

fn is_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

pub fn parse_incoming(body: &[u8]) -> Result<Incoming, SchemaError> {
    serde_json::from_slice(body).map_err(|e| SchemaError::Json(e.to_string()))
}

impl ExtensionEvent {
    /// The Event v1 for this request, after checking every field. `user` is the
    /// account the host runs as (the browser's user).
    pub fn to_flow_event(
        &self,
        index: usize,
        user: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<FlowEvent, SchemaError> {
        let bad = |field: &str, reason: &str| SchemaError::Field {
            field: format!("events[{index}].{field}"),
            reason: reason.to_owned(),
        };
        let host = self.host.to_ascii_lowercase();
        if !is_hostname(&host) {
            return Err(bad("host", "must be a DNS host name"));
        }
        if !self.path.starts_with('/') || self.path.len() > MAX_PATH {
            return Err(bad("path", "must start with / and be at most 1024 bytes"));
        }
        if self.path.contains(['?', '#']) || self.path.chars().any(char::is_control) {
            return Err(bad(
                "path",
                "must not carry a query string, fragment or control characters",
            ));
        }
        let source_domain = match &self.source_domain {
            Some(d) if !is_hostname(&d.to_ascii_lowercase()) => {
                return Err(bad("source_domain", "must be a DNS host name"));
            }
            other => other.as_ref().map(|d| d.to_ascii_lowercase()),
        };
        let event = FlowEvent {
            event_id: self.id.unwrap_or_else(Uuid::now_v7),
            source: Source::Extension,
            started_at: self.started_at,
            duration_ms: self.duration_ms,
            transport: Transport::Http,
            sni: Some(host),
            alpn: Vec::new(),
            ja4: None,
            ech: false,
            provider: None,
            product: None,
            category: None,
            bytes_out: self.request_bytes,
            bytes_in: self.response_bytes,
            records_in: None,
            est_input_tokens: 0,
            est_output_tokens: 0,
            user: user.map(str::to_owned),
            process: None,
            dst_ip: None,
            dst_port: None,
            endpoint: Some(self.path.clone()),
            source_domain,
            streaming: Some(self.streaming),
        };
        // The shared bounds (clock skew, duration, lengths) of Event v1.
        event.validate(index, now).map_err(|e| match e {
            toktra_proto::ValidationError::Event { field, reason, .. } => bad(field, &reason),
            other => bad("event", &other.to_string()),
        })?;
        Ok(event)
    }
}

/// All events of a message, or the first problem.
pub fn events_of(
    msg: &Incoming,
    user: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<FlowEvent>, SchemaError> {
    let list: &[ExtensionEvent] = match msg {
        Incoming::Event { event } => std::slice::from_ref(event),
        Incoming::Events { events } => events,
        _ => &[],
    };
    if list.len() > MAX_EVENTS_PER_MESSAGE {
        return Err(SchemaError::TooManyEvents(list.len()));
    }
    list.iter()
        .enumerate()
        .map(|(i, e)| e.to_flow_event(i, user, now))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_ne_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn framing_round_trip_and_limits() {
        let mut out = Vec::new();
        write_message(&mut out, br#"{"type":"ping"}"#).unwrap();
        let mut rd = &out[..];
        assert_eq!(
            read_message(&mut rd).unwrap().unwrap(),
            br#"{"type":"ping"}"#
        );
        assert!(read_message(&mut rd).unwrap().is_none());

        let huge = ((MAX_MESSAGE + 1) as u32).to_ne_bytes();
        assert!(matches!(
            read_message(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
        let at_limit = vec![b' '; MAX_MESSAGE];
        assert_eq!(
            read_message(&mut &frame(&at_limit)[..])
                .unwrap()
                .unwrap()
                .len(),
            MAX_MESSAGE
        );
        assert!(matches!(
            read_message(&mut &[0u8, 0, 0, 0][..]),
            Err(FrameError::Empty)
        ));
        let mut short = frame(b"{}");
        short.pop();
        assert!(matches!(
            read_message(&mut &short[..]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            read_message(&mut &[1u8, 0][..]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            write_message(&mut Vec::new(), &vec![0; MAX_MESSAGE + 1]),
            Err(FrameError::TooLarge(_))
        ));
    }

    fn event_json(extra: &str) -> String {
        format!(
            r#"{{"type":"event","event":{{"host":"API.OpenAI.com","path":"/v1/chat/completions","source_domain":"chat.example.com","started_at":"2026-11-26T06:00:00Z","duration_ms":1500,"request_bytes":800,"response_bytes":12000,"streaming":true{extra}}}}}"#
        )
    }

    fn now() -> DateTime<Utc> {
        "2026-11-26T07:00:00Z".parse().unwrap()
    }

    #[test]
    fn valid_event_becomes_an_extension_http_flow_event() {
        let msg = parse_incoming(event_json("").as_bytes()).unwrap();
        let ev = events_of(&msg, Some(r"ACME\jsmith"), now())
            .unwrap()
            .remove(0);
        assert_eq!(ev.source, Source::Extension);
        assert_eq!(ev.transport, Transport::Http);
        assert_eq!(ev.sni.as_deref(), Some("api.openai.com"));
        assert_eq!(ev.endpoint.as_deref(), Some("/v1/chat/completions"));
        assert_eq!(ev.streaming, Some(true));
        assert_eq!((ev.bytes_out, ev.bytes_in), (800, 12000));
        assert_eq!(ev.user.as_deref(), Some(r"ACME\jsmith"));
    }

    #[test]
    fn hostile_input_is_refused_with_the_field_named() {
        for (json, field) in [
            (event_json(r#","cookie":"x""#), "unknown field"),
            (
                event_json("").replace("/v1/chat/completions", "/v1/x?key=secret"),
                "path",
            ),
            (
                event_json("").replace("API.OpenAI.com", "evil host"),
                "host",
            ),
            (
                event_json("").replace("chat.example.com", "a/b"),
                "source_domain",
            ),
            (
                event_json("").replace("2026-11-26T06:00:00Z", "2027-01-01T00:00:00Z"),
                "started_at",
            ),
            (event_json("").replace("1500", "-1"), "invalid value"),
            (
                r#"{"type":"set_config","x":1}"#.to_owned(),
                "unknown variant",
            ),
            ("[1,2]".to_owned(), "extension message"),
        ] {
            let err = parse_incoming(json.as_bytes())
                .and_then(|m| events_of(&m, None, now()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
        let one = r#"{"host":"api.openai.com","path":"/","started_at":"2026-11-26T06:00:00Z","duration_ms":1,"request_bytes":1,"response_bytes":1}"#.to_owned();
        let many = format!(
            r#"{{"type":"events","events":[{}]}}"#,
            vec![one; MAX_EVENTS_PER_MESSAGE + 1].join(",")
        );
        let msg = parse_incoming(many.as_bytes()).unwrap();
        assert_eq!(
            events_of(&msg, None, now()),
            Err(SchemaError::TooManyEvents(MAX_EVENTS_PER_MESSAGE + 1))
        );
    }
}
