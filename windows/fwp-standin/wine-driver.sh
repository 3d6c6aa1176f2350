# shellcheck shell=bash
# TEST SCAFFOLDING: put toktra-wfp.sys (with the WFP stand-in) into a started Wine
# prefix and feed it flows. Source after scripts/wine-env and wine_env_start; needs
# scripts/windows-build-driver's artifacts. Used by scripts/test.d/65-driver.sh, and
# meant for any scenario that wants the real driver under Wine (ToktraAgent.exe
# draining it, for example):
#
#   source windows/fwp-standin/wine-driver.sh
#   driver_capture_hello FILE        a real ClientHello (openssl s_client -> loopback)
#   driver_install                   copy, sc create, restart the session, sc start
#   driver_feed FILE N               N complete TLS flows whose events wait in the ring
#   driver_quic_initials DIR         real client QUIC Initials, from the committed Chromium
#                                    fixtures (a hello split over two Initials, v1 and v2):
#                                    DIR/chromium-two-initials-v{1,2}-{0,1}.bin
#   driver_test ARGS...              wfp-driver-test.exe ARGS (see driver-test.c)
#   driver_stop                      sc stop and wait for STOPPED

DRIVER_ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DRIVER_TEST_EXE="$DRIVER_ROOT/target/windows/test-scaffolding/wfp-driver-test.exe"

driver_w() { wine_run "$@" </dev/null 2>>"${DRIVER_WINE_LOG:-/dev/null}" | tr -d '\r'; }

driver_capture_hello() {
  local out=$1 dir
  dir=$(mktemp -d)
  python3 - "$out" "$dir/port" <<'PY' &
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
open(sys.argv[2], "w").write(str(s.getsockname()[1]))
c, _ = s.accept(); c.settimeout(10)
buf = b""
while len(buf) < 5 or len(buf) < 5 + int.from_bytes(buf[3:5], "big"):
    chunk = c.recv(65536)
    if not chunk: break
    buf += chunk
open(sys.argv[1], "wb").write(buf[: 5 + int.from_bytes(buf[3:5], "big")])
c.close()
PY
  local listener=$! i
  for i in $(seq 50); do [ -s "$dir/port" ] && break; sleep 0.1; done
  timeout 20 openssl s_client -connect "127.0.0.1:$(cat "$dir/port")" -servername "${2:-api.openai.com}" \
    -alpn h2,http/1.1 </dev/null >"$dir/s_client.log" 2>&1 || true
  wait "$listener" || { rm -rf "$dir"; echo "driver_capture_hello: no ClientHello captured" >&2; return 1; }
  rm -rf "$dir"
  [ "$(head -c 1 "$out" | od -An -tx1 | tr -d ' ')" = 16 ] ||
    { echo "driver_capture_hello: captured bytes are not a TLS handshake record" >&2; return 1; }
}

driver_install() {
  local drivers="$WINEPREFIX/drive_c/windows/system32/drivers"
  cp "$DRIVER_ROOT/target/windows/toktra-wfp.sys" "$DRIVER_ROOT/target/windows/test-scaffolding/fwpkclnt.sys" "$drivers/" || return 1
  driver_w sc create ToktraWFP type= kernel start= demand binPath= 'C:\windows\system32\drivers\toktra-wfp.sys' >/dev/null || true
  driver_w reg query 'HKLM\System\CurrentControlSet\Services\ToktraWFP' /v ImagePath | grep -q toktra-wfp.sys ||
    { echo "driver_install: sc create ToktraWFP did not register the kernel service" >&2; return 1; }
  # Wine 8's services.exe answers `sc start` for a service created in the same session
  # with "does not exist" (1060) although it is in the registry; a fresh session reads
  # it. A Wine quirk, not a driver behaviour: restart the persistent server once.
  "$WINESERVER" -k >/dev/null 2>&1 || true
  "$WINESERVER" -w >/dev/null 2>&1 || true
  "$WINESERVER" -p </dev/null >/dev/null 2>&1
  driver_w sc start ToktraWFP >/dev/null || { echo "driver_install: sc start ToktraWFP failed" >&2; return 1; }
  driver_w sc query ToktraWFP | grep -q RUNNING || { echo "driver_install: ToktraWFP not running" >&2; return 1; }
}

driver_test() { driver_w "$DRIVER_TEST_EXE" "$@"; }

driver_quic_initials() {
  local dir=$1 seed
  mkdir -p "$dir"
  for seed in chromium-two-initials-v1 chromium-two-initials-v2; do
    CARGO_TARGET_DIR="$DRIVER_ROOT/target/windows-wfp-host" nice -n 10 cargo run -q --target x86_64-unknown-linux-gnu \
      --manifest-path "$DRIVER_ROOT/windows/test-scaffolding/quic-initials/Cargo.toml" -- \
      "$DRIVER_ROOT/fuzz/seeds/quic_initial/$seed" "$dir/$seed" || return 1
  done
}

driver_feed() { driver_test feed "$(wine_path "$1")" "$2"; }

driver_stop() {
  local i
  driver_w sc stop ToktraWFP >/dev/null || true
  for i in $(seq 50); do driver_w sc query ToktraWFP | grep -q STOPPED && return 0; sleep 0.2; done
  echo "driver_stop: ToktraWFP did not stop" >&2
  return 1
}
