//! The driver's shared state — event ring, assembler pool, live-flow table, counters —
//! and the operations the classify functions perform on it. The kernel glue holds
//! one spin lock around every call; this module itself is plain code and is unit
//! tested on the build host.

use driver_abi::{Counters, EventKind, EventRecord};
use toktra_wire::{HelloAssembler, StreamKind};

use crate::flow::{self, Flow, FlowMeta, HelloState, MAX_QUIC_DATAGRAMS, StreamOutcome};
use crate::ring::Ring;

/// Calls its argument with each contiguous piece of an indication's data and returns
/// the bytes delivered.
pub type Walker<'w> = &'w mut dyn FnMut(&mut dyn FnMut(&[u8])) -> usize;

/// Fixed pool of ClientHello assemblers (about 17.7 KB each), borrowed per flow only
/// while its hello is in flight.
pub struct AssemblerPool<'a> {
    slots: &'a mut [HelloAssembler],
    in_use: &'a mut [bool],
}

impl<'a> AssemblerPool<'a> {
    pub fn new(slots: &'a mut [HelloAssembler], in_use: &'a mut [bool]) -> Self {
        Self { slots, in_use }
    }

    fn acquire(&mut self) -> Option<usize> {
        let idx = self.in_use.iter().position(|u| !*u)?;
        let slot = self.slots.get_mut(idx)?;
        slot.reset(StreamKind::Tls);
        if let Some(u) = self.in_use.get_mut(idx) {
            *u = true;
        }
        Some(idx)
    }

    fn release(&mut self, idx: usize) {
        if let Some(u) = self.in_use.get_mut(idx) {
            *u = false;
        }
    }

    pub fn busy(&self) -> usize {
        self.in_use.iter().filter(|u| **u).count()
    }
}

pub struct Engine<'a> {
    pub ring: Ring<'a>,
    pub pool: AssemblerPool<'a>,
    /// Live flows; a null entry is free. Its length is the flow cap.
    pub flows: &'a mut [*mut Flow],
    pub counters: Counters,
}

// SAFETY: the raw flow pointers are only dereferenced under the engine's lock.
unsafe impl Send for Engine<'_> {}

impl<'a> Engine<'a> {
    pub fn new(ring: Ring<'a>, pool: AssemblerPool<'a>, flows: &'a mut [*mut Flow]) -> Self {
        Self {
            ring,
            pool,
            flows,
            counters: Counters::default(),
        }
    }

    /// A snapshot for IOCTL_TOKTRA_GET_COUNTERS.
    pub fn snapshot(&self) -> Counters {
        let mut c = self.counters;
        c.events_written = self.ring.written;
        c.events_read = self.ring.read;
        c.events_dropped_overflow = self.ring.dropped;
        c.ring_used = self.ring.len() as u64;
        c.ring_capacity = self.ring.capacity() as u64;
        c
    }

