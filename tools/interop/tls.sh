#!/usr/bin/env bash
# DNS over TLS (RFC 7858) on `mimi dp serve`, seen through Knot's kdig and ISC's dig: a
# deployment CA and the DP's certificate from `mimi tls ca` / `mimi tls issue`; kdig
# validating against the CA (by name) and by SPKI pin (`mimi tls pin`), and dig +tls, get
# the same answers over DoT as over UDP (mappings, a referral, NXDOMAIN, the SOA); a wrong
# pin, another CA and a wrong name are refused by kdig. Access classes: a provider's kdig -y
# queries (answers signed) and another's client-certificate queries each stop at their
# quota with RATE_LIMITED. Zone transfers need TSIG (`[axfr] keys`): kdig -y transfers (and
# checks every message's signature), kdig without the key is refused, and a Knot secondary
# with the key transfers the zone and answers like the DP.
# Usage: tools/interop/tls.sh   (needs knot-dnsutils, dnsutils; .ci/run installs them;
#        KEEP=1 keeps the temporary directory)
# The DP listens on 127.0.0.101 at free ports (UDP/TCP, and DoT).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
interop_start tls.sh
KNOTD=$(sbin knotd)
need "dnsutils, knot, knot-dnsutils, python3" dig kdig python3 "$KNOTD"

A=127.0.0.101 KA=127.0.0.102
P=$(free_port $A)
TP=$(free_port $A)
KP=$(free_port $KA)
tsig_key xfr. "$W/xfr.tsig"
XFR_SECRET=$(cut -d: -f3 "$W/xfr.tsig.knot")
tsig_key ap-query. "$W/ap.tsig"
AP_SECRET=$(cut -d: -f3 "$W/ap.tsig.knot")
cp zones/root.zone zones/5.5.5.1.e164.zone zones/trust.toml "$W/"
(cd "$W" && "$MIMI" tls ca --out ca >/dev/null && "$MIMI" tls ca --name "another CA" --out other >/dev/null &&
  "$MIMI" tls issue --ca ca --name dp.test --name $A --out dp >/dev/null &&
  "$MIMI" tls issue --ca ca --name dp.test --out stranger >/dev/null &&
  "$MIMI" tls issue --ca ca --name resolver.other.example --out apclient >/dev/null)
AP_PIN=$("$MIMI" tls pin "$W/apclient.pem")
QUOTA=10
cat >"$W/dp.toml" <<EOF
listen = ["$A:$P"]
trust = "trust.toml"
[[zone]]
origin = "mimi.arpa."
file = "root.zone"
[[zone]]
origin = "5.5.5.1.e164.mimi.arpa."
file = "5.5.5.1.e164.zone"
[tls]
listen = ["$A:$TP"]
cert = "dp.pem"
key = "dp.key"
[axfr]
keys = ["xfr.tsig"]
notify = ["$KA:$KP"]
[[client]]
provider = "chat.example."
tsig = "ap.tsig"
lookups_per_day = $QUOTA
burst = $QUOTA
[[client]]
provider = "other.example."
spki = ["$AP_PIN"]
lookups_per_day = $QUOTA
burst = $QUOTA
EOF
NO_COLOR=1 "$MIMI" dp serve --config "$W/dp.toml" >"$W/dp.log" 2>&1 &
pids+=($!)
wait_dns $A "$P" mimi.arpa. $! "$W/dp.log"
PIN=$("$MIMI" tls pin "$W/dp.pem")
WRONG=$("$MIMI" tls pin "$W/stranger.pem")

# answer TOOL ARGS...: the records of the answer and authority sections, sorted, and the
# status, from one query; "FAILED" when the client got no answer.
answer() {
  local tool=$1 out
  shift
  case $tool in
    udp) out=$(dig @$A -p "$P" +norec +time=2 +tries=1 "$@" 2>&1) || { echo FAILED; return; } ;;
    dig) out=$(dig @$A -p "$TP" +tls +norec +time=2 +tries=1 "$@" 2>&1) || { echo FAILED; return; } ;;
    kdig-ca) out=$(kdig @$A -p "$TP" +tls-ca="$W/ca.pem" +tls-hostname=dp.test +nordflag +timeout=2 +retry=0 "$@" 2>&1) || { echo FAILED; return; } ;;
    kdig-pin) out=$(kdig @$A -p "$TP" +tls-pin="$PIN" +nordflag +timeout=2 +retry=0 "$@" 2>&1) || { echo FAILED; return; } ;;
  esac
  grep -q -i "status: " <<<"$out" || { echo FAILED; return; }
  echo "status $(sed -n 's/.*status: \([A-Z]*\).*/\1/p' <<<"$out" | head -1)"
  # Records: owner, class, type and data (TTLs and dig/kdig layout differences aside).
  # RFC 3597 hex joined (dig breaks it into words).
  grep -v '^;' <<<"$out" | awk 'NF >= 4 {
    $2 = ""; line = ""
    for (i = 1; i <= NF; i++) {
      if ($i == "\\#") { h = ""; for (j = i + 2; j <= NF; j++) h = h $j; line = line " " $i " " $(i + 1) " " h; break }
      line = line " " $i
    }
    print line }' | tr -s ' ' | tr 'A-Z' 'a-z' | sort
}

