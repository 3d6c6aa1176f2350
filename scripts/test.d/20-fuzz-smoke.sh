#!/usr/bin/env bash
# toktra-wire's driver build check (no std, no `quic` feature), then the fuzz smoke
# test: builds every cargo-fuzz target in fuzz/ and runs each for a short
# while (FUZZ_SECONDS, default 20) from its committed seeds (fuzz/seeds/<target>/).
# A crash, panic, leak or timeout fails the suite and leaves the input under
# artifacts/fuzz/<target>/. Long runs (the 10-minute campaigns) use the same command
# with a larger FUZZ_SECONDS.
#
# libFuzzer needs nightly rustc flags: RUSTC_BOOTSTRAP=1 lets the stable toolchain
# take them. toktra-wire has no unsafe code, so AddressSanitizer adds nothing but
# slowness; targets are built without it, with debug assertions on.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "20-fuzz-smoke: cargo-fuzz is not installed; run scripts/setup (scripts/setup.d/20-fuzz.sh)" >&2
  exit 1
fi

# The Windows kernel driver links toktra-wire without its `quic` feature and without
# std. Prove both here: the no-default-features build is lint-clean, and a no_std
# staticlib with its own #[panic_handler] links it (any std in the dependency graph
# would be a duplicate `panic_impl` lang item).
echo "20-fuzz-smoke: toktra-wire for the driver (no default features, no std)"
nice -n 10 cargo clippy -p toktra-wire --no-default-features --lib -- -D warnings
nostd=$(mktemp -d)
mkdir -p "$nostd/src"
cat >"$nostd/Cargo.toml" <<TOML
[package]
name = "toktra-wire-nostd-check"
version = "0.0.0"
edition = "2024"
[lib]
crate-type = ["staticlib"]
[dependencies]
toktra-wire = { path = "$ROOT/crates/toktra-wire" }
[profile.dev]
panic = "abort"
[workspace]
TOML
cat >"$nostd/src/lib.rs" <<'RS'
#![no_std]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
#[unsafe(no_mangle)]
pub extern "C" fn toktra_sni_len(p: &[u8; 512]) -> usize {
    toktra_wire::ClientHello::parse(p)
        .ok()
        .and_then(|h| h.server_name())
        .map_or(0, |s| s.len())
}
RS
# Default features (quic on) is the superset of what any build links.
(cd "$nostd" && CARGO_TARGET_DIR="$nostd/target" nice -n 10 cargo build --quiet)
rm -rf "$nostd"
echo "20-fuzz-smoke: no_std link check ok"

cd fuzz
targets=$(cargo fuzz list)
if [ -z "$targets" ]; then
  echo "20-fuzz-smoke: no fuzz targets found in fuzz/Cargo.toml" >&2
  exit 1
fi
echo "20-fuzz-smoke: building $(echo $targets | wc -w) target(s): $(echo $targets)"
nice -n 10 cargo fuzz build --sanitizer none --debug-assertions

status=0
for t in $targets; do
  corpus=$(mktemp -d)
  artifacts="$ROOT/artifacts/fuzz/$t"
  mkdir -p "$artifacts"
  seeds="$ROOT/fuzz/seeds/$t"
  seed_args=()
  if [ -d "$seeds" ]; then seed_args=("$seeds"); fi
  log="$artifacts/run.log"
  echo "20-fuzz-smoke: $t for ${SECONDS_PER_TARGET}s (seeds: ${seed_args[*]:-none})"
  if nice -n 10 cargo fuzz run --sanitizer none --debug-assertions "$t" "$corpus" "${seed_args[@]}" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "20-fuzz-smoke: $t ok, ${execs:-?} executions, no findings"
  else
    echo "20-fuzz-smoke: $t FAILED; last lines of $log:" >&2
    tail -40 "$log" >&2
    ls -1 "$artifacts" >&2
    status=1
  fi
  rm -rf "$corpus"
done
exit $status
