//! The binary contract between the kernel driver `toktra-wfp.sys` and its user-mode
//! reader (`ToktraAgent.exe`, the test reader): device names, IOCTL codes and the
//! `#[repr(C)]` records that cross the DeviceIoControl boundary.
//!
//! Everything here is fixed-size, padding-free and made only of integers and integer
//! arrays, so every bit pattern is a valid value: a reader can decode a record from any
//! buffer without trusting the driver, and a driver can hand out records without
//! leaking uninitialised kernel memory. The layout is pinned by compile-time
//! assertions below; changing it means bumping [`ABI_VERSION`].
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

use core::fmt;

/// Bumped whenever a record layout, an IOCTL or a meaning changes. The reader refuses a
/// driver whose [`VersionInfo::abi_version`] differs.
pub const ABI_VERSION: u32 = 1;

/// The driver's own version, reported through [`IOCTL_TOKTRA_GET_VERSION`].
pub const DRIVER_VERSION: (u16, u16, u16) = (0, 1, 0);

/// Name of the kernel-driver service (what `sc` and the uninstaller use).
pub const SERVICE_NAME: &str = "ToktraWFP";
/// NT name of the control device the driver creates.
pub const DEVICE_NAME: &str = r"\Device\ToktraWfp";
/// Symbolic link that makes the device reachable from user mode.
pub const DOS_DEVICE_NAME: &str = r"\DosDevices\ToktraWfp";
/// The path a user-mode reader passes to `CreateFileW`.
pub const USER_PATH: &str = r"\\.\ToktraWfp";
/// Only SYSTEM and the Administrators group may open the device: the events name
/// processes, users and destinations of everyone on the machine.
pub const DEVICE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";

/// `DEVICE_NAME` as the UTF-16 the kernel's `UNICODE_STRING` wants.
pub const DEVICE_NAME_W: [u16; DEVICE_NAME.len()] = ascii_to_utf16(DEVICE_NAME);
/// `DOS_DEVICE_NAME` as UTF-16.
pub const DOS_DEVICE_NAME_W: [u16; DOS_DEVICE_NAME.len()] = ascii_to_utf16(DOS_DEVICE_NAME);
/// `USER_PATH` as UTF-16, NUL-terminated for `CreateFileW`.
pub const USER_PATH_W: [u16; USER_PATH.len() + 1] = ascii_to_utf16(USER_PATH);
/// `DEVICE_SDDL` as UTF-16.
pub const DEVICE_SDDL_W: [u16; DEVICE_SDDL.len()] = ascii_to_utf16(DEVICE_SDDL);

/// Widens an ASCII string into UTF-16 at compile time; any array slot past the string
/// stays 0 (which gives the NUL terminator when `N` is one longer).
pub const fn ascii_to_utf16<const N: usize>(s: &str) -> [u16; N] {
    let bytes = s.as_bytes();
    let mut out = [0u16; N];
    let mut i = 0;
    while i < bytes.len() && i < N {
        assert!(bytes[i].is_ascii(), "device names are ASCII");
        out[i] = bytes[i] as u16;
        i += 1;
    }
    out
}

/// A vendor device type (0x8000 and above are reserved for vendors).
pub const FILE_DEVICE_TOKTRA: u32 = 0x8B70;
const METHOD_BUFFERED: u32 = 0;
const FILE_READ_ACCESS: u32 = 1;

/// The Windows `CTL_CODE` macro.
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// Output buffer: room for N [`EventRecord`]s; the driver moves up to N of the oldest
/// events into it (they leave the ring) and returns N × `size_of::<EventRecord>()` bytes.
/// An output buffer smaller than one record is `STATUS_BUFFER_TOO_SMALL`.
pub const IOCTL_TOKTRA_READ_EVENTS: u32 =
    ctl_code(FILE_DEVICE_TOKTRA, 0x900, METHOD_BUFFERED, FILE_READ_ACCESS);
