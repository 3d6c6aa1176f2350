//! The QUIC Initial path. The first byte picks a mode:
//! - raw: the rest is a UDP datagram (and a frame payload, and a long header);
//! - sealed: the rest is the plaintext frames of one or two client Initials, sealed
//!   with the real keys so decryption succeeds and the frame walker and CRYPTO
//!   reassembly see fuzzer-controlled data;
//! Oracle besides no panic: decryption with the key cache (kept across inputs)
//! gives exactly what decryption with fresh keys gives.
//! - mutated: a sealed Initial with one byte flipped after protection.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

use toktra_wire::quic::{
    Frames, InitialKeyCache, LongHeader, Side, VERSION_1, VERSION_2, decrypt_initial,
    decrypt_initial_cached, feed_client_datagram, feed_client_datagram_cached, seal_client_initial,
};

thread_local! {
    // Kept across inputs, so keys cached for one DCID and version meet packets of
    // another.
    static KEYS: RefCell<InitialKeyCache> = RefCell::new(InitialKeyCache::new());
}
use toktra_wire::{HelloAssembler, HelloInfo, Progress, StreamKind, Transport};

const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

fn seal(version: u32, pn: u32, frames: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; frames.len() + 128];
    let n = seal_client_initial(version, &DCID, &[7, 7], pn, frames, &mut out).ok()?;
    out.truncate(n);
    Some(out)
}

/// Feeds `datagram` to `asm` and, as an oracle, to a copy of it through the key
/// cache: both must give the same outcome.
fn feed(datagram: &[u8], asm: &mut HelloAssembler) {
    let mut scratch = vec![0u8; datagram.len().max(1)];
    let mut scratch2 = scratch.clone();
    let mut twin = Box::new(asm.clone());
    KEYS.with_borrow_mut(|keys| {
        let cached = feed_client_datagram_cached(datagram, &mut scratch2, &mut twin, keys);
        let plain = feed_client_datagram(datagram, &mut scratch, asm);
        assert_eq!(plain, cached);
        if let Ok((_, Progress::Complete(h))) = plain {
            let info = HelloInfo::new(&h, Transport::Quic);
            assert_eq!(info.ja4.as_str().as_bytes()[0], b'q');
        }
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let version = if mode & 0x80 == 0 {
        VERSION_1
    } else {
        VERSION_2
    };
    let mut asm = Box::new(HelloAssembler::new(StreamKind::QuicCrypto));
    match mode % 3 {
        0 => {
            feed(rest, &mut asm);
            for f in Frames::new(rest) {
                if f.is_err() {
                    break;
                }
            }
            let _ = LongHeader::parse(rest);
            let mut out = vec![0u8; 1500];
            let mut out2 = vec![0u8; 1500];
            for side in [Side::Server, Side::Client] {
                let plain = decrypt_initial(rest, side, &mut out);
                KEYS.with_borrow_mut(|keys| {
                    let cached = decrypt_initial_cached(rest, side, &mut out2, keys);
                    assert_eq!(plain, cached);
                });
            }
        }
        1 => {
            // Two packets, split where the control byte says, delivered in either
            // order as separate datagrams.
            let cut = usize::from(mode >> 2 & 0x0f) * rest.len() / 15;
            let (a, b) = rest.split_at(cut);
            let (Some(p0), Some(p1)) = (seal(version, 0, a), seal(version, 1, b)) else {
                return;
            };
            if mode & 0x40 == 0 {
                feed(&p0, &mut asm);
                feed(&p1, &mut asm);
            } else {
                // Coalesced in one datagram.
                let mut d = p1;
                d.extend_from_slice(&p0);
                feed(&d, &mut asm);
            }
        }
        _ => {
            let Some((&pos, frames)) = rest.split_first() else {
                return;
            };
            let Some(mut p) = seal(version, 0, frames) else {
                return;
            };
            let i = usize::from(pos) * p.len() / 256;
            if let Some(b) = p.get_mut(i) {
                *b ^= mode | 1;
            }
            feed(&p, &mut asm);
        }
    }
});
