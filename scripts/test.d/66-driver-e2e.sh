#!/usr/bin/env bash
# End to end on Windows-under-Wine: the real toktra-wfp.sys (with the WFP stand-in,
# test scaffolding) sees three TLS flows built from a real openssl ClientHello;
# ToktraAgent.exe (the real service binary, run in its console mode) drains the driver
# through DeviceIoControl, enrolls with a `toktra up` server running on Linux and
# uploads them over mTLS; the server's usage API then shows them, attributed to the
# user SID the flows carried. Then two QUIC flows from real client Initials (QUIC v1
# and v2, a Chromium hello split over two Initials): the agent decrypts the driver's
# datagram copies and the server stores them with transport quic and provider openai.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
export ROOT
OUT="$ROOT/target/driver-e2e"
rm -rf "$OUT"
mkdir -p "$OUT"
fail() { echo "66-driver-e2e: FAIL $*" >&2; exit 1; }
for tool in jq curl openssl python3 /usr/lib/wine/wine64; do
  command -v "$tool" >/dev/null || fail "$tool missing; run scripts/setup"
done

echo "== build: ToktraAgent.exe and the driver (scripts/windows-build), toktra (Linux)"
TOKTRA_SKIP_SETUP=1 scripts/windows-build >"$OUT/windows-build.log" 2>&1 ||
  { tail -30 "$OUT/windows-build.log"; fail "scripts/windows-build"; }
nice -n 10 cargo build -q -p toktra || fail "cargo build -p toktra"
TOKTRA="$ROOT/target/debug/toktra"

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${WINEPREFIX:-}" ]; then wine_env_stop; fi
}
trap cleanup EXIT

echo "== a toktra server on Linux (toktra up, loopback only)"
"$TOKTRA" up --data "$OUT/up" --agent-port 0 --admin-port 0 >"$OUT/up.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do [ -s "$OUT/up/up.json" ] && break; sleep 0.1; done
[ -s "$OUT/up/up.json" ] || { cat "$OUT/up.log"; fail "toktra up did not come up"; }
ORG=$(jq -r .org_id "$OUT/up/up.json")
AGENT_URL=$(jq -r .agent_url "$OUT/up/up.json")
API=$(jq -r .api_url "$OUT/up/up.json")
KEY=$(jq -r .api_key "$OUT/up/up.json")
TOKEN=$("$TOKTRA" admin token create --data "$OUT/up/server" --org "$ORG" --json | jq -r .token)
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || fail "no enrollment token"

echo "== Wine: the driver, then the agent"
# shellcheck source=../wine-env
source scripts/wine-env
# shellcheck source=../../windows/fwp-standin/wine-driver.sh
source windows/fwp-standin/wine-driver.sh
export DRIVER_WINE_LOG="$OUT/wine-stderr.log"
driver_capture_hello "$OUT/hello.bin" api.openai.com || fail "capturing a ClientHello"
wine_env_start "$ROOT/target/wine/driver-e2e-prefix" >"$OUT/wine-start.log" 2>&1 </dev/null ||
  { cat "$OUT/wine-start.log"; fail "starting Wine"; }
driver_install || fail "loading ToktraWFP"
REG='HKLM\SOFTWARE\Toktra\Agent'
regset() { wine_run reg add "$REG" /f /v "$1" /t "$2" /d "$3" </dev/null >/dev/null 2>&1 || fail "reg add $1"; }
regset IngestUrl REG_SZ "$AGENT_URL"
regset OrgId REG_SZ "$ORG"
regset EnrollToken REG_SZ "$TOKEN"
regset ServerCaFile REG_SZ "$(wine_path "$OUT/up/server-ca.pem")"
regset LogLevel REG_DWORD 2
INSTALL="$WINEPREFIX/drive_c/Program Files/Toktra"
mkdir -p "$INSTALL"
cp target/windows/ToktraAgent.exe "$INSTALL/"
wine_run "$INSTALL/ToktraAgent.exe" run </dev/null >"$OUT/agent.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do grep -q "capture driver: toktra-wfp" "$OUT/agent.log" && break; sleep 0.1; done
grep -q "capture driver: toktra-wfp" "$OUT/agent.log" || { cat "$OUT/agent.log"; fail "ToktraAgent did not open the driver"; }
echo "ok ToktraAgent.exe opened \\\\.\\ToktraWfp ($(grep -o 'capture driver: .*' "$OUT/agent.log" | head -1 | tr -d '\r'))"

