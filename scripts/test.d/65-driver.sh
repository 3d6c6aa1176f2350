#!/usr/bin/env bash
# The kernel driver suite: builds toktra-wfp.sys (the build itself fails on a surviving
# panic path or a wrong import/subsystem), runs the driver logic's host unit tests,
# then under Wine, with the WFP stand-in fwpkclnt.sys (test scaffolding): the driver
# loads as a kernel service, registers the expected callouts and inspection filters,
# turns synthetic flows built from a real openssl ClientHello (split at every byte
# boundary) and from real QUIC v1/v2 client Initials (a Chromium hello split over two)
# into the right events, which a user-mode reader gets through DeviceIoControl; the
# ring overflows gracefully; `sc stop` unloads it and leaves no
# registration behind.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
export ROOT
OUT="$ROOT/target/driver-test"
rm -rf "$OUT"
mkdir -p "$OUT"
fail() { echo "65-driver: FAIL $*" >&2; exit 1; }

for tool in openssl python3 x86_64-w64-mingw32-gcc /usr/lib/wine/wine64 /usr/bin/rustc; do
  command -v "$tool" >/dev/null || fail "$tool missing; run scripts/setup (scripts/setup.d/65-driver.sh)"
done

echo "== build (link fails on any panic path; PE subsystem and imports checked)"
scripts/windows-build-driver

echo "== driver logic and ABI: host unit tests"
(cd windows/toktra-wfp && CARGO_TARGET_DIR="$ROOT/target/windows-wfp-host" nice -n 10 \
  cargo test -q --target x86_64-unknown-linux-gnu 2>&1 | grep -E "test result|FAILED|panicked|error" ) ||
  fail "toktra-wfp unit tests"
(cd windows/driver-abi && CARGO_TARGET_DIR="$ROOT/target/windows-wfp-host" nice -n 10 \
  cargo test -q --target x86_64-unknown-linux-gnu 2>&1 | grep -E "test result|FAILED|panicked|error") ||
  fail "driver-abi unit tests"

echo "== fmt and clippy of the driver crates (outside the main workspace, so not in the top-level suites)"
for crate in windows/toktra-wfp windows/driver-abi; do
  (cd "$crate" && cargo fmt --check) || fail "$crate is not rustfmt-clean (cargo fmt in $crate)"
  (cd "$crate" && CARGO_TARGET_DIR="$ROOT/target/windows-wfp-host" nice -n 10 \
    cargo clippy -q --target x86_64-unknown-linux-gnu --all-targets -- -D warnings) || fail "clippy in $crate"
done

echo "== a real ClientHello: openssl s_client to a loopback listener that keeps the first record"
# shellcheck source=../../windows/fwp-standin/wine-driver.sh
source windows/fwp-standin/wine-driver.sh
driver_capture_hello "$OUT/hello.bin" api.openai.com || fail "capturing the ClientHello"
echo "captured a $(stat -c %s "$OUT/hello.bin")-byte ClientHello from $(openssl version)"

echo "== Wine: load the driver"
# shellcheck source=../wine-env
source scripts/wine-env
trap wine_env_stop EXIT
wine_env_start "$ROOT/target/wine/driver-prefix" >"$OUT/wine-start.log" 2>&1 </dev/null ||
  { cat "$OUT/wine-start.log"; fail "starting Wine"; }
TEST="$ROOT/target/windows/test-scaffolding/wfp-driver-test.exe"
STATE="$WINEPREFIX/drive_c/fwp-standin-state.txt"
export DRIVER_WINE_LOG="$OUT/wine-stderr.log"
w() { driver_w "$@"; }
driver_install || fail "loading ToktraWFP under Wine"
echo "ok driver-loads"

w "$TEST" registrations >"$OUT/registrations.txt" || fail "reading the stand-in's registrations"
reg=$OUT/registrations.txt
[ "$(grep -c '^registered ' "$reg")" = 8 ] || fail "expected 8 registered callouts: $(cat "$reg")"
[ "$(grep -c 'conditional_on_flow flow_delete$' "$reg")" = 4 ] || fail "stream/datagram callouts must be conditional on flow with flow-delete"
for layer in ALE_AUTH_CONNECT_V4 ALE_AUTH_CONNECT_V6 ALE_FLOW_ESTABLISHED_V4 ALE_FLOW_ESTABLISHED_V6 \
  STREAM_V4 STREAM_V6 DATAGRAM_DATA_V4 DATAGRAM_DATA_V6; do
  grep -q "^callout .* $layer$" "$reg" || fail "no callout added at $layer"
  grep -q "^filter [0-9]* $layer action=0x6004 " "$reg" || fail "no inspection filter (FWP_ACTION_CALLOUT_INSPECTION) at $layer"