/// Output buffer: one [`Counters`].
pub const IOCTL_TOKTRA_GET_COUNTERS: u32 =
    ctl_code(FILE_DEVICE_TOKTRA, 0x901, METHOD_BUFFERED, FILE_READ_ACCESS);
/// Output buffer: one [`VersionInfo`].
pub const IOCTL_TOKTRA_GET_VERSION: u32 =
    ctl_code(FILE_DEVICE_TOKTRA, 0x902, METHOD_BUFFERED, FILE_READ_ACCESS);

/// Upper bound a reader should use for one READ_EVENTS call (64 records, 172 KiB).
pub const MAX_EVENTS_PER_READ: usize = 64;

/// What an [`EventRecord`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum EventKind {
    /// ALE_AUTH_CONNECT: a process asked to connect (TCP) or sent its first datagram
    /// (UDP). Carries process id, application path, user SID and the destination.
    /// `flow_id` is 0: WFP has no flow yet at this layer.
    Connect = 1,
    /// STREAM: the first outbound bytes of a TCP flow held a complete TLS ClientHello.
    /// Carries SNI, ALPN, JA4 plus everything the flow context knows.
    TlsHello = 2,
    /// DATAGRAM_DATA (or ALE_AUTH_CONNECT for UDP's first datagram): one of the first
    /// outbound UDP/443 datagrams of a flow, copied raw into `payload` for user mode to
    /// decrypt (QUIC Initial protection keys derive from public values).
    QuicInitial = 3,
    /// Flow deletion: the final record, with bytes, records and duration.
    FlowEnd = 4,
}

impl EventKind {
    pub const fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::Connect),
            2 => Some(Self::TlsHello),
            3 => Some(Self::QuicInitial),
            4 => Some(Self::FlowEnd),
            _ => None,
        }
    }
}

/// `EventRecord::flags` bits.
pub mod flags {
    /// The ClientHello carried an `encrypted_client_hello` extension: `sni` is the
    /// outer (public) name, not the real destination.
    pub const ECH: u16 = 1 << 0;
    /// `sni`/`alpn`/`ja4` were filled from a parsed ClientHello.
    pub const HELLO_PARSED: u16 = 1 << 1;
    /// The first outbound bytes were not a ClientHello (or not parseable).
    pub const NOT_TLS: u16 = 1 << 2;
    /// The ClientHello was larger than the per-flow buffer cap.
    pub const HELLO_TOO_LARGE: u16 = 1 << 3;
    /// `payload` holds only the first `payload_len` bytes of a longer datagram.
    pub const PAYLOAD_TRUNCATED: u16 = 1 << 4;
    /// `app_path` holds the tail of a longer path.
    pub const APP_PATH_TRUNCATED: u16 = 1 << 5;
    /// The SNI was longer than `sni` and was cut.
    pub const SNI_TRUNCATED: u16 = 1 << 6;
    /// The ALPN list did not fit in `alpn`; only whole ids that fit are kept.
    pub const ALPN_TRUNCATED: u16 = 1 << 7;
    /// The connection was initiated by the remote side (inbound).
    pub const INBOUND: u16 = 1 << 8;
}

pub const SNI_CAP: usize = 256;
pub const ALPN_CAP: usize = 128;
pub const JA4_CAP: usize = 48;
/// SECURITY_MAX_SID_SIZE.
pub const SID_CAP: usize = 68;
/// MAX_PATH UTF-16 units.
pub const APP_PATH_CAP: usize = 260;
/// Enough for a full-MTU datagram; QUIC Initials are padded to at least 1200 bytes.
pub const PAYLOAD_CAP: usize = 1536;