    /// ALE_AUTH_CONNECT: one Connect event; for UDP/443 the first datagram too.
    pub fn on_connect(
        &mut self,
        meta: &FlowMeta,
        now: u64,
        datagram: Option<(Walker<'_>, usize, u8)>,
    ) {
        self.ring.push_with(|rec| {
            rec.kind = EventKind::Connect as u16;
            rec.timestamp = now;
            meta.fill(rec);
        });
        if let Some((walk, total, first_byte)) = datagram
            && meta.ip_protocol == 17
            && flow::looks_like_quic_long_header(first_byte)
        {
            self.counters.quic_datagrams_copied += 1;
            self.ring.push_with(|rec| {
                rec.kind = EventKind::QuicInitial as u16;
                rec.timestamp = now;
                meta.fill(rec);
                flow::fill_payload(rec, walk, total);
            });
        }
    }

    /// ALE_FLOW_ESTABLISHED: registers an allocated flow in the table. Returns false
    /// (caller frees the flow, associates nothing) when the flow cap is reached.
    ///
    /// # Safety
    /// `flow` must be valid and stay valid until [`on_flow_delete`](Self::on_flow_delete).
    pub unsafe fn admit_flow(&mut self, flow: *mut Flow) -> bool {
        let Some(idx) = self.flows.iter().position(|f| f.is_null()) else {
            self.counters.flows_dropped_cap += 1;
            return false;
        };
        if let Some(slot) = self.flows.get_mut(idx) {
            *slot = flow;
        }
        // SAFETY: the caller hands a valid, exclusively owned flow.
        unsafe { (*flow).table_slot = idx };
        self.counters.flows_active += 1;
        self.counters.flows_tracked += 1;
        true
    }

    /// Undoes [`admit_flow`](Self::admit_flow) when associating the context failed.
    pub fn forget_flow(&mut self, flow: &mut Flow) {
        if let Some(slot) = self.flows.get_mut(flow.table_slot) {
            *slot = core::ptr::null_mut();
        }
        self.counters.flows_active = self.counters.flows_active.saturating_sub(1);
        self.counters.flow_associate_failures += 1;
    }

    /// STREAM: feeds one indication, given as a walker over its pieces.
    pub fn on_stream(
        &mut self,
        flow: &mut Flow,
        outbound: bool,
        now: u64,
        walk: Walker<'_>,
        declared_len: usize,
    ) {
        if flow.wants_assembler(outbound) {
            match self.pool.acquire() {
                Some(idx) => {
                    flow.assembler_slot = Some(idx);
                    flow.hello = HelloState::Assembling;
                }
                None => self.counters.flows_dropped_cap += 1,
            }
        }
        let mut out = StreamOutcome::default();
        let slot = flow.assembler_slot;
        let pool_slots = &mut *self.pool.slots;
        let walked = walk(&mut |piece: &[u8]| {
            let asm = slot.and_then(|i| pool_slots.get_mut(i));
            flow.on_stream_piece(outbound, piece, asm, &mut out);
        });
        if walked < declared_len {
            self.counters.malformed_indications += 1;
        }
        if out.hello_finished {
            self.finish_hello(flow, now);
        }
    }

    fn finish_hello(&mut self, flow: &mut Flow, now: u64) {
        if let Some(idx) = flow.assembler_slot.take() {
            self.pool.release(idx);
        }
        match flow.hello {
            HelloState::Parsed(_) => {
                self.counters.hellos_parsed += 1;
                self.ring
                    .push_with(|rec| flow.fill_common(rec, EventKind::TlsHello, now));
            }
            HelloState::NotTls => self.counters.hellos_not_tls += 1,
            HelloState::TooLarge => self.counters.hellos_too_large += 1,
            _ => {}
        }
    }

    /// DATAGRAM_DATA: counts bytes; copies the first long-header datagrams of UDP/443.
    pub fn on_datagram(
        &mut self,
        flow: &mut Flow,
        outbound: bool,
        now: u64,
        walk: Walker<'_>,
        total: usize,
        first_byte: u8,
    ) {
        if outbound {
            flow.bytes_out = flow.bytes_out.saturating_add(total as u64);
        } else {
            flow.bytes_in = flow.bytes_in.saturating_add(total as u64);
        }
        if !outbound
            || flow.quic_datagrams >= MAX_QUIC_DATAGRAMS
            || !flow::looks_like_quic_long_header(first_byte)
        {
            return;
        }
        flow.quic_datagrams += 1;
        self.counters.quic_datagrams_copied += 1;
        self.ring.push_with(|rec| {
            flow.fill_common(rec, EventKind::QuicInitial, now);
            flow::fill_payload(rec, walk, total);
        });
    }

    /// Flow deletion: the final record; the caller frees the flow afterwards.
    pub fn on_flow_delete(&mut self, flow: &mut Flow, now: u64) {
        if let Some(idx) = flow.assembler_slot.take() {
            self.pool.release(idx);
        }
        self.ring.push_with(|rec| flow.fill_flow_end(rec, now));
        if let Some(slot) = self.flows.get_mut(flow.table_slot)
            && core::ptr::eq(*slot, flow as *mut Flow)
        {
            *slot = core::ptr::null_mut();
        }
        self.counters.flows_active = self.counters.flows_active.saturating_sub(1);
    }

    pub fn drain_into(&mut self, out: &mut [u8]) -> usize {
        self.ring.drain_into(out)
    }
}

/// A zeroed event, for callers that build one outside the ring.
pub const EMPTY_EVENT: EventRecord = EventRecord::ZERO;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wfp::FWPS_LAYER_STREAM_V4;
    use driver_abi::EVENT_RECORD_SIZE;
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    struct Fixture {
        slots: Vec<EventRecord>,
        asms: Vec<HelloAssembler>,
        in_use: Vec<bool>,
        flows: Vec<*mut Flow>,
    }

    fn fixture(ring: usize, asms: usize, flows: usize) -> Fixture {
        Fixture {
            slots: vec![EventRecord::ZERO; ring],
            asms: (0..asms)
                .map(|_| HelloAssembler::new(StreamKind::Tls))
                .collect(),
            in_use: vec![false; asms],
            flows: vec![core::ptr::null_mut(); flows],
        }
    }

