#!/usr/bin/env bash
# `mimi dp serve` seen through the two common DNS clients, ISC's dig and Knot's kdig:
# authoritative answers, referrals with glue, NXDOMAIN/NODATA with the RFC 2308 SOA TTL,
# REFUSED, TC over UDP then the whole answer over TCP, the expired demo mapping refused,
# AXFR allow-list, ANY (RFC 8482), BADVERS, NOTIMP, FORMERR, and SIGHUP/SIGUSR1/SIGTERM.
# Usage: tools/interop/dig.sh   (needs dnsutils and knot-dnsutils; .ci/run installs them;
#        KEEP=1 keeps the temporary directory with configs and logs)
# Servers listen on 127.0.0.61 and 127.0.0.62 at free ports; AXFR is allowed from
# 127.0.0.63 only, and tried from 127.0.0.64.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
interop_start dig.sh
need "dnsutils, knot-dnsutils, python3" dig kdig python3

A1=127.0.0.61 A2=127.0.0.62 XFR_OK=127.0.0.63 XFR_NO=127.0.0.64

# start_dp LOG CONFIG ADDR PORT: starts a server, waits (bounded) until it answers.
start_dp() {
  NO_COLOR=1 "$MIMI" dp serve --config "$2" >"$1" 2>&1 &
  local pid=$!
  pids+=("$pid")
  last_pid=$pid
  for _ in $(seq 50); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "dig.sh: mimi dp serve --config $2 exited:" >&2; sed 's/^/  /' "$1" >&2; exit 1
    fi
    [[ $(dig @"$3" -p "$4" +time=1 +tries=1 mimi.arpa. SOA 2>&1 || true) == *status:* ]] && return 0
    sleep 0.1
  done
  echo "dig.sh: server on $3:$4 did not answer within 5 s" >&2; sed 's/^/  /' "$1" >&2; exit 1
}

# ask TOOL ADDR PORT ARGS...: the tool's whole output (never fails).
ask() {
  local tool=$1 addr=$2 port=$3
  shift 3
  case $tool in
    dig) dig @"$addr" -p "$port" +norec +time=2 +tries=1 "$@" 2>&1 || true ;;
    kdig) kdig @"$addr" -p "$port" +nordflag +timeout=2 +retry=0 "$@" 2>&1 || true ;;
  esac
}
# Parsers for both tools' output formats.
rcode() { sed -n 's/.*status: \([A-Z]*\).*/\1/p' <<<"$1" | head -1 | sed 's/^NOTIMPL$/NOTIMP/'; }
flags() { sed -n 's/^;; [Ff]lags: \([a-z ]*\);.*/\1/p' <<<"$1" | head -1; }
count() { sed -n "s/.*$2: \([0-9]*\).*/\1/p" <<<"$1" | head -1; }
has_flag() { [[ " $(flags "$1") " == *" $2 "* ]] && echo 1 || echo 0; }
# rcode, the aa and tc flags, answer and authority counts
shape() { echo "$(rcode "$1") aa=$(has_flag "$1" aa) tc=$(has_flag "$1" tc) an=$(count "$1" ANSWER) ns=$(count "$1" AUTHORITY)"; }
# Records of one section (ANSWER, AUTHORITY, ADDITIONAL), whitespace-normalised.
section() {
  awk -v s="$2" '
    /^;; [A-Z]+ SECTION:/ { cur = $2; next }
    /^[ \t]*$/ { cur = ""; next }
    /^;/ { next }
    cur == s { $1 = tolower($1); $1 = $1; print }' <<<"$1"
}
# name TTL class type of a section's records
heads() { section "$1" "$2" | awk '{ print $1, $2, $3, $4 }'; }
size() { sed -n -e 's/.*MSG SIZE  rcvd: \([0-9]*\).*/\1/p' -e 's/^;; Received \([0-9]*\) B.*/\1/p' <<<"$1" | head -1; }

