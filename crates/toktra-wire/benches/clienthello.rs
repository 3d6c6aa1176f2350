//! ClientHello parsing: toktra-wire against the tls-parser crate on the same bytes,
//! a 1.9 KB ClientHello captured from headless Chromium (SNI, ALPN h2 + http/1.1,
//! GREASE, ECH, an X25519MLKEM768 key share). Both sides extract the same facts:
//! SNI, the ALPN list and the extension types.
//!
//!   cargo bench -p toktra-wire --bench clienthello

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_extensions,
    parse_tls_plaintext,
};
use toktra_wire::{
    ClientHello, HelloAssembler, Ja4Memo, Progress, StreamKind, Transport, ja4, ja4_memo,
};

const CHROMIUM: &[u8] = include_bytes!("../tests/data/chromium-clienthello.bin");

/// (SNI length, ALPN ids, extension count): what both parsers must produce.
type Facts = (usize, usize, usize);

fn toktra_parse(record: &[u8]) -> Facts {
    // A single-record hello: the handshake message follows the 5-byte header.
    let Some(msg) = record.get(5..) else {
        return (0, 0, 0);
    };
    match ClientHello::parse(msg) {
        Ok(h) => (
            h.server_name().map_or(0, <[u8]>::len),
            h.alpn().map_or(0, |l| l.iter().count()),
            h.extensions().len(),
        ),
        Err(_) => (0, 0, 0),
    }
}

fn tls_parser_parse(record: &[u8]) -> Facts {
    let Ok((_, plaintext)) = parse_tls_plaintext(record) else {
        return (0, 0, 0);
    };
    let mut facts = (0, 0, 0);
    for msg in &plaintext.msg {
        if let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) = msg {
            let Some(ext) = ch.ext else { continue };
            let Ok((_, exts)) = parse_tls_extensions(ext) else {
                continue;
            };
            facts.2 = exts.len();
            for e in &exts {
                match e {
                    TlsExtension::SNI(names) => {
                        if let Some((_, name)) = names.iter().find(|(t, _)| *t == SNIType::HostName)
                        {
                            facts.0 = name.len();
                        }
                    }
                    TlsExtension::ALPN(ids) => facts.1 = ids.len(),
                    _ => {}
                }
            }
        }
    }
    facts
}

fn bench(c: &mut Criterion) {
    assert_eq!(toktra_parse(CHROMIUM), (14, 2, 19));
    assert_eq!(tls_parser_parse(CHROMIUM), toktra_parse(CHROMIUM));

    let mut g = c.benchmark_group("clienthello_chromium_1922B");
    g.throughput(Throughput::Bytes(CHROMIUM.len() as u64));
    g.bench_function("toktra_wire_parse", |b| {
        b.iter(|| toktra_parse(black_box(CHROMIUM)))
    });
    g.bench_function("tls_parser_parse", |b| {
        b.iter(|| tls_parser_parse(black_box(CHROMIUM)))
    });
    g.bench_function("toktra_wire_assembler_push", |b| {
        let mut asm = Box::new(HelloAssembler::new(StreamKind::Tls));
        b.iter(|| {
            asm.reset(StreamKind::Tls);
            matches!(asm.push(0, black_box(CHROMIUM)), Ok(Progress::Complete(_)))
        })
    });
    g.bench_function("toktra_wire_ja4", |b| {
        let h = ClientHello::parse(&CHROMIUM[5..]).unwrap_or_else(|e| panic!("{e}"));
        b.iter(|| ja4(black_box(&h), Transport::Tcp))
    });
    // What a flow tracker pays per hello of a client stack it has seen before.
    g.bench_function("toktra_wire_ja4_memo_hit", |b| {
        let h = ClientHello::parse(&CHROMIUM[5..]).unwrap_or_else(|e| panic!("{e}"));
        let mut memo = Box::new(Ja4Memo::new());
        b.iter(|| ja4_memo(black_box(&h), Transport::Tcp, &mut memo))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
