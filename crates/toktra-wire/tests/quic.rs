//! QUIC Initial decryption against the RFC 9001 and RFC 9369 Appendix A client
//! Initials, and CRYPTO reassembly across packets and datagrams.
#![cfg(feature = "quic")]

mod common;

use common::{data, handshake_from_records, hex, hex_file};
use toktra_wire::quic::{
    self, Frame, Frames, InitialKeyCache, InitialKeys, LongHeader, PacketType, Side, VERSION_1,
    VERSION_2, decrypt_initial, decrypt_initial_cached, feed_client_datagram,
    feed_client_datagram_cached, seal_client_initial,
};
use toktra_wire::{ClientHello, Error, HelloAssembler, Progress, StreamKind};

const DCID: &str = "8394c8f03e515708";

/// RFC 9001 A.2 / RFC 9369 A.2: the unprotected payload starts with this CRYPTO
/// frame (a ClientHello for example.com), followed by 917 bytes of PADDING.
const A2_CRYPTO_FRAME: &str = "\
060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868\
04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578\
616d706c652e636f6dff01000100000a00080006001d00170018001000070005\
04616c706e000500050100000000003300260024001d00209370b2c9caa47fba\
baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400\
0d0010000e0403050306030203080408050806002d00020101001c0002400100\
3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000\
75300901100f088394c8f03e51570806048000ffff";

