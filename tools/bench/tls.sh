#!/usr/bin/env bash
# DNS over TLS (RFC 7858) benchmark: `mimi dp serve` against NSD's DoT listener on the same
# zone, and `mimi resolver serve` against Unbound's on cached names; every server pinned to
# CPU 0, the load (dnsperf 2.10 `-m dot`, or the idle-connection client) to CPU 1; ratios
# are of figures measured in this run only.
#
#  1. DP queries per second over DoT: the zone of tools/bench/dp.sh (NUMBERS signed
#     mappings, exported in RFC 3597 form) served by `mimi dp serve` and NSD 4.6
#     (`tls-service-key`, `tls-service-pem`, `tls-port`), dnsperf with 20 connections and
#     200 queries outstanding asking for existing owners (TYPE65280).
#  2. Resolver queries per second over DoT on cached names: the demo tree (one
#     `mimi dp serve` per zone and address, on CPU 1), `mimi resolver serve` and Unbound
#     (stub zones pointing at the DPs, as tools/bench/resolver.sh without a network
#     namespace: only cache hits are measured) warmed over UDP with the demo's SSI owner
#     names, then dnsperf over DoT on those names.
#  3. TLS handshakes per second of the DP: examples/tls_handshakes.rs (tokio-rustls, one
#     thread) keeps 50 connections going, each a TCP connect, a full TLS handshake (no
#     resumption), one query and its answer, close_notify and close, then the next. It
#     skips checking the server's certificate and handshake signature, so that its core
#     goes to the key exchange every handshake needs and the server is the limit. (dnsperf
#     -O num-queries-per-conn=1 does the same without resumption, but its connection
#     handling kept it under 1,000 handshakes/s whatever the server: it measured itself.)
#     Also the server's CPU time per handshake (from /proc), which does not depend on
#     which side was the limit.
#  4. Memory per idle DoT connection of the DP: on freshly started servers, a python3
#     client (ssl module) opens IDLE connections (default 200) to each, asks one query on
#     each, waits a second and reads the server's resident memory (the process and its
#     children: NSD serves from a forked child); the growth over the value before, per
#     connection. Then it asks one more query on every connection, which must all answer
#     (so none was closed for idleness or a connection limit in between).
#
# Every server gets the same ECDSA P-256 certificate from `mimi tls ca` / `mimi tls issue`;
# dnsperf does not check certificates. Queries per second and handshakes per second are
# the better of two alternating rounds of SECONDS each (less sensitive to whatever else
# runs); every dnsperf round must get only NOERROR answers.
#
# Knot: Knot 3.2 (Debian 12's) serves DNS over QUIC (`quic: on`) but not DNS over TLS (a
# DoT server appeared in Knot 3.4), so it has no column here.
#
# Usage: tools/bench/tls.sh [SECONDS] [NUMBERS]   (default: 10 s per dnsperf run, 10000
#        mappings in the DP's zone; IDLE=N connections for step 4, KEEP=1 keeps the
#        temporary directory)
# Needs nsd, unbound, dnsperf, dnsutils, python3, taskset
# (apt-get install nsd unbound dnsperf dnsutils).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
SECS=${1:-10}
N=${2:-10000}
IDLE=${IDLE:-200}
cargo build --release --quiet
cargo build --release --quiet --example tls_handshakes
MIMI=$PWD/target/release/mimi
HANDSHAKES=$PWD/target/release/examples/tls_handshakes
NSD=$(sbin nsd) UNBOUND=$(sbin unbound)
for t in dig dnsperf python3 taskset "$NSD" "$UNBOUND"; do
  command -v "$t" >/dev/null || { echo "tls.sh: needs $t (nsd, unbound, dnsperf, dnsutils, python3)" >&2; exit 1; }
done

