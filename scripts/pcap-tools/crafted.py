"""Crafted captures for the cases real clients do not produce on demand.

usage: crafted.py OUTDIR
Writes OUTDIR/crafted.pcap (valid ClientHellos delivered awkwardly: split at many
byte positions, over several records, out of order, retransmitted, overlapping,
without the SYN, on odd ports, VLAN-tagged, IPv6, QUIC v1/v2 over one to three
Initials in any order), OUTDIR/crafted.count (its number of flows),
OUTDIR/crafted.ports (odd TCP ports, for tshark's -d), and OUTDIR/malformed.pcap
(broken or non-TLS traffic plus one valid flow at the end, whose SNI is
valid.after.malformed.example).
"""

import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
from pcapgen import (  # noqa: E402
    Capture, client_hello, frame, quic_client_datagrams, quic_initial, crypto_frame,
    segments, server_stream, tcp, tls_records, udp,
)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(7)
    c = Capture(os.path.join(out, "crafted.pcap"))
    flows = 0
    port = [20000]

    def cport():
        port[0] += 1
        return port[0]

    def tcp_case(stream_segments, sni, alpn, sport=443, client="10.1.0.1", server="10.2.0.1", **kw):
        nonlocal flows
        c.tcp_flow(client, cport(), server, sport, stream_segments, server_stream(3, rng), rng=rng, **kw)
        flows += 1

    # A Chromium-size hello split into two segments at many byte positions, including
    # inside the record header and the handshake header.
    for p in list(range(1, 12)) + list(range(12, 1900, 41)):
        stream = tls_records(client_hello(f"split{p}.example.com", ("h2", "http/1.1"), "chrome", rng=rng))
        tcp_case([(0, stream[:p]), (p, stream[p:])], None, None)
    # Three segments, the middle one first; the last one first.
    for order in ([1, 0, 2], [2, 1, 0], [2, 0, 1]):
        stream = tls_records(client_hello(f"ooo{''.join(map(str, order))}.example.com", ("h2",), "chrome", rng=rng))
        third = len(stream) // 3
        parts = [(0, stream[:third]), (third, stream[third : 2 * third]), (2 * third, stream[2 * third :])]
        tcp_case([parts[i] for i in order], None, None)
    # Retransmitted and overlapping segments.
    stream = tls_records(client_hello("retransmit.example.com", ("http/1.1",), "curl", rng=rng))
    tcp_case([(0, stream[:100]), (0, stream[:100]), (50, stream[50:300]), (100, stream[100:])], None, None)
    # The hello over several small TLS records, and across three segments.
    msg = client_hello("records.api.openai.com", ("h2", "http/1.1"), "chrome", rng=rng)
    tcp_case(segments(tls_records(msg, max_record=200), mss=700), None, None)
    # Picked up mid-stream: no handshake in the capture.
    stream = tls_records(client_hello("midstream.example.com", ("h2",), "curl", rng=rng))
    tcp_case(segments(stream), None, None, handshake=False)
    # No SNI, no ALPN; ECH offered.
    tcp_case(segments(tls_records(client_hello(None, (), "curl", rng=rng))), None, None)
    tcp_case(segments(tls_records(client_hello("cloudflare-ech.com", ("h2",), "chrome", ech=True, rng=rng))), None, None)
    # Odd ports.
    odd = [8443, 4433, 8080, 10443]
    for p in odd:
        stream = tls_records(client_hello(f"port{p}.api.anthropic.com", ("h2", "http/1.1"), "chrome", rng=rng))
        tcp_case(segments(stream), None, None, sport=p)
    # IPv6 and a VLAN tag.
    tcp_case(segments(tls_records(client_hello("v6.claude.ai", ("h2",), "chrome", rng=rng))), None, None,
             client="fd00::10", server="fd00::20")
    stream = tls_records(client_hello("vlan.example.com", ("h2",), "curl", rng=rng))
    cp, isn = cport(), 1000
    c.emit("10.9.0.1", "10.9.0.2", 6, tcp(cp, 443, isn, 0, "S"))
    c.w.write(c.t + 0.001, frame("10.9.0.1", "10.9.0.2", 6, tcp(cp, 443, isn + 1, 1, "PA", stream), vlan=42))
    c.t += 0.001
    flows += 1
    # QUIC: v1 and v2, one to three Initials, in order or not, IPv4 and IPv6, odd port.
    for i, (version, pieces, reverse, sport, client, server) in enumerate([
        (1, 1, False, 443, "10.3.0.1", "10.4.0.1"),
        (1, 2, False, 443, "10.3.0.1", "10.4.0.1"),
        (1, 3, True, 4433, "10.3.0.1", "10.4.0.1"),
        (0x6B3343CF, 2, False, 443, "10.3.0.1", "10.4.0.1"),
        (0x6B3343CF, 1, False, 9443, "fd00::30", "fd00::40"),
    ]):
        hello = client_hello(f"quic{i}.chatgpt.com", ("h3",), "chrome", rng=rng)
        c.udp_flow(client, cport(), server, sport, quic_client_datagrams(hello, version, pieces, rng, reverse),
                   [b"\x40" + rng.randbytes(300)])
        flows += 1
    c.close()
    with open(os.path.join(out, "crafted.count"), "w") as f:
        f.write(f"{flows}\n")
    with open(os.path.join(out, "crafted.ports"), "w") as f:
        f.write(" ".join(map(str, odd)) + "\n")

    # ---- malformed: nothing here may produce a flow, except the last one.
    m = Capture(os.path.join(out, "malformed.pcap"))
    srv = "10.5.0.1"
    m.tcp_flow("10.6.0.1", 30001, srv, 443, [(0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")], rng=rng)
    good = tls_records(client_hello("truncated.example.com", ("h2",), "curl", rng=rng))
    m.tcp_flow("10.6.0.1", 30002, srv, 443, [(0, good[:100])], rng=rng)
    bad = bytearray(tls_records(client_hello("badlen.example.com", ("h2",), "curl", rng=rng)))
    bad[5 + 4 + 2 + 32 + 1 + 32] = 0xFF  # cipher_suites length high byte
    m.tcp_flow("10.6.0.1", 30003, srv, 443, [(0, bytes(bad))], rng=rng)
    huge = struct.pack("!BHH", 22, 0x0301, 0x4800) + b"\x01" + b"\x00" * 100
    m.tcp_flow("10.6.0.1", 30004, srv, 443, [(0, huge)], rng=rng)
    m.tcp_flow("10.6.0.1", 30005, srv, 443, [(0, b"\x16\x03\x01\x00\x05\x01\x00\x00\x01")], rng=rng)
    hello = client_hello("badtag.example.com", ("h3",), "chrome", rng=rng)
    dg = bytearray(quic_client_datagrams(hello, 1, 1, rng)[0])
    dg[-1] ^= 0xFF
    m.udp_flow("10.6.0.1", 30006, srv, 443, [bytes(dg)])
    m.udp_flow("10.6.0.1", 30007, srv, 443, [rng.randbytes(1200), b"\xc0" + rng.randbytes(40)])
    m.udp_flow("10.6.0.1", 30008, srv, 443, [b"\xc0\x00\x00\x00\x01\xff" + rng.randbytes(50)])
    m.emit("10.6.0.1", srv, 6, b"\x00" * 7)  # truncated TCP header
    m.emit("10.6.0.1", srv, 17, b"\x00\x01")  # truncated UDP header
    m.w.write(m.t, b"\x00" * 10)  # truncated Ethernet frame
    stream = tls_records(client_hello("valid.after.malformed.example", ("h2",), "curl", rng=rng))
    m.tcp_flow("10.6.0.1", 30009, srv, 443, segments(stream), server_stream(1, rng), rng=rng)
    m.close()


if __name__ == "__main__":
    main()
