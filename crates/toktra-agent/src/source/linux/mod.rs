//! The Linux capture source: a passive AF_PACKET tap on all interfaces (libpcap's
//! "any" device, which uses a TPACKET_V3 ring) with a kernel BPF filter so that only
//! TCP and UDP on the configured ports (443 by default) reach user space. It only
//! receives copies of packets: it cannot drop, delay or change traffic.
//!
//! Packets go into the flow tracker. For a TCP connection whose ClientHello names a
//! catalog host (classification before attribution: other flows are dropped in
//! memory, so nobody's processes are searched for them), and for the first datagram
//! of a UDP 4-tuple, the capture thread asks sock_diag at once for the socket's uid
//! and inode (one netlink query, while the connection is surely open). An
//! attribution thread then finds the process owning that inode in /proc — the
//! costly part, which the capture thread never waits for — in rounds that serve
//! every socket of a handoff, within a CPU budget ([`SCAN_CPU_SHARE`]). Handoffs
//! are paced ([`HANDOFF_RATE`]): each wake-up of another thread costs more than the
//! work it hands over, so under a stream of connections one handoff carries many.

pub mod sockdiag;

use crate::flow::{FlowConfig, FlowRecord, FlowTracker, FlowTransport};
use crate::pipeline::ObservedFlow;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use toktra_proto::{ProcessInfo, Transport};
use toktra_wire::ip::{IpPacket, PROTO_TCP, PROTO_UDP};
use toktra_wire::link::{self, LinkType};
use toktra_wire::tcp::TcpSegment;
use toktra_wire::tls::{ClientHello, RecordHeader, looks_like_client_hello};
use toktra_wire::udp::UdpDatagram;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error(
        "capturing packets needs the CAP_NET_RAW capability ({0}). Fix: run the agent \
         as its systemd unit (systemctl enable --now toktra-agent), or as root, or \
         grant the binary the capability once: sudo setcap cap_net_raw,cap_net_admin+eip {exe}",
        exe = current_exe()
    )]
    NoPermission(String),
    #[error("cannot open the packet tap on {device}: {reason}")]
    Open { device: String, reason: String },
    #[error("capture filter {filter:?} rejected: {reason}")]
    Filter { filter: String, reason: String },
}

fn current_exe() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/usr/bin/toktra".into())
}

#[derive(Debug, Clone)]
pub struct TapConfig {
    /// Destination ports to observe (TCP and UDP).
    pub ports: Vec<u16>,
    /// libpcap device; "any" is every interface.
    pub device: String,
}

/// The kernel filter: UDP and TCP to or from the configured ports, except TCP
/// segments that carry nothing the tracker uses — pure ACKs, with no payload and no
/// SYN, FIN or RST. They are a third or more of a busy connection's packets, and
/// every one the kernel keeps is copied into the ring and read by the agent.
/// (Byte counts are payload bytes, so they do not change.) libpcap's `tcp[...]`
/// reads IPv4 only, so IPv6 TCP is read at fixed offsets when it follows the fixed
/// header directly; any other IPv6 TCP packet is kept whole.
pub fn bpf_filter(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(|p| format!("port {p}")).collect();
    let v4 = "tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0 \
              or ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) != 0";
    let v6 = "ip6[6] != 6 or ip6[53] & 0x07 != 0 or ip6[4:2] - ((ip6[52] & 0xf0) >> 2) != 0";
    format!(
        "({}) and (udp or (ip and tcp and ({v4})) or (ip6 and tcp and ({v6})))",
        ports.join(" or ")
    )
}

/// A running tap; dropping it stops capture and flushes open flows.
pub struct LinuxTap {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for LinuxTap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What the capture thread hands the attribution thread: one message and one
/// wake-up for many connections, where one per packet, and later one per ring
/// block, was a measurable share of the agent's cost.
#[derive(Default)]
struct Handoff {
    /// LLM connections (or connections that could not be classified yet), with
    /// their socket's owner as sock_diag saw it when the ClientHello was read.
    lookups: Vec<(FlowKey, Option<sockdiag::SocketOwner>)>,
    /// Flows that ended.
    done: Vec<FlowRecord>,
}

impl Handoff {
    fn is_empty(&self) -> bool {
        self.lookups.is_empty() && self.done.is_empty()
    }

