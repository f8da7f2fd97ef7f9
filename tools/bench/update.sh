#!/usr/bin/env bash
# Live-zone benchmark: DNS UPDATE (RFC 2136, TSIG hmac-sha256) into a carrier zone of
# MAPPINGS signed mappings, served by `mimi dp serve` (with [pir]: every update also re-seals
# the changed identifiers' PIR slots) and by Knot as a primary (dynamic updates allowed for the
# same TSIG key, journal-content: changes and zonefile-sync at Knot's defaults), each pinned to
# CPU 0; the load generator (examples/update_load.rs) and dnsperf on CPU 1.
# Measures, in one run:
# - UPDATEs of 1 and of 100 new signed mappings from C concurrent tasks (a new TCP connection
#   per UPDATE, as mimi_discovery::publish does): UPDATEs/s, mappings/s, time from sending to
#   NOERROR (p50/p99), and for a sample (one UPDATE every 25 ms, alongside the load) the time
#   from sending to the first UDP answer holding the new record (polled every 1 ms); mimi/Knot;
# - queries per second mimi answers (dnsperf, existing names) while idle, during a storm of
#   1-record UPDATEs at full speed, and during UPDATEs of 100 records at 200 UPDATEs/s (the
#   DP's default per-provider limit: 20,000 mappings/s);
# - mimi's resident memory before the updates and after at least 100,000 published mappings;
# - with the PIR database built, the time from an UPDATE to `mimi lookup --private` finding
#   the new mapping (a root DP delegating the carrier zone, both mimi).
# The DP's own rate limit ([updates] per_second) is raised out of the way for the benchmark.
# Usage: tools/bench/update.sh [MAPPINGS] [SECONDS]   (default 1000000 10)
#   env: CONC (concurrency, default 16), POOL (pre-signed records, default 1,000,000),
#        PRIVATE=0 skips the private lookup, KEEP=1 keeps the work directory.
# Needs knot, dnsperf, dnsutils, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
N=${1:-1000000}
SECS=${2:-10}
CONC=${CONC:-16}
POOL=${POOL:-1000000}
PRIVATE=${PRIVATE:-1}
START=$SECONDS
cargo build --release --examples --quiet
MIMI=$PWD/target/release/mimi
LOAD=$PWD/target/release/examples/update_load
KNOTD=$(sbin knotd)
for t in "$KNOTD" dnsperf taskset dig python3; do
  command -v "$t" >/dev/null || { echo "update.sh: needs $t (apt-get install knot dnsperf dnsutils)"; exit 1; }
done
SERVER_CPU=0 LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || { LOAD_CPU=0; echo "note: one core only, server and load share it"; }

ORIGIN=5.5.5.1.e164.mimi.arpa.
MA=127.0.0.91 KA=127.0.0.92 RA=127.0.0.93 # mimi, Knot, the root DP (private lookups)
W=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "update.sh: kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
die() { echo "update.sh: $*" >&2; exit 1; }
step() { printf '[%4ds] %s\n' $((SECONDS - START)) "$*"; }

