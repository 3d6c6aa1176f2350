#!/usr/bin/env bash
# The admin dashboard in a real browser: node --test drives Debian's Chromium through
# playwright-core against a real `toktra server` (fresh data directory, SQLite) that
# tests/dashboard/harness.mjs seeds through EST enrollment (openssl CSRs) and mTLS ingest:
# 10 devices, 12 users in 4 departments, 8 products of 7 providers over 90 days.
# Checks: sign-in (argon2, cookie flags, CSRF), every number on Overview and Usage
# against GET /v1/usage, CSV export, lock/unlock and budget edits through the API,
# enrollment tokens used over EST, phone layout, no-JS tables, no console errors.
# Screenshots (laptop and phone) go to artifacts/dashboard/. About 40 s after the build.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
for tool in node openssl /usr/bin/chromium; do
  command -v "$tool" >/dev/null || { echo "50-dashboard: $tool missing; run scripts/setup" >&2; exit 1; }
done
[ -d tests/dashboard/node_modules/playwright-core ] \
  || { echo "50-dashboard: playwright-core missing; run scripts/setup (npm ci in tests/dashboard)" >&2; exit 1; }
cargo build -p toktra --locked --quiet
export TOKTRA_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/toktra
rm -rf "$ROOT/artifacts/dashboard"
cd tests/dashboard
node --test --test-concurrency=1 dashboard.test.mjs
