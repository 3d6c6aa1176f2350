//! The Linux capture source: a passive AF_PACKET tap on all interfaces (libpcap's
//! "any" device, which uses a TPACKET_V3 ring) with a kernel BPF filter so that only
//! TCP and UDP on the configured ports (443 by default) reach user space. It only
//! receives copies of packets: it cannot drop, delay or change traffic.
//!
//! Packets go into the flow tracker. A TCP connection whose ClientHello names a
//! catalog host (classification before attribution: other flows are dropped in
//! memory, so nobody's processes are searched for them), and the first datagram of a
//! UDP 4-tuple, are handed to an attribution thread that asks sock_diag for the
//! socket's owner while the connection is still open, so the capture thread never
//! waits on netlink or /proc. Work is handed over once per ring block, and the
//! attribution thread searches the processes once for all sockets of a handoff.

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

/// The kernel filter: TCP and UDP to or from the configured ports.
pub fn bpf_filter(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(|p| format!("port {p}")).collect();
    format!("(tcp or udp) and ({})", ports.join(" or "))
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

/// What the capture thread hands the attribution thread, once per ring block (or
/// sooner when many connections arrive): one message and one wake-up for a burst of
/// connections, where one per packet was a measurable share of the agent's cost.
#[derive(Default)]
struct Handoff {
    /// LLM connections (or connections that could not be classified yet) whose
    /// owner should be looked up while their socket is still open.
    lookups: Vec<FlowKey>,
    /// Flows that ended.
    done: Vec<FlowRecord>,
}

impl Handoff {
    fn is_empty(&self) -> bool {
        self.lookups.is_empty() && self.done.is_empty()
    }
}

/// A handoff is sent early once it holds this many items, so a long burst of packets
/// (a ring that never runs dry) still reaches attribution while sockets are open.
const HANDOFF_MAX: usize = 64;

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
        // with the capture thread at a raised priority (see `raise_priority`) that
        // was enough for no kernel drops at 200 connections/s plus 100 Mbit/s on a
        // busy 2-core machine, where without it 2 MiB dropped hundreds of packets a
        // minute. Kernel drops are reported (status and log).
        .buffer_size(2 << 20)
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
        "capturing on {} with filter {filter:?}",
        cfg.device
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
    raise_priority();
    let mut tracker = FlowTracker::new(FlowConfig::default());
    // UDP 4-tuples already looked up (QUIC has no SYN to mark the start).
    let mut udp_seen: HashSet<(SocketAddr, SocketAddr)> = HashSet::new();
    let mut awaiting: HashMap<FlowKey, Duration> = HashMap::new();
    let mut handoff = Handoff::default();
    let mut dropped = 0u32;
    let mut next_stats = Instant::now() + Duration::from_secs(10);
    let flush =
        |handoff: &mut Handoff| handoff.is_empty() || attr.send(std::mem::take(handoff)).is_ok();
    while !stop.load(Ordering::Relaxed) {
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
        match cap.next_packet() {
            Ok(p) => {
                let data = p.data;
                if is_loopback_duplicate(link, data) {
                    continue;
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
                            handoff.lookups.push(cp.key);
                        }
                    } else if cp.syn {
                        if awaiting.len() >= MAX_AWAITING {
                            awaiting
                                .retain(|_, at| ts.saturating_sub(*at) < Duration::from_secs(10));
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
                        handoff.lookups.push(cp.key);
                    }
                }
                tracker.track(ts, link, data);
                for r in tracker.poll_expired(ts) {
                    if r.transport == FlowTransport::Quic {
                        udp_seen.remove(&(r.client, r.server));
                    }
                    handoff.done.push(r);
                }
                if handoff.lookups.len() + handoff.done.len() >= HANDOFF_MAX && !flush(&mut handoff)
                {
                    return;
                }
            }
            Err(pcap::Error::TimeoutExpired) => {
                // The ring has nothing more for now: hand over this block's work
                // before sleeping.
                if !flush(&mut handoff) {
                    return;
                }
                wait_readable(&cap, 100);
                for r in tracker.poll_expired(wall_clock()) {
                    if r.transport == FlowTransport::Quic {
                        udp_seen.remove(&(r.client, r.server));
                    }
                    handoff.done.push(r);
                }
            }
            Err(e) => {
                tracing::error!("packet capture stopped: {e}");
                *status.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("STOPPED: {e}"));
                break;
            }
        }
    }
    if let Ok(st) = cap.stats() {
        tracing::info!(
            received = st.received,
            dropped = st.dropped,
            "packet capture ended"
        );
    }
    handoff.done.extend(tracker.finish());
    flush(&mut handoff);
}