/// One event. Fixed size (see [`EVENT_RECORD_SIZE`]), no padding, every field an
/// integer, so it can be copied in and out of byte buffers safely.
///
/// Timestamps are Windows system time (100 ns units since 1601-01-01 UTC, what
/// `KeQuerySystemTime` returns); durations are 100 ns units; addresses are in network
/// byte order (IPv4 in the first 4 bytes); ports are host order.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EventRecord {
    /// An [`EventKind`] value.
    pub kind: u16,
    /// [`flags`] bits.
    pub flags: u16,
    /// 4 or 6.
    pub ip_version: u8,
    /// IP protocol number: 6 (TCP) or 17 (UDP).
    pub ip_protocol: u8,
    pub _reserved0: [u8; 2],
    /// Increases by one per event written since the driver loaded; a gap seen by the
    /// reader is the number of events lost to ring overflow.
    pub sequence: u64,
    /// WFP flow handle; 0 for [`EventKind::Connect`].
    pub flow_id: u64,
    /// When the event was written.
    pub timestamp: u64,
    /// When the flow was established (0 if unknown).
    pub started_at: u64,
    pub process_id: u64,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    /// TLS application-data records sent (client → server).
    pub records_out: u32,
    /// TLS application-data records received (server → client).
    pub records_in: u32,
    /// Valid bytes in `payload`.
    pub payload_len: u16,
    /// Valid bytes in `sni`.
    pub sni_len: u16,
    /// Stream payload bytes sent so far (FlowEnd: in total).
    pub bytes_out: u64,
    /// Stream payload bytes received so far (FlowEnd: in total).
    pub bytes_in: u64,
    /// FlowEnd: from establishment to deletion.
    pub duration: u64,
    /// Valid bytes in `alpn`.
    pub alpn_len: u16,
    /// Valid bytes in `ja4`.
    pub ja4_len: u16,
    /// Valid UTF-16 units in `app_path`.
    pub app_path_len: u16,
    /// Valid bytes in `user_sid`.
    pub user_sid_len: u16,
    /// Server name as sent by the client (ASCII/IDNA A-labels).
    pub sni: [u8; SNI_CAP],
    /// Offered ALPN ids in order, in TLS wire form (each id prefixed by its length).
    pub alpn: [u8; ALPN_CAP],
    /// JA4 fingerprint, ASCII.
    pub ja4: [u8; JA4_CAP],
    /// The user's SID in binary form (revision, count, authority, sub-authorities).
    pub user_sid: [u8; SID_CAP],
    pub _reserved1: [u8; 4],
    /// NT path of the program (`\device\harddiskvolume3\...\chrome.exe`), UTF-16.
    pub app_path: [u16; APP_PATH_CAP],
    /// QuicInitial: the datagram's UDP payload.
    pub payload: [u8; PAYLOAD_CAP],
}

pub const EVENT_RECORD_SIZE: usize = 2688;

/// The driver's counters, a snapshot taken under the ring lock.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events put into the ring since load.
    pub events_written: u64,
    /// Events handed to a reader.
    pub events_read: u64,
    /// Oldest events overwritten because the ring was full.
    pub events_dropped_overflow: u64,
    /// Events currently waiting in the ring.
    pub ring_used: u64,
    pub ring_capacity: u64,
    /// Flows with a live context right now.
    pub flows_active: u64,
    /// Flows that got a context since load.
    pub flows_tracked: u64,
    /// Flows not tracked because the flow cap was reached or pool was exhausted, plus
    /// flows whose ClientHello found every reassembly slot busy (not inspected).
    pub flows_dropped_cap: u64,
    /// FwpsFlowAssociateContext failed.
    pub flow_associate_failures: u64,
    /// Pool allocation failures of any kind.
    pub alloc_failures: u64,
    pub hellos_parsed: u64,
    /// First outbound bytes that were not a (parseable) ClientHello.
    pub hellos_not_tls: u64,
    /// ClientHellos larger than the per-flow buffer cap.
    pub hellos_too_large: u64,
    pub quic_datagrams_copied: u64,
    /// Classify calls of any layer (how busy the driver is).
    pub classify_calls: u64,
    /// Data the driver could not walk (null or inconsistent NET_BUFFER/MDL chains).
    pub malformed_indications: u64,
}