W=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "tls.sh: kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
die() { echo "tls.sh: $*" >&2; exit 1; }
SERVER_CPU=0 LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || { LOAD_CPU=0; echo "note: one core only, servers and load share it"; }
ORIGIN=5.5.5.1.e164.mimi.arpa.
M=127.0.0.121 D=127.0.0.123 R=127.0.0.124 U=127.0.0.125 # mimi DP, NSD, mimi resolver, Unbound
MP=$(free_port $M) MTP=$(free_port $M)
DP=$(free_port $D) DTP=$(free_port $D)
RP=$(free_port $R) RTP=$(free_port $R)
UP=$(free_port $U) UTP=$(free_port $U)

# One certificate for every server (names: all four addresses).
(cd "$W" && "$MIMI" tls ca --out ca >/dev/null &&
  "$MIMI" tls issue --ca ca --name bench.test --name $M --name $D --name $R --name $U --out srv >/dev/null)

# tree_pids PID: PID and all its descendants (NSD's first process becomes its xfrd, with
# the main process below it and the server process below that).
tree_pids() {
  ps -eo pid=,ppid= | awk -v root="$1" '{ up[$1] = $2 }
    END { for (p in up) { q = p; while (q != root && q in up) q = up[q]; if (q == root) print p } }'
}
# rss_kib PID: resident memory of PID and its descendants, KiB.
rss_kib() { ps -o rss= -p "$(tree_pids "$1" | paste -sd,)" | awk '{ s += $1 } END { print s }'; }
# cpu_ticks PID: CPU time (user + system, clock ticks) of PID and its descendants so far.
cpu_ticks() {
  local p t=0 f
  for p in $(tree_pids "$1"); do
    # Fields after the command name, which is in parentheses: utime and stime are the 12th
    # and 13th of them (14 and 15 of proc(5)).
    f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || f=0
    t=$((t + ${f:-0}))
  done
  echo "$t"
}
TICK=$(getconf CLK_TCK)

# dot ADDR PORT FILE CLIENTS OUTSTANDING [DNSPERF_ARGS...] -> "qps lost noerror% ticks":
# one dnsperf -m dot run on LOAD_CPU; ticks: CPU the server SERVER_PID used meanwhile.
dot() {
  local a=$1 p=$2 f=$3 c=$4 q=$5 t0 out
  shift 5
  t0=$(cpu_ticks "$SERVER_PID")
  out=$(taskset -c "$LOAD_CPU" dnsperf -m dot -s "$a" -p "$p" -d "$f" -l "$SECS" -c "$c" -q "$q" "$@" 2>&1) ||
    die "dnsperf -m dot against $a:$p failed: $(tail -3 <<<"$out")"
  awk -v ticks=$(($(cpu_ticks "$SERVER_PID") - t0)) '
    /Queries lost:/ { lost = $3 } /Response codes:/ { ok = ($3 == "NOERROR") ? $5 : "(0%)" }
    /Queries per second/ { qps = int($4) }
    END { gsub(/[(),%]/, "", ok); print qps + 0, lost + 0, (ok == "" ? 0 : ok), ticks }' <<<"$out"
}
# handshakes ADDR PORT -> "rate failures 100.00 ticks": step 3's load on LOAD_CPU for SECS.
handshakes() {
  local t0 out
  t0=$(cpu_ticks "$SERVER_PID")
  out=$(taskset -c "$LOAD_CPU" "$HANDSHAKES" "$1:$2" "$SECS" 50 "$ORIGIN") || die "tls_handshakes against $1:$2 failed"
  # handshakes=N seconds=S rate=R failures=F
  awk -F '[ =]' -v ticks=$(($(cpu_ticks "$SERVER_PID") - t0)) '
    { print int($6), $8, ($2 > 0 ? "100.00" : "0"), ticks }' <<<"$out"
}
# best2 FUNC NAME_A PID_A ARGS_A NAME_B PID_B ARGS_B: two alternating rounds of FUNC
# (dot or handshakes) against A and B; sets best_<NAME>="rate lost ticks" (the round with
# the higher rate) for each.
best2() {
  local func=$1 round side name pid args q l okp t
  shift
  for round in 1 2; do
    for side in "$1|$2|$3" "$4|$5|$6"; do
      IFS='|' read -r name pid args <<<"$side"
      SERVER_PID=$pid
      # shellcheck disable=SC2086
      read -r q l okp t <<<"$($func $args)"
      [ "$okp" = 100.00 ] || die "dnsperf round $round: $okp% of $name's answers were NOERROR, not all"
      local cur="best_$name"
      if [ "$round" = 1 ] || [ "$q" -gt "$(cut -d' ' -f1 <<<"${!cur}")" ]; then
        printf -v "best_$name" '%s %s %s' "$q" "$l" "$t"
      fi
    done
  done
}

