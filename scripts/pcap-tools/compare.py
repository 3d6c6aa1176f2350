"""Compares `toktra pcap` output with tshark's view of the same capture: the same SNI
and ALPN list for every flow, flows keyed by client address and port.

usage: compare.py TOKTRA.jsonl TSHARK.tsv [--expect N]
The TSV comes from:
  tshark -r F -Y tls.handshake.type==1 -T fields -E occurrence=a -E aggregator=, \
    -e ip.src -e ipv6.src -e tcp.srcport -e udp.srcport \
    -e tls.handshake.extensions_server_name -e tls.handshake.extensions_alpn_str
Exit status 0 when both agree (and there are N flows if --expect is given).
"""

import json
import sys


def load_toktra(path):
    flows = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            key = (r["src"], r["sport"])
            if key in flows:
                sys.exit(f"compare: toktra reported {key} twice")
            flows[key] = (r["sni"] or "", ",".join(r["alpn"]))
    return flows


def load_tshark(path):
    flows = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 6:
                continue
            ip4, ip6, tport, uport, sni, alpn = cols[:6]
            src = ip4 or ip6
            port = int((tport or uport).split(",")[0])
            # A hello seen twice (a QUIC Initial retransmission) is one flow.
            flows[(src, port)] = (sni, alpn)
    return flows


def main():
    ours, theirs = load_toktra(sys.argv[1]), load_tshark(sys.argv[2])
    expect = int(sys.argv[sys.argv.index("--expect") + 1]) if "--expect" in sys.argv else None
    problems = []
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key), theirs.get(key)
        if a != b:
            problems.append(f"  {key[0]}:{key[1]}  toktra={a}  tshark={b}")
    if expect is not None and len(ours) != expect:
        problems.append(f"  toktra reported {len(ours)} flows, expected {expect}")
    if problems:
        print(f"compare: {len(problems)} difference(s) between toktra and tshark:")
        print("\n".join(problems[:50]))
        sys.exit(1)
    print(f"compare: toktra and tshark agree on SNI and ALPN of all {len(ours)} flows")


if __name__ == "__main__":
    main()
