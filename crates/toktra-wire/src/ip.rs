//! IPv4 (options and fragmentation flags) and IPv6 (extension headers skipped) views.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers this crate cares about.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Why bytes are not a usable IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpError {
    /// The packet ends inside a header.
    Truncated { needed: usize, available: usize },
    /// The version nibble does not match the view.
    WrongVersion { version: u8 },
    /// IPv4 IHL below 5 words.
    BadHeaderLength { ihl: u8 },
    /// IPv4 total length smaller than its own header.
    BadTotalLength { total: u16, header: usize },
    /// An IPv6 extension-header chain longer than any real packet carries.
    TooManyExtensionHeaders,
}

impl fmt::Display for IpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(
                    f,
                    "IP packet truncated: needs {needed} bytes, has {available}"
                )
            }
            Self::WrongVersion { version } => write!(f, "unexpected IP version {version}"),
            Self::BadHeaderLength { ihl } => write!(f, "IPv4 header length {ihl} words is below 5"),
            Self::BadTotalLength { total, header } => {
                write!(
                    f,
                    "IPv4 total length {total} is smaller than its {header}-byte header"
                )
            }
            Self::TooManyExtensionHeaders => f.write_str("more than 8 IPv6 extension headers"),
        }
    }
}

impl core::error::Error for IpError {}

/// Where a fragment sits in its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of this fragment's data in bytes.
    pub offset: u32,
    /// More fragments follow.
    pub more: bool,
}

impl Fragment {
    /// Only the first fragment starts with the transport header.
    pub fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// A checked view of an IPv4 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<'a> {
    header: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    /// Validates the fixed header, IHL and total length. Bytes past the total length
    /// (Ethernet padding) are dropped; a packet cut short by the capture's snap length
    /// keeps what was captured.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, IpError> {
        let fixed = bytes.first_chunk::<20>().ok_or(IpError::Truncated {
            needed: 20,
            available: bytes.len(),
        })?;
        let version = fixed[0] >> 4;
        if version != 4 {
            return Err(IpError::WrongVersion { version });
        }
        let ihl = fixed[0] & 0x0f;
        if ihl < 5 {
            return Err(IpError::BadHeaderLength { ihl });
        }
        let header_len = usize::from(ihl).saturating_mul(4);
        let total = u16::from_be_bytes([fixed[2], fixed[3]]);
        if usize::from(total) < header_len {
            return Err(IpError::BadTotalLength {
                total,
                header: header_len,
            });
        }
        let (header, rest) = bytes
            .split_at_checked(header_len)
            .ok_or(IpError::Truncated {
                needed: header_len,
                available: bytes.len(),
            })?;
        let payload_len = usize::from(total).saturating_sub(header_len);
        let payload = rest.get(..payload_len).unwrap_or(rest);
        Ok(Self { header, payload })
    }

    fn fixed(&self) -> &'a [u8; 20] {
        // parse() guaranteed at least 20 header bytes; the fallback is never taken.
        self.header.first_chunk::<20>().unwrap_or(&[0; 20])
    }

    pub fn header_len(&self) -> usize {
        self.header.len()
    }
    pub fn dscp_ecn(&self) -> u8 {
        self.fixed()[1]
    }
    pub fn total_len(&self) -> u16 {
        u16::from_be_bytes([self.fixed()[2], self.fixed()[3]])
    }
    pub fn identification(&self) -> u16 {
        u16::from_be_bytes([self.fixed()[4], self.fixed()[5]])
    }
    pub fn dont_fragment(&self) -> bool {
        self.fixed()[6] & 0x40 != 0
    }
    /// `Some` when this packet is a fragment (more-fragments set or a non-zero offset).
    pub fn fragment(&self) -> Option<Fragment> {
        let word = u16::from_be_bytes([self.fixed()[6], self.fixed()[7]]);
        let more = word & 0x2000 != 0;
        let offset = u32::from(word & 0x1fff).saturating_mul(8);
        (more || offset != 0).then_some(Fragment { offset, more })
    }
    pub fn ttl(&self) -> u8 {
        self.fixed()[8]
    }
    pub fn protocol(&self) -> u8 {
        self.fixed()[9]
    }
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.fixed()[10], self.fixed()[11]])
    }
    pub fn src(&self) -> Ipv4Addr {
        let f = self.fixed();
        Ipv4Addr::new(f[12], f[13], f[14], f[15])
    }
    pub fn dst(&self) -> Ipv4Addr {
        let f = self.fixed();
        Ipv4Addr::new(f[16], f[17], f[18], f[19])
    }
    /// The raw option bytes (empty when IHL is 5).
    pub fn options(&self) -> &'a [u8] {
        self.header.get(20..).unwrap_or(&[])
    }
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

const MAX_EXTENSION_HEADERS: usize = 8;

