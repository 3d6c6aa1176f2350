//! Token estimates from connection metadata: byte counts and the number of TLS records
//! the server sent. Toktra never sees a payload, so every number here is an estimate,
//! and is labelled so wherever it is shown.
//!
//! Two ways to get output tokens:
//!
//! * **byte ratio** — response bytes, minus TLS and HTTP overhead, divided by the
//!   entry's `response_bytes_per_token`. Right for a plain JSON response.
//! * **record count** — a streamed response (SSE) sends one small TLS record per
//!   event, and an event carries about one token (OpenAI) or a few (Anthropic,
//!   Gemini). The count of server records, minus the handshake's and the framing
//!   events', times tokens per event of the entry's API shape.
//!
//! For a streamed response `estimate` uses the record-aware method, which takes each
//! event's envelope bytes off before applying a text ratio (see
//! [`output_tokens_streamed`]); `scripts/bench-estimate` measures all of them on a
//! captured corpus and the constants below come from that calibration.

use crate::model::{ApiShape, Entry};

/// What the flow tracker measured for one TLS-over-TCP connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowBytes {
    /// TCP payload bytes client → server over the whole connection, TLS handshake
    /// included (the `bytes_out` of Event v1).
    pub bytes_out: u64,
    /// TCP payload bytes server → client, handshake included (`bytes_in`).
    pub bytes_in: u64,
    /// TLS records of type application_data (23) from the server, TLS 1.3's encrypted
    /// handshake records included (`records_in`). `None` when the source cannot see
    /// records (QUIC, the browser extension).
    pub records_in: Option<u64>,
    /// The HTTP version, as far as the client's offered ALPN tells.
    pub http: HttpVersion,
}

/// The HTTP version of a connection as the agent can know it: the ClientHello's
/// offered ALPN (the server's choice is encrypted in TLS 1.3). A server that is
/// offered `h2` nearly always takes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum HttpVersion {
    Http1,
    Http2,
    #[default]
    Unknown,
}

impl HttpVersion {
    /// From the ALPN ids the client offered, in order.
    pub fn from_alpn<S: AsRef<str>>(offered: &[S]) -> HttpVersion {
        if offered.iter().any(|a| a.as_ref() == "h2") {
            HttpVersion::Http2
        } else if offered.iter().any(|a| a.as_ref().starts_with("http/1")) {
            HttpVersion::Http1
        } else {
            HttpVersion::Unknown
        }
    }
}

/// How the output tokens were estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputMethod {
    /// Response bytes over the entry's response ratio (a plain JSON response).
    ByteRatio,
    /// A streamed response: server records and bytes, per the API shape's framing.
    Streamed,
}

impl OutputMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputMethod::ByteRatio => "byte-ratio",
            OutputMethod::Streamed => "streamed",
        }
    }
}

/// Estimated tokens of one connection. Estimates, never exact counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEstimate {
    pub est_input_tokens: u64,
    pub est_output_tokens: u64,
    /// The response looked streamed (many small server records).
    pub streamed: bool,
    pub output_method: OutputMethod,
}

/// TLS 1.3 adds per record: a 5-byte header, the inner content type byte and a
/// 16-byte AEAD tag.
pub const TLS_RECORD_OVERHEAD: u64 = 5 + 1 + 16;

/// Client side of a TLS 1.3 handshake: ClientHello (≈ 250–1 800 bytes: curl/OpenSSL
/// small, Chromium with a post-quantum key share large), change_cipher_spec, Finished.
pub const CLIENT_HANDSHAKE_BYTES: u64 = 700;
/// Server side: ServerHello, change_cipher_spec, then EncryptedExtensions,
/// Certificate (a two-certificate ECDSA chain as the big providers serve),
/// CertificateVerify, Finished, and the session tickets sent after the handshake.
pub const SERVER_HANDSHAKE_BYTES: u64 = 3_000;
/// Server records of type application_data that are handshake, not response: the
/// encrypted handshake flight and the session tickets.
pub const SERVER_HANDSHAKE_RECORDS: u64 = 3;

