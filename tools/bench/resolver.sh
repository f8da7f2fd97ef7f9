#!/usr/bin/env bash
# Resolver benchmark: `mimi resolver serve` against Unbound on the demo tree (zones/, one
# `mimi dp serve` per zone and address as in `mimi demo`), with N extra numbers imported into
# the carrier block 5.5.5.1.e164.mimi.arpa. (signed by zones/keys/chat.example.key).
#
#  1. Cache hits: dnsperf asks for the demo's SSI owner names (TYPE65280) over UDP after both
#     caches are warm; each resolver pinned to CPU 0 (one thread / one runtime worker),
#     dnsperf to CPU 1; two alternating rounds, the better queries per second of each and
#     the ratio mimi/unbound.
#  2. Uncached name, delegations cached: each of the N numbers asked once through each
#     resolver's DNS listener (the tree's NS records are cached from step 1); latency at
#     the client, p50/p99.
#  3. Cold lookup through the 4-level tree (root -> e164 -> 1.e164 -> 5.5.5.1.e164): for
#     Unbound, its cache emptied before each number (`flush_zone mimi.arpa.` and
#     `flush_infra all` over its remote-control socket), latency at the client; for mimi,
#     the same in one warm process (examples/cold_lookups.rs: `Resolver::flush`, then the
#     lookup, on Unbound's CPU), and also `mimi lookup NUMBER --config R --json` per number
#     (a new process: the same walk plus the page faults and lazy set-up of a fresh
#     process; elapsed_ms is measured inside it, without process start-up). In rounds of
#     25 numbers, all three in turn, so a busy spell on a shared machine falls on each.
# Every lookup must find its mapping; the script fails otherwise.
#
# Like tools/interop/unbound.sh it runs in a private network namespace when it can, with
# the DPs on port 53 there (Unbound sends queries to glue addresses on port 53 only);
# otherwise (or with MIMI_NO_NETNS=1) the DPs share a free port and Unbound gets a stub-zone
# per zone, so its cold lookups skip the referrals and look better than they are.
#
# Usage: tools/bench/resolver.sh [SECONDS] [NUMBERS]   (default: 10 s per dnsperf run, 2000)
# Needs unbound, dnsperf, dnsutils, python3, taskset (apt-get install unbound dnsperf dnsutils).
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/../.."
. tools/lib.sh
SECS=${1:-10}
N=${2:-2000}
[ -n "${MIMI_IN_NETNS:-}" ] || cargo build --release --quiet --bin mimi --example cold_lookups
MIMI=${MIMI:-$PWD/target/release/mimi}
COLD=$(dirname "$MIMI")/examples/cold_lookups
sbin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || echo "$1"; }
UNBOUND=$(sbin unbound) IP=$(sbin ip)
for t in dig python3 dnsperf taskset "$UNBOUND"; do
  command -v "$t" >/dev/null || { echo "resolver.sh: needs $t (unbound, dnsperf, dnsutils, python3)" >&2; exit 1; }
done

if [ -z "${MIMI_IN_NETNS:-}" ] && [ -z "${MIMI_NO_NETNS:-}" ] && command -v unshare >/dev/null &&
   command -v "$IP" >/dev/null; then
  for flags in -n -rn; do
    if unshare $flags "$IP" link set lo up 2>/dev/null; then
      exec unshare $flags env MIMI_IN_NETNS=1 MIMI="$MIMI" bash "$SELF" "$SECS" "$N"
    fi
  done
fi

U=127.0.0.93 R=127.0.0.94
W=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "resolver.sh: kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
die() { echo "resolver.sh: $*" >&2; exit 1; }


if [ -n "${MIMI_IN_NETNS:-}" ]; then
  "$IP" link set lo up
  MODE=netns P=53
else
  MODE=stubs P=$(free_port "${ALL_DP[@]}")
fi
UP=$(free_port $U)
RP=$(free_port $R)
SERVER_CPU=0 LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || { LOAD_CPU=0; echo "note: one core only, resolver and load share it"; }

