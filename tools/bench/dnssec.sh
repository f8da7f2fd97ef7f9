#!/usr/bin/env bash
# What DNSSEC costs a DP, beside Knot signing the same zone, in one run.
#
# The benchmark carrier zone of N mappings (tools/lib.sh bench_carrier_zone) served by
#   - `mimi dp serve` unsigned, then signed (`dnssec_key`, Ed25519, compact denial online);
#   - Knot 3 with automatic signing (dnssec-signing: on, policy ed25519, an NSEC chain made
#     ahead of time), from the same zone file;
# each pinned to CPU 0, dnsperf pinned to CPU 1. Reports queries per second for existing
# names and absent ones, without DO and with DO (dnsperf -D), the ratios mimi/Knot, the
# time each took to sign the zone and its resident memory. Then examples/dnssec_bench.rs:
# the write path's cost per single-mapping commit with and without signing, and the whole
# zone's signing time in-process.
#
# Usage: tools/bench/dnssec.sh [N] [SECONDS]   (default 100000 mappings, 10 s per run)
# Needs knot, dnsperf (apt-get install knot dnsperf).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
N=${1:-100000}
SECS=${2:-10}
cargo build --release --quiet --bin mimi --example dnssec_bench
MIMI=$PWD/target/release/mimi
export PATH=$PATH:/usr/sbin
for t in knotd knotc dnsperf taskset; do command -v "$t" >/dev/null || { echo "dnssec.sh: needs $t"; exit 1; }; done
scratch_start dnssec.sh
ORIGIN=5.5.5.1.e164.mimi.arpa.
SERVER_CPU=0 LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || { LOAD_CPU=0; echo "note: one core only, server and load share it"; }

rss_mib() { echo $(($(ps -o rss= -p "$1") / 1024)); }
wait_signed() { # addr port: until the SOA comes with its RRSIG (at most 10 minutes)
  for _ in $(seq 1 3000); do
    dig +time=1 +tries=1 +norec +dnssec @"$1" -p "$2" "$ORIGIN" SOA 2>/dev/null | grep -q "RRSIG.*SOA" && return 0
    sleep 0.2
  done
  echo "dnssec.sh: no signed SOA from $1:$2"; exit 1
}
wait_up() {
  for _ in $(seq 1 3000); do
    dig +time=1 +tries=1 +norec @"$1" -p "$2" "$ORIGIN" SOA 2>/dev/null | grep -q "status: NOERROR" && return 0
    sleep 0.2
  done
  echo "dnssec.sh: $1:$2 did not come up"; exit 1
}
qps() { # addr port file [dnsperf flags]
  local a=$1 p=$2 f=$3
  shift 3
  taskset -c "$LOAD_CPU" dnsperf -s "$a" -p "$p" -d "$f" -l "$SECS" -c 20 -q 200 "$@" 2>/dev/null |
    awk '/Queries per second/ { print int($4) }'
}

d=$W
bench_carrier_zone "$d" "$N"
"$MIMI" key dnssec generate --zone $ORIGIN --out "$d/z.dnssec" >/dev/null
mp=$(free_port 127.0.0.84)
dp_conf() { # with or without the key
  cat <<EOF
listen = ["127.0.0.84:$mp"]
trust = "trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"  # benchmark load comes from one address
[[zone]]
origin = "$ORIGIN"
file = "g.zone"
$1
[limits]
udp_threads = 1
EOF
}

