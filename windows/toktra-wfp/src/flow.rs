//! Per-flow state and what each layer's classify does with it, as plain code over
//! plain data (no kernel calls), so it runs under `cargo test` on the build host.
//!
//! Memory per flow is fixed: [`Flow`] is about 1.5 KB and holds no buffer that grows.
//! The ClientHello is reassembled in a [`HelloAssembler`] borrowed from a fixed pool
//! only while the hello is in flight, and given back as soon as it is parsed or
//! rejected.

use driver_abi::{self as abi, EventKind, EventRecord, flags};
use toktra_wire::{ClientHello, Error as WireError, HelloAssembler, Progress, Transport};

use crate::wfp::*;

/// Copies what fits; unlike `copy_from_slice` it has no length-mismatch panic path
/// for the optimizer to prove away (see the no-panic link check in lib.rs).
pub fn copy_into<T: Copy>(dst: &mut [T], src: &[T]) -> usize {
    let mut n = 0;
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
        n += 1;
    }
    n
}

/// Who, from where, to where: filled at ALE_AUTH_CONNECT / ALE_FLOW_ESTABLISHED.
#[derive(Clone, Copy)]
pub struct FlowMeta {
    pub ip_version: u8,
    pub ip_protocol: u8,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    pub process_id: u64,
    pub app_path: [u16; abi::APP_PATH_CAP],
    pub app_path_len: u16,
    pub user_sid: [u8; abi::SID_CAP],
    pub user_sid_len: u16,
    /// INBOUND, APP_PATH_TRUNCATED.
    pub flags: u16,
}

impl FlowMeta {
    pub const EMPTY: Self = Self {
        ip_version: 0,
        ip_protocol: 0,
        local_addr: [0; 16],
        remote_addr: [0; 16],
        local_port: 0,
        remote_port: 0,
        process_id: 0,
        app_path: [0; abi::APP_PATH_CAP],
        app_path_len: 0,
        user_sid: [0; abi::SID_CAP],
        user_sid_len: 0,
        flags: 0,
    };

    pub fn fill(&self, rec: &mut EventRecord) {
        rec.ip_version = self.ip_version;
        rec.ip_protocol = self.ip_protocol;
        rec.local_addr = self.local_addr;
        rec.remote_addr = self.remote_addr;
        rec.local_port = self.local_port;
        rec.remote_port = self.remote_port;
        rec.process_id = self.process_id;
        rec.app_path = self.app_path;
        rec.app_path_len = self.app_path_len;
        rec.user_sid = self.user_sid;
        rec.user_sid_len = self.user_sid_len;
        rec.flags |= self.flags;
    }
}

/// Counts TLS records in one direction by walking record headers; record bodies are
/// skipped without being looked at.
#[derive(Clone, Copy, Default)]
pub struct RecordCounter {
    header: [u8; 5],
    header_len: u8,
    body_left: usize,
    /// application_data (23) records seen.
    pub app_data_records: u32,
    /// The stream stopped looking like TLS records; counting stopped.
    pub lost_sync: bool,
}

const TLS_APPLICATION_DATA: u8 = 23;
/// Largest legal TLSCiphertext length (2^14 + 256).
const TLS_MAX_RECORD: usize = 16_640;

impl RecordCounter {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.lost_sync {
            if self.body_left > 0 {
                let skip = self.body_left.min(data.len());
                self.body_left -= skip;
                data = data.get(skip..).unwrap_or_default();
                continue;
            }
            let need = 5 - usize::from(self.header_len);
            let take = need.min(data.len());
            if let (Some(dst), Some(src)) = (
                self.header
                    .get_mut(usize::from(self.header_len)..usize::from(self.header_len) + take),
                data.get(..take),
            ) {
                copy_into(dst, src);
            }
            self.header_len += take as u8;
            data = data.get(take..).unwrap_or_default();
            if self.header_len == 5 {
                self.header_len = 0;
                let [ctype, major, _minor, hi, lo] = self.header;
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                if major != 3 || !(20..=24).contains(&ctype) || len > TLS_MAX_RECORD {
                    self.lost_sync = true;
                    return;
                }
                if ctype == TLS_APPLICATION_DATA {
                    self.app_data_records = self.app_data_records.saturating_add(1);
                }
                self.body_left = len;
            }
        }
    }
}

