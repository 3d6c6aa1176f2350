//! The flow tracker: joins packets into one [`FlowRecord`] per TLS-over-TCP or QUIC
//! connection. TLS and QUIC are recognised by content, on any port.
//!
//! Memory is bounded: at most [`FlowConfig::max_flows`] flows are tracked, only the
//! client's first bytes are buffered (in a reassembly buffer that is freed as soon as
//! the ClientHello is complete), the server's stream is reduced to a record-header
//! counter, and flows end on FIN/RST or after an idle timeout. Connections that turn
//! out not to be TLS are forgotten at once.
//!
//! ```no_run
//! # use toktra_agent::flow::{FlowConfig, FlowTracker};
//! # use toktra_wire::link::LinkType;
//! # let frames: Vec<(std::time::Duration, Vec<u8>)> = vec![];
//! let mut tracker = FlowTracker::new(FlowConfig::default());
//! for (ts, frame) in &frames {
//!     tracker.track(*ts, LinkType::Ethernet, frame);
//!     for record in tracker.poll_expired(*ts) {
//!         println!("{:?} {:?}", record.sni, record.alpn);
//!     }
//! }
//! for record in tracker.finish() { /* ... */ }
//! ```

mod quic;
mod record;
mod records;

pub use record::{FlowEnd, FlowRecord, FlowTransport};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

// Flow keys come from the network: a seeded hash keeps collisions unpredictable,
// at a fraction of SipHash's cost per packet (foldhash's fast variant, the one its
// authors suggest for hash tables; the quality variant adds a final mixing round). Flows are boxed so the table itself
// stays small (56-byte slots instead of about 360): flows waiting for their idle
// timeout (QUIC has no FIN) otherwise spread the busy ones over megabytes, and the
// per-packet lookup missed the cache (a tenth of `toktra pcap`'s time).
type FlowMap = HashMap<FlowKey, Box<Flow>, foldhash::fast::RandomState>;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use toktra_catalog::FlowOverhead;
use toktra_wire::assembler::{HelloAssembler, Progress, StreamKind};
use toktra_wire::ip::{IpPacket, PROTO_TCP, PROTO_UDP};
use toktra_wire::ja4::{Ja4Memo, Transport as Ja4Transport, ja4_memo};
use toktra_wire::link::{self, LinkType};
use toktra_wire::quic::InitialKeyCache;
use toktra_wire::tcp::TcpSegment;
use toktra_wire::tls::{ClientHello, RecordHeader, looks_like_client_hello};
use toktra_wire::udp::UdpDatagram;

use records::RecordCounter;

/// Limits of the tracker.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// Flows tracked at once; new connections beyond it are not tracked (counted in
    /// [`TrackerStats::flows_refused`]).
    pub max_flows: usize,
    /// A TCP flow with its ClientHello seen ends after this long without a packet.
    pub tcp_idle_timeout: Duration,
    /// A QUIC flow ends after this long without a datagram (QUIC's own idle timeouts
    /// are typically 30 s).
    pub quic_idle_timeout: Duration,
    /// A flow still waiting for its ClientHello is dropped after this long.
    pub hello_timeout: Duration,
    /// Client packets with payload that may pass before a ClientHello must be complete;
    /// protects against streams that look like TLS but never finish a hello.
    pub max_hello_packets: u32,
    /// How often [`FlowTracker::poll_expired`] scans the table for idle flows.
    pub scan_interval: Duration,
    /// ClientHellos reassembled at once (about 18 KiB each). Most hellos fit in their
    /// first packet and need none; this bounds what half-sent hellos can hold.
    pub max_pending_hellos: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            max_flows: 100_000,
            tcp_idle_timeout: Duration::from_secs(300),
            quic_idle_timeout: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(30),
            max_hello_packets: 16,
            scan_interval: Duration::from_secs(1),
            max_pending_hellos: 1024,
        }
    }
}

/// Counters of what the tracker saw and set aside.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    pub packets: u64,
    /// Frames that were not IPv4/IPv6 TCP or UDP (ARP, ICMP, unknown link types, ...).
    pub non_ip_or_transport: u64,
    /// Frames whose headers were truncated or malformed.
    pub malformed: u64,
    /// IP fragments (not reassembled; TLS and QUIC senders avoid fragmentation).
    pub fragments: u64,
    pub flows_started: u64,
    /// Flows whose first client bytes were not a ClientHello, or whose hello was broken.
    pub flows_not_tls: u64,
    /// Connections not tracked because `max_flows` were already tracked.
    pub flows_refused: u64,
    /// Flows given up because `max_pending_hellos` split hellos were being reassembled.
    pub hello_buffers_exhausted: u64,
    /// Records emitted (flows that carried a ClientHello).
    pub flows_emitted: u64,
}

/// Endpoints as plain integers: hashing, comparing and ordering them is a few
/// instructions, where `SocketAddr` goes field by field through its enum (the table
/// lookup runs for every packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    lo_ip: u128,
    hi_ip: u128,
    /// The lower endpoint's port in the high half.
    ports: u32,
    /// The IP protocol, plus 0x100 for IPv6, so that an IPv4 flow and one between
    /// the same addresses written as IPv4-mapped IPv6 stay apart.
    proto: u16,
}