    fn len(&self) -> usize {
        self.lookups.len() + self.done.len()
    }
}

/// A handoff is sent early once it holds this many items.
const HANDOFF_MAX: usize = 256;
/// The most items the capture thread holds back while the attribution thread's
/// queue is full (a machine busy on every core can keep it waiting, and so can the
/// `SCHED_IDLE` pipeline it hands flows to): tens of seconds of a busy machine's
/// connections, a few MiB. Only beyond this does the capture thread wait for the
/// queue, and then packets may be lost in the ring, which is reported.
const HANDOFF_HOLD_MAX: usize = 16 * 1024;

/// Hands `handoff` to the attribution thread without waiting for it: if its queue
/// is full, the items stay in `handoff` for a later try (unless `handoff` holds
/// `HANDOFF_HOLD_MAX` or more, or `wait` is set: then this waits for room). Returns
/// false if the attribution thread is gone.
fn offer(attr: &std::sync::mpsc::SyncSender<Handoff>, handoff: &mut Handoff, wait: bool) -> bool {
    use std::sync::mpsc::TrySendError;
    if handoff.is_empty() {
        return true;
    }
    let h = std::mem::take(handoff);
    if wait || h.len() >= HANDOFF_HOLD_MAX {
        return attr.send(h).is_ok();
    }
    match attr.try_send(h) {
        Ok(()) => true,
        Err(TrySendError::Full(h)) => {
            *handoff = h;
            true
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}
/// Handoffs a second under a steady stream of connections, and how many may go
/// at once after a quiet spell: a lone connection, or a few together, reach the
/// attribution thread as soon as their ring block is read; under a stream, a
/// socket waits up to a tenth of a second for its process to be searched for —
/// while an LLM request, hundreds of milliseconds at the very least, is still open.
/// (The user comes from sock_diag when the ClientHello is read, in any case.)
const HANDOFF_RATE: f64 = 10.0;
const HANDOFF_BURST: f64 = 4.0;

/// A token bucket: `rate` tokens a second, holding at most `cap`; the level may go
/// below zero when more was spent than there was.
struct Bucket {
    level: f64,
    at: Instant,
    rate: f64,
    cap: f64,
}

impl Bucket {
    fn full(now: Instant, rate: f64, cap: f64) -> Self {
        Self {
            level: cap,
            at: now,
            rate,
            cap,
        }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.level = (self.level + earned).min(self.cap);
        self.at = self.at.max(now);
    }

    /// When the level will be at least `need`.
    fn ready_at(&self, need: f64) -> Instant {
        if self.level >= need {
            self.at
        } else {
            self.at + Duration::from_secs_f64((need - self.level) / self.rate)
        }
    }

    fn take(&mut self, now: Instant, amount: f64) {
        self.refill(now);
        self.level -= amount;
    }
}

/// Decides whether a host name is one the pipeline keeps (an LLM provider in the
/// catalog). The owner of a connection is only looked up for those.
pub type HostFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

type FlowKey = (bool, SocketAddr, SocketAddr);

/// Opens the tap (failing at once, with the fix, when the capability is missing)
/// and starts its threads; finished flows go to `out`.
pub fn start(
    cfg: &TapConfig,
    keep: HostFilter,
    out: tokio::sync::mpsc::Sender<ObservedFlow>,
    status: Arc<Mutex<Option<String>>>,
) -> Result<LinuxTap, TapError> {
    let filter = bpf_filter(&cfg.ports);
    let cap = pcap::Capture::from_device(cfg.device.as_str())
        .map_err(|e| TapError::Open {
            device: cfg.device.clone(),
            reason: e.to_string(),
        })?
        // Whole packets: the server's TLS record headers sit anywhere in its segments.
        // (A filter returning a shorter snap length would save the kernel copying
        // bulk payload, but the record counter needs every byte position of the
        // server's stream to find the next header, and the client's later bytes are
        // counted from the captured payload.)
        .snaplen(65_535)
        // The ring's pages count towards the agent's memory from the start. 2 MiB
        // (eight 256 KiB blocks) holds about 160 ms of a saturated 100 Mbit/s link;
        // with the capture thread at a raised priority (see `ThreadClass::Capture`) that
        // was enough for no kernel drops at 200 connections/s plus 100 Mbit/s on a
        // busy 2-core machine, where without it 2 MiB dropped hundreds of packets a
        // minute. Kernel drops are reported (status and log).
        .buffer_size(RING_BYTES)
        // Packets are delivered in ring blocks; a block is handed over at the latest
        // after this long. Short, because the socket owner is looked up when the
        // ClientHello is read, and a connection must still be open then; long enough
        // that a busy link costs tens of wake-ups a second, not thousands. Measured at
        // 200 short connections/s: 50 ms saved 8 % of the agent's CPU but found the
        // process of 18 % of the connections instead of 29 %.
        .timeout(20)
        .open()
        .map_err(|e| {
            let msg = e.to_string();
            if msg.contains("ermission") || msg.contains("not permitted") {
                TapError::NoPermission(msg)
            } else {
                TapError::Open {
                    device: cfg.device.clone(),
                    reason: msg,
                }
            }
        })?;
    // Non-blocking reads plus our own poll(2): with TPACKET_V3, libpcap may wait
    // forever for a first packet, and the loop must also wake up on an idle link to
    // expire flows and to notice that it should stop.
    let mut cap = cap.setnonblock().map_err(|e| TapError::Open {
        device: cfg.device.clone(),
        reason: e.to_string(),
    })?;
    cap.filter(&filter, true).map_err(|e| TapError::Filter {
        filter: filter.clone(),
        reason: e.to_string(),
    })?;
    let dlt = cap.get_datalink().0;
    let link = LinkType::from_pcap(dlt as u32).ok_or_else(|| TapError::Open {
        device: cfg.device.clone(),
        reason: format!("unsupported link type {dlt}"),
    })?;
    *status.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
        "capturing on {} ({} KiB ring) with filter {filter:?}",
        cfg.device,
        RING_BYTES >> 10
    ));
    let stop = Arc::new(AtomicBool::new(false));
    // Each slot is one handoff (a ring block's worth), and a slot's memory is only
    // its Vec headers: a deep queue costs nothing until it is used.
    let (attr_tx, attr_rx) = std::sync::mpsc::sync_channel::<Handoff>(256);
    let ports: HashSet<u16> = cfg.ports.iter().copied().collect();
    let stop2 = stop.clone();
    let status2 = status.clone();
    let capture = std::thread::Builder::new()
        .name("toktra-tap".into())
        .spawn({
            let keep = keep.clone();
            move || capture_loop(cap, link, ports, keep, attr_tx, stop2, status2)
        })
        .map_err(|e| TapError::Open {
            device: cfg.device.clone(),
            reason: e.to_string(),
        })?;
    let attribution = std::thread::Builder::new()
        .name("toktra-attr".into())
        .spawn(move || attribution_loop(attr_rx, keep, out))
        .map_err(|e| TapError::Open {
            device: cfg.device.clone(),
            reason: e.to_string(),
        })?;
    Ok(LinuxTap {
        stop,
        threads: vec![capture, attribution],
    })
}

fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// On "any", loopback traffic is seen twice (leaving and arriving); the leaving copy
/// is skipped so bytes are not doubled.
fn is_loopback_duplicate(link: LinkType, frame: &[u8]) -> bool {
    const ARPHRD_LOOPBACK: u16 = 772;
    const PACKET_OUTGOING: u16 = 4;
    let be16 = |i: usize| {
        frame
            .get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    match link {
        LinkType::LinuxSll => be16(0) == Some(PACKET_OUTGOING) && be16(2) == Some(ARPHRD_LOOPBACK),
        LinkType::LinuxSll2 => {
            be16(8) == Some(ARPHRD_LOOPBACK)
                && frame.get(10).copied() == Some(PACKET_OUTGOING as u8)
        }
        _ => false,
    }
}

/// A packet from a connection's client towards one of the capture ports.
struct ClientPacket<'a> {
    key: FlowKey,
    /// A TCP SYN without ACK: a connection starts.
    syn: bool,
    payload: &'a [u8],
}

fn client_packet<'a>(
    link: LinkType,
    frame: &'a [u8],
    ports: &HashSet<u16>,
) -> Option<ClientPacket<'a>> {
    let l3 = link::parse(link, frame).ok()?;
    let ip = IpPacket::parse(l3.payload).ok()?;
    match ip.protocol() {
        PROTO_TCP => {
            let tcp = TcpSegment::parse(ip.payload()).ok()?;
            let f = tcp.flags();
            ports.contains(&tcp.dst_port()).then(|| ClientPacket {
                key: (
                    true,
                    SocketAddr::new(ip.src(), tcp.src_port()),
                    SocketAddr::new(ip.dst(), tcp.dst_port()),
                ),
                syn: f.syn() && !f.ack(),
                payload: tcp.payload(),
            })
        }
        PROTO_UDP => {
            let udp = UdpDatagram::parse(ip.payload()).ok()?;
            ports.contains(&udp.dst_port()).then(|| ClientPacket {
                key: (
                    false,
                    SocketAddr::new(ip.src(), udp.src_port()),
                    SocketAddr::new(ip.dst(), udp.dst_port()),
                ),
                syn: false,
                payload: udp.payload(),
            })
        }
        _ => None,
    }
}

