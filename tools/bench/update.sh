#!/usr/bin/env bash
# Live-update benchmark: a zone of N mappings (default 1,000,000) served by `mimi dp serve`
# with [pir] on, and by Knot with dynamic updates and its journal, in the same run.
# - Sustained mapping updates: TSIG-signed UPDATEs of 1 and of 100 signed SSI records from
#   8 connections, as fast as each server acknowledges (examples/update_bench.rs, the
#   same records for both); records/s, UPDATEs/s, acknowledgement latency.
# - Latency from sending one UPDATE to the new record in the server's answer (p50/p99),
#   and for mimi until a private lookup (OPRF + PIR through the resolver library) returns it.
# - Queries per second (dnsperf, UDP, existing names) idle and during a steady stream of
#   updates (RATE records/s in UPDATEs of 10), for both servers.
# - Resident memory after at least 100,000 mapping updates.
# Each server is pinned to CPU 0; the load generators to CPU 1.
# Usage: tools/bench/update.sh [N] [SECONDS] [RATE]   (defaults 1000000 10 1000)
# Needs knot, dnsutils, dnsperf (apt-get install knot dnsutils dnsperf). KEEP=1 keeps the
# temporary directory (configs, logs).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
N=${1:-1000000}
SECS=${2:-10}
RATE=${3:-1000}
cargo build --release --quiet --features mulpir --bin mimi --example update_bench
MIMI=$PWD/target/release/mimi
LOAD=$PWD/target/release/examples/update_bench
export PATH=$PATH:/usr/sbin
for t in knotd dnsperf dig taskset python3; do
  command -v "$t" >/dev/null || { echo "update.sh: needs $t" >&2; exit 1; }
done
d=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "update.sh: kept $d" >&2; else rm -rf "$d"; fi
}
trap cleanup EXIT
ORIGIN=5.5.5.1.e164.mimi.arpa.
MA=127.0.0.81 KA=127.0.0.82 RA=127.0.0.84
SERVER_CPU=0 LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || { LOAD_CPU=0; echo "note: one core only, server and load share it"; }
rss_mib() { echo $(($(ps -o rss= -p "$1") / 1024)); }
# Owners each phase changes, so no two phases touch the same number.
SLICE=$((N / 8))

echo "== building a zone of $N mappings"
block_zone "$d" "$N" $MA
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
"$MIMI" zone export carrier.zone --generic --out knot.zone
# A root (its own small DP) that delegates the block straight to the DP, so the resolver
# library can walk down to it for private lookups.
"$MIMI" zone new mimi.arpa. --out root.zone --ns ns1.mimi.arpa.=$RA >/dev/null
"$MIMI" zone delegate root.zone --child $ORIGIN --ns ns1.$ORIGIN=$MA >/dev/null
tsig_key chat-update. chat.tsig
secret=$(sed -n 's/.*secret "\(.*\)";/\1/p' chat.tsig)

# One port for the tree (the resolver's config has one).
MP=$(free_port $MA $RA)
KP=$(free_port $KA)
mkdir -p journal
cat >dp.toml <<EOF
listen = ["$MA:$MP"]
trust = "trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"  # benchmark load comes from one address
[[zone]]
origin = "$ORIGIN"
file = "carrier.zone"
[[update]]
provider = "chat.example"
tsig = "chat.tsig"
[updates]
max_records = 1000
per_second = 1000000
burst = 1000000
[limits]
udp_threads = 1  # pinned to one core
[journal]
dir = "journal"
[pir]
scheme = "mulpir"  # the README and docs/scale.md figures of this script were measured with MulPIR
threads = 1
EOF
cat >root.toml <<EOF
listen = ["$RA:$MP"]
trust = "trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"  # benchmark load comes from one address
[[zone]]
origin = "mimi.arpa."
file = "root.zone"
[pir]
scheme = "mulpir"  # the README and docs/scale.md figures of this script were measured with MulPIR
EOF
cat >resolver.toml <<EOF
roots = ["$RA"]
port = $MP
trust = "trust.toml"
EOF
mkdir -p knot
cat >knot.conf <<EOF
server:
    listen: $KA@$KP
    rundir: $d/knot
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: $d/knot
key:
  - id: chat-update.
    algorithm: hmac-sha256
    secret: $secret
acl:
  - id: update
    key: chat-update.
    action: update
zone:
  - domain: $ORIGIN
    file: $d/knot.zone
    zonefile-load: whole
    journal-content: changes
    zonefile-sync: 60
    acl: update
log:
  - target: stderr
    any: warning
EOF

t0=$(date +%s.%N)
MIMI_LOG=warn taskset -c $SERVER_CPU "$MIMI" dp serve --config dp.toml 2>mimi.log &
pids+=($!); MPID=$!
wait_up() { # addr port pid log
  for _ in $(seq 1 3000); do
    kill -0 "$3" 2>/dev/null || { echo "server on $1:$2 exited:"; tail "$4"; exit 1; }
    dig +time=1 +tries=1 +norec @"$1" -p "$2" "$ORIGIN" SOA 2>/dev/null | grep -q 'status: NOERROR' && return 0
    sleep 0.2
  done
  echo "server on $1:$2 did not come up"; exit 1
}
wait_up $MA "$MP" $MPID mimi.log
MIMI_LOG=warn taskset -c $LOAD_CPU "$MIMI" dp serve --config root.toml 2>root.log &
pids+=($!)
wait_up $RA "$MP" $! root.log
echo "mimi dp serve up in $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')") s (zone and PIR database), $(rss_mib $MPID) MiB"
taskset -c $SERVER_CPU knotd -c knot.conf 2>knot.log &
pids+=($!); KPID=$!
wait_up $KA "$KP" $KPID knot.log
echo "knotd up, $(rss_mib $KPID) MiB"

