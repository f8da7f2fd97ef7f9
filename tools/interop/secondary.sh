#!/usr/bin/env bash
# Existing DNS servers as secondaries of `mimi dp serve`: Knot (required) and NSD (when
# installed) transfer the carrier block 5.5.5.1.e164.mimi.arpa. and the root mimi.arpa.
# by zone transfer; then the same queries to mimi and to each secondary must give the same
# answers (dig +norec over UDP; rcode, flags, OPT and every section, records sorted).
# The sample: every owner and RR type in both zones, every mapping owner from
# `mimi zone list --json` (the expired demo mapping included: it is refused at load, so no
# server has it) with other types there (NODATA), plus NXDOMAIN, empty non-terminals,
# referrals and REFUSED. ANY is compared by shape (RFC 8482: the server picks one RRset).
# NSD runs with minimal-responses (no apex NS in the authority section of answers, like
# mimi and Knot); otherwise every server runs with its defaults.
# Finally a change on mimi (new mapping, SIGHUP) reaches both after a NOTIFY.
# Usage: tools/interop/secondary.sh   (needs dnsutils, knot, knot-dnsutils, nsd;
#        .ci/run installs them; KEEP=1 keeps the temporary directory with configs and logs)
# mimi listens on 127.0.0.71, Knot on 127.0.0.72, NSD on 127.0.0.73 (each secondary also
# transfers from its own address, and only those two are in mimi's axfr.allow), all on
# free ports.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
interop_start secondary.sh
KNOTD=$(sbin knotd) KNOTC=$(sbin knotc) NSD=$(sbin nsd) NSD_CHECKCONF=$(sbin nsd-checkconf)
need "dnsutils, knot, knot-dnsutils, python3" dig kdig python3 "$KNOTD" "$KNOTC"
with_nsd=yes
command -v "$NSD" >/dev/null && command -v "$NSD_CHECKCONF" >/dev/null || with_nsd=no

MA=127.0.0.71 KA=127.0.0.72 NA=127.0.0.73
ZONES=(mimi.arpa. 5.5.5.1.e164.mimi.arpa.)
declare -A FILE=([mimi.arpa.]=root.zone [5.5.5.1.e164.mimi.arpa.]=5.5.5.1.e164.zone)

MP=$(free_port $MA)
KP=$(free_port $KA)
NP=$(free_port $NA)

serial() { dig @"$1" -p "$2" +norec +short +time=1 +tries=1 "$3" SOA 2>/dev/null | awk '{ print $3 }'; }

# --- mimi dp serve (the primary) ----------------------------------------------------------
cp zones/root.zone zones/5.5.5.1.e164.zone zones/trust.toml "$W/"
{
  echo "listen = [\"$MA:$MP\"]"
  echo 'trust = "trust.toml"'
  for z in "${ZONES[@]}"; do printf '[[zone]]\norigin = "%s"\nfile = "%s"\n' "$z" "${FILE[$z]}"; done
  printf '[axfr]\nallow = ["%s", "%s"]\n' $KA $NA
  # mimi tells its secondaries of new serials itself (RFC 1996 NOTIFY).
  printf 'notify = ["%s:%s"%s]\n' $KA "$KP" "$( [ $with_nsd = yes ] && printf ', "%s:%s"' $NA "$NP")"
} >"$W/dp.toml"
NO_COLOR=1 "$MIMI" dp serve --config "$W/dp.toml" >"$W/dp.log" 2>&1 &
MPID=$!
pids+=($MPID)
for _ in $(seq 50); do
  kill -0 $MPID 2>/dev/null || { sed 's/^/  /' "$W/dp.log" >&2; die "mimi dp serve exited"; }
  [ -n "$(serial $MA "$MP" mimi.arpa.)" ] && break
  sleep 0.1
done
[ -n "$(serial $MA "$MP" mimi.arpa.)" ] || die "mimi dp serve on $MA:$MP did not answer within 5 s"

# --- Knot ---------------------------------------------------------------------------------
mkdir -p "$W/knot"
cat >"$W/knot.conf" <<EOF
server:
    rundir: "$W/knot"
    listen: $KA@$KP
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "$W/knot/knot.sock"
database:
    storage: "$W/knot"
log:
  - target: stderr
    any: info
remote:
  - id: mimi
    address: $MA@$MP
    via: $KA
acl:
  - id: notify_from_mimi
    address: $MA
    action: notify
template:
  - id: default
    storage: "$W/knot"
    zonefile-load: none
    journal-content: none
zone:
EOF
for z in "${ZONES[@]}"; do
  printf '  - domain: %s\n    master: mimi\n    acl: notify_from_mimi\n    file: "%s"\n' \
    "$z" "$W/knot/${z}zone" >>"$W/knot.conf"
done
"$KNOTC" -c "$W/knot.conf" conf-check >/dev/null 2>&1 ||
  die "knot.conf rejected: $("$KNOTC" -c "$W/knot.conf" conf-check 2>&1)"
"$KNOTD" -c "$W/knot.conf" >"$W/knot.log" 2>&1 &
KPID=$!
pids+=($KPID)
SECONDARIES=("Knot $KA $KP $KPID $W/knot.log")

