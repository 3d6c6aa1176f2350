//! TEST SCAFFOLDING (runs on Linux): turns the committed Chromium QUIC fixtures
//! (`fuzz/seeds/quic_initial/chromium-*`: a mode byte, then the plaintext frames of a
//! real Chromium ClientHello for api.openai.com) into the client Initial datagrams a
//! network would carry, sealed with toktra-wire's Initial protection exactly as the
//! fuzz target does, each padded to the 1200 bytes RFC 9000 requires. The driver
//! tests feed them through the WFP stand-in.
//!
//!   quic-initials SEED OUT_PREFIX    writes OUT_PREFIX-0.bin, OUT_PREFIX-1.bin, ...
//!
//! Before writing, the datagrams are checked to carry the whole hello only together
//! (every datagram but the last leaves it incomplete), so a fixture that stopped
//! splitting the hello fails here rather than weakening the tests silently.

use std::process::ExitCode;

use toktra_wire::quic::{VERSION_1, VERSION_2, feed_client_datagram, seal_client_initial};
use toktra_wire::{HelloAssembler, HelloInfo, Progress, StreamKind, Transport};

/// The fuzz target's connection ids (fuzz/fuzz_targets/quic_initial.rs).
const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
const SCID: [u8; 2] = [7, 7];
const MIN_INITIAL: usize = 1200;

fn seal(version: u32, pn: u32, frames: &[u8]) -> Result<Vec<u8>, String> {
    let mut padded = frames.to_vec();
    loop {
        let mut out = vec![0u8; padded.len() + 128];
        let n = seal_client_initial(version, &DCID, &SCID, pn, &padded, &mut out)
            .map_err(|e| format!("sealing: {e}"))?;
        if n >= MIN_INITIAL {
            out.truncate(n);
            return Ok(out);
        }
        // PADDING frames (zero bytes) after the CRYPTO data.
        padded.resize(padded.len() + MIN_INITIAL - n, 0);
    }
}

/// The datagrams of a two-Initial seed, as the fuzz target builds them.
fn datagrams(seed: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let (&mode, frames) = seed.split_first().ok_or("empty seed")?;
    if mode % 3 != 1 {
        return Err(format!(
            "seed mode {mode:#x} is not the two-Initial (sealed) mode"
        ));
    }
    let version = if mode & 0x80 == 0 {
        VERSION_1
    } else {
        VERSION_2
    };
    let cut = usize::from(mode >> 2 & 0x0f) * frames.len() / 15;
    let (a, b) = frames.split_at(cut);
    let (p0, p1) = (seal(version, 0, a)?, seal(version, 1, b)?);
    Ok(if mode & 0x40 == 0 {
        vec![p0, p1]
    } else {
        vec![[p1, p0].concat()]
    })
}

fn check(datagrams: &[Vec<u8>]) -> Result<String, String> {
    let mut asm = Box::new(HelloAssembler::new(StreamKind::QuicCrypto));
    let mut scratch = vec![0u8; 65_535];
    for (i, d) in datagrams.iter().enumerate() {
        let last = i + 1 == datagrams.len();
        match feed_client_datagram(d, &mut scratch, &mut asm)
            .map_err(|e| format!("datagram {i}: {e}"))?
        {
            (_, Progress::Complete(h)) if last => {
                let info = HelloInfo::new(&h, Transport::Quic);
                let alpn: Vec<_> = info.alpn().map(String::from_utf8_lossy).collect();
                return Ok(format!(
                    "sni {} alpn {} ja4 {}",
                    info.sni_str().unwrap_or("-"),
                    alpn.join(","),
                    info.ja4.as_str()
                ));
            }
            (_, Progress::Complete(_)) => {
                return Err(format!("the hello is complete after datagram {i} already"));
            }
            (_, Progress::NeedMore) if last => return Err("the hello is still incomplete".into()),
            (_, Progress::NeedMore) => {}
        }
    }
    Err("no datagrams".into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, seed, prefix] = &args[..] else {
        eprintln!("usage: quic-initials SEED OUT_PREFIX");
        return ExitCode::from(2);
    };
    let run = || -> Result<String, String> {
        let bytes = std::fs::read(seed).map_err(|e| format!("{seed}: {e}"))?;
        let grams = datagrams(&bytes)?;
        let what = check(&grams)?;
        for (i, d) in grams.iter().enumerate() {
            let path = format!("{prefix}-{i}.bin");
            std::fs::write(&path, d).map_err(|e| format!("{path}: {e}"))?;
        }
        Ok(format!(
            "{} datagram(s) of {:?} bytes, {what}",
            grams.len(),
            grams.iter().map(Vec::len).collect::<Vec<_>>()
        ))
    };
    match run() {
        Ok(line) => {
            println!("{seed}: {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quic-initials: {seed}: {e}");
            ExitCode::FAILURE
        }
    }
}
