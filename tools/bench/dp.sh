#!/usr/bin/env bash
# DP server benchmark: the same zone (exported in RFC 3597 form) served by `mimi dp serve`,
# Knot and NSD, each pinned to one core, driven by dnsperf pinned to the other.
# Reports queries per second for UDP answers, UDP NXDOMAIN and TCP answers, the ratio to
# Knot and to NSD, and resident memory after the load. Then the same per CPU-second the
# server used (its CPU time from /proc, descendants included): on two cores one dnsperf
# is often the limit (on a slow day here about 150,000 queries per second), so where a
# server answers all it gets without filling its core, the first table shows dnsperf's
# ceiling, and the second what the server would answer per core.
# Usage: tools/bench/dp.sh [SECONDS] [SIZES...]   (default: 10 s, sizes 10000 1000000)
# Needs knot, nsd, dnsperf (apt-get install knot nsd dnsperf).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
SECS=${1:-10}
shift || true
SIZES=${*:-10000 1000000}
cargo build --release --quiet
MIMI=$PWD/target/release/mimi
for t in knotd nsd dnsperf taskset; do
  command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "dp.sh: needs $t"; exit 1; }
done
export PATH=$PATH:/usr/sbin
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
ORIGIN=5.5.5.1.e164.mimi.arpa.
SERVER_CPU=0 LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || { SERVER_CPU=0; LOAD_CPU=0; echo "note: one core only, server and load share it"; }

