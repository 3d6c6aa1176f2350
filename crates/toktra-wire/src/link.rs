//! Link-layer framings found in capture files and on capture sockets: Ethernet (with
//! 802.1Q / 802.1ad VLAN tags), Linux cooked capture v1 (SLL) and v2 (SLL2), raw IP,
//! and BSD loopback (NULL / LOOP). Each is peeled down to the network-layer packet.

use core::fmt;

/// The link-layer framing of a frame, as named by a pcap/pcapng link type (DLT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// DLT_EN10MB (1): Ethernet II, optionally VLAN-tagged.
    Ethernet,
    /// DLT_LINUX_SLL (113): Linux cooked capture, 16-byte header.
    LinuxSll,
    /// DLT_LINUX_SLL2 (276): Linux cooked capture v2, 20-byte header.
    LinuxSll2,
    /// DLT_RAW (101, and 12/14 on some systems): the frame is an IPv4 or IPv6 packet.
    RawIp,
    /// LINKTYPE_IPV4 (228): the frame is an IPv4 packet.
    Ipv4,
    /// LINKTYPE_IPV6 (229): the frame is an IPv6 packet.
    Ipv6,
    /// DLT_NULL (0): BSD loopback, a 4-byte address family in the capturing host's
    /// byte order.
    Null,
    /// DLT_LOOP (108): OpenBSD loopback, a 4-byte address family in network order.
    Loop,
}

impl LinkType {
    /// Maps a pcap/pcapng link-type number to a framing this crate understands.
    pub fn from_pcap(linktype: u32) -> Option<Self> {
        Some(match linktype {
            0 => Self::Null,
            1 => Self::Ethernet,
            12 | 14 | 101 => Self::RawIp,
            108 => Self::Loop,
            113 => Self::LinuxSll,
            228 => Self::Ipv4,
            229 => Self::Ipv6,
            276 => Self::LinuxSll2,
            _ => return None,
        })
    }
}

/// Which network protocol a link frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetworkProtocol {
    Ipv4,
    Ipv6,
}

/// Why a frame yielded no IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The frame ends inside its link-layer header.
    Truncated { needed: usize, available: usize },
    /// The frame carries something other than IPv4/IPv6 (ARP, LLDP, ...).
    NotIp { ethertype: u16 },
    /// BSD loopback frame whose address family is neither IPv4 nor IPv6.
    UnknownAddressFamily { family: u32 },
    /// A raw-IP frame whose first nibble is neither 4 nor 6.
    UnknownIpVersion { version: u8 },
    /// More stacked VLAN tags than any real network uses; refused to bound work.
    TooManyVlanTags,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => write!(
                f,
                "link-layer header truncated: needs {needed} bytes, frame has {available}"
            ),
            Self::NotIp { ethertype } => write!(f, "frame is not IP (ethertype {ethertype:#06x})"),
            Self::UnknownAddressFamily { family } => {
                write!(f, "loopback frame with unknown address family {family}")
            }
            Self::UnknownIpVersion { version } => {
                write!(f, "raw IP frame with IP version {version}")
            }
            Self::TooManyVlanTags => f.write_str("more than 4 stacked VLAN tags"),
        }
    }
}

impl core::error::Error for LinkError {}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const MAX_VLAN_TAGS: usize = 4;

/// The network-layer packet inside a link frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkFrame<'a> {
    pub protocol: NetworkProtocol,
    /// The outermost VLAN id, if the frame was tagged.
    pub vlan: Option<u16>,
    /// The IP packet (may still carry Ethernet padding at its end; the IP view trims it).
    pub payload: &'a [u8],
}

/// Peels the link-layer header off `frame`.
pub fn parse(link: LinkType, frame: &[u8]) -> Result<LinkFrame<'_>, LinkError> {
    match link {
        LinkType::Ethernet => ethernet(frame),
        LinkType::LinuxSll => {
            let ethertype = be16(frame, 14)?;
            ip_by_ethertype(ethertype, rest(frame, 16)?, None)
        }
        LinkType::LinuxSll2 => {
            let ethertype = be16(frame, 0)?;
            ip_by_ethertype(ethertype, rest(frame, 20)?, None)
        }
        LinkType::RawIp => raw_ip(frame),
        LinkType::Ipv4 => Ok(LinkFrame {
            protocol: NetworkProtocol::Ipv4,
            vlan: None,
            payload: frame,
        }),
        LinkType::Ipv6 => Ok(LinkFrame {
            protocol: NetworkProtocol::Ipv6,
            vlan: None,
            payload: frame,
        }),
        LinkType::Null | LinkType::Loop => {
            let raw = *frame.first_chunk::<4>().ok_or(LinkError::Truncated {
                needed: 4,
                available: frame.len(),
            })?;
            // DLT_NULL stores the family in the writer's byte order; the values that
            // matter are small, so whichever order yields a small number is the right one.
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(raw)
            } else {
                let le = u32::from_le_bytes(raw);
                if le <= 0xffff {
                    le
                } else {
                    u32::from_be_bytes(raw)
                }
            };
            let protocol = match family {
                2 => NetworkProtocol::Ipv4,
                // AF_INET6 differs between BSDs: 24 (NetBSD/OpenBSD), 28 (FreeBSD),
                // 30 (macOS), 10 (Linux).
                10 | 24 | 28 | 30 => NetworkProtocol::Ipv6,
                other => return Err(LinkError::UnknownAddressFamily { family: other }),
            };
            Ok(LinkFrame {
                protocol,
                vlan: None,
                payload: rest(frame, 4)?,
            })
        }
    }
}

