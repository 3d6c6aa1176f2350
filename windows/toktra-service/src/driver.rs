//! The capture driver's reader: drains toktra-wfp.sys's ring through DeviceIoControl
//! on `\\.\ToktraWfp` and hands finished flows to the pipeline. TLS hellos arrive
//! parsed by the driver; QUIC flows arrive as copies of their first client datagrams,
//! which are decrypted here with toktra-wire (the kernel build has no QUIC crypto).
//!
//! Without the driver (not installed, not started, or under Wine without its WFP
//! stand-in) the service keeps running on extension events alone: the status says
//! "driver not present", the log says so once, and the device is probed again quietly
//! every [`PROBE_INTERVAL`] — no error loop.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ptr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use driver_abi::{
    ABI_VERSION, EVENT_RECORD_SIZE, EventKind, EventRecord, IOCTL_TOKTRA_GET_VERSION,
    IOCTL_TOKTRA_READ_EVENTS, MAX_EVENTS_PER_READ, PAYLOAD_CAP, USER_PATH_W, VERSION_INFO_SIZE,
    VersionInfo,
};
use tokio::sync::{mpsc, watch};
use toktra_agent::pipeline::ObservedFlow;
use toktra_proto::{ProcessInfo, Transport};
use toktra_wire::quic::feed_client_datagram;
use toktra_wire::{HelloAssembler, HelloInfo, Progress, StreamKind};
use windows_sys::Win32::Foundation::{
    CloseHandle, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{CreateFileW, OPEN_EXISTING};
use windows_sys::Win32::System::IO::DeviceIoControl;

use crate::protocol::DriverState;
use crate::runtime::Shared;
use crate::win::last_error;

pub const PROBE_INTERVAL: Duration = Duration::from_secs(30);
const DRAIN_INTERVAL: Duration = Duration::from_millis(500);
/// Flows whose hello was seen but whose end never came are forgotten after this many.
const MAX_PENDING_FLOWS: usize = 65_536;
/// QUIC flows whose Initials are being decrypted at once (each holds an assembler).
const MAX_QUIC_ASSEMBLING: usize = 1024;
/// QUIC datagrams copied at connect time, waiting for their flow's first record.
const MAX_CONNECT_DATAGRAMS: usize = 1024;

struct Device(HANDLE);

// SAFETY: a device handle may be used from any thread; we use it from one.
unsafe impl Send for Device {}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: opened by CreateFileW, closed once.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

impl Device {
    fn open() -> std::io::Result<Self> {
        // SAFETY: NUL-terminated path constant.
        let h = unsafe {
            CreateFileW(
                USER_PATH_W.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                0,
                ptr::null(),
                OPEN_EXISTING,
                0,
                ptr::null_mut(),
            )
        };
        if h == INVALID_HANDLE_VALUE {
            return Err(last_error());
        }
        Ok(Self(h))
    }

    fn ioctl(&self, code: u32, out: &mut [u8]) -> std::io::Result<usize> {
        let mut returned = 0u32;
        // SAFETY: `out` is writable for its length; synchronous call, no OVERLAPPED.
        let ok = unsafe {
            DeviceIoControl(
                self.0,
                code,
                ptr::null(),
                0,
                out.as_mut_ptr().cast(),
                out.len() as u32,
                &mut returned,
                ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(last_error());
        }
        Ok((returned as usize).min(out.len()))
    }
}

fn set_state(shared: &Shared, status: &Mutex<Option<String>>, state: DriverState, line: &str) {
    let mut cur = shared.driver.lock().unwrap_or_else(|p| p.into_inner());
    if *cur != state
        || status
            .lock()
            .map(|s| s.as_deref() != Some(line))
            .unwrap_or(true)
    {
        match state {
            DriverState::Present => tracing::info!("capture driver: {line}"),
            _ => tracing::warn!("capture driver: {line}"),
        }
    }
    *cur = state;
    *status.lock().unwrap_or_else(|p| p.into_inner()) = Some(line.to_owned());
}

/// Polls until shutdown. Blocking DeviceIoControl calls run on a thread of their own.
pub async fn poll(
    shared: Arc<Shared>,
    flows: mpsc::Sender<ObservedFlow>,
    status: Arc<Mutex<Option<String>>>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tokio::task::spawn_blocking(move || poll_blocking(&shared, &flows, &status, &shutdown))
        .await;
}

fn sleep_or_stop(shutdown: &watch::Receiver<bool>, d: Duration) -> bool {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() {
        if *shutdown.borrow() {
            return true;
        }
        std::thread::sleep(step.min(left));
        left = left.saturating_sub(step);
    }
    *shutdown.borrow()
}

fn poll_blocking(
    shared: &Shared,
    flows: &mpsc::Sender<ObservedFlow>,
    status: &Mutex<Option<String>>,
    shutdown: &watch::Receiver<bool>,
) {
    loop {
        match Device::open() {
            Err(e) => {
                const NOT_FOUND: [i32; 2] = [2, 3]; // ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND
                let line = if e.raw_os_error().is_some_and(|c| NOT_FOUND.contains(&c)) {
                    "driver not present".to_owned()
                } else {
                    format!("driver not present ({e})")
                };
                set_state(shared, status, DriverState::NotPresent, &line);
            }
            Ok(dev) => match check_version(&dev) {
                Ok(v) => {
                    set_state(
                        shared,
                        status,
                        DriverState::Present,
                        &format!(
                            "toktra-wfp {}.{}.{} (ABI {})",
                            v.driver_major, v.driver_minor, v.driver_patch, v.abi_version
                        ),
                    );
                    if drain(&dev, shared, flows, shutdown).is_err() {
                        // The device went away (driver stopped): probe again.
                        set_state(
                            shared,
                            status,
                            DriverState::NotPresent,
                            "driver not present (stopped)",
                        );
                    }
                }
                Err(line) => set_state(shared, status, DriverState::Incompatible, &line),
            },
        }
        if sleep_or_stop(shutdown, PROBE_INTERVAL) {
            return;
        }
    }
}

fn check_version(dev: &Device) -> Result<VersionInfo, String> {
    let mut buf = [0u8; VERSION_INFO_SIZE];
    let n = dev
        .ioctl(IOCTL_TOKTRA_GET_VERSION, &mut buf)
        .map_err(|e| format!("driver present but GET_VERSION failed: {e}"))?;
    let v = VersionInfo::read_from(&buf[..n]).ok_or("driver sent a short version record")?;
    if v.abi_version != ABI_VERSION || v.event_record_size as usize != EVENT_RECORD_SIZE {
        return Err(format!(
            "driver speaks ABI {} (records of {} bytes), this service ABI {ABI_VERSION} ({EVENT_RECORD_SIZE} bytes): update both together",
            v.abi_version, v.event_record_size
        ));
    }
    Ok(v)
}

fn drain(
    dev: &Device,
    shared: &Shared,
    flows: &mpsc::Sender<ObservedFlow>,
    shutdown: &watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; EVENT_RECORD_SIZE * MAX_EVENTS_PER_READ];
    let mut reader = RecordReader::default();
    loop {
        let n = dev.ioctl(IOCTL_TOKTRA_READ_EVENTS, &mut buf)?;
        for rec in EventRecord::decode_batch(&buf[..n - n % EVENT_RECORD_SIZE]) {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("driver record rejected: {e}");
                    continue;
                }
            };
            shared.driver_events.fetch_add(1, Relaxed);
            if let Some(flow) = reader.take(&rec)
                && flows.blocking_send(flow).is_err()
            {
                return Ok(()); // pipeline stopped
            }
        }
        let full = n >= buf.len();
        if !full && sleep_or_stop(shutdown, DRAIN_INTERVAL) {
            return Ok(());
        }
    }
}

