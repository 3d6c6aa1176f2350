//! The QUIC side of the tracker: client Initials are decrypted (keys from their DCID)
//! and their CRYPTO frames reassembled until the ClientHello is complete.

use toktra_wire::assembler::{Progress, StreamKind};
use toktra_wire::ja4::Transport;
use toktra_wire::quic::{LongHeader, PacketType, feed_client_datagram_cached};

use super::HelloSummary;

pub(crate) use toktra_wire::quic::looks_like_initial;

/// Largest UDP payload; client Initials are at least 1200 bytes and at most one
/// path MTU, but a capture may hold anything up to this.
pub(crate) const SCRATCH_LEN: usize = 65_535;

pub(crate) enum Step {
    Waiting,
    NoBuffer,
    Hello(HelloSummary),
    NotQuic,
}

/// One client datagram while the hello is pending. `first` marks the datagram that
/// created the flow: if even that one does not decrypt, the flow is not QUIC. Later
/// undecryptable datagrams (0-RTT, Initials after a Retry or with the server's CID)
/// are ignored.
pub(crate) fn client_datagram(
    assembler: &mut Option<super::Lease>,
    pool: &mut super::AssemblerPool,
    scratch: &mut [u8],
    first: bool,
    datagram: &[u8],
) -> Step {
    if assembler.is_none() {
        *assembler = pool.take(StreamKind::QuicCrypto);
    }
    let Some(asm) = assembler.as_mut() else {
        return Step::NoBuffer;
    };
    match feed_client_datagram_cached(datagram, scratch, asm, &mut pool.keys) {
        Ok((_, Progress::Complete(hello))) => {
            Step::Hello(HelloSummary::new(&hello, Transport::Quic, &mut pool.memo))
        }
        Ok((_, Progress::NeedMore)) => Step::Waiting,
        Err(_) if first => Step::NotQuic,
        Err(_) => {
            // A broken CRYPTO stream stays broken in the assembler; anything else is
            // just a packet we cannot read.
            if asm.client_hello().is_none() && asm.push(0, &[]).is_err() {
                Step::NotQuic
            } else {
                Step::Waiting
            }
        }
    }
}

/// The handshake's share of the first client datagram that carries a 1-RTT
/// (short-header) packet: the long-header packets (Initial, 0-RTT, Handshake)
/// coalesced in front of it (RFC 9000 §12.2) — or the whole datagram when one of
/// them is an Initial, since a client pads every datagram carrying an Initial to
/// 1 200 bytes (§14.1) and the padding is then mostly not request. `None` when the
/// datagram holds only long-header packets, or ends in one that cannot be read
/// (then the handshake goes on).
pub(crate) fn long_header_bytes(datagram: &[u8]) -> Option<usize> {
    let mut at = 0;
    let mut initial = false;
    loop {
        let rest = datagram.get(at..).filter(|r| !r.is_empty())?;
        if rest[0] & 0x80 == 0 {
            return Some(if initial { datagram.len() } else { at });
        }
        let header = LongHeader::parse(rest).ok()?;
        initial |= header.packet_type == Some(PacketType::Initial);
        at += header.packet_len.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::long_header_bytes;

    fn long(kind: u8, len: usize) -> Vec<u8> {
        // v1, 8-byte DCID, empty SCID, Length as a 2-byte varint.
        let mut p = vec![0xc0 | (kind << 4), 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0];
        if kind == 0 {
            p.push(0); // no token
        }
        p.extend(((len as u16) | 0x4000).to_be_bytes());
        p.resize(p.len() + len, 0xaa);
        p
    }

    #[test]
    fn finds_the_short_header_packet_behind_coalesced_long_ones() {
        let short = [0x41u8, 9, 9, 9, 9];
        assert_eq!(long_header_bytes(&short), Some(0));
        let handshake = long(2, 60);
        let mut d = handshake.clone();
        d.extend(short);
        assert_eq!(long_header_bytes(&d), Some(handshake.len()));
        let mut d = long(0, 1200);
        d.extend(&handshake);
        assert_eq!(long_header_bytes(&d), None, "no 1-RTT packet yet");
        d.extend(short);
        assert_eq!(
            long_header_bytes(&d),
            Some(d.len()),
            "a datagram with an Initial is padded: all of it is handshake"
        );
        assert_eq!(long_header_bytes(&handshake[..20]), None, "truncated");
    }
}