pub const COUNTERS_SIZE: usize = 16 * 8;

/// Answer to [`IOCTL_TOKTRA_GET_VERSION`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionInfo {
    /// Must equal [`ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<EventRecord>()` as the driver was built.
    pub event_record_size: u32,
    pub driver_major: u16,
    pub driver_minor: u16,
    pub driver_patch: u16,
    pub _reserved: u16,
    pub ring_capacity: u32,
    /// Per-flow ClientHello buffer cap, bytes.
    pub hello_cap: u32,
}

pub const VERSION_INFO_SIZE: usize = 24;

// Layout pins: size, alignment and every offset. No implicit padding anywhere — the
// fields' sizes add up to the struct size — so decoding from bytes is sound.
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<EventRecord>() == EVENT_RECORD_SIZE);
    assert!(align_of::<EventRecord>() == 8);
    assert!(offset_of!(EventRecord, kind) == 0);
    assert!(offset_of!(EventRecord, flags) == 2);
    assert!(offset_of!(EventRecord, ip_version) == 4);
    assert!(offset_of!(EventRecord, ip_protocol) == 5);
    assert!(offset_of!(EventRecord, sequence) == 8);
    assert!(offset_of!(EventRecord, flow_id) == 16);
    assert!(offset_of!(EventRecord, timestamp) == 24);
    assert!(offset_of!(EventRecord, started_at) == 32);
    assert!(offset_of!(EventRecord, process_id) == 40);
    assert!(offset_of!(EventRecord, local_addr) == 48);
    assert!(offset_of!(EventRecord, remote_addr) == 64);
    assert!(offset_of!(EventRecord, local_port) == 80);
    assert!(offset_of!(EventRecord, remote_port) == 82);
    assert!(offset_of!(EventRecord, records_out) == 84);
    assert!(offset_of!(EventRecord, records_in) == 88);
    assert!(offset_of!(EventRecord, payload_len) == 92);
    assert!(offset_of!(EventRecord, sni_len) == 94);
    assert!(offset_of!(EventRecord, bytes_out) == 96);
    assert!(offset_of!(EventRecord, bytes_in) == 104);
    assert!(offset_of!(EventRecord, duration) == 112);
    assert!(offset_of!(EventRecord, alpn_len) == 120);
    assert!(offset_of!(EventRecord, ja4_len) == 122);
    assert!(offset_of!(EventRecord, app_path_len) == 124);
    assert!(offset_of!(EventRecord, user_sid_len) == 126);
    assert!(offset_of!(EventRecord, sni) == 128);
    assert!(offset_of!(EventRecord, alpn) == 384);
    assert!(offset_of!(EventRecord, ja4) == 512);
    assert!(offset_of!(EventRecord, user_sid) == 560);
    assert!(offset_of!(EventRecord, app_path) == 632);
    assert!(offset_of!(EventRecord, payload) == 1152);
    assert!(1152 + PAYLOAD_CAP == EVENT_RECORD_SIZE);

    assert!(size_of::<Counters>() == COUNTERS_SIZE);
    assert!(size_of::<VersionInfo>() == VERSION_INFO_SIZE);
    assert!(offset_of!(VersionInfo, event_record_size) == 4);
    assert!(offset_of!(VersionInfo, driver_major) == 8);
    assert!(offset_of!(VersionInfo, ring_capacity) == 16);
    assert!(offset_of!(VersionInfo, hello_cap) == 20);
};