# field LINE KEY: the value of KEY=... in a generator output line.
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1; }
rss_mib() { awk '/^VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$1/status"; }
# cpu_ticks PID: user + system time of all its threads, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
# wait_answer ADDR PORT NAME TYPE PID LOG SECONDS: until NAME TYPE has an answer record.
wait_answer() {
  local i
  for ((i = 0; i < $7 * 5; i++)); do
    kill -0 "$5" 2>/dev/null || { sed 's/^/  /' "$6" >&2; die "server on $1:$2 exited"; }
    [ -n "$(dig @"$1" -p "$2" +norec +short +time=1 +tries=1 "$3" "$4" 2>/dev/null)" ] && return 0
    sleep 0.2
  done
  sed 's/^/  /' "$6" | tail -20 >&2
  die "$1:$2 gave no answer for $3 $4 within $7 s"
}
qps() { # addr port -> queries per second (existing names, UDP), SECS seconds
  taskset -c "$LOAD_CPU" dnsperf -s "$1" -p "$2" -d "$W/pos.txt" -l "$SECS" -c 20 -q 200 2>/dev/null |
    awk '/Queries per second/ { print int($4) }'
}

# --- the zone -------------------------------------------------------------------------------
step "building the carrier zone of $N mappings (mimi zone import, export --generic)"
bench_carrier_zone "$W" "$N" $MA
step "zone file $(du -m "$W/z.zone" | cut -f1) MiB"
tsig_key chat-update. "$W/chat.tsig"
read -r KNOT_SECRET < <(cut -d: -f3 "$W/chat.tsig.knot")

# --- mimi (with a root DP delegating the carrier zone, for the private lookup) --------------
PORT=$(free_port $MA $RA)
mkdir -p "$W/mimi" "$W/root"
cp "$W/z.zone" "$W/mimi/carrier.zone"
cat >"$W/mimi/dp.toml" <<EOF
listen = ["$MA:$PORT"]
trust = "../trust.toml"
[[zone]]
origin = "$ORIGIN"
file = "carrier.zone"
[[update]]
provider = "chat.example"
tsig = "../chat.tsig"
[updates]
per_second = 1000000000
burst = 1000000000
[limits]
tcp_connections = 1024
[pir]
threads = 1
EOF
NO_COLOR=1 MIMI_LOG=warn taskset -c $SERVER_CPU "$MIMI" dp serve --config "$W/mimi/dp.toml" >"$W/mimi.log" 2>&1 &
MPID=$!
pids+=($MPID)

# --- Knot --------------------------------------------------------------------------------------
KP=$(free_port $KA)
mkdir -p "$W/knot"
cp "$W/g.zone" "$W/knot/carrier.zone"
cat >"$W/knot/knot.conf" <<EOF
server:
    listen: $KA@$KP
    rundir: "$W/knot"
    background-workers: 1
database:
    storage: "$W/knot"
log:
  - target: stderr
    any: warning
key:
  - id: chat-update.
    algorithm: hmac-sha256
    secret: $KNOT_SECRET
acl:
  - id: updates
    key: chat-update.
    action: update
zone:
  - domain: $ORIGIN
    storage: "$W/knot"
    file: "$W/knot/carrier.zone"
    acl: updates
EOF
taskset -c $SERVER_CPU "$KNOTD" -c "$W/knot/knot.conf" >"$W/knot.log" 2>&1 &
KPID=$!
pids+=($KPID)

# Pre-signed records for every run (signing is the app provider's cost), on CPU 1 while the
# servers load on CPU 0.
step "signing $POOL records for the updates (pool), servers loading"
taskset -c $LOAD_CPU "$LOAD" --make-pool "$W/pool" --count "$POOL" --zone $ORIGIN --key "$W/k.key" >"$W/pool.out"
step "$(cat "$W/pool.out")"
wait_answer $KA "$KP" $ORIGIN SOA $KPID "$W/knot.log" 300
wait_answer $MA "$PORT" $ORIGIN SOA $MPID "$W/mimi.log" 600
# The PIR database is built when PIRCFG is published.
wait_answer $MA "$PORT" "_pir.$ORIGIN" TYPE65282 $MPID "$W/mimi.log" 600
step "mimi (PIR database built) and Knot serve the zone"

MIMI_NEXT=0 KNOT_NEXT=0 MIMI_RECORDS=0
declare -A R=()
# load NAME SERVER K SECONDS [OPTION...]: one generator run against mimi or knot; result in R[NAME],
# the server's CPU use in R[NAME.cpu] (% of one core).
load() {
  local name=$1 server=$2 k=$3 secs=$4 addr port pid first out c0 c1 t0 t1
  shift 4
  if [ "$server" = mimi ]; then addr=$MA port=$PORT pid=$MPID first=$MIMI_NEXT
  else addr=$KA port=$KP pid=$KPID first=$KNOT_NEXT; fi
  c0=$(cpu_ticks "$pid") t0=$(date +%s.%N)
  out=$(taskset -c $LOAD_CPU "$LOAD" --dp "$addr:$port" --zone $ORIGIN --tsig "$W/chat.tsig" \
    --pool "$W/pool" --first "$first" --records-per-update "$k" --seconds "$secs" \
    --concurrency "$CONC" "$@" 2>"$W/$name.err") || { cat "$W/$name.err" >&2; die "generator failed ($name)"; }
  c1=$(cpu_ticks "$pid") t1=$(date +%s.%N)
  R[$name]=$out
  R[$name.cpu]=$(python3 -c 'import sys; c0, c1, t0, t1, hz = map(float, sys.argv[1:]); print(f"{(c1 - c0) / hz / (t1 - t0) * 100:.0f}")' \
    "$c0" "$c1" "$t0" "$t1" "$TCK")
  printf '       %-12s %s server_cpu=%s%%\n' "$name" "$out" "${R[$name.cpu]}"
  [ -s "$W/$name.err" ] && sed 's/^/         /' "$W/$name.err"
  [ -z "$(field "$out" exhausted)" ] || die "the pool of $POOL records ran out: raise POOL"
  local used
  used=$(field "$out" used)
  if [ "$server" = mimi ]; then
    MIMI_NEXT=$((MIMI_NEXT + used)) MIMI_RECORDS=$((MIMI_RECORDS + $(field "$out" records)))
  else KNOT_NEXT=$((KNOT_NEXT + used)); fi
}

RSS_IDLE=$(rss_mib $MPID)
KRSS_IDLE=$(rss_mib $KPID)
step "queries per second, idle"
QPS_IDLE=$(qps $MA "$PORT")
echo "       mimi idle: $QPS_IDLE q/s"

step "UPDATEs, $SECS s each, concurrency $CONC"
for k in 1 100; do
  load mimi-$k mimi $k "$SECS" --probe --verify-answer
  load knot-$k knot $k "$SECS" --probe --verify-answer
done

step "queries per second during update storms"
# load runs in a subshell under storm: take its results from its output file instead.
storm_run() { # name k [option...]
  local name=$1
  storm "$@" >"$W/$name.storm"
  cat "$W/$name.storm"
  R[$name]=$(sed -n "s/^ *$name *//p" "$W/$name.storm" | sed 's/ server_cpu=.*//')
  R[$name.cpu]=$(sed -n 's/.* server_cpu=\([0-9]*\)%.*/\1/p' "$W/$name.storm")
  MIMI_NEXT=$((MIMI_NEXT + $(field "${R[$name]}" used)))
  MIMI_RECORDS=$((MIMI_RECORDS + $(field "${R[$name]}" records)))
}
# storm NAME K [OPTION...]: dnsperf for SECS s (its q/s into a file) while the generator
# runs SECS + 2 s in the background.
storm() {
  local name=$1 k=$2 lp
  shift 2
  load "$name" mimi "$k" $((SECS + 2)) "$@" &
  lp=$!
  sleep 1
  qps $MA "$PORT" >"$W/$name.qps"
  wait $lp || die "storm $name failed"
}
storm_run storm-1 1
R[storm-1.qps]=$(cat "$W/storm-1.qps")
echo "       mimi during 1-record UPDATEs at full speed: ${R[storm-1.qps]} q/s"
storm_run storm-paced 100 --rate 200
R[storm-paced.qps]=$(cat "$W/storm-paced.qps")
echo "       mimi during 100-record UPDATEs at 200/s: ${R[storm-paced.qps]} q/s"

if [ "$MIMI_RECORDS" -lt 100000 ]; then
  step "topping up to 100,000 published mappings ($MIMI_RECORDS so far)"
  load topup mimi 100 600 --max-records $((100000 - MIMI_RECORDS))
fi
RSS_AFTER=$(rss_mib $MPID)
KRSS_AFTER=$(rss_mib $KPID)
step "mimi resident memory: $RSS_IDLE MiB before, $RSS_AFTER MiB after $MIMI_RECORDS published mappings"

# --- private lookup of a fresh mapping ----------------------------------------------------------
PRIV_NEW= PRIV_OLD=
if [ "$PRIVATE" = 1 ]; then
  step "private lookup: root DP, then an UPDATE and mimi lookup --private until it finds it"
  "$MIMI" zone new mimi.arpa. --out "$W/root/root.zone" --ns ns1.mimi.arpa.=$RA >/dev/null
  "$MIMI" zone delegate "$W/root/root.zone" --child $ORIGIN --ns "ns1.$ORIGIN=$MA" >/dev/null
  printf 'listen = ["%s:%s"]\ntrust = "../trust.toml"\n[[zone]]\norigin = "mimi.arpa."\nfile = "root.zone"\n[pir]\nthreads = 1\n' \
    $RA "$PORT" >"$W/root/dp.toml"
  NO_COLOR=1 MIMI_LOG=warn taskset -c $SERVER_CPU "$MIMI" dp serve --config "$W/root/dp.toml" >"$W/root.log" 2>&1 &
  RPID=$!
  pids+=($RPID)
  wait_answer $RA "$PORT" _pir.mimi.arpa. TYPE65282 $RPID "$W/root.log" 60
  printf 'apex = "mimi.arpa."\nroots = ["ns1.mimi.arpa.=%s"]\nport = %s\ntrust = "trust.toml"\n' $RA "$PORT" >"$W/resolver.toml"
  # an existing mapping first (+1 555 000 0000)
  t0=$(date +%s.%N)
  if taskset -c $LOAD_CPU "$MIMI" lookup "+1 555 000 0000" --config "$W/resolver.toml" --private >"$W/priv-old.out" 2>&1; then
    PRIV_OLD=$(python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) * 1000:.0f}')" "$t0" "$(date +%s.%N)")
  else
    echo "       private lookup of an existing mapping failed:"; sed 's/^/         /' "$W/priv-old.out"
  fi
  # record MIMI_NEXT of the pool: number 2i+1, i.e. +1 555 <7 digits>
  i=$MIMI_NEXT
  num=$(printf '+1555%07d' $((2 * i + 1)))
  t0=$(date +%s.%N)
  load private mimi 1 5 --max-records 1 --concurrency 1 >/dev/null
  found=
  for _ in $(seq 30); do
    if taskset -c $LOAD_CPU "$MIMI" lookup "$num" --config "$W/resolver.toml" --private >"$W/priv-new.out" 2>&1; then
      found=1; break
    fi
  done
  if [ -n "$found" ]; then
    PRIV_NEW=$(python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) * 1000:.0f}')" "$t0" "$(date +%s.%N)")
    grep -q "/u/load$i\b" "$W/priv-new.out" || { echo "       unexpected answer:"; sed 's/^/         /' "$W/priv-new.out"; }
  else
    echo "       the private lookup of $num did not find it:"; sed 's/^/         /' "$W/priv-new.out"
  fi
  step "private lookup: existing mapping ${PRIV_OLD:-?} ms; UPDATE to found ${PRIV_NEW:-?} ms"
