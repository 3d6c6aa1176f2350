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
//! For a streamed response `estimate` combines both (see [`output_tokens_streamed`]):
//! it works out how many events the stream had, takes their envelopes off the body
//! and applies the text ratio. `scripts/bench-estimate` measures all of them on a
//! captured corpus; the transport constants below and each API shape's profile (the
//! catalog's `[shape.*]` tables) come from that calibration.

use crate::model::{Entry, ShapeProfile};

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
    /// The handshake and framing as the flow tracker measured them on this
    /// connection; what it could not measure falls back to the constants below.
    pub overhead: FlowOverhead,
}

/// What the flow tracker measured of one connection's protocol overhead. With these
/// the estimate does not depend on one server's certificate chain (public chains run
/// from about 2.5 kB to over 6 kB) nor on TCP; each `None` falls back to a constant
/// calibrated on the corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowOverhead {
    /// Client bytes of the handshake: TCP, everything up to and including the
    /// ClientHello, plus the change_cipher_spec and Finished records of its second
    /// flight; QUIC, every long-header packet before its first 1-RTT packet.
    pub client_handshake_bytes: Option<u64>,
    /// Server bytes before the client's second flight (TCP) or first 1-RTT packet
    /// (QUIC): ServerHello, certificate chain, CertificateVerify, Finished.
    pub server_handshake_bytes: Option<u64>,
    /// TCP: the server's application_data records among those bytes (TLS 1.3's
    /// encrypted handshake: one record in all from some stacks, one per message from
    /// others, such as OpenSSL).
    pub server_handshake_records: Option<u64>,
    /// QUIC: datagrams after the handshake, each way. Each carries a short header,
    /// an AEAD tag and frame headers that are not HTTP bytes.
    pub quic_packets_out: Option<u64>,
    pub quic_packets_in: Option<u64>,
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

/// Fallback when the tracker did not measure the handshake. Client side of a TLS 1.3
/// handshake: ClientHello (≈ 250–1 800 bytes: curl/OpenSSL
/// about 520, Chromium with a post-quantum key share larger), change_cipher_spec,
/// Finished.
pub const CLIENT_HANDSHAKE_BYTES: u64 = 600;
/// Fallback, server side: ServerHello, change_cipher_spec, the encrypted flight
/// (EncryptedExtensions, a two-certificate ECDSA chain of public-CA size,
/// CertificateVerify, Finished) and the session tickets. Measured 2 950 on the corpus.
pub const SERVER_HANDSHAKE_BYTES: u64 = 2_950;
/// Server application_data records that are not the response: the encrypted flight,
/// the tickets, the response headers and, for HTTP/2, SETTINGS, or for HTTP/1.1
/// chunked streams, the last chunk. Measured: 5 (HTTP/1.1), 6 (HTTP/2) around a
/// stream; a plain response adds one record to 3 (HTTP/1.1) or 4 (HTTP/2).
pub const SERVER_OVERHEAD_RECORDS_H1: u64 = 5;
pub const SERVER_OVERHEAD_RECORDS_H2: u64 = 6;
const PLAIN_RECORDS_H1: u64 = 4;
const PLAIN_RECORDS_H2: u64 = 5;
/// Transfer framing per streamed event: an HTTP/1.1 chunk header and CRLF, or an
/// HTTP/2 DATA frame header.
pub const EVENT_TRANSFER_BYTES_H1: u64 = 7;
pub const EVENT_TRANSFER_BYTES_H2: u64 = 9;

/// Picks the HTTP/1.1 or HTTP/2 value; the mean when the version is unknown.
fn by_http(http: HttpVersion, (h1, h2): (u64, u64)) -> u64 {
    match http {
        HttpVersion::Http1 => h1,
        HttpVersion::Http2 => h2,
        HttpVersion::Unknown => (h1 + h2) / 2,
    }
}

