#!/usr/bin/env bash
# Real-traffic tests of `toktra pcap` (scripts/test.d/10-capture.sh) and
# scripts/bench-pcap: tshark (the reference), tcpdump, the client stacks (OpenSSL,
# curl, GnuTLS, Python, Node.js, Java, Chromium), ndpiReader for the benchmark, and
# aioquic (PyPI) in a venv for real QUIC v1/v2 clients and servers.
set -euo pipefail
# tshark's package asks whether non-root users may capture; answer for it.
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
apt_install tshark wireshark-common tcpdump ethtool iproute2 openssl curl gnutls-bin chromium \
  libndpi-bin bc time python3-venv
command -v node >/dev/null || apt_install nodejs
command -v javac >/dev/null || apt_install default-jdk-headless

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/toktra
VENV=$CACHE/aioquic-venv
if ! "$VENV/bin/python" -c 'import aioquic, cryptography' 2>/dev/null; then
  echo "setup: installing aioquic into $VENV"
  mkdir -p "$CACHE"
  PYTHON=/usr/bin/python3
  [ -x "$PYTHON" ] || PYTHON=$(command -v python3)
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'aioquic>=1.2,<2'
fi
