#!/usr/bin/env bash
# What the DP's per-query metrics (query type and transport counters, the answer-latency
# histogram: two clock reads and a few relaxed atomic adds) cost on the UDP fast path, in
# instructions, which callgrind counts the same whatever else the machine is doing: the same
# 10,000-mapping zone (tools/lib.sh bench_carrier_zone) and the same QUERIES UDP queries from
# dnsperf, answered by this tree's `mimi dp serve` and by BASE_MIMI (a build of an earlier
# commit, e.g. `git worktree add /tmp/base 816bb53 && (cd /tmp/base && cargo build --release)`),
# each under callgrind. Prints instructions per query of the UDP worker loop and of the fast
# path (user space only; the kernel's recvmmsg/sendmmsg work is not counted), and the ratio.
# Usage: tools/bench/metrics-cost.sh BASE_MIMI [QUERIES]   (default 20000; needs valgrind, dnsperf)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
BASE=$(realpath "$1")
QUERIES=${2:-20000}
for t in valgrind callgrind_annotate dnsperf; do
  command -v "$t" >/dev/null || { echo "metrics-cost.sh: needs $t"; exit 1; }
done
cargo build --release --quiet --bin mimi
MIMI=$PWD/target/release/mimi
scratch_start metrics-cost.sh
A=127.0.0.202
PORT=$(free_port $A)
bench_carrier_zone "$W" 10000 >/dev/null
bench_dp_conf "$A:$PORT" 5.5.5.1.e164.mimi.arpa. "$W/z.zone" >"$W/dp.toml"
head -"$QUERIES" "$W/pos.txt" >"$W/q.txt"
cd "$W"
# measure BIN LABEL: "<worker loop> <fast path> <queries answered>" instructions.
measure() {
  valgrind --tool=callgrind --callgrind-out-file="$W/$2.out" "$1" dp serve --config dp.toml \
    >/dev/null 2>"$W/$2.vg" &
  local p=$!
  pids+=("$p")
  for _ in $(seq 1 600); do
    dig +time=1 +tries=1 +norec @$A -p "$PORT" SOA 5.5.5.1.e164.mimi.arpa. >/dev/null 2>&1 && break
    sleep 0.5
  done
  dnsperf -s $A -p "$PORT" -d "$W/q.txt" -n 1 -Q 2000 -q 50 >"$W/$2.perf" 2>&1
  kill -TERM "$p"
  wait "$p" || true
  pids=()
  local worker fast calls
  callgrind_annotate --inclusive=yes "$W/$2.out" >"$W/$2.annotated"
  worker=$(grep -m1 'udp::Worker<H>::run \[' "$W/$2.annotated" | awk '{gsub(",","",$1); print $1}')
  fast=$(grep -m1 'handler.rs:<.*StreamHandler>::answer_fast \[' "$W/$2.annotated" | awk '{gsub(",","",$1); print $1}')
  calls=$(grep -o 'Queries completed: *[0-9]*' "$W/$2.perf" | grep -o '[0-9]*$')
  echo "$worker $fast $calls"
}
measure "$BASE" base >"$W/base.counts"
measure "$MIMI" this >"$W/this.counts"
read -r bw bf bq <"$W/base.counts"
read -r nw nf nq <"$W/this.counts"
python3 - "$bw" "$bf" "$bq" "$nw" "$nf" "$nq" <<'PY'
import sys
bw, bf, bq, nw, nf, nq = map(int, sys.argv[1:])
print(f"{'instructions per query':28} {'base':>8} {'this':>8} {'this/base':>10}")
for name, b, n in [("UDP worker loop", bw / bq, nw / nq), ("fast path (answer_fast)", bf / bq, nf / nq)]:
    print(f"{name:28} {b:8.0f} {n:8.0f} {n / b:10.3f}")
print(f"queries answered: base {bq}, this {nq}")
PY
