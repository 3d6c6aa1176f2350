#!/usr/bin/env bash
# The admin dashboard in a real browser, on both stores.
#
# 1. tests/dashboard_data.rs: the dashboard's data source (admin accounts, usage rows
#    equal to the usage API's, locks, budgets, user mapping, tokens) on SQLite and on
#    a throw-away PostgreSQL cluster.
# 2. tests/dashboard: node --test drives Debian's Chromium through playwright-core
#    against a real `toktra server` that harness.mjs seeds through EST enrollment
#    (openssl CSRs) and mTLS ingest: 10 devices, 12 users in 4 departments, 8 products
#    of 7 providers over 90 days. Checks sign-in (argon2, cookie flags, CSRF), every
#    number on Overview and Usage against GET /v1/usage, CSV export, lock/unlock and
#    budget edits through the API, enrollment tokens used over EST, phone layout,
#    no-JS tables, no console errors. All on SQLite; the store-dependent ones again
#    on PostgreSQL.
# Screenshots (laptop and phone): artifacts/dashboard/ (SQLite run) and
# artifacts/dashboard/postgres/. About 2 minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
for tool in node openssl /usr/bin/chromium; do
  command -v "$tool" >/dev/null || { echo "50-dashboard: $tool missing; run scripts/setup" >&2; exit 1; }
done
[ -d tests/dashboard/node_modules/playwright-core ] \
  || { echo "50-dashboard: playwright-core missing; run scripts/setup (npm ci in tests/dashboard)" >&2; exit 1; }
# shellcheck source=../../crates/toktra-server/tests/pg-cluster.sh
source crates/toktra-server/tests/pg-cluster.sh
trap pg_stop EXIT

cargo build -p toktra --locked --quiet
export TOKTRA_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/toktra
pg_start

echo "== dashboard data source on SQLite and PostgreSQL"
cargo test -q -p toktra-server --locked --test dashboard_data -- --include-ignored

rm -rf "$ROOT/artifacts/dashboard"
cd tests/dashboard
echo "== dashboard in Chromium, SQLite store"
node --test --test-concurrency=1 dashboard.test.mjs
echo "== dashboard in Chromium, PostgreSQL store"
# The store-dependent tests (numbers, edits, pages); sign-in, phone layout and TLS
# cookies do not depend on the store and ran above.
DASHBOARD_DATABASE_URL=$(pg_new_db toktra_dashboard) node --test --test-concurrency=1 \
  --test-name-pattern='^(overview|usage|devices|budgets|enrollment|every page)' dashboard.test.mjs
