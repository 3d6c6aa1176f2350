//! The capture driver's reader: drains toktra-wfp.sys's ring through DeviceIoControl
//! on `\\.\ToktraWfp` and hands finished flows to the pipeline.
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
    IOCTL_TOKTRA_READ_EVENTS, MAX_EVENTS_PER_READ, USER_PATH_W, VERSION_INFO_SIZE, VersionInfo,
};
use tokio::sync::{mpsc, watch};
use toktra_agent::pipeline::ObservedFlow;
use toktra_proto::{ProcessInfo, Transport};
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
    if *cur != state || status.lock().map(|s| s.as_deref() != Some(line)).unwrap_or(true) {
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
    let _ = tokio::task::spawn_blocking(move || poll_blocking(&shared, &flows, &status, &shutdown)).await;
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
                        set_state(shared, status, DriverState::NotPresent, "driver not present (stopped)");
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
    let mut hellos: HashMap<u64, EventRecord> = HashMap::new();
    let mut last_seq: Option<u64> = None;
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
            if let Some(prev) = last_seq {
                if rec.sequence > prev + 1 {
                    tracing::warn!("driver ring overflowed: {} events lost", rec.sequence - prev - 1);
                }
            }
            last_seq = Some(rec.sequence);
            shared.driver_events.fetch_add(1, Relaxed);
            match rec.event_kind() {
                Ok(EventKind::TlsHello) => {
                    if hellos.len() >= MAX_PENDING_FLOWS {
                        hellos.clear();
                    }
                    hellos.insert(rec.flow_id, rec);
                }
                Ok(EventKind::FlowEnd) => {
                    let hello = hellos.remove(&rec.flow_id);
                    if let Some(flow) = to_flow(&rec, hello.as_ref()) {
                        if flows.blocking_send(flow).is_err() {
                            return Ok(()); // pipeline stopped
                        }
                    }
                }
                // Connect carries attribution the flow records repeat; QUIC Initials
                // need user-mode decryption, not done by this reader yet.
                _ => {}
            }
        }
        let full = n >= buf.len();
        if !full && sleep_or_stop(shutdown, DRAIN_INTERVAL) {
            return Ok(());
        }
    }
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

/// A finished flow from its FlowEnd record, completed by the hello seen earlier.
pub fn to_flow(end: &EventRecord, hello: Option<&EventRecord>) -> Option<ObservedFlow> {
    let src = |f: fn(&EventRecord) -> bool| -> &EventRecord {
        match hello {
            Some(h) if !f(end) => h,
            _ => end,
        }
    };
    let named = src(|r| r.sni_len > 0);
    let sni = named.sni().map(str::to_owned);
    let started = filetime(end.started_at).or_else(|| filetime(end.timestamp))?;
    let path_rec = src(|r| r.app_path_len > 0);
    let path = String::from_utf16_lossy(path_rec.app_path_utf16());
    let process = (end.process_id != 0 || !path.is_empty()).then(|| ProcessInfo {
        pid: end.process_id as u32,
        name: path.rsplit(['\\', '/']).next().unwrap_or_default().to_owned(),
        path: (!path.is_empty()).then_some(path.clone()),
    });
    Some(ObservedFlow {
        transport: if end.ip_protocol == 17 { Transport::Quic } else { Transport::Tcp },
        started_at: started,
        duration_ms: end.duration / 10_000,
        sni,
        alpn: named.alpn_ids().map(|a| String::from_utf8_lossy(a).into_owned()).collect(),
        ja4: named.ja4().map(str::to_owned),
        ech: named.flags & driver_abi::flags::ECH != 0,
        bytes_out: end.bytes_out,
        bytes_in: end.bytes_in,
        records_in: Some(u64::from(end.records_in)),
        dst_ip: ip(end.ip_version, &end.remote_addr),
        dst_port: (end.remote_port != 0).then_some(end.remote_port),
        user: src(|r| r.user_sid_len > 0).user_sid_string().map(|s| s.to_string()),
        process,
    })
}
