//! `toktra pcap --threads N`: the pipelined reader, tracker and writer give exactly the
//! single-threaded output, over several batches and record hand-overs, across files,
//! and after a damaged file.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use toktra_wire::quic::{VERSION_1, seal_client_initial};

/// A real ClientHello record stream (headless Chromium, SNI api.openai.com, h2).
const CHROMIUM: &[u8] = include_bytes!("../../toktra-wire/tests/data/chromium-clienthello.bin");

struct Pcap(Vec<u8>);

impl Pcap {
    fn new() -> Self {
        let mut b = Vec::new();
        b.extend(0xa1b2_c3d4u32.to_le_bytes());
        b.extend(2u16.to_le_bytes());
        b.extend(4u16.to_le_bytes());
        b.extend([0u8; 8]);
        b.extend(262_144u32.to_le_bytes());
        b.extend(1u32.to_le_bytes()); // Ethernet
        Self(b)
    }

    fn frame(&mut self, usec: u64, ip: &[u8]) {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        f.extend(ip);
        self.0
            .extend(((usec / 1_000_000 + 1_700_000_000) as u32).to_le_bytes());
        self.0.extend(((usec % 1_000_000) as u32).to_le_bytes());
        self.0.extend((f.len() as u32).to_le_bytes());
        self.0.extend((f.len() as u32).to_le_bytes());
        self.0.extend(f);
    }
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0];
    p.extend(((20 + l4.len()) as u16).to_be_bytes());
    p.extend([0, 0, 0x40, 0, 64, proto, 0, 0]);
    p.extend(src);
    p.extend(dst);
    p.extend(l4);
    p
}

fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend(sport.to_be_bytes());
    t.extend(dport.to_be_bytes());
    t.extend(seq.to_be_bytes());
    t.extend([0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend(payload);
    t
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend(sport.to_be_bytes());
    u.extend(dport.to_be_bytes());
    u.extend(((8 + payload.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(payload);
    u
}

/// `flows` interleaved connections, 16 in flight: TCP flows that end with FIN (emitted
/// mid-capture), TCP flows left open and QUIC flows (emitted at the end).
fn capture(flows: u32) -> Vec<u8> {
    let hello_msg = &CHROMIUM[5..];
    let mut pcap = Pcap::new();
    let mut usec = 0u64;
    let mut step = |pcap: &mut Pcap, ip: Vec<u8>| {
        usec += 7;
        pcap.frame(usec, &ip);
    };
    for wave in (0..flows).step_by(16) {
        let ids: Vec<u32> = (wave..(wave + 16).min(flows)).collect();
        let client = |i: u32| [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let server = [203, 0, 113, 7];
        let port = |i: u32| 1024 + (i % 60000) as u16;
        for &i in &ids {
            if i % 5 == 4 {
                // A QUIC Initial carrying the whole hello in one CRYPTO frame.
                let mut frames = vec![0x06, 0x00, 0x40 | (hello_msg.len() >> 8) as u8];
                frames.push(hello_msg.len() as u8);
                frames.extend(hello_msg);
                frames.resize(frames.len().max(1200), 0);
                let mut out = vec![0u8; 2048];
                let dcid = [i as u8, (i >> 8) as u8, 3, 4, 5, 6, 7, 8];
                let n = seal_client_initial(VERSION_1, &dcid, &[1], 0, &frames, &mut out).unwrap();
                step(
                    &mut pcap,
                    ipv4(client(i), server, 17, &udp(port(i), 443, &out[..n])),
                );
            } else {
                step(
                    &mut pcap,
                    ipv4(client(i), server, 6, &tcp(port(i), 8443, 100, 0x02, &[])),
                );
            }
        }
        for &i in ids.iter().filter(|i| *i % 5 != 4) {
            // The hello in two segments, the second first.
            let (a, b) = CHROMIUM.split_at(700);
            let c = client(i);
            step(
                &mut pcap,
                ipv4(c, server, 6, &tcp(port(i), 8443, 801, 0x18, b)),
            );
            step(
                &mut pcap,
                ipv4(c, server, 6, &tcp(port(i), 8443, 101, 0x18, a)),
            );
        }
        for &i in ids.iter().filter(|i| *i % 5 < 2) {
            let c = client(i);
            let end = 101 + CHROMIUM.len() as u32;
            step(
                &mut pcap,
                ipv4(c, server, 6, &tcp(port(i), 8443, end, 0x11, &[])),
            );
            step(
                &mut pcap,
                ipv4(server, c, 6, &tcp(8443, port(i), 9, 0x11, &[])),
            );
        }
    }
    pcap.0
}

fn run(threads: u32, files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_toktra"))
        .arg("pcap")
        .args(["--threads", &threads.to_string()])
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn every_thread_count_gives_the_single_threaded_output() {
    let dir = tempfile::tempdir().unwrap();
    // About 6 MB: two dozen 256 KiB batches, and thousands of records handed over.
    let flows = 3000;
    let whole = capture(flows);
    let good = dir.path().join("good.pcap");
    std::fs::write(&good, &whole).unwrap();
    // Cut inside a record: an error naming the offset, flows before it still written.
    let damaged = dir.path().join("damaged.pcap");
    std::fs::File::create(&damaged)
        .unwrap()
        .write_all(&whole[..whole.len() / 2 + 3])
        .unwrap();

    let one = run(1, &[&good]);
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let lines: Vec<&str> = std::str::from_utf8(&one.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), flows as usize);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("\"sni\":\"api.openai.com\""))
    );
    let quic = lines
        .iter()
        .filter(|l| l.contains("\"transport\":\"quic\""))
        .count();
    assert_eq!(quic, flows as usize / 5);
    for threads in [2, 3, 8] {
        let many = run(threads, &[&good]);
        assert!(many.status.success());
        assert!(many.stdout == one.stdout, "--threads {threads} differs");
    }

    let one = run(1, &[&damaged, &good]);
    assert_eq!(one.status.code(), Some(1));
    let err = String::from_utf8_lossy(&one.stderr);
    assert!(
        err.contains("damaged.pcap") && err.contains("byte offset"),
        "{err}"
    );
    let n = one.stdout.iter().filter(|&&b| b == b'\n').count();
    assert!(
        n > flows as usize,
        "flows of the damaged file are written too: {n}"
    );
    for threads in [2, 3] {
        let many = run(threads, &[&damaged, &good]);
        assert_eq!(many.status.code(), Some(1));
        assert!(
            many.stdout == one.stdout,
            "--threads {threads} differs after damage"
        );
        assert!(String::from_utf8_lossy(&many.stderr).contains("byte offset"));
    }

    let zero = Command::new(env!("CARGO_BIN_EXE_toktra"))
        .args(["pcap", "--threads", "0"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(!zero.status.success());
}