/// What a TCP connection's first client bytes say about whether its owner is worth
/// looking up.
#[derive(Debug, PartialEq, Eq)]
enum HelloVerdict {
    /// A ClientHello naming a host the pipeline keeps.
    Keep,
    /// Not a ClientHello, no SNI, or a host that is not an LLM provider: the flow is
    /// dropped in memory later, so nobody's processes are searched for it.
    Skip,
    /// A ClientHello that does not fit in this segment: looked up unclassified, since
    /// waiting for the rest could find the socket closed.
    Unknown,
}

fn hello_verdict(payload: &[u8], keep: &dyn Fn(&str) -> bool) -> HelloVerdict {
    if !looks_like_client_hello(payload) {
        return HelloVerdict::Skip;
    }
    let Ok(header) = RecordHeader::parse(payload) else {
        return HelloVerdict::Skip;
    };
    let Some(body) = payload.get(5..5 + header.length) else {
        return HelloVerdict::Unknown;
    };
    let host = ClientHello::parse(body)
        .ok()
        .and_then(|h| h.server_name())
        .and_then(|n| std::str::from_utf8(n).ok());
    match host {
        Some(h) if keep(h) => HelloVerdict::Keep,
        _ => HelloVerdict::Skip,
    }
}

/// The capture ring (see `start`).
const RING_BYTES: i32 = 2 << 20;
/// Under heavy traffic the capture thread sleeps this long at most between
/// readings of the ring, instead of waking for every ring block (which at 100
/// Mbit/s is every 20 ms, and each wake-up costs more than reading the block): ring
/// blocks wait in the ring meanwhile, and the sleep is shortened so that no more
/// than half the ring fills at the rate just seen. Lighter traffic is waited on
/// (poll) as before, so a ClientHello is read — and its socket's owner asked for —
/// within a ring block's timeout, while even a short connection is open.
const STEADY_SLEEP: Duration = Duration::from_millis(50);
/// Ring bytes a second from which the capture thread sleeps between readings: a
/// ring block every quarter second, far more than LLM requests alone ever send.
const STEADY_RATE: f64 = 1_000_000.0;

/// How long to sleep before reading a ring that had `bytes` in it since the last
/// reading `elapsed` ago, or None to wait for it to become readable.
fn steady_sleep(bytes: u64, elapsed: Duration) -> Option<Duration> {
    if bytes == 0 {
        return None;
    }
    let rate = bytes as f64 / elapsed.as_secs_f64().max(0.001);
    if rate < STEADY_RATE {
        return None;
    }
    let half_ring = Duration::from_secs_f64(f64::from(RING_BYTES) / 2.0 / rate);
    Some(half_ring.min(STEADY_SLEEP))
}