#[test]
fn initial_keys_match_the_rfcs() {
    let dcid = hex(DCID);
    let v1 = InitialKeys::derive(VERSION_1, &dcid, Side::Client).unwrap();
    assert_eq!(v1.key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
    assert_eq!(v1.iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
    assert_eq!(v1.hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
    let v1s = InitialKeys::derive(VERSION_1, &dcid, Side::Server).unwrap();
    assert_eq!(v1s.key.to_vec(), hex("cf3a5331653c364c88f0f379b6067e37"));
    let v2 = InitialKeys::derive(VERSION_2, &dcid, Side::Client).unwrap();
    assert_eq!(v2.key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
    assert_eq!(v2.iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
    assert_eq!(v2.hp.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
    assert_eq!(
        InitialKeys::derive(0xff00_001d, &dcid, Side::Client),
        Err(Error::QuicUnsupportedVersion {
            version: 0xff00_001d
        })
    );
}

fn check_rfc_vector(file: &str, version: u32) {
    let packet = hex_file(file);
    assert_eq!(packet.len(), 1200);
    assert!(quic::looks_like_initial(&packet));
    let mut out = [0u8; 1500];
    let initial = decrypt_initial(&packet, Side::Client, &mut out).unwrap();
    assert_eq!(initial.header.version, version);
    assert_eq!(initial.header.dcid, &hex(DCID)[..]);
    assert_eq!(initial.header.packet_type, Some(PacketType::Initial));
    assert_eq!(initial.packet_number, 2);
    assert_eq!(initial.payload.len(), 1162);
    let frame = hex(A2_CRYPTO_FRAME);
    assert_eq!(&initial.payload[..frame.len()], &frame[..]);
    assert!(initial.payload[frame.len()..].iter().all(|&b| b == 0));

    let frames: Vec<_> = Frames::new(initial.payload)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(frames.len(), 2);
    let Frame::Crypto { offset: 0, data } = frames[0] else {
        panic!("{frames:?}")
    };
    assert_eq!(frames[1], Frame::Padding { len: 917 });
    let h = ClientHello::parse(data).unwrap();
    assert_eq!(h.server_name(), Some(&b"example.com"[..]));
    assert_eq!(h.alpn().unwrap().iter().collect::<Vec<_>>(), [&b"alpn"[..]]);

    // The whole datagram path.
    let mut asm = HelloAssembler::new(StreamKind::QuicCrypto);
    let (summary, progress) = feed_client_datagram(&packet, &mut out, &mut asm).unwrap();
    assert_eq!(summary.initials, 1);
    assert_eq!(summary.crypto_frames, 1);
    assert_eq!(summary.first_packet_number, Some(2));
    let Progress::Complete(h) = progress else {
        panic!("not complete")
    };
    assert_eq!(h.server_name(), Some(&b"example.com"[..]));

    // Any flipped bit fails authentication or parsing, never panics.
    for i in (0..packet.len()).step_by(7) {
        let mut bad = packet.clone();
        bad[i] ^= 0x10;
        assert!(
            decrypt_initial(&bad, Side::Client, &mut out).is_err(),
            "byte {i}"
        );
    }
    // Server keys do not open a client packet.
    assert_eq!(
        decrypt_initial(&packet, Side::Server, &mut out).unwrap_err(),
        Error::QuicDecryptFailed
    );
    // Too small a buffer is a typed error.
    assert_eq!(
        decrypt_initial(&packet, Side::Client, &mut out[..100]).unwrap_err(),
        Error::BufferTooSmall {
            needed: 1200,
            available: 100
        }
    );
}

#[test]
fn rfc9001_a2_client_initial_decrypts() {
    check_rfc_vector("rfc9001-a2-client-initial.hex", VERSION_1);
}

#[test]
fn rfc9369_a2_client_initial_decrypts() {
    check_rfc_vector("rfc9369-a2-client-initial.hex", VERSION_2);
}

#[test]
fn seal_reproduces_the_rfc_packets() {
    let dcid = hex(DCID);
    let mut frames = hex(A2_CRYPTO_FRAME);
    frames.resize(1162, 0);
    for (file, version) in [
        ("rfc9001-a2-client-initial.hex", VERSION_1),
        ("rfc9369-a2-client-initial.hex", VERSION_2),
    ] {
        let mut out = [0u8; 1500];
        let n = seal_client_initial(version, &dcid, &[], 2, &frames, &mut out).unwrap();
        assert_eq!(&out[..n], &hex_file(file)[..], "{file}");
    }
}

fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend_from_slice(&(0x8000_0000u32 | offset as u32).to_be_bytes());
    f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}

fn initial(version: u32, pn: u32, frames: &[u8]) -> Vec<u8> {
    let mut padded = frames.to_vec();
    padded.resize(padded.len().max(1100), 0);
    let mut out = vec![0u8; 1500];
    let n = seal_client_initial(
        version,
        &hex("0011223344556677"),
        &[1, 2, 3],
        pn,
        &padded,
        &mut out,
    )
    .unwrap();
    out.truncate(n);
    out
}

#[test]
fn chromium_style_hello_split_over_two_initials_out_of_order() {
    let hello = handshake_from_records(&data("chromium-clienthello.bin"));
    assert!(hello.len() > 1200);
    let (a, b) = hello.split_at(1000);
    for version in [VERSION_1, VERSION_2] {
        // Chromium interleaves PING and PADDING and may cut the CRYPTO data into
        // several frames per packet.
        let mut f1 = vec![0x01];
        f1.extend(crypto_frame(500, &a[500..]));
        f1.extend([0, 0, 0]);
        f1.extend(crypto_frame(0, &a[..500]));
        let mut f2 = crypto_frame(1000, b);
        f2.extend([0x02, 0, 0, 0, 0]); // ACK
        let d1 = initial(version, 0, &f1);
        let d2 = initial(version, 1, &f2);
        let mut scratch = [0u8; 1500];
        let mut asm = HelloAssembler::new(StreamKind::QuicCrypto);
        let (s2, p2) = feed_client_datagram(&d2, &mut scratch, &mut asm).unwrap();
        assert_eq!(p2, Progress::NeedMore);
        assert_eq!(s2.first_packet_number, Some(1));
        let (s1, p1) = feed_client_datagram(&d1, &mut scratch, &mut asm).unwrap();
        assert_eq!(s1.crypto_frames, 2);
        let Progress::Complete(h) = p1 else {
            panic!("incomplete")
        };
        assert_eq!(h.server_name(), Some(&b"api.openai.com"[..]));
        let j = toktra_wire::ja4(&h, toktra_wire::Transport::Quic);
        assert_eq!(j.as_str(), "q13d1517h2_8daaf6152771_cb7bf5808d99");
    }
}

#[test]
fn coalesced_packets_in_one_datagram() {
    let hello = handshake_from_records(&data("openssl-clienthello.bin"));
    let (a, b) = hello.split_at(100);
    let dcid = hex("0011223344556677");
    let mut datagram = Vec::new();
    // Two small Initials, each carrying part of the hello, then a Handshake-typed
    // packet that cannot be opened with Initial keys, then zero padding.
    for (pn, frame) in [(0u32, crypto_frame(0, a)), (1, crypto_frame(100, b))] {
        let mut frames = frame;
        frames.resize(frames.len() + 20, 0);
        let mut out = vec![0u8; 1500];
        let n = seal_client_initial(VERSION_1, &dcid, &[], pn, &frames, &mut out).unwrap();
        datagram.extend_from_slice(&out[..n]);
    }
    datagram.extend_from_slice(&[0xe0, 0, 0, 0, 1, 8]);
    datagram.extend_from_slice(&dcid);
    datagram.extend_from_slice(&[0, 0x40, 20]);
    datagram.extend_from_slice(&[0xaa; 20]);
    datagram.resize(1200, 0);
    let mut scratch = [0u8; 1500];
    let mut asm = HelloAssembler::new(StreamKind::QuicCrypto);
    let (s, p) = feed_client_datagram(&datagram, &mut scratch, &mut asm).unwrap();
    assert_eq!(s.initials, 2);
    assert_eq!(s.skipped, 1);
    let Progress::Complete(h) = p else {
        panic!("incomplete")
    };
    assert_eq!(h.server_name(), Some(&b"api.anthropic.com"[..]));
}

#[test]
fn frames_and_headers_are_checked() {
    // ACK with ranges and ECN, CONNECTION_CLOSE, then a STREAM frame (not allowed).
    let payload = [
        0x03, 0x05, 0x00, 0x01, 0x00, 0x01, 0x01, 0x07, 0x08, 0x09, //
        0x1c, 0x00, 0x00, 0x02, b'h', b'i', //
        0x08, 0x00,
    ];
    let items: Vec<_> = Frames::new(&payload).collect();
    assert_eq!(items[0], Ok(Frame::Ack));
    assert_eq!(items[1], Ok(Frame::ConnectionClose));
    assert_eq!(
        items[2],
        Err(Error::QuicUnexpectedFrame {
            frame_type: 8,
            at: 16
        })
    );
    assert_eq!(items.len(), 3);
    // CRYPTO frame longer than the payload.
    let items: Vec<_> = Frames::new(&[0x06, 0x00, 0x10, 1, 2]).collect();
    assert!(matches!(
        items[0],
        Err(Error::BadLength {
            field: "CRYPTO frame",
            ..
        })
    ));

    assert_eq!(
        LongHeader::parse(&[0x40, 1, 2]),
        Err(Error::QuicShortHeader)
    );
    assert_eq!(
        LongHeader::parse(&[0xc0, 0, 0, 0, 1, 21]),
        Err(Error::QuicConnectionIdTooLong { length: 21, at: 5 })
    );
    assert_eq!(
        LongHeader::parse(&[0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        Err(Error::QuicUnsupportedVersion { version: 0 })
    );
    assert!(!quic::looks_like_initial(b"\x16\x03\x01"));
    let mut scratch = [0u8; 64];
    let mut asm = HelloAssembler::new(StreamKind::QuicCrypto);
    assert_eq!(
        feed_client_datagram(&[0x00; 30], &mut scratch, &mut asm).unwrap_err(),
        Error::QuicShortHeader
    );
    let rfc = hex_file("rfc9001-a2-client-initial.hex");
    assert_eq!(
        feed_client_datagram(&rfc[..600], &mut scratch, &mut asm).unwrap_err(),
        Error::BadLength {
            field: "packet length",
            at: 16,
            length: 1182,
            available: 582
        }
    );
}

#[test]
fn cached_keys_give_the_same_results_and_never_cross_versions_or_ids() {
    let hello = handshake_from_records(&data("chromium-clienthello.bin"));
    let (a, b) = hello.split_at(1000);
    let mut cache = InitialKeyCache::new();
    let mut scratch = [0u8; 1500];
    let mut scratch2 = [0u8; 1500];
    // The same DCID in v1 and then v2: a v1 entry must not open the v2 packets.
    for version in [VERSION_1, VERSION_2, VERSION_1] {
        let d1 = initial(version, 0, &crypto_frame(0, a));
        let d2 = initial(version, 1, &crypto_frame(1000, b));
        let mut asm = HelloAssembler::new(StreamKind::QuicCrypto);
        let (_, p) = feed_client_datagram_cached(&d1, &mut scratch, &mut asm, &mut cache).unwrap();
        assert_eq!(p, Progress::NeedMore);
        let (s, p) = feed_client_datagram_cached(&d2, &mut scratch, &mut asm, &mut cache).unwrap();
        assert_eq!(s.first_packet_number, Some(1));
        let Progress::Complete(h) = p else {
            panic!("incomplete ({version:#x})")
        };
        assert_eq!(h.server_name(), Some(&b"api.openai.com"[..]));
        // Packet by packet, the cached and the fresh decryption agree.
        for d in [&d1, &d2] {
            let fresh = decrypt_initial(d, Side::Client, &mut scratch2).unwrap();
            let cached = decrypt_initial_cached(d, Side::Client, &mut scratch, &mut cache).unwrap();
            assert_eq!(fresh, cached);
        }
        // Server-side keys for the same DCID are other keys: the client packet
        // does not open with them, cached or not.
        assert_eq!(
            decrypt_initial_cached(&d1, Side::Server, &mut scratch, &mut cache),
            Err(Error::QuicDecryptFailed)
        );
        assert!(decrypt_initial_cached(&d1, Side::Client, &mut scratch, &mut cache).is_ok());
        // A damaged packet fails with cached keys just as with fresh ones.
        let mut bad = d2.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            decrypt_initial_cached(&bad, Side::Client, &mut scratch, &mut cache),
            Err(Error::QuicDecryptFailed)
        );
    }
    // Many DCIDs through the 16 slots, then the RFC vectors: evictions are harmless.
    for i in 0..100u8 {
        let mut out = vec![0u8; 1500];
        let dcid = [i, i.wrapping_mul(7), 3, 4, 5, 6, 7, 8];
        let mut frames = crypto_frame(0, a);
        frames.resize(1100, 0);
        let n = seal_client_initial(VERSION_1, &dcid, &[], 0, &frames, &mut out).unwrap();
        let got = decrypt_initial_cached(&out[..n], Side::Client, &mut scratch, &mut cache)
            .unwrap()
            .payload
            .to_vec();
        assert_eq!(got, frames, "dcid {i}");
    }
    for (file, version) in [
        ("rfc9001-a2-client-initial.hex", VERSION_1),
        ("rfc9369-a2-client-initial.hex", VERSION_2),
    ] {
        let packet = hex_file(file);
        let mut big = [0u8; 1500];
        let fresh = decrypt_initial(&packet, Side::Client, &mut big)
            .unwrap()
            .payload
            .to_vec();
        let cached = decrypt_initial_cached(&packet, Side::Client, &mut big, &mut cache).unwrap();
        assert_eq!(cached.header.version, version);
        assert_eq!(cached.payload, &fresh[..]);
    }
}