fn ethernet(frame: &[u8]) -> Result<LinkFrame<'_>, LinkError> {
    let mut ethertype = be16(frame, 12)?;
    let mut offset = 14usize;
    let mut vlan = None;
    let mut tags = 0usize;
    while matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
    ) {
        if tags == MAX_VLAN_TAGS {
            return Err(LinkError::TooManyVlanTags);
        }
        let tci = be16(frame, offset)?;
        if vlan.is_none() {
            vlan = Some(tci & 0x0fff);
        }
        ethertype = be16(frame, offset.saturating_add(2))?;
        offset = offset.saturating_add(4);
        tags = tags.saturating_add(1);
    }
    ip_by_ethertype(ethertype, rest(frame, offset)?, vlan)
}

fn ip_by_ethertype(
    ethertype: u16,
    payload: &[u8],
    vlan: Option<u16>,
) -> Result<LinkFrame<'_>, LinkError> {
    let protocol = match ethertype {
        ETHERTYPE_IPV4 => NetworkProtocol::Ipv4,
        ETHERTYPE_IPV6 => NetworkProtocol::Ipv6,
        other => return Err(LinkError::NotIp { ethertype: other }),
    };
    Ok(LinkFrame {
        protocol,
        vlan,
        payload,
    })
}

fn raw_ip(frame: &[u8]) -> Result<LinkFrame<'_>, LinkError> {
    let first = *frame.first().ok_or(LinkError::Truncated {
        needed: 1,
        available: 0,
    })?;
    let protocol = match first >> 4 {
        4 => NetworkProtocol::Ipv4,
        6 => NetworkProtocol::Ipv6,
        version => return Err(LinkError::UnknownIpVersion { version }),
    };
    Ok(LinkFrame {
        protocol,
        vlan: None,
        payload: frame,
    })
}

fn be16(frame: &[u8], at: usize) -> Result<u16, LinkError> {
    frame
        .get(at..)
        .and_then(|b| b.first_chunk::<2>())
        .map(|b| u16::from_be_bytes(*b))
        .ok_or(LinkError::Truncated {
            needed: at.saturating_add(2),
            available: frame.len(),
        })
}

fn rest(frame: &[u8], at: usize) -> Result<&[u8], LinkError> {
    frame.get(at..).ok_or(LinkError::Truncated {
        needed: at,
        available: frame.len(),
    })
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
    fn ethernet_with_qinq_reaches_ipv6() {
        let mut f = [0u8; 22 + 2];
        f[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
        f[14..16].copy_from_slice(&0x0064u16.to_be_bytes());
        f[16..18].copy_from_slice(&0x8100u16.to_be_bytes());
        f[18..20].copy_from_slice(&0x00c8u16.to_be_bytes());
        f[20..22].copy_from_slice(&0x86ddu16.to_be_bytes());
        let l = parse(LinkType::Ethernet, &f).unwrap();
        assert_eq!(l.protocol, NetworkProtocol::Ipv6);
        assert_eq!(l.vlan, Some(100));
        assert_eq!(l.payload.len(), 2);
    }

    #[test]
    fn arp_is_not_ip_and_short_frames_are_truncated() {
        let mut f = [0u8; 14];
        f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(
            parse(LinkType::Ethernet, &f),
            Err(LinkError::NotIp { ethertype: 0x0806 })
        );
        assert!(matches!(
            parse(LinkType::Ethernet, &f[..13]),
            Err(LinkError::Truncated { .. })
        ));
        assert!(matches!(
            parse(LinkType::LinuxSll2, &f[..3]),
            Err(LinkError::Truncated { .. })
        ));
    }

    #[test]
    fn too_many_vlan_tags_are_refused() {
        let mut f = [0u8; 64];
        for i in 0..10 {
            f[12 + 4 * i..14 + 4 * i].copy_from_slice(&0x8100u16.to_be_bytes());
        }
        assert_eq!(
            parse(LinkType::Ethernet, &f),
            Err(LinkError::TooManyVlanTags)
        );
    }

    #[test]
    fn sll_sll2_null_and_raw() {
        let mut sll = [0u8; 17];
        sll[14..16].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(parse(LinkType::LinuxSll, &sll).unwrap().payload.len(), 1);
        let mut sll2 = [0u8; 21];
        sll2[0..2].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(
            parse(LinkType::LinuxSll2, &sll2).unwrap().protocol,
            NetworkProtocol::Ipv6
        );
        let null_le = [2u8, 0, 0, 0, 0x45];
        assert_eq!(
            parse(LinkType::Null, &null_le).unwrap().protocol,
            NetworkProtocol::Ipv4
        );
        let null_be = [0u8, 0, 0, 30, 0x60];
        assert_eq!(
            parse(LinkType::Null, &null_be).unwrap().protocol,
            NetworkProtocol::Ipv6
        );
        assert_eq!(
            parse(LinkType::Loop, &[0, 0, 0, 7]),
            Err(LinkError::UnknownAddressFamily { family: 7 })
        );
        assert_eq!(
            parse(LinkType::RawIp, &[0x60]).unwrap().protocol,
            NetworkProtocol::Ipv6
        );
        assert_eq!(
            parse(LinkType::RawIp, &[0x50]),
            Err(LinkError::UnknownIpVersion { version: 5 })
        );
    }
}
