# Sourced by the agent suites (40-agent.sh, 41-agent-e2e.sh): their check helpers, the
# two test hosts and the provider's throw-away certificate they share.

# check WHAT CMD...: prints ok/FAIL for WHAT; a failure sets the suite's `fail`.
check() {
  local what=$1
  shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

# wait_for WHAT SECONDS CMD...: waits (bounded) until CMD succeeds; a correctness
# wait, not a timing check.
wait_for() {
  local what=$1 limit=$2
  shift 2
  local i
  for ((i = 0; i < limit * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "gave up waiting ($limit s) for: $what" >&2
  return 1
}

# test_users NAME...: local accounts (no home, no shell) the clients run as.
test_users() {
  local u
  for u in "$@"; do
    id "$u" >/dev/null 2>&1 || useradd --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
  done
}

# netns_pair CLI PROV VA VB NET: namespaces CLI and PROV joined by a veth pair, VA in
# CLI as NET.1/24 and VB in PROV as NET.2/24, loopback up in both.
netns_pair() {
  local cli=$1 prov=$2 va=$3 vb=$4 net=$5 ns
  ip netns add "$cli"
  ip netns add "$prov"
  ip link add "$va" type veth peer name "$vb"
  ip link set "$va" netns "$cli"
  ip link set "$vb" netns "$prov"
  ip -n "$cli" addr add "$net.1/24" dev "$va"
  ip -n "$prov" addr add "$net.2/24" dev "$vb"
  for ns in "$cli" "$prov"; do ip -n "$ns" link set lo up; done
  ip -n "$cli" link set "$va" up
  ip -n "$prov" link set "$vb" up
}

# provider_hosts CLI ADDR HOST...: inside CLI, every HOST resolves to ADDR.
provider_hosts() {
  local cli=$1 addr=$2
  shift 2
  mkdir -p "/etc/netns/$cli"
  {
    echo "127.0.0.1 localhost"
    echo "$addr $*"
  } >"/etc/netns/$cli/hosts"
}

# provider_cert DIR CA_NAME HOST...: DIR/ca.pem (+ ca.key) and DIR/prov.pem +
# DIR/prov.key, a P-256 certificate for every HOST, readable by the test users.
provider_cert() {
  local dir=$1 ca_name=$2 san
  shift 2
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=$ca_name" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  san=$(printf 'DNS:%s,' "$@")
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=provider" \
    -keyout "$dir/prov.key" -out "$dir/prov.csr" 2>/dev/null
  openssl x509 -req -in "$dir/prov.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile <(echo "subjectAltName=${san%,}") -out "$dir/prov.pem" 2>/dev/null
  chmod 644 "$dir"/*.pem "$dir/prov.key"
}
