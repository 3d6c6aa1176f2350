#!/usr/bin/env bash
# The Linux agent end to end, with real parts only:
#   - two network namespaces joined by a veth pair: "cli" holds the clients, the agent
#     and the server (`toktra up`, SQLite); "prov" holds a stand-in LLM provider
#     (Node.js, real TLS from a throw-away CA, HTTP/2 + HTTP/1.1, SSE and JSON);
#   - clients from several stacks (curl h2 and http/1.1, Python urllib, Node.js http2,
#     headless Chromium), each run as its own local user;
#   - the agent capturing with its AF_PACKET tap, the server receiving over mTLS;
#     assertions through the usage API (provider, user, requests) and the server's
#     stored events (bytes, process, user).
# Reliability, against the same server with steady traffic: kill -9 of an agent at
# random points 100 times (every captured event delivered exactly once), the server
# down for a while (everything delivered after), a full spool (oldest dropped, the gap
# reported and counted by the server), a corrupt spool (set aside, agent starts, says
# so). Then: no CAP_NET_RAW → clear error; bad config → one line naming the key; the
# .deb is built and inspected.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
HERE=$ROOT/scripts/test.d/agent
for tool in ip node curl python3 jq sqlite3 openssl chromium runuser cargo-deb dpkg-deb nm; do
  command -v "$tool" >/dev/null || { echo "40-agent: $tool missing; run scripts/setup" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "40-agent: needs root (network namespaces, packet capture)" >&2; exit 1; }

