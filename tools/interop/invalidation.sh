#!/usr/bin/env bash
# Invalidation by NOTIFY with a resolver this project did not write: PowerDNS Recursor
# forwarding the carrier zone to `mimi dp serve`, configured to accept NOTIFY from the DP
# (allow-notify-for / allow-notify-from), drops its cached answers for the zone when the
# DP notifies, and then returns the new mapping. A second Recursor without those settings
# keeps serving its cached "no such name" - the drop is the NOTIFY's doing. Then mimi's own
# resolver (`mimi resolver serve` with a [[subscription]]) does the same by NOTIFY with
# TSIG and CHANGES, dropping only what changed.
# Usage: tools/interop/invalidation.sh   (needs dnsutils, pdns-recursor; KEEP=1 keeps the
#        temporary directory with configs and logs)
# mimi listens on 127.0.0.81 (the carrier) and .88 (a root delegating to it), the Recursors
# on 127.0.0.85 and .86, mimi's resolver on .87.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
interop_start invalidation.sh
REC=$(sbin pdns_recursor)
need "dnsutils, pdns-recursor, python3" dig python3 "$REC"

MA=127.0.0.81 RA=127.0.0.85 PA=127.0.0.86 SA=127.0.0.87 TA=127.0.0.88
CZ=5.5.5.1.e164.mimi.arpa.

# One port for the tree and mimi's resolver (its config has one port for the tree).
MP=$(free_port $MA $SA $TA)
RP=$(free_port $RA)
PP=$(free_port $PA)
NEW_SII="+1 555 111 7000"
NEW=$("$MIMI" name "$NEW_SII")
ALICE=$("$MIMI" name "+1 555 111 2222")

cp zones/5.5.5.1.e164.zone "$W/carrier.zone"
cp zones/trust.toml "$W/"
tsig_key chat-update. "$W/chat.tsig"
tsig_key resolver-sub. "$W/sub.tsig"
cat >"$W/dp.toml" <<EOF
listen = ["$MA:$MP"]
trust = "trust.toml"
[[zone]]
origin = "$CZ"
file = "carrier.zone"
[[update]]
provider = "chat.example"
tsig = "chat.tsig"
[axfr]
notify = ["$RA:$RP"]
[[subscriber]]
address = "$SA:$MP"
tsig = "sub.tsig"
EOF
NO_COLOR=1 MIMI_LOG=mimi_discovery=info "$MIMI" dp serve --config "$W/dp.toml" >"$W/dp.log" 2>&1 &
pids+=($!)
wait_dns $MA "$MP" $CZ $! "$W/dp.log"

# rec NAME ADDR PORT NOTIFY(yes|no): a Recursor forwarding the carrier zone to the DP.
rec() {
  local d=$W/$1
  mkdir -p "$d"
  {
    echo "local-address=$2"
    echo "local-port=$3"
    echo "forward-zones=$CZ=$MA:$MP"
    echo "socket-dir=$d"
    echo "daemon=no"
    echo "disable-syslog=yes"
    echo "log-common-errors=yes"
    echo "loglevel=6"
    echo "quiet=no"
    echo "dnssec=off"
    echo "threads=1"
    echo "max-negative-ttl=3600"
    if [ "$4" = yes ]; then
      echo "allow-notify-for=$CZ"
      echo "allow-notify-from=$MA"
    fi
  } >"$d/recursor.conf"
  "$REC" --config-dir="$d" >"$d/log" 2>&1 &
  pids+=($!)
  wait_dns "$2" "$3" $CZ $! "$d/log"
}
rec notified $RA "$RP" yes
rec plain $PA "$PP" no

# status ADDR PORT OWNER; ssi ADDR PORT OWNER (the SSI RDATA, one line per record)
status() { dig @"$1" -p "$2" +time=2 +tries=1 "$3" TYPE65280 2>/dev/null | sed -n 's/.*status: \([A-Z]*\).*/\1/p'; }
ssi() { dig @"$1" -p "$2" +short +time=2 +tries=1 "$3" TYPE65280 2>/dev/null; }