# idle ADDR PORT PID COUNT -> "rss_before_kib rss_after_kib answered": step 4's client.
idle() {
  taskset -c "$LOAD_CPU" python3 - "$@" "$ORIGIN" <<'PY'
import os, socket, ssl, struct, sys, time
addr, port, pid, count, origin = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["dot"])

def rss():
    # VmRSS of pid and its descendants (NSD answers from a forked grandchild), KiB.
    pids, todo = set(), [pid]
    while todo:
        p = todo.pop()
        pids.add(p)
        for task in os.listdir(f"/proc/{p}/task"):
            todo.extend(int(c) for c in open(f"/proc/{p}/task/{task}/children").read().split())
    total = 0
    for p in pids:
        for line in open(f"/proc/{p}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total

def query(s, qid):
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in origin.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", 6, 1)  # SOA IN
    s.sendall(struct.pack(">H", len(q)) + q)
    head = b""
    while len(head) < 2:
        chunk = s.recv(2 - len(head))
        if not chunk:
            return False
        head += chunk
    (n,) = struct.unpack(">H", head)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return False
        body += chunk
    return body[:2] == q[:2] and body[3] & 15 == 0

def connect():
    s = ctx.wrap_socket(socket.create_connection((addr, port), timeout=10))
    if not query(s, 1):
        sys.exit(f"no answer over DoT from {addr}:{port}")
    return s

# One connection first, so that what every connection shares (the TLS configuration, the
# first buffers) is in the "before" figure.
connect().close()
time.sleep(0.5)
before = rss()
conns = [connect() for _ in range(count)]
time.sleep(1)
after = rss()
answered = 0
for i, s in enumerate(conns):
    try:
        answered += query(s, 2 + i)
    except OSError:
        pass
for s in conns:
    s.close()
print(before, after, answered)
PY
}

printf "DoT benchmark: %s mappings, %s s per dnsperf run, servers on CPU %s, load on CPU %s\n" \
  "$N" "$SECS" "$SERVER_CPU" "$LOAD_CPU"

# --- the DP zone, mimi dp serve and NSD ---------------------------------------------------
bench_carrier_zone "$W/z" "$N"
# dnsperf's load comes from one address: no anonymous quota.
cat >"$W/dp.toml" <<EOF
listen = ["$M:$MP"]
trust = "z/trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"
[[zone]]
origin = "$ORIGIN"
file = "z/g.zone"
[limits]
tcp_connections = 1024
tcp_idle_timeout_secs = 120
udp_threads = 1  # pinned to one core
[tls]
listen = ["$M:$MTP"]
cert = "srv.pem"
key = "srv.key"
EOF
MIMI_LOG=warn taskset -c "$SERVER_CPU" "$MIMI" dp serve --config "$W/dp.toml" >"$W/dp.log" 2>&1 &
pids+=($!) mimi_dp=$!
wait_dns $M "$MP" "$ORIGIN" $mimi_dp "$W/dp.log"