done
[ "$(grep -c '^filter ' "$reg")" = 8 ] || fail "expected exactly 8 filters"
! grep '^filter ' "$reg" | grep -qv 'action=0x6004' || fail "a filter with a non-inspection action"
[ "$(grep -c 'ALE_.*remote_port=443$' "$reg")" = 4 ] || fail "ALE filters must match remote port 443"
grep -q '^provider ' "$reg" && grep -q '^sublayer ' "$reg" || fail "no Toktra provider/sublayer"
[ "$(grep -o 'sublayer={[^}]*}' "$reg" | sort -u | wc -l)" = 1 ] || fail "filters must share the Toktra sublayer"
echo "ok registrations (8 callouts, 8 inspection filters, provider, sublayer)"

suite_fail=0
for cmd in version connect "splits $(wine_path "$OUT/hello.bin") api.openai.com h2,http/1.1" quic malformed overflow "leave-flows 5"; do
  # shellcheck disable=SC2086
  if ! w "$TEST" $cmd >"$OUT/test-${cmd%% *}.log"; then suite_fail=1; fi
  cat "$OUT/test-${cmd%% *}.log"
done
[ $suite_fail = 0 ] || fail "wfp-driver-test reported failures (logs in $OUT)"
echo "== real QUIC Initials (Chromium's hello split over two Initials, QUIC v1 and v2)"
driver_quic_initials "$OUT/quic" || fail "making the QUIC Initial datagrams"
q() { wine_path "$OUT/quic/chromium-two-initials-$1.bin"; }
# v1: every Initial through the datagram layer; v2: the first one copied at connect.
for args in "301 - $(q v1-0) $(q v1-1)" "302 $(q v2-0) $(q v2-1)"; do
  # shellcheck disable=SC2086
  { w "$TEST" quic-flow $args && w "$TEST" expect-quic $args; } >"$OUT/test-quic-${args%% *}.log" || suite_fail=1
  cat "$OUT/test-quic-${args%% *}.log"
done
[ $suite_fail = 0 ] || fail "QUIC Initials through the driver (logs in $OUT)"
driver_feed "$OUT/hello.bin" 3 >"$OUT/feed.log" || { cat "$OUT/feed.log"; fail "driver_feed"; }
driver_test expect-fed 3 api.openai.com || fail "events of driver_feed"

echo "== Wine: unload"
driver_stop || fail "ToktraWFP did not stop"
cp "$STATE" "$OUT/state-after-stop.txt"
grep -q '^engines_open 0$' "$STATE" || fail "engine handle left open: $(cat "$STATE")"
grep -q '^contexts 0$' "$STATE" || fail "flow contexts left behind: $(cat "$STATE")"
grep -q '^leaked_at_close 0$' "$STATE" || fail "objects still registered when the engine closed (the driver must delete them itself): $(cat "$STATE")"
! grep -Eq '^(registered|callout|filter|provider|sublayer) ' "$STATE" || fail "registrations left behind: $(cat "$STATE")"
echo "ok unload leaves no registration behind"

echo "== Wine: load again after unload"
w sc start ToktraWFP >"$OUT/sc-restart.log" || { cat "$OUT/sc-restart.log"; fail "second sc start"; }
w "$TEST" registrations >"$OUT/registrations-2.txt" || fail "stand-in not reachable after reload"
[ "$(grep -c '^filter .* action=0x6004 ' "$OUT/registrations-2.txt")" = 8 ] || fail "reload did not register the 8 filters again"
w "$TEST" version >"$OUT/test-version-2.log" || { cat "$OUT/test-version-2.log"; fail "driver not answering after reload"; }
driver_stop || fail "second sc stop"
grep -q '^engines_open 0$' "$STATE" && ! grep -Eq '^(registered|filter) ' "$STATE" || fail "second unload left registrations: $(cat "$STATE")"
echo "ok reload and second unload"
w sc delete ToktraWFP >/dev/null || true
echo "65-driver: all passed"
