#!/usr/bin/env bash
# Scenarios under Wine; expects scripts/wine-env sourced and a started prefix.
set -euo pipefail
# shellcheck source=../../scripts/wine-env
source "$ROOT/scripts/wine-env"
out=$(wine_run "$ROOT/target/windows/ToktraAgent.exe")
[ "$out" = "0.1.0" ] || { echo "unexpected: $out"; exit 1; }
echo "1 passed, 0 failed"