/// Gives the capture thread a higher scheduling priority when the agent may (root or
/// CAP_SYS_NICE). The ring holds a few hundred milliseconds of a busy link; on a
/// loaded machine a capture thread that waits that long for a core loses packets.
/// The thread uses well under 1 % of a core, so running it first takes nothing
/// measurable from anyone else.
fn raise_priority() {
    // SAFETY: gettid has no preconditions; setpriority only reads its arguments.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, -10)
    };
    if rc != 0 {
        tracing::debug!(
            "capture thread keeps the default priority: {}",
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

/// Finds the owners of many sockets at once: one sock_diag query per socket, then
/// one search of the processes for all their inodes together.
struct Attributor {
    diag: Option<sockdiag::SockDiag>,
    procs: sockdiag::ProcIndex,
}

impl Attributor {
    fn owners(&mut self, keys: &[FlowKey]) -> Vec<Owner> {
        let sockets: Vec<Option<sockdiag::SocketOwner>> = keys
            .iter()
            .map(|&(tcp, client, server)| {
                self.diag
                    .as_mut()
                    .and_then(|d| d.lookup(tcp, client, server))
            })
            .collect();
        let wanted: Vec<u32> = sockets.iter().flatten().map(|o| o.inode).collect();
        if !wanted.is_empty() {
            let diag = &mut self.diag;
            // A socket whose file was closed since (inode 0 now, or gone) is in no
            // process's descriptors: searching every process for it is futile.
            let still_open = |inode: u32| {
                keys.iter().zip(&sockets).any(|(&(tcp, c, s), o)| {
                    o.is_some_and(|o| o.inode == inode)
                        && diag
                            .as_mut()
                            .and_then(|d| d.lookup(tcp, c, s))
                            .is_some_and(|now| now.inode == inode)
                })
            };
            self.procs.find(&wanted, still_open);
        }
        sockets
            .into_iter()
            .map(|o| {
                let (user, process) = match o {
                    Some(o) => (
                        self.procs.user_name(o.uid),
                        self.procs
                            .known_pid(o.inode)
                            .and_then(|pid| self.procs.process_info(pid)),
                    ),
                    None => (None, None),
                };
                Owner {
                    user,
                    process,
                    at: Instant::now(),
                }
            })
            .collect()
    }
}

fn attribution_loop(
    rx: std::sync::mpsc::Receiver<Handoff>,
    keep: HostFilter,
    out: tokio::sync::mpsc::Sender<ObservedFlow>,
) {
    let diag = match sockdiag::SockDiag::open() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!("sock_diag unavailable, flows will carry no process or user: {e}");
            None
        }
    };
    let mut attr = Attributor {
        diag,
        procs: sockdiag::ProcIndex::default(),
    };
    let mut owners: HashMap<FlowKey, Owner> = HashMap::new();
    let mut lookups = 0u64;
    let mut batches = 0u64;
    loop {
        let Ok(mut batch) = rx.recv() else {
            let st = attr.procs.stats;
            tracing::info!(
                lookups,
                batches,
                process_scans = st.process_scans,
                full_scans = st.full_scans,
                "attribution ended"
            );
            return;
        };
        // Whatever else is queued joins this round: one search of the processes
        // serves all of it.
        while let Ok(more) = rx.try_recv() {
            batch.lookups.extend(more.lookups);
            batch.done.extend(more.done);
        }
        if !batch.lookups.is_empty() {
            lookups += batch.lookups.len() as u64;
            batches += 1;
            if owners.len() > 50_000 {
                // Connections that were never TLS never produce a record; forget
                // their owners after a while.
                owners.retain(|_, o| o.at.elapsed() < Duration::from_secs(600));
            }
            let found = attr.owners(&batch.lookups);
            for (key, owner) in batch.lookups.into_iter().zip(found) {
                tracing::debug!(client = %key.1, server = %key.2, tcp = key.0, user = ?owner.user, process = ?owner.process.as_ref().map(|p| p.pid), "new connection attributed");
                owners.insert(key, owner);
            }
        }
        let flows: Vec<(FlowKey, Option<Owner>)> = batch
            .done
            .iter()
            .map(|r| {
                let key = (r.transport == FlowTransport::Tcp, r.client, r.server);
                let owner = owners
                    .remove(&key)
                    .filter(|o| o.user.is_some() || o.process.is_some());
                (key, owner)
            })
            .collect();
        // LLM flows whose owner is unknown (capture started after their SYN, or a
        // split hello): their sockets may still be open. Other flows are dropped by
        // the pipeline and are not searched for.
        let late: Vec<FlowKey> = flows
            .iter()
            .zip(&batch.done)
            .filter(|((_, o), r)| o.is_none() && r.sni.as_deref().is_some_and(|h| keep(h)))
            .map(|((k, _), _)| *k)
            .collect();
        let mut late_owners = attr.owners(&late).into_iter();
        for ((_, owner), r) in flows.into_iter().zip(&batch.done) {
            let owner = match owner {
                Some(o) => Some(o),
                None if r.sni.as_deref().is_some_and(|h| keep(h)) => late_owners.next(),
                None => None,
            };
            let (user, process) = owner.map_or((None, None), |o| (o.user, o.process));
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
    fn filter_text() {
        assert_eq!(bpf_filter(&[443]), "(tcp or udp) and (port 443)");
        assert_eq!(
            bpf_filter(&[443, 8443]),
            "(tcp or udp) and (port 443 or port 8443)"
        );
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
