# Shell helpers shared by tools/interop/*.sh and tools/bench/*.sh. Source it after
# changing to the repository root:  . tools/lib.sh

# free_port ADDR...: a port free for both TCP and UDP on every ADDR (all servers of a
# discovery tree listen on one port).
free_port() {
  python3 - "$@" <<'PY'
import socket, sys
addrs = sys.argv[1:] or ["127.0.0.1"]
for _ in range(100):
    t = socket.socket(); t.bind((addrs[0], 0)); p = t.getsockname()[1]; t.close()
    socks = []
    try:
        for a in addrs:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind); socks.append(s); s.bind((a, p))
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(p); break
else:
    sys.exit("no free port")
PY
}

# The demo tree as `mimi demo` runs it (src/cli/demo.rs): zone file, origin, address.
TREE=(
  "root.zone mimi.arpa. 127.53.0.1"
  "e164.zone e164.mimi.arpa. 127.53.0.2"
  "1.e164.zone 1.e164.mimi.arpa. 127.53.0.3"
  "5.5.5.1.e164.zone 5.5.5.1.e164.mimi.arpa. 127.53.0.4"
  "5.5.5.1.e164.zone 5.5.5.1.e164.mimi.arpa. 127.53.0.14"
  "4.4.e164.zone 4.4.e164.mimi.arpa. 127.53.0.5"
  "email.zone email.mimi.arpa. 127.53.0.6"
  "example.com.email.zone example.com.email.mimi.arpa. 127.53.0.7"
)
# The addresses of every DP of the demo tree.
ALL_DP=()
for t in "${TREE[@]}"; do read -r _ _ a <<<"$t"; ALL_DP+=("$a"); done

# wait_dns ADDR PORT NAME PID LOG: wait (at most 10 s) until the server at ADDR:PORT answers
# a query for NAME; stop the script, showing LOG, if process PID exits first.
wait_dns() {
  for _ in $(seq 100); do
    if ! kill -0 "$4" 2>/dev/null; then
      echo "$(basename "$0"): server for $1:$2 exited:" >&2; sed 's/^/  /' "$5" >&2; exit 1
    fi
    [[ $(dig @"$1" -p "$2" +time=1 +tries=1 "$3" SOA 2>&1 || true) == *status:* ]] && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): server on $1:$2 did not answer within 10 s" >&2; sed 's/^/  /' "$5" >&2; exit 1
}

# start_tree_dps WORKDIR ZONEDIR TRUST PORT [PREFIX...]: one `mimi dp serve` per DP of the
# demo tree on PORT (zone files from ZONEDIR), run under PREFIX (e.g. taskset -c 1); their
# pids are appended to the caller's `pids` array; DP_EXTRA, if set, is appended to each
# config. Needs MIMI.
start_tree_dps() {
  local w=$1 zdir=$2 trust=$3 port=$4 t file origin addr
  shift 4
  for t in "${TREE[@]}"; do
    read -r file origin addr <<<"$t"
    # Each DP gets its own copy of its zone file: the DP keeps a journal beside it and
    # rewrites it as the zone changes.
    mkdir -p "$w/zones-$addr"
    cp "$zdir/$file" "$w/zones-$addr/$file"
    printf 'listen = ["%s:%s"]\ntrust = "%s"\n[[zone]]\norigin = "%s"\nfile = "%s"\n' \
      "$addr" "$port" "$trust" "$origin" "$w/zones-$addr/$file" >"$w/dp-$addr.toml"
    printf '%s\n' "${DP_EXTRA:-}" >>"$w/dp-$addr.toml"
    NO_COLOR=1 MIMI_LOG=warn "$@" "$MIMI" dp serve --config "$w/dp-$addr.toml" >"$w/dp-$addr.log" 2>&1 &
    pids+=($!)
    wait_dns "$addr" "$port" "$origin" $! "$w/dp-$addr.log"
  done
}

# unbound_server_conf DIR ADDR PORT: the `server:` clause the scripts' Unbound instances
# share: listening on ADDR@PORT, iterating without validation, qname minimisation, files in
# DIR, root hints from DIR/root.hints (empty: Unbound knows only its stub zones). Callers
# add their own server lines right after it.
unbound_server_conf() {
  cat <<EOF
server:
  interface: $2@$3
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  do-ip6: no
  module-config: "iterator"
  qname-minimisation: yes
  chroot: ""
  username: ""
  directory: "$1"
  pidfile: "$1/unbound.pid"
  use-syslog: no
  logfile: ""
  root-hints: "$1/root.hints"
  num-threads: 1
EOF
}

