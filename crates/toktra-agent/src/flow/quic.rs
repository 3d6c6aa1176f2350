//! The QUIC side of the tracker: client Initials are decrypted (keys from their DCID)
//! and their CRYPTO frames reassembled until the ClientHello is complete.

use toktra_wire::assembler::{Progress, StreamKind};
use toktra_wire::ja4::Transport;
use toktra_wire::quic::feed_client_datagram_cached;

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