/// Why bytes could not be decoded into a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer is shorter than the record.
    Short { needed: usize, got: usize },
    /// `kind` is not a known [`EventKind`] (a newer driver, or garbage).
    UnknownKind(u16),
    /// A length field is larger than its array.
    LengthOutOfRange {
        field: &'static str,
        len: usize,
        cap: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short { needed, got } => {
                write!(f, "record needs {needed} bytes, buffer has {got}")
            }
            Self::UnknownKind(k) => write!(f, "unknown event kind {k} (driver newer than reader?)"),
            Self::LengthOutOfRange { field, len, cap } => {
                write!(f, "{field} length {len} exceeds its {cap}-byte field")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

macro_rules! impl_plain_bytes {
    ($t:ty, $size:expr) => {
        impl $t {
            /// The record as the bytes that cross DeviceIoControl.
            pub fn as_bytes(&self) -> &[u8; $size] {
                // SAFETY: repr(C), no padding (pinned above), only integer fields:
                // every byte is initialised, and the size is exactly $size.
                unsafe { &*(self as *const Self as *const [u8; $size]) }
            }

            /// Copies the first `size_of::<Self>()` bytes of `buf` into a value. Every bit
            /// pattern is a valid value, so this cannot produce an invalid one.
            pub fn read_from(buf: &[u8]) -> Option<Self> {
                if buf.len() < $size {
                    return None;
                }
                // SAFETY: length checked; all-integer repr(C) type, any bits are valid;
                // read_unaligned because a byte buffer has no alignment guarantee.
                Some(unsafe { core::ptr::read_unaligned(buf.as_ptr() as *const Self) })
            }
        }
    };
}

impl_plain_bytes!(EventRecord, EVENT_RECORD_SIZE);
impl_plain_bytes!(Counters, COUNTERS_SIZE);
impl_plain_bytes!(VersionInfo, VERSION_INFO_SIZE);

impl EventRecord {
    /// An all-zero record (kind 0 is not valid until the writer sets one).
    pub const ZERO: Self = Self {
        kind: 0,
        flags: 0,
        ip_version: 0,
        ip_protocol: 0,
        _reserved0: [0; 2],
        sequence: 0,
        flow_id: 0,
        timestamp: 0,
        started_at: 0,
        process_id: 0,
        local_addr: [0; 16],
        remote_addr: [0; 16],
        local_port: 0,
        remote_port: 0,
        records_out: 0,
        records_in: 0,
        payload_len: 0,
        sni_len: 0,
        bytes_out: 0,
        bytes_in: 0,
        duration: 0,
        alpn_len: 0,
        ja4_len: 0,
        app_path_len: 0,
        user_sid_len: 0,
        sni: [0; SNI_CAP],
        alpn: [0; ALPN_CAP],
        ja4: [0; JA4_CAP],
        user_sid: [0; SID_CAP],
        _reserved1: [0; 4],
        app_path: [0; APP_PATH_CAP],
        payload: [0; PAYLOAD_CAP],
    };

    /// Decodes and validates one record: known kind, every length within its array.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let rec = Self::read_from(buf).ok_or(DecodeError::Short {
            needed: EVENT_RECORD_SIZE,
            got: buf.len(),
        })?;
        rec.event_kind()?;
        let checks: [(&'static str, u16, usize); 6] = [
            ("sni", rec.sni_len, SNI_CAP),
            ("alpn", rec.alpn_len, ALPN_CAP),
            ("ja4", rec.ja4_len, JA4_CAP),
            ("user_sid", rec.user_sid_len, SID_CAP),
            ("app_path", rec.app_path_len, APP_PATH_CAP),
            ("payload", rec.payload_len, PAYLOAD_CAP),
        ];
        for (field, len, cap) in checks {
            if usize::from(len) > cap {
                return Err(DecodeError::LengthOutOfRange {
                    field,
                    len: len.into(),
                    cap,
                });
            }
        }
        Ok(rec)
    }

    /// Splits a READ_EVENTS output buffer into records.
    pub fn decode_batch(buf: &[u8]) -> impl Iterator<Item = Result<Self, DecodeError>> + '_ {
        buf.chunks(EVENT_RECORD_SIZE).map(Self::decode)
    }

    pub fn event_kind(&self) -> Result<EventKind, DecodeError> {
        EventKind::from_u16(self.kind).ok_or(DecodeError::UnknownKind(self.kind))
    }

    fn clamp<T>(arr: &[T], len: u16) -> &[T] {
        arr.get(..usize::from(len)).unwrap_or(arr)
    }

    /// The SNI, if one was seen and is valid UTF-8.
    pub fn sni(&self) -> Option<&str> {
        if self.sni_len == 0 {
            return None;
        }
        core::str::from_utf8(Self::clamp(&self.sni, self.sni_len)).ok()
    }

    pub fn ja4(&self) -> Option<&str> {
        if self.ja4_len == 0 {
            return None;
        }
        core::str::from_utf8(Self::clamp(&self.ja4, self.ja4_len)).ok()
    }

    /// The offered ALPN ids, in order.
    pub fn alpn_ids(&self) -> AlpnIter<'_> {
        AlpnIter {
            rest: Self::clamp(&self.alpn, self.alpn_len),
        }
    }

    /// The application path as UTF-16 units.
    pub fn app_path_utf16(&self) -> &[u16] {
        Self::clamp(&self.app_path, self.app_path_len)
    }

    pub fn user_sid_bytes(&self) -> &[u8] {
        Self::clamp(&self.user_sid, self.user_sid_len)
    }

    /// The user SID in its `S-1-5-21-…` string form, if the bytes are a well-formed SID.
    pub fn user_sid_string(&self) -> Option<SidDisplay<'_>> {
        SidDisplay::new(self.user_sid_bytes())
    }

    pub fn payload(&self) -> &[u8] {
        Self::clamp(&self.payload, self.payload_len)
    }

    /// Remote address as 4 or 16 bytes, per `ip_version`.
    pub fn remote_ip(&self) -> &[u8] {
        if self.ip_version == 4 {
            &self.remote_addr[..4]
        } else {
            &self.remote_addr
        }
    }

    pub fn local_ip(&self) -> &[u8] {
        if self.ip_version == 4 {
            &self.local_addr[..4]
        } else {
            &self.local_addr
        }
    }
}

