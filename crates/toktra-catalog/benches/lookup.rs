//! Catalog lookup time on the real catalog and on synthetic catalogs 10× and 100×
//! its size (same rule shapes, renamed domains), so the scaling shows; plus the
//! one-off cost of parsing and indexing the embedded catalog.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use toktra_catalog::{Catalog, EMBEDDED_TOML};

/// Hosts a real agent sees: hits of every rule kind, and misses (most traffic).
const HOSTS: &[&str] = &[
    "api.openai.com",
    "chatgpt.com",
    "ab.chatgpt.com",
    "API.Anthropic.com.",
    "us-central1-aiplatform.googleapis.com",
    "myres.openai.azure.com",
    "bedrock-runtime.eu-west-1.amazonaws.com",
    "bedrock-runtime-fips.us-east-1.amazonaws.com",
    "api2.cursor.sh",
    "copilot-proxy.githubusercontent.com",
    "www.google.com",
    "s3.eu-west-1.amazonaws.com",
    "login.microsoftonline.com",
    "a.very.deep.name.under.some.cdn.example.net",
    "example.org",
    "10.0.0.1",
];

/// The embedded catalog with every entry copied `factor` times under renamed domains:
/// copy `c` appends `-sN` to the second-from-right label of each rule.
fn scaled(factor: usize) -> Catalog {
    let base = Catalog::embedded();
    let mut toml = String::from("schema = 1\nversion = \"synthetic\"\n");
    for copy in 0..factor {
        for e in base.entries() {
            let hosts: Vec<String> = e
                .hosts
                .iter()
                .map(|h| {
                    if copy == 0 {
                        return format!("{h:?}");
                    }
                    let mut labels: Vec<String> = h.split('.').map(str::to_owned).collect();
                    let n = labels.len();
                    labels[n - 2] = format!("{}-s{copy}", labels[n - 2]);
                    format!("{:?}", labels.join("."))
                })
                .collect();
            toml.push_str(&format!(
                "[[entry]]\nid = \"{}-{copy}\"\nprovider = \"{}\"\nproduct = \"{}\"\n\
                 category = \"{}\"\nrequest_bytes_per_token = 4.0\n\
                 response_bytes_per_token = 4.0\nhosts = [{}]\n",
                e.id,
                e.provider,
                e.product,
                e.category,
                hosts.join(", ")
            ));
        }
    }
    match Catalog::from_toml(&toml) {
        Ok(c) => c,
        Err(e) => panic!("synthetic catalog: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let real = Catalog::embedded();
    let x10 = scaled(10);
    let x100 = scaled(100);
    eprintln!(
        "rules: real {}, 10x {}, 100x {}",
        real.rule_count(),
        x10.rule_count(),
        x100.rule_count()
    );
    let mut group = c.benchmark_group("lookup");
    for (name, catalog) in [("real", real), ("x10", &x10), ("x100", &x100)] {
        group.bench_function(format!("{name}/{}-hosts", HOSTS.len()), |b| {
            b.iter(|| {
                let mut hits = 0usize;
                for h in HOSTS {
                    if catalog.lookup(black_box(h)).is_some() {
                        hits += 1;
                    }
                }
                hits
            })
        });
    }
    group.finish();
    c.bench_function("parse_embedded_catalog", |b| {
        b.iter(|| Catalog::from_toml(black_box(EMBEDDED_TOML)).map(|c| c.rule_count()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
