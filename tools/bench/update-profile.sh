#!/usr/bin/env bash
# Where `mimi dp serve` spends its CPU while it answers queries during a stream of updates:
# a zone of N mappings with [pir] on, pinned to CPU 0; on CPU 1 RATE mapping updates a
# second (UPDATEs of 10) and dnsperf; `perf record --call-graph dwarf` on the server for
# SECONDS; prints the queries/s and the inclusive share of the main functions.
# Usage: tools/bench/update-profile.sh [N] [RATE] [SECONDS]   (defaults 200000 1000 4)
# Needs linux-perf, dnsperf, dnsutils.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
N=${1:-200000}
RATE=${2:-1000}
SECS=${3:-4}
cargo build --release --quiet --features mulpir --bin mimi --example update_bench
MIMI=$PWD/target/release/mimi
LOAD=$PWD/target/release/examples/update_bench
for t in perf dnsperf dig taskset; do
  command -v "$t" >/dev/null || { echo "update-profile.sh: needs $t" >&2; exit 1; }
done
d=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$d"; }
trap cleanup EXIT
A=127.0.0.81
block_zone "$d" "$N" $A
python3 - "$N" "$d" <<'PY'
import random, sys
n, d = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(1)
with open(f"{d}/pos.txt", "w") as f:
    for _ in range(200000):
        num = f"1555{2 * rnd.randrange(n):07d}"
        f.write(".".join(reversed(num)) + ".e164.mimi.arpa. TYPE65280\n")
PY
cd "$d"
tsig_key chat-update. chat.tsig
P=$(free_port $A)
cat >dp.toml <<CONF
listen = ["$A:$P"]
trust = "trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"  # benchmark load comes from one address
[[zone]]
origin = "5.5.5.1.e164.mimi.arpa."
file = "carrier.zone"
[[update]]
provider = "chat.example"
tsig = "chat.tsig"
[updates]
per_second = 1000000
burst = 1000000
[pir]
scheme = "mulpir"  # the README and docs/scale.md figures of this script were measured with MulPIR
threads = 1
CONF
MIMI_LOG=warn taskset -c 0 "$MIMI" dp serve --config dp.toml 2>dp.log &
DP=$!
pids+=($DP)
for _ in $(seq 1500); do
  dig +time=1 +tries=1 @$A -p "$P" 5.5.5.1.e164.mimi.arpa. SOA 2>/dev/null | grep -q NOERROR && break
  sleep 0.2
done
taskset -c 1 "$LOAD" storm --server $A:"$P" --zone 5.5.5.1.e164.mimi.arpa. --tsig chat.tsig --key chat.key \
  --count "$N" --batch 10 --conns 2 --seconds $((SECS + 6)) --rate "$RATE" --records 100000 >storm.out &
pids+=($!)
sleep 1
taskset -c 1 dnsperf -s $A -p "$P" -d pos.txt -l $((SECS + 4)) -c 20 -q 200 >dnsperf.out 2>&1 &
DNSPERF=$!
sleep 1
perf record -F 199 --call-graph dwarf,16384 -p $DP -o perf.data -- sleep "$SECS" 2>/dev/null
wait $DNSPERF
echo "queries/s under $RATE mapping updates/s: $(awk '/Queries per second/ { print int($4) }' dnsperf.out)"
echo "inclusive share of mimi dp serve's CPU:"
perf report -i perf.data --children --sort symbol --stdio 2>/dev/null |
  grep -E '^ +[0-9.]+% +[0-9.]+%' |
  grep -E 'prepare_update::|encode_plaintext|__memmove|handle_udp::\{\{closure\}\}::\{\{closure\}\} |writer::commit_batch$|record::verify_against' |
  awk '{ $2 = ""; print }' | cut -c1-110
