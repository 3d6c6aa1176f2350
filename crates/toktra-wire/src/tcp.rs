//! A TCP segment view: ports, sequence numbers, flags, options, payload.

use core::fmt;

/// Why bytes are not a usable TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpError {
    /// The segment ends inside its header.
    Truncated { needed: usize, available: usize },
    /// Data offset below 5 words.
    BadDataOffset { words: u8 },
}

impl fmt::Display for TcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(
                    f,
                    "TCP segment truncated: needs {needed} bytes, has {available}"
                )
            }
            Self::BadDataOffset { words } => write!(f, "TCP data offset {words} words is below 5"),
        }
    }
}

impl core::error::Error for TcpError {}

/// The TCP control bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn psh(self) -> bool {
        self.0 & Self::PSH != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// A checked view of a TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    fixed: &'a [u8; 20],
    options: &'a [u8],
    payload: &'a [u8],
}

impl<'a> TcpSegment<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, TcpError> {
        let (fixed, _) = bytes.split_first_chunk::<20>().ok_or(TcpError::Truncated {
            needed: 20,
            available: bytes.len(),
        })?;
        let words = fixed[12] >> 4;
        if words < 5 {
            return Err(TcpError::BadDataOffset { words });
        }
        let header_len = usize::from(words).saturating_mul(4);
        let (header, payload) = bytes
            .split_at_checked(header_len)
            .ok_or(TcpError::Truncated {
                needed: header_len,
                available: bytes.len(),
            })?;
        let options = header.get(20..).unwrap_or(&[]);
        Ok(Self {
            fixed,
            options,
            payload,
        })
    }

    pub fn src_port(&self) -> u16 {
        u16::from_be_bytes([self.fixed[0], self.fixed[1]])
    }
    pub fn dst_port(&self) -> u16 {
        u16::from_be_bytes([self.fixed[2], self.fixed[3]])
    }
    pub fn seq(&self) -> u32 {
        u32::from_be_bytes([self.fixed[4], self.fixed[5], self.fixed[6], self.fixed[7]])
    }
    pub fn ack_number(&self) -> u32 {
        u32::from_be_bytes([self.fixed[8], self.fixed[9], self.fixed[10], self.fixed[11]])
    }
    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        self.options.len().saturating_add(20)
    }
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.fixed[13])
    }
    pub fn window(&self) -> u16 {
        u16::from_be_bytes([self.fixed[14], self.fixed[15]])
    }
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.fixed[16], self.fixed[17]])
    }
    pub fn options(&self) -> TcpOptions<'a> {
        TcpOptions { rest: self.options }
    }
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// One TCP option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption<'a> {
    Nop,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    /// SACK blocks, raw (pairs of 32-bit edges).
    Sack(&'a [u8]),
    Timestamps {
        value: u32,
        echo: u32,
    },
    Other {
        kind: u8,
        data: &'a [u8],
    },
    /// An option whose length runs past the header or is below 2; iteration stops.
    Malformed {
        kind: u8,
    },
}

/// Iterator over TCP options; stops at End-of-Option-List or the first malformed option.
#[derive(Clone, Debug)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = TcpOption<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        match kind {
            0 => {
                self.rest = &[];
                None
            }
            1 => {
                self.rest = after_kind;
                Some(TcpOption::Nop)
            }
            _ => {
                let len = after_kind.first().map(|&l| usize::from(l));
                let Some((option, rest)) = len
                    .filter(|&l| l >= 2)
                    .and_then(|l| self.rest.split_at_checked(l))
                else {
                    self.rest = &[];
                    return Some(TcpOption::Malformed { kind });
                };
                self.rest = rest;
                let data = option.get(2..).unwrap_or(&[]);
                Some(match (kind, data.len()) {
                    (2, 2) => TcpOption::MaxSegmentSize(
                        data.first_chunk::<2>()
                            .map_or(0, |b| u16::from_be_bytes(*b)),
                    ),
                    (3, 1) => TcpOption::WindowScale(data.first().copied().unwrap_or(0)),
                    (4, 0) => TcpOption::SackPermitted,
                    (5, _) => TcpOption::Sack(data),
                    (8, 8) => {
                        let both = data.first_chunk::<8>().copied().unwrap_or([0; 8]);
                        let [v0, v1, v2, v3, e0, e1, e2, e3] = both;
                        TcpOption::Timestamps {
                            value: u32::from_be_bytes([v0, v1, v2, v3]),
                            echo: u32::from_be_bytes([e0, e1, e2, e3]),
                        }
                    }
                    _ => TcpOption::Other { kind, data },
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    #[test]
    fn segment_with_options_and_payload() {
        let mut s = [0u8; 40];
        s[0..2].copy_from_slice(&54321u16.to_be_bytes());
        s[2..4].copy_from_slice(&443u16.to_be_bytes());
        s[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        s[12] = 8 << 4;
        s[13] = TcpFlags::SYN | TcpFlags::ACK;
        s[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
        s[24] = 1;
        s[25..28].copy_from_slice(&[3, 3, 7]);
        s[28..32].copy_from_slice(&[4, 2, 0, 0]);
        let t = TcpSegment::parse(&s).unwrap();
        assert_eq!(
            (t.src_port(), t.dst_port(), t.seq()),
            (54321, 443, 0xdead_beef)
        );
        assert!(t.flags().syn() && t.flags().ack() && !t.flags().fin());
        assert_eq!(t.payload().len(), 8);
        let opts: [Option<TcpOption<'_>>; 5] = {
            let mut it = t.options();
            [it.next(), it.next(), it.next(), it.next(), it.next()]
        };
        assert_eq!(opts[0], Some(TcpOption::MaxSegmentSize(1460)));
        assert_eq!(opts[1], Some(TcpOption::Nop));
        assert_eq!(opts[2], Some(TcpOption::WindowScale(7)));
        assert_eq!(opts[3], Some(TcpOption::SackPermitted));
        assert_eq!(opts[4], None, "EOL ends the list");
    }

    #[test]
    fn malformed_options_and_headers() {
        let mut s = [0u8; 24];
        s[12] = 6 << 4;
        s[20..22].copy_from_slice(&[8, 30]);
        let t = TcpSegment::parse(&s).unwrap();
        let mut it = t.options();
        assert_eq!(it.next(), Some(TcpOption::Malformed { kind: 8 }));
        assert_eq!(it.next(), None);
        s[12] = 4 << 4;
        assert_eq!(
            TcpSegment::parse(&s),
            Err(TcpError::BadDataOffset { words: 4 })
        );
        s[12] = 15 << 4;
        assert!(matches!(
            TcpSegment::parse(&s),
            Err(TcpError::Truncated { needed: 60, .. })
        ));
        assert!(matches!(
            TcpSegment::parse(&s[..19]),
            Err(TcpError::Truncated { .. })
        ));
    }
}