impl fmt::Debug for EventRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRecord")
            .field("kind", &EventKind::from_u16(self.kind))
            .field("flags", &format_args!("{:#06x}", self.flags))
            .field("sequence", &self.sequence)
            .field("flow_id", &self.flow_id)
            .field("ip_version", &self.ip_version)
            .field("ip_protocol", &self.ip_protocol)
            .field("remote_port", &self.remote_port)
            .field("process_id", &self.process_id)
            .field("sni", &self.sni())
            .field("ja4", &self.ja4())
            .field("bytes_out", &self.bytes_out)
            .field("bytes_in", &self.bytes_in)
            .field("records_out", &self.records_out)
            .field("records_in", &self.records_in)
            .field("payload_len", &self.payload_len)
            .finish_non_exhaustive()
    }
}

/// Iterator over the length-prefixed ALPN ids in [`EventRecord::alpn`].
pub struct AlpnIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AlpnIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        let len = usize::from(len);
        if len == 0 || len > tail.len() {
            self.rest = &[];
            return None;
        }
        let (id, rest) = tail.split_at(len);
        self.rest = rest;
        Some(id)
    }
}

/// Formats a binary SID as `S-R-I-S1-S2-…`.
pub struct SidDisplay<'a> {
    bytes: &'a [u8],
}

impl<'a> SidDisplay<'a> {
    /// Checks the SID's shape: revision 1, at most 15 sub-authorities, exact length.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        let (&revision, rest) = bytes.split_first()?;
        let (&count, _) = rest.split_first()?;
        if revision != 1 || count > 15 || bytes.len() != 8 + 4 * usize::from(count) {
            return None;
        }
        Some(Self { bytes })
    }
}