check "Recursor (NOTIFY allowed) caches NXDOMAIN for $NEW" [ "$(status $RA "$RP" "$NEW")" = NXDOMAIN ]
check "Recursor (plain) caches NXDOMAIN for $NEW" [ "$(status $PA "$PP" "$NEW")" = NXDOMAIN ]
ALICE_BEFORE=$(ssi $RA "$RP" "$ALICE")
check "Recursor caches alice's mapping" [ -n "$ALICE_BEFORE" ]

# mimi's own resolver, subscribed to the zone; it walks from the apex, so a small root DP
# delegates the block to the carrier's DP.
"$MIMI" zone new mimi.arpa. --out "$W/root.zone" --ns ns1.mimi.arpa.=$TA >/dev/null
"$MIMI" zone delegate "$W/root.zone" --child $CZ --ns ns1.$CZ=$MA >/dev/null
cat >"$W/root.toml" <<EOF
listen = ["$TA:$MP"]
trust = "trust.toml"
[[zone]]
origin = "mimi.arpa."
file = "root.zone"
EOF
NO_COLOR=1 MIMI_LOG=warn "$MIMI" dp serve --config "$W/root.toml" >"$W/root.log" 2>&1 &
pids+=($!)
wait_dns $TA "$MP" mimi.arpa. $! "$W/root.log"
cat >"$W/resolver.toml" <<EOF
roots = ["$TA"]
port = $MP
trust = "trust.toml"
listen = ["$SA:$MP"]
[[subscription]]
zone = "$CZ"
server = "$MA"
tsig = "sub.tsig"
EOF
NO_COLOR=1 MIMI_LOG=mimi_discovery=info "$MIMI" resolver serve --config "$W/resolver.toml" >"$W/resolver.log" 2>&1 &
pids+=($!)
# It learns the zone's serial at start (a CHANGES exchange), logged as "invalidated".
check "mimi's resolver learnt the zone's serial by CHANGES" poll 100 grep -q "invalidated" "$W/resolver.log"
check "mimi's resolver caches NXDOMAIN for $NEW" [ "$(status $SA "$MP" "$NEW")" = NXDOMAIN ]
check "mimi's resolver serves alice's mapping" [ -n "$(ssi $SA "$MP" "$ALICE")" ]

# The claim, published live by the app provider.
if "$MIMI" publish --dp "$MA:$MP" --zone $CZ --tsig "$W/chat.tsig" --key zones/keys/chat.example.key \
  --sii "$NEW_SII" --ssi mimi://chat.example/u/walk-in --valid-days 30 >"$W/publish.out" 2>&1; then
  ok "mimi publish: $NEW_SII published"
else
  bad "mimi publish failed: $(cat "$W/publish.out")"
fi
served() { [ -n "$(ssi "$1" "$2" "$NEW")" ]; }
t0=$(date +%s.%N)
if poll 50 served $RA "$RP"; then
  ok "Recursor returned the new mapping after the DP's NOTIFY ($(python3 -c "import time; print(f'{time.time() - $t0:.2f}')") s)"
else
  bad "Recursor still does not return the new mapping 5 s after the UPDATE"
  tail -5 "$W/notified/log" | sed 's/^/    /'
fi
check "the Recursor logged the NOTIFY it took" grep -q "Got NOTIFY" "$W/notified/log"
check "Recursor without allow-notify still answers NXDOMAIN from its cache" [ "$(status $PA "$PP" "$NEW")" = NXDOMAIN ]
if poll 20 served $SA "$MP"; then
  ok "mimi's resolver returned the new mapping after NOTIFY (TSIG) + CHANGES"
else
  bad "mimi's resolver still does not return the new mapping 2 s after the UPDATE"
  tail -5 "$W/resolver.log" | sed 's/^/    /'
fi
check "mimi's resolver logged the CHANGES it applied" grep -q "invalidated.*prefixes=" "$W/resolver.log"

interop_end
