#!/usr/bin/env bash
# Per-operation costs for the cost model (tools/scale/model.py, docs/scale.md), measured on
# this machine:
#   - examples/scale_costs.rs: OPRF, MulPIR, replica and delta figures (thread CPU time);
#   - the DP's CPU per public query: `mimi dp serve` on loopback with the benchmark carrier
#     zone of tools/bench/dp.sh (MAPPINGS signed mappings), driven by dnsperf for SECS
#     seconds over UDP and then over TCP; the DP process's utime+stime (/proc/PID/stat)
#     over the run divided by the queries answered.
# Writes tools/scale/measured.json (the example's JSON, the public-query figures and the
# host) and prints it. Without dnsperf the public-query figures are null ("not measured").
#
# Usage: tools/scale/measure.sh [--quick] [scale_costs flags...]
#   env: SECS (10), MAPPINGS (200000), OUT (tools/scale/measured.json), DNSPERF (dnsperf)
# Needs dnsperf, dig, taskset (apt-get install dnsperf dnsutils util-linux).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
SECS=${SECS:-10}
MAPPINGS=${MAPPINGS:-200000}
OUT=${OUT:-tools/scale/measured.json}
DNSPERF=${DNSPERF:-dnsperf}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --features mulpir --bin mimi --example scale_costs
MIMI=$(realpath "$TARGET/release/mimi")
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== examples/scale_costs $*" >&2
"$TARGET/release/examples/scale_costs" "$@" >"$dir/costs.json"

# --- public queries -------------------------------------------------------------------------
ORIGIN=5.5.5.1.e164.mimi.arpa.
SERVER_CPU=0 LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || { LOAD_CPU=0; echo "note: one core only, DP and dnsperf share it" >&2; }
# cpu_ticks PID: user + system clock ticks of the whole process (all threads); fields 14 and
# 15 of /proc/PID/stat, counted after the ")" that ends the command name.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
# run MODE FILE -> "completed request_bytes response_bytes ticks"
run() {
  local before after out
  before=$(cpu_ticks "$dp_pid")
  out=$(taskset -c "$LOAD_CPU" "$DNSPERF" -s 127.0.0.91 -p "$port" -d "$2" -m "$1" -l "$SECS" -c 20 -q 200 2>&1)
  after=$(cpu_ticks "$dp_pid")
  echo "$out" | awk -v t=$((after - before)) '
    /Queries completed:/ { c = $3 }
    /Average packet size:/ { gsub(",", ""); q = $5; r = $7 }
    END { print c, q, r, t }'
}
if command -v "$DNSPERF" >/dev/null; then
  echo "== public queries: $MAPPINGS mappings, dnsperf $SECS s per mode (DP on CPU $SERVER_CPU, dnsperf on CPU $LOAD_CPU)" >&2
  bench_carrier_zone "$dir/zone" "$MAPPINGS"
  port=$(free_port 127.0.0.91)
  bench_dp_conf "127.0.0.91:$port" "$ORIGIN" g.zone >"$dir/zone/dp.toml"
  NO_COLOR=1 MIMI_LOG=warn taskset -c "$SERVER_CPU" "$MIMI" dp serve --config "$dir/zone/dp.toml" 2>"$dir/dp.log" &
  dp_pid=$!
  pids+=("$dp_pid")
  wait_dns 127.0.0.91 "$port" "$ORIGIN" "$dp_pid" "$dir/dp.log"
  udp=$(run udp "$dir/zone/pos.txt")
  tcp=$(run tcp "$dir/zone/pos.txt")
  rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$dp_pid/status")
  kill "$dp_pid"
  wait "$dp_pid" 2>/dev/null || true
  echo "udp: $udp; tcp: $tcp (completed, request bytes, response bytes, CPU ticks)" >&2
  zone_bytes=$(stat -c %s "$dir/zone/g.zone")
else
  echo "!!!!! dnsperf is not installed (apt-get install dnsperf): the DP's CPU per public" >&2
  echo "!!!!! query is NOT measured; measured.json has null there and the model says so." >&2
  udp="" tcp="" rss_kib="" zone_bytes=""
fi

mkdir -p "$(dirname "$OUT")"
python3 - "$dir/costs.json" "$OUT" "$(getconf CLK_TCK)" "$MAPPINGS" "$SECS" "$udp" "$tcp" \
  "$rss_kib" "$zone_bytes" "$load_before" <<'PY'
import json, os, platform, subprocess, sys, time
costs, out, tck, mappings, secs, udp, tcp, rss_kib, zone_bytes, load_before = sys.argv[1:]
tck, mappings = int(tck), int(mappings)
data = json.load(open(costs))

def mode(fields, name):
    if not fields:
        return None
    completed, req, resp, ticks = fields.split()
    completed, ticks = int(completed), int(ticks)
    return {
        "transport": name,
        "queries_completed": completed,
        "qps": completed / float(secs),
        "dp_cpu_s": ticks / tck,
        "dp_cpu_ns_per_query": ticks / tck * 1e9 / completed if completed else None,
        "request_bytes": float(req),
        "response_bytes": float(resp),
    }

data["public_query"] = {
    "source": "tools/scale/measure.sh: mimi dp serve, dnsperf -c 20 -q 200, /proc/PID/stat utime+stime",
    "measured": bool(udp),
    "mappings": mappings,
    "seconds_per_mode": int(secs),
    "udp": mode(udp, "udp"),
    "tcp": mode(tcp, "tcp"),
    "dp_rss_bytes": int(rss_kib) * 1024 if rss_kib else None,
    "dp_rss_bytes_per_mapping": int(rss_kib) * 1024 / mappings if rss_kib else None,
    "zone_file_bytes_per_mapping": int(zone_bytes) / mappings if zone_bytes else None,
}
cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
mem = next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
data["host"] = {
    "description": f"{os.cpu_count()} cores, {cpu}, {int(mem) // 1024 // 1024} GiB, {platform.system()} {platform.release()}",
    "cores": os.cpu_count(),
    "cpu": cpu,
    "mem_gib": int(mem) / 1024 / 1024,
    "load_before": load_before,
    "load_after": " ".join(open("/proc/loadavg").read().split()[:3]),
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "commit": commit,
}
with open(out, "w") as f:
    json.dump(data, f, indent=2, sort_keys=True)
    f.write("\n")
PY
cat "$OUT"