# unbound_tree_stubs PORT: one stub zone per zone of the demo tree, at its DPs on PORT (both
# carrier DPs for the carrier block).
unbound_tree_stubs() {
  local t origin addr
  for t in "${TREE[@]}"; do
    read -r _ origin addr <<<"$t"
    [ "$addr" = 127.53.0.14 ] && continue
    printf 'stub-zone:\n  name: "%s"\n  stub-addr: %s@%s\n' "$origin" "$addr" "$1"
    if [ "$addr" = 127.53.0.4 ]; then printf '  stub-addr: 127.53.0.14@%s\n' "$1"; fi
  done
}

# sbin TOOL: the path of TOOL, looking in /usr/sbin too (knotd, nsd are there on Debian).
sbin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || echo "$1"; }

# poll TENTHS CMD...: run CMD every 0.1 s until it succeeds, at most TENTHS times; the
# status of the last run.
poll() {
  local n=$1 i
  shift
  for ((i = 1; i < n; i++)); do "$@" && return 0; sleep 0.1; done
  "$@"
}

# tsig_key NAME FILE: a new hmac-sha256 TSIG key NAME (32 random bytes) in the BIND format
# at FILE (nsupdate -k, `[[update]] tsig` of mimi dp serve), and the same key at FILE.knot in
# Knot's ALG:NAME:SECRET format (knsupdate -k, kdig -k).
tsig_key() {
  local secret
  secret=$(head -c 32 /dev/urandom | base64)
  printf 'key "%s" {\n    algorithm hmac-sha256;\n    secret "%s";\n};\n' "$1" "$secret" >"$2"
  printf 'hmac-sha256:%s:%s\n' "$1" "$secret" >"$2.knot"
  chmod 600 "$2" "$2.knot"
}

# knot_secondary_conf DIR ADDR PORT PRIMARY_ADDR PRIMARY_PORT JOURNAL_CONTENT ZONE...: a
# knotd config (on stdout) serving each ZONE as a secondary of PRIMARY_ADDR@PRIMARY_PORT
# (transfers from ADDR; NOTIFY accepted from PRIMARY_ADDR), listening on ADDR@PORT, with
# everything (socket, journal, timers, zone files) under DIR; log to stderr. JOURNAL_CONTENT:
# none, changes (Knot's default: keeps the IXFR history) or all. With KNOT_TSIG="NAME SECRET"
# in the environment, transfers and NOTIFY are signed with that hmac-sha256 key.
knot_secondary_conf() {
  local dir=$1 addr=$2 port=$3 paddr=$4 pport=$5 journal=$6 z keyline="" kname ksecret
  shift 6
  if [ -n "${KNOT_TSIG:-}" ]; then
    read -r kname ksecret <<<"$KNOT_TSIG"
    printf 'key:\n  - id: %s\n    algorithm: hmac-sha256\n    secret: %s\n' "$kname" "$ksecret"
    keyline="    key: $kname"
  fi
  cat <<EOC
server:
    rundir: "$dir"
    listen: $addr@$port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "$dir/knot.sock"
database:
    storage: "$dir"
log:
  - target: stderr
    any: info
remote:
  - id: primary
    address: $paddr@$pport
    via: $addr
$keyline
acl:
  - id: notify_from_primary
    address: $paddr
    action: notify
$keyline
template:
  - id: default
    storage: "$dir"
    zonefile-load: none
    journal-content: $journal
zone:
EOC
  for z in "$@"; do
    printf '  - domain: %s\n    master: primary\n    acl: notify_from_primary\n    file: "%s"\n' \
      "$z" "$dir/${z}zone"
  done
}