/// What the events need from a ClientHello, already in the record's shapes. Built
/// here rather than through `toktra_wire::HelloInfo` so that every copy is one the
/// optimizer can prove in bounds (the no-panic link check).
#[derive(Clone, Copy)]
pub struct HelloSummary {
    pub sni: [u8; abi::SNI_CAP],
    pub sni_len: u16,
    /// Offered ALPN ids in wire form (length-prefixed), as many whole ids as fit.
    pub alpn: [u8; abi::ALPN_CAP],
    pub alpn_len: u16,
    pub ja4: [u8; toktra_wire::ja4::JA4_LEN],
    /// ECH, SNI_TRUNCATED, ALPN_TRUNCATED.
    pub flags: u16,
}

impl HelloSummary {
    pub fn new(hello: &ClientHello<'_>) -> Self {
        let mut s = Self {
            sni: [0; abi::SNI_CAP],
            sni_len: 0,
            alpn: [0; abi::ALPN_CAP],
            alpn_len: 0,
            ja4: *toktra_wire::ja4(hello, Transport::Tcp).as_bytes(),
            flags: 0,
        };
        if hello.has_ech() {
            s.flags |= flags::ECH;
        }
        if let Some(name) = hello.server_name() {
            s.sni_len = copy_into(&mut s.sni, name) as u16;
            if name.len() > abi::SNI_CAP {
                s.flags |= flags::SNI_TRUNCATED;
            }
        }
        let mut pos = 0usize;
        for id in hello.alpn().iter().flat_map(|l| l.iter()) {
            let Ok(l) = u8::try_from(id.len()) else {
                s.flags |= flags::ALPN_TRUNCATED;
                continue;
            };
            let end = pos + 1 + id.len();
            match s.alpn.get_mut(pos..end).and_then(|d| d.split_first_mut()) {
                Some((first, rest)) => {
                    *first = l;
                    copy_into(rest, id);
                    pos = end;
                }
                None => {
                    s.flags |= flags::ALPN_TRUNCATED;
                    break;
                }
            }
        }
        s.alpn_len = pos as u16;
        s
    }
}

/// Where the ClientHello of a TCP flow stands. The parsed summary is kept inline (the
/// driver has no allocator); it is what every later event of the flow repeats.
#[derive(Clone, Copy)]
#[allow(clippy::large_enum_variant)]
pub enum HelloState {
    /// No outbound byte yet.
    Waiting,
    /// Bytes are being reassembled in a pool slot.
    Assembling,
    Parsed(HelloSummary),
    /// The first outbound bytes were not a (parseable) ClientHello.
    NotTls,
    /// Larger than toktra-wire's MAX_HELLO_LEN cap.
    TooLarge,
    /// Every assembler slot was busy; this flow's hello is not inspected.
    NoSlot,
    /// Not a TCP flow.
    NotApplicable,
}

/// What one stream indication produced, for the caller to turn into events and
/// counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StreamOutcome {
    /// The hello reached a final state during this indication (parsed or rejected):
    /// emit the TlsHello event (if parsed) and give the assembler back.
    pub hello_finished: bool,
}

pub struct Flow {
    pub flow_id: u64,
    pub layer_id: u16,
    pub callout_id: u32,
    pub started_at: u64,
    pub meta: FlowMeta,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub records_out: RecordCounter,
    pub records_in: RecordCounter,
    pub hello: HelloState,
    /// Index of the borrowed assembler while `hello` is `Assembling`.
    pub assembler_slot: Option<usize>,
    /// QUIC: datagrams copied so far (bounded by [`MAX_QUIC_DATAGRAMS`]).
    pub quic_datagrams: u8,
    /// Index in the driver's live-flow table.
    pub table_slot: usize,
    /// Unload asked the engine to remove this flow's context; its flow-delete call
    /// may still be on the way.
    pub removing: bool,
}

