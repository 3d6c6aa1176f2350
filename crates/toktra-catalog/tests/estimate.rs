//! The estimators on a held-out capture of the corpus: flows as `toktra pcap` measured
//! them (bytes_out, bytes_in, records_in, offered ALPN, the handshake's bytes each way
//! and the server's records in it) with the true token counts from tiktoken
//! (o200k_base for every shape). The corpus server presents five certificate chains
//! (one to three certificates, P-256 and RSA-2048 keys: server flights of 0.7 to
//! 5.3 kB). The catalog's shape profiles were
//! fitted on seed 1; this file is seed 2, which the fit never saw:
//! `scripts/bench-estimate` writes it as artifacts/estimate/seed-2/summary.jsonl.

use std::collections::BTreeMap;
use toktra_catalog::{Catalog, FlowBytes, FlowOverhead, HttpVersion, OutputMethod, estimate};

struct Row {
    shape: String,
    host: String,
    streamed: bool,
    chain: String,
    flow: FlowBytes,
    input: u64,
    output: u64,
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!("\"{name}\":");
    let Some(start) = line.find(&key).map(|i| i + key.len()) else {
        panic!("no {name} in {line}");
    };
    let rest = &line[start..];
    let end = if rest.starts_with('[') {
        rest.find(']').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    };
    &rest[..end.unwrap_or(rest.len())]
}

fn num(line: &str, name: &str) -> u64 {
    let v = field(line, name);
    v.parse().unwrap_or_else(|_| panic!("{name} = {v}"))
}

fn opt(line: &str, name: &str) -> Option<u64> {
    match field(line, name) {
        "null" => None,
        _ => Some(num(line, name)),
    }
}

fn rows() -> Vec<Row> {
    include_str!("data/estimate-corpus.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let alpn: Vec<&str> = field(l, "alpn")
                .trim_matches(['[', ']'])
                .split(',')
                .map(|s| s.trim_matches('"'))
                .collect();
            Row {
                shape: field(l, "shape").trim_matches('"').to_owned(),
                host: field(l, "host").trim_matches('"').to_owned(),
                streamed: field(l, "streamed") == "true",
                chain: field(l, "chain").trim_matches('"').to_owned(),
                flow: FlowBytes {
                    bytes_out: num(l, "bytes_out"),
                    bytes_in: num(l, "bytes_in"),
                    records_in: Some(num(l, "records_in")),
                    http: HttpVersion::from_alpn(&alpn),
                    overhead: FlowOverhead {
                        client_handshake_bytes: opt(l, "client_handshake_bytes"),
                        server_handshake_bytes: opt(l, "server_handshake_bytes"),
                        server_handshake_records: opt(l, "server_handshake_records"),
                        ..FlowOverhead::default()
                    },
                },
                input: num(l, "input_tokens"),
                output: num(l, "output_tokens"),
            }
        })
        .collect()
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn err(est: u64, truth: u64) -> f64 {
    (est as f64 - truth as f64).abs() / truth.max(1) as f64
}