/// What the reader keeps of a flow until its FlowEnd record.
enum Pending {
    /// The driver parsed the TLS ClientHello itself.
    Tls(Box<EventRecord>),
    /// QUIC: the driver copies the first client datagrams; they are decrypted here.
    Quic(Box<QuicFlow>),
}

struct QuicFlow {
    /// Reassembles the CRYPTO stream; dropped once the hello is complete or the flow
    /// turned out not to be readable QUIC.
    assembler: Option<Box<HelloAssembler>>,
    /// Some Initial of this flow decrypted, so later failures are other packets
    /// (0-RTT, Handshake), not a sign that the flow is not QUIC.
    decrypted: bool,
    hello: Option<HelloInfo>,
}

/// A flow's addresses, to join the QUIC datagram the driver copied at connect time
/// (before WFP gave the flow an id) to the flow's later records.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Endpoints {
    ip_version: u8,
    local: ([u8; 16], u16),
    remote: ([u8; 16], u16),
}

impl Endpoints {
    fn of(r: &EventRecord) -> Self {
        Self {
            ip_version: r.ip_version,
            local: (r.local_addr, r.local_port),
            remote: (r.remote_addr, r.remote_port),
        }
    }
}

/// Turns the driver's records, in ring order, into finished flows. Kept apart from the
/// device so the record logic is testable with records alone.
pub struct RecordReader {
    pending: HashMap<u64, Pending>,
    connect_datagrams: HashMap<Endpoints, Box<EventRecord>>,
    /// QUIC flows holding an assembler (about 18 KiB each).
    quic_assembling: usize,
    /// Decryption buffer for one datagram.
    scratch: Vec<u8>,
    last_seq: Option<u64>,
}