/// One request's headers, plus HTTP/2's connection preface and SETTINGS exchange.
pub const REQUEST_HEADER_BYTES_H1: u64 = 420;
pub const REQUEST_HEADER_BYTES_H2: u64 = 330;
/// One response's headers; providers send many (rate limits, request ids, CDN).
pub const RESPONSE_HEADER_BYTES_H1: u64 = 800;
pub const RESPONSE_HEADER_BYTES_H2: u64 = 500;

/// Per-shape constants of a streamed response.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamProfile {
    /// Tokens of text carried by one content event, on average.
    pub tokens_per_event: f64,
    /// Records that carry no content: the response headers, start and stop events,
    /// usage and `[DONE]`.
    pub framing_records: u64,
    /// Bytes of one content event that are not the text itself: the SSE `data:` line,
    /// JSON envelope, and the HTTP framing (chunk size or HTTP/2 DATA frame header).
    pub event_envelope_bytes: f64,
    /// Bytes of text per token inside the events (JSON-escaped).
    pub text_bytes_per_token: f64,
}

/// The streaming profile of an API shape.
pub fn stream_profile(shape: ApiShape) -> StreamProfile {
    match shape {
        ApiShape::OpenAi => StreamProfile {
            tokens_per_event: 1.0,
            framing_records: 4,
            event_envelope_bytes: 230.0,
            text_bytes_per_token: 4.0,
        },
        ApiShape::Anthropic => StreamProfile {
            tokens_per_event: 3.0,
            framing_records: 7,
            event_envelope_bytes: 130.0,
            text_bytes_per_token: 4.0,
        },
        ApiShape::Gemini => StreamProfile {
            tokens_per_event: 25.0,
            framing_records: 2,
            event_envelope_bytes: 330.0,
            text_bytes_per_token: 4.0,
        },
        ApiShape::Other => StreamProfile {
            tokens_per_event: 1.0,
            framing_records: 4,
            event_envelope_bytes: 200.0,
            text_bytes_per_token: 4.0,
        },
    }
}

fn request_header_bytes(http: HttpVersion) -> u64 {
    match http {
        HttpVersion::Http1 => REQUEST_HEADER_BYTES_H1,
        HttpVersion::Http2 => REQUEST_HEADER_BYTES_H2,
        HttpVersion::Unknown => (REQUEST_HEADER_BYTES_H1 + REQUEST_HEADER_BYTES_H2) / 2,
    }
}

fn response_header_bytes(http: HttpVersion) -> u64 {
    match http {
        HttpVersion::Http1 => RESPONSE_HEADER_BYTES_H1,
        HttpVersion::Http2 => RESPONSE_HEADER_BYTES_H2,
        HttpVersion::Unknown => (RESPONSE_HEADER_BYTES_H1 + RESPONSE_HEADER_BYTES_H2) / 2,
    }
}

fn tokens(bytes: f64, per_token: f64) -> u64 {
    if !(bytes.is_finite() && per_token.is_finite()) || bytes <= 0.0 || per_token <= 0.0 {
        return 0;
    }
    // `as` saturates for floats; the value is finite and positive here.
    (bytes / per_token).round() as u64
}

/// Request body bytes: what is left of `bytes_out` after the handshake, TLS record
/// overhead (client records are not counted, so one per 16 KiB is assumed) and one
/// request's headers.
pub fn request_body_bytes(flow: &FlowBytes) -> u64 {
    let after_handshake = flow.bytes_out.saturating_sub(CLIENT_HANDSHAKE_BYTES);
    let records = after_handshake.div_ceil(16 * 1024).max(1);
    after_handshake
        .saturating_sub(records * TLS_RECORD_OVERHEAD)
        .saturating_sub(request_header_bytes(flow.http))
}

/// Response bytes after the handshake and the TLS overhead of every server record,
/// headers included.
fn response_payload_bytes(flow: &FlowBytes) -> u64 {
    let after_handshake = flow.bytes_in.saturating_sub(SERVER_HANDSHAKE_BYTES);
    let records = match flow.records_in {
        Some(r) => r.saturating_sub(SERVER_HANDSHAKE_RECORDS),
        None => after_handshake.div_ceil(16 * 1024).max(1),
    };
    after_handshake.saturating_sub(records * TLS_RECORD_OVERHEAD)
}