/// First long-header datagrams of a UDP/443 flow copied for user-mode decryption.
pub const MAX_QUIC_DATAGRAMS: u8 = 4;

impl Flow {
    pub fn new(
        flow_id: u64,
        layer_id: u16,
        callout_id: u32,
        started_at: u64,
        meta: &FlowMeta,
    ) -> Self {
        Self {
            flow_id,
            layer_id,
            callout_id,
            started_at,
            meta: *meta,
            bytes_out: 0,
            bytes_in: 0,
            records_out: RecordCounter::default(),
            records_in: RecordCounter::default(),
            hello: if meta.ip_protocol == 6 {
                HelloState::Waiting
            } else {
                HelloState::NotApplicable
            },
            assembler_slot: None,
            quic_datagrams: 0,
            table_slot: usize::MAX,
            removing: false,
        }
    }

    /// Whether this indication needs an assembler (the hello has not started yet).
    pub fn wants_assembler(&self, outbound: bool) -> bool {
        outbound && matches!(self.hello, HelloState::Waiting)
    }

    /// Feeds one contiguous piece of stream data. `assembler` is the flow's borrowed
    /// slot while the hello is being assembled (None if none could be had).
    pub fn on_stream_piece(
        &mut self,
        outbound: bool,
        piece: &[u8],
        assembler: Option<&mut HelloAssembler>,
        out: &mut StreamOutcome,
    ) {
        let offset = if outbound {
            self.bytes_out
        } else {
            self.bytes_in
        };
        let len = piece.len() as u64;
        if outbound {
            self.bytes_out = self.bytes_out.saturating_add(len);
            self.records_out.feed(piece);
        } else {
            self.bytes_in = self.bytes_in.saturating_add(len);
            self.records_in.feed(piece);
        }
        if !outbound {
            return;
        }
        match self.hello {
            HelloState::Waiting | HelloState::Assembling => {}
            _ => return,
        }
        let Some(asm) = assembler else {
            self.hello = HelloState::NoSlot;
            out.hello_finished = true;
            return;
        };
        self.hello = match asm.push(offset, piece) {
            Ok(Progress::NeedMore) => HelloState::Assembling,
            Ok(Progress::Complete(hello)) => HelloState::Parsed(HelloSummary::new(&hello)),
            Err(WireError::HelloTooLarge { .. }) | Err(WireError::TooFragmented { .. }) => {
                HelloState::TooLarge
            }
            Err(_) => HelloState::NotTls,
        };
        if !matches!(self.hello, HelloState::Assembling) {
            out.hello_finished = true;
        }
    }

    /// Fills the parts every event of this flow shares.
    pub fn fill_common(&self, rec: &mut EventRecord, kind: EventKind, now: u64) {
        rec.kind = kind as u16;
        rec.flow_id = self.flow_id;
        rec.timestamp = now;
        rec.started_at = self.started_at;
        self.meta.fill(rec);
        rec.bytes_out = self.bytes_out;
        rec.bytes_in = self.bytes_in;
        rec.records_out = self.records_out.app_data_records;
        rec.records_in = self.records_in.app_data_records;
        match &self.hello {
            HelloState::Parsed(info) => fill_hello(rec, info),
            HelloState::NotTls => rec.flags |= flags::NOT_TLS,
            HelloState::TooLarge => rec.flags |= flags::HELLO_TOO_LARGE,
            _ => {}
        }
    }

    pub fn fill_flow_end(&self, rec: &mut EventRecord, now: u64) {
        self.fill_common(rec, EventKind::FlowEnd, now);
        rec.duration = now.saturating_sub(self.started_at);
    }
}

/// Copies a hello summary into an event.
pub fn fill_hello(rec: &mut EventRecord, h: &HelloSummary) {
    rec.flags |= flags::HELLO_PARSED | h.flags;
    rec.sni = h.sni;
    rec.sni_len = h.sni_len;
    rec.alpn = h.alpn;
    rec.alpn_len = h.alpn_len;
    rec.ja4_len = copy_into(&mut rec.ja4, &h.ja4) as u16;
}

