//! Reassembly of a ClientHello from stream pieces that may arrive out of order,
//! overlapping or retransmitted: TCP segments (placed by sequence number, TLS
//! records stripped) or QUIC CRYPTO frames (placed by offset, no records).
//!
//! Everything lives in one fixed buffer. Bytes received past the contiguous prefix
//! sit at their stream offset; holes are tracked as a small fixed array of received
//! ranges. As the contiguous prefix grows, TLS records are unwrapped *in place*: the
//! handshake bytes are moved to the front of the same buffer, which is safe because
//! they never overtake the record bytes still to be read.

use crate::error::Error;
use crate::tls::{
    CONTENT_TYPE_HANDSHAKE, ClientHello, HANDSHAKE_CLIENT_HELLO, RECORD_HEADER_LEN, RecordHeader,
};

/// Largest ClientHello handshake message (4-byte header included) the assembler
/// accepts. Real hellos are under 2 KiB; post-quantum key shares bring Chromium to
/// about 1.8 KiB plus padding.
pub const MAX_HELLO_LEN: usize = 16 * 1024;

/// Buffer size: the hello plus room for the record headers around it (a hello of
/// 16 KiB split into records of at least 64 bytes).
pub const BUFFER_LEN: usize = MAX_HELLO_LEN + 1280;

/// Disjoint out-of-order ranges tracked beyond the contiguous prefix.
pub const MAX_RANGES: usize = 8;

/// What the stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// A TCP byte stream of TLS records.
    Tls,
    /// The QUIC Initial CRYPTO stream: handshake messages without record framing.
    QuicCrypto,
}

/// Result of feeding stream bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress<'a> {
    /// The ClientHello is not complete yet.
    NeedMore,
    /// The ClientHello is complete (further bytes are ignored).
    Complete(ClientHello<'a>),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Range {
    start: usize,
    end: usize,
}

/// Reassembles one ClientHello. About 17.7 KiB; keep it in a flow table entry or
/// box it, not on a small kernel stack.
#[derive(Clone, Debug)]
pub struct HelloAssembler {
    kind: StreamKind,
    buf: [u8; BUFFER_LEN],
    /// Every stream byte below this offset has been received.
    contiguous: usize,
    /// Received ranges above `contiguous`: sorted, disjoint, not touching.
    ranges: [Range; MAX_RANGES],
    range_count: usize,
    /// TLS only: stream offset of the next unread record byte (header or payload).
    record_pos: usize,
    /// TLS only: payload bytes left in the record being unwrapped.
    record_left: usize,
    /// Handshake bytes available at `buf[..handshake_len]`.
    handshake_len: usize,
    /// Sticky failure: a broken stream stays broken.
    failed: Option<Error>,
}

impl Default for HelloAssembler {
    fn default() -> Self {
        Self::new(StreamKind::Tls)
    }
}

impl HelloAssembler {
    /// An empty assembler for one direction of one flow.
    pub const fn new(kind: StreamKind) -> Self {
        Self {
            kind,
            buf: [0; BUFFER_LEN],
            contiguous: 0,
            ranges: [Range { start: 0, end: 0 }; MAX_RANGES],
            range_count: 0,
            record_pos: 0,
            record_left: 0,
            handshake_len: 0,
            failed: None,
        }
    }

    /// Forgets everything, ready for a new flow.
    pub fn reset(&mut self, kind: StreamKind) {
        self.kind = kind;
        self.contiguous = 0;
        self.range_count = 0;
        self.record_pos = 0;
        self.record_left = 0;
        self.handshake_len = 0;
        self.failed = None;
    }

    /// The kind of stream being assembled.
    pub fn kind(&self) -> StreamKind {
        self.kind
    }

    /// Stream bytes received contiguously from offset 0.
    pub fn contiguous_len(&self) -> usize {
        self.contiguous
    }

