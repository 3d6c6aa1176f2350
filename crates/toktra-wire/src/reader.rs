//! A bounds-checked cursor over a byte slice: every read either succeeds or returns
//! [`Error::Truncated`] naming the offset; nothing can index past the slice.
//!
//! The cursor holds only the unread rest and the absolute offset where its input
//! ends; offsets for error messages are derived from the rest's length, so the hot
//! path is a single `split_at_checked` per field.

use crate::error::Error;

/// Reads big-endian integers and length-prefixed slices from a byte slice.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    /// Absolute offset of the end of the input, so errors name absolute offsets.
    end: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self::with_base(buf, 0)
    }

    #[inline]
    pub(crate) fn with_base(buf: &'a [u8], base: usize) -> Self {
        Self {
            rest: buf,
            end: base.saturating_add(buf.len()),
        }
    }

    /// Absolute offset of the next byte.
    #[inline]
    pub(crate) fn offset(&self) -> usize {
        self.end.saturating_sub(self.rest.len())
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    #[inline]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    #[cold]
    fn truncated(&self, n: usize) -> Error {
        Error::Truncated {
            needed: n.saturating_sub(self.rest.len()),
            at: self.offset(),
        }
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        match self.rest.split_at_checked(n) {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(head)
            }
            None => Err(self.truncated(n)),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        match self.rest.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(*head)
            }
            None => Err(self.truncated(N)),
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        let [a] = self.array::<1>()?;
        Ok(a)
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array::<2>()?))
    }

    #[inline]
    pub(crate) fn u24(&mut self) -> Result<u32, Error> {
        let [a, b, c] = self.array::<3>()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array::<4>()?))
    }

    /// A QUIC variable-length integer (RFC 9000 16).
    #[inline]
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
    #[inline]
    pub(crate) fn vec(&mut self, prefix: usize, field: &'static str) -> Result<Reader<'a>, Error> {
        let at = self.offset();
        let len = match prefix {
            1 => usize::from(self.u8()?),
            2 => usize::from(self.u16()?),
            _ => self.u24()? as usize,
        };
        match self.rest.split_at_checked(len) {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(Reader {
                    rest: head,
                    end: self.offset(),
                })
            }
            None => Err(Error::BadLength {
                field,
                at,
                length: len,
                available: self.rest.len(),
            }),
        }
    }
}
