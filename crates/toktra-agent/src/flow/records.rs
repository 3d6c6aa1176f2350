//! Counts TLS application-data records in the server→client byte stream by walking
//! record headers only: O(records) work per segment, five bytes of state for a header
//! split across segments, nothing else buffered.

const CONTENT_TYPE_APPLICATION_DATA: u8 = 23;
const MAX_RECORD_LEN: u32 = 16384 + 2048;

#[derive(Clone, Debug, Default)]
pub(crate) struct RecordCounter {
    /// Sequence number of the next in-order server byte, once known.
    next_seq: Option<u32>,
    /// Body bytes of the current record still to skip.
    skip: u32,
    header: [u8; 5],
    header_len: usize,
    count: u64,
    /// A gap or a non-TLS header: the count stops being trustworthy.
    lost: bool,
}

impl RecordCounter {
    /// The server's first stream byte is `isn + 1` (from its SYN-ACK).
    pub(crate) fn start_at(&mut self, seq: u32) {
        if self.next_seq.is_none() {
            self.next_seq = Some(seq);
        }
    }

    pub(crate) fn count(&self) -> Option<u64> {
        (!self.lost).then_some(self.count)
    }

    pub(crate) fn segment(&mut self, seq: u32, payload: &[u8]) {
        if self.lost || payload.is_empty() {
            return;
        }
        let next = *self.next_seq.get_or_insert(seq);
        // Signed distance in sequence space handles wrap-around.
        let ahead = seq.wrapping_sub(next) as i32;
        if ahead > 0 {
            // Bytes were missed (not captured, or reordered): record boundaries are lost.
            self.lost = true;
            return;
        }
        let overlap = ahead.unsigned_abs() as usize;
        let Some(new) = payload.get(overlap..).filter(|n| !n.is_empty()) else {
            return; // a pure retransmission
        };
        self.next_seq = Some(next.wrapping_add(new.len() as u32));
        self.walk(new);
    }

    fn walk(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = data.len().min(self.skip as usize);
                self.skip -= n as u32;
                data = data.get(n..).unwrap_or_default();
                continue;
            }
            let want = 5 - self.header_len;
            let n = want.min(data.len());
            let (head, rest) = data.split_at(n);
            // At most five bytes: a loop, not a call to memcpy.
            for (d, b) in self.header.iter_mut().skip(self.header_len).zip(head) {
                *d = *b;
            }
            self.header_len += n;
            data = rest;
            if self.header_len < 5 {
                return;
            }
            self.header_len = 0;
            let [content_type, major, _, len_hi, len_lo] = self.header;
            let length = u32::from(u16::from_be_bytes([len_hi, len_lo]));
            if !(20..=24).contains(&content_type) || major != 3 || length > MAX_RECORD_LEN {
                self.lost = true;
                return;
            }
            if content_type == CONTENT_TYPE_APPLICATION_DATA {
                self.count += 1;
            }
            self.skip = length;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(content_type: u8, len: usize) -> Vec<u8> {
        let mut r = vec![content_type, 3, 3];
        r.extend_from_slice(&(len as u16).to_be_bytes());
        r.resize(5 + len, 0xaa);
        r
    }

    #[test]
    fn counts_records_split_anywhere_and_ignores_retransmissions() {
        let mut stream = record(22, 90);
        for _ in 0..7 {
            stream.extend(record(23, 300));
        }
        stream.extend(record(21, 2));
        for cut in [1usize, 3, 5, 96, 97, 400] {
            let mut c = RecordCounter::default();
            c.start_at(1000);
            let (a, b) = stream.split_at(cut);
            c.segment(1000, a);
            c.segment(1000, a); // retransmitted
            c.segment(1000 + cut as u32 - 1, &stream[cut - 1..]); // overlapping
            c.segment(1000 + cut as u32, b); // fully old by now
            assert_eq!(c.count(), Some(7), "cut at {cut}");
        }
    }

    #[test]
    fn a_gap_or_garbage_makes_the_count_unknown() {
        let mut c = RecordCounter::default();
        c.start_at(0);
        c.segment(10, &record(23, 5));
        assert_eq!(c.count(), None);
        let mut c = RecordCounter::default();
        c.segment(u32::MAX - 2, b"HTTP/1.1 200 OK");
        assert_eq!(c.count(), None);
    }
}
