"""Generates the scripts/bench-pcap capture: N TLS/QUIC flows, interleaved like a busy
link (64 connections in flight), each a realistic connection: SYN/SYN-ACK/ACK, a
ClientHello (Chrome-like ones span two segments), server handshake and application
records, client data, FIN/FIN/ACK; about 12% QUIC (some split over two Initials,
some QUIC v2); ports mostly 443, some 8443/4433.

usage: gen_bench.py OUT.pcap [FLOWS]
"""

import random
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
from pcapgen import (  # noqa: E402
    PcapWriter, client_hello, frame, quic_client_datagrams, segments, server_stream, tcp,
    tls_records, udp,
)

LLM_NAMES = [
    "api.openai.com", "chatgpt.com", "api.anthropic.com", "claude.ai", "gemini.google.com",
    "generativelanguage.googleapis.com", "contoso.openai.azure.com",
    "bedrock-runtime.us-east-1.amazonaws.com", "api.mistral.ai", "api.groq.com",
    "api.together.xyz", "api.deepseek.com", "api.x.ai", "api.perplexity.ai", "openrouter.ai",
    "copilot.microsoft.com", "api.githubcopilot.com", "api2.cursor.sh", "api.cohere.com",
    "us-central1-aiplatform.googleapis.com",
]
ALPNS = [("h2", "http/1.1"), ("http/1.1",), ("h2",), ("h2", "http/1.1", "spdy/3.1")]


def tcp_packets(rng, i, client, server, cport, sport, name, alpn, style):
    cisn, sisn = rng.getrandbits(32), rng.getrandbits(32)
    hello = tls_records(client_hello(name, alpn, style, ech=(i % 97 == 0), rng=rng))
    app_out = rng.randbytes(rng.randint(200, 1400))
    srv = server_stream(rng.randint(2, 8), rng, record_len=rng.choice([64, 300, 900]))
    c2s, s2c = (client, server, cport, sport), (server, client, sport, cport)
    yield c2s, 6, tcp(cport, sport, cisn, 0, "S")
    yield s2c, 6, tcp(sport, cport, sisn, cisn + 1, "SA")
    yield c2s, 6, tcp(cport, sport, cisn + 1, sisn + 1, "A")
    for off, seg in segments(hello):
        yield c2s, 6, tcp(cport, sport, cisn + 1 + off, sisn + 1, "PA", seg)
    out = len(hello)
    for off, seg in segments(srv):
        yield s2c, 6, tcp(sport, cport, sisn + 1 + off, cisn + 1 + out, "PA", seg)
    yield c2s, 6, tcp(cport, sport, cisn + 1 + out, sisn + 1 + len(srv), "PA", app_out)
    out += len(app_out)
    yield c2s, 6, tcp(cport, sport, cisn + 1 + out, sisn + 1 + len(srv), "FA")
    yield s2c, 6, tcp(sport, cport, sisn + 1 + len(srv), cisn + 2 + out, "FA")
    yield c2s, 6, tcp(cport, sport, cisn + 2 + out, sisn + 2 + len(srv), "A")


def quic_packets(rng, i, client, server, cport, sport, name):
    version = 0x6B3343CF if i % 5 == 0 else 1
    pieces = 2 if i % 2 == 0 else 1
    hello = client_hello(name, ("h3",), "chrome", rng=rng)
    c2s, s2c = (client, server, cport, sport), (server, client, sport, cport)
    for d in quic_client_datagrams(hello, version, pieces, rng):
        yield c2s, 17, udp(cport, sport, d)
    for _ in range(3):
        yield s2c, 17, udp(sport, cport, b"\x40" + rng.randbytes(rng.randint(100, 1200)))
    yield c2s, 17, udp(cport, sport, b"\x40" + rng.randbytes(60))


def flows(n, rng):
    for i in range(n):
        client = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}"
        server = f"203.0.{113 + (i % 3)}.{1 + i % 250}"
        cport = 1024 + (i * 7919) % 60000
        if i % 23 == 0:
            name = f"Mixed.Case{i}.Example.COM"  # sent as is; must be reported as is
        elif rng.random() < 0.35:
            name = rng.choice(LLM_NAMES)
        else:
            name = f"www.site{i % 5000}.example{ i % 7 }.net"
        if i % 8 == 0:
            sport = 4433 if i % 16 == 0 else 443
            yield quic_packets(rng, i, client, server, cport, sport, name)
        else:
            sport = 8443 if i % 10 == 1 else 443
            style = "chrome" if i % 5 < 2 else "curl"
            yield tcp_packets(rng, i, client, server, cport, sport, name, rng.choice(ALPNS), style)


def main():
    out, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    rng = random.Random(20261126)
    w = PcapWriter(out)
    t = 1_767_225_600.0
    active = []
    source = flows(n, rng)
    exhausted = False
    while active or not exhausted:
        while not exhausted and len(active) < 64:
            try:
                active.append(next(source))
            except StopIteration:
                exhausted = True
        k = rng.randrange(len(active))
        try:
            (src, dst, _, _), proto, l4 = next(active[k])
        except StopIteration:
            active[k] = active[-1]
            active.pop()
            continue
        t += 0.00002
        w.write(t, frame(src, dst, proto, l4, checksums=False))
    w.close()


if __name__ == "__main__":
    main()