# --- the tree, with N more numbers in the carrier block ------------------------------------
cp zones/*.zone zones/trust.toml "$W/"
python3 - "$N" "$W" <<'PY'
import sys
n, w = int(sys.argv[1]), sys.argv[2]
with open(f"{w}/numbers.csv", "w") as f:
    f.write("sii,ssi,context,priority,ttl\n")
    for i in range(n):
        f.write(f"+1555{4000000 + i:07d},mimi://chat.example/u/bench{i},any,10,3600\n")
with open(f"{w}/numbers.txt", "w") as f, open(f"{w}/owners.txt", "w") as o:
    for i in range(n):
        f.write(f"+1555{4000000 + i:07d}\n")
        o.write(".".join(reversed(f"1555{4000000 + i:07d}")) + ".e164.mimi.arpa.\n")
PY
"$MIMI" zone import "$W/5.5.5.1.e164.zone" --csv "$W/numbers.csv" --key zones/keys/chat.example.key >/dev/null
for i in 1 $((N / 2)) "$N"; do # the owner names above are what `mimi name` computes
  [ "$("$MIMI" name "$(sed -n "${i}p" "$W/numbers.txt")")" = "$(sed -n "${i}p" "$W/owners.txt")" ] ||
    die "owner name of line $i of numbers.txt differs from mimi name"
done
# The load of both resolvers comes from one address: no anonymous quota.
DP_EXTRA=$'[access]\nanonymous_lookups_per_day = "unlimited"' \
  start_tree_dps "$W" "$W" "$W/trust.toml" "$P" taskset -c "$LOAD_CPU"

# --- Unbound and mimi resolver serve, each on CPU 0 ------------------------------------------
: >"$W/root.hints"
{
  unbound_server_conf "$W" $U "$UP"
  cat <<EOF
  verbosity: 0
remote-control:
  control-enable: yes
  control-interface: "$W/unbound.ctl"
  control-use-cert: no
EOF
  if [ $MODE = netns ]; then
    printf 'stub-zone:\n  name: "mimi.arpa."\n  stub-addr: 127.53.0.1@%s\n' "$P"
  else
    unbound_tree_stubs "$P"
  fi
} >"$W/unbound.conf"
taskset -c "$SERVER_CPU" "$UNBOUND" -d -c "$W/unbound.conf" >"$W/unbound.log" 2>&1 &
pids+=($!)
wait_dns $U "$UP" mimi.arpa. $! "$W/unbound.log"

cat >"$W/resolver.toml" <<EOF
roots = ["127.53.0.1"]
port = $P
trust = "trust.toml"
listen = ["$R:$RP"]
[limits]
udp_threads = 1  # pinned to one core
EOF
MIMI_LOG=warn taskset -c "$SERVER_CPU" "$MIMI" resolver serve --config "$W/resolver.toml" >"$W/resolver.log" 2>&1 &
pids+=($!)
wait_dns $R "$RP" mimi.arpa. $! "$W/resolver.log"

# --- 1. cache hits ----------------------------------------------------------------------------
FOUND=("+1 555 111 2222" "+1 555 111 3333" "+1 202 555 0100" "+44 20 7946 0000" hugh@example.com carol@example.com)
: >"$W/hits.txt"
for s in "${FOUND[@]}"; do
  o=$("$MIMI" name "$s")
  for r in "$U $UP" "$R $RP"; do
    set -- $r
    n=$(dig @"$1" -p "$2" +time=2 +tries=2 +short "$o" TYPE65280 | grep -c . || true)
    [ "$n" -ge 1 ] || die "warm-up: no SSI record for $s ($o) from $1:$2"
  done
  echo "$o TYPE65280" >>"$W/hits.txt"
done
perf() { # ADDR PORT -> "qps lost noerror%"
  taskset -c "$LOAD_CPU" dnsperf -s "$1" -p "$2" -d "$W/hits.txt" -l "$SECS" -c 20 -q 200 2>/dev/null |
    awk '/Queries lost:/ { lost = $3 } /Response codes:/ { ok = ($3 == "NOERROR") ? $5 : "(0%)" }
         /Queries per second/ { qps = int($4) } END { gsub(/[(),%]/, "", ok); print qps, lost, ok }'
}
# Two rounds, alternating, the better of each: less sensitive to whatever else runs.
mq=0 uq=0 ml=0 ul=0
for _ in 1 2; do
  read -r q l okp <<<"$(perf $R "$RP")"
  [ "$okp" = 100.00 ] || die "dnsperf: $okp% of mimi's answers were NOERROR, not all"
  [ "$q" -gt "$mq" ] && mq=$q ml=$l
  read -r q l okp <<<"$(perf $U "$UP")"
  [ "$okp" = 100.00 ] || die "dnsperf: $okp% of Unbound's answers were NOERROR, not all"
  [ "$q" -gt "$uq" ] && uq=$q ul=$l
done

# --- 2. and 3. latency ------------------------------------------------------------------------
# timed ADDR PORT FLUSH OWNERS: asks every owner in the file OWNERS once; prints each
# latency in ms.
timed() {
  python3 - "$1" "$2" "$3" "$4" "$W/unbound.ctl" <<'PY'
import random, socket, struct, sys, time
addr, port, flush, owners, ctl = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.connect((addr, port))
for name in open(owners).read().split():
    if flush:
        # unbound-control's protocol on its unix socket (no TLS): "UBCT1 COMMAND\n", reply, EOF.
        for cmd in ("flush_zone mimi.arpa.", "flush_infra all"):
            c = socket.socket(socket.AF_UNIX); c.settimeout(3); c.connect(ctl)
            c.sendall(f"UBCT1 {cmd}\n".encode()); reply = b""
            while chunk := c.recv(4096):
                reply += chunk
            c.close()
            if not reply.startswith(b"ok"):
                sys.exit(f"unbound-control {cmd}: {reply!r}")
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", 65280, 1)
    t = time.perf_counter(); s.send(q)
    while True:
        r = s.recv(65535)
        if r[:2] == q[:2]:
            break
    ms = (time.perf_counter() - t) * 1000
    rcode, ancount = r[3] & 15, struct.unpack(">H", r[6:8])[0]
    if rcode != 0 or ancount != 1:
        sys.exit(f"{name}: rcode {rcode}, {ancount} answers from {addr}:{port}")
    print(f"{ms:.3f}")
PY
}
timed $R "$RP" 0 "$W/owners.txt" >"$W/warm-mimi.ms"
timed $U "$UP" 0 "$W/owners.txt" >"$W/warm-unbound.ms"
# Cold lookups in rounds of 25 numbers, Unbound's, then mimi's in one warm process with
# its cache flushed before each (examples/cold_lookups.rs, pinned like Unbound), then
# mimi's as `mimi lookup` processes (new process, empty cache), so a busy spell on a
# shared machine falls on all three. elapsed_ms and queries from mimi's JSON.
: >"$W/cold-unbound.ms"
: >"$W/cold-mimi.json"
: >"$W/cold-mimi-process.json"
split -l 25 -d -a 4 "$W/owners.txt" "$W/round-owners."
split -l 25 -d -a 4 "$W/numbers.txt" "$W/round-numbers."
for r in "$W"/round-owners.*; do
  numbers="$W/round-numbers.${r##*.}"
  timed $U "$UP" 1 "$r" >>"$W/cold-unbound.ms"
  taskset -c "$SERVER_CPU" "$COLD" "$W/resolver.toml" <"$numbers" >>"$W/cold-mimi.json" ||
    die "cold_lookups failed"
  while read -r n; do
    "$MIMI" lookup "$n" --config "$W/resolver.toml" --json >>"$W/cold-mimi-process.json" ||
      die "mimi lookup $n failed"
  done <"$numbers"
done

python3 - "$W" "$SECS" "$N" "$MODE" "$mq" "$uq" "$ml" "$ul" <<'PY'
import json, statistics, sys
w, secs, n, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
mq, uq, ml, ul = (int(x) for x in sys.argv[5:9])
def ms(f):
    return sorted(float(x) for x in open(f"{w}/{f}").read().split())
def pct(v, p):
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
def cold(f):
    runs = [json.loads(l) for l in open(f"{w}/{f}")]
    bad = [c["sii"] for c in runs if c["status"] != "found"]
    if bad or len(runs) != int(n):
        sys.exit(f"resolver.sh: {len(runs)} cold lookups in {f}; not found: {bad[:5]}")
    return sorted(c["elapsed_ms"] for c in runs), statistics.mean(c["queries"] for c in runs)
cold_mimi, queries = cold("cold-mimi.json")
cold_process, _ = cold("cold-mimi-process.json")
rows = [("uncached name, delegations cached", ms("warm-mimi.ms"), ms("warm-unbound.ms")),
        ("cold lookup, cache flushed", cold_mimi, ms("cold-unbound.ms")),
        ("cold lookup, new mimi process", cold_process, ms("cold-unbound.ms"))]
print(f"resolver benchmark: demo tree + {n} numbers in 5.5.5.1.e164 ({mode} mode), "
      f"resolvers on CPU 0, load on CPU 1")
print(f"{'':46} {'mimi':>16} {'unbound':>16} {'mimi/unbound':>13}")
print(f"{'cache hits, queries/s (best of 2 x ' + secs + ' s)':46} {mq:>16} {uq:>16} {mq / max(uq, 1):>13.2f}")
for label, m, u in rows:
    print(f"{label + ', ms p50 / p99':46} {pct(m, 50):7.3f} / {pct(m, 99):6.3f} {pct(u, 50):7.3f} / {pct(u, 99):6.3f}"
          f" {pct(m, 50) / pct(u, 50):>13.2f}")
print(f"mimi: {queries:.1f} queries per cold lookup; dnsperf lost {ml} (mimi) and {ul} (unbound) queries;")
print("latency ratios are of the p50s (above 1: mimi slower)")
PY
