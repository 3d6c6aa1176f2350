//! The estimators on a committed sample of the captured corpus: flows as `toktra pcap`
//! measured them (bytes_out, bytes_in, records_in, offered ALPN) with the true token
//! counts from tiktoken. Regenerate with scripts/bench-estimate (its summary.jsonl).

use toktra_catalog::{Catalog, FlowBytes, HttpVersion, OutputMethod, estimate};

struct Row {
    host: String,
    streamed: bool,
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
                host: field(l, "host").trim_matches('"').to_owned(),
                streamed: field(l, "streamed") == "true",
                flow: FlowBytes {
                    bytes_out: num(l, "bytes_out"),
                    bytes_in: num(l, "bytes_in"),
                    records_in: Some(num(l, "records_in")),
                    http: HttpVersion::from_alpn(&alpn),
                },
                input: num(l, "input_tokens"),
                output: num(l, "output_tokens"),
            }
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn err(est: u64, truth: u64) -> f64 {
    (est as f64 - truth as f64).abs() / truth.max(1) as f64
}

#[test]
fn estimates_meet_their_targets_on_the_committed_corpus_sample() {
    let rows = rows();
    assert!(rows.len() >= 30, "sample too small: {}", rows.len());
    let catalog = Catalog::embedded();
    let (mut input, mut streamed_out, mut plain_out) = (Vec::new(), Vec::new(), Vec::new());
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
        input.push(err(e.est_input_tokens, r.input));
        if r.streamed {
            streamed_out.push(err(e.est_output_tokens, r.output));
        } else {
            plain_out.push(err(e.est_output_tokens, r.output));
        }
    }
    let (i, s, p) = (median(input), median(streamed_out), median(plain_out));
    assert!(s <= 0.15, "streamed output median error {:.1} %", s * 100.0);
    assert!(i <= 0.15, "input median error {:.1} %", i * 100.0);
    assert!(p <= 0.15, "plain output median error {:.1} %", p * 100.0);
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