/// Copies up to PAYLOAD_CAP bytes of a datagram into `rec.payload`.
pub fn fill_payload(
    rec: &mut EventRecord,
    mut walk: impl FnMut(&mut dyn FnMut(&[u8])) -> usize,
    total: usize,
) {
    let mut pos = 0usize;
    walk(&mut |piece: &[u8]| {
        let n = piece.len().min(abi::PAYLOAD_CAP - pos);
        if let (Some(dst), Some(src)) = (rec.payload.get_mut(pos..pos + n), piece.get(..n)) {
            copy_into(dst, src);
            pos += n;
        }
    });
    rec.payload_len = pos as u16;
    if total > pos {
        rec.flags |= flags::PAYLOAD_TRUNCATED;
    }
}

/// Whether a UDP payload starts like a QUIC long-header packet (header form and fixed
/// bit set): the Initial, 0-RTT and Handshake packets that open a connection.
pub fn looks_like_quic_long_header(first_byte: u8) -> bool {
    first_byte & 0xC0 == 0xC0
}

/// Reads a value from an incoming-values array, bounded by its count.
///
/// # Safety
/// `values` must be the engine's valid FWPS_INCOMING_VALUES0.
pub unsafe fn incoming_value(values: &FWPS_INCOMING_VALUES0, index: usize) -> Option<FWP_VALUE0> {
    if values.incomingValue.is_null() || index >= values.valueCount as usize {
        return None;
    }
    // SAFETY: index < valueCount and the array is valid (caller).
    Some(unsafe { (*values.incomingValue.add(index)).value })
}

/// Reads an address value: IPv4 arrives as a host-order UINT32, IPv6 as a pointer to
/// 16 network-order bytes.
///
/// # Safety
/// Pointer-typed values must be valid (engine contract).
unsafe fn address(v: Option<FWP_VALUE0>) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match v {
        Some(v) if v.type_ == FWP_UINT32 => {
            out[..4].copy_from_slice(&(v.value as u32).to_be_bytes());
            (out, 4)
        }
        Some(v) if v.type_ == FWP_BYTE_ARRAY16_TYPE && v.value != 0 => {
            // SAFETY: byteArray16 points at 16 bytes (engine contract).
            out = unsafe { (*(v.value as *const FWP_BYTE_ARRAY16)).byteArray16 };
            (out, 6)
        }
        _ => (out, 0),
    }
}

fn small_int(v: Option<FWP_VALUE0>) -> u64 {
    match v {
        Some(v) if v.type_ == FWP_UINT8 => v.value & 0xFF,
        Some(v) if v.type_ == FWP_UINT16 => v.value & 0xFFFF,
        Some(v) if v.type_ == FWP_UINT32 => v.value & 0xFFFF_FFFF,
        _ => 0,
    }
}

/// TOKEN_ACCESS_INFORMATION, declared up to SidHash (winnt.h).
#[repr(C)]
struct TokenAccessInformationPrefix {
    sid_hash: *const SidAndAttributesHashPrefix,
}
/// SID_AND_ATTRIBUTES_HASH, declared up to SidAttr.
#[repr(C)]
struct SidAndAttributesHashPrefix {
    sid_count: u32,
    sid_attr: *const SidAndAttributes,
}
#[repr(C)]
struct SidAndAttributes {
    sid: *const u8,
    attributes: u32,
}

/// Copies a binary SID after checking its shape (revision 1, ≤ 15 sub-authorities).
///
/// # Safety
/// `sid` is null or points at a SID.
unsafe fn copy_sid(sid: *const u8, meta: &mut FlowMeta) {
    if sid.is_null() {
        return;
    }
    // SAFETY: a SID has at least its 8-byte header.
    let (rev, count) = unsafe { (*sid, *sid.add(1)) };
    if rev != 1 || count > 15 {
        return;
    }
    let len = 8 + 4 * usize::from(count);
    // SAFETY: the SID is `len` bytes long by its own count.
    let bytes = unsafe { core::slice::from_raw_parts(sid, len) };
    if let Some(dst) = meta.user_sid.get_mut(..len) {
        copy_into(dst, bytes);
        meta.user_sid_len = len as u16;
    }
}