/// A checked view of an IPv6 packet, with the extension-header chain already walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Packet<'a> {
    fixed: &'a [u8; 40],
    next_header: u8,
    fragment: Option<Fragment>,
    payload: &'a [u8],
}

impl<'a> Ipv6Packet<'a> {
    /// Validates the fixed header and skips hop-by-hop, routing, destination-options,
    /// fragment, AH and mobility headers to reach the upper-layer protocol.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, IpError> {
        let (fixed, rest) = bytes.split_first_chunk::<40>().ok_or(IpError::Truncated {
            needed: 40,
            available: bytes.len(),
        })?;
        let version = fixed[0] >> 4;
        if version != 6 {
            return Err(IpError::WrongVersion { version });
        }
        let payload_len = usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
        // Payload length 0 means a jumbogram (RFC 2675); the captured bytes are all we have.
        let mut payload = if payload_len == 0 {
            rest
        } else {
            rest.get(..payload_len).unwrap_or(rest)
        };
        let mut next_header = fixed[6];
        let mut fragment = None;
        let mut seen = 0usize;
        loop {
            let ext_len = match next_header {
                // Hop-by-hop, routing, destination options, mobility, HIP, shim6:
                // length in 8-byte units, not counting the first 8 bytes.
                0 | 43 | 60 | 135 | 139 | 140 => {
                    let len = *payload.get(1).ok_or(trunc(40, bytes, payload, 2))?;
                    usize::from(len).saturating_add(1).saturating_mul(8)
                }
                44 => {
                    let f = payload
                        .first_chunk::<8>()
                        .ok_or(trunc(40, bytes, payload, 8))?;
                    let word = u16::from_be_bytes([f[2], f[3]]);
                    fragment = Some(Fragment {
                        offset: u32::from(word >> 3).saturating_mul(8),
                        more: word & 1 != 0,
                    });
                    8
                }
                // AH: length in 4-byte units, minus 2.
                51 => {
                    let len = *payload.get(1).ok_or(trunc(40, bytes, payload, 2))?;
                    usize::from(len).saturating_add(2).saturating_mul(4)
                }
                _ => break,
            };
            if seen == MAX_EXTENSION_HEADERS {
                return Err(IpError::TooManyExtensionHeaders);
            }
            seen = seen.saturating_add(1);
            next_header = *payload.first().ok_or(trunc(40, bytes, payload, 1))?;
            payload = payload
                .get(ext_len..)
                .ok_or(trunc(40, bytes, payload, ext_len))?;
            // A non-first fragment's payload is the middle of a datagram, not headers.
            if fragment.is_some_and(|f| !f.is_first()) {
                break;
            }
        }
        Ok(Self {
            fixed,
            next_header,
            fragment,
            payload,
        })
    }

    pub fn traffic_class(&self) -> u8 {
        (self.fixed[0] << 4) | (self.fixed[1] >> 4)
    }
    pub fn flow_label(&self) -> u32 {
        u32::from_be_bytes([0, self.fixed[1] & 0x0f, self.fixed[2], self.fixed[3]])
    }
    pub fn hop_limit(&self) -> u8 {
        self.fixed[7]
    }
    /// The upper-layer protocol after the extension headers.
    pub fn protocol(&self) -> u8 {
        self.next_header
    }
    /// `Some` when a fragment header was present.
    pub fn fragment(&self) -> Option<Fragment> {
        self.fragment
    }
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(*self.fixed[8..].first_chunk::<16>().unwrap_or(&[0; 16]))
    }
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(*self.fixed[24..].first_chunk::<16>().unwrap_or(&[0; 16]))
    }
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

fn trunc(base: usize, whole: &[u8], at: &[u8], want: usize) -> IpError {
    let offset = whole.len().saturating_sub(at.len()).max(base);
    IpError::Truncated {
        needed: offset.saturating_add(want),
        available: whole.len(),
    }
}

