//! Arbitrary bytes as a TCP stream, split at fuzzer-chosen points, delivered out of
//! order with a retransmission, through HelloAssembler, ClientHello, JA4 and
//! HelloInfo. Oracles: the JA4 memo gives what plain JA4 gives; however the stream is cut and ordered, a hello that completes
//! when delivered in one piece completes the same way when split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

use toktra_wire::{
    ClientHello, HelloAssembler, HelloInfo, Ja4Memo, Progress, StreamKind, Transport, ja4, ja4_memo,
};

thread_local! {
    // Kept across inputs, so entries from earlier hellos meet later ones.
    static MEMO: RefCell<Box<Ja4Memo>> = RefCell::new(Box::new(Ja4Memo::new()));
}

fn exercise(h: &ClientHello<'_>) {
    let a = ja4(h, Transport::Tcp);
    assert_eq!(a.as_str().len(), 36);
    // The memo never changes a fingerprint, on a miss or a hit.
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        assert_eq!(ja4_memo(h, Transport::Tcp, &mut m), a);
        assert_eq!(ja4_memo(h, Transport::Tcp, &mut m), a);
    });
    let info = HelloInfo::new(h, Transport::Quic);
    assert_eq!(&info.ja4.as_str()[1..], &a.as_str()[1..]);
    let _ = (h.max_version(), h.server_name(), h.has_ech());
    for id in h.alpn().iter().flat_map(|l| l.iter()) {
        assert!(!id.is_empty());
    }
    let _ = h.extensions().types().count();
    let _ = h.signature_algorithms().map(|l| l.iter().count());
    let _ = h.supported_groups().map(|l| l.iter().count());
}

fuzz_target!(|data: &[u8]| {
    let Some((ctrl, stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    // The raw bytes as a handshake message and as a body, directly.
    if let Ok(h) = ClientHello::parse(stream) {
        exercise(&h);
    }
    if let Ok(h) = ClientHello::parse_body(stream) {
        exercise(&h);
    }
    let kind = if ctrl[0] & 1 == 0 {
        StreamKind::Tls
    } else {
        StreamKind::QuicCrypto
    };

    let mut whole = Box::new(HelloAssembler::new(kind));
    let whole_msg = match whole.push(0, stream) {
        Ok(Progress::Complete(h)) => {
            exercise(&h);
            whole.message().map(<[u8]>::to_vec)
        }
        _ => None,
    };

    // Up to four cut points from the control bytes.
    let len = stream.len();
    let mut cuts: Vec<usize> = ctrl[1..]
        .iter()
        .map(|&c| {
            if len == 0 {
                0
            } else {
                usize::from(c) * len / 255
            }
        })
        .collect();
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces: Vec<(usize, &[u8])> = cuts
        .windows(2)
        .map(|w| (w[0], &stream[w[0]..w[1]]))
        .collect();
    match ctrl[0] >> 1 & 3 {
        0 => pieces.reverse(),
        1 => {
            let half = pieces.len() / 2;
            pieces.rotate_left(half);
        }
        2 => {
            // Retransmit the first piece at the end, overlapping the second.
            if let Some(&(off, _)) = pieces.first() {
                let end = stream.len().min(off + 300);
                pieces.push((off, &stream[off..end]));
            }
        }
        _ => {}
    }
    let mut split = Box::new(HelloAssembler::new(kind));
    let mut split_done = false;
    for (off, bytes) in pieces {
        match split.push(off as u64, bytes) {
            Ok(Progress::Complete(h)) => {
                exercise(&h);
                split_done = true;
            }
            Ok(Progress::NeedMore) => {}
            Err(_) => break,
        }
    }
    if let Some(msg) = whole_msg {
        assert!(split_done, "one-shot completed, split delivery did not");
        assert_eq!(split.message(), Some(&msg[..]));
    }
});