/// Connections whose SYN was seen and whose first client bytes were not yet: bounded,
/// since SYNs that never lead to data (scans, refused connections) would pile up.
const MAX_AWAITING: usize = 4096;

#[allow(clippy::too_many_arguments)]
fn capture_loop(
    mut cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    ports: HashSet<u16>,
    keep: HostFilter,
    attr: std::sync::mpsc::SyncSender<Handoff>,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<Option<String>>>,
) {
    set_thread_class(ThreadClass::Capture);
    // Asked about each LLM connection as its ClientHello is read: the earliest moment
    // the agent knows it wants the owner, and one netlink round trip.
    let mut diag = sockdiag::SockDiag::open()
        .map_err(|e| {
            tracing::warn!("sock_diag unavailable, flows will carry no process or user: {e}")
        })
        .ok();
    let mut tracker = FlowTracker::new(FlowConfig::default());
    // UDP 4-tuples already looked up (QUIC has no SYN to mark the start).
    let mut udp_seen: HashSet<(SocketAddr, SocketAddr)> = HashSet::new();
    let mut awaiting: HashMap<FlowKey, Duration> = HashMap::new();
    let mut handoff = Handoff::default();
    let mut handoffs = Bucket::full(Instant::now(), HANDOFF_RATE, HANDOFF_BURST);
    // Ring bytes read since the last time the ring ran dry, and when that was.
    let mut ring_bytes = 0u64;
    let mut last_dry = Instant::now();
    let mut dropped = 0u32;
    let mut next_stats = Instant::now() + Duration::from_secs(10);
    // The attribution thread has gone (the agent is stopping).
    let mut orphaned = false;
    // Held back items make a handoff early only once this many more have come.
    let mut early_at = HANDOFF_MAX;
    while !stop.load(Ordering::Relaxed) && !orphaned {
        if Instant::now() >= next_stats {
            next_stats += Duration::from_secs(10);
            if let Ok(st) = cap.stats()
                && st.dropped != dropped
            {
                dropped = st.dropped;
                tracing::warn!(
                    dropped = st.dropped,
                    if_dropped = st.if_dropped,
                    "the kernel dropped packets before the agent could read them"
                );
                *status.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                    "capturing; kernel dropped {} packets so far",
                    st.dropped
                ));
            }
        }
        // Every packet of the ring blocks that are ready, read in place: next_packet
        // would copy each one (up to 64 KiB for a segmentation-offloaded packet) out
        // of the ring first, which at 100 Mbit/s was a tenth of this thread's time.
        let read = cap.dispatch(None, |p| {
            if orphaned {
                return;
            }
            let data = p.data;
            // Each packet takes its bytes plus a header of some 64 bytes in the ring.
            ring_bytes += data.len() as u64 + 64;
            if is_loopback_duplicate(link, data) {
                return;
            }
            let ts = Duration::new(
                p.header.ts.tv_sec.max(0) as u64,
                (p.header.ts.tv_usec.clamp(0, 999_999) as u32) * 1000,
            );
            if let Some(cp) = client_packet(link, data, &ports) {
                let (tcp, client, server) = cp.key;
                if !tcp {
                    // QUIC's host name needs the Initial decrypted, which the
                    // tracker does; the owner is looked up at the first datagram.
                    if udp_seen.len() > 100_000 {
                        udp_seen.clear();
                    }
                    if udp_seen.insert((client, server)) {
                        let owner = diag.as_mut().and_then(|d| d.lookup(tcp, client, server));
                        handoff.lookups.push((cp.key, owner));
                    }
                } else if cp.syn {
                    if awaiting.len() >= MAX_AWAITING {
                        awaiting.retain(|_, at| ts.saturating_sub(*at) < Duration::from_secs(10));
                        if awaiting.len() >= MAX_AWAITING {
                            awaiting.clear();
                        }
                    }
                    awaiting.insert(cp.key, ts);
                } else if !cp.payload.is_empty()
                    && !awaiting.is_empty()
                    && awaiting.remove(&cp.key).is_some()
                    && hello_verdict(cp.payload, &*keep) != HelloVerdict::Skip
                {
                    let owner = diag.as_mut().and_then(|d| d.lookup(tcp, client, server));
                    handoff.lookups.push((cp.key, owner));
                }
            }
            tracker.track(ts, link, data);
            for r in tracker.poll_expired(ts) {
                if r.transport == FlowTransport::Quic {
                    udp_seen.remove(&(r.client, r.server));
                }
                handoff.done.push(r);
            }
            if handoff.len() >= early_at {
                handoffs.take(Instant::now(), 1.0);
                if !offer(&attr, &mut handoff, false) {
                    orphaned = true;
                }
                early_at = handoff.len() + HANDOFF_MAX;
            }
        });
        let now = Instant::now();
        if !handoff.is_empty() && now >= handoffs.ready_at(1.0) {
            handoffs.take(now, 1.0);
            if !offer(&attr, &mut handoff, false) {
                return;
            }
            early_at = handoff.len() + HANDOFF_MAX;
        }
        match read {
            Ok(0) => {
                // The ring has nothing more for now: sleep until packets come (or a
                // while, under steady traffic), the handoff is due, or it is time to
                // look for flows that went idle.
                let steady = steady_sleep(ring_bytes, now.saturating_duration_since(last_dry));
                ring_bytes = 0;
                last_dry = now;
                let mut wait = steady.unwrap_or(Duration::from_millis(100));
                if !handoff.is_empty() {
                    wait = wait.min(handoffs.ready_at(1.0).saturating_duration_since(now));
                }
                let ms = wait.as_millis().clamp(1, 100) as i32;
                if steady.is_some() {
                    std::thread::sleep(Duration::from_millis(ms as u64));
                } else {
                    wait_readable(&cap, ms);
                }
                for r in tracker.poll_expired(wall_clock()) {
                    if r.transport == FlowTransport::Quic {
                        udp_seen.remove(&(r.client, r.server));
                    }
                    handoff.done.push(r);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!("packet capture stopped: {e}");
                *status.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("STOPPED: {e}"));
                break;
            }
        }
    }
    if orphaned {
        return;
    }
    if let Ok(st) = cap.stats() {
        tracing::info!(
            received = st.received,
            dropped = st.dropped,
            "packet capture ended"
        );
    }
    handoff.done.extend(tracker.finish());
    offer(&attr, &mut handoff, true);
}