# --- the zones and configs ----------------------------------------------------------
cp zones/root.zone zones/1.e164.zone zones/5.5.5.1.e164.zone zones/trust.toml "$W/"
# A zone written by the CLI with one name too large for a 512-byte (and a 1232-byte) answer.
"$MIMI" zone new large.test. --out "$W/large.zone" --ns ns1.large.test.=$A1 >/dev/null
for i in $(seq 1 40); do
  echo "many 3600 IN TXT \"record number $i of a large RRset, padded to make it longer\""
done >>"$W/large.zone"
# and enough names that a zone transfer takes several messages
for i in $(seq 1 450); do echo "n$i 3600 IN TXT \"name $i\""; done >>"$W/large.zone"

# Negative TTL: min(SOA TTL, MINIMUM) of each zone file.
neg_ttl() { awk '$4 == "SOA" { print ($2 < $NF ? $2 : $NF); exit }' "$1"; }
NEG_ROOT=$(neg_ttl "$W/root.zone")
NEG_CARRIER=$(neg_ttl "$W/5.5.5.1.e164.zone")

P1=$(free_port $A1)
P2=$(free_port $A2)
cat >"$W/dp1.toml" <<EOF
listen = ["$A1:$P1"]
trust = "trust.toml"
[[zone]]
origin = "mimi.arpa."
file = "root.zone"
[[zone]]
origin = "1.e164.mimi.arpa."
file = "1.e164.zone"
[[zone]]
origin = "5.5.5.1.e164.mimi.arpa."
file = "5.5.5.1.e164.zone"
[[zone]]
origin = "large.test."
file = "large.zone"
[axfr]
allow = ["$XFR_OK"]
EOF
cat >"$W/dp2.toml" <<EOF
listen = ["$A2:$P2"]
trust = "trust.toml"
[[zone]]
origin = "mimi.arpa."
file = "root.zone"
EOF
start_dp "$W/dp1.log" "$W/dp1.toml" $A1 "$P1"
PID1=$last_pid
start_dp "$W/dp2.log" "$W/dp2.toml" $A2 "$P2"
echo "dig.sh: servers on $A1:$P1 (root, 1.e164, 5.5.5.1.e164, large.test) and $A2:$P2 (root only)"