impl Default for RecordReader {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            connect_datagrams: HashMap::new(),
            quic_assembling: 0,
            scratch: vec![0; PAYLOAD_CAP],
            last_seq: None,
        }
    }
}

impl RecordReader {
    /// Takes one record; returns the flow it finished, if any.
    pub fn take(&mut self, rec: &EventRecord) -> Option<ObservedFlow> {
        if let Some(prev) = self.last_seq
            && rec.sequence > prev + 1
        {
            tracing::warn!(
                "driver ring overflowed: {} events lost",
                rec.sequence - prev - 1
            );
        }
        self.last_seq = Some(rec.sequence);
        match rec.event_kind() {
            Ok(EventKind::TlsHello) => {
                self.make_room();
                self.pending
                    .insert(rec.flow_id, Pending::Tls(Box::new(*rec)));
                None
            }
            Ok(EventKind::QuicInitial) if rec.flow_id == 0 => {
                if self.connect_datagrams.len() >= MAX_CONNECT_DATAGRAMS {
                    self.connect_datagrams.clear();
                }
                self.connect_datagrams
                    .insert(Endpoints::of(rec), Box::new(*rec));
                None
            }
            Ok(EventKind::QuicInitial) => {
                self.quic_datagram(rec);
                None
            }
            Ok(EventKind::FlowEnd) => {
                self.connect_datagrams.remove(&Endpoints::of(rec));
                match self.pending.remove(&rec.flow_id) {
                    Some(Pending::Tls(hello)) => to_flow(rec, Some(&hello), None),
                    Some(Pending::Quic(q)) => {
                        if q.assembler.is_some() {
                            self.quic_assembling = self.quic_assembling.saturating_sub(1);
                        }
                        to_flow(rec, None, q.hello.as_ref())
                    }
                    None => to_flow(rec, None, None),
                }
            }
            // Connect carries attribution the flow records repeat.
            _ => None,
        }
    }

    fn make_room(&mut self) {
        if self.pending.len() >= MAX_PENDING_FLOWS {
            self.pending.clear();
            self.quic_assembling = 0;
        }
    }