OUT=$ROOT/artifacts/agent
rm -rf "$OUT"
mkdir -p "$OUT"
T=$(mktemp -d /tmp/toktra-agent-test.XXXXXX)
chmod 755 "$T"
CLI=tka-cli-$$
PROV=tka-prov-$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  # Anything still running inside our own namespaces.
  for ns in "$CLI" "$PROV"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  done
  ip netns del "$CLI" 2>/dev/null || true
  ip netns del "$PROV" 2>/dev/null || true
  rm -rf "/etc/netns/$CLI"
  cp -r "$T"/*.log "$OUT"/ 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

fail=0
# check and wait_for, the hosts and the provider certificate.
# shellcheck source=agent/lib.sh
. "$HERE/lib.sh"

echo "building toktra"
cargo build -p toktra --locked --quiet
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/toktra
cp "$BIN" "$T/toktra"
BIN=$T/toktra
chmod 755 "$BIN"
# The agent-only binary the package installs and the unit runs: the capturing agents
# below are this one; `toktra agent` (same code) serves the configuration checks.
cp "${CARGO_TARGET_DIR:-$ROOT/target}/debug/toktra-agent" "$T/toktra-agent"
AGENT_BIN=$T/toktra-agent
chmod 755 "$AGENT_BIN"

test_users tkalice tkbob tkcarol

# ---------------------------------------------------------------- network
netns_pair "$CLI" "$PROV" "tka0-$$" "tka1-$$" 198.18.90
HOSTS="api.openai.com api.anthropic.com generativelanguage.googleapis.com claude.ai"
# shellcheck disable=SC2086 # HOSTS is a list
provider_hosts "$CLI" 198.18.90.2 $HOSTS
in_cli() { ip netns exec "$CLI" "$@"; }

# ---------------------------------------------------------------- provider
# shellcheck disable=SC2086
provider_cert "$T" "Toktra test provider CA" $HOSTS
ip netns exec "$PROV" node "$HERE/provider.mjs" 198.18.90.2 443 "$T/prov.key" "$T/prov.pem" >"$T/provider.log" 2>&1 &
PIDS+=($!)

# ---------------------------------------------------------------- server
UP_DATA=$T/up
start_server() {
  # Its own agent watches port 9 only, so it never sees the test traffic.
  ip netns exec "$CLI" "$BIN" up --data "$UP_DATA" --agent-port 18443 --admin-port 18080 --capture-ports 9 >>"$T/server.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=($SERVER_PID)
  wait_for "server admin API" 60 in_cli curl -sf http://127.0.0.1:18080/healthz
  # up.json is written once the organization, token and key exist.
  wait_for "up.json" 30 grep -q org_id "$UP_DATA/up.json"
}
start_server
KEY=$(jq -r .api_key "$UP_DATA/up.json")
ORG=$(jq -r .org_id "$UP_DATA/up.json")
api() { in_cli curl -sf -H "Authorization: Bearer $KEY" "$@"; }
new_token() {
  api -X POST -H 'content-type: application/json' -d '{}' \
    "http://127.0.0.1:18080/v1/orgs/$ORG/enrollment-tokens" | jq -r .token
}
db() { sqlite3 -cmd '.timeout 5000' "$UP_DATA/server/toktra.db" "$@"; }
: >"$T/empty.toml"

# Starts an agent NAME [extra flags...] in the client namespace; its pid goes to
# AGENT_PID (`ip netns exec` execs, so it is the agent's own pid), its log to
# $T/NAME.log.
start_agent() {
  local name=$1
  shift
  ip netns exec "$CLI" "$AGENT_BIN" run --config "$T/empty.toml" --org-id "$ORG" \
    --ingest-url https://localhost:18443 --server-ca "$UP_DATA/server-ca.pem" \
    --state-dir "$T/$name" --enroll-token "$TOKEN" --log-level 3 "$@" >>"$T/$name.log" 2>&1 &
  AGENT_PID=$!
}
status_of() { jq -r "$2" "$T/$1/status.json"; }
enrolled() { [ "$(status_of "$1" .enrolled)" = true ]; }
drained() { # NAME: nothing waiting, and the status was written after the last event
  [ "$(status_of "$1" .spool.depth)" = 0 ] && [ "$(status_of "$1" .spool.captured_total)" -gt 0 ]
}
device_of() { status_of "$1" .device_id; }
TOKEN=$(new_token)

# ---------------------------------------------------------------- 1. end to end
start_agent main
MAIN_PID=$AGENT_PID
PIDS+=($MAIN_PID)
wait_for "main agent enrolled" 60 enrolled main
sleep 0.5 # the tap opens before enrollment; this is only for a calm start of the log

export SSL_CERT_FILE=$T/ca.pem NODE_EXTRA_CA_CERTS=$T/ca.pem
BODY='{"model":"m","stream":true,"messages":[{"role":"user","content":"Summarise the plot of Hamlet in three sentences, please."}]}'
PLAIN='{"model":"m","stream":false,"messages":[{"role":"user","content":"Say hello."}]}'
as_user() { local u=$1; shift; in_cli runuser -u "$u" -- env SSL_CERT_FILE="$T/ca.pem" NODE_EXTRA_CA_CERTS="$T/ca.pem" HOME="$T/home-$u" "$@"; }
for u in tkalice tkbob tkcarol; do mkdir -p "$T/home-$u" && chown "$u" "$T/home-$u"; done
check "curl (HTTP/2, SSE) to api.openai.com as tkalice" \
  as_user tkalice curl -sS --http2 --cacert "$T/ca.pem" -o /dev/null -d "$BODY" \
  "https://api.openai.com/v1/chat/completions?chunks=60&delay=10"
check "curl (HTTP/1.1, JSON) to api.anthropic.com as tkalice" \
  as_user tkalice curl -sS --http1.1 --cacert "$T/ca.pem" -o /dev/null -d "$PLAIN" \
  "https://api.anthropic.com/v1/messages?chunks=40&delay=10"
check "python urllib (HTTP/1.1, SSE) to generativelanguage.googleapis.com as tkbob" \
  as_user tkbob python3 "$HERE/py-client.py" \
  "https://generativelanguage.googleapis.com/v1beta/models/gemini:streamGenerateContent?chunks=50&delay=10" "$BODY"
check "node http2 (JSON) to api.openai.com as tkbob" \
  as_user tkbob node "$HERE/node-client.mjs" api.openai.com "/v1/chat/completions?chunks=40&delay=10" "$PLAIN"
chromium_fetch() {
  as_user tkcarol timeout 60 chromium --headless=new --no-sandbox --disable-gpu --ignore-certificate-errors \
    --user-data-dir="$T/home-tkcarol/chromium" --dump-dom "https://claude.ai/api/chat?stream=1&chunks=40&delay=10" \
    >"$T/chromium.out" 2>"$T/chromium.log" && grep -q content_block_delta "$T/chromium.out"
}
check "headless chromium to claude.ai as tkcarol" chromium_fetch

wait_for "5 events uploaded by the main agent" 90 \
  bash -c "[ \$(jq .spool.uploaded_total '$T/main/status.json') -ge 5 ] && [ \$(jq .spool.depth '$T/main/status.json') = 0 ]"
MAIN_DEV=$(device_of main)
api "http://127.0.0.1:18080/v1/usage?org_id=$ORG&period=daily&limit=100" >"$T/usage.json" || echo '{}' >"$T/usage.json"
cp "$T/usage.json" "$OUT/usage.json"
usage_has() { # provider user
  jq -e --arg p "$1" --arg u "$2" '[.items[] | select(.provider == $p and ((.user_id // .user // "") | contains($u)) and .total_requests >= 1)] | length >= 1' "$T/usage.json" >/dev/null
}
check "usage API: openai for tkalice" usage_has openai tkalice
check "usage API: anthropic for tkalice" usage_has anthropic tkalice
check "usage API: google for tkbob" usage_has google tkbob
check "usage API: openai for tkbob" usage_has openai tkbob
check "usage API: anthropic for tkcarol (Chromium)" usage_has anthropic tkcarol
db -separator ' | ' "SELECT provider, sni, user_name, process_name, process_path, bytes_out, bytes_in, records_in, est_input_tokens, est_output_tokens, alpn FROM events WHERE device_id = '$MAIN_DEV'" >"$OUT/main-events.txt"
cat "$OUT/main-events.txt"
event_has() { # SQL condition on the main device's events
  [ "$(db "SELECT COUNT(*) FROM events WHERE device_id = '$MAIN_DEV' AND $1")" -ge 1 ]
}
check "event: curl as tkalice, openai, bytes and records counted" \
  event_has "provider='openai' AND user_name='tkalice' AND process_name='curl' AND process_path LIKE '%/curl' AND bytes_in > 3000 AND bytes_out > 300 AND records_in > 5 AND est_output_tokens > 0"
check "event: curl over HTTP/1.1 to anthropic" \
  event_has "provider='anthropic' AND user_name='tkalice' AND process_name='curl' AND alpn LIKE '%http/1.1%'"
check "event: python3 as tkbob, google" \
  event_has "provider='google' AND user_name='tkbob' AND process_name LIKE 'python3%' AND bytes_in > 3000"
check "event: node as tkbob, openai, h2 offered" \
  event_has "provider='openai' AND user_name='tkbob' AND process_name LIKE 'node%' AND alpn LIKE '%h2%'"
check "event: chromium as tkcarol, anthropic" \
  event_has "provider='anthropic' AND user_name='tkcarol' AND (process_path LIKE '%chrom%' OR process_name LIKE '%chrom%')"
check "no event for a non-LLM host reached the server" \
  test "$(db "SELECT COUNT(*) FROM events WHERE device_id = '$MAIN_DEV' AND provider IS NULL")" = 0
check "agent status command prints the state" \
  bash -c "'$BIN' agent status --state-dir '$T/main' | tee '$T/status.txt' | grep -q 'enrolled as org' && grep -q 'events waiting' '$T/status.txt' && grep -q 'expires' '$T/status.txt'"

# How the agent shares the machine: the capture thread SCHED_BATCH at nice -10 (it
# must keep up with the ring), the attribution thread SCHED_BATCH at nice 0 (it must
# run while a connection is open), every other thread SCHED_IDLE (the user's programs
# take the core from it at once).
thread_classes() { # PID: one line per thread, "name policy nice"
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s %s %s\n' "$(cat "$t/comm")" "$(chrt -p "${t##*/}" | sed -n '1s/.*: //p')" \
      "$(sed 's/.*) //' "$t/stat" | cut -d' ' -f17)"
  done
}
thread_classes "$MAIN_PID" | tee "$T/threads.txt"
check "scheduling: the capture thread is SCHED_BATCH at nice -10" grep -qx 'toktra-tap SCHED_BATCH -10' "$T/threads.txt"
check "scheduling: the attribution thread is SCHED_BATCH at nice 0" grep -qx 'toktra-attr SCHED_BATCH 0' "$T/threads.txt"
check "scheduling: every other agent thread is SCHED_IDLE" \
  bash -c "[ \$(grep -Evc '^toktra-(tap|attr) ' '$T/threads.txt') -ge 2 ] && ! grep -Ev '^toktra-(tap|attr) ' '$T/threads.txt' | grep -qv ' SCHED_IDLE '"