fi

# --- table ---------------------------------------------------------------------------------------
TOTAL=$((SECONDS - START))
echo
echo "== DNS UPDATE benchmark: $N mappings, $SECS s per run, $CONC concurrent UPDATEs (a TCP connection each), server on CPU $SERVER_CPU, load on CPU $LOAD_CPU; $TOTAL s in all"
python3 - "$QPS_IDLE" "$RSS_IDLE" "$RSS_AFTER" "$KRSS_IDLE" "$KRSS_AFTER" "$MIMI_RECORDS" "${PRIV_OLD:-}" "${PRIV_NEW:-}" <<PY
import sys
qps_idle, rss_idle, rss_after, krss_idle, krss_after, nrec, priv_old, priv_new = sys.argv[1:]
def parse(line):
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
runs = {
$(for n in mimi-1 knot-1 mimi-100 knot-100 storm-1 storm-paced; do printf '    "%s": (parse("%s"), "%s"),\n' "$n" "${R[$n]}" "${R[$n.cpu]}"; done)
}
qps = {"storm-1": int("${R[storm-1.qps]:-0}" or 0), "storm-paced": int("${R[storm-paced.qps]:-0}" or 0)}
def f(v, fmt="{:,.0f}"):
    try:
        return fmt.format(float(v))
    except (TypeError, ValueError):
        return "-"
