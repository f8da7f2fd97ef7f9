#!/usr/bin/env bash
# DNS UPDATE (RFC 2136) to `mimi dp serve` from the standard clients, and the changes
# reaching existing secondaries by IXFR (RFC 1995) after NOTIFY (RFC 1996).
# - BIND's nsupdate (UDP, and TCP with -v) and Knot's knsupdate, each with the TSIG key
#   (hmac-sha256) of one app provider, publish signed SSI mappings in RFC 3597 form; dig
#   at the DP then shows exactly that record, and the SOA serial went up.
# - Refused: a replayed record (same seq), an UPDATE signed with a key the DP does not know
#   (NOTAUTH), an RR deletion, a record of another provider than the key's; the published
#   records are still served after each.
# - Knot (journal-content: changes, its default) and NSD, secondaries of the DP, make
#   their first transfer; three more updates follow; both follow by IXFR (their logs, and
#   the DP's debug log of the IXFR it served them), kdig IXFR=OLD at the DP gets an
#   incremental answer, and both answer like the DP for every published owner and the SOA.
# The signed records come from `mimi zone add` on a scratch copy of the zone (which picks
# the next seq for an owner and provider) and `mimi zone export --generic`.
# Usage: tools/interop/update.sh   (needs dnsutils, knot, knot-dnsutils, nsd; KEEP=1 keeps
#        the temporary directory with configs and logs)
# mimi listens on 127.0.0.81, Knot on 127.0.0.82, NSD on 127.0.0.83, on free ports.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
interop_start update.sh
KNOTD=$(sbin knotd) KNOTC=$(sbin knotc) NSD=$(sbin nsd) NSD_CHECKCONF=$(sbin nsd-checkconf)
need "dnsutils, knot, knot-dnsutils, nsd, python3" \
  dig kdig nsupdate knsupdate python3 "$KNOTD" "$KNOTC" "$NSD" "$NSD_CHECKCONF"

MA=127.0.0.81 KA=127.0.0.82 NA=127.0.0.83
CZ=5.5.5.1.e164.mimi.arpa.

# check DESCRIPTION CMD...: ok or not ok, by CMD's status.

MP=$(free_port $MA)
KP=$(free_port $KA)
NP=$(free_port $NA)

serial() { dig @"$1" -p "$2" +norec +short +time=1 +tries=1 "$CZ" SOA 2>/dev/null | awk '{ print $3 }'; }
# ssi ADDR PORT OWNER: the SSI records at OWNER, one per line, as "\# LEN hex", sorted.
ssi() {
  dig @"$1" -p "$2" +norec +short +time=1 +tries=1 "$3" TYPE65280 2>/dev/null |
    awk '$1 == "\\#" { h = ""; for (i = 3; i <= NF; i++) h = h $i; print "\\# " $2 " " tolower(h) }' | sort
}

# --- keys, zone, the DP --------------------------------------------------------------------
cp zones/5.5.5.1.e164.zone "$W/carrier.zone"
cp zones/5.5.5.1.e164.zone "$W/scratch.zone"
cp zones/trust.toml "$W/"
tsig_key chat-update. "$W/chat.tsig"
tsig_key talk-update. "$W/talk.tsig"
tsig_key stranger. "$W/stranger.tsig" # the DP does not know it
tsig_key operator. "$W/operator.tsig" # the carrier's operator: releases and ports
mkdir "$W/journal"
cat >"$W/dp.toml" <<EOF
listen = ["$MA:$MP"]
trust = "trust.toml"
[[zone]]
origin = "$CZ"
file = "carrier.zone"
[[update]]
provider = "chat.example"
tsig = "chat.tsig"
[[update]]
provider = "talk.example"
tsig = "talk.tsig"
[[operator]]
tsig = "operator.tsig"
[journal]
dir = "journal"
[axfr]
allow = ["127.0.0.0/8"]
notify = ["$KA:$KP", "$NA:$NP"]
EOF
# debug: the DP logs each IXFR it serves (with the client's address)
NO_COLOR=1 MIMI_LOG=mimi_discovery=debug "$MIMI" dp serve --config "$W/dp.toml" >"$W/dp.log" 2>&1 &
MPID=$!
pids+=($MPID)
wait_dns $MA "$MP" $CZ $MPID "$W/dp.log"

