# Throw-away PostgreSQL cluster for the server's suite and benchmark. Source it, then:
#   pg_start   initdb in a temp dir, start on a free loopback port, export
#              TOKTRA_TEST_DATABASE_URL (fails with a message if PostgreSQL is missing)
#   pg_stop    stop the cluster and delete its directory
# As root (CI) the cluster runs as the `postgres` user Debian's package creates.

pg_start() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "pg-cluster: PostgreSQL server binaries not found under /usr/lib/postgresql; run scripts/setup (installs Debian's postgresql)" >&2
    return 1
  fi
  PG_BIN=$bin
  PG_DIR=$(mktemp -d /tmp/toktra-pg.XXXXXX)
  PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  PG_AS=()
  if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      echo "pg-cluster: running as root but there is no postgres user (Debian's postgresql package creates it)" >&2
      return 1
    fi
    chown postgres: "$PG_DIR"
    PG_AS=(runuser -u postgres --)
  fi
  if ! "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U toktra --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1; then
    cat "$PG_DIR/initdb.log" >&2
    return 1
  fi
  if ! "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null; then
    cat "$PG_DIR/server.log" >&2
    return 1
  fi
  export TOKTRA_TEST_DATABASE_URL="postgres://toktra@127.0.0.1:$PG_PORT/postgres"
  echo "pg-cluster: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT ($PG_DIR)"
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] || return 0
  "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
  PG_DIR=
}

# A fresh, empty database on the running cluster; prints its URL.
pg_new_db() {
  local name=$1
  PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U toktra -d postgres -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
  echo "postgres://toktra@127.0.0.1:$PG_PORT/$name"
}