/// Response body bytes (headers off).
pub fn response_body_bytes(flow: &FlowBytes) -> u64 {
    response_payload_bytes(flow).saturating_sub(response_header_bytes(flow.http))
}

/// Input tokens by the entry's request ratio.
pub fn input_tokens_by_bytes(entry: &Entry, flow: &FlowBytes) -> u64 {
    tokens(
        request_body_bytes(flow) as f64,
        entry.request_bytes_per_token,
    )
}

/// Output tokens by the entry's response ratio, as if the body were plain JSON.
pub fn output_tokens_by_bytes(entry: &Entry, flow: &FlowBytes) -> u64 {
    tokens(
        response_body_bytes(flow) as f64,
        entry.response_bytes_per_token,
    )
}

/// Server records that carry response content (handshake and framing records off).
fn content_records(shape: ApiShape, flow: &FlowBytes) -> Option<u64> {
    let profile = stream_profile(shape);
    Some(
        flow.records_in?
            .saturating_sub(SERVER_HANDSHAKE_RECORDS)
            .saturating_sub(profile.framing_records),
    )
}

/// Output tokens by counting server records: content records × tokens per event.
/// `None` when the source did not count records.
pub fn output_tokens_by_records(entry: &Entry, flow: &FlowBytes) -> Option<u64> {
    let profile = stream_profile(entry.api_shape);
    let events = content_records(entry.api_shape, flow)?;
    Some(tokens(events as f64 * profile.tokens_per_event, 1.0))
}

/// Output tokens of a streamed response: the body bytes with each content event's
/// envelope taken off, over the text ratio. Uses the record count for the number of
/// events, so it holds whether an event carries one token or forty.
pub fn output_tokens_streamed(entry: &Entry, flow: &FlowBytes) -> Option<u64> {
    let profile = stream_profile(entry.api_shape);
    let events = content_records(entry.api_shape, flow)?;
    let body = response_body_bytes(flow) as f64;
    let text = body - events as f64 * profile.event_envelope_bytes;
    Some(tokens(text, profile.text_bytes_per_token).max(events))
}

/// Whether the server's records look like a stream: many records, small on average.
/// A plain JSON response fills records up to 16 KiB, so even a large one has few.
pub fn looks_streamed(flow: &FlowBytes) -> bool {
    let Some(records) = flow.records_in else {
        return false;
    };
    let content = records.saturating_sub(SERVER_HANDSHAKE_RECORDS + 1);
    if content < STREAM_MIN_RECORDS {
        return false;
    }
    response_payload_bytes(flow) / content < STREAM_MAX_MEAN_RECORD
}

/// A stream has at least this many records after the handshake and headers.
pub const STREAM_MIN_RECORDS: u64 = 6;
/// ... and its records average fewer bytes than this.
pub const STREAM_MAX_MEAN_RECORD: u64 = 2_048;

/// Estimates one connection's input and output tokens, assuming it carried one
/// request (the usual case for API calls; a kept-alive connection carrying several
/// is over-counted by one request's headers each).
pub fn estimate(entry: &Entry, flow: &FlowBytes) -> TokenEstimate {
    let est_input_tokens = input_tokens_by_bytes(entry, flow);
    let streamed = looks_streamed(flow);
    let streamed_tokens = if streamed {
        output_tokens_streamed(entry, flow)
    } else {
        None
    };
    match streamed_tokens {
        Some(est_output_tokens) => TokenEstimate {
            est_input_tokens,
            est_output_tokens,
            streamed,
            output_method: OutputMethod::Streamed,
        },
        None => TokenEstimate {
            est_input_tokens,
            est_output_tokens: output_tokens_by_bytes(entry, flow),
            streamed,
            output_method: OutputMethod::ByteRatio,
        },
    }
}
