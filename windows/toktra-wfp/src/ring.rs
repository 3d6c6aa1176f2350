//! The event ring: a fixed number of [`EventRecord`] slots, allocated once in
//! non-paged pool. Writers never wait and never allocate; when the ring is full the
//! oldest event is overwritten and counted, because a stalled or absent reader must
//! never cost the network stack anything.

use driver_abi::{EVENT_RECORD_SIZE, EventRecord};

pub struct Ring<'a> {
    slots: &'a mut [EventRecord],
    /// Index of the oldest event.
    head: usize,
    len: usize,
    next_sequence: u64,
    pub written: u64,
    pub read: u64,
    pub dropped: u64,
}

impl<'a> Ring<'a> {
    pub fn new(slots: &'a mut [EventRecord]) -> Self {
        Self {
            slots,
            head: 0,
            len: 0,
            next_sequence: 1,
            written: 0,
            read: 0,
            dropped: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Claims the next slot (overwriting the oldest event if full), zeroes it, lets
    /// `fill` write the event in place and stamps its sequence number. Filling in place
    /// keeps 2.7 KB records off the small kernel stack.
    pub fn push_with(&mut self, fill: impl FnOnce(&mut EventRecord)) {
        let cap = self.slots.len();
        if cap == 0 {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        if self.len == cap {
            self.head = (self.head + 1) % cap;
            self.len -= 1;
            self.dropped = self.dropped.saturating_add(1);
        }
        let idx = (self.head + self.len) % cap;
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        *slot = EventRecord::ZERO;
        fill(slot);
        slot.sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.len += 1;
        self.written = self.written.saturating_add(1);
    }

    /// Moves as many of the oldest events as fit into `out` (whole records only) and
    /// returns the number of bytes written.
    pub fn drain_into(&mut self, out: &mut [u8]) -> usize {
        let cap = self.slots.len();
        let mut written = 0;
        for chunk in out.chunks_exact_mut(EVENT_RECORD_SIZE) {
            if self.len == 0 || cap == 0 {
                break;
            }
            let Some(slot) = self.slots.get(self.head) else {
                break;
            };
            crate::flow::copy_into(chunk, slot.as_bytes());
            self.head = (self.head + 1) % cap;
            self.len -= 1;
            self.read = self.read.saturating_add(1);
            written += EVENT_RECORD_SIZE;
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn drain_all(ring: &mut Ring<'_>) -> Vec<EventRecord> {
        let mut buf = vec![0u8; EVENT_RECORD_SIZE * 3 + 17];
        let mut out = Vec::new();
        loop {
            let n = ring.drain_into(&mut buf);
            if n == 0 {
                return out;
            }
            out.extend(EventRecord::decode_batch(&buf[..n]).map(|r| r.unwrap()));
        }
    }

    #[test]
    fn overflow_drops_oldest_and_counts() {
        let mut slots = vec![EventRecord::ZERO; 4];
        let mut ring = Ring::new(&mut slots);
        for i in 0..10u64 {
            ring.push_with(|r| {
                r.kind = 1;
                r.flow_id = i;
            });
        }
        assert_eq!(ring.len(), 4);
        assert_eq!(ring.dropped, 6);
        assert_eq!(ring.written, 10);
        let got = drain_all(&mut ring);
        let ids: Vec<u64> = got.iter().map(|r| r.flow_id).collect();
        assert_eq!(ids, [6, 7, 8, 9]);
        let seqs: Vec<u64> = got.iter().map(|r| r.sequence).collect();
        assert_eq!(
            seqs,
            [7, 8, 9, 10],
            "sequence gaps reveal the loss to the reader"
        );
        assert_eq!(ring.read, 4);
        assert!(ring.is_empty());
    }

    #[test]
    fn drain_needs_room_for_a_whole_record() {
        let mut slots = vec![EventRecord::ZERO; 2];
        let mut ring = Ring::new(&mut slots);
        ring.push_with(|r| r.kind = 1);
        let mut small = vec![0u8; EVENT_RECORD_SIZE - 1];
        assert_eq!(ring.drain_into(&mut small), 0);
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn slots_are_zeroed_before_reuse() {
        let mut slots = vec![EventRecord::ZERO; 1];
        let mut ring = Ring::new(&mut slots);
        ring.push_with(|r| {
            r.kind = 2;
            r.sni_len = 3;
            r.sni[..3].copy_from_slice(b"abc");
        });
        ring.push_with(|r| r.kind = 4);
        let got = drain_all(&mut ring);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].sni_len, 0);
        assert_eq!(&got[0].sni[..3], &[0, 0, 0]);
    }
}
