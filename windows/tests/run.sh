#!/usr/bin/env bash
# The Windows scenarios under Wine. Called by scripts/test.d/60-windows.sh with a
# started prefix (scripts/wine-env) and the artifacts of scripts/windows-build --tests.
# Each check prints "ok - ..." or "not ok - ..."; the summary line counts them.
set -uo pipefail
# shellcheck source=../../scripts/wine-env
source "$ROOT/scripts/wine-env"

OUT=$ROOT/target/windows
TESTS=$OUT/windows-tests
WORK=$ROOT/target/windows-scenarios
rm -rf "$WORK"
mkdir -p "$WORK" "$ROOT/artifacts/windows"
passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
check() { # check "description" command...
  local what=$1
  shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}
finish() {
  echo "windows scenarios: $passed passed, $failed failed"
  [ $failed -eq 0 ]
}

REG='HKLM\SOFTWARE\Toktra\Agent'
INSTALL_DIR="$WINEPREFIX/drive_c/Program Files/Toktra"
AGENT_WIN='C:\Program Files\Toktra\ToktraAgent.exe'
PROGRAMDATA="$WINEPREFIX/drive_c/ProgramData/Toktra/Agent"
agent() { wine_run "$INSTALL_DIR/ToktraAgent.exe" "$@"; }
regadd() { wine_run reg add "$REG" /f "$@" >/dev/null 2>&1; }
svc_state() { agent status --json 2>/dev/null | jq -r '.service // "none"'; }
wait_state() { # wait_state STATE SECONDS
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    [ "$(svc_state)" = "$1" ] && return 0
    sleep 0.2
  done
  return 1
}
log_text() { cat "$PROGRAMDATA"/logs/agent.log* 2>/dev/null; }
has_log() { log_text | grep -q -- "$1"; }
reg_has() { wine_run reg query "$1" "${@:3}" 2>/dev/null | tr -d '\r' | grep -q -- "$2"; }
equals() { [ "$1" = "$2" ] || { echo "  expected [$2], got [$1]"; return 1; }; }