/// The user SID from ALE_USER_ID: a TOKEN_ACCESS_INFORMATION whose first SID is the
/// user's; older systems hand a plain SID.
///
/// # Safety
/// Pointer-typed values must be valid (engine contract).
unsafe fn user_sid(v: Option<FWP_VALUE0>, meta: &mut FlowMeta) {
    let Some(v) = v else { return };
    if v.value == 0 {
        return;
    }
    match v.type_ {
        FWP_TOKEN_ACCESS_INFORMATION_TYPE => {
            // SAFETY: the blob and the structures it points to are the engine's.
            unsafe {
                let blob = &*(v.value as *const FWP_BYTE_BLOB);
                if blob.data.is_null()
                    || (blob.size as usize) < core::mem::size_of::<TokenAccessInformationPrefix>()
                {
                    return;
                }
                let tai = &*(blob.data as *const TokenAccessInformationPrefix);
                if tai.sid_hash.is_null() {
                    return;
                }
                let hash = &*tai.sid_hash;
                if hash.sid_count == 0 || hash.sid_attr.is_null() {
                    return;
                }
                copy_sid((*hash.sid_attr).sid, meta);
            }
        }
        // SAFETY: a SID pointer (engine contract).
        FWP_SID => unsafe { copy_sid(v.value as *const u8, meta) },
        _ => {}
    }
}

