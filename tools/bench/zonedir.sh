#!/usr/bin/env bash
# Zone-directory benchmark: a DP serving N one-number zones (ported numbers, one signed
# mapping each), from `[zone_directory]`, against Knot 3 serving the same N zone files from
# its config, in one run: time from start until the last zone answers, and resident memory
# then; mimi also with [pir] on (a private-lookup database per zone), and the time until a
# zone file dropped into the directory is answered.
# Usage: tools/bench/zonedir.sh [ZONES [PIR_ZONES]]   (defaults 5000 and 500: each zone's
# private-lookup database takes megabytes, so the [pir] run serves the first PIR_ZONES only;
# needs knot, dnsutils, python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
N=${1:-5000}
NPIR=${2:-500}
cargo build --release --quiet
MIMI=$PWD/target/release/mimi
KNOTD=$(sbin knotd)
for tool in dig python3 "$KNOTD"; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install knot dnsutils python3)"; exit 1; }
done
W=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
A=127.0.0.91

# N mappings signed in one zone, then split into one zone per number (RFC 3597 form, which
# both servers load).
python3 - "$N" >"$W/map.csv" <<'PY'
import sys
print("sii,ssi,context,priority,ttl")
for i in range(int(sys.argv[1])):
    print(f"+1555{i:07d},mimi://chat.example/u/user{i},any,10,3600")
PY
"$MIMI" key generate --provider chat.example --out "$W/chat.key" >/dev/null
"$MIMI" key public "$W/chat.key" >"$W/trust.toml"
"$MIMI" zone new 5.5.5.1.e164.mimi.arpa. --out "$W/all.zone" --ns ns1.5.5.5.1.e164.mimi.arpa.=$A >/dev/null
"$MIMI" zone import "$W/all.zone" --csv "$W/map.csv" --key "$W/chat.key" --valid-days 30 >/dev/null
"$MIMI" zone export "$W/all.zone" --generic --out "$W/all.generic"
mkdir "$W/zones.d"
python3 - "$W/all.generic" "$W/zones.d" "$A" >"$W/origins" <<'PY'
import sys
src, out, addr = sys.argv[1:]
origin = None
for line in open(src):
    if line.startswith("$ORIGIN"):
        origin = line.split()[1]
        continue
    f = line.split()
    if len(f) < 5 or f[3] != "TYPE65280":
        continue
    owner = f[0] if f[0].endswith(".") else f"{f[0]}.{origin}"
    with open(f"{out}/{owner}zone", "w") as z:
        z.write(f"$ORIGIN {owner}\n@ 3600 IN SOA ns1 hostmaster 1 3600 600 1209600 300\n"
                f"@ 3600 IN NS ns1\nns1 3600 IN A {addr}\n@ {' '.join(f[1:])}\n")
    print(owner)
PY
last=$(tail -1 "$W/origins")
echo "zone-directory benchmark: $N one-number zones, $(nproc) cores"

rss() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
# started LABEL PID PORT: waits until the last zone answers; prints seconds and RSS.
started() {
  local t0=$2 pid=$3 port=$4 i
  for i in $(seq 1200); do
    kill -0 "$pid" 2>/dev/null || { echo "$1 exited"; exit 1; }
    if dig @$A -p "$port" +norec +time=1 +tries=1 "$last" SOA 2>/dev/null | grep -q "status: NOERROR"; then
      python3 -c "import time; print(f'{time.time() - $t0:.2f}')"
      return
    fi
    sleep 0.1
  done
  echo "$1: the last zone did not answer within 120 s"; exit 1
}

run_mimi() { # LABEL DIR EXTRA_CONFIG -> "seconds MiB seconds-to-serve-an-added-file"
  local port t0 pid secs mib added=- last
  port=$(free_port $A)
  last=$(find "$W/$2" -name '*.zone' -printf '%f\n' | sort | tail -1)
  last=${last%zone}
  rm -f "$W/$2"/*.journal "$W/$2"/*.journal.removed
  printf 'listen = ["%s:%s"]\ntrust = "trust.toml"\n[zone_directory]\npath = "%s"\n%s' \
    $A "$port" "$2" "$3" >"$W/dp.toml"
  t0=$(python3 -c 'import time; print(time.time())')
  NO_COLOR=1 MIMI_LOG=warn "$MIMI" dp serve --config "$W/dp.toml" >"$W/dp.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  secs=$(started "$1" "$t0" "$pid" "$port")
  mib=$(rss "$pid")
  if [ "$1" = mimi ]; then
    # One more zone dropped in while serving: answered at the next scan (1 s by default).
    local extra=9.9.9.9.9.9.9.5.5.5.1.e164.mimi.arpa.
    sed "s/^\$ORIGIN .*/\$ORIGIN $extra/; /TYPE65280/d" "$W/zones.d/${last}zone" >"$W/.new"
    t0=$(python3 -c 'import time; print(time.time())')
    mv "$W/.new" "$W/zones.d/${extra}zone"
    added=$(last=$extra started "$1" "$t0" "$pid" "$port")
    rm -f "$W/zones.d/${extra}zone"
  fi
  echo "$secs $mib $added"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

run_knot() {
  local port t0 pid secs o
  port=$(free_port $A)
  mkdir -p "$W/knot"
  {
    printf 'server:\n    rundir: "%s"\n    listen: %s@%s\n    background-workers: 1\n' "$W/knot" $A "$port"
    printf 'database:\n    storage: "%s"\nlog:\n  - target: stderr\n    any: warning\n' "$W/knot"
    printf 'template:\n  - id: default\n    storage: "%s"\n    zonefile-sync: -1\n    journal-content: none\nzone:\n' "$W/zones.d"
    while read -r o; do printf '  - domain: %s\n    file: "%szone"\n' "$o" "$o"; done <"$W/origins"
  } >"$W/knot.conf"
  t0=$(python3 -c 'import time; print(time.time())')
  "$KNOTD" -c "$W/knot.conf" >"$W/knot.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  secs=$(started knot "$t0" "$pid" "$port")
  echo "$secs $(rss "$pid")"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

mkdir "$W/pir.d"
head -n "$NPIR" "$W/origins" | while read -r o; do cp "$W/zones.d/${o}zone" "$W/pir.d/"; done
read -r m_s m_mib m_add < <(run_mimi mimi zones.d "")
read -r k_s k_mib < <(run_knot)
read -r p_s p_mib _ < <(run_mimi "mimi [pir]" pir.d $'[pir]\nthreads = 1\n')
printf '%-36s %10s %10s\n' "" "start (s)" "RSS (MiB)"
printf '%-36s %10s %10s\n' "mimi dp serve, $N zones (directory)" "$m_s" "$m_mib" \
  "knotd, $N zones (in its config)" "$k_s" "$k_mib" "mimi dp serve, $NPIR zones with [pir]" "$p_s" "$p_mib"
echo "a zone file dropped into the directory while serving: answered after $m_add s (scan_interval_ms = 1000)"
python3 - "$m_s" "$m_mib" "$k_s" "$k_mib" <<'PY'
import sys
ms, mm, ks, km = map(float, sys.argv[1:])
print(f"ratio mimi/knot: start {ms / max(ks, 0.01):.2f}, memory {mm / max(km, 1):.2f} (below 1.0: mimi is faster / smaller)")
PY