# NSD: one server process; tcp-count (100 by default) raised like mimi's tcp_connections
# (NSD also shortens its timeout once more than half of them are open); tcp-timeout 120 s
# is its default, and mimi's idle timeout above is set to match.
mkdir -p "$W/nsd"
cat >"$W/nsd.conf" <<EOF
server:
    ip-address: $D@$DP
    ip-address: $D@$DTP
    tls-port: $DTP
    tls-service-key: "$W/srv.key"
    tls-service-pem: "$W/srv.pem"
    port: $DP
    server-count: 1
    tcp-count: 1024
    tcp-timeout: 120
    username: ""
    chroot: ""
    zonesdir: "$W"
    database: ""
    zonelistfile: "$W/nsd/zone.list"
    xfrdfile: "$W/nsd/xfrd.state"
    pidfile: "$W/nsd/nsd.pid"
    logfile: "$W/nsd/nsd.log"
    rrl-ratelimit: 0
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: "$ORIGIN"
    zonefile: "$W/z/g.zone"
EOF
taskset -c "$SERVER_CPU" "$NSD" -d -c "$W/nsd.conf" >"$W/nsd.err" 2>&1 &
pids+=($!) nsd=$!
wait_dns $D "$DP" "$ORIGIN" $nsd "$W/nsd.err"
for s in "$M $MTP" "$D $DTP"; do
  read -r a p <<<"$s"
  set -- "$a" "$p"
  dig @"$1" -p "$2" +tls +time=2 +tries=1 +norec "$ORIGIN" SOA | grep -q "status: NOERROR" ||
    die "no DoT answer from $1:$2"
done

# --- 4. memory per idle connection (first: on servers that have done nothing else) --------
read -r m0 m1 ma <<<"$(idle $M "$MTP" $mimi_dp "$IDLE")"
read -r n0 n1 na <<<"$(idle $D "$DTP" $nsd "$IDLE")"
[ "$ma" = "$IDLE" ] || die "mimi answered on $ma of $IDLE idle connections"
[ "$na" = "$IDLE" ] || die "NSD answered on $na of $IDLE idle connections"

# --- 1. DoT queries per second, and 3. handshakes per second --------------------------------
best2 dot mimi_q $mimi_dp "$M $MTP $W/z/pos.txt 20 200" nsd_q $nsd "$D $DTP $W/z/pos.txt 20 200"
best2 handshakes mimi_h $mimi_dp "$M $MTP" nsd_h $nsd "$D $DTP"
dp_rss_mimi=$(rss_kib $mimi_dp) dp_rss_nsd=$(rss_kib $nsd)
kill $mimi_dp $nsd 2>/dev/null || true
wait $mimi_dp $nsd 2>/dev/null || true
pids=() # both stopped: their PIDs are no longer ours to signal at exit

