#!/usr/bin/env bash
# The Windows suite: cross-build (scripts/windows-build --tests), fmt and clippy of the
# Windows crates (scripts/windows-lint), then under Wine in a fresh prefix: the Windows
# crates' own tests, and the scenarios of windows/tests/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
export ROOT

TOKTRA_SKIP_SETUP=${TOKTRA_SKIP_SETUP:-0} scripts/windows-build --tests

# fmt and clippy of the Windows crates. rustup's clippy cannot lint against the std that
# build-std makes from Debian's library source (another compiler's metadata), so the
# lint uses Debian's own clippy (rust-web-clippy), the same release as rustc-web.
scripts/windows-lint
# The real server the Windows agent enrolls with and uploads to (Linux side).
cargo build -q -p toktra

# shellcheck source=../wine-env
source scripts/wine-env
trap wine_env_stop EXIT
wine_env_start "$ROOT/target/wine/test-prefix"

bash windows/tests/run.sh
