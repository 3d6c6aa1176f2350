//! ClientHello parsing and JA4 against real captured hellos (Chromium, OpenSSL,
//! curl), FoxIO's published JA4 example, and crafted edge cases.

mod common;

use common::{HelloBuilder, data, foxio_example, handshake_from_records};
use toktra_wire::ja4::{Ja4Memo, Transport, ja4, ja4_memo};
use toktra_wire::tls::{self, ClientHello, is_grease};
use toktra_wire::{Error, HelloInfo};

fn alpn_of(h: &ClientHello<'_>) -> Vec<String> {
    h.alpn()
        .map(|l| {
            l.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Values tshark 4.0.17 dissected from the same bytes (tls.handshake.* fields), and
/// JA4 from an independent implementation, the `ja4plus` 1.4.0 Python package
/// (tshark 4.0 predates its own `tls.handshake.ja4` field).
struct Expected {
    file: &'static str,
    sni: &'static str,
    ciphers: &'static [u16],
    extensions: &'static [u16],
    sigalgs_len: usize,
    versions: &'static [u16],
    ech: bool,
    ja4: &'static str,
}

const CHROMIUM: Expected = Expected {
    file: "chromium-clienthello.bin",
    sni: "api.openai.com",
    ciphers: &[
        0xeaea, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
        0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
    ],
    extensions: &[
        47802, 13, 5, 51, 18, 27, 17613, 65037, 0, 23, 11, 51764, 16, 43, 10, 35, 65281, 45, 35466,
    ],
    sigalgs_len: 12,
    versions: &[0x8a8a, 0x0304, 0x0303],
    ech: true,
    ja4: "t13d1517h2_8daaf6152771_cb7bf5808d99",
};

const OPENSSL: Expected = Expected {
    file: "openssl-clienthello.bin",
    sni: "api.anthropic.com",
    ciphers: &[
        0x1302, 0x1303, 0x1301, 0xc02c, 0xc030, 0x009f, 0xcca9, 0xcca8, 0xccaa, 0xc02b, 0xc02f,
        0x009e, 0xc024, 0xc028, 0x006b, 0xc023, 0xc027, 0x0067, 0xc00a, 0xc014, 0x0039, 0xc009,
        0xc013, 0x0033, 0x009d, 0x009c, 0x003d, 0x003c, 0x0035, 0x002f, 0x00ff,
    ],
    extensions: &[0, 11, 10, 35, 16, 22, 23, 13, 43, 45, 51],
    sigalgs_len: 20,
    versions: &[0x0304, 0x0303, 0x0302, 0x0301],
    ech: false,
    ja4: "t13d3111h2_e8f1e7e78f70_1f22a2ca17c4",
};

const CURL: Expected = Expected {
    file: "curl-clienthello.bin",
    sni: "generativelanguage.googleapis.com",
    ciphers: OPENSSL.ciphers,
    extensions: &[0, 11, 10, 16, 22, 23, 49, 13, 43, 45, 51, 21],
    sigalgs_len: 20,
    versions: &[0x0304, 0x0303, 0x0302, 0x0301],
    ech: false,
    ja4: "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6",
};

#[test]
fn real_hellos_match_tshark_and_reference_ja4() {
    for e in [CHROMIUM, OPENSSL, CURL] {
        let stream = data(e.file);
        assert!(tls::looks_like_client_hello(&stream), "{}", e.file);
        let msg = handshake_from_records(&stream);
        let h = ClientHello::parse(&msg).unwrap_or_else(|err| panic!("{}: {err}", e.file));
        assert_eq!(h.server_name(), Some(e.sni.as_bytes()), "{}", e.file);
        assert_eq!(alpn_of(&h), ["h2", "http/1.1"], "{}", e.file);
        assert_eq!(h.legacy_version(), 0x0303);
        assert_eq!(h.max_version(), 0x0304);
        assert_eq!(
            h.cipher_suites().iter().collect::<Vec<_>>(),
            e.ciphers,
            "{}",
            e.file
        );
        assert_eq!(
            h.extensions().types().collect::<Vec<_>>(),
            e.extensions,
            "{}",
            e.file
        );
        assert_eq!(h.signature_algorithms().unwrap().len(), e.sigalgs_len);
        assert_eq!(
            h.supported_versions().unwrap().iter().collect::<Vec<_>>(),
            e.versions
        );
        assert!(h.supported_groups().is_some_and(|g| !g.is_empty()));
        assert_eq!(h.has_ech(), e.ech, "{}", e.file);
        assert_eq!(ja4(&h, Transport::Tcp).as_str(), e.ja4, "{}", e.file);
        let q = ja4(&h, Transport::Quic);
        assert_eq!(&q.as_str()[1..], &e.ja4[1..]);
        assert!(q.as_str().starts_with('q'));
    }
}

#[test]
fn foxio_published_example() {
    let msg = foxio_example().message();
    let h = ClientHello::parse(&msg).unwrap();
    assert_eq!(
        ja4(&h, Transport::Tcp).as_str(),
        "t13d1516h2_8daaf6152771_e5627efa2ab1"
    );
}

#[test]
fn foxio_example_without_signature_algorithms() {
    // JA4.md: with no signature algorithms the extension list is hashed without a
    // trailing underscore: "0005,...,ff01" = 6d807ffa2a79.
    let mut b = foxio_example();
    b.extensions.retain(|(t, _)| *t != 0x000d);
    b = b.opaque(0x000d); // keep the count at 16 but make the body not a valid list
    let msg = b.message();
    assert!(matches!(
        ClientHello::parse(&msg),
        Err(Error::Truncated { .. } | Error::BadLength { .. })
    ));
    // The signature_algorithms type is still listed; an empty list has no values.
    let mut b = foxio_example();
    for (t, body) in &mut b.extensions {
        if *t == 0x000d {
            *body = vec![0, 0];
        }
    }
    let msg = b.message();
    let h = ClientHello::parse(&msg).unwrap();
    assert_eq!(
        ja4(&h, Transport::Tcp).as_str(),
        "t13d1516h2_8daaf6152771_6d807ffa2a79"
    );
}

#[test]
fn grease_is_ignored_everywhere() {
    let plain = foxio_example();
    let mut greased =
        HelloBuilder::new().ciphers(&[&[0x0a0a][..], &plain.ciphers, &[0xfafa]].concat());
    greased = greased.opaque(0x1a1a);
    for (t, body) in &plain.extensions {
        let body = if *t == 0x000d {
            // GREASE inside signature_algorithms (Chromium sends one).
            let mut b = vec![0, 18, 0x2a, 0x2a];
            b.extend_from_slice(&body[2..]);
            b
        } else if *t == 0x002b {
            vec![6, 0x3a, 0x3a, 3, 4, 3, 3]
        } else {
            body.clone()
        };
        greased = greased.ext(*t, body);
    }
    greased = greased.opaque(0xeaea);
    let a = plain.message();
    let b = greased.message();
    let ha = ClientHello::parse(&a).unwrap();
    let hb = ClientHello::parse(&b).unwrap();
    assert_eq!(ja4(&ha, Transport::Tcp), ja4(&hb, Transport::Tcp));
    assert_eq!(hb.max_version(), 0x0304);
    for v in 0..=0xffffu16 {
        let expected = (v >> 8) == (v & 0xff) && v & 0x0f == 0x0a;
        assert_eq!(is_grease(v), expected, "{v:#06x}");
    }
}

fn ja4_of(b: &HelloBuilder) -> String {
    let msg = b.message();
    ja4(&ClientHello::parse(&msg).unwrap(), Transport::Tcp).to_string()
}

#[test]
fn alpn_characters_follow_the_spec_examples() {
    for (alpn, code) in [
        (&[0xab][..], "ab"),
        (&[0xab, 0xcd][..], "ad"),
        (&[0x30, 0xab][..], "3b"),
        (&[0x30, 0x31, 0xab, 0xcd][..], "3d"),
        (&[0x30, 0xab, 0xcd, 0x31][..], "01"),
        (b"h2", "h2"),
        (b"http/1.1", "h1"),
        (b"h", "hh"),
        (b"h3", "h3"),
    ] {
        let j = ja4_of(&HelloBuilder::new().ciphers(&[0x1301]).alpn(&[alpn, b"h2"]));
        assert_eq!(&j[8..10], code, "{alpn:02x?}");
    }
    let j = ja4_of(&HelloBuilder::new().ciphers(&[0x1301]));
    assert_eq!(&j[8..10], "00");
}

#[test]
fn prefix_fields() {
    // No SNI → "i"; no supported_versions → legacy version; counts capped at 99.
    let many: Vec<u16> = (1..=150).collect();
    let mut b = HelloBuilder::new().ciphers(&many);
    b.legacy_version = 0x0301;
    for t in 0x1000..0x1000 + 120 {
        b = b.opaque(t);
    }
    let j = ja4_of(&b);
    assert_eq!(&j[..10], "t10i999900");
    // Over 128 values the sort takes its slow path; it must agree with a plain sort.
    let mut reversed = many.clone();
    reversed.reverse();
    assert_eq!(
        ja4_of(&HelloBuilder::new().ciphers(&reversed)),
        ja4_of(&HelloBuilder::new().ciphers(&many))
    );
    // Duplicates are kept, in both paths.
    let dup: Vec<u16> = many.iter().chain(many.iter()).copied().collect();
    assert_ne!(
        ja4_of(&HelloBuilder::new().ciphers(&dup)),
        ja4_of(&HelloBuilder::new().ciphers(&many))
    );

    for (v, code) in [
        (0x0300, "s3"),
        (0x0002, "s2"),
        (0x0302, "11"),
        (0x0303, "12"),
        (0x1234, "00"),
    ] {
        let mut b = HelloBuilder::new().ciphers(&[0x1301]);
        b.legacy_version = v;
        assert_eq!(&ja4_of(&b)[1..3], code);
    }
    // Empty lists hash to zeros.
    let j = ja4_of(&HelloBuilder::new());
    assert_eq!(j, "t12i000000_000000000000_000000000000");
    // Only SNI and ALPN: the extension list is empty after removing them.
    let j = ja4_of(&HelloBuilder::new().sni("a.b").alpn(&[b"h2"]));
    assert_eq!(j, "t12d0002h2_000000000000_000000000000");
}

#[test]
fn hello_info_summary() {
    let msg = handshake_from_records(&data(CHROMIUM.file));
    let h = ClientHello::parse(&msg).unwrap();
    let info = HelloInfo::new(&h, Transport::Tcp);
    assert_eq!(info.sni_str(), Some("api.openai.com"));
    assert_eq!(info.alpn().collect::<Vec<_>>(), [&b"h2"[..], b"http/1.1"]);
    assert_eq!(info.tls_version, 0x0304);
    assert_eq!(tls::version_name(info.tls_version), "TLS 1.3");
    assert!(info.ech);
    assert_eq!(info.ja4.as_str(), CHROMIUM.ja4);
    assert_eq!(info.alpn_dropped, 0);

    let long = "a".repeat(300);
    let ids: Vec<&[u8]> = vec![b"h2", &[b'x'; 40], b"h3", b"a", b"b", b"c"];
    let msg = HelloBuilder::new().sni(&long).alpn(&ids).message();
    let h = ClientHello::parse(&msg).unwrap();
    let info = HelloInfo::new(&h, Transport::Quic);
    assert_eq!(info.sni(), None);
    assert!(info.sni_too_long);
    assert_eq!(
        info.alpn().collect::<Vec<_>>(),
        [&b"h2"[..], b"h3", b"a", b"b"]
    );
    assert_eq!(info.alpn_dropped, 2);
}

#[test]
fn malformed_hellos_give_typed_errors() {
    let good = foxio_example().message();
    // Every truncation of a valid hello is an error, never a panic or a read past
    // the end; the body length is fixed up so only inner lengths are wrong.
    let no_extensions = 4 + 2 + 32 + 1 + 32 + 2 + 30 + 2;
    for cut in (0..good.len()).filter(|&c| c != no_extensions) {
        let mut m = good[..cut].to_vec();
        if m.len() >= 4 {
            let body = (m.len() - 4) as u32;
            m[1..4].copy_from_slice(&body.to_be_bytes()[1..]);
        }
        assert!(ClientHello::parse(&m).is_err(), "cut at {cut}");
    }
    assert_eq!(
        ClientHello::parse(&[2, 0, 0, 0]),
        Err(Error::NotClientHello { handshake_type: 2 })
    );
    // Duplicate SNI.
    let m = HelloBuilder::new().sni("a").sni("b").message();
    assert!(matches!(
        ClientHello::parse(&m),
        Err(Error::DuplicateExtension {
            extension_type: 0,
            ..
        })
    ));
    // Empty ALPN id.
    let m = HelloBuilder::new().alpn(&[b""]).message();
    assert!(matches!(
        ClientHello::parse(&m),
        Err(Error::EmptyAlpn { .. })
    ));
    // Odd cipher list length.
    let mut m = HelloBuilder::new().ciphers(&[0x1301]).message();
    m[4 + 2 + 32 + 1 + 32 + 1] = 3;
    assert!(matches!(
        ClientHello::parse(&m),
        Err(Error::BadLength {
            field: "cipher_suites",
            ..
        })
    ));
    // A hello without an extension block (pre-TLS 1.2 clients) is fine.
    let mut b = HelloBuilder::new().ciphers(&[0x002f]);
    b.no_extension_block = true;
    let m = b.message();
    let h = ClientHello::parse(&m).unwrap();
    assert!(h.extensions().is_empty());
    assert_eq!(h.server_name(), None);
    // Display text names the problem and the place.
    let e = Error::Truncated { needed: 3, at: 40 };
    assert_eq!(
        e.to_string(),
        "input truncated: 3 more byte(s) needed at offset 40"
    );
}

/// The first 12 hex digits of SHA-256 of `text`, computed here independently.
fn sha12(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn list_hashes_match_the_spec_text_at_every_length_and_the_memo_changes_nothing() {
    let mut memo = Box::new(Ja4Memo::new());
    // Lengths around the point where the list text outgrows its buffer and streams
    // (51 values: 254 characters; 52: 259), up to more values than the sort's stack
    // array holds; descending, with repeats beyond 37 values.
    for n in [1u16, 2, 16, 50, 51, 52, 53, 100, 128, 129, 150] {
        let ciphers: Vec<u16> = (0..n).map(|i| 0x1301 + ((n - 1 - i) % 37) * 3).collect();
        let sigs = [0x0804u16, 0x0403, 0x0401];
        let b = HelloBuilder::new()
            .ciphers(&ciphers)
            .sigalgs(&sigs)
            .sni("x.example");
        let msg = b.message();
        let h = ClientHello::parse(&msg).unwrap();
        let plain = ja4(&h, Transport::Tcp);
        let mut sorted = ciphers.clone();
        sorted.sort_unstable();
        let text: Vec<String> = sorted.iter().map(|v| format!("{v:04x}")).collect();
        assert_eq!(
            &plain.as_str()[11..23],
            sha12(&text.join(",")),
            "{n} ciphers"
        );
        let ext_text = "000d_0804,0403,0401";
        assert_eq!(&plain.as_str()[24..], sha12(ext_text), "{n} ciphers");
        // A miss, then a hit, then a hit after other lists passed through the memo.
        assert_eq!(ja4_memo(&h, Transport::Tcp, &mut memo), plain, "{n}");
        assert_eq!(ja4_memo(&h, Transport::Tcp, &mut memo), plain, "{n}");
    }
    for n in [1u16, 2, 16, 50, 51, 52, 53, 100, 129, 150] {
        let ciphers: Vec<u16> = (0..n).map(|i| 0x1301 + (n - 1 - i) * 3).collect();
        let msg = HelloBuilder::new()
            .ciphers(&ciphers)
            .sigalgs(&[0x0804, 0x0403, 0x0401])
            .sni("x.example")
            .message();
        let h = ClientHello::parse(&msg).unwrap();
        assert_eq!(
            ja4_memo(&h, Transport::Quic, &mut memo),
            ja4(&h, Transport::Quic)
        );
    }
    // The same lists in another order: another key, the same fingerprint; signature
    // algorithms in another order: another fingerprint. GREASE moved about: ignored.
    let build = |ciphers: &[u16], exts: &[u16], sigs: &[u16]| {
        let mut b = HelloBuilder::new()
            .ciphers(ciphers)
            .sigalgs(sigs)
            .sni("a.example");
        for &t in exts {
            b = b.opaque(t);
        }
        b.message()
    };
    let cases = [
        build(
            &[0x1301, 0x1302, 0xc02b],
            &[0x0017, 0xff01, 0x0023],
            &[0x0403, 0x0804],
        ),
        build(
            &[0xc02b, 0x1301, 0x1302],
            &[0x0023, 0x0017, 0xff01],
            &[0x0403, 0x0804],
        ),
        build(
            &[0x1a1a, 0xc02b, 0x1301, 0x1302],
            &[0x0023, 0xfafa, 0x0017, 0xff01],
            &[0x0403, 0x0804],
        ),
        build(
            &[0x1301, 0x1302, 0xc02b],
            &[0x0017, 0xff01, 0x0023],
            &[0x0804, 0x0403],
        ),
        build(
            &[0x1301, 0x1302],
            &[0x0017, 0xff01, 0x0023],
            &[0x0403, 0x0804],
        ),
    ];
    let prints: Vec<_> = cases
        .iter()
        .map(|m| {
            let h = ClientHello::parse(m).unwrap();
            let plain = ja4(&h, Transport::Tcp);
            assert_eq!(ja4_memo(&h, Transport::Tcp, &mut memo), plain);
            assert_eq!(ja4_memo(&h, Transport::Tcp, &mut memo), plain);
            plain
        })
        .collect();
    assert_eq!(prints[0], prints[1]);
    assert_eq!(prints[0], prints[2]);
    assert_ne!(prints[0], prints[3]);
    assert_ne!(prints[0], prints[4]);
    // Real hellos too.
    let msg = handshake_from_records(&data(CHROMIUM.file));
    let h = ClientHello::parse(&msg).unwrap();
    assert_eq!(
        ja4_memo(&h, Transport::Tcp, &mut memo).as_str(),
        CHROMIUM.ja4
    );
    assert_eq!(
        ja4_memo(&h, Transport::Tcp, &mut memo).as_str(),
        CHROMIUM.ja4
    );
}
