//! The Linux capture source: a passive AF_PACKET tap on all interfaces (libpcap's
//! "any" device, which uses a TPACKET_V3 ring) with a kernel BPF filter so that only
//! TCP and UDP on the configured ports (443 by default) reach user space. It only
//! receives copies of packets: it cannot drop, delay or change traffic.
//!
//! Packets go into the flow tracker; each new connection (a SYN, or the first
//! datagram of a UDP 4-tuple) is handed to an attribution thread that asks
//! sock_diag for the socket's owner while the connection is still open, so the
//! capture thread never waits on netlink or /proc.

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

enum Attr {
    Lookup {
        tcp: bool,
        client: SocketAddr,
        server: SocketAddr,
    },
    Done(Box<FlowRecord>),
}

type FlowKey = (bool, SocketAddr, SocketAddr);

/// Opens the tap (failing at once, with the fix, when the capability is missing)
/// and starts its threads; finished flows go to `out`.
pub fn start(
    cfg: &TapConfig,
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
        .snaplen(65_535)
        // The ring's pages count towards the agent's memory once touched, and all
        // of them are touched as the ring wraps. 4 MiB holds about 300 ms of a
        // saturated 100 Mbit/s link: 2 MiB dropped a few hundred packets a minute at
        // that load on a busy 2-core machine, where the capture thread can wait that
        // long for a core. Kernel drops are reported (status and log).
        .buffer_size(4 << 20)
        // Packets are delivered in ring blocks; a block is handed over at the latest
        // after this long. Short, because the socket owner is looked up when the SYN
        // is read, and a connection must still be open then; long enough that a busy
        // link costs tens of wake-ups a second, not thousands.
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
    let (attr_tx, attr_rx) = std::sync::mpsc::sync_channel::<Attr>(65_536);
    let ports: HashSet<u16> = cfg.ports.iter().copied().collect();
    let stop2 = stop.clone();
    let status2 = status.clone();
    let capture = std::thread::Builder::new()
        .name("toktra-tap".into())
        .spawn(move || capture_loop(cap, link, ports, attr_tx, stop2, status2))
        .map_err(|e| TapError::Open {
            device: cfg.device.clone(),
            reason: e.to_string(),
        })?;
    let attribution = std::thread::Builder::new()
        .name("toktra-attr".into())
        .spawn(move || attribution_loop(attr_rx, out))
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

/// A connection's first packet from its client, if this frame is one.
fn new_connection(link: LinkType, frame: &[u8], ports: &HashSet<u16>) -> Option<FlowKey> {
    let l3 = link::parse(link, frame).ok()?;
    let ip = IpPacket::parse(l3.payload).ok()?;
    match ip.protocol() {
        PROTO_TCP => {
            let tcp = TcpSegment::parse(ip.payload()).ok()?;
            let f = tcp.flags();
            (f.syn() && !f.ack() && ports.contains(&tcp.dst_port())).then(|| {
                (
                    true,
                    SocketAddr::new(ip.src(), tcp.src_port()),
                    SocketAddr::new(ip.dst(), tcp.dst_port()),
                )
            })
        }
        PROTO_UDP => {
            let udp = UdpDatagram::parse(ip.payload()).ok()?;
            ports.contains(&udp.dst_port()).then(|| {
                (
                    false,
                    SocketAddr::new(ip.src(), udp.src_port()),
                    SocketAddr::new(ip.dst(), udp.dst_port()),
                )
            })
        }
        _ => None,
    }
}

fn capture_loop(
    mut cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    ports: HashSet<u16>,
    attr: std::sync::mpsc::SyncSender<Attr>,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<Option<String>>>,
) {
    let mut tracker = FlowTracker::new(FlowConfig::default());
    // UDP 4-tuples already looked up (QUIC has no SYN to mark the start).
    let mut udp_seen: HashSet<(SocketAddr, SocketAddr)> = HashSet::new();
    let emit = |r: FlowRecord, udp_seen: &mut HashSet<(SocketAddr, SocketAddr)>| {
        if r.transport == FlowTransport::Quic {
            udp_seen.remove(&(r.client, r.server));
        }
        attr.send(Attr::Done(Box::new(r))).is_ok()
    };
    let mut dropped = 0u32;
    let mut next_stats = Instant::now() + Duration::from_secs(10);
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
                if let Some((tcp, client, server)) = new_connection(link, data, &ports) {
                    let fresh = tcp || {
                        if udp_seen.len() > 100_000 {
                            udp_seen.clear();
                        }
                        udp_seen.insert((client, server))
                    };
                    if fresh {
                        let _ = attr.try_send(Attr::Lookup {
                            tcp,
                            client,
                            server,
                        });
                    }
                }
                tracker.track(ts, link, data);
                let ready: Vec<FlowRecord> = tracker.poll_expired(ts).collect();
                for r in ready {
                    if !emit(r, &mut udp_seen) {
                        return;
                    }
                }
            }
            Err(pcap::Error::TimeoutExpired) => {
                wait_readable(&cap, 100);
                let ready: Vec<FlowRecord> = tracker.poll_expired(wall_clock()).collect();
                for r in ready {
                    if !emit(r, &mut udp_seen) {
                        return;
                    }
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
    for r in tracker.finish() {
        let _ = attr.send(Attr::Done(Box::new(r)));
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

fn attribution_loop(
    rx: std::sync::mpsc::Receiver<Attr>,
    out: tokio::sync::mpsc::Sender<ObservedFlow>,
) {
    let mut diag = match sockdiag::SockDiag::open() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!("sock_diag unavailable, flows will carry no process or user: {e}");
            None
        }
    };
    let mut procs = sockdiag::ProcIndex::default();
    let mut owners: HashMap<FlowKey, Owner> = HashMap::new();
    let resolve = |diag: &mut Option<sockdiag::SockDiag>,
                   procs: &mut sockdiag::ProcIndex,
                   key: FlowKey|
     -> Owner {
        let found = diag.as_mut().and_then(|d| d.lookup(key.0, key.1, key.2));
        let (user, process) = match found {
            Some(o) => (
                procs.user_name(o.uid),
                procs
                    .pid_of_inode(o.inode)
                    .and_then(|pid| procs.process_info(pid)),
            ),
            None => (None, None),
        };
        Owner {
            user,
            process,
            at: Instant::now(),
        }
    };
    while let Ok(msg) = rx.recv() {
        match msg {
            Attr::Lookup {
                tcp,
                client,
                server,
            } => {
                let key = (tcp, client, server);
                let owner = resolve(&mut diag, &mut procs, key);
                tracing::debug!(%client, %server, tcp, user = ?owner.user, process = ?owner.process.as_ref().map(|p| p.pid), "new connection attributed");
                if owners.len() > 50_000 {
                    // Connections that were never TLS never produce a record; forget
                    // their owners after a while.
                    owners.retain(|_, o| o.at.elapsed() < Duration::from_secs(600));
                }
                owners.insert(key, owner);
            }
            Attr::Done(r) => {
                let key = (r.transport == FlowTransport::Tcp, r.client, r.server);
                let owner = owners
                    .remove(&key)
                    .filter(|o| o.user.is_some() || o.process.is_some())
                    // Capture started after the SYN: the socket may still be there.
                    .unwrap_or_else(|| resolve(&mut diag, &mut procs, key));
                let flow = to_observed(&r, owner.user, owner.process);
                if out.blocking_send(flow).is_err() {
                    return;
                }
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
}
