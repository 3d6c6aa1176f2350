#!/usr/bin/env bash
# The agent's end-to-end paths (scripts/test.d/41-agent-e2e.sh): a real session bus
# (dbus-daemon, dbus-monitor) and a real notification server (dunst) on a virtual
# display (Xvfb; xwd + netpbm for the screenshot); aioquic for the HTTP/3 client and
# server comes from 10-capture's venv, iproute2/curl/jq/sqlite3/nodejs from 40-agent.
set -euo pipefail
apt_install dbus dbus-daemon dbus-bin dunst xvfb x11-apps netpbm iproute2 curl jq sqlite3 python3-venv
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
