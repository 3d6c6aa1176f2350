#!/usr/bin/env bash
# The agent's end-to-end paths (scripts/test.d/41-agent-e2e.sh): a real session bus
# (dbus-daemon, dbus-monitor) and a real notification server (dunst) on a virtual
# display (Xvfb; xwd + netpbm for the screenshot); aioquic for the HTTP/3 client and
# server comes from 10-capture's venv, iproute2/curl/jq/sqlite3/nodejs from 40-agent.
set -euo pipefail
apt_install dbus dbus-daemon dbus-bin dunst xvfb x11-apps netpbm iproute2 curl jq sqlite3 python3-venv
# scripts/setup runs every part in order, so 10-capture's venv is there by now.
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/toktra/aioquic-venv
"$VENV/bin/python" -c 'import aioquic' 2>/dev/null ||
  { echo "setup: $VENV lacks aioquic (scripts/setup.d/10-capture.sh makes it)" >&2; exit 1; }
