#!/usr/bin/env bash
# Fuzzing (#21, test 8): each target of fuzz/ for a while under libFuzzer (cargo-fuzz), starting
# from the corpus in the repository (fuzz/corpus/<target>/). New inputs go to a temporary folder,
# so a run leaves the repository as it was; a crash leaves its input in fuzz/artifacts/<target>/
# and fails the script. See docs/reliability.md#fuzzing.
#
# Usage: bash .ci/fuzz.sh [seconds per target] [target…]   (default: 60 s, every target)
# A long run: bash .ci/fuzz.sh 3600
#
# cargo-fuzz needs nightly Rust for `-Z` flags; on a stable toolchain RUSTC_BOOTSTRAP=1 lets it
# use them (this repository builds with stable Rust otherwise).
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(flow_yaml template webhook_headers cron)
fi
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "Installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io."
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
if ! command -v c++ >/dev/null 2>&1; then
  echo "libFuzzer is C++: installing g++."
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++
fi

export RUSTC_BOOTSTRAP=1
# One build for every target, in fuzz/target (its own workspace and lock file). No sanitizer:
# safe Rust gains little from AddressSanitizer, and the build stays on the stable toolchain's
# standard library; panics, failed assertions, timeouts and memory blow-ups are what is sought.
build_start=$(date +%s)
cargo fuzz build --fuzz-dir fuzz --sanitizer none
echo "fuzz targets built in $(( $(date +%s) - build_start ))s"
# Targets run side by side, one per core (libFuzzer runs on one thread): 4 targets of 60 s take
# 2 minutes on CI's 2 cores instead of 4.
JOBS=$(nproc 2>/dev/null || echo 1)
fuzz_one() {
  local target=$1 scratch start
  scratch=$(mktemp -d)
  start=$(date +%s)
  echo "==> fuzzing $target for ${SECONDS_EACH}s"
  if ! cargo fuzz run --fuzz-dir fuzz --sanitizer none "$target" "$scratch" "fuzz/corpus/$target" -- \
      -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 2>"$scratch.log"; then
    tail -n 40 "$scratch.log"
    echo "FAILED: $target (the input is in fuzz/artifacts/$target/)"
    rm -rf "$scratch" "$scratch.log"
    return 1
  fi
  echo "$target: $(grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$scratch.log" | tr '\n' ' ')($(( $(date +%s) - start ))s, $(ls "$scratch" | wc -l) new inputs)"
  rm -rf "$scratch" "$scratch.log"
}
status=0
running=0
for target in "${TARGETS[@]}"; do
  if [ "$running" -ge "$JOBS" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
  fuzz_one "$target" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
exit "$status"