# --- 2. the demo tree, mimi resolver serve and Unbound ----------------------------------------
mkdir -p "$W/tree"
cp zones/*.zone zones/trust.toml "$W/tree/"
P=$(free_port "${ALL_DP[@]}")
DP_EXTRA=$'[access]\nanonymous_lookups_per_day = "unlimited"' \
  start_tree_dps "$W/tree" "$W/tree" "$W/tree/trust.toml" "$P" taskset -c "$LOAD_CPU"
{
  unbound_server_conf "$W" $U "$UP"
  cat <<EOF
  verbosity: 0
  interface: $U@$UTP
  tls-port: $UTP
  tls-service-key: "$W/srv.key"
  tls-service-pem: "$W/srv.pem"
  incoming-num-tcp: 1024
remote-control:
  control-enable: no
EOF
  unbound_tree_stubs "$P"
} >"$W/unbound.conf"
: >"$W/root.hints"
taskset -c "$SERVER_CPU" "$UNBOUND" -d -c "$W/unbound.conf" >"$W/unbound.log" 2>&1 &
pids+=($!) unbound=$!
wait_dns $U "$UP" mimi.arpa. $unbound "$W/unbound.log"
cat >"$W/resolver.toml" <<EOF
roots = ["127.53.0.1"]
port = $P
trust = "tree/trust.toml"
listen = ["$R:$RP"]
[limits]
udp_threads = 1  # pinned to one core
[tls]
listen = ["$R:$RTP"]
cert = "srv.pem"
key = "srv.key"
EOF
MIMI_LOG=warn taskset -c "$SERVER_CPU" "$MIMI" resolver serve --config "$W/resolver.toml" >"$W/resolver.log" 2>&1 &
pids+=($!) mimi_res=$!
wait_dns $R "$RP" mimi.arpa. $mimi_res "$W/resolver.log"

# Warm both caches over UDP with the demo's mappings (as tools/bench/resolver.sh).
FOUND=("+1 555 111 2222" "+1 555 111 3333" "+1 202 555 0100" "+44 20 7946 0000" hugh@example.com carol@example.com)
: >"$W/hits.txt"
for s in "${FOUND[@]}"; do
  o=$("$MIMI" name "$s")
  for r in "$U $UP" "$R $RP"; do
    read -r a p <<<"$r"
    set -- "$a" "$p"
    n=$(dig @"$1" -p "$2" +time=2 +tries=2 +short "$o" TYPE65280 | grep -c . || true)
    [ "$n" -ge 1 ] || die "warm-up: no SSI record for $s ($o) from $1:$2"
  done
  echo "$o TYPE65280" >>"$W/hits.txt"
done
best2 dot mimi_r $mimi_res "$R $RTP $W/hits.txt 20 200" unbound_r $unbound "$U $UTP $W/hits.txt 20 200"

# --- the report -------------------------------------------------------------------------------
# shellcheck disable=SC2154 # best_* are set by best2 (printf -v)
python3 - "$SECS" "$IDLE" "$TICK" "$best_mimi_q" "$best_nsd_q" "$best_mimi_h" "$best_nsd_h" \
  "$best_mimi_r" "$best_unbound_r" "$m0 $m1" "$n0 $n1" "$dp_rss_mimi $dp_rss_nsd" <<'PY'
import sys
secs, idle, tick = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mq, nq, mh, nh, mr, ur, mm, nm, rss = ([int(x) for x in a.split()] for a in sys.argv[4:13])
def row(label, m, o, fmt="{:,.0f}"):
    print(f"{label:<52} {fmt.format(m):>12} {fmt.format(o):>12} {m / max(o, 1e-9):>8.2f}")
print(f"{'':<52} {'mimi':>12} {'NSD':>12} {'ratio':>8}")
row(f"DP: DoT queries/s (20 conns, best of 2 x {secs} s)", mq[0], nq[0])
row("DP: TLS handshakes/s (50 at a time, best of 2)", mh[0], nh[0])
# Server CPU per handshake: ticks over the run / handshakes in it (qps x seconds).
cpu = [h[2] / tick / max(h[0] * float(secs), 1) * 1e6 for h in (mh, nh)]
row("DP: server CPU per handshake, us", cpu[0], cpu[1], "{:,.1f}")
row(f"DP: RSS growth per idle DoT connection ({idle}), KiB", (mm[1] - mm[0]) / idle, (nm[1] - nm[0]) / idle, "{:,.1f}")
print(f"{'DP: RSS before / with the idle connections, MiB':<52} {mm[0] / 1024:>5.1f} / {mm[1] / 1024:<5.1f}"
      f" {nm[0] / 1024:>5.1f} / {nm[1] / 1024:<5.1f}")
print(f"{'DP: RSS after the load, MiB':<52} {rss[0] / 1024:>12.1f} {rss[1] / 1024:>12.1f}")
print(f"{'':<52} {'mimi':>12} {'Unbound':>12} {'ratio':>8}")
row(f"resolver: DoT queries/s, cached names (best of 2)", mr[0], ur[0])
print(f"dnsperf lost queries: DP {mq[1]} / {nq[1]}, resolver {mr[1]} / {ur[1]}; failed handshakes {mh[1]} / {nh[1]}"
      " (mimi / other)")
print("ratio: mimi / other; above 1 is mimi ahead, except on the CPU and RSS rows (mimi uses more)")
PY