/// Either IP version, for code that does not care which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpPacket<'a> {
    V4(Ipv4Packet<'a>),
    V6(Ipv6Packet<'a>),
}

impl<'a> IpPacket<'a> {
    /// Parses by the version nibble.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, IpError> {
        match bytes.first().map(|b| b >> 4) {
            Some(4) => Ipv4Packet::parse(bytes).map(Self::V4),
            Some(6) => Ipv6Packet::parse(bytes).map(Self::V6),
            Some(version) => Err(IpError::WrongVersion { version }),
            None => Err(IpError::Truncated {
                needed: 1,
                available: 0,
            }),
        }
    }
    pub fn src(&self) -> IpAddr {
        match self {
            Self::V4(p) => IpAddr::V4(p.src()),
            Self::V6(p) => IpAddr::V6(p.src()),
        }
    }
    pub fn dst(&self) -> IpAddr {
        match self {
            Self::V4(p) => IpAddr::V4(p.dst()),
            Self::V6(p) => IpAddr::V6(p.dst()),
        }
    }
    pub fn protocol(&self) -> u8 {
        match self {
            Self::V4(p) => p.protocol(),
            Self::V6(p) => p.protocol(),
        }
    }
    pub fn fragment(&self) -> Option<Fragment> {
        match self {
            Self::V4(p) => p.fragment(),
            Self::V6(p) => p.fragment(),
        }
    }
    pub fn payload(&self) -> &'a [u8] {
        match self {
            Self::V4(p) => p.payload(),
            Self::V6(p) => p.payload(),
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

    fn v4(ihl: u8, total: u16, flags_frag: u16) -> [u8; 64] {
        let mut p = [0u8; 64];
        p[0] = 0x40 | ihl;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[6..8].copy_from_slice(&flags_frag.to_be_bytes());
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p
    }

    #[test]
    fn ipv4_with_options_and_padding() {
        let p = v4(6, 30, 0x4000);
        let ip = Ipv4Packet::parse(&p).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.options().len(), 4);
        assert_eq!(
            ip.payload().len(),
            6,
            "Ethernet padding past total length is dropped"
        );
        assert!(ip.dont_fragment());
        assert_eq!(ip.fragment(), None);
        assert_eq!(ip.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.protocol(), PROTO_TCP);
    }

    #[test]
    fn ipv4_fragments_are_flagged() {
        let p = v4(5, 40, 0x2000);
        assert_eq!(
            Ipv4Packet::parse(&p).unwrap().fragment(),
            Some(Fragment {
                offset: 0,
                more: true
            })
        );
        let p = v4(5, 40, 0x0003);
        let f = Ipv4Packet::parse(&p).unwrap().fragment().unwrap();
        assert_eq!(f.offset, 24);
        assert!(!f.is_first());
    }

    #[test]
    fn ipv4_errors() {
        assert_eq!(
            Ipv4Packet::parse(&v4(4, 40, 0)),
            Err(IpError::BadHeaderLength { ihl: 4 })
        );
        assert_eq!(
            Ipv4Packet::parse(&v4(5, 10, 0)),
            Err(IpError::BadTotalLength {
                total: 10,
                header: 20
            })
        );
        assert!(matches!(
            Ipv4Packet::parse(&v4(15, 60, 0)[..40]),
            Err(IpError::Truncated { .. })
        ));
        assert!(matches!(
            Ipv4Packet::parse(&[0x45; 19]),
            Err(IpError::Truncated { .. })
        ));
        let mut p = v4(5, 40, 0);
        p[0] = 0x65;
        assert_eq!(
            Ipv4Packet::parse(&p),
            Err(IpError::WrongVersion { version: 6 })
        );
    }

    fn v6(next: u8, ext: &[u8], payload_len: u16) -> [u8; 128] {
        let mut p = [0u8; 128];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&payload_len.to_be_bytes());
        p[6] = next;
        p[23] = 1;
        p[40..40 + ext.len()].copy_from_slice(ext);
        p
    }

    #[test]
    fn ipv6_skips_extension_headers() {
        // hop-by-hop (8 bytes) -> destination options (16 bytes) -> UDP
        let mut ext = [0u8; 24];
        ext[0] = 60;
        ext[1] = 0;
        ext[8] = PROTO_UDP;
        ext[9] = 1;
        let p = v6(0, &ext, 32);
        let ip = Ipv6Packet::parse(&p).unwrap();
        assert_eq!(ip.protocol(), PROTO_UDP);
        assert_eq!(ip.payload().len(), 8);
        assert_eq!(ip.src(), Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1));
        assert_eq!(ip.fragment(), None);
    }

    #[test]
    fn ipv6_fragment_header_is_reported() {
        let ext = [PROTO_TCP, 0, 0, 0x11, 0, 0, 0, 1];
        let p = v6(44, &ext, 20);
        let ip = Ipv6Packet::parse(&p).unwrap();
        assert_eq!(
            ip.fragment(),
            Some(Fragment {
                offset: 16,
                more: true
            })
        );
    }

    #[test]
    fn ipv6_errors() {
        assert!(matches!(
            Ipv6Packet::parse(&v6(0, &[], 1)),
            Err(IpError::Truncated { .. })
        ));
        let mut loop_ext = [0u8; 80];
        for i in 0..10 {
            loop_ext[8 * i] = 60;
        }
        assert_eq!(
            Ipv6Packet::parse(&v6(60, &loop_ext, 80)),
            Err(IpError::TooManyExtensionHeaders)
        );
        assert!(matches!(
            IpPacket::parse(&[0x70]),
            Err(IpError::WrongVersion { version: 7 })
        ));
        assert!(matches!(
            IpPacket::parse(&[]),
            Err(IpError::Truncated { .. })
        ));
    }
}