/// How a thread of the agent is scheduled next to the user's programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadClass {
    /// The capture thread: `SCHED_BATCH` (waking never preempts whatever the user
    /// runs; the kernel lets it run at the next tick or on an idle core) and, when
    /// the agent may (root or CAP_SYS_NICE), nice -10 for a larger share of a busy
    /// core: its ring holds only a few hundred milliseconds of a busy link, and a
    /// capture thread that gets too little CPU on a loaded machine loses packets. It
    /// uses well under 1 % of a core.
    Capture,
    /// The attribution thread: `SCHED_BATCH` at the default nice. It must find a
    /// socket's process while the connection is still open, often by searching
    /// all of `/proc` for a process just started, so it cannot wait as `Deferred`
    /// work may: with a busy loop on every core, lone requests from new processes
    /// lost their process at `SCHED_IDLE` (all of five) and at nice 19 (two of
    /// five), and kept it at nice 0. Its searches keep to a CPU budget of their
    /// own (`ScanPacer`), and as a batch thread it never preempts on waking.
    Attribution,
    /// Work that can wait (classification, the spool, uploads):
    /// `SCHED_IDLE`, so any program of the user's that wakes up takes the core from
    /// it at once. Its input waits in bounded queues meanwhile; even on a core that
    /// is busy all the time it gets a small share (the kernel's weight for idle
    /// threads), enough for the few events a second a busy machine produces.
    Deferred,
}