    fn quic_datagram(&mut self, rec: &EventRecord) {
        if !self.pending.contains_key(&rec.flow_id) {
            if self.quic_assembling >= MAX_QUIC_ASSEMBLING {
                tracing::debug!(
                    "QUIC flow {} not decrypted: {MAX_QUIC_ASSEMBLING} already pending",
                    rec.flow_id
                );
                return;
            }
            self.make_room();
            self.quic_assembling += 1;
            let mut q = Box::new(QuicFlow {
                assembler: Some(Box::new(HelloAssembler::new(StreamKind::QuicCrypto))),
                decrypted: false,
                hello: None,
            });
            if let Some(first) = self.connect_datagrams.remove(&Endpoints::of(rec))
                && feed_quic(&mut q, first.payload(), &mut self.scratch)
            {
                self.quic_assembling = self.quic_assembling.saturating_sub(1);
            }
            self.pending.insert(rec.flow_id, Pending::Quic(q));
        }
        if let Some(Pending::Quic(q)) = self.pending.get_mut(&rec.flow_id)
            && feed_quic(q, rec.payload(), &mut self.scratch)
        {
            self.quic_assembling = self.quic_assembling.saturating_sub(1);
        }
    }
}

/// Feeds one client datagram to a QUIC flow through toktra-wire's Initial path (the
/// one the Linux flow tracker uses). Returns true when this datagram released the
/// flow's assembler (hello complete, or the flow is not readable QUIC).
fn feed_quic(q: &mut QuicFlow, datagram: &[u8], scratch: &mut [u8]) -> bool {
    let Some(asm) = q.assembler.as_mut() else {
        return false;
    };
    let done = match feed_client_datagram(datagram, scratch, asm) {
        Ok((_, Progress::Complete(hello))) => {
            q.hello = Some(HelloInfo::new(&hello, toktra_wire::Transport::Quic));
            true
        }
        Ok((_, Progress::NeedMore)) => {
            q.decrypted = true;
            false
        }
        // The flow's first datagram does not decrypt: not QUIC we can read.
        Err(_) if !q.decrypted => true,
        // A later undecryptable packet is skipped; a broken CRYPTO stream stays broken.
        Err(_) => asm.client_hello().is_none() && asm.push(0, &[]).is_err(),
    };
    if done {
        q.assembler = None;
    }
    done
}

/// Windows system time (100 ns since 1601) to UTC.
fn filetime(t: u64) -> Option<DateTime<Utc>> {
    const EPOCH_DIFF_SECS: i64 = 11_644_473_600;
    if t == 0 {
        return None;
    }
    let secs = (t / 10_000_000) as i64 - EPOCH_DIFF_SECS;
    let nanos = ((t % 10_000_000) * 100) as u32;
    Utc.timestamp_opt(secs, nanos).single()
}

fn ip(version: u8, raw: &[u8; 16]) -> Option<IpAddr> {
    match version {
        4 => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(*raw))),
        _ => None,
    }
}

