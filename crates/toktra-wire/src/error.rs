//! The one error type of the TLS, JA4 and QUIC parts of this crate.
//!
//! Every variant carries enough context (byte offsets, lengths, the offending value)
//! for a person reading a log line to find the bad byte in a hex dump.

/// What went wrong while reading a ClientHello, a TLS record or a QUIC packet.
///
/// Offsets (`at`) are relative to the start of the slice handed to the failing
/// function (a record, a handshake message, a QUIC packet), unless a variant says
/// otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ended before a field did.
    #[error("input truncated: {needed} more byte(s) needed at offset {at}")]
    Truncated {
        /// How many bytes the field still needs.
        needed: usize,
        /// Where the field starts.
        at: usize,
    },
    /// A length prefix does not fit its container, or a list length is not a
    /// multiple of its element size.
    #[error(
        "bad length in {field} at offset {at}: {length} byte(s) declared, {available} available or not a whole number of elements"
    )]
    BadLength {
        /// The field whose length is wrong (for example `"cipher_suites"`).
        field: &'static str,
        /// Where its length prefix starts.
        at: usize,
        /// The declared length.
        length: usize,
        /// The bytes its container actually has.
        available: usize,
    },
    /// A TLS record whose content type is not handshake (22): the stream does not
    /// start with a ClientHello.
    #[error("not a TLS handshake record: content type {content_type} (expected 22)")]
    NotHandshake {
        /// The record's content type byte.
        content_type: u8,
    },
    /// A TLS record whose version major byte is not 3: not TLS.
    #[error("not a TLS record: record version {version:#06x}")]
    NotTls {
        /// The record-layer version field.
        version: u16,
    },
    /// A TLS record longer than RFC 8446 allows (2^14 + 256 bytes).
    #[error("TLS record length {length} exceeds the maximum of 16640")]
    RecordTooLong {
        /// The record's declared length.
        length: usize,
    },
    /// The first handshake message is not a ClientHello (type 1).
    #[error("first handshake message is type {handshake_type}, not ClientHello (1)")]
    NotClientHello {
        /// The handshake message type byte.
        handshake_type: u8,
    },
    /// The ClientHello (or the TLS stream carrying it) does not fit the fixed
    /// reassembly buffer.
    #[error("ClientHello needs {length} bytes of buffer, more than the {capacity} available")]
    HelloTooLarge {
        /// Bytes needed.
        length: usize,
        /// Bytes of buffer.
        capacity: usize,
    },
    /// Stream data arrived with more separate holes than the assembler tracks.
    #[error("stream too fragmented: more than {max_ranges} separate out-of-order ranges")]
    TooFragmented {
        /// How many disjoint ranges the assembler can hold.
        max_ranges: usize,
    },
    /// The same extension type appears twice (RFC 8446 4.2 forbids it).
    #[error("extension {extension_type:#06x} appears twice (second at offset {at})")]
    DuplicateExtension {
        /// The repeated extension type.
        extension_type: u16,
        /// Where the second copy starts.
        at: usize,
    },
    /// A server_name extension entry that is not well formed.
    #[error("malformed server_name extension at offset {at}")]
    BadServerName {
        /// Where the offending entry starts.
        at: usize,
    },
    /// An ALPN protocol id of length zero (RFC 7301 forbids empty ids).
    #[error("empty ALPN protocol id at offset {at}")]
    EmptyAlpn {
        /// Where the empty id starts.
        at: usize,
    },
    /// Bytes left over after the last field of a structure.
    #[error("{count} trailing byte(s) after {field} at offset {at}")]
    TrailingBytes {
        /// The structure that should have ended.
        field: &'static str,
        /// Where the leftover bytes begin.
        at: usize,
        /// How many bytes are left over.
        count: usize,
    },
    /// A QUIC packet with a short header (1-RTT): it cannot be an Initial.
    #[error("QUIC short-header packet: not an Initial")]
    QuicShortHeader,
    /// A QUIC long header whose fixed bit is 0.
    #[error("QUIC fixed bit is zero: not a QUIC packet")]
    QuicFixedBitZero,
    /// A QUIC version this crate cannot decrypt (only v1 and v2 are supported).
    #[error("unsupported QUIC version {version:#010x} (supported: 0x00000001, 0x6b3343cf)")]
    QuicUnsupportedVersion {
        /// The version field of the long header.
        version: u32,
    },
    /// A QUIC long-header packet that is not an Initial (0-RTT, Handshake, Retry).
    #[error("QUIC long-header packet type {packet_type} is not an Initial")]
    QuicNotInitial {
        /// The two type bits, as written on the wire.
        packet_type: u8,
    },
    /// A connection id longer than 20 bytes (RFC 9000 17.2).
    #[error("QUIC connection id of {length} bytes at offset {at} exceeds 20")]
    QuicConnectionIdTooLong {
        /// The declared connection id length.
        length: usize,
        /// Where its length byte is.
        at: usize,
    },
    /// AEAD authentication failed: wrong keys, a corrupted packet, or not a client
    /// Initial.
    #[error("QUIC Initial failed authentication (corrupted, or not a client Initial)")]
    QuicDecryptFailed,
    /// A frame type that may not appear in an Initial packet (RFC 9000 12.4); the
    /// rest of that packet's payload is not read.
    #[error("frame type {frame_type:#x} at offset {at} is not allowed in an Initial packet")]
    QuicUnexpectedFrame {
        /// The frame type.
        frame_type: u64,
        /// Where the frame starts in the decrypted payload.
        at: usize,
    },
    /// A caller-provided output buffer is too small.
    #[error("buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes provided.
        available: usize,
    },
}
