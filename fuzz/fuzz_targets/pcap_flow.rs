//! The pcap flow path: capture-file reading and the flow tracker, as `toktra pcap`
//! runs them. The first byte picks a mode:
//! - file: the rest is a capture file (pcap, pcapng or gzip), read to its end or its
//!   first error, every packet through the tracker;
//! - frames: the rest is a sequence of raw frames (u16 length, link-type byte, bytes);
//! - segments: the rest drives well-formed Ethernet/IPv4/IPv6 TCP and UDP packets of a
//!   few flows (flags, sequence offsets, direction from the fuzzer; payload from the
//!   input), so the TCP reassembly and QUIC paths are reached without the fuzzer
//!   having to invent checksummed headers; UDP payloads may be sealed as real QUIC
//!   Initials so CRYPTO reassembly sees fuzzer-controlled frames.
//! Oracles: no panic; every emitted record is internally consistent; a tracker never
//! holds more flows than its cap.
//!
//! The tracker and the pcap source are compiled in by path rather than through the
//! toktra-agent crate: that crate also carries SQLite, TLS and libpcap, which would make
//! an instrumented build take many minutes and link a C library the target never uses.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use toktra_wire::link::LinkType;

#[allow(dead_code)]
#[path = "../../crates/toktra-agent/src/flow/mod.rs"]
mod flow;
#[allow(dead_code)]
#[path = "../../crates/toktra-agent/src/source/pcap.rs"]
mod pcap;

use flow::{FlowConfig, FlowRecord, FlowTracker};

const LINKS: [LinkType; 8] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Null,
    LinkType::Loop,
];

fn tracker() -> FlowTracker {
    FlowTracker::new(FlowConfig {
        max_flows: 8,
        tcp_idle_timeout: Duration::from_secs(5),
        quic_idle_timeout: Duration::from_secs(3),
        hello_timeout: Duration::from_secs(2),
        max_hello_packets: 6,
        scan_interval: Duration::from_secs(1),
        max_pending_hellos: 3,
    })
}

fn check(r: &FlowRecord) {
    assert!(r.first_ts <= r.last_ts);
    assert!(r.packets_out >= 1, "the client sent at least the hello");
    assert!(r.bytes_out >= 6 || r.transport == flow::FlowTransport::Quic);
    assert!(r.ja4.len() == 36);
    assert!(r.alpn.iter().all(|a| !a.is_empty()));
}

fn drain(t: &mut FlowTracker, now: Duration) {
    for r in t.poll_expired(now) {
        check(&r);
    }
    assert!(t.active_flows() <= 8);
}

fn finish(t: FlowTracker) {
    for r in t.finish() {
        check(&r);
    }
}

fn file_mode(data: &[u8]) {
    let Ok(mut source) = pcap::PcapSource::from_reader(std::io::Cursor::new(data.to_vec())) else {
        return;
    };
    let mut t = tracker();
    let mut last_offset = 0;
    while let Ok(Some(p)) = source.next_packet() {
        assert!(p.offset >= last_offset, "offsets only grow");
        last_offset = p.offset;
        let (ts, link) = (p.ts, p.link);
        if let Ok(link) = link {
            t.track(ts, link, p.data);
        }
        drain(&mut t, ts);
    }
    finish(t);
}

fn frames_mode(mut data: &[u8]) {
    let mut t = tracker();
    let mut ts = Duration::from_secs(1_700_000_000);
    while let Some((head, rest)) = data.split_first_chunk::<3>() {
        let len = usize::from(u16::from_le_bytes([head[0], head[1]]) & 0x0fff);
        let link = LINKS[usize::from(head[2] & 7)];
        ts += Duration::from_millis(u64::from(head[2] >> 3) * 100);
        let (frame, rest) = rest.split_at(len.min(rest.len()));
        t.track(ts, link, frame);
        drain(&mut t, ts);
        data = rest;
    }
    finish(t);
}

fn ethernet(ipv6: bool, proto: u8, from_client: bool, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    let (a, b) = if from_client { (1u8, 2u8) } else { (2, 1) };
    if ipv6 {
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, a]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b]);
    } else {
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, a, 10, 0, 0, b]);
    }
    f.extend_from_slice(l4);
    f
}

fn segments_mode(mut data: &[u8]) {
    const DCID: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
    let mut t = tracker();
    let mut ts = Duration::from_secs(1_700_000_000);
    let isn = [0x1000_0000u32, 0xffff_ff00, 7, 0x8000_0000];
    // control: flow (2 bits) | udp | from_client | ipv6 | flags (3 bits)
    while let Some((head, rest)) = data.split_first_chunk::<4>() {
        let ctrl = head[0];
        let flow = usize::from(ctrl & 3);
        let udp = ctrl & 4 != 0;
        let from_client = ctrl & 8 != 0;
        let ipv6 = ctrl & 16 != 0;
        let offset = u32::from(u16::from_le_bytes([head[1], head[2]]));
        let len = usize::from(head[3]) * 8;
        let (payload, rest) = rest.split_at(len.min(rest.len()));
        data = rest;
        ts += Duration::from_millis(u64::from(ctrl >> 5) * 300);
        let (cport, sport) = (40000 + flow as u16, [443u16, 8443, 4433, 443][flow]);
        let (src_port, dst_port) = if from_client {
            (cport, sport)
        } else {
            (sport, cport)
        };
        let l4 = if udp {
            let mut body = payload.to_vec();
            if from_client && offset & 1 == 1 {
                let mut out = vec![0u8; payload.len() + 1400];
                let version = if offset & 2 == 0 { 1 } else { 0x6b33_43cf };
                if let Ok(n) = toktra_wire::quic::seal_client_initial(
                    version,
                    &DCID,
                    &[9],
                    offset >> 2,
                    payload,
                    &mut out,
                ) {
                    out.truncate(n);
                    body = out;
                }
            }
            let mut u = Vec::with_capacity(body.len() + 8);
            u.extend_from_slice(&src_port.to_be_bytes());
            u.extend_from_slice(&dst_port.to_be_bytes());
            u.extend_from_slice(&((body.len() + 8) as u16).to_be_bytes());
            u.extend_from_slice(&[0, 0]);
            u.extend_from_slice(&body);
            u
        } else {
            let flags = [0x02u8, 0x12, 0x10, 0x18, 0x18, 0x11, 0x04, 0x18][usize::from(ctrl >> 5)];
            let base = if from_client {
                isn[flow]
            } else {
                isn[flow ^ 1]
            };
            let seq = base.wrapping_add(offset);
            let mut s = Vec::with_capacity(payload.len() + 20);
            s.extend_from_slice(&src_port.to_be_bytes());
            s.extend_from_slice(&dst_port.to_be_bytes());
            s.extend_from_slice(&seq.to_be_bytes());
            s.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            s.extend_from_slice(payload);
            s
        };
        let frame = ethernet(ipv6, if udp { 17 } else { 6 }, from_client, &l4);
        t.track(ts, LinkType::Ethernet, &frame);
        drain(&mut t, ts);
    }
    finish(t);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => file_mode(rest),
        1 => frames_mode(rest),
        _ => segments_mode(rest),
    }
});