# nsd_secondary_conf DIR ADDR PORT PRIMARY_ADDR PRIMARY_PORT XFR ZONE...: an nsd.conf (on
# stdout, NSD 4.x) serving each ZONE as a secondary of PRIMARY_ADDR@PRIMARY_PORT (from
# ADDR; NOTIFY accepted from PRIMARY_ADDR), listening on ADDR@PORT, run unprivileged in the
# foreground (nsd -d) with pidfile, zone list, xfrd state and zone files under DIR, and
# minimal-responses (no apex NS in the authority section of answers, as mimi and Knot).
# XFR: "" (IXFR over TCP, AXFR when the primary answers so) or AXFR (AXFR only).
nsd_secondary_conf() {
  local dir=$1 addr=$2 port=$3 paddr=$4 pport=$5 xfr=$6 z
  shift 6
  cat <<EOC
server:
    ip-address: $addr@$port
    server-count: 1
    reuseport: no
    username: ""
    chroot: ""
    zonesdir: "$dir"
    database: ""
    zonelistfile: "$dir/zone.list"
    xfrdfile: "$dir/xfrd.state"
    xfrdir: "$dir"
    pidfile: "$dir/nsd.pid"
    verbosity: 2
    minimal-responses: yes
remote-control:
    control-enable: no
pattern:
    name: "from-primary"
    request-xfr: ${xfr:+$xfr }$paddr@$pport NOKEY
    allow-notify: $paddr NOKEY
    outgoing-interface: $addr
EOC
  for z in "$@"; do
    printf 'zone:\n    name: "%s"\n    zonefile: "%szone"\n    include-pattern: "from-primary"\n' "$z" "$z"
  done
}

# bench_dp_conf ADDR:PORT ORIGIN FILE: a `mimi dp serve` config serving FILE (relative to
# the config) as ORIGIN, for benchmark load that all comes from one address, on a server
# pinned to one core (one UDP thread).
bench_dp_conf() {
  cat <<EOF
listen = ["$1"]
trust = "trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"  # benchmark load comes from one address
[[zone]]
origin = "$2"
file = "$3"
[limits]
tcp_connections = 1024
udp_threads = 1
EOF
}

# bench_carrier_zone DIR N [NS_ADDR]: the benchmark carrier zone of tools/bench/dp.sh in DIR:
# N signed mappings +1 555 000 0000 + 2i -> mimi://chat.example/u/user<i> (the odd numbers
# stay free: NXDOMAIN, or new owners for updates), signed with a new key DIR/k.key (provider
# chat.example, trust file DIR/trust.toml), imported into DIR/z.zone (origin
# 5.5.5.1.e164.mimi.arpa., NS ns1 at NS_ADDR, default 127.0.0.1) and exported in RFC 3597 form
# to DIR/g.zone; DIR/pos.txt and DIR/nx.txt: 200,000 dnsperf queries (type SSI) for random
# existing and absent owners. Needs MIMI.
bench_carrier_zone() {
  local d=$1 n=$2 ns=${3:-127.0.0.1} origin=5.5.5.1.e164.mimi.arpa.
  mkdir -p "$d"
  python3 - "$n" "$d" <<'PY'
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
  "$MIMI" key public "$d/k.key" >"$d/trust.toml"
  "$MIMI" zone new $origin --out "$d/z.zone" --ns "ns1.$origin=$ns" >/dev/null
  "$MIMI" zone import "$d/z.zone" --csv "$d/map.csv" --key "$d/k.key" >/dev/null
  "$MIMI" zone export "$d/z.zone" --generic --out "$d/g.zone"
}

# block_zone DIR N NS_IP: in DIR, chat.example's signing key (chat.key), a trust file for
# it (trust.toml) and the carrier block 5.5.5.1.e164.mimi.arpa. (carrier.zone, its name
# server at NS_IP) with N mappings: +1 555 000 0000 + 2i -> mimi://chat.example/u/user<i>
# (from map.csv). Needs MIMI.
block_zone() {
  local d=$1 n=$2 ns=$3
  python3 - "$n" "$d" <<'PY'
import sys
n, d = int(sys.argv[1]), sys.argv[2]
with open(f"{d}/map.csv", "w") as f:
    f.write("sii,ssi,context,priority,ttl\n")
    for i in range(n):
        f.write(f"+1555{2*i:07d},mimi://chat.example/u/user{i},any,10,3600\n")
PY
  "$MIMI" key generate --provider chat.example --out "$d/chat.key" >/dev/null
  "$MIMI" key public "$d/chat.key" >"$d/trust.toml"
  "$MIMI" zone new 5.5.5.1.e164.mimi.arpa. --out "$d/carrier.zone" --ns "ns1.5.5.5.1.e164.mimi.arpa.=$ns" >/dev/null
  "$MIMI" zone import "$d/carrier.zone" --csv "$d/map.csv" --key "$d/chat.key" >/dev/null
}