impl FlowKey {
    fn new(proto: u8, a: SocketAddr, b: SocketAddr) -> Self {
        let (x, y) = (endpoint(a), endpoint(b));
        let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
        Self {
            lo_ip: lo.0,
            hi_ip: hi.0,
            ports: (u32::from(lo.1) << 16) | u32::from(hi.1),
            proto: u16::from(proto) | (u16::from(a.is_ipv6()) << 8),
        }
    }
}

fn endpoint(a: SocketAddr) -> (u128, u16) {
    let ip = match a.ip() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    (ip, a.port())
}

/// The summary of a ClientHello kept after its bytes are gone.
#[derive(Clone, Debug)]
struct HelloSummary {
    sni: Option<String>,
    alpn: Vec<String>,
    ja4: String,
    ech: bool,
    tls_version: u16,
}

impl HelloSummary {
    fn new(hello: &ClientHello<'_>, transport: Ja4Transport, memo: &mut Ja4Memo) -> Self {
        Self {
            sni: hello
                .server_name()
                .map(|s| String::from_utf8_lossy(s).into_owned()),
            alpn: hello
                .alpn()
                .iter()
                .flat_map(|l| l.iter())
                .map(|id| String::from_utf8_lossy(id).into_owned())
                .collect(),
            ja4: ja4_memo(hello, transport, memo).as_str().to_owned(),
            ech: hello.has_ech(),
            tls_version: hello.max_version(),
        }
    }
}

enum HelloState {
    /// Waiting for the client's first bytes; the assembler exists only once a hello
    /// did not fit in one packet.
    Pending {
        assembler: Option<Lease>,
        packets: u32,
    },
    Done(HelloSummary),
}

struct Flow {
    transport: FlowTransport,
    client: SocketAddr,
    server: SocketAddr,
    first_ts: Duration,
    last_ts: Duration,
    /// TCP: the client's initial sequence number, or the sequence number of the first
    /// ClientHello byte minus one when the SYN was not seen.
    client_isn: Option<u32>,
    hello: HelloState,
    bytes_out: u64,
    bytes_in: u64,
    packets_out: u64,
    packets_in: u64,
    records: RecordCounter,
    fin_out: bool,
    fin_in: bool,
    /// Where the handshake ended, once seen: the client's second flight (TCP) or
    /// first 1-RTT packet (QUIC). Until then every client packet with payload takes
    /// one more branch; after it, none.
    handshake: Option<HandshakeEnd>,
}

/// The counters at the end of a handshake.
#[derive(Clone, Copy, Debug)]
struct HandshakeEnd {
    client_bytes: u64,
    server_bytes: u64,
    server_records: Option<u64>,
    /// Datagrams each way before the first 1-RTT ones (QUIC).
    packets_out: u64,
    packets_in: u64,
}

impl Flow {
    fn new(transport: FlowTransport, client: SocketAddr, server: SocketAddr, ts: Duration) -> Self {
        Self {
            transport,
            client,
            server,
            first_ts: ts,
            last_ts: ts,
            client_isn: None,
            hello: HelloState::Pending {
                assembler: None,
                packets: 0,
            },
            bytes_out: 0,
            bytes_in: 0,
            packets_out: 0,
            packets_in: 0,
            records: RecordCounter::default(),
            fin_out: false,
            fin_in: false,
            handshake: None,
        }
    }

    fn into_record(self, end: FlowEnd) -> Option<FlowRecord> {
        let overhead = self.overhead();
        let HelloState::Done(h) = self.hello else {
            return None;
        };
        Some(FlowRecord {
            transport: self.transport,
            client: self.client,
            server: self.server,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            sni: h.sni,
            alpn: h.alpn,
            ja4: h.ja4,
            ech: h.ech,
            tls_version: h.tls_version,
            bytes_out: self.bytes_out,
            bytes_in: self.bytes_in,
            packets_out: self.packets_out,
            packets_in: self.packets_in,
            records_in: match self.transport {
                FlowTransport::Tcp => self.records.count(),
                FlowTransport::Quic => None,
            },
            overhead,
            end,
        })
    }

    fn overhead(&self) -> FlowOverhead {
        let Some(h) = self.handshake else {
            return FlowOverhead::default();
        };
        let quic = self.transport == FlowTransport::Quic;
        FlowOverhead {
            client_handshake_bytes: Some(h.client_bytes),
            server_handshake_bytes: Some(h.server_bytes),
            server_handshake_records: h.server_records.filter(|_| !quic),
            quic_packets_out: quic.then(|| self.packets_out.saturating_sub(h.packets_out)),
            quic_packets_in: quic.then(|| self.packets_in.saturating_sub(h.packets_in)),
        }
    }

    /// Marks the end of the handshake at a client packet whose first `handshake`
    /// bytes still belonged to it; `bytes_out` and `packets_out` already count it.
    fn end_handshake(&mut self, payload_len: usize, handshake: usize) {
        let before = self.bytes_out - payload_len as u64;
        let handshake = handshake.min(payload_len);
        self.handshake = Some(HandshakeEnd {
            client_bytes: before + handshake as u64,
            server_bytes: self.bytes_in,
            server_records: self.records.count(),
            // A packet that was all handshake is not one of those after it.
            packets_out: self.packets_out - u64::from(handshake < payload_len),
            packets_in: self.packets_in,
        });
    }

