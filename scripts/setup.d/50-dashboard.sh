#!/usr/bin/env bash
# The dashboard's suite (scripts/test.d/50-dashboard.sh): Debian's Chromium, Node.js,
# openssl (device CSRs for EST enrollment), PostgreSQL (the suite starts a throw-away
# cluster) and playwright-core from npm at the version package-lock.json pins.
# playwright-core never downloads a browser; the suite drives /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/../.."
apt_install chromium openssl ca-certificates postgresql python3
command -v node >/dev/null || apt_install nodejs
command -v npm >/dev/null || apt_install npm
if [ ! -d tests/dashboard/node_modules/playwright-core ] \
  || [ tests/dashboard/package-lock.json -nt tests/dashboard/node_modules/.package-lock.json ]; then
  echo "setup: npm ci in tests/dashboard"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/dashboard --no-audit --no-fund --loglevel=error
fi