driver_feed "$OUT/hello.bin" 3 >"$OUT/feed.log" || { cat "$OUT/feed.log"; fail "feeding the driver"; }

echo "== the server's usage API"
usage() { curl -s -H "Authorization: Bearer $KEY" "$API/usage"; }
for _ in $(seq 120); do
  [ "$(usage | jq '[.items[] | select(.provider == "openai") | .total_requests] | add // 0')" -ge 3 ] && break
  sleep 0.5
done
usage >"$OUT/usage.json"
jq -e '[.items[] | select(.provider == "openai" and .user_id == "S-1-5-21-1-2-3-1001") | .total_requests] | add == 3' \
  "$OUT/usage.json" >/dev/null || { cat "$OUT/usage.json"; tail -20 "$OUT/agent.log"; fail "the server does not show the 3 OpenAI flows of S-1-5-21-1-2-3-1001"; }
echo "ok 3 flows seen by the driver under Wine are on the Linux server (provider openai, user S-1-5-21-1-2-3-1001)"

echo "== QUIC: real client Initials (Chromium's hello in two Initials, v1 and v2) decrypted by ToktraAgent.exe"
driver_quic_initials "$OUT/quic" >"$OUT/quic-initials.log" || { cat "$OUT/quic-initials.log"; fail "making the QUIC Initials"; }
q() { wine_path "$OUT/quic/chromium-two-initials-$1.bin"; }
# v1: both Initials through the datagram layer; v2: the first copied at connect time,
# before the flow had an id, so the agent must join it to the flow.
driver_test quic-flow 401 - "$(q v1-0)" "$(q v1-1)" >"$OUT/quic-feed.log" &&
  driver_test quic-flow 402 "$(q v2-0)" "$(q v2-1)" >>"$OUT/quic-feed.log" ||
  { cat "$OUT/quic-feed.log"; fail "feeding the QUIC flows"; }
quic_events() {
  python3 - "$OUT/up/server/toktra.db" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = db.execute("SELECT transport, provider, sni, alpn, ja4, user_name, bytes_out FROM events WHERE transport = 'quic'").fetchall()
print(json.dumps([dict(zip(["transport", "provider", "sni", "alpn", "ja4", "user", "bytes_out"], r)) for r in rows]))
PY
}
for _ in $(seq 120); do
  [ "$(quic_events | jq length)" -ge 2 ] && break
  sleep 0.5
done
quic_events >"$OUT/quic-events.json"
jq -e 'length == 2 and all(.[]; .transport == "quic" and .provider == "openai" and .sni == "api.openai.com"
         and (.ja4 | startswith("q13")) and .user == "S-1-5-21-1-2-3-1001") and ([.[].bytes_out] | sort) == [1200, 2400]' \
  "$OUT/quic-events.json" >/dev/null ||
  { cat "$OUT/quic-events.json"; tail -20 "$OUT/agent.log"; fail "the server does not hold the 2 QUIC flows (transport quic, provider openai, SNI api.openai.com)"; }
usage >"$OUT/usage-after-quic.json"
jq -e '[.items[] | select(.provider == "openai" and .user_id == "S-1-5-21-1-2-3-1001") | .total_requests] | add == 5' \
  "$OUT/usage-after-quic.json" >/dev/null || { cat "$OUT/usage-after-quic.json"; fail "usage API does not count the QUIC flows"; }
echo "ok 2 QUIC flows (v1, v2; hello over two Initials) decrypted from the driver's copies: transport quic, provider openai, $(jq -r '.[0].ja4' "$OUT/quic-events.json")"

driver_stop || fail "ToktraWFP did not stop"
echo "66-driver-e2e: all passed"