    fn idle_limit(&self, config: &FlowConfig) -> Duration {
        match (&self.hello, self.transport) {
            (HelloState::Pending { .. }, _) => config.hello_timeout,
            (HelloState::Done(_), FlowTransport::Tcp) => config.tcp_idle_timeout,
            (HelloState::Done(_), FlowTransport::Quic) => config.quic_idle_timeout,
        }
    }
}

/// A reassembly buffer on loan to one flow. Counts itself in the pool's tally until
/// dropped, wherever the flow ends, so the number of buffers alive stays bounded.
struct Lease {
    asm: Option<Box<HelloAssembler>>,
    live: Arc<AtomicUsize>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Lease {
    type Target = HelloAssembler;
    fn deref(&self) -> &HelloAssembler {
        // Always Some until give() takes it, right before the lease is dropped.
        self.asm.as_deref().unwrap_or(&EMPTY_ASSEMBLER)
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut HelloAssembler {
        self.asm
            .get_or_insert_with(|| Box::new(HelloAssembler::new(StreamKind::Tls)))
    }
}

static EMPTY_ASSEMBLER: HelloAssembler = HelloAssembler::new(StreamKind::Tls);

/// Reassembly buffers (about 18 KiB each): at most `limit` alive at once, so half-sent
/// hellos on many connections cannot exhaust memory, and a few kept for reuse, since
/// allocating and zeroing a fresh one per flow showed up in profiles of large captures.
///
/// It also keeps the memos every completed hello goes through: JA4 list hashes and
/// QUIC Initial keys, both computed once per distinct input instead of once per
/// flow or packet (they were a quarter of the CPU time on a large capture).
struct AssemblerPool {
    spare: Vec<Box<HelloAssembler>>,
    live: Arc<AtomicUsize>,
    limit: usize,
    memo: Box<Ja4Memo>,
    keys: Box<InitialKeyCache>,
}

impl AssemblerPool {
    const KEEP: usize = 32;

    fn new(limit: usize) -> Self {
        Self {
            spare: Vec::new(),
            live: Arc::new(AtomicUsize::new(0)),
            limit,
            memo: Box::new(Ja4Memo::new()),
            keys: Box::new(InitialKeyCache::new()),
        }
    }

    /// `None` when `limit` buffers are on loan.
    fn take(&mut self, kind: StreamKind) -> Option<Lease> {
        if self.live.load(Ordering::Relaxed) >= self.limit {
            return None;
        }
        self.live.fetch_add(1, Ordering::Relaxed);
        let asm = match self.spare.pop() {
            Some(mut a) => {
                a.reset(kind);
                a
            }
            None => Box::new(HelloAssembler::new(kind)),
        };
        Some(Lease {
            asm: Some(asm),
            live: Arc::clone(&self.live),
        })
    }

    fn give(&mut self, mut lease: Lease) {
        if let Some(a) = lease.asm.take().filter(|_| self.spare.len() < Self::KEEP) {
            self.spare.push(a);
        }
    }

    /// Marks the hello done, recycling its assembler.
    fn complete(&mut self, hello: &mut HelloState, summary: HelloSummary) {
        if let HelloState::Pending {
            assembler: Some(a), ..
        } = std::mem::replace(hello, HelloState::Done(summary))
        {
            self.give(a);
        }
    }
}

/// What became of the client's bytes handed to the hello state.
enum HelloStep {
    Waiting,
    /// Every reassembly buffer is in use: this flow cannot be followed.
    NoBuffer,
    Completed,
    NotTls,
}

/// Tracks TCP and QUIC flows and emits a [`FlowRecord`] for every one that carried a
/// ClientHello. Feed it every captured frame in capture order.
pub struct FlowTracker {
    config: FlowConfig,
    flows: FlowMap,
    ready: Vec<FlowRecord>,
    stats: TrackerStats,
    last_scan: Option<Duration>,
    /// Decryption buffer for QUIC Initials, allocated on the first one.
    scratch: Option<Vec<u8>>,
    pool: AssemblerPool,
}

impl FlowTracker {
    pub fn new(config: FlowConfig) -> Self {
        let pool = AssemblerPool::new(config.max_pending_hellos);
        Self {
            config,
            flows: FlowMap::default(),
            ready: Vec::new(),
            stats: TrackerStats::default(),
            last_scan: None,
            scratch: None,
            pool,
        }
    }

    pub fn stats(&self) -> &TrackerStats {
        &self.stats
    }

    /// Flows currently tracked.
    pub fn active_flows(&self) -> usize {
        self.flows.len()
    }

    /// Takes one captured frame. `ts` is the capture time since the Unix epoch.
    /// Never fails: frames that are not TCP/UDP over IP, or are malformed, are counted
    /// in [`FlowTracker::stats`] and otherwise ignored.
    pub fn track(&mut self, ts: Duration, link: LinkType, frame: &[u8]) {
        self.stats.packets += 1;
        let l3 = match link::parse(link, frame) {
            Ok(l) => l,
            Err(link::LinkError::NotIp { .. }) => {
                self.stats.non_ip_or_transport += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        self.track_ip(ts, l3.payload);
    }

    /// Takes one IPv4 or IPv6 packet (for sources that deliver no link header).
    pub fn track_ip(&mut self, ts: Duration, packet: &[u8]) {
        let Ok(ip) = IpPacket::parse(packet) else {
            self.stats.malformed += 1;
            return;
        };
        if ip.fragment().is_some() {
            self.stats.fragments += 1;
            return;
        }
        match ip.protocol() {
            PROTO_TCP => match TcpSegment::parse(ip.payload()) {
                Ok(tcp) => self.tcp(ts, ip.src(), ip.dst(), &tcp),
                Err(_) => self.stats.malformed += 1,
            },
            PROTO_UDP => match UdpDatagram::parse(ip.payload()) {
                Ok(udp) => self.udp(ts, ip.src(), ip.dst(), &udp),
                Err(_) => self.stats.malformed += 1,
            },
            _ => self.stats.non_ip_or_transport += 1,
        }
    }

    /// Records of flows that ended (FIN, RST, reuse) and, at most once per
    /// [`FlowConfig::scan_interval`] of `now`, of flows idle past their timeout.
    pub fn poll_expired(&mut self, now: Duration) -> std::vec::Drain<'_, FlowRecord> {
        let due = self
            .last_scan
            .is_none_or(|last| now.saturating_sub(last) >= self.config.scan_interval);
        if due {
            self.last_scan = Some(now);
            let config = &self.config;
            let mut expired: Vec<(Duration, FlowKey)> = self
                .flows
                .iter()
                .filter(|(_, f)| now.saturating_sub(f.last_ts) > f.idle_limit(config))
                .map(|(k, f)| (f.first_ts, *k))
                .collect();
            // By first packet, not in the table's (randomly seeded) order, so that a
            // capture always gives the same output.
            expired.sort_unstable_by(|a, b| {
                (a.0, a.1.lo_ip, a.1.hi_ip, a.1.ports, a.1.proto)
                    .cmp(&(b.0, b.1.lo_ip, b.1.hi_ip, b.1.ports, b.1.proto))
            });
            for (_, key) in expired {
                self.close(&key, FlowEnd::Idle);
            }
        }
        self.ready.drain(..)
    }

    /// Ends the capture: every tracked flow that carried a ClientHello is emitted.
    pub fn finish(mut self) -> impl Iterator<Item = FlowRecord> {
        let mut out = std::mem::take(&mut self.ready);
        out.reserve(self.flows.len());
        for (_, flow) in self.flows.drain() {
            let flow = *flow;
            if let Some(r) = flow.into_record(FlowEnd::CaptureEnd) {
                out.push(r);
            }
        }
        self.stats.flows_emitted += out.len() as u64;
        // Ties broken by endpoints, not left in the table's randomly seeded order.
        out.sort_by_key(|r| {
            (
                r.first_ts,
                r.client,
                r.server,
                r.transport == FlowTransport::Quic,
            )
        });
        out.into_iter()
    }

    fn close(&mut self, key: &FlowKey, end: FlowEnd) {
        if let Some(flow) = self.flows.remove(key) {
            self.emit(*flow, end);
        }
    }

    fn emit(&mut self, flow: Flow, end: FlowEnd) {
        if let Some(r) = flow.into_record(end) {
            self.stats.flows_emitted += 1;
            self.ready.push(r);
        }
    }

    /// Files the outcome of a packet for a flow that is not (or no longer) in the table.
    fn settle(&mut self, key: FlowKey, flow: Flow, after: After) {
        match after {
            After::Continue => {
                if self.flows.len() >= self.config.max_flows {
                    self.stats.flows_refused += 1;
                    return;
                }
                self.stats.flows_started += 1;
                self.flows.insert(key, Box::new(flow));
            }
            After::NotTls => {
                self.stats.flows_started += 1;
                self.stats.flows_not_tls += 1;
            }
            After::NoBuffer => {
                self.stats.flows_started += 1;
                self.stats.hello_buffers_exhausted += 1;
            }
            After::End(end) => {
                self.stats.flows_started += 1;
                self.emit(flow, end);
            }
        }
    }

    /// Files the outcome of a packet for a flow in the table.
    fn settle_tracked(&mut self, key: &FlowKey, after: After) {
        match after {
            After::Continue => {}
            After::NotTls => {
                self.stats.flows_not_tls += 1;
                self.flows.remove(key);
            }
            After::NoBuffer => {
                self.stats.hello_buffers_exhausted += 1;
                self.flows.remove(key);
            }
            After::End(end) => self.close(key, end),
        }
    }

    fn tcp(&mut self, ts: Duration, src: IpAddr, dst: IpAddr, tcp: &TcpSegment<'_>) {
        let from = SocketAddr::new(src, tcp.src_port());
        let to = SocketAddr::new(dst, tcp.dst_port());
        let key = FlowKey::new(PROTO_TCP, from, to);
        let fresh_syn = tcp.flags().syn() && !tcp.flags().ack();
        // One table lookup for the common case: a packet of a known flow.
        if let Some(flow) = self.flows.get_mut(&key) {
            // A fresh SYN with another ISN on a known 5-tuple is a new connection.
            if !(fresh_syn && flow.client_isn != Some(tcp.seq())) {
                let after = tcp_packet(&self.config, &mut self.pool, flow, ts, from, tcp);
                self.settle_tracked(&key, after);
                return;
            }
            self.close(&key, FlowEnd::Reused);
        }
        let mut flow = Flow::new(FlowTransport::Tcp, from, to, ts);
        if fresh_syn {
            flow.client_isn = Some(tcp.seq());
        } else if looks_like_client_hello(tcp.payload()) {
            // Picked up mid-stream (capture started after the SYN).
            flow.client_isn = Some(tcp.seq().wrapping_sub(1));
        } else {
            return;
        }
        let after = tcp_packet(&self.config, &mut self.pool, &mut flow, ts, from, tcp);
        self.settle(key, flow, after);
    }

    fn udp(&mut self, ts: Duration, src: IpAddr, dst: IpAddr, udp: &UdpDatagram<'_>) {
        let from = SocketAddr::new(src, udp.src_port());
        let to = SocketAddr::new(dst, udp.dst_port());
        let key = FlowKey::new(PROTO_UDP, from, to);
        let scratch = &mut self.scratch;
        if let Some(flow) = self.flows.get_mut(&key) {
            let after = udp_packet(
                &self.config,
                &mut self.pool,
                scratch,
                flow,
                ts,
                from,
                udp.payload(),
            );
            self.settle_tracked(&key, after);
            return;
        }
        if !quic::looks_like_initial(udp.payload()) {
            return;
        }
        let mut flow = Flow::new(FlowTransport::Quic, from, to, ts);
        let after = udp_packet(
            &self.config,
            &mut self.pool,
            scratch,
            &mut flow,
            ts,
            from,
            udp.payload(),
        );
        self.settle(key, flow, after);
    }
}

/// What a packet did to its flow.
enum After {
    Continue,
    /// The flow's first client bytes are not a (valid) ClientHello: forget it.
    NotTls,
    /// No reassembly buffer was free: forget the flow.
    NoBuffer,
    End(FlowEnd),
}

fn tcp_packet(
    config: &FlowConfig,
    pool: &mut AssemblerPool,
    flow: &mut Flow,
    ts: Duration,
    from: SocketAddr,
    tcp: &TcpSegment<'_>,
) -> After {
    let flags = tcp.flags();
    let payload = tcp.payload();
    let seq = tcp.seq();
    // Capture timestamps can step backwards (clock changes, merged files).
    flow.last_ts = flow.last_ts.max(ts);
    if from == flow.client {
        flow.packets_out += 1;
        flow.bytes_out += payload.len() as u64;
        flow.fin_out |= flags.fin();
        if let (Some(isn), HelloState::Pending { .. }, false) =
            (flow.client_isn, &flow.hello, payload.is_empty())
        {
            let offset = seq.wrapping_sub(isn).wrapping_sub(1);
            match tcp_hello_bytes(&mut flow.hello, config, pool, offset, payload) {
                HelloStep::NotTls => return After::NotTls,
                HelloStep::NoBuffer => return After::NoBuffer,
                HelloStep::Waiting | HelloStep::Completed => {}
            }
        } else if flow.handshake.is_none()
            && flow.bytes_in > 0
            && !payload.is_empty()
            && matches!(flow.hello, HelloState::Done(_))
        {
            // The first client bytes after the server's flight: its second flight.
            if let Some(handshake) = tls_second_flight(payload) {
                flow.end_handshake(payload.len(), handshake);
            }
        }
    } else {
        flow.packets_in += 1;
        flow.bytes_in += payload.len() as u64;
        flow.fin_in |= flags.fin();
        if flags.syn() {
            flow.records.start_at(seq.wrapping_add(1));
        }
        flow.records.segment(seq, payload);
    }
    if flags.rst() {
        After::End(FlowEnd::Reset)
    } else if flow.fin_out && flow.fin_in {
        After::End(FlowEnd::Fin)
    } else {
        After::Continue
    }
}

fn udp_packet(
    config: &FlowConfig,
    pool: &mut AssemblerPool,
    scratch: &mut Option<Vec<u8>>,
    flow: &mut Flow,
    ts: Duration,
    from: SocketAddr,
    payload: &[u8],
) -> After {
    // Capture timestamps can step backwards (clock changes, merged files).
    flow.last_ts = flow.last_ts.max(ts);
    if from != flow.client {
        flow.packets_in += 1;
        flow.bytes_in += payload.len() as u64;
        return After::Continue;
    }
    flow.packets_out += 1;
    flow.bytes_out += payload.len() as u64;
    let HelloState::Pending { assembler, packets } = &mut flow.hello else {
        if flow.handshake.is_none()
            && let Some(handshake) = quic::long_header_bytes(payload)
        {
            flow.end_handshake(payload.len(), handshake);
        }
        return After::Continue;
    };
    *packets = packets.saturating_add(1);
    let first = *packets == 1;
    let over = *packets > config.max_hello_packets;
    let scratch = scratch.get_or_insert_with(|| vec![0; quic::SCRATCH_LEN]);
    match quic::client_datagram(assembler, pool, scratch, first, payload) {
        quic::Step::Waiting if over => After::NotTls,
        quic::Step::Waiting => After::Continue,
        quic::Step::Hello(summary) => {
            pool.complete(&mut flow.hello, summary);
            After::Continue
        }
        quic::Step::NotQuic => After::NotTls,
        quic::Step::NoBuffer => After::NoBuffer,
    }
}

/// Bytes from the client at stream `offset` while the hello is pending.
fn tcp_hello_bytes(
    hello: &mut HelloState,
    config: &FlowConfig,
    pool: &mut AssemblerPool,
    offset: u32,
    payload: &[u8],
) -> HelloStep {
    let HelloState::Pending { assembler, packets } = hello else {
        return HelloStep::Completed;
    };
    *packets = packets.saturating_add(1);
    // Sequence numbers far outside the hello buffer are stale or foreign segments.
    if offset > (1 << 20) {
        return HelloStep::Waiting;
    }
    if assembler.is_none() {
        if offset == 0 {
            if !could_start_client_hello(payload) {
                return HelloStep::NotTls;
            }
            // Fast path: the whole hello in the first segment's first record.
            if let Some(summary) = single_record_hello(payload, &mut pool.memo) {
                *hello = HelloState::Done(summary);
                return HelloStep::Completed;
            }
        }
        let Some(lease) = pool.take(StreamKind::Tls) else {
            return HelloStep::NoBuffer;
        };
        *assembler = Some(lease);
    }
    let over = *packets > config.max_hello_packets;
    let Some(asm) = assembler.as_mut() else {
        return HelloStep::Waiting;
    };
    let summary = match asm.push(u64::from(offset), payload) {
        Ok(Progress::Complete(ch)) => HelloSummary::new(&ch, Ja4Transport::Tcp, &mut pool.memo),
        Ok(Progress::NeedMore) if over => return HelloStep::NotTls,
        Ok(Progress::NeedMore) => return HelloStep::Waiting,
        Err(_) => return HelloStep::NotTls,
    };
    pool.complete(hello, summary);
    HelloStep::Completed
}

/// The handshake's share of the client's second flight, from its record headers:
/// `None` when it is a ClientHello again (after a HelloRetryRequest, or a
/// retransmission), so the handshake goes on.
///
/// TLS 1.3 sends change_cipher_spec (in middlebox compatibility mode) and then
/// Finished as the first application_data record; whatever follows in the segment
/// is the request. TLS 1.2 sends ClientKeyExchange, change_cipher_spec and Finished
/// as handshake-typed records, and its first application_data record is the request.
fn tls_second_flight(payload: &[u8]) -> Option<usize> {
    let mut at = 0;
    let mut tls12 = false;
    while let Some(&[content_type, 3, _, hi, lo]) = payload.get(at..at + 5) {
        let end = at + 5 + usize::from(u16::from_be_bytes([hi, lo]));
        match content_type {
            22 if at == 0 && payload.get(5) == Some(&1) => return None,
            22 => tls12 = true,
            20 | 21 => {}
            23 if !tls12 => return Some(end),
            _ => break,
        }
        at = end;
    }
    Some(at)
}

/// Like `looks_like_client_hello`, but a first segment shorter than the six bytes it
/// needs (a hello split right after its first bytes) is judged on what it has.
fn could_start_client_hello(payload: &[u8]) -> bool {
    match payload {
        [] => true,
        [22] | [22, 3] | [22, 3, 0..=4] | [22, 3, 0..=4, _] | [22, 3, 0..=4, _, _] => true,
        _ => looks_like_client_hello(payload),
    }
}

fn single_record_hello(payload: &[u8], memo: &mut Ja4Memo) -> Option<HelloSummary> {
    let header = RecordHeader::parse(payload).ok()?;
    let body = payload.get(5..5 + header.length)?;
    let hello = ClientHello::parse(body).ok()?;
    Some(HelloSummary::new(&hello, Ja4Transport::Tcp, memo))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend(kind.to_be_bytes());
        out.extend((body.len() as u16).to_be_bytes());
        out.extend(body);
    }

    /// A TLS 1.3 ClientHello record with SNI and ALPN.
    fn hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
        let mut exts = Vec::new();
        let mut name = vec![0u8];
        name.extend((sni.len() as u16).to_be_bytes());
        name.extend(sni.as_bytes());
        let mut list = (name.len() as u16).to_be_bytes().to_vec();
        list.extend(name);
        ext(&mut exts, 0, &list);
        let mut ids = Vec::new();
        for a in alpn {
            ids.push(a.len() as u8);
            ids.extend(a.as_bytes());
        }
        let mut l = (ids.len() as u16).to_be_bytes().to_vec();
        l.extend(ids);
        ext(&mut exts, 16, &l);
        ext(&mut exts, 0x2b, &[4, 3, 4, 3, 3]);
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0);
        body.extend([0, 2, 0x13, 0x01, 1, 0]);
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut rec = vec![22, 3, 1];
        rec.extend(((body.len() + 4) as u16).to_be_bytes());
        rec.extend([1, 0]);
        rec.extend((body.len() as u16).to_be_bytes());
        rec.extend(body);
        rec
    }