# --- checks through both clients -------------------------------------------------------
ALICE=2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.
BOB=3.3.3.3.1.1.1.5.5.5.1.e164.mimi.arpa.
EXPIRED=9.9.9.9.1.1.1.5.5.5.1.e164.mimi.arpa.
EMMA=0.0.0.0.6.4.9.7.0.2.4.4.e164.mimi.arpa.
for t in dig kdig; do
  o=$(ask $t $A1 "$P1" $ALICE TYPE65280)
  check_eq "$t: SSI answer, AA" "NOERROR aa=1 tc=0 an=1 ns=0" "$(shape "$o")"
  check_eq "$t: SSI answer record" "$ALICE 3600 IN TYPE65280" "$(heads "$o" ANSWER)"
  o=$(ask $t $A1 "$P1" $BOB TYPE65280)
  check_eq "$t: two mappings at one name" "NOERROR aa=1 tc=0 an=2 ns=0" "$(shape "$o")"
  o=$(ask $t $A1 "$P1" "$(tr 'a-z' 'A-Z' <<<"$ALICE")" TYPE65280)
  check_eq "$t: query name case does not matter" "NOERROR aa=1 tc=0 an=1 ns=0" "$(shape "$o")"

  o=$(ask $t $A2 "$P2" $ALICE TYPE65280)
  check_eq "$t: referral from the root zone, AA clear" "NOERROR aa=0 tc=0 an=0 ns=1" "$(shape "$o")"
  check_eq "$t: referral NS in authority" "e164.mimi.arpa. 3600 IN NS ns1.e164.mimi.arpa." "$(section "$o" AUTHORITY)"
  check_eq "$t: referral glue in additional" "ns1.e164.mimi.arpa. 3600 IN A 127.53.0.2" "$(section "$o" ADDITIONAL)"
  o=$(ask $t $A1 "$P1" $EMMA TYPE65280)
  check_eq "$t: referral for +44 (not served) from the root zone" "NOERROR aa=0 tc=0 an=0 ns=1" "$(shape "$o")"

  o=$(ask $t $A1 "$P1" nothing.mimi.arpa. A)
  check_eq "$t: NXDOMAIN, AA" "NXDOMAIN aa=1 tc=0 an=0 ns=1" "$(shape "$o")"
  check_eq "$t: NXDOMAIN SOA TTL = min(TTL, MINIMUM)" "mimi.arpa. $NEG_ROOT IN SOA" "$(heads "$o" AUTHORITY)"
  o=$(ask $t $A1 "$P1" 0.0.0.0.2.2.2.5.5.5.1.e164.mimi.arpa. TYPE65280 +tcp)
  check_eq "$t: NXDOMAIN over TCP" "NXDOMAIN aa=1 tc=0 an=0 ns=1" "$(shape "$o")"
  check_eq "$t: NXDOMAIN over TCP, SOA TTL" "5.5.5.1.e164.mimi.arpa. $NEG_CARRIER IN SOA" "$(heads "$o" AUTHORITY)"

  o=$(ask $t $A1 "$P1" $ALICE A)
  check_eq "$t: NODATA (A at an SSI owner)" "NOERROR aa=1 tc=0 an=0 ns=1" "$(shape "$o")"
  check_eq "$t: NODATA SOA TTL" "5.5.5.1.e164.mimi.arpa. $NEG_CARRIER IN SOA" "$(heads "$o" AUTHORITY)"
  o=$(ask $t $A1 "$P1" 1.1.1.5.5.5.1.e164.mimi.arpa. TYPE65280)
  check_eq "$t: NODATA at an empty non-terminal" "NOERROR aa=1 tc=0 an=0 ns=1" "$(shape "$o")"
  o=$(ask $t $A1 "$P1" ap.mimi.arpa. TYPE65281)
  check_eq "$t: NODATA at ap.mimi.arpa. (empty non-terminal)" "NOERROR aa=1 tc=0 an=0 ns=1" "$(shape "$o")"

  o=$(ask $t $A1 "$P1" example.org. A)
  check_eq "$t: REFUSED outside the zones" "REFUSED aa=0 tc=0 an=0 ns=0" "$(shape "$o")"
  o=$(ask $t $A1 "$P1" -c CH version.bind. TXT)
  check_eq "$t: REFUSED for class CH" "REFUSED" "$(rcode "$o")"

  o=$(ask $t $A1 "$P1" many.large.test. TXT +bufsize=512 +ignore)
  check_eq "$t: TC over UDP with a 512-byte buffer" "NOERROR tc=1 fits=1" \
    "$(rcode "$o") tc=$(has_flag "$o" tc) fits=$([ "$(size "$o")" -le 512 ] && echo 1 || echo 0)"
  o=$(ask $t $A1 "$P1" many.large.test. TXT +bufsize=4096 +ignore)
  check_eq "$t: UDP answer capped at 1232 bytes, TC" "NOERROR tc=1 fits=1" \
    "$(rcode "$o") tc=$(has_flag "$o" tc) fits=$([ "$(size "$o")" -le 1232 ] && echo 1 || echo 0)"
  o=$(ask $t $A1 "$P1" many.large.test. TXT +tcp)
  check_eq "$t: the whole answer over TCP" "NOERROR aa=1 tc=0 an=40 ns=0" "$(shape "$o")"

  o=$(ask $t $A1 "$P1" $EXPIRED TYPE65280)
  check_eq "$t: expired mapping (+1 555 111 9999) not served" "NXDOMAIN aa=1 tc=0 an=0 ns=1" "$(shape "$o")"

  o=$(ask $t $A1 "$P1" -b $XFR_OK 5.5.5.1.e164.mimi.arpa. AXFR)
  recs=$(grep -v -e '^;' -e '^[[:space:]]*$' <<<"$o" | awk '{ print tolower($1), $4 }' || true)
  check_eq "$t: AXFR from the allow-list: SOA first and last" "SOA SOA" \
    "$(head -1 <<<"$recs" | cut -d' ' -f2) $(tail -1 <<<"$recs" | cut -d' ' -f2)"
  # the zone file's records, less the refused (expired) one, plus the closing SOA
  want=$(($(grep -c -v -e '^;' -e '^\$' -e '^[[:space:]]*$' "$W/5.5.5.1.e164.zone") - 1 + 1))
  check_eq "$t: AXFR record count, expired mapping left out" "$want 0" \
    "$(wc -l <<<"$recs" | tr -d ' ') $(grep -c "^$EXPIRED" <<<"$recs" || true)"
  o=$(ask $t $A1 "$P1" -b $XFR_OK large.test. AXFR)
  # dig: "XFR size: 494 records (messages 3, ...", kdig: "(3 messages, 494 records)"
  xfr=$(sed -n -e 's/.*XFR size: \([0-9]*\) records (messages \([0-9]*\).*/\1 \2/p' \
               -e 's/.*(\([0-9]*\) messages, \([0-9]*\) records).*/\2 \1/p' <<<"$o")
  read -r xr xm <<<"${xfr:-0 0}"
  check_eq "$t: AXFR of a 493-record zone in several messages" "494 records, several messages" \
    "$xr records, $([ "$xm" -ge 2 ] && echo several || echo "$xm") messages"
  o=$(ask $t $A1 "$P1" -b $XFR_NO 5.5.5.1.e164.mimi.arpa. AXFR)
  if [ $t = dig ]; then
    check_eq "$t: AXFR from another address fails" "1 0" \
      "$(grep -c 'Transfer failed' <<<"$o") $(grep -c -v -e '^;' -e '^[[:space:]]*$' <<<"$o" || true)"
  else
    check_eq "$t: AXFR from another address REFUSED" "1" "$(grep -c "error 'REFUSED'" <<<"$o")"
  fi

  # dig sends ANY over TCP unless told otherwise; test UDP
  o=$(ask $t $A1 "$P1" 5.5.5.1.e164.mimi.arpa. ANY $([ $t = dig ] && echo +notcp))
  check_eq "$t: ANY (RFC 8482) answers one RRset" "NOERROR aa=1 types=1" \
    "$(rcode "$o") aa=$(has_flag "$o" aa) types=$(heads "$o" ANSWER | awk '{ print $4 }' | sort -u | wc -l | tr -d ' ')"

  if [ $t = dig ]; then
    o=$(ask $t $A1 "$P1" $ALICE TYPE65280 +edns=1 +noednsnegotiation)
  else
    o=$(ask $t $A1 "$P1" $ALICE TYPE65280 +edns=1)
  fi
  check_eq "$t: EDNS version 1 gets BADVERS" "BADVERS" "$(rcode "$o")"

  if [ $t = dig ]; then
    for op in notify status; do
      o=$(ask $t $A1 "$P1" mimi.arpa. SOA +opcode=$op)
      check_eq "$t: opcode ${op^^} gets NOTIMP" "NOTIMP" "$(rcode "$o")"
    done
    # An UPDATE without TSIG: NOTAUTH (tools/interop/update.sh sends signed ones).
    o=$(ask $t $A1 "$P1" mimi.arpa. SOA +opcode=update)
    check_eq "$t: unsigned UPDATE gets NOTAUTH" "NOTAUTH" "$(rcode "$o")"
    o=$(ask $t $A1 "$P1" +header-only)
    check_eq "$t: query without a question gets FORMERR" "FORMERR" "$(rcode "$o")"
  else
    o=$(ask $t $A1 "$P1" mimi.arpa. NOTIFY)
    check_eq "$t: NOTIFY gets NOTIMP" "NOTIMP" "$(rcode "$o")"
  fi