# --- 1. the Windows crates' own tests, under Wine ---------------------------------
for t in "$TESTS"/*.exe; do
  name=$(basename "$t" .exe)
  if wine_run "$t" >"$WORK/$name.log" 2>&1; then
    ok "cargo tests $name ($(grep -o '[0-9]* passed' "$WORK/$name.log" | awk '{s+=$1} END {print s+0}') passed)"
  else
    not_ok "cargo tests $name"
    tail -30 "$WORK/$name.log"
  fi
done

# --- 2. install, registry defaults, missing OrgId ----------------------------------
mkdir -p "$INSTALL_DIR"
cp "$OUT/ToktraAgent.exe" "$OUT/ToktraTray.exe" "$OUT/toktra-native-host.exe" "$INSTALL_DIR/"
check "--version prints the version" equals "$(agent --version | tr -d '\r')" "ToktraAgent 0.1.0"
EXT_ID=abcdefghijklmnopabcdefghijklmnop
agent install --extension-id "$EXT_ID" >"$WORK/install.log" 2>&1
check "install succeeds" [ $? -eq 0 ]
for call in DELAYED_AUTO_START_INFO FAILURE_ACTIONS SERVICE_SID_INFO; do
  check "install attempts ChangeServiceConfig2($call)" grep -q "ChangeServiceConfig2(SERVICE_CONFIG_$call)" "$WORK/install.log"
done
# Wine 8's services.exe keeps its database lock after refusing a ChangeServiceConfig2
# level (error 124), so every later start says "Service database locked". A new Wine
# session (as after a reboot) clears it; the auto-start service then starts by itself.
wine_session_restart() { "$WINESERVER" -k; "$WINESERVER" -w; "$WINESERVER" -p; wine_run cmd /c exit >/dev/null 2>&1; }
wine_run reg delete "$REG" /f >/dev/null 2>&1
wine_session_restart
check "tray registered in the HKLM Run key" reg_has 'HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run' ToktraTray.exe /v ToktraTray
for browser in 'Microsoft\Edge' 'Google\Chrome'; do
  check "native host registered for $browser" reg_has "HKLM\SOFTWARE\\$browser\NativeMessagingHosts\io.toktra.agent" io.toktra.agent.json /ve
done
check "native host manifest names the host and the extension" bash -c \
  "jq -e '.name == \"io.toktra.agent\" and .type == \"stdio\" and (.allowed_origins == [\"chrome-extension://$EXT_ID/\"]) and (.path | endswith(\"toktra-native-host.exe\"))' $(printf %q "$INSTALL_DIR/io.toktra.agent.json") >/dev/null"

# No OrgId (the automatic start above): one clear error, the service stops, and stays
# stopped.
for _ in $(seq 1 100); do has_log 'cannot start' && break; sleep 0.2; done
wait_state Stopped 20
sleep 3
check "without OrgId the service stops" [ "$(svc_state)" = Stopped ]
check "without OrgId the log names the fix" has_log 'OrgId is not set.*reg add'
check "without OrgId exactly one error, no restart loop" [ "$(log_text | grep -c 'cannot start')" -eq 1 ]
check "the error went to the Event Log" has_log 'reported to the Event Log (event 100)'

# --- 3. a real `toktra server` on Linux: enrollment, mTLS upload, usage API --------
TOKTRA=$ROOT/target/debug/toktra
SRV=$WORK/server
AGENT_PORT=$((20000 + RANDOM % 20000))
ADMIN_PORT=$((AGENT_PORT + 1))
# Device certificates of 60 s (the server's minimum): the agent renews about 40 s after
# enrolling, which section 3b watches, without faking any clock.
CERT_LIFETIME=60
"$TOKTRA" server --data "$SRV" --agent-listen "127.0.0.1:$AGENT_PORT" \
  --admin-listen "127.0.0.1:$ADMIN_PORT" --agent-hostname 127.0.0.1 --agent-hostname localhost \
  --device-cert-lifetime "${CERT_LIFETIME}s" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null' EXIT
for _ in $(seq 1 100); do [ -f "$SRV/ca/root.pem" ] && curl -s "http://127.0.0.1:$ADMIN_PORT/v1/openapi.json" >/dev/null && break; sleep 0.2; done
ORG=$("$TOKTRA" admin --data "$SRV" org create "Wine Test Org" | tr -d '\r')
TOKEN=$("$TOKTRA" admin --data "$SRV" token create --org "$ORG" | tr -d '\r')
API_KEY=$("$TOKTRA" admin --data "$SRV" api-key create | tr -d '\r')
# A tiny hard-capped budget, so one upload crosses it and the tray must say so.
"$TOKTRA" admin --data "$SRV" budget set --org "$ORG" --monthly-tokens 10 --hard-cap >/dev/null
all_set() { local v; for v in "$@"; do [ -n "$v" ] || return 1; done; }
check "server started, org, token and API key created" all_set "$ORG" "$TOKEN" "$API_KEY"

regadd /v OrgId /t REG_SZ /d "$ORG"
regadd /v IngestUrl /t REG_SZ /d "https://127.0.0.1:$AGENT_PORT"
regadd /v EnrollToken /t REG_SZ /d "$TOKEN"
regadd /v ServerCaFile /t REG_SZ /d "$(wine_path "$SRV/ca/root.pem")"
regadd /v LogLevel /t REG_DWORD /d 3
wine_run net start ToktraAgent >"$WORK/start.log" 2>&1
check "the service starts" wait_state Running 30
status_json() { agent status --json 2>/dev/null | tr -d '\r'; }
enrolled=no
for _ in $(seq 1 150); do
  [ "$(status_json | jq -r '.status.enrolled')" = true ] && { enrolled=yes; break; }
  sleep 0.2
done
check "the service enrolls against the server (EST simpleenroll)" equals "$enrolled" yes
DEVICE=$(wine_run reg query "$REG" /v DeviceId 2>/dev/null | tr -d '\r' | awk '/DeviceId/ {print $3}')
check "DeviceId was generated and written back to the registry" [ -n "$DEVICE" ]
check "defaults: CertSubject and LogLevel as configured/defaulted" equals "$(status_json | jq -r '.status.cert_subject')" "Toktra Device"
check "status reports the driver as not present" equals "$(status_json | jq -r '.status.driver')" not_present
check "driver absence logged once, no error loop" equals "$(log_text | grep -c 'capture driver: driver not present')" 1
# What renewal must replace, taken at once (the renewal comes about 40 s later).
devices() { curl -s -H "Authorization: Bearer $API_KEY" "http://127.0.0.1:$ADMIN_PORT/v1/orgs/$ORG/devices"; }
device_field() { devices | jq -r --arg d "$DEVICE" ".[] | select(.id == \$d) | .$1"; }
epoch() { { [ -n "$1" ] && [ "$1" != null ] && date -d "$1" +%s 2>/dev/null; } || echo "?"; }
differs() { [ -n "$1" ] && [ "$1" != null ] && [ "$1" != "$2" ] || { echo "  expected other than [$2], got [$1]"; return 1; }; }
KEY_FILE="$PROGRAMDATA/identity/device-key.dpapi"
key_sum() { sha256sum "$KEY_FILE" 2>/dev/null | cut -c1-64; }
SERIAL0=$(device_field cert_serial)
NOT_AFTER0=$(status_json | jq -r '.status.cert_not_after')
KEY0=$(key_sum)
identity_check() { # identity_check LOG [NOT_AFTER_EPOCH]
  TOKTRA_EXPECT_SUBJECT="Toktra Device" TOKTRA_EXPECT_ORG="$ORG" TOKTRA_EXPECT_DEVICE="$DEVICE" \
    TOKTRA_EXPECT_LIFETIME_SECS=$CERT_LIFETIME TOKTRA_EXPECT_NOT_AFTER=${2:-} \
    wine_run "$(ls "$TESTS"/service_checks-*.exe)" --ignored --exact enrolled_identity_is_in_the_store_and_key_file \
    >"$WORK/$1" 2>&1
  grep -q "test result: ok. 1 passed" "$WORK/$1" || { grep -A8 panicked "$WORK/$1"; return 1; }
}
[ -n "$KEY0" ] && [ -n "$SERIAL0" ] && [ "$SERIAL0" != null ] || echo "  key file or device serial missing"
check "certificate in LocalMachine\\My found by subject; DPAPI key file round trip" identity_check service_checks.log

# The native messaging host: a framed extension event in, an ack out.
frame() { python3 -c 'import sys,struct; b=sys.argv[1].encode(); sys.stdout.buffer.write(struct.pack("=I",len(b))+b)' "$1"; }
unframe() { python3 -c 'import sys,struct,json
d=sys.stdin.buffer.read()
while len(d)>=4:
    n=struct.unpack("=I",d[:4])[0]; print(d[4:4+n].decode()); d=d[4+n:]'; }
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EVENT="{\"type\":\"event\",\"event\":{\"host\":\"api.openai.com\",\"path\":\"/v1/chat/completions\",\"source_domain\":\"chat.example.com\",\"started_at\":\"$NOW\",\"duration_ms\":1500,\"request_bytes\":4000,\"response_bytes\":48000,\"streaming\":true}}"
{ frame '{"type":"ping"}'; frame "$EVENT"; frame '{"type":"event","event":{"host":"api.openai.com","path":"/v1/x?key=1"}}'; } |
  wine_run "$INSTALL_DIR/toktra-native-host.exe" 2>/dev/null | unframe >"$WORK/native.out"
check "native host answers ping" grep -q '"type":"pong"' "$WORK/native.out"
check "native host forwards a valid event to the service" jq -se 'any(.[]; .type == "ack" and .accepted == 1)' "$WORK/native.out"
check "native host refuses a malformed event, naming the field" grep -q '"type":"error"' "$WORK/native.out"
python3 -c 'import sys,struct; sys.stdout.buffer.write(struct.pack("=I",1024*1024+1))' |
  wine_run "$INSTALL_DIR/toktra-native-host.exe" 2>/dev/null | unframe >"$WORK/native-big.out"
check "native host refuses a frame over 1 MiB" grep -q 'exceeds the 1048576-byte limit' "$WORK/native-big.out"

uploaded=no
for _ in $(seq 1 150); do
  [ "$(status_json | jq -r '.status.uploaded_events')" -ge 1 ] 2>/dev/null && { uploaded=yes; break; }
  sleep 0.2
done
check "the batch is uploaded over mTLS" equals "$uploaded" yes
curl -s -H "Authorization: Bearer $API_KEY" "http://127.0.0.1:$ADMIN_PORT/v1/usage?org_id=$ORG" >"$WORK/usage.json"
check "the event is visible through the usage API" grep -qi 'openai' "$WORK/usage.json"

# The tray's view over the pipe: budget in tooltip and menu, the hard-cap notification.
tray_ok=no
for _ in $(seq 1 50); do
  wine_run "$INSTALL_DIR/ToktraTray.exe" --print 2>/dev/null | tr -d '\r' >"$WORK/tray.out"
  grep -q 'notification' "$WORK/tray.out" && { tray_ok=yes; break; }
  sleep 0.5
done
check "tray: tooltip shows the budget" grep -q '^tooltip: Toktra: .*% of 10 tokens' "$WORK/tray.out"
check "tray: hard-cap notification delivered over the pipe" equals "$tray_ok" yes
check "tray: menu offers the dashboard" grep -q 'Open dashboard -> https://' "$WORK/tray.out"
cat "$WORK/tray.out"
# The screenshot's tools come from scripts/setup.d/60-windows.sh; missing ones are a
# failed check, never a silent skip.
check "Xvfb, xwd and netpbm are installed for the tray screenshot" \
  bash -c 'command -v Xvfb && command -v xwd && command -v xwdtopnm && command -v pnmtopng >/dev/null'
if command -v Xvfb >/dev/null && command -v xwd >/dev/null; then
  Xvfb :77 -screen 0 800x600x24 >/dev/null 2>&1 &
  XVFB=$!
  sleep 1
  DISPLAY=:77 wine_run explorer "/desktop=Toktra,800x600" "$INSTALL_DIR/ToktraTray.exe" --status-window >/dev/null 2>&1 &
  sleep 6
  DISPLAY=:77 xwd -root -silent | xwdtopnm 2>/dev/null | pnmtopng >"$ROOT/artifacts/windows/tray.png" 2>/dev/null
  kill $XVFB 2>/dev/null
  check "tray window screenshot saved (artifacts/windows/tray.png)" test -s "$ROOT/artifacts/windows/tray.png"
fi

# --- 3b. renewal, then expiry while offline ---------------------------------------------
usage_requests() {
  curl -s -H "Authorization: Bearer $API_KEY" "http://127.0.0.1:$ADMIN_PORT/v1/usage?org_id=$ORG" |
    jq '[.items[] | .total_requests] | add // 0'
}
# One extension event through the native host, then wait until the server counts it:
# proof that uploads go through with the identity the agent holds now.
upload_goes_through() {
  local before now ev i
  before=$(usage_requests)
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  ev="{\"type\":\"event\",\"event\":{\"host\":\"api.openai.com\",\"path\":\"/v1/chat/completions\",\"started_at\":\"$now\",\"duration_ms\":900,\"request_bytes\":2000,\"response_bytes\":9000,\"streaming\":false}}"
  frame "$ev" | wine_run "$INSTALL_DIR/toktra-native-host.exe" 2>/dev/null | unframe >"$WORK/native-$1.out"
  jq -se 'any(.[]; .type == "ack" and .accepted == 1)' "$WORK/native-$1.out" >/dev/null ||
    { echo "  native host did not accept: $(cat "$WORK/native-$1.out")"; return 1; }
  for ((i = 0; i < 150; i++)); do
    [ "$(usage_requests)" -gt "$before" ] && return 0
    sleep 0.2
  done
  echo "  the server's request count stayed at $before"
  return 1
}
renewed=no
for _ in $(seq 1 600); do
  na=$(status_json | jq -r '.status.cert_not_after // empty')
  [ -n "$na" ] && [ "$na" != "$NOT_AFTER0" ] && { renewed=yes; break; }
  sleep 0.2
done
check "the service renews its certificate at two thirds of its lifetime (EST simplereenroll)" equals "$renewed" yes
check "renewal logged by the service" has_log 'certificate renewed'
SERIAL1=$(device_field cert_serial)
NOT_AFTER1=$(epoch "$(device_field cert_expires_at)")
check "the server issued a new serial" differs "$SERIAL1" "$SERIAL0"
# The renewal seen here is normally the first; on a machine slow enough for a second
# one before this point, the previous serial is that of the one in between.
if [ "$(log_text | grep -c 'certificate renewed')" -eq 1 ]; then PREV_WANT=$SERIAL0; else PREV_WANT=; fi
prev_serial_kept() {
  local prev
  prev=$(device_field prev_cert_serial)
  if [ -n "$PREV_WANT" ]; then equals "$prev" "$PREV_WANT"; else differs "$prev" "$SERIAL1"; fi
}
check "the server keeps the replaced serial as the previous one" prev_serial_kept
check "the agent uses the certificate the server issued last" \
  equals "$(epoch "$(status_json | jq -r '.status.cert_not_after')")" "$NOT_AFTER1"
check "the key file was replaced" differs "$(key_sum)" "$KEY0"
check "after renewal: one certificate for the subject, the new one; the new key file DPAPI-sealed, SYSTEM/Administrators only" \
  identity_check service_checks-renewed.log "$NOT_AFTER1"
check "uploads after the renewal are accepted by the server" upload_goes_through renewed

# Offline past expiry: the service is stopped until its certificate has expired, then
# must enroll again with its token, under the same device id.
wine_run net stop ToktraAgent >"$WORK/stop-offline.log" 2>&1
wait_state Stopped 30
SERIAL2=$(device_field cert_serial)
EXPIRES2=$(epoch "$(device_field cert_expires_at)")
KEY2=$(key_sum)
# Waiting for a real expiry (never more than the lifetime): no clock is faked.
if [[ $EXPIRES2 =~ ^[0-9]+$ ]] && [ $((EXPIRES2 - $(date +%s))) -le $((CERT_LIFETIME + 5)) ]; then
  while [ "$(date +%s)" -le "$EXPIRES2" ]; do sleep 1; done
else
  echo "  unexpected certificate expiry [$EXPIRES2]; not waiting"
fi
enrollments_before=$(log_text | grep -c 'enrolled with the server')
wine_run net start ToktraAgent >"$WORK/start-offline.log" 2>&1
check "the service starts again with an expired certificate" wait_state Running 30
reenrolled=no
for _ in $(seq 1 300); do
  [ "$(log_text | grep -c 'enrolled with the server')" -gt "$enrollments_before" ] &&
    [ "$(status_json | jq -r '.status.enrolled')" = true ] && { reenrolled=yes; break; }
  sleep 0.2
done
check "an expired certificate: the service enrolls again with its token" equals "$reenrolled" yes
check "the server still lists one device with this id" \
  equals "$(devices | jq --arg d "$DEVICE" '[.[] | select(.id == $d)] | length')" 1
check "re-enrolled: the server issued a new serial" differs "$(device_field cert_serial)" "$SERIAL2"
check "re-enrolled: the key file was replaced" differs "$(key_sum)" "$KEY2"
check "re-enrolled: one certificate for the subject, the new one, key DPAPI-sealed and restricted" \
  identity_check service_checks-reenrolled.log "$(epoch "$(device_field cert_expires_at)")"
check "uploads after re-enrollment are accepted by the server" upload_goes_through reenrolled

# --- 4. stop and uninstall ------------------------------------------------------------
wine_run net stop ToktraAgent >"$WORK/stop.log" 2>&1
check "the service stops" wait_state Stopped 30
check "stop reached the service (logged)" has_log 'Toktra Agent stopped'
agent uninstall >"$WORK/uninstall.log" 2>&1
check "uninstall removes the service" equals "$(svc_state)" none
check "uninstall removes the Run key" bash -c "! $(printf %q "$WINE64") reg query 'HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run' /v ToktraTray >/dev/null 2>&1"
cp "$WORK"/*.log "$WORK"/*.out "$ROOT/artifacts/windows/" 2>/dev/null
cp "$PROGRAMDATA"/logs/agent.log* "$ROOT/artifacts/windows/" 2>/dev/null

finish