load() { taskset -c $LOAD_CPU "$LOAD" "$@" --zone $ORIGIN --tsig chat.tsig --key chat.key --count "$N"; }
val() { sed -n "s/^$1=//p" <<<"$2"; }
qps() { # addr port
  taskset -c $LOAD_CPU dnsperf -s "$1" -p "$2" -d pos.txt -l "$SECS" -c 20 -q 200 2>/dev/null |
    awk '/Queries per second/ { print int($4) }'
}
ratio() { python3 -c "import sys; a, b = map(float, sys.argv[1:]); print(f'{a / b:.2f}' if b else '-')" "$1" "$2"; }
row() { printf "%-44s %14s %14s %8s\n" "$@"; }

declare -A R
echo
echo "== sustained updates: $SECS s per run, 8 connections, TSIG"
for batch in 1 100; do
  off=$((batch == 1 ? 0 : SLICE))
  R[m$batch]=$(load storm --server $MA:"$MP" --batch $batch --conns 8 --seconds "$SECS" --offset $off --records $SLICE --tag b$batch)
  R[k$batch]=$(load storm --server $KA:"$KP" --batch $batch --conns 8 --seconds "$SECS" --offset $off --records $SLICE --tag b$batch)
done

echo "== one UPDATE at a time: until served (and private lookups for mimi)"
R[mp]=$(load probe --server $MA:"$MP" --probes 100 --interval-ms 20 --offset $((2 * SLICE)) --tag p)
R[kp]=$(load probe --server $KA:"$KP" --probes 100 --interval-ms 20 --offset $((2 * SLICE)) --tag p)
R[mpriv]=$(load probe --server $MA:"$MP" --probes 5 --interval-ms 0 --offset $((2 * SLICE + 200)) --tag q --private resolver.toml)

echo "== queries per second idle and under $RATE mapping updates/s"
qm_idle=$(qps $MA "$MP")
qk_idle=$(qps $KA "$KP")
storm_during() { # addr port offset -> qps while the storm runs
  load storm --server "$1:$2" --batch 10 --conns 2 --seconds $((SECS + 2)) --rate "$RATE" --offset "$3" --records $SLICE --tag s >"$d/storm.$1" &
  local sp=$!
  sleep 1
  qps "$1" "$2"
  wait $sp
}
qm_storm=$(storm_during $MA "$MP" $((3 * SLICE)))
qk_storm=$(storm_during $KA "$KP" $((3 * SLICE)))
storm_m=$(cat "$d/storm.$MA")

echo "== memory after 100,000 mapping updates"
done_m=$(($(val records "${R[m1]}") + $(val records "${R[m100]}") + $(val probes "${R[mp]}") + $(val records "$storm_m")))
if [ "$done_m" -lt 100000 ]; then
  R[fill]=$(load storm --server $MA:"$MP" --batch 100 --conns 4 --seconds 600 --offset $((4 * SLICE)) --records $((100000 - done_m)) --tag f)
  done_m=$((done_m + $(val records "${R[fill]}")))
fi
rss_m=$(rss_mib $MPID)
rss_k=$(rss_mib $KPID)

echo
echo "== results: $N mappings, mimi with [pir] on (private-lookup slots re-sealed per change)"
row "" "mimi" "knot" "mimi/knot"
for batch in 1 100; do
  m=${R[m$batch]} k=${R[k$batch]}
  row "UPDATEs of $batch: mappings/s" "$(val records_per_sec "$m")" "$(val records_per_sec "$k")" \
    "$(ratio "$(val records_per_sec "$m")" "$(val records_per_sec "$k")")"
  row "UPDATEs of $batch: UPDATEs/s" "$(val updates_per_sec "$m")" "$(val updates_per_sec "$k")" ""
  row "UPDATEs of $batch: ack p50 / p99 ms" "$(val ack_p50_ms "$m") / $(val ack_p99_ms "$m")" \
    "$(val ack_p50_ms "$k") / $(val ack_p99_ms "$k")" ""
done
row "UPDATE to answer served: p50 / p99 ms" "$(val served_p50_ms "${R[mp]}") / $(val served_p99_ms "${R[mp]}")" \
  "$(val served_p50_ms "${R[kp]}") / $(val served_p99_ms "${R[kp]}")" ""
row "UPDATE to private lookup returning it: p50" "$(val private_p50_ms "${R[mpriv]}") ms" "-" ""
row "  (one private lookup takes, p50)" "$(val private_lookup_p50_ms "${R[mpriv]}") ms" "-" ""
row "queries/s idle" "$qm_idle" "$qk_idle" "$(ratio "$qm_idle" "$qk_idle")"
row "queries/s under $RATE updates/s" "$qm_storm" "$qk_storm" "$(ratio "$qm_storm" "$qk_storm")"
row "  under updates / idle" "$(ratio "$qm_storm" "$qm_idle")" "$(ratio "$qk_storm" "$qk_idle")" ""
row "resident memory after $done_m updates, MiB" "$rss_m" "$rss_k" ""
echo "journal on disk: $(du -sh journal | cut -f1) (mimi), $(du -sh knot | cut -f1) (knot, journal and timers)"
