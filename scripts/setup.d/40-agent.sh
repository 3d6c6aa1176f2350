#!/usr/bin/env bash
# The agent: libpcap (the AF_PACKET tap is opened through it), and what its end-to-end
# suite runs: Node.js (stand-in provider, a client), curl, Python, headless Chromium,
# sqlite3 and jq to read results, iproute2 for namespaces, and cargo-deb for the .deb;
# scripts/bench-agent's control tap is tcpdump.
set -euo pipefail
apt_install libpcap-dev nodejs chromium sqlite3 jq curl iproute2 openssl python3 dpkg-dev tcpdump
if ! command -v cargo-deb >/dev/null; then
  echo "setup: installing cargo-deb"
  cargo install cargo-deb --version 3.8.0 --locked --quiet
fi
