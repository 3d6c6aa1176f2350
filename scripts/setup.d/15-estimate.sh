#!/usr/bin/env bash
# Token estimation: scripts/bench-estimate captures real TLS traffic on loopback.
set -euo pipefail
apt_install tcpdump curl openssl