fn tokens(bytes: f64, per_token: f64) -> u64 {
    if !(bytes.is_finite() && per_token.is_finite()) || bytes <= 0.0 || per_token <= 0.0 {
        return 0;
    }
    // `as` saturates for floats; the value is finite and positive here.
    (bytes / per_token).round() as u64
}

/// What the corpus server (rustls) sends after the client's Finished that is not the
/// response: two TLS 1.3 session tickets. Added to a measured server handshake, so
/// that the measured and the fallback paths agree on the corpus: with them, the
/// measured flight plus this is [`SERVER_HANDSHAKE_BYTES`] on the corpus's original
/// two-certificate chain. Most stacks send one or two tickets of this size.
pub const SERVER_TICKET_BYTES: u64 = 182;
/// The application_data records of the corpus server's handshake flight as the
/// tracker counts them (see [`FlowOverhead::server_handshake_records`]); part of
/// [`SERVER_OVERHEAD_RECORDS_H1`]/[`SERVER_OVERHEAD_RECORDS_H2`]. A measured count
/// replaces it, so a server that writes one record per handshake message does not
/// turn its flight into "events" of a stream.
pub const SERVER_HANDSHAKE_RECORDS: u64 = 1;

/// Bytes every QUIC 1-RTT datagram spends on QUIC itself, as the tracker counts
/// datagrams after the handshake:
///
/// * the short header (RFC 9000 §17.3.1): 1 flags byte, the destination connection
///   ID (0–20 bytes; 8 is what Chromium, Google's, Cloudflare's and aioquic's stacks
///   choose — the tracker does not carry the actual length) and a 1–4 byte packet
///   number (2 for a connection's first tens of thousands of packets, §17.1): 11;
/// * the AEAD tag (RFC 9001 §5.3, AES-128-GCM and ChaCha20-Poly1305): 16;
/// * an ACK frame, which nearly every packet carries (§19.3: type, largest
///   acknowledged, delay, range count, first range: 5–8 bytes): 6.
///
/// A pure acknowledgement is exactly this: 33 bytes on aioquic's capture.
pub const QUIC_PACKET_OVERHEAD: u64 = 11 + 16 + 6;
/// More per datagram that carries HTTP bytes: a STREAM frame header (§19.8: type,
/// stream ID, offset, length: 5) and an HTTP/3 DATA frame header (RFC 9114 §7.2.1:
/// type and length: 2). Server datagrams of a response are nearly all such; the
/// client's are mostly acknowledgements, plus its request in datagrams of about
/// [`QUIC_DATAGRAM_PAYLOAD`] bytes.
pub const QUIC_STREAM_OVERHEAD: u64 = 5 + 2;
/// A full 1-RTT datagram's payload: QUIC's 1 200-byte minimum (§14) up to the
/// 1 350 or so most stacks send on a 1 500-byte path.
pub const QUIC_DATAGRAM_PAYLOAD: u64 = 1_200;
/// Fallback handshake sizes for QUIC, where every client Initial is padded to at
/// least 1 200 bytes (RFC 9000 §14.1) and a client sends two or three of them.
pub const QUIC_CLIENT_HANDSHAKE_BYTES: u64 = 2 * 1_200;
pub const QUIC_SERVER_HANDSHAKE_BYTES: u64 = 4_500;
/// What a QUIC server sends after the handshake that is not the response, beyond
/// its datagrams' overhead: HANDSHAKE_DONE, NEW_TOKEN, NEW_CONNECTION_ID and
/// session tickets in 1-RTT CRYPTO frames, and HTTP/3's control and QPACK streams.
/// On aioquic (toktra-agent's tests/data/h3-aioquic.pcap) they fill its first
/// 1-RTT datagram: 232 bytes, 40 of them counted as the datagram's overhead.
pub const QUIC_SERVER_AFTER_HANDSHAKE_BYTES: u64 = 192;

impl FlowBytes {
    fn is_quic(&self) -> bool {
        self.overhead.quic_packets_out.is_some() || self.overhead.quic_packets_in.is_some()
    }