/// Fills a [`FlowMeta`] from the incoming values and metadata of ALE_AUTH_CONNECT or
/// ALE_FLOW_ESTABLISHED (same field indices for the fields used here).
///
/// # Safety
/// Both pointers must be the engine's valid arguments of one classify call.
pub unsafe fn meta_from_ale(
    values: &FWPS_INCOMING_VALUES0,
    metadata: Option<&FWPS_INCOMING_METADATA_VALUES0_PREFIX>,
    direction_index: Option<usize>,
) -> FlowMeta {
    let mut meta = FlowMeta::EMPTY;
    // SAFETY: engine contract on every value read below.
    unsafe {
        let (local, lv) = address(incoming_value(values, FWPS_FIELD_ALE_IP_LOCAL_ADDRESS));
        let (remote, rv) = address(incoming_value(values, FWPS_FIELD_ALE_IP_REMOTE_ADDRESS));
        meta.local_addr = local;
        meta.remote_addr = remote;
        meta.ip_version = lv.max(rv);
        meta.local_port = small_int(incoming_value(values, FWPS_FIELD_ALE_IP_LOCAL_PORT)) as u16;
        meta.remote_port = small_int(incoming_value(values, FWPS_FIELD_ALE_IP_REMOTE_PORT)) as u16;
        meta.ip_protocol = small_int(incoming_value(values, FWPS_FIELD_ALE_IP_PROTOCOL)) as u8;
        user_sid(incoming_value(values, FWPS_FIELD_ALE_USER_ID), &mut meta);
        if let Some(d) = direction_index
            && small_int(incoming_value(values, d)) == u64::from(FWP_DIRECTION_INBOUND)
        {
            meta.flags |= flags::INBOUND;
        }
    }
    if let Some(md) = metadata {
        if md.currentMetadataValues & FWPS_METADATA_FIELD_PROCESS_ID != 0 {
            meta.process_id = md.processId;
        }
        if md.currentMetadataValues & FWPS_METADATA_FIELD_PROCESS_PATH != 0
            && !md.processPath.is_null()
        {
            // SAFETY: processPath is a valid blob of UTF-16 (engine contract).
            unsafe {
                let blob = &*md.processPath;
                if !blob.data.is_null() {
                    let units = (blob.size as usize) / 2;
                    let path = core::slice::from_raw_parts(blob.data as *const u16, units);
                    // The blob's size includes the terminating NUL.
                    let path = match path.iter().position(|&c| c == 0) {
                        Some(n) => path.get(..n).unwrap_or_default(),
                        None => path,
                    };
                    // Keep the tail: the executable name matters more than the volume.
                    let start = path.len().saturating_sub(abi::APP_PATH_CAP);
                    if start > 0 {
                        meta.flags |= flags::APP_PATH_TRUNCATED;
                    }
                    let tail = path.get(start..).unwrap_or_default();
                    if let Some(dst) = meta.app_path.get_mut(..tail.len()) {
                        copy_into(dst, tail);
                        meta.app_path_len = tail.len() as u16;
                    }
                }
            }
        }
    }
    meta
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;
    use toktra_wire::StreamKind;

    /// A ClientHello as openssl s_client 3.0 sends it (`-servername api.openai.com
    /// -alpn h2,http/1.1`), built here so the unit tests need no fixture file; the Wine
    /// suite uses a hello captured from a real openssl at test time.
    pub(super) fn hello() -> Vec<u8> {
        hello_with(&[])
    }

    /// The same hello with `extra` appended to its extensions.
    fn hello_with(extra: &[u8]) -> Vec<u8> {
        let mut ext = Vec::new();
        let name = b"api.openai.com";
        // server_name
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        // ALPN h2, http/1.1
        let alpn = b"\x02h2\x08http/1.1";
        ext.extend_from_slice(&[0, 16]);
        ext.extend_from_slice(&((alpn.len() + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(alpn.len() as u16).to_be_bytes());
        ext.extend_from_slice(alpn);
        // supported_versions: TLS 1.3, 1.2
        ext.extend_from_slice(&[0, 43, 0, 5, 4, 3, 4, 3, 3]);
        ext.extend_from_slice(extra);
        let mut body = Vec::new();
        body.extend_from_slice(&[3, 3]);
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = std::vec![1u8];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = std::vec![22u8, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    fn tcp_meta() -> FlowMeta {
        let mut m = FlowMeta::EMPTY;
        m.ip_protocol = 6;
        m.ip_version = 4;
        m.remote_port = 443;
        m
    }

    #[test]
    fn hello_split_at_every_boundary_parses_the_same() {
        let h = hello();
        let mut asm = Box::new(HelloAssembler::new(StreamKind::Tls));
        for split in 1..h.len() {
            asm.reset(StreamKind::Tls);
            let mut flow = Flow::new(1, FWPS_LAYER_STREAM_V4, 1, 0, &tcp_meta());
            let mut out = StreamOutcome::default();
            flow.on_stream_piece(true, &h[..split], Some(&mut asm), &mut out);
            assert!(!out.hello_finished, "split {split}");
            flow.on_stream_piece(true, &h[split..], Some(&mut asm), &mut out);
            assert!(out.hello_finished, "split {split}");
            let mut rec = EventRecord::ZERO;
            flow.fill_common(&mut rec, EventKind::TlsHello, 5);
            assert_eq!(rec.sni(), Some("api.openai.com"), "split {split}");
            let ids: Vec<&[u8]> = rec.alpn_ids().collect();
            assert_eq!(ids, [&b"h2"[..], &b"http/1.1"[..]]);
            assert_eq!(rec.ja4().map(str::len), Some(36));
            assert!(
                rec.ja4().unwrap().starts_with("t13d0203h2_"),
                "{:?}",
                rec.ja4()
            );
            assert_eq!(rec.flags & flags::HELLO_PARSED, flags::HELLO_PARSED);
            assert_eq!(flow.bytes_out, h.len() as u64);
        }
    }

    #[test]
    fn ech_is_flagged_and_the_outer_name_kept() {
        // encrypted_client_hello (0xfe0d), outer variant with a dummy payload.
        let h = hello_with(&[0xfe, 0x0d, 0, 4, 0, 0, 1, 0]);
        let mut asm = Box::new(HelloAssembler::new(StreamKind::Tls));
        let mut flow = Flow::new(1, FWPS_LAYER_STREAM_V4, 1, 0, &tcp_meta());
        let mut out = StreamOutcome::default();
        flow.on_stream_piece(true, &h, Some(&mut asm), &mut out);
        let mut rec = EventRecord::ZERO;
        flow.fill_common(&mut rec, EventKind::TlsHello, 1);
        assert_eq!(rec.flags & flags::ECH, flags::ECH, "flags {:#x}", rec.flags);
        assert_eq!(rec.sni(), Some("api.openai.com"));
        let plain = hello();
        let mut flow = Flow::new(2, FWPS_LAYER_STREAM_V4, 1, 0, &tcp_meta());
        asm.reset(StreamKind::Tls);
        flow.on_stream_piece(true, &plain, Some(&mut asm), &mut out);
        let mut rec = EventRecord::ZERO;
        flow.fill_common(&mut rec, EventKind::TlsHello, 1);
        assert_eq!(rec.flags & flags::ECH, 0);
    }

    #[test]
    fn not_tls_and_no_slot_are_final_states() {
        let mut asm = Box::new(HelloAssembler::new(StreamKind::Tls));
        let mut flow = Flow::new(1, 0, 0, 0, &tcp_meta());
        let mut out = StreamOutcome::default();
        flow.on_stream_piece(true, b"GET / HTTP/1.1\r\n\r\n", Some(&mut asm), &mut out);
        assert!(out.hello_finished);
        assert!(matches!(flow.hello, HelloState::NotTls));
        let mut flow = Flow::new(2, 0, 0, 0, &tcp_meta());
        let mut out = StreamOutcome::default();
        flow.on_stream_piece(true, &hello(), None, &mut out);
        assert!(out.hello_finished);
        assert!(matches!(flow.hello, HelloState::NoSlot));
    }

    #[test]
    fn records_and_bytes_are_counted_both_ways() {
        let mut flow = Flow::new(1, 0, 0, 100, &tcp_meta());
        let mut asm = Box::new(HelloAssembler::new(StreamKind::Tls));
        let mut out = StreamOutcome::default();
        flow.on_stream_piece(true, &hello(), Some(&mut asm), &mut out);
        // Server: handshake record then three application-data records, split oddly.
        let mut inbound = std::vec![22u8, 3, 3, 0, 2, 0xAA, 0xBB];
        for n in [10usize, 0, 300] {
            inbound.extend_from_slice(&[23, 3, 3]);
            inbound.extend_from_slice(&(n as u16).to_be_bytes());
            inbound.extend(std::iter::repeat_n(0u8, n));
        }
        for piece in inbound.chunks(3) {
            flow.on_stream_piece(false, piece, None, &mut out);
        }
        flow.on_stream_piece(true, &[23, 3, 3, 0, 1, 9], None, &mut out);
        let mut rec = EventRecord::ZERO;
        flow.fill_flow_end(&mut rec, 1100);
        assert_eq!(rec.records_in, 3);
        assert_eq!(rec.records_out, 1);
        assert_eq!(rec.bytes_in, inbound.len() as u64);
        assert_eq!(rec.bytes_out, hello().len() as u64 + 6);
        assert_eq!(rec.duration, 1000);
        assert_eq!(rec.kind, EventKind::FlowEnd as u16);
    }

    #[test]
    fn record_counter_gives_up_on_garbage() {
        let mut c = RecordCounter::default();
        c.feed(b"HTTP/1.1 200 OK\r\n");
        assert!(c.lost_sync);
        assert_eq!(c.app_data_records, 0);
    }

    #[test]
    fn metadata_and_values_are_read_defensively() {
        // SID S-1-5-21-1-2-3-1001 behind TOKEN_ACCESS_INFORMATION.
        let mut sid = std::vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for v in [21u32, 1, 2, 3, 1001] {
            sid.extend_from_slice(&v.to_le_bytes());
        }
        let saa = SidAndAttributes {
            sid: sid.as_ptr(),
            attributes: 0,
        };
        let hash = SidAndAttributesHashPrefix {
            sid_count: 1,
            sid_attr: &saa,
        };
        let mut tai = [0u8; 64];
        tai[..8].copy_from_slice(&(&hash as *const _ as usize).to_le_bytes());
        let blob = FWP_BYTE_BLOB {
            size: 64,
            data: tai.as_ptr(),
        };
        let v6 = FWP_BYTE_ARRAY16 {
            byteArray16: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        };
        let vals = [
            FWPS_INCOMING_VALUE0 {
                value: FWP_VALUE0::EMPTY,
            },
            FWPS_INCOMING_VALUE0 {
                value: FWP_VALUE0 {
                    type_: FWP_TOKEN_ACCESS_INFORMATION_TYPE,
                    value: &blob as *const _ as u64,
                },
            },
            FWPS_INCOMING_VALUE0 {
                value: FWP_VALUE0 {
                    type_: FWP_BYTE_ARRAY16_TYPE,
                    value: &v6 as *const _ as u64,
                },
            },
            FWPS_INCOMING_VALUE0 {
                value: FWP_VALUE0::EMPTY,
            },
            FWPS_INCOMING_VALUE0 {
                value: FWP_VALUE0::uint16(50000),
            },
            FWPS_INCOMING_VALUE0 {
                value: FWP_VALUE0::uint8(6),
            },
            FWPS_INCOMING_VALUE0 {
                value: FWP_VALUE0 {
                    type_: FWP_BYTE_ARRAY16_TYPE,
                    value: &v6 as *const _ as u64,
                },
            },
            FWPS_INCOMING_VALUE0 {
                value: FWP_VALUE0::uint16(443),
            },
        ];
        let values = FWPS_INCOMING_VALUES0 {
            layerId: FWPS_LAYER_ALE_AUTH_CONNECT_V6,
            valueCount: 8,
            incomingValue: vals.as_ptr(),
        };
        let path: Vec<u16> = "\\device\\harddiskvolume3\\app.exe\0"
            .encode_utf16()
            .collect();
        let pblob = FWP_BYTE_BLOB {
            size: (path.len() * 2) as u32,
            data: path.as_ptr() as *const u8,
        };
        let md = FWPS_INCOMING_METADATA_VALUES0_PREFIX {
            currentMetadataValues: FWPS_METADATA_FIELD_PROCESS_ID
                | FWPS_METADATA_FIELD_PROCESS_PATH,
            flags: 0,
            reserved: 0,
            discardMetadata: FWPS_DISCARD_METADATA0 {
                discardModule: 0,
                discardReason: 0,
                filterId: 0,
            },
            flowHandle: 0,
            ipHeaderSize: 0,
            transportHeaderSize: 0,
            processPath: &pblob,
            token: 0,
            processId: 4242,
        };
        let meta = unsafe { meta_from_ale(&values, Some(&md), None) };
        assert_eq!(meta.ip_version, 6);
        assert_eq!(meta.remote_port, 443);
        assert_eq!(meta.local_port, 50000);
        assert_eq!(meta.ip_protocol, 6);
        assert_eq!(meta.process_id, 4242);
        assert_eq!(meta.remote_addr, v6.byteArray16);
        let mut rec = EventRecord::ZERO;
        rec.kind = 1;
        meta.fill(&mut rec);
        assert_eq!(
            std::string::String::from_utf16(rec.app_path_utf16()).unwrap(),
            "\\device\\harddiskvolume3\\app.exe"
        );
        assert_eq!(
            std::format!("{}", rec.user_sid_string().unwrap()),
            "S-1-5-21-1-2-3-1001"
        );
        // Fewer values than indices: nothing read past the array.
        let short = FWPS_INCOMING_VALUES0 {
            layerId: 48,
            valueCount: 2,
            incomingValue: vals.as_ptr(),
        };
        let meta = unsafe { meta_from_ale(&short, None, None) };
        assert_eq!(meta.remote_port, 0);
        assert_eq!(meta.ip_version, 0);
    }
}
