#!/usr/bin/env bash
# DNS over TLS (RFC 7858) on `mimi dp serve`, seen through Knot's kdig and ISC's dig: a
# deployment CA and the DP's certificate from `mimi tls ca` / `mimi tls issue`; kdig
# validating against the CA (by name) and by SPKI pin (`mimi tls pin`), and dig +tls, get
# the same answers over DoT as over UDP (mappings, a referral, NXDOMAIN, the SOA); a wrong
# pin, another CA and a wrong name are refused by kdig.
# Usage: tools/interop/tls.sh   (needs knot-dnsutils, dnsutils; .ci/run installs them;
#        KEEP=1 keeps the temporary directory)
# The DP listens on 127.0.0.101 at free ports (UDP/TCP, and DoT).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
interop_start tls.sh
need "dnsutils, knot-dnsutils, python3" dig kdig python3

A=127.0.0.101
P=$(free_port $A)
TP=$(free_port $A)
cp zones/root.zone zones/5.5.5.1.e164.zone zones/trust.toml "$W/"
(cd "$W" && "$MIMI" tls ca --out ca >/dev/null && "$MIMI" tls ca --name "another CA" --out other >/dev/null &&
  "$MIMI" tls issue --ca ca --name dp.test --name $A --out dp >/dev/null &&
  "$MIMI" tls issue --ca ca --name dp.test --out stranger >/dev/null)
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
check "the DP logged no errors" bash -c "! grep -E '^[^ ]+ +(ERROR) ' '$W/dp.log'"
interop_end