    /// Client bytes that are not the request: the handshake, measured where the
    /// tracker could.
    fn client_handshake(&self) -> u64 {
        match (self.overhead.client_handshake_bytes, self.is_quic()) {
            (Some(b), _) => b,
            (None, false) => CLIENT_HANDSHAKE_BYTES,
            (None, true) => QUIC_CLIENT_HANDSHAKE_BYTES,
        }
    }

    /// Server bytes that are not the response: the handshake flight and what
    /// follows it (tickets and the like).
    fn server_handshake(&self) -> u64 {
        match (self.overhead.server_handshake_bytes, self.is_quic()) {
            (Some(b), false) => b + SERVER_TICKET_BYTES,
            (Some(b), true) => b + QUIC_SERVER_AFTER_HANDSHAKE_BYTES,
            (None, false) => SERVER_HANDSHAKE_BYTES,
            (None, true) => QUIC_SERVER_HANDSHAKE_BYTES + QUIC_SERVER_AFTER_HANDSHAKE_BYTES,
        }
    }

    /// Server records whose overhead is not in the handshake bytes: a measured
    /// flight's own records are, so they are swapped for the corpus's count, which
    /// the calibration made part of the constants.
    fn records_after_handshake(&self, records: u64) -> u64 {
        match self.overhead.server_handshake_records {
            Some(measured) => (records + SERVER_HANDSHAKE_RECORDS).saturating_sub(measured),
            None => records,
        }
    }

    /// How many more (or fewer) handshake records this server sent than the
    /// corpus server, whose count is part of the record constants.
    fn extra_handshake_records(&self, constant: u64) -> u64 {
        let measured = self
            .overhead
            .server_handshake_records
            .unwrap_or(SERVER_HANDSHAKE_RECORDS);
        (constant + measured).saturating_sub(SERVER_HANDSHAKE_RECORDS)
    }
}

/// Request body bytes: `bytes_out` less the handshake, the per-record (TLS: client
/// records are not counted; one per 16 KiB is assumed) or per-datagram (QUIC)
/// overhead and the request headers.
pub fn request_body_bytes(entry: &Entry, flow: &FlowBytes) -> u64 {
    let after_handshake = flow.bytes_out.saturating_sub(flow.client_handshake());
    let framing = match flow.overhead.quic_packets_out {
        Some(packets) => {
            let past_acks = after_handshake.saturating_sub(packets * QUIC_PACKET_OVERHEAD);
            packets * QUIC_PACKET_OVERHEAD
                + past_acks.div_ceil(QUIC_DATAGRAM_PAYLOAD) * QUIC_STREAM_OVERHEAD
        }
        None => after_handshake.div_ceil(16 * 1024).max(1) * TLS_RECORD_OVERHEAD,
    };
    after_handshake
        .saturating_sub(framing)
        .saturating_sub(by_http(flow.http, entry.profile.request_header_bytes))
}

/// Response bytes after the handshake, the TLS overhead of every server record (or
/// QUIC's of every datagram) and the response headers: the HTTP body with its
/// transfer framing.
pub fn response_body_bytes(entry: &Entry, flow: &FlowBytes) -> u64 {
    let after_handshake = flow.bytes_in.saturating_sub(flow.server_handshake());
    let framing = match (flow.overhead.quic_packets_in, flow.records_in) {
        (Some(packets), _) => packets * (QUIC_PACKET_OVERHEAD + QUIC_STREAM_OVERHEAD),
        (None, Some(records)) => flow.records_after_handshake(records) * TLS_RECORD_OVERHEAD,
        (None, None) => (after_handshake.div_ceil(16 * 1024).max(1) + 3) * TLS_RECORD_OVERHEAD,
    };
    after_handshake
        .saturating_sub(framing)
        .saturating_sub(by_http(flow.http, entry.profile.response_header_bytes))
}

