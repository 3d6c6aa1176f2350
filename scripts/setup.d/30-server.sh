#!/usr/bin/env bash
# The server's suite needs: PostgreSQL (Debian's packages; the suite starts its own
# throw-away cluster, the system service is not used), openssl and curl (the EST and
# mTLS clients the project did not write), and schemathesis from PyPI in a venv.
set -euo pipefail
apt_install postgresql openssl curl python3 python3-venv
VENV=${TOKTRA_SERVER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/toktra/server-venv}
SCHEMATHESIS_VERSION=4.32.5
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "setup: schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