rows = []
def row(label, m, k="", ratio="", goal=""):
    rows.append((label, m, k, ratio, goal))
for K in ("1", "100"):
    m, mc = runs[f"mimi-{K}"]
    k, kc = runs[f"knot-{K}"]
    what = "1 record" if K == "1" else "100 records"
    ru = float(m["updates_per_s"]) / max(float(k["updates_per_s"]), 1e-9)
    row(f"UPDATE of {what}: UPDATEs/s", f(m["updates_per_s"]), f(k["updates_per_s"]), f"{ru:.2f}", ">= 1.0")
    row(f"UPDATE of {what}: mappings/s", f(m["records_per_s"]), f(k["records_per_s"]), f"{ru:.2f}", ">= 1.0")
    row(f"UPDATE of {what}: to NOERROR p50 / p99 ms", f"{f(m['ack_p50_ms'],'{:.1f}')} / {f(m['ack_p99_ms'],'{:.1f}')}",
        f"{f(k['ack_p50_ms'],'{:.1f}')} / {f(k['ack_p99_ms'],'{:.1f}')}")
    row(f"UPDATE of {what}: to the new answer p50 / p99 ms ({m.get('probes','0')} / {k.get('probes','0')} samples)",
        f"{f(m.get('visible_p50_ms'),'{:.1f}')} / {f(m.get('visible_p99_ms'),'{:.1f}')}",
        f"{f(k.get('visible_p50_ms'),'{:.1f}')} / {f(k.get('visible_p99_ms'),'{:.1f}')}", "", "p99 < 50")
    row(f"UPDATE of {what}: server CPU, errors, answers checked",
        f"{mc}%, {m['errors']}, {m.get('verified','-')}", f"{kc}%, {k['errors']}, {k.get('verified','-')}")