/// Applies `class` to the calling thread. Failing to is not an error (the thread
/// then keeps the default policy); it is logged at debug level.
pub fn set_thread_class(class: ThreadClass) {
    let (policy, nice) = match class {
        ThreadClass::Capture => (libc::SCHED_BATCH, -10),
        ThreadClass::Attribution => (libc::SCHED_BATCH, 0),
        ThreadClass::Deferred => (libc::SCHED_IDLE, 0),
    };
    // SAFETY: gettid has no preconditions; sched_setscheduler and setpriority only
    // read their arguments (a valid sched_param for the call's duration).
    let (set_policy, set_nice) = unsafe {
        let tid = libc::gettid();
        let param = libc::sched_param { sched_priority: 0 };
        let set_policy = libc::sched_setscheduler(tid, policy, &param);
        let set_nice = if nice == 0 {
            0
        } else {
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
        };
        (set_policy, set_nice)
    };
    if set_policy != 0 || set_nice != 0 {
        tracing::debug!(
            ?class,
            "thread keeps part of its default scheduling: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Waits until the capture has packets or `ms` passed.
fn wait_readable(cap: &pcap::Capture<pcap::Active>, ms: i32) {
    use std::os::fd::AsRawFd as _;
    let mut pfd = libc::pollfd {
        fd: cap.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe {
        libc::poll(&mut pfd, 1, ms);
    }
}

struct Owner {
    user: Option<String>,
    process: Option<ProcessInfo>,
    at: Instant,
}

impl Owner {
    fn new(user: Option<String>, process: Option<ProcessInfo>) -> Self {
        Self {
            user,
            process,
            at: Instant::now(),
        }
    }
}

/// The share of one core the searches of the processes may use over time. A
/// search reads every descriptor of the processes that own recent connections, one
/// readlink each, so its cost grows with the number of open files of a busy client:
/// one with thousands of them opening connections non-stop makes rounds rarer
/// instead of making the agent expensive. Rounds that a full budget allows are
/// never delayed by it.
const SCAN_CPU_SHARE: f64 = 0.005;
/// CPU time the searches may spend at once from a full budget (a search of every
/// process when a new client appears costs a few milliseconds).
const SCAN_BURST: Duration = Duration::from_millis(50);

/// When the next round of searching may start: when the CPU budget is back in
/// credit.
struct ScanPacer(Bucket);

impl ScanPacer {
    fn new(now: Instant) -> Self {
        Self(Bucket::full(now, SCAN_CPU_SHARE, SCAN_BURST.as_secs_f64()))
    }

    fn next_at(&self) -> Instant {
        self.0.ready_at(0.0)
    }

    fn due(&self, now: Instant) -> bool {
        now >= self.next_at()
    }

    /// A round that started at `start` used `cpu` of CPU time.
    fn spent(&mut self, start: Instant, cpu: Duration) {
        self.0.take(start, cpu.as_secs_f64());
    }
}

/// CPU time used by the calling thread (what a round of searching costs, whatever
/// else the machine is doing meanwhile).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is valid for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Finds the owners of sockets: sock_diag for the uid and inode of one socket, then
/// one search of the processes for the inodes of many.
struct Attributor {
    diag: Option<sockdiag::SockDiag>,
    procs: sockdiag::ProcIndex,
    pacer: ScanPacer,
    rounds: u64,
}

impl Attributor {
    fn socket(&mut self, (tcp, client, server): FlowKey) -> Option<sockdiag::SocketOwner> {
        self.diag
            .as_mut()
            .and_then(|d| d.lookup(tcp, client, server))
    }

    /// One round: searches the processes for the sockets of `sockets` (key and
    /// inode), counting its CPU time against the budget. Afterwards
    /// [`sockdiag::ProcIndex::known_pid`] answers for the sockets it found.
    fn search(&mut self, sockets: &[(FlowKey, u32)]) {
        let start = Instant::now();
        let cpu = thread_cpu_time();
        let inodes: Vec<u32> = sockets.iter().map(|&(_, i)| i).collect();
        let diag = &mut self.diag;
        // A socket whose file was closed since (inode 0 now, or gone) is in no
        // process's descriptors: searching every process for it is futile.
        let still_open = |inode: u32| {
            sockets.iter().any(|&((tcp, c, s), i)| {
                i == inode
                    && diag
                        .as_mut()
                        .and_then(|d| d.lookup(tcp, c, s))
                        .is_some_and(|now| now.inode == inode)
            })
        };
        self.procs.find(&inodes, still_open);
        self.rounds += 1;
        self.pacer
            .spent(start, thread_cpu_time().saturating_sub(cpu));
    }

    fn process_of(&mut self, inode: u32) -> Option<ProcessInfo> {
        self.procs
            .known_pid(inode)
            .and_then(|pid| self.procs.process_info(pid))
    }
}

fn attribution_loop(
    rx: std::sync::mpsc::Receiver<Handoff>,
    keep: HostFilter,
    out: tokio::sync::mpsc::Sender<ObservedFlow>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    set_thread_class(ThreadClass::Attribution);
    let diag = match sockdiag::SockDiag::open() {
        Ok(d) => Some(d),
        Err(e) => {
            // The capture thread, which asks first, has said so already.
            tracing::debug!("sock_diag unavailable to the attribution thread: {e}");
            None
        }
    };
    let mut attr = Attributor {
        diag,
        procs: sockdiag::ProcIndex::default(),
        pacer: ScanPacer::new(Instant::now()),
        rounds: 0,
    };
    let mut owners: HashMap<FlowKey, Owner> = HashMap::new();
    // Open sockets whose process is not known yet, for the next round.
    let mut pending: Vec<(FlowKey, u32)> = Vec::new();
    let mut lookups = 0u64;
    loop {
        let next = if pending.is_empty() {
            rx.recv().ok()
        } else {
            let wait = attr
                .pacer
                .next_at()
                .saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(h) => Some(h),
                Err(RecvTimeoutError::Timeout) => Some(Handoff::default()),
                Err(RecvTimeoutError::Disconnected) => None,
            }
        };
        let Some(mut batch) = next else {
            let st = attr.procs.stats;
            tracing::info!(
                lookups,
                rounds = attr.rounds,
                process_scans = st.process_scans,
                full_scans = st.full_scans,
                "attribution ended"
            );
            return;
        };
        while let Ok(more) = rx.try_recv() {
            batch.lookups.extend(more.lookups);
            batch.done.extend(more.done);
        }
        if owners.len() > 50_000 {
            // Connections that were never TLS never produce a record; forget their
            // owners after a while.
            owners.retain(|_, o| o.at.elapsed() < Duration::from_secs(600));
        }
        for (key, socket) in batch.lookups {
            lookups += 1;
            let user = socket.and_then(|s| attr.procs.user_name(s.uid));
            let mut process = None;
            if let Some(s) = socket.filter(|s| s.inode != 0) {
                // A socket an earlier round already passed needs no search.
                process = attr.process_of(s.inode);
                if process.is_none() {
                    pending.push((key, s.inode));
                }
            }
            tracing::debug!(client = %key.1, server = %key.2, tcp = key.0, user = ?user, "new connection");
            owners.insert(key, Owner::new(user, process));
        }
        if !pending.is_empty() && attr.pacer.due(Instant::now()) {
            attr.search(&pending);
            for (key, inode) in pending.drain(..) {
                let process = attr.process_of(inode);
                if let Some(o) = owners.get_mut(&key) {
                    tracing::debug!(client = %key.1, server = %key.2, process = ?process.as_ref().map(|p| p.pid), "connection attributed");
                    o.process = process;
                }
            }
        }
        if batch.done.is_empty() {
            continue;
        }
        let keys: Vec<FlowKey> = batch
            .done
            .iter()
            .map(|r| (r.transport == FlowTransport::Tcp, r.client, r.server))
            .collect();
        if !pending.is_empty() {
            // A connection that ended is not searched for any more: its socket is
            // closed or about to be, and its flow goes out now.
            let ended: HashSet<&FlowKey> = keys.iter().collect();
            pending.retain(|(k, _)| !ended.contains(k));
        }
        // LLM flows that were never looked up (capture started after their SYN):
        // their sockets may still be open. Other flows are dropped by the pipeline
        // and are not searched for.
        let late: Vec<(FlowKey, Option<sockdiag::SocketOwner>)> = keys
            .iter()
            .zip(&batch.done)
            .filter(|(k, r)| !owners.contains_key(*k) && r.sni.as_deref().is_some_and(|h| keep(h)))
            .map(|(k, _)| (*k, attr.socket(*k)))
            .collect();
        let late_open: Vec<(FlowKey, u32)> = late
            .iter()
            .filter_map(|(k, s)| s.filter(|s| s.inode != 0).map(|s| (*k, s.inode)))
            .collect();
        if !late_open.is_empty() && attr.pacer.due(Instant::now()) {
            attr.search(&late_open);
        }
        for (key, socket) in late {
            let user = socket.and_then(|s| attr.procs.user_name(s.uid));
            let process = socket
                .filter(|s| s.inode != 0)
                .and_then(|s| attr.process_of(s.inode));
            owners.insert(key, Owner::new(user, process));
        }
        for (key, r) in keys.iter().zip(&batch.done) {
            let (user, process) = owners
                .remove(key)
                .map_or((None, None), |o| (o.user, o.process));
            if out.blocking_send(to_observed(r, user, process)).is_err() {
                return;
            }
        }
    }
}

pub fn to_observed(
    r: &FlowRecord,
    user: Option<String>,
    process: Option<ProcessInfo>,
) -> ObservedFlow {
    let started_at =
        DateTime::<Utc>::from_timestamp(r.first_ts.as_secs() as i64, r.first_ts.subsec_nanos())
            .unwrap_or_else(Utc::now);
    ObservedFlow {
        transport: match r.transport {
            FlowTransport::Tcp => Transport::Tcp,
            FlowTransport::Quic => Transport::Quic,
        },
        started_at,
        duration_ms: r.duration().as_millis() as u64,
        sni: r.sni.clone(),
        alpn: r.alpn.clone(),
        ja4: (!r.ja4.is_empty()).then(|| r.ja4.clone()),
        ech: r.ech,
        bytes_out: r.bytes_out,
        bytes_in: r.bytes_in,
        records_in: r.records_in,
        overhead: r.overhead,
        dst_ip: Some(r.server.ip()),
        dst_port: Some(r.server.port()),
        user,
        process,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_attribution_queue_holds_items_back_instead_of_stalling_capture() {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Handoff>(1);
        let key = |port| {
            (
                true,
                SocketAddr::from(([10, 0, 0, 1], port)),
                SocketAddr::from(([10, 0, 0, 2], 443)),
            )
        };
        let mut h = Handoff::default();
        h.lookups.push((key(1), None));
        assert!(offer(&tx, &mut h, false));
        assert!(h.is_empty());
        // The queue is full now: the next items stay with the capture thread.
        h.lookups.push((key(2), None));
        assert!(offer(&tx, &mut h, false));
        assert_eq!(h.len(), 1);
        h.lookups.push((key(3), None));
        assert!(offer(&tx, &mut h, false));
        assert_eq!(h.len(), 2);
        // Room again: everything held back goes in one handoff, in order.
        assert_eq!(rx.recv().unwrap().len(), 1);
        assert!(offer(&tx, &mut h, false));
        assert!(h.is_empty());
        let ports: Vec<u16> = rx
            .recv()
            .unwrap()
            .lookups
            .iter()
            .map(|(k, _)| k.1.port())
            .collect();
        assert_eq!(ports, [2, 3]);
        drop(rx);
        h.lookups.push((key(4), None));
        assert!(
            !offer(&tx, &mut h, false),
            "a gone attribution thread is reported"
        );
    }

    /// An Ethernet frame: IPv4 or IPv6, then TCP (with `flags` and `payload`) or
    /// UDP, from port 50000 to `port`.
    fn frame(v6: bool, tcp: bool, port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&50000u16.to_be_bytes());
        l4.extend_from_slice(&port.to_be_bytes());
        if tcp {
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]); // seq, ack
            l4.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        l4.extend_from_slice(payload);
        let proto = if tcp { 6 } else { 17 };
        let mut f = vec![0u8; 12];
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&[0xfd; 32]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        }
        f.extend_from_slice(&l4);
        f
    }

    #[test]
    fn the_kernel_filter_keeps_what_the_tracker_uses_and_drops_pure_acks() {
        let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap();
        let prog = cap.compile(&bpf_filter(&[443, 8443]), true).unwrap();
        const SYN: u8 = 0x02;
        const FIN: u8 = 0x01;
        const RST: u8 = 0x04;
        const ACK: u8 = 0x10;
        const PSH: u8 = 0x08;
        for v6 in [false, true] {
            let keeps = |tcp, port, flags, payload: &[u8]| {
                prog.filter(&frame(v6, tcp, port, flags, payload))
            };
            assert!(keeps(true, 443, SYN, b""), "SYN (v6 {v6})");
            assert!(keeps(true, 443, SYN | ACK, b""), "SYN-ACK");
            assert!(keeps(true, 443, FIN | ACK, b""), "FIN");
            assert!(keeps(true, 443, RST, b""), "RST");
            assert!(keeps(true, 443, PSH | ACK, b"\x16\x03\x01"), "data");
            assert!(keeps(true, 8443, ACK, b"x"), "one byte on another port");
            assert!(
                !keeps(true, 443, ACK, b""),
                "a pure ACK is dropped (v6 {v6})"
            );
            assert!(keeps(false, 443, 0, b"quic"), "UDP");
            assert!(!keeps(true, 80, PSH | ACK, b"GET /"), "other ports");
            assert!(!keeps(false, 53, 0, b"dns"), "other UDP");
        }
    }

    #[test]
    fn loopback_outgoing_copy_is_recognised() {
        let mut sll = [0u8; 16];
        sll[0..2].copy_from_slice(&4u16.to_be_bytes());
        sll[2..4].copy_from_slice(&772u16.to_be_bytes());
        assert!(is_loopback_duplicate(LinkType::LinuxSll, &sll));
        sll[0..2].copy_from_slice(&0u16.to_be_bytes());
        assert!(!is_loopback_duplicate(LinkType::LinuxSll, &sll));
    }

    #[test]
    fn a_busy_ring_is_read_at_intervals_that_leave_half_of_it_free() {
        // Quiet: wait for the ring.
        assert_eq!(steady_sleep(0, Duration::from_millis(30)), None);
        // A few connections a second: waited for, so that hellos are read at once.
        assert_eq!(steady_sleep(20_000, Duration::from_millis(50)), None);
        // 100 Mbit/s: 12.5 MB/s fills half of a 2 MiB ring in 84 ms.
        assert_eq!(
            steady_sleep(12_500_000 / 20, Duration::from_millis(50)),
            Some(STEADY_SLEEP)
        );
        // 1 Gbit/s: 8 ms.
        let s = steady_sleep(125_000_000 / 20, Duration::from_millis(50)).unwrap();
        assert!(
            s > Duration::from_millis(7) && s < Duration::from_millis(9),
            "{s:?}"
        );
    }

    #[test]
    fn searching_keeps_to_its_cpu_budget() {
        let t0 = Instant::now();
        let mut p = ScanPacer::new(t0);
        // Cheap rounds are never delayed.
        assert!(p.due(t0));
        p.spent(t0, Duration::from_micros(200));
        assert!(p.due(t0 + Duration::from_millis(1)));
        // A search of every process costing more than the burst: the next round
        // waits until the budget is back in credit (some 10 ms over at 0.5 %: 2 s).
        let t1 = t0 + Duration::from_millis(1);
        p.spent(t1, SCAN_BURST + Duration::from_millis(10));
        assert!(!p.due(t1 + Duration::from_millis(1900)));
        assert!(p.due(t1 + Duration::from_millis(2100)));
        // A client that makes every round cost 5 ms, searched for whenever allowed:
        // over a minute the searches use no more than their share of a core
        // (plus the one burst).
        let mut q = ScanPacer::new(t0);
        let (mut now, mut cpu) = (t0, Duration::ZERO);
        let end = t0 + Duration::from_secs(60);
        while now < end {
            if q.due(now) {
                q.spent(now, Duration::from_millis(5));
                cpu += Duration::from_millis(5);
            }
            now += Duration::from_millis(1);
        }
        let share = cpu.as_secs_f64() / 60.0;
        assert!(
            share <= SCAN_CPU_SHARE + SCAN_BURST.as_secs_f64() / 60.0 + 0.0002,
            "share {share}"
        );
        assert!(share >= SCAN_CPU_SHARE * 0.9, "the budget is used: {share}");
    }

    #[test]
    fn handoffs_go_at_once_after_a_quiet_spell_and_at_their_rate_under_load() {
        let t0 = Instant::now();
        let mut b = Bucket::full(t0, HANDOFF_RATE, HANDOFF_BURST);
        // A few connections together: each handoff at once.
        for _ in 0..HANDOFF_BURST as usize {
            assert!(b.ready_at(1.0) <= t0);
            b.take(t0, 1.0);
        }
        assert_eq!(
            b.ready_at(1.0),
            t0 + Duration::from_secs_f64(1.0 / HANDOFF_RATE)
        );
        // A stream for a minute, a handoff whenever allowed: the rate, plus the burst.
        let (mut now, mut sent) = (t0, 0);
        while now < t0 + Duration::from_secs(60) {
            if b.ready_at(1.0) <= now {
                b.take(now, 1.0);
                sent += 1;
            }
            now += Duration::from_millis(1);
        }
        assert!((595..=601).contains(&sent), "{sent}");
    }

    /// A ClientHello as a real TLS stack (rustls) writes it.
    fn rustls_hello(host: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut conn =
            rustls::ClientConnection::new(Arc::new(config), host.to_owned().try_into().unwrap())
                .unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn owners_are_looked_up_only_for_kept_hosts() {
        let keep = |h: &str| h == "api.openai.com";
        let llm = rustls_hello("api.openai.com");
        assert_eq!(hello_verdict(&llm, &keep), HelloVerdict::Keep);
        assert_eq!(
            hello_verdict(&rustls_hello("www.example.com"), &keep),
            HelloVerdict::Skip
        );
        // The rest of the hello is in a later segment: not classifiable yet.
        assert_eq!(hello_verdict(&llm[..60], &keep), HelloVerdict::Unknown);
        assert_eq!(
            hello_verdict(b"GET / HTTP/1.1\r\nhost: api.openai.com\r\n\r\n", &keep),
            HelloVerdict::Skip
        );
    }
}