done

# --- load-time checks, garbage, signals ------------------------------------------------
line=$(grep -n "^9.9.9.9.1.1.1 " "$W/5.5.5.1.e164.zone" | cut -d: -f1)
check_eq "log: expired mapping refused with file:line" "1" \
  "$(grep -c "5.5.5.1.e164.zone:$line: record refused" "$W/dp1.log" || true)"
check_eq "log: AXFR from $XFR_NO logged as refused" "yes" \
  "$(grep -q "zone transfer refused.*$XFR_NO" "$W/dp1.log" && echo yes || echo no)"

# A few hundred random datagrams and TCP frames; a normal query must still answer.
python3 - $A1 "$P1" <<'EOF'
import os, random, socket, sys
addr = (sys.argv[1], int(sys.argv[2]))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(500):
    u.sendto(os.urandom(random.randint(0, 600)), addr)
for i in range(30):
    t = socket.create_connection(addr, timeout=2)
    n = random.randint(0, 300)
    t.sendall(n.to_bytes(2, "big") + os.urandom(random.randint(0, n)))
    t.close()
EOF
o=$(ask dig $A1 "$P1" $ALICE TYPE65280)
check_eq "random UDP datagrams and TCP frames, then a query still answers" "NOERROR aa=1 tc=0 an=1 ns=0" "$(shape "$o")"