wait_up() { # addr port
  for _ in $(seq 1 600); do
    dig +time=1 +tries=1 +norec @"$1" -p "$2" "$ORIGIN" SOA >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server on $1:$2 did not come up"; exit 1
}
# Resident memory of a server and its children (NSD serves from forked processes).
rss_mib() {
  local kib
  kib=$(ps -o rss= -p "$1" --ppid "$1" | awk '{ s += $1 } END { print s }')
  echo $((kib / 1024))
}
# CPU time (clock ticks) a server and its descendants (NSD serves from a grandchild) have
# used.
cpu_ticks() {
  local p t=0
  for p in $(ps -e -o pid=,ppid= | awk -v root="$1" '
      { parent[$1] = $2 }
      END { for (p in parent) { q = p; while (q != "" && q != 0 && q != root) q = parent[q]; if (q == root) print p } }'); do
    # utime and stime, counted after the command name (NSD's have spaces in them).
    t=$((t + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 } END { if (!NR) print 0 }')))
  done
  echo "$t"
}
TICKS=$(getconf CLK_TCK)
perf() { # addr port file mode server-pid -> "qps queries-per-server-cpu-second"
  local t0 t1 q
  t0=$(cpu_ticks "$5")
  q=$(taskset -c "$LOAD_CPU" dnsperf -s "$1" -p "$2" -d "$3" -m "$4" -l "$SECS" -c 20 -q 200 2>/dev/null \
    | awk '/Queries per second/ { print int($4) }')
  t1=$(cpu_ticks "$5")
  echo "$q $(python3 -c "import sys; q, s, t, hz = map(float, sys.argv[1:]); print(int(q * s / max(t / hz, 0.01)))" "$q" "$SECS" "$((t1 - t0))" "$TICKS")"
}

printf "DP benchmark: %s s per run, server on CPU %s, dnsperf on CPU %s\n" "$SECS" "$SERVER_CPU" "$LOAD_CPU"
for N in $SIZES; do
  d=$dir/$N; mkdir -p "$d"
  # Even numbers +1 555 000 0000 + 2i exist; the odd ones are NXDOMAIN at the last label.
  python3 - "$N" "$d" <<'PY'
import random, sys
n, d = int(sys.argv[1]), sys.argv[2]
with open(f"{d}/map.csv", "w") as f:
    f.write("sii,ssi,context,priority,ttl\n")
    for i in range(n):
        f.write(f"+1555{2*i:07d},mimi://chat.example/u/user{i},any,10,3600\n")
rnd = random.Random(1)
def owner(num):
    return ".".join(reversed(f"1555{num:07d}")) + ".e164.mimi.arpa."
with open(f"{d}/pos.txt", "w") as f:
    for _ in range(200000):
        f.write(f"{owner(2 * rnd.randrange(n))} TYPE65280\n")
with open(f"{d}/nx.txt", "w") as f:
    for _ in range(200000):
        f.write(f"{owner(2 * rnd.randrange(n) + 1)} TYPE65280\n")
PY
  "$MIMI" key generate --provider chat.example --out "$d/k.key" >/dev/null
  "$MIMI" key public "$d/k.key" > "$d/trust.toml"
  "$MIMI" zone new $ORIGIN --out "$d/z.zone" --ns ns1.$ORIGIN=127.0.0.1 >/dev/null
  "$MIMI" zone import "$d/z.zone" --csv "$d/map.csv" --key "$d/k.key" >/dev/null
  "$MIMI" zone export "$d/z.zone" --generic --out "$d/g.zone"

  # mimi
  mp=$(free_port 127.0.0.81)
  bench_dp_conf "127.0.0.81:$mp" "$ORIGIN" g.zone > "$d/dp.toml"
  MIMI_LOG=warn taskset -c "$SERVER_CPU" "$MIMI" dp serve --config "$d/dp.toml" 2>"$d/mimi.log" &
  pids+=($!); mimi_pid=$!
  # Knot
  kp=$(free_port 127.0.0.82)
  mkdir -p "$d/knot"
  cat > "$d/knot.conf" <<EOF
server:
    listen: 127.0.0.82@$kp
    rundir: $d/knot
    background-workers: 1
database:
    storage: $d/knot
zone:
  - domain: $ORIGIN
    file: $d/g.zone
    zonefile-load: whole
    journal-content: none
log:
  - target: stderr
    any: error
EOF
  taskset -c "$SERVER_CPU" knotd -c "$d/knot.conf" 2>"$d/knot.log" &
  pids+=($!); knot_pid=$!
  # NSD
  np=$(free_port 127.0.0.83)
  mkdir -p "$d/nsd"
  cat > "$d/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.83@$np
    port: $np
    server-count: 1
    username: ""
    zonesdir: "$d"
    database: ""
    zonelistfile: "$d/nsd/zone.list"
    xfrdfile: "$d/nsd/xfrd.state"
    pidfile: "$d/nsd/nsd.pid"
    logfile: "$d/nsd/nsd.log"
    rrl-ratelimit: 0
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: "$ORIGIN"
    zonefile: "$d/g.zone"
EOF
  taskset -c "$SERVER_CPU" nsd -d -c "$d/nsd.conf" 2>"$d/nsd.err" &
  pids+=($!); nsd_pid=$!
  wait_up 127.0.0.81 "$mp"; wait_up 127.0.0.82 "$kp"; wait_up 127.0.0.83 "$np"

  echo
  echo "== $N mappings (zone file $(du -m "$d/g.zone" | cut -f1) MiB)"
  printf "%-14s %10s %10s %10s %12s %12s\n" "test" "mimi" "knot" "nsd" "mimi/knot" "mimi/nsd"
  : >"$d/per-cpu"
  for test in "udp-answer pos.txt udp" "udp-nxdomain nx.txt udp" "tcp-answer pos.txt tcp"; do
    set -- $test
    read -r m mc <<<"$(perf 127.0.0.81 "$mp" "$d/$2" "$3" "$mimi_pid")"
    read -r k kc <<<"$(perf 127.0.0.82 "$kp" "$d/$2" "$3" "$knot_pid")"
    read -r n nc <<<"$(perf 127.0.0.83 "$np" "$d/$2" "$3" "$nsd_pid")"
    row='import sys; m,k,n=map(float,sys.argv[2:]); print(f"{sys.argv[1]:<14} {m:10.0f} {k:10.0f} {n:10.0f} {m/max(k,1):12.2f} {m/max(n,1):12.2f}")'
    python3 -c "$row" "$1" "$m" "$k" "$n"
    python3 -c "$row" "$1" "$mc" "$kc" "$nc" >>"$d/per-cpu"
  done
  printf "%-14s %9sM %9sM %9sM\n" "RSS after" "$(rss_mib $mimi_pid)" "$(rss_mib $knot_pid)" "$(rss_mib $nsd_pid)"
  echo "queries per CPU-second of the server (what one core could answer if dnsperf kept up):"
  cat "$d/per-cpu"
  kill "$mimi_pid" "$knot_pid" "$nsd_pid" 2>/dev/null || true
  wait "$mimi_pid" "$knot_pid" "$nsd_pid" 2>/dev/null || true
done