# ---------------------------------------------------------------- 2. reliability
# Steady traffic from here on.
STOP=$T/stop-load
ip netns exec "$CLI" runuser -u tkalice -- env SSL_CERT_FILE="$T/ca.pem" \
  python3 "$HERE/load.py" "$STOP" 4 >"$T/load.out" 2>"$T/load.log" &
LOAD_PID=$!
PIDS+=($LOAD_PID)

# A: plain; B: a tiny spool (64 KiB); C: killed with SIGKILL 100 times.
start_agent a
PIDS+=($AGENT_PID)
A_PID=$AGENT_PID
start_agent b --spool-max-bytes 65536
PIDS+=($AGENT_PID)
B_PID=$AGENT_PID
wait_for "agents a and b enrolled" 60 bash -c "[ -f '$T/a/status.json' ] && [ -f '$T/b/status.json' ] && jq -e .enrolled '$T/a/status.json' && jq -e .enrolled '$T/b/status.json'"

echo "kill -9 of agent c at random points, 100 times"
for i in $(seq 1 100); do
  start_agent c
  # 50 ms to 1 s: before enrollment, mid-upload, between uploads.
  sleep "0.$(printf '%02d' $((RANDOM % 95 + 5)))"
  kill -9 "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
done
check "agent c was killed 100 times and still has its spool" test -f "$T/c/spool.db"
check "no agent c survived a kill" bash -c "! pgrep -f -- 'state-dir $T/[c] ' >/dev/null"

