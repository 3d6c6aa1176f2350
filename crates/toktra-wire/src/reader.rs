//! A bounds-checked cursor over a byte slice: every read either succeeds or returns
//! [`Error::Truncated`] naming the offset; nothing can index past the slice.

use crate::error::Error;

/// Reads big-endian integers and length-prefixed slices from a byte slice.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` within the outermost input, so errors name absolute offsets.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self::with_base(buf, 0)
    }

    pub(crate) fn with_base(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    /// Absolute offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated {
            needed: n,
            at: self.offset(),
        })?;
        match self.buf.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::Truncated {
                needed: n.saturating_sub(self.remaining()),
                at: self.offset(),
            }),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        let s = self.take(1)?;
        s.first().copied().ok_or(Error::Truncated {
            needed: 1,
            at: self.offset(),
        })
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        match *self.take(2)? {
            [a, b] => Ok(u16::from_be_bytes([a, b])),
            _ => Err(Error::Truncated {
                needed: 2,
                at: self.offset(),
            }),
        }
    }

    pub(crate) fn u24(&mut self) -> Result<u32, Error> {
        match *self.take(3)? {
            [a, b, c] => Ok(u32::from_be_bytes([0, a, b, c])),
            _ => Err(Error::Truncated {
                needed: 3,
                at: self.offset(),
            }),
        }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        match *self.take(4)? {
            [a, b, c, d] => Ok(u32::from_be_bytes([a, b, c, d])),
            _ => Err(Error::Truncated {
                needed: 4,
                at: self.offset(),
            }),
        }
    }

    /// A QUIC variable-length integer (RFC 9000 16).
    pub(crate) fn varint(&mut self) -> Result<u64, Error> {
        let first = self.u8()?;
        let extra = match first >> 6 {
            0 => 0,
            1 => 1,
            2 => 3,
            _ => 7,
        };
        let mut v = u64::from(first & 0x3f);
        for &b in self.take(extra)? {
            v = (v << 8) | u64::from(b);
        }
        Ok(v)
    }

    /// A slice behind a length prefix of `prefix` bytes (1, 2 or 3), checked against
    /// what is left.
    pub(crate) fn vec(&mut self, prefix: usize, field: &'static str) -> Result<Reader<'a>, Error> {
        let at = self.offset();
        let len = match prefix {
            1 => usize::from(self.u8()?),
            2 => usize::from(self.u16()?),
            _ => self.u24()? as usize,
        };
        let available = self.remaining();
        if len > available {
            return Err(Error::BadLength {
                field,
                at,
                length: len,
                available,
            });
        }
        let inner_base = self.offset();
        let s = self.take(len)?;
        Ok(Reader::with_base(s, inner_base))
    }
}