/// Errors by (shape, what), what being input, plain or streamed output.
fn errors() -> BTreeMap<(String, &'static str), Vec<f64>> {
    let rows = rows();
    assert!(rows.len() >= 90, "sample too small: {}", rows.len());
    let catalog = Catalog::embedded();
    let mut errors: BTreeMap<(String, &'static str), Vec<f64>> = BTreeMap::new();
    for r in &rows {
        let entry = catalog
            .lookup(&r.host)
            .unwrap_or_else(|| panic!("{}", r.host));
        let e = estimate(entry, &r.flow);
        assert_eq!(e.streamed, r.streamed, "{} {:?}", r.host, r.flow);
        let method = if r.streamed {
            OutputMethod::Streamed
        } else {
            OutputMethod::ByteRatio
        };
        assert_eq!(e.output_method, method);
        let mut push = |what, v| errors.entry((r.shape.clone(), what)).or_default().push(v);
        push("input", err(e.est_input_tokens, r.input));
        let kind = if r.streamed { "streamed" } else { "plain" };
        push(kind, err(e.est_output_tokens, r.output));
    }
    errors
}

/// The target, per API shape: a finance lead reads cost per provider.
#[test]
fn streamed_output_median_error_is_within_15_percent_for_every_shape_on_held_out_flows() {
    let errors = errors();
    let mut report = String::new();
    let mut worst: f64 = 0.0;
    for shape in ["openai", "anthropic", "gemini"] {
        let e = &errors[&(shape.to_owned(), "streamed")];
        assert!(e.len() >= 20, "{shape}: {} streamed flows", e.len());
        let (median, p90) = (quantile(e, 0.5), quantile(e, 0.9));
        report += &format!(
            "{shape}: median {:.1} %, p90 {:.1} %; ",
            median * 100.0,
            p90 * 100.0
        );
        worst = worst.max(median);
    }
    eprintln!("streamed output errors: {report}");
    assert!(worst <= 0.15, "streamed output errors: {report}");
}

#[test]
fn input_and_plain_output_stay_within_15_percent_for_every_shape_on_held_out_flows() {
    let errors = errors();
    for ((shape, what), e) in &errors {
        if *what == "streamed" {
            continue;
        }
        let median = quantile(e, 0.5);
        assert!(
            median <= 0.15,
            "{shape} {what}: median {:.1} %, p90 {:.1} %",
            median * 100.0,
            quantile(e, 0.9) * 100.0
        );
    }
}

#[test]
fn nothing_observed_estimates_nothing() {
    let entry = Catalog::embedded()
        .lookup("api.openai.com")
        .expect("in catalog");
    let e = estimate(entry, &FlowBytes::default());
    assert_eq!(
        (e.est_input_tokens, e.est_output_tokens, e.streamed),
        (0, 0, false)
    );
    // A handshake-only connection (no request) is not a stream and has no tokens.
    let hs = FlowBytes {
        bytes_out: 600,
        bytes_in: 2_950,
        records_in: Some(3),
        http: HttpVersion::Http2,
        overhead: FlowOverhead::default(),
    };
    let e = estimate(entry, &hs);
    assert_eq!(
        (e.est_input_tokens, e.est_output_tokens, e.streamed),
        (0, 0, false)
    );
}

#[test]
fn alpn_decides_the_http_version() {
    assert_eq!(
        HttpVersion::from_alpn(&["h2", "http/1.1"]),
        HttpVersion::Http2
    );
    assert_eq!(HttpVersion::from_alpn(&["http/1.1"]), HttpVersion::Http1);
    assert_eq!(HttpVersion::from_alpn::<&str>(&[]), HttpVersion::Unknown);
}

/// Over HTTP/2, or behind a proxy that batches writes, several SSE events can share
/// one TLS record. Where the catalog counts a shape's events from its bytes (OpenAI,
/// Anthropic), merging records must leave the estimate where it was: the bytes lost
/// are only the merged records' 22-byte overheads, which the estimator accounts for
/// by the record count it is given.
#[test]
fn events_sharing_records_do_not_move_byte_counted_shapes() {
    let catalog = Catalog::embedded();
    let mut checked = 0;
    for r in rows().iter().filter(|r| r.streamed) {
        let entry = catalog.lookup(&r.host).expect("in catalog");
        if entry.profile.events_from_records > 0.0 {
            continue;
        }
        let records = r.flow.records_in.expect("counted");
        // Half of the records beyond the handshake, headers and framing merge pairwise.
        let merged = records.saturating_sub(12) / 2;
        if merged == 0 {
            continue;
        }
        let coalesced = FlowBytes {
            records_in: Some(records - merged),
            bytes_in: r.flow.bytes_in - merged * toktra_catalog::TLS_RECORD_OVERHEAD,
            ..r.flow
        };
        let (a, b) = (
            estimate(entry, &r.flow).est_output_tokens,
            estimate(entry, &coalesced).est_output_tokens,
        );
        assert!(
            err(b, a) <= 0.01,
            "{}: {a} tokens with one record per event, {b} with {merged} merged",
            r.host
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} streams checked");
}

/// The server's certificate chain is part of what it sends; measured per flow, it
/// no longer moves the estimate. Per chain (0.7 to 5.3 kB of server flight), the
/// median error of plain outputs and streams stays within 15 %, where the constant
/// calibrated on one chain alone was off by 100 % to 300 % on plain responses.
#[test]
fn the_server_certificate_chain_does_not_move_the_estimate() {
    let catalog = Catalog::embedded();
    let rows = rows();
    // (chain, plain or streamed) → (errors with the measured handshake, with constants)
    type Cells<'a> = BTreeMap<(String, &'a str), (Vec<f64>, Vec<f64>)>;
    let mut by_chain: Cells = BTreeMap::new();
    for r in &rows {
        let entry = catalog.lookup(&r.host).expect("in catalog");
        let bare = FlowBytes {
            overhead: FlowOverhead::default(),
            ..r.flow
        };
        let kind = if r.streamed { "streamed" } else { "plain" };
        let cell = by_chain.entry((r.chain.clone(), kind)).or_default();
        cell.0
            .push(err(estimate(entry, &r.flow).est_output_tokens, r.output));
        cell.1
            .push(err(estimate(entry, &bare).est_output_tokens, r.output));
    }
    let chains: std::collections::BTreeSet<&str> =
        by_chain.keys().map(|(c, _)| c.as_str()).collect();
    assert_eq!(chains.len(), 5, "chains in the fixture: {chains:?}");
    let mut report = String::new();
    for ((chain, kind), (measured, constants)) in &by_chain {
        report += &format!(
            "{chain} {kind}: {:.1} % measured, {:.1} % with constants; ",
            quantile(measured, 0.5) * 100.0,
            quantile(constants, 0.5) * 100.0
        );
    }
    eprintln!("{report}");
    for ((chain, kind), (measured, constants)) in &by_chain {
        assert!(quantile(measured, 0.5) <= 0.15, "{chain} {kind}: {report}");
        // The fixture must be able to show the difference: on chains other than the
        // calibration one, the constants alone are far off for plain responses.
        if chain != "p256-2" && *kind == "plain" {
            assert!(quantile(constants, 0.5) > 0.5, "{chain}: {report}");
        }
    }
}

/// A measured handshake replaces the constants: the same flow with a larger server
/// flight measured as such estimates the same response.
#[test]
fn a_measured_server_flight_is_taken_off_instead_of_the_constant() {
    let entry = Catalog::embedded()
        .lookup("api.openai.com")
        .expect("in catalog");
    let small = FlowBytes {
        bytes_out: 2_000,
        bytes_in: 10_000,
        records_in: Some(5),
        http: HttpVersion::Http2,
        overhead: FlowOverhead {
            client_handshake_bytes: Some(600),
            server_handshake_bytes: Some(2_000),
            server_handshake_records: Some(1),
            ..FlowOverhead::default()
        },
    };
    // 3 000 bytes more of certificates, in four records instead of one (one per
    // handshake message, as OpenSSL writes them).
    let large = FlowBytes {
        bytes_in: small.bytes_in + 3_000 + 3 * toktra_catalog::TLS_RECORD_OVERHEAD,
        records_in: Some(8),
        overhead: FlowOverhead {
            server_handshake_bytes: Some(5_000 + 3 * toktra_catalog::TLS_RECORD_OVERHEAD),
            server_handshake_records: Some(4),
            ..small.overhead
        },
        ..small
    };
    let (a, b) = (estimate(entry, &small), estimate(entry, &large));
    assert_eq!(a, b);
    assert!(a.est_output_tokens > 0 && !a.streamed);
}