/// Input tokens: request body bytes over the entry's request ratio.
pub fn input_tokens_by_bytes(entry: &Entry, flow: &FlowBytes) -> u64 {
    tokens(
        request_body_bytes(entry, flow) as f64,
        entry.request_bytes_per_token,
    )
}

/// Output tokens of a plain JSON response: body bytes less the shape's JSON envelope,
/// over the entry's response (text) ratio.
pub fn output_tokens_by_bytes(entry: &Entry, flow: &FlowBytes) -> u64 {
    let text = response_body_bytes(entry, flow).saturating_sub(entry.profile.plain_envelope_bytes);
    tokens(text as f64, entry.response_bytes_per_token)
}

/// Server records that carry answer text: all but the overhead and framing records.
fn content_records(profile: &ShapeProfile, flow: &FlowBytes) -> Option<u64> {
    let overhead = flow.extra_handshake_records(by_http(
        flow.http,
        (SERVER_OVERHEAD_RECORDS_H1, SERVER_OVERHEAD_RECORDS_H2),
    )) + profile.stream_framing_records;
    Some(flow.records_in?.saturating_sub(overhead))
}

/// Output tokens of a streamed response by counting records alone: content records ×
/// the shape's tokens per event. `None` when the source did not count records.
pub fn output_tokens_by_records(entry: &Entry, flow: &FlowBytes) -> Option<u64> {
    let events = content_records(&entry.profile, flow)?;
    Some(tokens(events as f64 * entry.profile.tokens_per_event, 1.0))
}

/// Output tokens of a streamed response from records and bytes together.
///
/// The body of a stream is `events × envelope + text`. Knowing how many content
/// events there were turns the body into text bytes, and text bytes over the
/// entry's ratio into tokens. The events are counted two ways, blended by the
/// shape's `events_from_records`:
///
/// * from the bytes: `body / (envelope + tokens_per_event × bytes_per_token)`. Exact
///   where every event carries the same few tokens under a large envelope (OpenAI:
///   one token under ~300 bytes), where one record more or less, or an envelope off
///   by one byte, would move a bytes-minus-records estimate by a quarter;
/// * from the records: one record per event, as servers flush each SSE event. Right
///   where events are few, large and uneven (Gemini), where no average holds.
///
/// `None` when the source did not count records.
pub fn output_tokens_streamed(entry: &Entry, flow: &FlowBytes) -> Option<u64> {
    let profile = &entry.profile;
    let by_records = content_records(profile, flow)? as f64;
    let per_event = (profile.event_envelope_bytes
        + by_http(
            flow.http,
            (EVENT_TRANSFER_BYTES_H1, EVENT_TRANSFER_BYTES_H2),
        )) as f64;
    let body = response_body_bytes(entry, flow).saturating_sub(profile.stream_framing_bytes) as f64;
    let ratio = entry.response_bytes_per_token;
    let by_bytes = body / (per_event + profile.tokens_per_event * ratio);
    let w = profile.events_from_records.clamp(0.0, 1.0);
    let events = w * by_records + (1.0 - w) * by_bytes;
    let text = (body - events * per_event).max(0.0);
    // Every content event carries at least one token.
    Some(tokens(text, ratio).max(events.round() as u64))
}

/// Whether the server's records look like a stream: more records than a plain
/// response has, and small on average (a plain body fills records up to 16 KiB).
pub fn looks_streamed(flow: &FlowBytes) -> bool {
    let Some(records) = flow.records_in else {
        return false;
    };
    let plain =
        flow.extra_handshake_records(by_http(flow.http, (PLAIN_RECORDS_H1, PLAIN_RECORDS_H2)));
    if records < plain + STREAM_MIN_EXTRA_RECORDS {
        return false;
    }
    let payload = flow.bytes_in.saturating_sub(flow.server_handshake());
    payload / records < STREAM_MAX_MEAN_RECORD
}

/// A stream has at least this many records more than a plain response ...
pub const STREAM_MIN_EXTRA_RECORDS: u64 = 2;
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