# SIGHUP: a new mapping in the served zone file appears without a restart.
ERIN=4.4.4.4.1.1.1.5.5.5.1.e164.mimi.arpa.
o=$(ask dig $A1 "$P1" $ERIN TYPE65280)
check_eq "before reload: +1 555 111 4444 is NXDOMAIN" "NXDOMAIN" "$(rcode "$o")"
"$MIMI" zone add "$W/5.5.5.1.e164.zone" --sii "+1 555 111 4444" --ssi mimi://chat.example/u/erin \
  --key zones/keys/chat.example.key --valid-days 30 >/dev/null
kill -HUP "$PID1"
got=none
for _ in $(seq 50); do
  o=$(ask dig $A1 "$P1" $ERIN TYPE65280)
  got=$(shape "$o")
  [ "$got" = "NOERROR aa=1 tc=0 an=1 ns=0" ] && break
  sleep 0.1
done
check_eq "SIGHUP reload serves the new mapping" "NOERROR aa=1 tc=0 an=1 ns=0" "$got"
# A zone that fails on reload keeps its previous version.
echo "this is not a record" >>"$W/root.zone"
kill -HUP "$PID1"
for _ in $(seq 50); do grep -q "still serving the current version" "$W/dp1.log" && break; sleep 0.1; done
check_eq "broken zone on reload: error logged" "yes" \
  "$(grep -q "still serving the current version" "$W/dp1.log" && echo yes || echo no)"
o=$(ask dig $A1 "$P1" nothing.mimi.arpa. A)
check_eq "broken zone on reload: previous version still serves" "NXDOMAIN aa=1 tc=0 an=0 ns=1" "$(shape "$o")"

kill -USR1 "$PID1"
for _ in $(seq 50); do grep -q "counters: queries=" "$W/dp1.log" && break; sleep 0.1; done
check_eq "SIGUSR1 logs a counters line" "yes" "$(grep -q "counters: queries=[1-9]" "$W/dp1.log" && echo yes || echo no)"

kill -TERM "$PID1"
rc=0
for _ in $(seq 50); do kill -0 "$PID1" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID1" 2>/dev/null && { echo "  (server still running 5 s after SIGTERM: killing it)"; kill -KILL "$PID1"; }
wait "$PID1" || rc=$?
check_eq "SIGTERM stops the server (exit 0) with a counters line" "0 yes" \
  "$rc $(grep -q "shutting down; counters: queries=" "$W/dp1.log" && echo yes || echo no)"
grep "counters:" "$W/dp1.log" | tail -1 | sed 's/^.*counters:/  final counters:/'

interop_end