echo "server down for a while"
kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
start_agent c
C_PID=$AGENT_PID
PIDS+=($C_PID)
# Long enough for b's 64 KiB spool to overflow with the steady traffic.
wait_for "agent b dropping the oldest events while the server is down" 90 \
  bash -c "[ \$(jq .spool.dropped_total '$T/b/status.json') -gt 0 ]"
check "while the server is down, a's events wait in its spool" \
  test "$(status_of a .spool.depth)" -gt 0
start_server
touch "$STOP"
wait "$LOAD_PID" || true
echo "load: $(cat "$T/load.out") requests"
for n in a b c; do wait_for "agent $n drained" 120 drained "$n"; done
sleep 2.5 # one more status write after the last acknowledgement

server_events() { db "SELECT COUNT(*) FROM events WHERE device_id = '$(device_of "$1")'"; }
server_gap() { db "SELECT COALESCE(SUM(dropped), 0) FROM batches WHERE device_id = '$(device_of "$1")'"; }
for n in a c; do
  cap=$(status_of $n .spool.captured_total)
  got=$(server_events $n)
  echo "agent $n: captured $cap, server holds $got, dropped $(status_of $n .spool.dropped_total)"
  check "agent $n: every captured event on the server exactly once ($cap = $got)" test "$cap" = "$got"
  check "agent $n: nothing dropped" test "$(status_of $n .spool.dropped_total)" = 0
done
check "agent c captured events across its kill cycles" test "$(status_of c .spool.captured_total)" -gt 50
bcap=$(status_of b .spool.captured_total)
bdrop=$(status_of b .spool.dropped_total)
bgot=$(server_events b)
bgap=$(server_gap b)
echo "agent b: captured $bcap, dropped $bdrop, server holds $bgot events and a gap of $bgap"
check "agent b: the oldest were dropped" test "$bdrop" -gt 0
check "agent b: the server was told the gap ($bgap = $bdrop)" test "$bgap" = "$bdrop"
check "agent b: delivered + dropped = captured" test $((bgot + bdrop)) = "$bcap"

echo "corrupt spool"
kill "$C_PID"
wait "$C_PID" 2>/dev/null || true
head -c 65536 /dev/urandom >"$T/c/spool.db"
rm -f "$T/c/spool.db-wal" "$T/c/spool.db-shm"
: >"$T/c.log"
start_agent c
C_PID=$AGENT_PID
PIDS+=($C_PID)
wait_for "agent c running again" 30 bash -c "jq -e '.spool_set_aside != null and .updated_at != null' '$T/c/status.json'"
check "corrupt spool: the agent says so" grep -q "spool file was corrupt" "$T/c.log"
check "corrupt spool: set aside, not deleted" bash -c "ls '$T/c/' | grep -q 'corrupt-'"
check "corrupt spool: agent running with a fresh spool" kill -0 "$C_PID"
check "corrupt spool: status shows it" bash -c "'$BIN' agent status --state-dir '$T/c' | grep -q 'corrupt spool was set aside'"

# ---------------------------------------------------------------- 3. errors
mkdir -p "$T/nocap" && chown tkalice "$T/nocap"
set +e
in_cli runuser -u tkalice -- "$BIN" agent --config "$T/empty.toml" --org-id "$ORG" \
  --enroll-token x --ingest-url https://localhost:18443 --state-dir "$T/nocap" >"$T/nocap.log" 2>&1