impl fmt::Display for SidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bytes;
        let mut authority = 0u64;
        for &byte in b.get(2..8).unwrap_or(&[]) {
            authority = (authority << 8) | u64::from(byte);
        }
        write!(f, "S-{}-{}", b.first().copied().unwrap_or(0), authority)?;
        for sub in b.get(8..).unwrap_or(&[]).chunks_exact(4) {
            let v = u32::from_le_bytes([sub[0], sub[1], sub[2], sub[3]]);
            write!(f, "-{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    #[test]
    fn ioctl_codes_match_ctl_code_macro() {
        // CTL_CODE(0x8B70, 0x900, METHOD_BUFFERED, FILE_READ_ACCESS) computed by hand.
        assert_eq!(IOCTL_TOKTRA_READ_EVENTS, 0x8B70_6400);
        assert_eq!(IOCTL_TOKTRA_GET_COUNTERS, 0x8B70_6404);
        assert_eq!(IOCTL_TOKTRA_GET_VERSION, 0x8B70_6408);
    }

    #[test]
    fn names_widen_to_utf16() {
        let s: Vec<u16> = DEVICE_NAME.encode_utf16().collect();
        assert_eq!(&DEVICE_NAME_W[..], &s[..]);
        assert_eq!(*USER_PATH_W.last().unwrap(), 0);
        assert_eq!(USER_PATH_W.len(), USER_PATH.len() + 1);
    }

    #[test]
    fn record_round_trips_through_bytes() {
        let mut r = EventRecord::ZERO;
        r.kind = EventKind::TlsHello as u16;
        r.sequence = 42;
        r.sni[..11].copy_from_slice(b"example.com");
        r.sni_len = 11;
        r.alpn[..12].copy_from_slice(b"\x02h2\x08http/1.1");
        r.alpn_len = 12;
        let bytes = r.as_bytes().to_vec();
        let back = EventRecord::decode(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.sni(), Some("example.com"));
        let ids: Vec<&[u8]> = back.alpn_ids().collect();
        assert_eq!(ids, [&b"h2"[..], &b"http/1.1"[..]]);
    }

    #[test]
    fn decode_rejects_bad_input() {
        let mut r = EventRecord::ZERO;
        assert_eq!(
            EventRecord::decode(r.as_bytes()),
            Err(DecodeError::UnknownKind(0))
        );
        r.kind = EventKind::FlowEnd as u16;
        r.sni_len = 300;
        assert!(matches!(
            EventRecord::decode(r.as_bytes()),
            Err(DecodeError::LengthOutOfRange { field: "sni", .. })
        ));
        assert!(matches!(
            EventRecord::decode(&[0u8; 10]),
            Err(DecodeError::Short { .. })
        ));
        // Unaligned buffers decode too.
        r.sni_len = 0;
        let mut v = std::vec![0u8; 1];
        v.extend_from_slice(r.as_bytes());
        assert_eq!(EventRecord::decode(&v[1..]).unwrap(), r);
    }

    #[test]
    fn batch_splits_records() {
        let mut a = EventRecord::ZERO;
        a.kind = 1;
        a.sequence = 1;
        let mut b = a;
        b.sequence = 2;
        let mut buf = a.as_bytes().to_vec();
        buf.extend_from_slice(b.as_bytes());
        let got: Vec<u64> = EventRecord::decode_batch(&buf)
            .map(|r| r.unwrap().sequence)
            .collect();
        assert_eq!(got, [1, 2]);
    }

    #[test]
    fn sid_formats_like_windows() {
        // S-1-5-21-1-2-3-1001
        let mut sid = std::vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for v in [21u32, 1, 2, 3, 1001] {
            sid.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            SidDisplay::new(&sid).unwrap().to_string(),
            "S-1-5-21-1-2-3-1001"
        );
        assert!(SidDisplay::new(&sid[..sid.len() - 1]).is_none());
        assert_eq!(
            SidDisplay::new(&[1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0])
                .unwrap()
                .to_string(),
            "S-1-5-18"
        );
    }

    #[test]
    fn alpn_iter_stops_on_malformed_list() {
        let mut r = EventRecord::ZERO;
        r.alpn[..4].copy_from_slice(b"\x02h2\x09");
        r.alpn_len = 4;
        assert_eq!(r.alpn_ids().count(), 1);
    }
}