# carrier_zone DIR AREA N NS_ADDR: the carrier block of the numbers +1 AREA ... (origin
# <1AREA reversed>.e164.mimi.arpa., printed) in DIR/AREA.zone, its name server at NS_ADDR, with
# N mappings +1 AREA 000 0000 + 2i -> mimi://chat.example/u/user<i> (the odd numbers stay
# free: absent identifiers, or new owners for updates), signed with DIR/chat.key (made with
# its trust file DIR/trust.toml when missing, so several blocks share one provider). Needs MIMI.
carrier_zone() {
  local d=$1 area=$2 n=$3 ns=$4 origin
  origin="$(echo "1$area" | rev | sed 's/./&./g')e164.mimi.arpa."
  python3 - "$n" "$area" >"$d/$area.csv" <<'PY'
import sys
n, area = int(sys.argv[1]), sys.argv[2]
print("sii,ssi,context,priority,ttl")
for i in range(n):
    print(f"+1{area}{2*i:07d},mimi://chat.example/u/user{i},any,10,3600")
PY
  if [ ! -f "$d/chat.key" ]; then
    "$MIMI" key generate --provider chat.example --out "$d/chat.key" >/dev/null
    "$MIMI" key public "$d/chat.key" >"$d/trust.toml"
  fi
  "$MIMI" zone new "$origin" --out "$d/$area.zone" --ns "ns1.$origin=$ns" >/dev/null
  "$MIMI" zone import "$d/$area.zone" --csv "$d/$area.csv" --key "$d/chat.key" >/dev/null
  echo "$origin"
}

# wait_pircfg ADDR PORT ZONE PID LOG [SECONDS]: wait (default at most 600 s: a zone of a
# million mappings takes a minute or two to load and build its PIR database) until the DP at
# ADDR:PORT serves the PIRCFG record of ZONE; stop the script, showing LOG, if process PID
# exits first.
wait_pircfg() {
  local i
  for ((i = 0; i < ${6:-600} * 5; i++)); do
    if ! kill -0 "$4" 2>/dev/null; then
      echo "$(basename "$0"): server for $1:$2 exited:" >&2; sed 's/^/  /' "$5" >&2; exit 1
    fi
    [[ $(dig @"$1" -p "$2" +time=1 +tries=1 +norec "_pir.$3" TYPE65282 2>&1 || true) == *"ANSWER: 1"* ]] && return 0
    sleep 0.2
  done
  echo "$(basename "$0"): $1:$2 served no PIRCFG for $3 within ${6:-600} s" >&2; sed 's/^/  /' "$5" >&2; exit 1
}

# --- the frame of an interop script -----------------------------------------------------
# interop_start NAME: $W (a work directory, kept when KEEP=1), `pids` (every process the
# script starts; only these are stopped at exit, by PID), the pass and fail counts, and
# $MIMI (built when missing). Then ok/bad/check/check_eq/show/die and, last, interop_end.
interop_start() {
  MIMI=${MIMI:-target/release/mimi}
  [ -x "$MIMI" ] || cargo build --release --quiet
  MIMI=$(realpath "$MIMI")
  scratch_start "$1"
  pass=0 fail=0
}
# scratch_start NAME: a temporary directory W and the list pids of the processes the script
# starts; on exit those processes are stopped, by PID, and W removed (kept with KEEP=1).
scratch_start() {
  SCRIPT=$1
  W=$(mktemp -d)
  pids=()
  trap interop_cleanup EXIT
}
interop_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "$SCRIPT: kept $W" >&2; else rm -rf "$W"; fi
}
# need PACKAGES TOOL...: stop unless every TOOL is installed (PACKAGES names them for apt).
need() {
  local packages=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool is not installed ($packages)"
  done
}
ok() { pass=$((pass + 1)); echo "ok - $*"; }
bad() { fail=$((fail + 1)); echo "not ok - $*"; }
# check WHAT CMD...: ok when CMD succeeds.
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
# check_eq WHAT WANT GOT: ok when GOT is WANT.
check_eq() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: want [$2] got [$3]"; fi; }
# show [LINES]: stdin indented, its last LINES (15) lines.
show() { sed 's/^/    /' | tail -n "${1:-15}"; }
die() { echo "$SCRIPT: $*" >&2; exit 1; }
# interop_end: the summary; the script's status is whether anything failed.
interop_end() {
  echo "$SCRIPT: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
