//! A UDP datagram view.

use core::fmt;

/// Why bytes are not a usable UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpError {
    /// Fewer than the 8 header bytes.
    Truncated { available: usize },
    /// The length field is below the header size.
    BadLength { length: u16 },
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { available } => {
                write!(
                    f,
                    "UDP datagram truncated: needs 8 header bytes, has {available}"
                )
            }
            Self::BadLength { length } => {
                write!(f, "UDP length {length} is below the 8-byte header")
            }
        }
    }
}

impl core::error::Error for UdpError {}

/// A checked view of a UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    fixed: &'a [u8; 8],
    payload: &'a [u8],
}

impl<'a> UdpDatagram<'a> {
    /// The payload is trimmed to the length field; a datagram cut by the snap length
    /// keeps what was captured. Length 0 (IPv6 jumbograms) keeps everything.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, UdpError> {
        let (fixed, rest) = bytes.split_first_chunk::<8>().ok_or(UdpError::Truncated {
            available: bytes.len(),
        })?;
        let length = u16::from_be_bytes([fixed[4], fixed[5]]);
        let payload = match length {
            0 => rest,
            1..8 => return Err(UdpError::BadLength { length }),
            _ => {
                let want = usize::from(length).saturating_sub(8);
                rest.get(..want).unwrap_or(rest)
            }
        };
        Ok(Self { fixed, payload })
    }
    pub fn src_port(&self) -> u16 {
        u16::from_be_bytes([self.fixed[0], self.fixed[1]])
    }
    pub fn dst_port(&self) -> u16 {
        u16::from_be_bytes([self.fixed[2], self.fixed[3]])
    }
    pub fn length(&self) -> u16 {
        u16::from_be_bytes([self.fixed[4], self.fixed[5]])
    }
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.fixed[6], self.fixed[7]])
    }
    pub fn payload(&self) -> &'a [u8] {
        self.payload
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
    fn datagram_trimmed_to_length() {
        let mut d = [0u8; 20];
        d[0..2].copy_from_slice(&5353u16.to_be_bytes());
        d[2..4].copy_from_slice(&443u16.to_be_bytes());
        d[4..6].copy_from_slice(&12u16.to_be_bytes());
        let u = UdpDatagram::parse(&d).unwrap();
        assert_eq!(
            (u.src_port(), u.dst_port(), u.payload().len()),
            (5353, 443, 4)
        );
        d[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            UdpDatagram::parse(&d),
            Err(UdpError::BadLength { length: 7 })
        );
        assert_eq!(
            UdpDatagram::parse(&d[..7]),
            Err(UdpError::Truncated { available: 7 })
        );
    }
}