# --- NSD ----------------------------------------------------------------------------------
if [ $with_nsd = yes ]; then
  mkdir -p "$W/nsd"
  cat >"$W/nsd.conf" <<EOF
server:
    ip-address: $NA@$NP
    server-count: 1
    reuseport: no
    username: ""
    chroot: ""
    zonesdir: "$W/nsd"
    database: ""
    zonelistfile: "$W/nsd/zone.list"
    xfrdfile: "$W/nsd/xfrd.state"
    xfrdir: "$W/nsd"
    pidfile: "$W/nsd/nsd.pid"
    verbosity: 1
    # no NS in the authority section of positive answers (as mimi and Knot answer)
    minimal-responses: yes
remote-control:
    control-enable: no
pattern:
    name: "from-mimi"
    request-xfr: AXFR $MA@$MP NOKEY
    allow-notify: $MA NOKEY
    outgoing-interface: $NA
EOF
  for z in "${ZONES[@]}"; do
    printf 'zone:\n    name: "%s"\n    zonefile: "%szone"\n    include-pattern: "from-mimi"\n' "$z" "$z" >>"$W/nsd.conf"
  done
  "$NSD_CHECKCONF" "$W/nsd.conf" >/dev/null 2>&1 || die "nsd.conf rejected: $("$NSD_CHECKCONF" "$W/nsd.conf" 2>&1)"
  "$NSD" -d -c "$W/nsd.conf" >"$W/nsd.log" 2>&1 &
  NPID=$!
  pids+=($NPID)
  SECONDARIES+=("NSD $NA $NP $NPID $W/nsd.log")
else
  echo "secondary.sh: nsd is not installed: Knot only"
fi

# wait_serials NAME ADDR PORT PID LOG WHAT: until every zone's serial equals mimi's (10 s).
wait_serials() {
  local name=$1 addr=$2 port=$3 pid=$4 log=$5 what=$6 z want got
  for z in "${ZONES[@]}"; do
    want=$(serial $MA "$MP" "$z")
    got=
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || { sed 's/^/  /' "$log" >&2; die "$name exited"; }
      got=$(serial "$addr" "$port" "$z")
      [ "$got" = "$want" ] && break
      sleep 0.1
    done
    if [ "$got" = "$want" ]; then
      ok "$name $what $z (serial $want)"
    else
      bad "$name did not get $z within 10 s (serial: mimi $want, $name '$got')"
      grep -i -e error -e warn -e refused -e fail "$log" | tail -5 | sed 's/^/  /' || true
    fi
  done
}
for s in "${SECONDARIES[@]}"; do
  # shellcheck disable=SC2086
  wait_serials $s "transferred"
done

# --- the sample of queries ------------------------------------------------------------------
{
  for z in "${ZONES[@]}"; do
    # every (owner, type) in the zone, as mimi writes it (generic types: TYPE65280 ...)
    "$MIMI" zone export "$W/${FILE[$z]}" --generic |
      awk '/^\$ORIGIN/ { o = $2; next } /^;/ || NF < 4 { next }
           { n = ($1 == "@") ? o : ($1 ~ /\.$/ ? $1 : $1 "." o); print n, $4 }'
    # every mapping owner, and other types there (NODATA)
    "$MIMI" zone list "$W/${FILE[$z]}" --json |
      python3 -c 'import json, sys; [print(m["owner"], t) for m in json.load(sys.stdin) for t in ("TYPE65280", "A", "TXT")]'
    echo "$z ANY"
    echo "$z TYPE65280"                     # NODATA at the apex
    echo "nonexistent.$z A"                 # NXDOMAIN
    echo "0.0.0.0.0.0.0.$z TYPE65280"       # NXDOMAIN
  done
  echo "1.1.1.5.5.5.1.e164.mimi.arpa. TYPE65280" # empty non-terminal: NODATA
  echo "ap.mimi.arpa. TYPE65281"                 # empty non-terminal: NODATA
  echo "2.0.2.1.e164.mimi.arpa. TYPE65280"       # referral to e164.mimi.arpa.
  echo "0.0.0.0.6.4.9.7.0.2.4.4.e164.mimi.arpa. TYPE65280"
  echo "hugh.example.com.email.mimi.arpa. TYPE65280" # referral to email.mimi.arpa.
  echo "e164.mimi.arpa. NS"                      # referral at the cut
  echo "e164.mimi.arpa. DS"                      # DS is the parent's data at a cut
  echo "example.org. A"                          # REFUSED
  echo "arpa. SOA"                               # REFUSED (above the zones)
} | awk '{ print tolower($1), $2 }' | sort -u >"$W/sample"