    const CLIENT: [u8; 4] = [10, 0, 0, 1];
    const SERVER: [u8; 4] = [10, 0, 0, 2];

    fn segment(from_client: bool, sport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sp, dp) = if from_client {
            (CLIENT, SERVER, sport, 8443)
        } else {
            (SERVER, CLIENT, 8443, sport)
        };
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0, 0x45, 0];
        f.extend(((40 + payload.len()) as u16).to_be_bytes());
        f.extend([0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend(src);
        f.extend(dst);
        f.extend(sp.to_be_bytes());
        f.extend(dp.to_be_bytes());
        f.extend(seq.to_be_bytes());
        f.extend([0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend(payload);
        f
    }

    fn app_records(n: usize) -> Vec<u8> {
        let mut s = vec![22, 3, 3, 0, 4, 2, 0, 0, 0];
        for _ in 0..n {
            s.extend([23, 3, 3, 0, 3, 9, 9, 9]);
        }
        s
    }

    const SYN: u8 = 0x02;
    const SYN_ACK: u8 = 0x12;
    const ACK: u8 = 0x10;
    const PSH_ACK: u8 = 0x18;
    const FIN_ACK: u8 = 0x11;
    const RST: u8 = 0x04;

    fn at(ms: u64) -> Duration {
        Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
    }

    #[test]
    fn split_out_of_order_retransmitted_hello_then_fin_emits_one_record() {
        let mut t = FlowTracker::new(FlowConfig::default());
        let h = hello("api.openai.com", &["h2", "http/1.1"]);
        let (c, s) = (1000u32, 5000u32);
        let srv = app_records(3);
        let packets = [
            segment(true, 40000, c, SYN, &[]),
            segment(false, 40000, s, SYN_ACK, &[]),
            segment(true, 40000, c + 1, ACK, &[]),
            segment(true, 40000, c + 1 + 3, PSH_ACK, &h[3..]),
            segment(true, 40000, c + 1, PSH_ACK, &h[..3]),
            segment(true, 40000, c + 1, PSH_ACK, &h[..3]),
            segment(false, 40000, s + 1, PSH_ACK, &srv),
            segment(true, 40000, c + 1 + h.len() as u32, FIN_ACK, &[]),
            segment(false, 40000, s + 1 + srv.len() as u32, FIN_ACK, &[]),
        ];
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            t.track(at(i as u64 * 10), LinkType::Ethernet, p);
            out.extend(t.poll_expired(at(i as u64 * 10)));
        }
        assert_eq!(out.len(), 1, "emitted as soon as both FINs were seen");
        let r = &out[0];
        assert_eq!(r.sni.as_deref(), Some("api.openai.com"));
        assert_eq!(r.alpn, ["h2", "http/1.1"]);
        assert_eq!(r.transport, FlowTransport::Tcp);
        assert_eq!(r.client, SocketAddr::from((CLIENT, 40000)));
        assert_eq!(r.server, SocketAddr::from((SERVER, 8443)));
        assert_eq!(r.tls_version, 0x0304);
        assert_eq!(r.records_in, Some(3));
        assert_eq!((r.packets_out, r.packets_in), (6, 3));
        assert_eq!(
            r.bytes_out,
            (h.len() + 3) as u64,
            "retransmissions count as wire bytes"
        );
        assert_eq!(r.bytes_in, srv.len() as u64);
        assert_eq!(r.duration(), Duration::from_millis(80));
        assert_eq!(r.end, FlowEnd::Fin);
        assert!(r.ja4.starts_with("t13d0103h2_"), "{}", r.ja4);
        assert_eq!(t.active_flows(), 0);
    }

    #[test]
    fn non_tls_connections_are_forgotten() {
        let mut t = FlowTracker::new(FlowConfig::default());
        t.track(
            at(0),
            LinkType::Ethernet,
            &segment(true, 40001, 1, SYN, &[]),
        );
        assert_eq!(t.active_flows(), 1);
        t.track(
            at(1),
            LinkType::Ethernet,
            &segment(true, 40001, 2, PSH_ACK, b"GET / HTTP/1.1\r\n"),
        );
        assert_eq!(t.active_flows(), 0);
        assert_eq!(t.stats().flows_not_tls, 1);
        assert_eq!(t.finish().count(), 0);
    }

    #[test]
    fn reassembly_buffers_are_bounded_and_returned() {
        let config = FlowConfig {
            max_pending_hellos: 2,
            ..FlowConfig::default()
        };
        let mut t = FlowTracker::new(config);
        let h = hello("api.anthropic.com", &["h2"]);
        // Three connections send the first 10 bytes of their hello: only two can be
        // followed.
        for port in 1..=3u16 {
            t.track(
                at(0),
                LinkType::Ethernet,
                &segment(true, port, 100, SYN, &[]),
            );
            t.track(
                at(1),
                LinkType::Ethernet,
                &segment(true, port, 101, PSH_ACK, &h[..10]),
            );
        }
        assert_eq!(t.stats().hello_buffers_exhausted, 1);
        assert_eq!(t.active_flows(), 2);
        // Completing one hello frees its buffer for a new connection.
        t.track(
            at(2),
            LinkType::Ethernet,
            &segment(true, 1, 111, PSH_ACK, &h[10..]),
        );
        t.track(at(3), LinkType::Ethernet, &segment(true, 4, 100, SYN, &[]));
        t.track(
            at(3),
            LinkType::Ethernet,
            &segment(true, 4, 101, PSH_ACK, &h[..10]),
        );
        t.track(
            at(4),
            LinkType::Ethernet,
            &segment(true, 4, 111, PSH_ACK, &h[10..]),
        );
        assert_eq!(t.stats().hello_buffers_exhausted, 1);
        let done: Vec<_> = t
            .finish()
            .filter_map(|r| r.sni.map(|s| (r.client.port(), s)))
            .collect();
        assert_eq!(
            done,
            [
                (1, "api.anthropic.com".to_owned()),
                (4, "api.anthropic.com".to_owned())
            ]
        );
    }

    #[test]
    fn the_flow_cap_is_enforced() {
        let mut t = FlowTracker::new(FlowConfig {
            max_flows: 2,
            ..FlowConfig::default()
        });
        for port in 1..=3 {
            t.track(at(0), LinkType::Ethernet, &segment(true, port, 1, SYN, &[]));
        }
        assert_eq!(t.active_flows(), 2);
        assert_eq!(t.stats().flows_refused, 1);
    }

    #[test]
    fn idle_flows_expire_and_resets_close_midstream_flows() {
        let config = FlowConfig::default();
        let idle = config.tcp_idle_timeout;
        let mut t = FlowTracker::new(config);
        let h = hello("claude.ai", &["h2"]);
        // No SYN in the capture: the flow starts at the ClientHello.
        t.track(
            at(0),
            LinkType::Ethernet,
            &segment(true, 40002, 77, PSH_ACK, &h),
        );
        t.track(
            at(0),
            LinkType::Ethernet,
            &segment(true, 40003, 99, PSH_ACK, &h),
        );
        t.track(
            at(5),
            LinkType::Ethernet,
            &segment(false, 40003, 1, RST, &[]),
        );
        let reset: Vec<_> = t.poll_expired(at(5)).collect();
        assert_eq!(reset.len(), 1);
        assert_eq!(
            (reset[0].client.port(), reset[0].end),
            (40003, FlowEnd::Reset)
        );
        assert_eq!(t.poll_expired(at(2000)).count(), 0, "not idle yet");
        let later = at(0) + idle + Duration::from_secs(2);
        let expired: Vec<_> = t.poll_expired(later).collect();
        assert_eq!(expired.len(), 1);
        assert_eq!(
            (expired[0].client.port(), expired[0].end),
            (40002, FlowEnd::Idle)
        );
        assert_eq!(expired[0].sni.as_deref(), Some("claude.ai"));
        assert_eq!(t.active_flows(), 0);
    }

    fn tls_record(content_type: u8, len: usize) -> Vec<u8> {
        let mut r = vec![content_type, 3, 3];
        r.extend((len as u16).to_be_bytes());
        r.resize(5 + len, 0x5a);
        r
    }

    #[test]
    fn the_handshake_is_measured_at_the_clients_second_flight() {
        let mut t = FlowTracker::new(FlowConfig::default());
        let h = hello("api.openai.com", &["h2"]);
        // ServerHello, change_cipher_spec, the encrypted flight in two records.
        let flight = [
            tls_record(22, 90),
            tls_record(20, 1),
            tls_record(23, 2_500),
            tls_record(23, 1_200),
        ]
        .concat();
        // change_cipher_spec and Finished, then the request, in one segment.
        let second = [tls_record(20, 1), tls_record(23, 53)].concat();
        let request = tls_record(23, 400);
        let response = [tls_record(23, 300), tls_record(23, 300)].concat();
        let (c, s) = (1000u32, 5000u32);
        let c2 = c + 1 + h.len() as u32;
        let packets = [
            segment(true, 40010, c, SYN, &[]),
            segment(false, 40010, s, SYN_ACK, &[]),
            segment(true, 40010, c + 1, PSH_ACK, &h),
            segment(false, 40010, s + 1, PSH_ACK, &flight[..1_400]),
            segment(false, 40010, s + 1_401, PSH_ACK, &flight[1_400..]),
            segment(true, 40010, c2, ACK, &[]),
            segment(
                true,
                40010,
                c2,
                PSH_ACK,
                &[second.clone(), request.clone()].concat(),
            ),
            segment(
                false,
                40010,
                s + 1 + flight.len() as u32,
                PSH_ACK,
                &response,
            ),
        ];
        for (i, p) in packets.iter().enumerate() {
            t.track(at(i as u64), LinkType::Ethernet, p);
        }
        let r = t.finish().next().expect("one flow");
        assert_eq!(
            r.overhead,
            FlowOverhead {
                client_handshake_bytes: Some((h.len() + second.len()) as u64),
                server_handshake_bytes: Some(flight.len() as u64),
                server_handshake_records: Some(2),
                quic_packets_out: None,
                quic_packets_in: None,
            }
        );
        assert_eq!(r.records_in, Some(4));
    }

    #[test]
    fn second_flights_of_tls_1_2_and_retried_hellos() {
        // TLS 1.2: ClientKeyExchange, change_cipher_spec, Finished (handshake-typed),
        // then the request as the first application_data record.
        let tls12 = [
            tls_record(22, 37),
            tls_record(20, 1),
            tls_record(22, 40),
            tls_record(23, 300),
        ]
        .concat();
        assert_eq!(tls_second_flight(&tls12), Some(42 + 6 + 45));
        // TLS 1.3 without the compatibility change_cipher_spec.
        let tls13 = [tls_record(23, 53), tls_record(23, 300)].concat();
        assert_eq!(tls_second_flight(&tls13), Some(58));
        // A second ClientHello (after a HelloRetryRequest): still the handshake.
        assert_eq!(tls_second_flight(&hello("api.openai.com", &["h2"])), None);
    }
}
