#!/usr/bin/env bash
# cargo-fuzz for scripts/test.d/20-fuzz-smoke.sh. It drives libFuzzer through
# nightly-only rustc flags; the suite sets RUSTC_BOOTSTRAP=1 so the stable toolchain
# accepts them and no nightly is needed.
set -euo pipefail
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