    fn engine(f: &mut Fixture) -> Engine<'_> {
        Engine::new(
            Ring::new(&mut f.slots),
            AssemblerPool::new(&mut f.asms, &mut f.in_use),
            &mut f.flows,
        )
    }

    fn meta() -> FlowMeta {
        let mut m = FlowMeta::EMPTY;
        m.ip_protocol = 6;
        m.ip_version = 4;
        m.remote_port = 443;
        m
    }

    fn feed(e: &mut Engine<'_>, flow: &mut Flow, outbound: bool, data: &[u8]) {
        let mut walk = |f: &mut dyn FnMut(&[u8])| {
            f(data);
            data.len()
        };
        e.on_stream(flow, outbound, 7, &mut walk, data.len());
    }

    fn events(e: &mut Engine<'_>) -> Vec<EventRecord> {
        let mut buf = vec![0u8; EVENT_RECORD_SIZE * 16];
        let n = e.drain_into(&mut buf);
        EventRecord::decode_batch(&buf[..n])
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn flow_cap_and_assembler_pool_are_bounded_and_counted() {
        let mut fx = fixture(8, 1, 2);
        let mut e = engine(&mut fx);
        let mut a = Box::new(Flow::new(1, FWPS_LAYER_STREAM_V4, 1, 0, &meta()));
        let mut b = Box::new(Flow::new(2, FWPS_LAYER_STREAM_V4, 1, 0, &meta()));
        let mut c = Box::new(Flow::new(3, FWPS_LAYER_STREAM_V4, 1, 0, &meta()));
        assert!(unsafe { e.admit_flow(&mut *a) });
        assert!(unsafe { e.admit_flow(&mut *b) });
        assert!(
            !unsafe { e.admit_flow(&mut *c) },
            "third flow is past the cap"
        );
        assert_eq!(e.counters.flows_dropped_cap, 1);
        // a holds the only assembler (incomplete hello), so b gets none.
        feed(&mut e, &mut a, true, &[22, 3, 1, 0, 200, 1]);
        assert_eq!(e.pool.busy(), 1);
        feed(&mut e, &mut b, true, &[22, 3, 1]);
        assert!(matches!(b.hello, HelloState::NoSlot));
        assert_eq!(e.counters.flows_dropped_cap, 2);
        // Deleting a returns its assembler and emits the final record.
        e.on_flow_delete(&mut a, 10);
        assert_eq!(e.pool.busy(), 0);
        assert_eq!(e.counters.flows_active, 1);
        let ev = events(&mut e);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::FlowEnd as u16);
        assert_eq!(ev[0].bytes_out, 6);
    }

    #[test]
    fn random_streams_never_break_the_bounds() {
        // Deterministic xorshift: random bytes, random TLS-looking prefixes, random
        // chunking, both directions, with a pool smaller than the flows in flight.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut fx = fixture(64, 2, 8);
        let mut e = engine(&mut fx);
        for round in 0..400u64 {
            let mut flows: Vec<Box<Flow>> = (0..3)
                .map(|i| {
                    Box::new(Flow::new(
                        round * 3 + i,
                        FWPS_LAYER_STREAM_V4,
                        1,
                        0,
                        &meta(),
                    ))
                })
                .collect();
            for f in flows.iter_mut() {
                assert!(unsafe { e.admit_flow(&mut **f) });
            }
            for _ in 0..6 {
                for f in flows.iter_mut() {
                    let len = (rnd() % 700) as usize;
                    let mut data: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
                    if rnd() % 2 == 0 && len >= 5 {
                        data[..3].copy_from_slice(&[22, 3, 1]);
                    }
                    let outbound = rnd() % 3 != 0;
                    let cut = if len == 0 { 0 } else { (rnd() as usize) % len };
                    let (a, b) = data.split_at(cut);
                    let mut walk = |cb: &mut dyn FnMut(&[u8])| {
                        cb(a);
                        cb(b);
                        a.len() + b.len()
                    };
                    e.on_stream(f, outbound, 1, &mut walk, len);
                }
            }
            for f in flows.iter_mut() {
                e.on_flow_delete(f, 2);
            }
            assert_eq!(e.pool.busy(), 0, "assemblers leak");
            assert_eq!(e.counters.flows_active, 0);
            events(&mut e);
        }
        assert_eq!(e.counters.malformed_indications, 0);
    }

    #[test]
    fn per_flow_memory_is_small_and_fixed() {
        // What the README promises: a flow costs about 1.2 KB of non-paged pool, and a
        // hello in flight borrows one ~17.7 KB assembler from a fixed pool.
        let flow = core::mem::size_of::<Flow>();
        assert!(flow <= 1536, "Flow is {flow} bytes");
        let asm = core::mem::size_of::<HelloAssembler>();
        assert!(asm <= 18 * 1024, "HelloAssembler is {asm} bytes");
        std::println!("Flow {flow} B, HelloAssembler {asm} B");
    }

    #[test]
    fn quic_datagrams_are_copied_bounded() {
        let mut fx = fixture(16, 1, 2);
        let mut e = engine(&mut fx);
        let mut m = meta();
        m.ip_protocol = 17;
        let mut f = Box::new(Flow::new(9, 24, 2, 0, &m));
        let dgram = vec![0xC3u8; 2000];
        for _ in 0..6 {
            let mut walk = |cb: &mut dyn FnMut(&[u8])| {
                cb(&dgram);
                dgram.len()
            };
            e.on_datagram(&mut f, true, 1, &mut walk, dgram.len(), dgram[0]);
        }
        let ev = events(&mut e);
        assert_eq!(ev.len(), MAX_QUIC_DATAGRAMS as usize);
        assert!(ev.iter().all(|r| r.kind == EventKind::QuicInitial as u16
            && r.payload_len as usize == driver_abi::PAYLOAD_CAP
            && r.flags & driver_abi::flags::PAYLOAD_TRUNCATED != 0));
        assert_eq!(f.bytes_out, 12_000);
    }
}
