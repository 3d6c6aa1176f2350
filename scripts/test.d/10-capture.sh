#!/usr/bin/env bash
# `toktra pcap` against tshark on real traffic and crafted captures.
#
# 1. scripts/capture-fixtures: real ClientHellos from OpenSSL, curl, GnuTLS, Python,
#    Node.js, Java, headless Chromium (TCP and QUIC) and aioquic (QUIC v1 and v2),
#    captured on a veth pair into a namespace, Ethernet and Linux-cooked-v2 framing.
# 2. scripts/pcap-tools/crafted.py: hellos split at many byte positions, out of order,
#    retransmitted, without SYN, odd ports, VLAN, IPv6, QUIC over 1-3 Initials; and
#    malformed traffic.
# Every capture (also as pcapng and gzip) must give the same SNI and ALPN as tshark for
# every flow, every client stack must be found with its known SNI/ALPN, malformed input
# must yield nothing but the valid flow after it, and a damaged file must fail naming
# the byte offset while still writing the flows before the damage.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/toktra
PY=$CACHE/aioquic-venv/bin/python
for tool in tshark editcap jq gzip "$PY"; do
  command -v "$tool" >/dev/null || { echo "10-capture: $tool missing; run scripts/setup" >&2; exit 1; }
done
OUT=$ROOT/artifacts/capture
rm -rf "$OUT"
mkdir -p "$OUT"
cargo build -p toktra --locked --quiet
TOKTRA=${CARGO_TARGET_DIR:-$ROOT/target}/debug/toktra
fail=0
jqt() { jq -e "$@" >/dev/null; } # a jq condition over a file, quietly
check() { # description, then a command that must succeed
  local what=$1
  shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

scripts/capture-fixtures "$OUT"
"$PY" scripts/pcap-tools/crafted.py "$OUT"
editcap -F pcapng "$OUT/real.pcap" "$OUT/real.pcapng"
gzip -c "$OUT/crafted.pcap" >"$OUT/crafted.pcap.gz"
editcap -F pcapng "$OUT/crafted.pcap" - | gzip -c >"$OUT/crafted.pcapng.gz"

TSHARK_PORTS=(-d tcp.port==8443,tls -d tcp.port==4433,tls)
for p in $(cat "$OUT/crafted.ports"); do TSHARK_PORTS+=(-d "tcp.port==$p,tls"); done
same_as_tshark() { # capture file, expected flow count
  local f=$1 n=$2 base
  base=$OUT/$(basename "$f")
  "$TOKTRA" pcap "$f" >"$base.jsonl" 2>"$base.stderr" || { cat "$base.stderr"; return 1; }
  tshark -r "$f" -n -o udp.try_heuristic_first:TRUE -o tcp.reassemble_out_of_order:TRUE "${TSHARK_PORTS[@]}" \
    -Y 'tls.handshake.type==1' -T fields -E occurrence=a -E aggregator=, \
    -e ip.src -e ipv6.src -e tcp.srcport -e udp.srcport \
    -e tls.handshake.extensions_server_name -e tls.handshake.extensions_alpn_str \
    >"$base.tsv" 2>/dev/null
  python3 scripts/pcap-tools/compare.py "$base.jsonl" "$base.tsv" --expect "$n"
}

# Real traffic: Chromium may open one or two connections per run, so the flow count is
# whatever tshark sees, and every client must be there with its known SNI and ALPN.
# The two capture points are separate tcpdump processes; each file is compared with
# what tshark finds in that same file, since one of them may miss a packet the other saw.
hellos_in() {
  tshark -r "$1" -n -o udp.try_heuristic_first:TRUE "${TSHARK_PORTS[@]}" \
    -Y 'tls.handshake.type==1' -T fields -e frame.number 2>/dev/null | wc -l
}
real_flows=$(hellos_in "$OUT/real.pcap")
sll2_flows=$(hellos_in "$OUT/real-sll2.pcap")
check "real traffic: $real_flows hellos, toktra = tshark (Ethernet)" same_as_tshark "$OUT/real.pcap" "$real_flows"
check "real traffic: $sll2_flows hellos, toktra = tshark (Linux cooked v2)" same_as_tshark "$OUT/real-sll2.pcap" "$sll2_flows"
check "real traffic: toktra = tshark (pcapng)" same_as_tshark "$OUT/real.pcapng" "$real_flows"
while IFS=$'\t' read -r stack transport port sni alpn; do
  check "real traffic: $stack sent $transport/$port sni=$sni alpn=$alpn" \
    jqt --arg t "$transport" --argjson p "$port" --arg s "$sni" --arg a "$alpn" -s \
    'any(.[]; .transport == $t and .dport == $p and .sni == $s and (.alpn | join(",")) == $a)' \
    "$OUT/real.pcap.jsonl"
done <"$OUT/expected.tsv"
chromium_segments() {
  tshark -r "$OUT/real.pcap" -n -Y 'tls.handshake.extensions_server_name == "gemini.google.com"' \
    -T fields -e tcp.segment.count 2>/dev/null | awk '$1 >= 2 {n++} END {exit !(n >= 1)}'
}
check "real traffic: Chromium's ClientHello spans several TCP segments" chromium_segments
chromium_quic_fragments() {
  tshark -r "$OUT/real.pcap" -n -o udp.try_heuristic_first:TRUE \
    -Y 'quic && tls.handshake.extensions_server_name == "generativelanguage.googleapis.com"' \
    -T fields -e quic.crypto.fragment.count 2>/dev/null | awk '$1 >= 2 {n++} END {exit !(n >= 1)}'
}
check "real traffic: Chromium's QUIC ClientHello is reassembled from several CRYPTO frames" chromium_quic_fragments
quic_v2_seen() {
  tshark -r "$OUT/real.pcap" -n -o udp.try_heuristic_first:TRUE -Y 'quic.version == 0x6b3343cf' \
    -T fields -e frame.number 2>/dev/null | grep -q .
}
check "real traffic: the aioquic v2 flow really is QUIC v2 on the wire" quic_v2_seen
check "real traffic: every flow in the catalog (all names are provider names)" \
  jqt -s 'length > 0 and all(.[]; .provider != null and .category != null)' "$OUT/real.pcap.jsonl"
check "real traffic: server records counted on TCP, bytes both ways" \
  jqt -s 'all(.[] | select(.transport == "tcp"); .records_in > 0 and .bytes_in > 0 and .bytes_out > 0)' \
  "$OUT/real.pcap.jsonl"

crafted=$(cat "$OUT/crafted.count")
check "crafted: $crafted awkwardly delivered hellos, toktra = tshark" same_as_tshark "$OUT/crafted.pcap" "$crafted"
check "crafted: gzip-compressed pcap" same_as_tshark "$OUT/crafted.pcap.gz" "$crafted"
check "crafted: gzip-compressed pcapng" same_as_tshark "$OUT/crafted.pcapng.gz" "$crafted"
check "crafted: ECH flagged, no-SNI flow has sni null" \
  jqt -s 'any(.[]; .sni == "cloudflare-ech.com" and .ech) and any(.[]; .sni == null and .alpn == [])' \
  "$OUT/crafted.pcap.jsonl"

llm_only() {
  "$TOKTRA" pcap --llm-only "$OUT/crafted.pcap" >"$OUT/llm.jsonl" 2>"$OUT/llm.stderr"
  local all llm
  all=$(jq -s 'map(select(.provider != null)) | length' "$OUT/crafted.pcap.jsonl")
  llm=$(jq -s 'length' "$OUT/llm.jsonl")
  [ "$llm" -gt 0 ] && [ "$llm" = "$all" ] && jq -e -s 'all(.[]; .provider != null)' "$OUT/llm.jsonl" >/dev/null \
    && grep -q "$llm LLM flows" "$OUT/llm.stderr"
}
check "--llm-only keeps exactly the catalog matches" llm_only

malformed() {
  "$TOKTRA" pcap "$OUT/malformed.pcap" >"$OUT/malformed.jsonl" 2>"$OUT/malformed.stderr" &&
    [ "$(jq -r .sni "$OUT/malformed.jsonl")" = valid.after.malformed.example ]
}
check "malformed traffic yields only the valid flow after it" malformed

damaged() {
  local size status=0
  size=$(stat -c %s "$OUT/crafted.pcap")
  head -c $((size * 2 / 3)) "$OUT/crafted.pcap" >"$OUT/damaged.pcap"
  "$TOKTRA" pcap "$OUT/damaged.pcap" >"$OUT/damaged.jsonl" 2>"$OUT/damaged.stderr" || status=$?
  cat "$OUT/damaged.stderr"
  [ "$status" -ne 0 ] && grep -qE 'byte offset [0-9]+' "$OUT/damaged.stderr" &&
    [ "$(wc -l <"$OUT/damaged.jsonl")" -gt 10 ]
}
check "damaged file: non-zero exit, byte offset named, earlier flows written" damaged
not_a_capture() {
  echo "hello" >"$OUT/text.pcap"
  ! "$TOKTRA" pcap "$OUT/text.pcap" 2>"$OUT/text.stderr" >/dev/null && grep -q "not a pcap or pcapng file" "$OUT/text.stderr"
}
check "a non-capture file is refused with a clear error" not_a_capture

exit $fail