# mimi, unsigned then signed
dp_conf "" >"$d/plain.toml"
taskset -c "$SERVER_CPU" env MIMI_LOG=warn "$MIMI" dp serve --config "$d/plain.toml" 2>"$d/plain.log" &
pids+=($!); plain_pid=$!
wait_up 127.0.0.84 "$mp"
m_pos=$(qps 127.0.0.84 "$mp" "$d/pos.txt")
m_nx=$(qps 127.0.0.84 "$mp" "$d/nx.txt")
m_rss_plain=$(rss_mib $plain_pid)
kill $plain_pid; wait $plain_pid 2>/dev/null || true
rm -f "$d"/g.zone.journal*
dp_conf 'dnssec_key = "z.dnssec"' >"$d/signed.toml"
t0=$(date +%s.%N)
taskset -c "$SERVER_CPU" env MIMI_LOG=info NO_COLOR=1 "$MIMI" dp serve --config "$d/signed.toml" 2>"$d/signed.log" &
pids+=($!); signed_pid=$!
wait_signed 127.0.0.84 "$mp"
m_up=$(python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$t0")
m_sign_ms=$(sed -n 's/.*zone signed (DNSSEC).*ms=\([0-9]*\).*/\1/p; s/.*ms=\([0-9]*\).*zone signed (DNSSEC).*/\1/p' "$d/signed.log" | head -1)
m_pos_nodo=$(qps 127.0.0.84 "$mp" "$d/pos.txt")
m_pos_do=$(qps 127.0.0.84 "$mp" "$d/pos.txt" -D)
m_nx_do=$(qps 127.0.0.84 "$mp" "$d/nx.txt" -D)
m_rss_signed=$(rss_mib $signed_pid)
kill $signed_pid; wait $signed_pid 2>/dev/null || true

# Knot, signing the same zone
kp=$(free_port 127.0.0.85)
mkdir -p "$d/knot"
cat >"$d/knot.conf" <<EOF
server:
    listen: 127.0.0.85@$kp
    rundir: $d/knot
    background-workers: 1
database:
    storage: $d/knot
policy:
  - id: ed
    algorithm: ed25519
    nsec3: off
template:
  - id: default
    storage: $d/knot
zone:
  - domain: $ORIGIN
    file: $d/g.zone
    zonefile-load: whole
    zonefile-sync: -1
    journal-content: changes
    dnssec-signing: on
    dnssec-policy: ed
log:
  - target: stderr
    any: error
EOF
t0=$(date +%s.%N)
taskset -c "$SERVER_CPU" knotd -c "$d/knot.conf" 2>"$d/knot.log" &
pids+=($!); knot_pid=$!
wait_signed 127.0.0.85 "$kp"
k_up=$(python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$t0")
k_pos_nodo=$(qps 127.0.0.85 "$kp" "$d/pos.txt")
k_pos_do=$(qps 127.0.0.85 "$kp" "$d/pos.txt" -D)
k_nx_do=$(qps 127.0.0.85 "$kp" "$d/nx.txt" -D)
k_rss=$(rss_mib $knot_pid)
kill $knot_pid; wait $knot_pid 2>/dev/null || true

ratio() { python3 -c "import sys; a,b=map(float,sys.argv[1:]); print(f'{a/max(b,1):.2f}')" "$1" "$2"; }
echo "== $N mappings, $SECS s per run, server on CPU $SERVER_CPU, dnsperf on CPU $LOAD_CPU"
printf "%-30s %10s %10s %10s\n" "queries per second" "mimi" "knot" "mimi/knot"
printf "%-30s %10s %10s %10s\n" "answer, no DO (unsigned mimi)" "$m_pos" "-" "-"
printf "%-30s %10s %10s %10s\n" "NXDOMAIN, no DO (unsigned)" "$m_nx" "-" "-"
printf "%-30s %10s %10s %10s\n" "answer, no DO (signed)" "$m_pos_nodo" "$k_pos_nodo" "$(ratio "$m_pos_nodo" "$k_pos_nodo")"
printf "%-30s %10s %10s %10s\n" "answer, DO" "$m_pos_do" "$k_pos_do" "$(ratio "$m_pos_do" "$k_pos_do")"
printf "%-30s %10s %10s %10s\n" "absent name, DO" "$m_nx_do" "$k_nx_do" "$(ratio "$m_nx_do" "$k_nx_do")"
printf "%-30s %10s %10s\n" "start until signed SOA (s)" "$m_up" "$k_up"
printf "%-30s %10s\n" "mimi: signing at load (ms)" "${m_sign_ms:-?}"
printf "%-30s %9sM %9sM\n" "resident memory, signed" "$m_rss_signed" "$k_rss"
printf "%-30s %9sM\n" "mimi resident memory, unsigned" "$m_rss_plain"
echo "mimi: DO answers / no-DO answers $(ratio "$m_pos_do" "$m_pos_nodo"); Knot: $(ratio "$k_pos_do" "$k_pos_nodo")"
echo "== the write path (examples/dnssec_bench.rs, in-process, one thread per commit):"
"$PWD/target/release/examples/dnssec_bench" "$d/g.zone" 2000
