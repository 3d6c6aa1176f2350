//! HelloAssembler: TLS records over TCP segments in any order, with overlaps and
//! retransmissions, and its limits.

mod common;

use common::{HelloBuilder, data, foxio_example, handshake_from_records, records};
use toktra_wire::assembler::{BUFFER_LEN, MAX_HELLO_LEN, MAX_RANGES};
use toktra_wire::{Error, HelloAssembler, Progress, StreamKind};

fn sni_after(asm: &mut HelloAssembler, pieces: &[(usize, &[u8])]) -> Option<String> {
    let mut result = None;
    for (i, (off, bytes)) in pieces.iter().enumerate() {
        match asm.push(*off as u64, bytes).unwrap() {
            Progress::Complete(h) => {
                assert_eq!(i, pieces.len() - 1, "complete before the last piece");
                result = Some(String::from_utf8(h.server_name().unwrap().to_vec()).unwrap());
            }
            Progress::NeedMore => assert!(i < pieces.len() - 1, "incomplete after the last piece"),
        }
    }
    result
}

#[test]
fn chromium_hello_split_at_every_point() {
    let stream = data("chromium-clienthello.bin");
    for cut in 1..stream.len() {
        let mut asm = HelloAssembler::new(StreamKind::Tls);
        let (a, b) = stream.split_at(cut);
        assert_eq!(
            sni_after(&mut asm, &[(0, a), (cut, b)]).as_deref(),
            Some("api.openai.com")
        );
        // Reverse order.
        let mut asm = HelloAssembler::new(StreamKind::Tls);
        assert_eq!(
            sni_after(&mut asm, &[(cut, b), (0, a)]).as_deref(),
            Some("api.openai.com")
        );
    }
}

#[test]
fn many_records_many_segments_out_of_order_with_retransmits() {
    let msg = foxio_example().message();
    for record_size in [1usize, 7, 100, 4096] {
        let stream = records(&msg, record_size);
        let segs: Vec<(usize, &[u8])> = stream
            .chunks(37)
            .enumerate()
            .map(|(i, c)| (i * 37, c))
            .collect();
        // Deliver every other segment first (the holes stay within MAX_RANGES as the
        // tail is delivered in groups), then the rest backwards, with duplicates.
        let mut asm = HelloAssembler::new(StreamKind::Tls);
        let mut done = false;
        for group in segs.chunks(2 * MAX_RANGES) {
            let mut order: Vec<_> = group.iter().step_by(2).collect();
            order.extend(group.iter().skip(1).step_by(2).rev());
            for (off, bytes) in order {
                // A retransmission overlapping the previous segment.
                let back = off.saturating_sub(10);
                let re = &stream[back..(off + bytes.len())];
                for (o, b) in [(*off, *bytes), (back, re)] {
                    if let Progress::Complete(h) = asm.push(o as u64, b).unwrap() {
                        assert_eq!(h.server_name(), Some(&b"example.com"[..]));
                        done = true;
                    }
                }
            }
        }
        assert!(done, "record size {record_size}");
        let h = asm.client_hello().unwrap();
        assert_eq!(asm.message().unwrap(), &msg[..]);
        assert_eq!(h.cipher_suites().len(), 15);
    }
}

#[test]
fn data_after_the_hello_is_ignored_and_completion_is_stable() {
    let mut stream = data("openssl-clienthello.bin");
    stream.extend_from_slice(&[23, 3, 3, 0, 5, 1, 2, 3, 4, 5]);
    let mut asm = HelloAssembler::new(StreamKind::Tls);
    assert!(matches!(asm.push(0, &stream), Ok(Progress::Complete(_))));
    assert!(matches!(
        asm.push(3, &[0xff; 50]),
        Ok(Progress::Complete(_))
    ));
    let h = asm.client_hello().unwrap();
    assert_eq!(h.server_name(), Some(&b"api.anthropic.com"[..]));
}

#[test]
fn not_tls_is_rejected_early() {
    let mut asm = HelloAssembler::new(StreamKind::Tls);
    assert_eq!(
        asm.push(0, b"GET / HTTP/1.1\r\n"),
        Err(Error::NotTls { version: 0x4554 })
    );
    // Sticky: the same error again.
    assert!(asm.push(16, b"Host: x\r\n").is_err());
    let mut asm = HelloAssembler::new(StreamKind::Tls);
    assert_eq!(
        asm.push(0, &[21, 3, 3, 0, 2, 2, 40]),
        Err(Error::NotHandshake { content_type: 21 })
    );
    let mut asm = HelloAssembler::new(StreamKind::Tls);
    assert_eq!(
        asm.push(0, &[22, 3, 3, 0, 4, 2, 0, 0, 0]),
        Err(Error::NotClientHello { handshake_type: 2 })
    );
}

#[test]
fn oversized_hellos_are_refused() {
    // Declared larger than the buffer: refused as soon as the header is seen.
    let mut asm = HelloAssembler::new(StreamKind::Tls);
    let len = (MAX_HELLO_LEN as u32).to_be_bytes();
    assert_eq!(
        asm.push(0, &[22, 3, 1, 0x40, 0, 1, len[1], len[2], len[3]]),
        Err(Error::HelloTooLarge {
            length: MAX_HELLO_LEN + 4,
            capacity: MAX_HELLO_LEN
        })
    );
    // Exactly the limit: accepted.
    let mut b = HelloBuilder::new().sni("big.example");
    let base = b.message().len();
    b = b.ext(0x0015, vec![0; MAX_HELLO_LEN - base - 4]);
    let msg = b.message();
    assert_eq!(msg.len(), MAX_HELLO_LEN);
    let stream = records(&msg, 16384);
    let mut asm = HelloAssembler::new(StreamKind::Tls);
    assert!(matches!(asm.push(0, &stream), Ok(Progress::Complete(_))));
    // The same hello in tiny records needs more buffer than there is.
    let stream = records(&msg, 8);
    assert!(stream.len() > BUFFER_LEN);
    let mut asm = HelloAssembler::new(StreamKind::Tls);
    assert!(matches!(
        asm.push(0, &stream),
        Err(Error::HelloTooLarge { .. })
    ));
}

#[test]
fn too_many_holes_is_an_error() {
    let stream = data("chromium-clienthello.bin");
    let mut asm = HelloAssembler::new(StreamKind::Tls);
    let mut result = Ok(());
    for i in 0..=MAX_RANGES {
        let off = 100 + i * 20;
        if let Err(e) = asm.push(off as u64, &stream[off..off + 10]) {
            result = Err(e);
        }
    }
    assert_eq!(
        result,
        Err(Error::TooFragmented {
            max_ranges: MAX_RANGES
        })
    );
}

#[test]
fn quic_crypto_mode_has_no_records() {
    let msg = handshake_from_records(&data("chromium-clienthello.bin"));
    let mut asm = HelloAssembler::new(StreamKind::QuicCrypto);
    let (a, b) = msg.split_at(700);
    assert_eq!(asm.push(700, b), Ok(Progress::NeedMore));
    assert!(matches!(asm.push(0, a), Ok(Progress::Complete(_))));
    asm.reset(StreamKind::QuicCrypto);
    assert_eq!(asm.contiguous_len(), 0);
    assert!(asm.client_hello().is_none());
}