# mapping SII SSI PROVIDER: sign a mapping into the scratch zone (the next seq for that
# owner and provider) and set OWNER and RDATA ("\# LEN hex", RFC 3597) to it.
OWNER= RDATA=
mapping() {
  local rel
  "$MIMI" zone add "$W/scratch.zone" --sii "$1" --ssi "$2" --key "zones/keys/$3.key" --valid-days 30 >/dev/null
  OWNER=$("$MIMI" name "$1")
  rel=${OWNER%".$CZ"}
  RDATA=$("$MIMI" zone export "$W/scratch.zone" --generic |
    awk -v r="$rel" -v a="$OWNER" '($1 == r || $1 == a) && $4 == "TYPE65280" { $1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); print }')
  [ "$(wc -l <<<"$RDATA")" -eq 1 ] && [ -n "$RDATA" ] || die "expected one SSI record at $OWNER in the scratch zone, got: $RDATA"
}
norm_rdata() { awk '{ h = ""; for (i = 3; i <= NF; i++) h = h $i; print "\\# " $2 " " tolower(h) }' <<<"$1"; }

# nsupd KEYFILE [OPTION...] < commands: nsupdate to the DP; sets OUT (its output) and RC.
OUT= RC=0
nsupd() {
  local key=$1
  shift
  RC=0
  OUT=$({ printf 'server %s %s\nzone %s\n' $MA "$MP" $CZ; cat; printf 'send\nanswer\n'; } |
    nsupdate -k "$key" -t 5 -u 2 "$@" 2>&1) || RC=$?
}
knsupd() {
  local key=$1
  shift
  RC=0
  OUT=$({ printf 'server %s %s\nzone %s\n' $MA "$MP" $CZ; cat; printf 'send\nanswer\n'; } |
    knsupdate -k "$key" -t 5 "$@" 2>&1) || RC=$?
}
status_of() { sed -n 's/.*status: \([A-Z]*\).*/\1/p' <<<"$OUT" | head -1; }

declare -A PUBLISHED=() # owner -> the SSI records expected there (normalised)
# served OWNER: the DP serves exactly PUBLISHED[OWNER] at OWNER.
served() { [ "$(ssi $MA "$MP" "$1")" = "${PUBLISHED[$1]}" ]; }