/// A finished flow from its FlowEnd record, completed by the TLS hello record seen
/// earlier or by the hello decrypted from the flow's QUIC Initials.
pub fn to_flow(
    end: &EventRecord,
    hello: Option<&EventRecord>,
    quic: Option<&HelloInfo>,
) -> Option<ObservedFlow> {
    let src = |f: fn(&EventRecord) -> bool| -> &EventRecord {
        match hello {
            Some(h) if !f(end) => h,
            _ => end,
        }
    };
    let named = src(|r| r.sni_len > 0);
    let lossy = |a: &[u8]| String::from_utf8_lossy(a).into_owned();
    let (sni, alpn, ja4, ech) = match quic {
        Some(q) => (
            q.sni_str().map(str::to_owned),
            q.alpn().map(lossy).collect(),
            Some(q.ja4.as_str().to_owned()),
            q.ech,
        ),
        None => (
            named.sni().map(str::to_owned),
            named.alpn_ids().map(lossy).collect(),
            named.ja4().map(str::to_owned),
            named.flags & driver_abi::flags::ECH != 0,
        ),
    };
    let started = filetime(end.started_at).or_else(|| filetime(end.timestamp))?;
    let path_rec = src(|r| r.app_path_len > 0);
    let path = String::from_utf16_lossy(path_rec.app_path_utf16());
    let process = (end.process_id != 0 || !path.is_empty()).then(|| ProcessInfo {
        pid: end.process_id as u32,
        name: path
            .rsplit(['\\', '/'])
            .next()
            .unwrap_or_default()
            .to_owned(),
        path: (!path.is_empty()).then_some(path.clone()),
    });
    Some(ObservedFlow {
        transport: if end.ip_protocol == 17 {
            Transport::Quic
        } else {
            Transport::Tcp
        },
        started_at: started,
        duration_ms: end.duration / 10_000,
        sni,
        alpn,
        ja4,
        ech,
        bytes_out: end.bytes_out,
        bytes_in: end.bytes_in,
        // QUIC's records are encrypted: the driver counts none for a UDP flow, and
        // a count of 0 would read as "measured, none" where the Linux agent (and
        // the estimator) mean "not known".
        records_in: (end.ip_protocol != 17).then_some(u64::from(end.records_in)),
        overhead: Default::default(),
        dst_ip: ip(end.ip_version, &end.remote_addr),
        dst_port: (end.remote_port != 0).then_some(end.remote_port),
        user: src(|r| r.user_sid_len > 0)
            .user_sid_string()
            .map(|s| s.to_string()),
        process,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use toktra_wire::quic::{VERSION_1, VERSION_2, seal_client_initial};

    /// The committed Chromium fixture: a mode byte, then the plaintext frames of a real
    /// Chromium ClientHello for api.openai.com, split over two Initials.
    const CHROMIUM_V1: &[u8] =
        include_bytes!("../../../fuzz/seeds/quic_initial/chromium-two-initials-v1");
    const CHROMIUM_V2: &[u8] =
        include_bytes!("../../../fuzz/seeds/quic_initial/chromium-two-initials-v2");
    /// 2026-11-26 00:00:00 UTC as Windows system time.
    const T0: u64 = 134_401_248_000_000_000;

    /// The seed's two client Initials, sealed as the quic_initial fuzz target does.
    fn two_initials(seed: &[u8], version: u32) -> [Vec<u8>; 2] {
        let (mode, frames) = seed.split_first().unwrap();
        let cut = usize::from(mode >> 2 & 0x0f) * frames.len() / 15;
        let seal = |pn, f: &[u8]| {
            let mut out = vec![0u8; f.len() + 128];
            let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
            let n = seal_client_initial(version, &dcid, &[7, 7], pn, f, &mut out).unwrap();
            out.truncate(n);
            out
        };
        [seal(0, &frames[..cut]), seal(1, &frames[cut..])]
    }

    struct Feed {
        reader: RecordReader,
        seq: u64,
    }

    impl Feed {
        fn new() -> Self {
            Self {
                reader: RecordReader::default(),
                seq: 0,
            }
        }

        fn record(
            &mut self,
            kind: EventKind,
            flow_id: u64,
            payload: &[u8],
        ) -> Option<ObservedFlow> {
            let mut r = EventRecord::ZERO;
            self.seq += 1;
            r.sequence = self.seq;
            r.kind = kind as u16;
            r.flow_id = flow_id;
            r.ip_version = 4;
            r.ip_protocol = 17;
            r.local_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
            r.remote_addr[..4].copy_from_slice(&[104, 18, 7, 192]);
            r.local_port = 50_000;
            r.remote_port = 443;
            r.timestamp = T0 + self.seq;
            r.started_at = T0;
            r.bytes_out = 2400;
            r.bytes_in = 9000;
            r.payload[..payload.len()].copy_from_slice(payload);
            r.payload_len = payload.len() as u16;
            self.reader.take(&r)
        }
    }

    fn assert_chromium_quic(flow: Option<ObservedFlow>) {
        let flow = flow.expect("FlowEnd yields a flow");
        assert_eq!(flow.transport, Transport::Quic);
        assert_eq!(flow.sni.as_deref(), Some("api.openai.com"));
        assert_eq!(flow.alpn, ["h2", "http/1.1"]);
        assert!(
            flow.ja4.as_deref().is_some_and(|j| j.starts_with("q13")),
            "{:?}",
            flow.ja4
        );
        assert_eq!((flow.bytes_out, flow.bytes_in), (2400, 9000));
        assert_eq!(flow.records_in, None, "QUIC records cannot be counted");
    }

    #[test]
    fn a_hello_split_over_two_initials_gives_the_quic_flow_its_sni_v1_and_v2() {
        for (seed, version) in [(CHROMIUM_V1, VERSION_1), (CHROMIUM_V2, VERSION_2)] {
            let [p0, p1] = two_initials(seed, version);
            let mut f = Feed::new();
            assert!(f.record(EventKind::QuicInitial, 7, &p0).is_none());
            assert_eq!(
                f.reader.quic_assembling, 1,
                "the first Initial leaves the hello incomplete"
            );
            assert!(f.record(EventKind::QuicInitial, 7, &p1).is_none());
            assert_eq!(
                f.reader.quic_assembling, 0,
                "the assembler is released once the hello is complete"
            );
            assert_chromium_quic(f.record(EventKind::FlowEnd, 7, &[]));
            assert!(f.reader.pending.is_empty());
        }
    }

    #[test]
    fn initials_out_of_order_and_repeated_still_give_the_hello() {
        let [p0, p1] = two_initials(CHROMIUM_V1, VERSION_1);
        let mut f = Feed::new();
        f.record(EventKind::QuicInitial, 9, &p1);
        f.record(EventKind::QuicInitial, 9, &p1);
        f.record(EventKind::QuicInitial, 9, &p0);
        assert_chromium_quic(f.record(EventKind::FlowEnd, 9, &[]));
    }

    #[test]
    fn the_datagram_copied_at_connect_joins_its_flow() {
        // ALE_AUTH_CONNECT copies the first datagram before WFP has a flow id (0); the
        // flow's own records then carry only the second Initial.
        let [p0, p1] = two_initials(CHROMIUM_V2, VERSION_2);
        let mut f = Feed::new();
        assert!(f.record(EventKind::Connect, 0, &[]).is_none());
        assert!(f.record(EventKind::QuicInitial, 0, &p0).is_none());
        assert!(f.record(EventKind::QuicInitial, 11, &p1).is_none());
        assert_chromium_quic(f.record(EventKind::FlowEnd, 11, &[]));
        assert!(f.reader.connect_datagrams.is_empty());
    }

    #[test]
    fn a_datagram_that_is_not_a_client_initial_gives_up_at_once() {
        let mut junk = vec![0xc3u8; 1250];
        junk[1..5].copy_from_slice(&1u32.to_be_bytes());
        let mut f = Feed::new();
        f.record(EventKind::QuicInitial, 5, &junk);
        assert_eq!(
            f.reader.quic_assembling, 0,
            "no assembler kept for an unreadable flow"
        );
        let flow = f
            .record(EventKind::FlowEnd, 5, &[])
            .expect("the flow still ends");
        assert_eq!(flow.transport, Transport::Quic);
        assert_eq!(flow.sni, None);
    }

    #[test]
    fn a_tls_flow_takes_sni_alpn_and_ja4_from_the_driver_hello() {
        let mut f = Feed::new();
        let mut hello = EventRecord::ZERO;
        hello.kind = EventKind::TlsHello as u16;
        hello.flow_id = 3;
        hello.sequence = 1;
        hello.ip_protocol = 6;
        hello.sni[..14].copy_from_slice(b"api.openai.com");
        hello.sni_len = 14;
        hello.alpn[..3].copy_from_slice(b"\x02h2");
        hello.alpn_len = 3;
        hello.ja4[..4].copy_from_slice(b"t13d");
        hello.ja4_len = 4;
        assert!(f.reader.take(&hello).is_none());
        let mut end = hello;
        end.kind = EventKind::FlowEnd as u16;
        end.sequence = 2;
        end.sni_len = 0;
        end.alpn_len = 0;
        end.ja4_len = 0;
        end.started_at = T0;
        end.records_in = 12;
        let flow = f.reader.take(&end).unwrap();
        assert_eq!(flow.transport, Transport::Tcp);
        assert_eq!(flow.records_in, Some(12));
        assert_eq!(flow.sni.as_deref(), Some("api.openai.com"));
        assert_eq!(flow.alpn, ["h2"]);
        assert_eq!(flow.ja4.as_deref(), Some("t13d"));
    }
}
