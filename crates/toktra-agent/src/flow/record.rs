//! The one record the flow tracker emits per TLS or QUIC connection.

use std::net::SocketAddr;
use std::time::Duration;

/// How the connection travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowTransport {
    Tcp,
    Quic,
}

impl FlowTransport {
    /// The Event v1 spelling: `tcp` or `quic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
        }
    }
}

/// Why a flow's record was emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEnd {
    /// Both sides sent FIN.
    Fin,
    /// A side sent RST.
    Reset,
    /// No packet for longer than the idle timeout.
    Idle,
    /// The same 5-tuple started a new connection (a fresh SYN).
    Reused,
    /// The capture ended ([`super::FlowTracker::finish`]).
    CaptureEnd,
}

/// One connection that carried a ClientHello (TCP) or a QUIC Initial ClientHello.
/// Byte counts are transport payload bytes as seen on the wire (TCP retransmissions
/// included); packet counts include pure ACKs and handshake packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub transport: FlowTransport,
    /// The side that sent the SYN, or else the ClientHello / first Initial.
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Timestamp of the flow's first packet, since the Unix epoch.
    pub first_ts: Duration,
    /// Timestamp of the flow's last packet, since the Unix epoch.
    pub last_ts: Duration,
    /// The server_name as sent (lossily decoded if not UTF-8); `None` if absent.
    pub sni: Option<String>,
    /// Offered ALPN ids in the client's order.
    pub alpn: Vec<String>,
    /// JA4 fingerprint of the ClientHello.
    pub ja4: String,
    /// The client offered Encrypted Client Hello: `sni` is then the outer name.
    pub ech: bool,
    /// Highest TLS version offered (supported_versions, else legacy_version).
    pub tls_version: u16,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub packets_in: u64,
    /// TLS application-data records (content type 23) the server sent, counted from
    /// record headers. `None` for QUIC, and for TCP when a gap in the server's stream
    /// made the count unreliable.
    pub records_in: Option<u64>,
    /// The handshake as measured on this connection (bytes each way before the
    /// client's second flight or first 1-RTT packet) and, for QUIC, the datagrams
    /// after it; all `None` when the handshake's end was not seen.
    pub overhead: toktra_catalog::FlowOverhead,
    pub end: FlowEnd,
}

impl FlowRecord {
    /// Time from the first to the last packet.
    pub fn duration(&self) -> Duration {
        self.last_ts.saturating_sub(self.first_ts)
    }

    /// `"TLS 1.3"`, `"TLS 1.2"`, ...
    pub fn tls_version_name(&self) -> &'static str {
        toktra_wire::tls::version_name(self.tls_version)
    }
}