ALICE=$("$MIMI" name "+1 555 111 2222")
BOB=$("$MIMI" name "+1 555 111 3333")
NONE=$("$MIMI" name "+1 555 111 0000")
for q in "$ALICE TYPE65280" "$BOB TYPE65280" "$NONE TYPE65280" "5.5.5.1.e164.mimi.arpa. SOA" "$ALICE NS"; do
  # shellcheck disable=SC2086
  want=$(answer udp $q)
  check "UDP answers $q" [ "$want" != FAILED ]
  for tool in kdig-ca kdig-pin dig; do
    # shellcheck disable=SC2086
    got=$(answer $tool $q)
    if [ "$got" = "$want" ]; then ok "$tool over DoT: $q as over UDP ($(head -1 <<<"$got"))"
    else bad "$tool over DoT: $q differs from UDP"; diff <(echo "$want") <(echo "$got") | show || true; fi
  done
done
# A referral (the root zone delegates e164 elsewhere): the same over DoT.
want=$(answer udp e164.mimi.arpa. SOA)
check "kdig over DoT: the referral for e164.mimi.arpa. as over UDP" [ "$(answer kdig-ca e164.mimi.arpa. SOA)" = "$want" ]

# Refusals: kdig must not accept the DP under another pin, another CA or another name.
refused() { ! kdig @$A -p "$TP" +nordflag +timeout=2 +retry=0 "$@" "$ALICE" TYPE65280 >"$W/refused.out" 2>&1 ||
  ! grep -q "status: NOERROR" "$W/refused.out"; }
check "kdig refuses the DP under another pin" refused +tls-pin="$WRONG"
check "kdig refuses the DP under another CA" refused +tls-ca="$W/other.pem" +tls-hostname=dp.test
check "kdig refuses the DP under another name" refused +tls-ca="$W/ca.pem" +tls-hostname=other.test
# --- zone transfers with TSIG ---------------------------------------------------------
CZ=5.5.5.1.e164.mimi.arpa.
out=$(kdig @$A -p "$P" -y "hmac-sha256:xfr.:$XFR_SECRET" +timeout=5 $CZ AXFR 2>&1 || true)
n=$(grep -c -E '^[^;].*[[:space:]](TYPE65280|SOA|NS|A)[[:space:]]' <<<"$out" || true)
if grep -q -E "TSIG.* NOERROR" <<<"$out" && ! grep -q -i -e "failed" -e "warning" <<<"$out" && [ "$n" -gt 5 ]; then
  ok "kdig -y AXFR: the whole zone ($n records), every message's TSIG checked by kdig"
else
  bad "kdig -y AXFR"; show <<<"$out"