qi = int(qps_idle)
for name, label in (("storm-1", "1-record UPDATEs at full speed"), ("storm-paced", "100-record UPDATEs at 200/s")):
    r, c = runs[name]
    row(f"mimi q/s during {label} ({f(r['updates_per_s'])} UPDATEs/s, {f(r['records_per_s'])} mappings/s)",
        f(qps[name]), "", f"{qps[name] / max(qi, 1):.2f} of idle", ">= 0.9")
row("mimi q/s idle (existing names, UDP)", f(qi))
row(f"resident memory: idle / after {int(nrec):,} published mappings (MiB)", f"{rss_idle} / {rss_after}", f"{krss_idle} / {krss_after}")
if priv_old or priv_new:
    row("private lookup (mimi lookup --private): existing mapping / UPDATE to found, ms", f"{priv_old or '-'} / {priv_new or '-'}", "", "", "")
w = [max(len(r[i]) for r in rows + [("", "mimi", "Knot", "mimi/Knot", "goal")]) for i in range(5)]
print(f"{'':<{w[0]}}  {'mimi':>{w[1]}}  {'Knot':>{w[2]}}  {'mimi/Knot':>{w[3]}}  {'goal':<{w[4]}}")
for r in rows:
    print(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}  {r[4]:<{w[4]}}")
PY