rc=$?
"$BIN" agent --config "$T/empty.toml" --org-id acme --log-level 9 >"$T/badconf.log" 2>&1
rc2=$?
"$BIN" agent --config "$T/empty.toml" >"$T/noorg.log" 2>&1
rc3=$?
"$AGENT_BIN" run --config "$T/empty.toml" --org-id acme --log-level 9 >"$T/badconf-agent.log" 2>&1
rc4=$?
set -e
cat "$T/nocap.log" "$T/badconf.log" "$T/noorg.log"
check "without CAP_NET_RAW: non-zero exit" test "$rc" -ne 0
check "without CAP_NET_RAW: says which capability and how to fix" \
  bash -c "grep -q CAP_NET_RAW '$T/nocap.log' && grep -q setcap '$T/nocap.log'"
check "bad LogLevel: exit 2, one message naming the key and the fix" \
  bash -c "[ $rc2 = 2 ] && [ \$(wc -l <'$T/badconf.log') = 1 ] && grep -q 'LogLevel' '$T/badconf.log' && grep -q 'Fix:' '$T/badconf.log'"
check "missing OrgId: exit 2 naming OrgId and TOKTRA_ORG_ID" \
  bash -c "[ $rc3 = 2 ] && grep -q OrgId '$T/noorg.log' && grep -q TOKTRA_ORG_ID '$T/noorg.log'"
check "each binary names itself in its errors (toktra agent:, toktra-agent:)" \
  bash -c "[ $rc4 = 2 ] && grep -q '^toktra-agent: .*LogLevel' '$T/badconf-agent.log' && grep -q '^toktra agent: ' '$T/badconf.log'"
for sub in run status; do
  check "toktra-agent $sub takes the same flags as toktra agent $sub" bash -c \
    "diff <('$AGENT_BIN' $sub --help | sed -n '/^Options:/,\$p') <('$BIN' agent $sub --help | sed -n '/^Options:/,\$p')"
done
check "toktra-agent links none of the server (no sqlx, axum or toktra_server symbols)" bash -c \
  "! nm -C '$AGENT_BIN' | grep -qE 'sqlx|axum::|toktra_server::'"

# ---------------------------------------------------------------- 4. package
echo "building the .deb"
DEB_DIR=$T/deb
# From the debug binary built above (stripped, fast compression): the test checks the
# package's shape, not the optimised binary, and a release build would cost minutes.
if cargo deb -p toktra --no-build --profile dev --fast --output "$DEB_DIR" >"$T/deb.log" 2>&1; then
  DEB=$(ls "$DEB_DIR"/*.deb | head -1)
  dpkg-deb -c "$DEB" >"$OUT/deb-contents.txt"
  dpkg-deb -I "$DEB" >"$OUT/deb-info.txt"
  cat "$OUT/deb-info.txt"
  check ".deb holds /usr/bin/toktra-agent (the agent alone) and /usr/bin/toktra" \
    bash -c "grep -q ' ./usr/bin/toktra-agent$' '$OUT/deb-contents.txt' && grep -q ' ./usr/bin/toktra$' '$OUT/deb-contents.txt'"
  check ".deb holds /etc/toktra/agent.toml as a conffile" \
    bash -c "grep -q ' ./etc/toktra/agent.toml$' '$OUT/deb-contents.txt' && dpkg-deb -e '$DEB' '$T/debctl' && grep -qx /etc/toktra/agent.toml '$T/debctl/conffiles'"
  check ".deb holds the systemd unit" grep -q 'lib/systemd/system/toktra-agent.service$' "$OUT/deb-contents.txt"
  check ".deb enables the unit on install" bash -c "grep -q 'enable' '$T/debctl/postinst'"
  check ".deb unit is hardened and keeps only the capture capabilities" bash -c \
    "dpkg-deb --fsys-tarfile '$DEB' | tar -xO \$(grep -o '\\./[a-z/]*lib/systemd/system/toktra-agent.service' '$OUT/deb-contents.txt') | cat >'$OUT/unit.txt' && grep -q '^CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN' '$OUT/unit.txt' && grep -q '^ProtectSystem=strict' '$OUT/unit.txt'"
  check ".deb unit runs the agent-only binary, may raise the capture thread's priority" bash -c \
    "grep -qx 'ExecStart=/usr/bin/toktra-agent run --config /etc/toktra/agent.toml' '$OUT/unit.txt' && grep -q '^AmbientCapabilities=.*CAP_SYS_NICE' '$OUT/unit.txt'"
else
  cat "$T/deb.log"
  check "cargo deb builds the package" false
fi

echo
if [ $fail -ne 0 ]; then echo "40-agent: FAILED (logs in $OUT)"; exit 1; fi
echo "40-agent: all checks passed"