fi
out=$(kdig @$A -p "$P" +timeout=5 $CZ AXFR 2>&1 || true)
check "kdig AXFR without the key is refused" grep -q -i "refused" <<<"$out"
out=$(kdig @$A -p "$P" -y "hmac-sha256:xfr.:$(head -c 32 /dev/urandom | base64)" +timeout=5 $CZ AXFR 2>&1 || true)
check "kdig AXFR with another secret is refused (NOTAUTH)" grep -q -i -e "notauth" -e "badsig" <<<"$out"
# Access classes: a provider known by its TSIG key (kdig -y, answers signed and checked by
# kdig) and one known by its client certificate (kdig over DoT with +tls-certfile), each
# with a quota of $QUOTA; past it REFUSED with extended error 49154 (RATE_LIMITED).
ap_tsig() { kdig @$A -p "$P" -y "hmac-sha256:ap-query.:$AP_SECRET" +nordflag +timeout=2 +retry=0 "$@" 2>&1; }
ap_cert() { kdig @$A -p "$TP" +tls-ca="$W/ca.pem" +tls-hostname=dp.test +tls-certfile="$W/apclient.pem" +tls-keyfile="$W/apclient.key" +nordflag +timeout=2 +retry=0 "$@" 2>&1; }
served=0 signed=0 unsigned_out=
for i in $(seq 1 $QUOTA); do
  out=$(ap_tsig "$ALICE" TYPE65280 || true)
  grep -q "status: NOERROR" <<<"$out" && served=$((served + 1))
  # kdig prints a failed check as a ";; WARNING" line; the MAC itself is base64 and may
  # spell any word, so only kdig's own message lines are searched.
  if grep -q "^;; TSIG PSEUDOSECTION" <<<"$out" && ! grep -q -E "^;; (WARNING|ERROR)" <<<"$out"; then
    signed=$((signed + 1))
  else
    unsigned_out=$out
  fi
done
check_eq "kdig -y as provider chat.example.: $QUOTA queries served" "$QUOTA" "$served"
check_eq "kdig -y: every answer signed, and kdig verified it" "$QUOTA" "$signed"
[ "$signed" = "$QUOTA" ] || show <<<"$unsigned_out"
out=$(ap_tsig "$ALICE" TYPE65280 || true)
if grep -q "status: REFUSED" <<<"$out" && grep -q "49154" <<<"$out"; then
  ok "kdig -y: query $((QUOTA + 1)) REFUSED with extended error 49154 (RATE_LIMITED)"
else
  bad "kdig -y past the quota"; show <<<"$out"
fi
out=$(ap_cert "$ALICE" TYPE65280 || true)
check "kdig with other.example.'s client certificate is served meanwhile" grep -q "status: NOERROR" <<<"$out"
for i in $(seq 2 $QUOTA); do ap_cert "$ALICE" TYPE65280 >/dev/null || true; done
out=$(ap_cert "$ALICE" TYPE65280 || true)
check "kdig with the client certificate: refused past its quota too" grep -q "status: REFUSED" <<<"$out"
out=$(dig @$A -p "$P" +norec +time=2 +tries=1 "$ALICE" TYPE65280 2>&1 || true)
check "an anonymous dig is still served (its own class)" grep -q "status: NOERROR" <<<"$out"
out=$(kdig @$A -p "$P" -y "hmac-sha256:ap-query.:$(head -c 32 /dev/urandom | base64)" +timeout=2 +retry=0 "$ALICE" TYPE65280 2>&1 || true)
check "a query signed with a wrong secret is NOTAUTH" grep -q -i -e "notauth" -e "badsig" <<<"$out"

mkdir "$W/knot"
KNOT_TSIG="xfr. $XFR_SECRET" knot_secondary_conf "$W/knot" $KA "$KP" $A "$P" changes $CZ >"$W/knot.conf"
"$KNOTD" -c "$W/knot.conf" >"$W/knot.log" 2>&1 &
pids+=($!)
kserial() { dig @$KA -p "$KP" +norec +short +time=1 +tries=1 $CZ SOA 2>/dev/null | awk '{ print $3 }'; }
dserial=$(dig @$A -p "$P" +norec +short $CZ SOA | awk '{ print $3 }')
if poll 100 bash -c "[ \"\$(dig @$KA -p $KP +norec +short +time=1 +tries=1 $CZ SOA 2>/dev/null | awk '{ print \$3 }')\" = '$dserial' ]"; then
  ok "a Knot secondary with the key transferred the zone (serial $dserial)"
else
  bad "the Knot secondary did not transfer (serial '$(kserial)', the DP's $dserial)"
  grep -i -e xfr -e tsig -e error -e warn "$W/knot.log" | show 8 || true
fi
ksi=$(dig @$KA -p "$KP" +norec +short "$ALICE" TYPE65280 | tr -d ' ' | tr 'A-F' 'a-f')
dsi=$(dig @$A -p "$P" +norec +short "$ALICE" TYPE65280 | tr -d ' ' | tr 'A-F' 'a-f')
check "Knot answers the mapping like the DP" [ -n "$ksi" ] && [ "$ksi" = "$dsi" ]
check "the DP logged no errors" bash -c "! grep -E '^[^ ]+ +(ERROR) ' '$W/dp.log'"
interop_end