    /// Feeds `data` found at stream offset `offset` (TCP: sequence number minus the
    /// initial sequence number minus one; QUIC: the CRYPTO frame offset). Bytes
    /// already received are ignored, so retransmissions and overlaps are harmless.
    pub fn push(&mut self, offset: u64, data: &[u8]) -> Result<Progress<'_>, Error> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if let Err(e) = self.insert(offset, data).and_then(|()| self.advance()) {
            self.failed = Some(e);
            return Err(e);
        }
        match self.check_complete() {
            Ok(Some(len)) => {
                let msg = self.buf.get(..len).unwrap_or_default();
                match ClientHello::parse(msg) {
                    Ok(h) => Ok(Progress::Complete(h)),
                    Err(e) => {
                        self.failed = Some(e);
                        Err(e)
                    }
                }
            }
            Ok(None) => Ok(Progress::NeedMore),
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
        }
    }

    /// The ClientHello, once complete.
    pub fn client_hello(&self) -> Option<ClientHello<'_>> {
        if self.failed.is_some() {
            return None;
        }
        let len = self.check_complete().ok()??;
        ClientHello::parse(self.buf.get(..len)?).ok()
    }

    /// The complete handshake message bytes (header included), once complete.
    pub fn message(&self) -> Option<&[u8]> {
        let len = self.check_complete().ok()??;
        self.buf.get(..len)
    }

    fn insert(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(data.len());
        // Only new bytes: the prefix below `contiguous` may already be rewritten by
        // record unwrapping, and bytes past the buffer can never be part of the hello.
        let new_start = start.max(self.contiguous);
        let new_end = end.min(BUFFER_LEN);
        if new_start >= new_end {
            return Ok(());
        }
        let src = data
            .get(new_start.saturating_sub(start)..new_end.saturating_sub(start))
            .unwrap_or_default();
        if let Some(dst) = self.buf.get_mut(new_start..new_end) {
            // Element-wise rather than copy_from_slice: its length-mismatch panic
            // cannot be proven dead here, and the kernel driver's link fails on any
            // surviving panic path.
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s;
            }
        }
        self.add_range(Range {
            start: new_start,
            end: new_end,
        })
    }

    fn add_range(&mut self, mut new: Range) -> Result<(), Error> {
        // One spare slot: the new range may be absorbed into the prefix just below.
        let mut merged = [Range::default(); MAX_RANGES + 1];
        let mut count = 0usize;
        let mut placed = false;
        let existing = self.ranges.get(..self.range_count).unwrap_or_default();
        for &r in existing {
            if r.end < new.start {
                push_range(&mut merged, &mut count, r)?;
            } else if r.start > new.end {
                if !placed {
                    push_range(&mut merged, &mut count, new)?;
                    placed = true;
                }
                push_range(&mut merged, &mut count, r)?;
            } else {
                new.start = new.start.min(r.start);
                new.end = new.end.max(r.end);
            }
        }
        if !placed {
            push_range(&mut merged, &mut count, new)?;
        }
        // Only the first range can touch the contiguous prefix.
        let mut first = 0usize;
        if let Some(r) = merged.first()
            && count > 0
            && r.start <= self.contiguous
        {
            self.contiguous = self.contiguous.max(r.end);
            first = 1;
        }
        if count.saturating_sub(first) > MAX_RANGES {
            return Err(Error::TooFragmented {
                max_ranges: MAX_RANGES,
            });
        }
        let mut n = 0usize;
        for (dst, src) in self
            .ranges
            .iter_mut()
            .zip(merged.iter().take(count).skip(first))
        {
            *dst = *src;
            n = n.saturating_add(1);
        }
        self.range_count = n;
        Ok(())
    }

    /// Unwraps TLS records in the contiguous prefix into handshake bytes.
    fn advance(&mut self) -> Result<(), Error> {
        match self.kind {
            StreamKind::QuicCrypto => {
                self.handshake_len = self.contiguous.min(MAX_HELLO_LEN);
                Ok(())
            }
            StreamKind::Tls => loop {
                // Records after the hello (a client's early data, alerts) are none
                // of our business.
                if self.hello_done() {
                    return Ok(());
                }
                if self.record_left == 0 {
                    let header_end = self.record_pos.saturating_add(RECORD_HEADER_LEN);
                    if header_end > self.contiguous {
                        return Ok(());
                    }
                    let header = self
                        .buf
                        .get(self.record_pos..header_end)
                        .unwrap_or_default();
                    let h = RecordHeader::parse(header)?;
                    if h.content_type != CONTENT_TYPE_HANDSHAKE {
                        return Err(Error::NotHandshake {
                            content_type: h.content_type,
                        });
                    }
                    self.record_pos = header_end;
                    self.record_left = h.length;
                    continue;
                }
                let avail = self.contiguous.saturating_sub(self.record_pos);
                let n = avail.min(self.record_left);
                if n == 0 {
                    return Ok(());
                }
                let src_end = self.record_pos.saturating_add(n);
                let dst_end = self.handshake_len.saturating_add(n);
                if src_end > BUFFER_LEN || self.handshake_len > self.record_pos {
                    // Cannot happen (handshake bytes trail record bytes by at least one
                    // header); refuse rather than corrupt.
                    return Err(Error::HelloTooLarge {
                        length: dst_end,
                        capacity: BUFFER_LEN,
                    });
                }
                self.buf
                    .copy_within(self.record_pos..src_end, self.handshake_len);
                self.handshake_len = dst_end;
                self.record_pos = src_end;
                self.record_left = self.record_left.saturating_sub(n);
            },
        }
    }

    fn hello_done(&self) -> bool {
        match self.buf.get(..self.handshake_len) {
            Some(&[_, a, b, c, ..]) => {
                let len = (u32::from_be_bytes([0, a, b, c]) as usize).saturating_add(4);
                self.handshake_len >= len
            }
            _ => false,
        }
    }

    /// `Ok(Some(len))` when a whole ClientHello message of `len` bytes is at the front.
    fn check_complete(&self) -> Result<Option<usize>, Error> {
        let hs = self.buf.get(..self.handshake_len).unwrap_or_default();
        if let Some(&t) = hs.first()
            && t != HANDSHAKE_CLIENT_HELLO
        {
            return Err(Error::NotClientHello { handshake_type: t });
        }
        let Some(&[_, a, b, c]) = hs.first_chunk::<4>() else {
            return self.check_stalled(None);
        };
        let body = u32::from_be_bytes([0, a, b, c]) as usize;
        let len = body.saturating_add(4);
        if len > MAX_HELLO_LEN {
            return Err(Error::HelloTooLarge {
                length: len,
                capacity: MAX_HELLO_LEN,
            });
        }
        if self.handshake_len >= len {
            return Ok(Some(len));
        }
        self.check_stalled(Some(len))
    }

    /// A full buffer that still lacks the hello can never complete.
    fn check_stalled(&self, need: Option<usize>) -> Result<Option<usize>, Error> {
        let limit = match self.kind {
            StreamKind::Tls => BUFFER_LEN,
            StreamKind::QuicCrypto => MAX_HELLO_LEN,
        };
        if self.contiguous >= limit {
            return Err(Error::HelloTooLarge {
                length: need.unwrap_or(limit.saturating_add(1)),
                capacity: MAX_HELLO_LEN,
            });
        }
        Ok(None)
    }
}

fn push_range(out: &mut [Range], count: &mut usize, r: Range) -> Result<(), Error> {
    let slot = out.get_mut(*count).ok_or(Error::TooFragmented {
        max_ranges: MAX_RANGES,
    })?;
    *slot = r;
    *count = count.saturating_add(1);
    Ok(())
}