# publish HOW KEY SII SSI PROVIDER [CLIENT OPTION...]: one mapping by UPDATE, then the checks.
publish() {
  local how=$1 key=$2 sii=$3 uri=$4 prov=$5 before after client=nsupd
  shift 5
  [[ $how == knsupdate* ]] && client=knsupd
  mapping "$sii" "$uri" "$prov"
  before=$(serial $MA "$MP")
  $client "$key" "$@" <<<"update add $OWNER 3600 IN TYPE65280 $RDATA"
  if [ "$RC" -eq 0 ] && [ "$(status_of)" = NOERROR ]; then
    ok "$how: UPDATE adding $uri at $OWNER answered NOERROR"
  else
    bad "$how: UPDATE adding $uri at $OWNER: exit $RC, status '$(status_of)'"
    show <<<"$OUT"; tail -5 "$W/dp.log" | show
  fi
  PUBLISHED[$OWNER]=$(norm_rdata "$RDATA")
  if poll 20 served "$OWNER"; then
    ok "$how: dig at the DP shows exactly the published record at $OWNER"
  else
    bad "$how: dig at the DP at $OWNER: '$(ssi $MA "$MP" "$OWNER")', want '${PUBLISHED[$OWNER]}'"
  fi
  after=$(serial $MA "$MP")
  if [ -n "$before" ] && [ -n "$after" ] && [ "$after" -gt "$before" ]; then
    ok "$how: the SOA serial went up ($before -> $after)"
  else
    bad "$how: the SOA serial did not go up ('$before' -> '$after')"
  fi
}
# still_served WHAT: every published record is served as published.
still_served() {
  local o missing=()
  for o in "${!PUBLISHED[@]}"; do served "$o" || missing+=("$o"); done
  if [ ${#missing[@]} -eq 0 ]; then ok "after $1 the DP still serves all ${#PUBLISHED[@]} published records"
  else bad "after $1 the DP does not serve as published: ${missing[*]}"; fi
}
# refused WHAT WANT: the last client run failed with status WANT, the serial did not move.
refused() {
  local what=$1 want=$2 before=$3 st ede
  st=$(status_of)
  [ -n "$st" ] || st=$(grep -o -E 'NOTAUTH|REFUSED|FORMERR|NOTIMP|NOTZONE|SERVFAIL|BADKEY|BADSIG' <<<"$OUT" | head -1 || true)
  if [ "$RC" -ne 0 ] && [[ $st == "$want" ]]; then
    ok "$what: refused with $st (client exit $RC)"
  else
    bad "$what: client exit $RC, status '$st' (want non-zero and $want)"
    show <<<"$OUT"
  fi
  # RFC 8914 extended error naming the record and the reason (nsupdate prints it as "; EDE:")
  ede=$(sed -n 's/^; EDE: //p' <<<"$OUT" | head -1)
  check "$what: the answer carries an extended error: ${ede:-none}" [ -n "$ede" ]
  check "$what: the SOA serial stayed at $before" [ "$(serial $MA "$MP")" = "$before" ]
}

# --- 1, 2: publishing ------------------------------------------------------------------------
publish "nsupdate (UDP)" "$W/chat.tsig" "+1 555 111 7777" mimi://chat.example/u/ursula chat.example
publish "nsupdate -v (TCP)" "$W/chat.tsig" "+1 555 111 7778" mimi://chat.example/u/tamsin chat.example -v
publish "knsupdate" "$W/talk.tsig.knot" "+1 555 111 7779" mimi://talk.example/u/kim talk.example

# --- 3: refusals -----------------------------------------------------------------------------
# The same record (same seq) once more: a replay.
mapping "+1 555 111 7777" mimi://chat.example/u/ursula chat.example # seq 2, kept for below
s=$(serial $MA "$MP")
nsupd "$W/chat.tsig" <<<"update add $OWNER 3600 IN TYPE65280 ${PUBLISHED[$OWNER]}"
refused "replayed UPDATE (the record already published, same seq)" REFUSED "$s"
still_served "the replay"

# A valid new record (seq 2) signed with a TSIG key the DP does not know.
s=$(serial $MA "$MP")
nsupd "$W/stranger.tsig" <<<"update add $OWNER 3600 IN TYPE65280 $RDATA"
refused "UPDATE signed with an unknown TSIG key" NOTAUTH "$s"
check "UPDATE signed with an unknown TSIG key: TSIG error BADKEY in the answer" grep -q -E 'NOTAUTH\(BADKEY\)|TSIG.* BADKEY' <<<"$OUT"
still_served "the unknown key"

# Deleting the RRset (class ANY), and one record (class NONE).
s=$(serial $MA "$MP")
nsupd "$W/chat.tsig" <<<"update delete $OWNER TYPE65280"
refused "RR deletion (update delete $OWNER TYPE65280)" REFUSED "$s"
still_served "the RRset deletion"
s=$(serial $MA "$MP")
nsupd "$W/chat.tsig" <<<"update delete $OWNER 3600 IN TYPE65280 ${PUBLISHED[$OWNER]}"
refused "RR deletion of one record (class NONE)" REFUSED "$s"
still_served "the record deletion"

# talk.example's record sent with chat.example's key.
mapping "+1 555 111 7779" mimi://talk.example/u/kim2 talk.example
s=$(serial $MA "$MP")
nsupd "$W/chat.tsig" <<<"update add $OWNER 3600 IN TYPE65280 $RDATA"
refused "talk.example's record under chat.example's key" REFUSED "$s"
still_served "the other provider's record"
# (the scratch zone now holds seq 2 for +1 555 111 7779 of talk.example: not published)

# --- 4: Knot and NSD as secondaries, following by IXFR -----------------------------------------
mkdir -p "$W/knot" "$W/nsd"
knot_secondary_conf "$W/knot" $KA "$KP" $MA "$MP" changes $CZ >"$W/knot.conf"
"$KNOTC" -c "$W/knot.conf" conf-check >/dev/null 2>&1 ||
  die "knot.conf rejected: $("$KNOTC" -c "$W/knot.conf" conf-check 2>&1)"
"$KNOTD" -c "$W/knot.conf" >"$W/knot.log" 2>&1 &
KPID=$!
pids+=($KPID)
nsd_secondary_conf "$W/nsd" $NA "$NP" $MA "$MP" "" $CZ >"$W/nsd.conf"
"$NSD_CHECKCONF" "$W/nsd.conf" >/dev/null 2>&1 || die "nsd.conf rejected: $("$NSD_CHECKCONF" "$W/nsd.conf" 2>&1)"
"$NSD" -d -c "$W/nsd.conf" >"$W/nsd.log" 2>&1 &
NPID=$!
pids+=($NPID)
SECONDARIES=("Knot $KA $KP $KPID $W/knot.log" "NSD $NA $NP $NPID $W/nsd.log")

same_serial() { [ "$(serial "$1" "$2")" = "$(serial $MA "$MP")" ]; }
# follow WHAT: every secondary gets the DP's serial (10 s) and answers like it for every
# published owner.
follow() {
  local s name addr port pid log o differ
  for s in "${SECONDARIES[@]}"; do
    read -r name addr port pid log <<<"$s"
    kill -0 "$pid" 2>/dev/null || { show <"$log"; die "$name exited"; }
    if poll 100 same_serial "$addr" "$port"; then
      ok "$name $1: serial $(serial "$addr" "$port"), as the DP"
    else
      bad "$name $1: serial '$(serial "$addr" "$port")', the DP's $(serial $MA "$MP") (after 10 s)"
      grep -i -e error -e warn -e refused -e fail -e xfr "$log" | show 8 || true
    fi
    differ=()
    for o in "${!PUBLISHED[@]}"; do
      [ "$(ssi "$addr" "$port" "$o")" = "$(ssi $MA "$MP" "$o")" ] && [ -n "$(ssi "$addr" "$port" "$o")" ] ||
        differ+=("$o")
    done
    if [ ${#differ[@]} -eq 0 ]; then ok "$name answers like the DP for all ${#PUBLISHED[@]} published owners"
    else bad "$name answers unlike the DP at ${differ[*]}"; fi
  done
}
follow "transferred the zone"
S1=$(serial $MA "$MP")
knot_lines=$(wc -l <"$W/knot.log")
nsd_lines=$(wc -l <"$W/nsd.log")
dp_lines=$(wc -l <"$W/dp.log")

# Three more updates: a new seq replacing a published mapping, and two new owners.
publish "nsupdate (UDP), replacing a mapping" "$W/chat.tsig" "+1 555 111 7778" mimi://chat.example/u/tamsin2 chat.example
publish "knsupdate -v (TCP)" "$W/talk.tsig.knot" "+1 555 111 7780" mimi://talk.example/u/lee talk.example -v
publish "nsupdate -v (TCP)" "$W/chat.tsig" "+1 555 111 7781" mimi://chat.example/u/vera chat.example -v
S2=$(serial $MA "$MP")
follow "followed 3 updates"

# Knot: "IXFR, incoming, ... finished" since S1, and no AXFR (nor AXFR-style IXFR).
knot_new=$(tail -n +"$((knot_lines + 1))" "$W/knot.log")
n=$(grep -c "IXFR, incoming, .*finished" <<<"$knot_new" || true)
if [ "$n" -gt 0 ] && ! grep -q -i -e "AXFR-style" -e "AXFR, incoming" <<<"$knot_new"; then
  ok "Knot followed by IXFR ($n x 'IXFR, incoming ... finished', no AXFR): $(grep -o 'zone updated.*serial [0-9]* -> [0-9]*' <<<"$knot_new" |
    sed 's/.*serial //' | tr '\n' ',' | sed 's/,$//')"
else
  bad "Knot's log since serial $S1 shows no IXFR (or an AXFR):"
  grep -i xfr <<<"$knot_new" | show 8 || true
fi
# NSD does not name the kind of transfer in its log (verbosity 2; nor at 5): each update it
# received since S1 must be smaller than its first transfer (the whole zone, then smaller).
full=$(grep -m1 -o 'received update to serial [0-9]* .* of [0-9]* bytes' "$W/nsd.log" | awk '{ print $(NF - 1) }')
sizes=$(tail -n +"$((nsd_lines + 1))" "$W/nsd.log" | grep -o 'received update to serial [0-9]* .* of [0-9]* bytes' |
  awk '{ print $(NF - 1) }' | tr '\n' ' ')
if [ -n "$full" ] && [ -n "$sizes" ] && awk -v f="$full" '{ for (i = 1; i <= NF; i++) if ($i >= f) exit 1 }' <<<"$sizes"; then
  ok "NSD received the updates as increments (${sizes% } bytes; its first transfer, the whole zone: $full)"
else
  bad "NSD's transfers since serial $S1 are not smaller than the whole zone ($full bytes): '$sizes'"
  grep -i -e xfr -e serial "$W/nsd.log" | show 8 || true
fi
# The DP's side: IXFR from the journal to each secondary's address.
dp_new=$(tail -n +"$((dp_lines + 1))" "$W/dp.log")
for s in "${SECONDARIES[@]}"; do
  read -r name addr _ <<<"$s"
  if grep "IXFR from the journal" <<<"$dp_new" | grep -q "$addr:"; then
    ok "the DP served $name ($addr) IXFR from its journal"
  else
    bad "the DP's log shows no IXFR from the journal to $name ($addr)"
    grep -i -e xfr -e "$addr" <<<"$dp_new" | show 8 || true
  fi
done

# kdig IXFR=S1: SOA S2, then for each step SOA old / removed / SOA new / added, SOA S2; the old
# serial S1 is in it (an AXFR-style answer would hold only S2's SOA).
ixfr=$(kdig @$MA -p "$MP" +tcp +nostats $CZ IXFR="$S1" 2>&1 || true)
soas=$(awk '$4 == "SOA" { print $7 }' <<<"$ixfr" | tr '\n' ' ')
nrec=$(awk '$3 == "IN" || $4 == "TYPE65280" || $4 == "SOA"' <<<"$ixfr" | grep -c -v '^;' || true)
if [ "$(awk '{ print $1 }' <<<"$soas")" = "$S2" ] && grep -q -w "$S1" <<<"$soas" && grep -q "IXFR" <<<"$ixfr"; then
  ok "kdig IXFR=$S1 at the DP: an incremental answer ($nrec records; SOA serials $soas)"
else
  bad "kdig IXFR=$S1 at the DP is not incremental (SOA serials: $soas)"
  show <<<"$ixfr"
fi
# up to date: just the SOA
ixfr=$(kdig @$MA -p "$MP" +tcp +nostats $CZ IXFR="$S2" 2>&1 || true)
soas=$(awk '$4 == "SOA" { print $7 }' <<<"$ixfr" | tr '\n' ' ')
check "kdig IXFR=$S2 (current) at the DP: the SOA only ($soas)" [ "$soas" = "$S2 " ]

# --- 4: the operator: a release and a port by plain nsupdate (docs/lifecycle.md) -------------
# chat.example signs a re-claim now, before the release, to try after it.
mapping "+1 555 111 7777" mimi://chat.example/u/ursula3 chat.example
sleep 1
s=$(serial $MA "$MP")
nsupd "$W/operator.tsig" <<<"update delete $OWNER"
if [ "$RC" -eq 0 ] && [ "$(status_of)" = NOERROR ]; then
  ok "operator: nsupdate 'update delete $OWNER' (a release) answered NOERROR"
else
  bad "operator: the release: exit $RC, status '$(status_of)'"; show <<<"$OUT"
fi
unset "PUBLISHED[$OWNER]"
check "operator: dig at the DP shows no mapping at the released owner" [ -z "$(ssi $MA "$MP" "$OWNER")" ]
check "operator: the SOA serial went up by one ($s -> $(serial $MA "$MP"))" [ "$(serial $MA "$MP")" = "$((s + 1))" ]
check "operator: the release marker is on disk (carrier.zone.releases)" grep -q "^$OWNER " "$W/carrier.zone.releases"
s=$(serial $MA "$MP")
nsupd "$W/chat.tsig" <<<"update add $OWNER 3600 IN TYPE65280 $RDATA"
refused "a re-claim verified before the release" REFUSED "$s"
check "the re-claim's refusal names the release" grep -q "released at" <<<"$OUT"
# The port: the number delegated to the recipient's name server, with glue.
P=$("$MIMI" name "+1 555 111 7778")
nsupd "$W/operator.tsig" <<<"update add $P 3600 NS ns1.$P
update add ns1.$P 3600 A 127.0.0.99"
if [ "$RC" -eq 0 ] && [ "$(status_of)" = NOERROR ]; then
  ok "operator: nsupdate adding NS and glue at $P (a port) answered NOERROR"
else
  bad "operator: the port: exit $RC, status '$(status_of)'"; show <<<"$OUT"
fi
unset "PUBLISHED[$P]"
# referral ADDR PORT: a referral to ns1.$P with its glue, no answer, no AA.
referral() {
  local out
  out=$(dig @"$1" -p "$2" +norec +time=1 +tries=1 "$P" TYPE65280 2>/dev/null)
  grep -q -E "^$P[[:space:]].*NS[[:space:]]+ns1\.$P" <<<"$out" &&
    grep -q -E "^ns1\.$P[[:space:]].*A[[:space:]]+127\.0\.0\.99" <<<"$out" &&
    grep -q "ANSWER: 0," <<<"$out" && ! grep -q "flags:.* aa" <<<"$out"
}
check "operator: dig at the DP: a referral for the ported $P (NS and glue, no AA)" referral $MA "$MP"
follow "followed the release and the port"
for s in "${SECONDARIES[@]}"; do
  read -r name addr port _ <<<"$s"
  check "$name: no mapping at the released owner" [ -z "$(ssi "$addr" "$port" "$OWNER")" ]
  check "$name: a referral for the ported number" referral "$addr" "$port"
done

# Expected warnings: the expired demo mapping refused at load, the unknown TSIG key, and
# NOTIFYs to the secondaries before they were started.
unexpected=$(grep -E '^[^ ]+ +(ERROR|WARN) ' "$W/dp.log" |
  grep -v -e 'record refused: mapping for mimi://talk.example/u/old expired' -e 'unknown TSIG key stranger' \
    -e 'NOTIFY not acknowledged' || true)
if [ -z "$unexpected" ]; then ok "the DP logged no unexpected warnings or errors"
else bad "the DP logged:"; show <<<"$unexpected"; fi
interop_end