# Normalised answer: rcode, flags, the OPT line, then each section with its records sorted.
# Query id, timing and server lines are left out.
norm() {
  dig @"$1" -p "$2" +norec +nocookie +time=2 +tries=1 +nocmd +nostats +notcp "$3" "$4" 2>&1 |
    awk -v OFS='\t' '
      /^;; ->>HEADER<<-/ { sub(/, id: [0-9]+/, ""); print 0, 0, $0; next }
      /^;; flags:/ { print 0, 1, $0; next }
      /^; EDNS:/ { print 0, 2, $0; next }
      /^;; [A-Z]+ SECTION:/ { sec++; print sec, 0, $2 ":"; next }
      /^;/ || /^[ \t]*$/ { next }
      sec > 0 { $1 = $1; print sec, 9, $0 }' |
    LC_ALL=C sort -t "$(printf '\t')" -k1,1n -k2,2n -k3 | cut -f3-
}
# For ANY: rcode, flags and how many RRset types the answer holds; and which.
answer_types() { sed -E -n '/^ANSWER:$/,/^(AUTHORITY|ADDITIONAL):$/p' <<<"$1" | awk 'NF >= 5 { print $4 }' | sort -u; }
any_shape() { echo "$(grep -o 'status: [A-Z]*' <<<"$1") $(grep -o '^;; flags: [a-z ]*' <<<"$1") types=$(answer_types "$1" | wc -l | tr -d ' ')"; }
any_type() { answer_types "$1" | tr '\n' ' ' | sed 's/ $//'; }
kind_of() {
  local rc
  rc=$(sed -n 's/.*status: \([A-Z]*\).*/\1/p' <<<"$1")
  if [ "$rc" != NOERROR ]; then echo "$rc"
  elif ! grep -q '^;; flags:.* aa' <<<"$1"; then echo referral
  elif grep -q '^ANSWER:' <<<"$1"; then echo answer
  else echo nodata; fi
}

# compare NAME TYPE: mimi against every secondary, one line each.
declare -A same=() differ=() kinds=()
compare() {
  local name=$1 type=$2 a b kind s sname saddr sport
  a=$(norm $MA "$MP" "$name" "$type")
  kind=$(kind_of "$a")
  kinds[$kind]=$((${kinds[$kind]:-0} + 1))
  for s in "${SECONDARIES[@]}"; do
    read -r sname saddr sport _ <<<"$s"
    b=$(norm "$saddr" "$sport" "$name" "$type")
    if [ "$type" = ANY ] && [ "$kind" = answer ]; then
      # RFC 8482: the server picks which RRset answers ANY; both must send exactly one.
      if [ "$(any_shape "$a")" = "$(any_shape "$b")" ] && [[ $(any_shape "$a") == *" types=1" ]]; then
        same[$sname]=$((${same[$sname]:-0} + 1))
        ok "$name $type: one RRset from each (mimi $(any_type "$a"), $sname $(any_type "$b"))"
        continue
      fi
    elif [ "$a" = "$b" ]; then
      same[$sname]=$((${same[$sname]:-0} + 1))
      ok "$name $type: $sname gives the same answer ($kind)"
      continue
    fi
    differ[$sname]=$((${differ[$sname]:-0} + 1))
    bad "$name $type: mimi and $sname differ ($kind)"
    diff <(echo "$a") <(echo "$b") | sed -e 's/^</  mimi:/' -e "s/^>/  $sname:/" | grep -e '^  mimi:' -e "^  $sname:" || true
  done
}
while read -r name type; do compare "$name" "$type"; done <"$W/sample"

# --- a change on mimi reaches the secondaries -----------------------------------------------
# New mapping, SIGHUP to mimi, which sends NOTIFY to both secondaries (axfr.notify):
# each secondary queries the SOA and transfers (Knot asks IXFR; mimi answers with the whole
# zone, AXFR-style, as RFC 1995 allows).
CZ=5.5.5.1.e164.mimi.arpa.
old_serial=$(serial $MA "$MP" $CZ)
"$MIMI" zone add "$W/${FILE[$CZ]}" --sii "+1 555 111 4444" --ssi mimi://chat.example/u/erin \
  --key zones/keys/chat.example.key --valid-days 30 >/dev/null
kill -HUP $MPID
for _ in $(seq 50); do
  [ "$(serial $MA "$MP" $CZ)" != "$old_serial" ] && break
  sleep 0.1
done
new_serial=$(serial $MA "$MP" $CZ)
if [ "$new_serial" != "$old_serial" ]; then ok "mimi reloaded $CZ on SIGHUP (serial $old_serial -> $new_serial)"
else bad "mimi still serves serial $old_serial of $CZ after SIGHUP"; fi
ZONES=("$CZ")
for s in "${SECONDARIES[@]}"; do
  read -r _ saddr sport _ <<<"$s"
  # shellcheck disable=SC2086
  wait_serials $s "refreshed after NOTIFY"
done
compare 4.4.4.4.1.1.1.$CZ TYPE65280
compare $CZ SOA

# --- summary ----------------------------------------------------------------------------------
k=$(for x in "${!kinds[@]}"; do echo -n "$x=${kinds[$x]} "; done)
echo "secondary.sh: $(wc -l <"$W/sample" | tr -d ' ') sample queries + 2 after the change (mimi's answers: ${k% })"
for s in "${SECONDARIES[@]}"; do
  read -r sname _ <<<"$s"
  echo "secondary.sh: $sname: ${same[$sname]:-0} identical to mimi, ${differ[$sname]:-0} different"
done
interop_end
