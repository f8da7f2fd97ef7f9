#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each (default 60) and
# prints the executions each managed; exits non-zero on the first crash, leaving the input
# in fuzz/artifacts/TARGET/ (add it as a regression test before fixing).
# Usage: tools/fuzz.sh [SECONDS] [TARGET...]   (needs the nightly toolchain and cargo-fuzz:
#        cargo install cargo-fuzz; .ci/run installs it)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2; exit 1; }
cd fuzz
cargo +nightly fuzz build -O >/dev/null 2>&1 || cargo +nightly fuzz build -O
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  # No leak detection: dp_request keeps its server for the whole process on purpose.
  if ASAN_OPTIONS=detect_leaks=0 cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
    -max_total_time="$SECS" -print_final_stats=1 -detect_leaks=0 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz $t: ${runs:-?} executions in ${SECS} s, no crash (corpus $(ls "corpus/$t" | wc -l) inputs)"
    rm -f "$log"
  else
    echo "fuzz $t: CRASH" >&2
    grep -E "ERROR|panicked|SUMMARY|Test unit written" "$log" | head -20 >&2
    exit 1
  fi
done
