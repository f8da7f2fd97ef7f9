#!/usr/bin/env bash
# DNSSEC (docs/dnssec.md) against validators this project did not write.
#
# The demo's apex and number chain mimi.arpa. -> e164.mimi.arpa. -> 1.e164.mimi.arpa. ->
# 5.5.5.1.e164.mimi.arpa. (zones/), each zone with its own Ed25519 key (`mimi key dnssec
# generate`), the parents holding their children's DS records (`mimi key dnssec ds`), all four
# served signed by one `mimi dp serve` (`dnssec_key` per zone). Then:
#   - Unbound as a validating resolver (validator + iterator) with the apex's DS as its only
#     trust anchor answers a demo mapping with AD set, and a number that does not exist
#     (compact denial, RFC 9824) with AD set;
#   - the same Unbound in front of a DP whose zones are signed by other keys than the anchor
#     names (a forged tree) answers SERVFAIL;
#   - delv (BIND's validator) with the same anchor: "fully validated" for the mapping, the
#     DNSKEY set, an APKEY and the denial; kdig +dnssec shows the compact NSEC; a query with
#     the CO flag gets NXDOMAIN, dig without it NOERROR;
#   - the carrier zone exported signed (`mimi zone export --dnssec`: DNSKEY, RRSIGs and a
#     classic NSEC chain) is served by Knot as it is, and the same validating Unbound, asking
#     Knot for that zone, answers a mapping and an absent number (Knot's NSEC chain) with AD;
#     the same with NSD serving the export;
#   - mimi's own validating resolver (`mimi lookup` with `[dnssec] trust_anchor` and an empty
#     trust file) under an apex signed by Knot (its own KSK and ZSK, an NSEC chain), holding
#     the e164 DS and the APKEY records but work.example.'s: a mapping validates through
#     Knot's apex and the DP's chain with chat.example.'s key from Knot's APKEY record, and
#     work.example.'s mapping is refused as untrusted because Knot's NSEC records prove its
#     APKEY absent (RFC 4035 denial: a covering NSEC and the wildcard's); anchored on another
#     key, the lookup fails as bogus.
#
# Usage: tools/interop/dnssec.sh   (needs unbound, dnsutils (dig, delv), knot-dnsutils (kdig),
#        knot, python3; .ci/run installs them; KEEP=1 keeps the temporary directory)
# The DPs listen on 127.0.0.95 (signed as anchored) and 127.0.0.96 (signed by other keys),
# Unbound on 127.0.0.97, 127.0.0.98, 127.0.0.93 and 127.0.0.91, Knot on 127.0.0.94, NSD on
# 127.0.0.92, each at a free port.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
interop_start dnssec.sh
UNBOUND=$(sbin unbound)
KNOTD=$(sbin knotd) NSD=$(sbin nsd)
need "unbound, dnsutils, knot-dnsutils, knot, nsd, python3" dig delv kdig python3 "$UNBOUND" "$KNOTD" "$NSD"

GOOD=127.0.0.95 FORGED=127.0.0.96 UG=127.0.0.97 UF=127.0.0.98 KNOT=127.0.0.94 NSDA=127.0.0.92
P=$(free_port $GOOD $FORGED $KNOT $NSDA)
ZONES=("root.zone mimi.arpa." "e164.zone e164.mimi.arpa." "1.e164.zone 1.e164.mimi.arpa." "5.5.5.1.e164.zone 5.5.5.1.e164.mimi.arpa.")

# ds_line KEYFILE: the DS line `mimi key dnssec ds` prints, as the parent's zone file takes it.
ds_line() { "$MIMI" key dnssec ds "$1" | grep ' DS '; }

# sign_tree DIR: keys for the three zones in DIR, copies of the zone files with the
# children's DS added, and a DP config serving them signed at ADDR (second argument).
sign_tree() {
  local d=$1 addr=$2 z file origin
  mkdir -p "$d"
  for z in "${ZONES[@]}"; do
    read -r file origin <<<"$z"
    "$MIMI" key dnssec generate --zone "$origin" --out "$d/$file.dnssec" >/dev/null
    cp "zones/$file" "$d/$file"
  done
  ds_line "$d/e164.zone.dnssec" >>"$d/root.zone"
  ds_line "$d/1.e164.zone.dnssec" >>"$d/e164.zone"
  ds_line "$d/5.5.5.1.e164.zone.dnssec" >>"$d/1.e164.zone"
  {
    printf 'listen = ["%s:%s"]\ntrust = "%s"\n' "$addr" "$P" "$PWD/zones/trust.toml"
    for z in "${ZONES[@]}"; do
      read -r file origin <<<"$z"
      printf '[[zone]]\norigin = "%s"\nfile = "%s"\ndnssec_key = "%s"\n' "$origin" "$d/$file" "$d/$file.dnssec"
    done
  } >"$d/dp.toml"
  NO_COLOR=1 MIMI_LOG=warn "$MIMI" dp serve --config "$d/dp.toml" >"$d/dp.log" 2>&1 &
  pids+=($!)
  wait_dns "$addr" "$P" mimi.arpa. $! "$d/dp.log"
}

sign_tree "$W/good" $GOOD
sign_tree "$W/forged" $FORGED
# The anchor: the real apex key's DS, in Unbound's and delv's forms.
read -r _ _ _ TAG ALG DT DIGEST < <("$MIMI" key dnssec ds "$W/good/root.zone.dnssec" | grep ' DS ')
echo "dnssec.sh: four zones signed on $GOOD:$P (anchor DS $TAG $ALG $DT), the same with other keys on $FORGED:$P"

# --- Unbound, validating ----------------------------------------------------------------
start_unbound() { # ADDR PORT DP NAME [CARRIER_SERVER] (not in a subshell: its pid joins `pids`)
  local port=$2 conf=$W/unbound-$4.conf carrier=${5:-$3} z origin
  set -- "$1" "$3" "$4"
  : >"$W/root.hints"
  {
    unbound_server_conf "$W" "$1" "$port" | sed 's/module-config: "iterator"/module-config: "validator iterator"/; s#pidfile: .*#pidfile: "'"$W/unbound-$3.pid"'"#'
    printf '  trust-anchor: "mimi.arpa. DS %s %s %s %s"\n' "$TAG" "$ALG" "$DT" "$DIGEST"
    echo '  val-log-level: 2'
    for z in "${ZONES[@]}"; do
      read -r _ origin <<<"$z"
      server=$2
      [ "$origin" = 5.5.5.1.e164.mimi.arpa. ] && server=$carrier
      printf 'stub-zone:\n  name: "%s"\n  stub-addr: %s@%s\n' "$origin" "$server" "$P"
    done
  } >"$conf"
  "$(sbin unbound-checkconf)" "$conf" >"$W/checkconf-$3.log" 2>&1 ||
    { show <"$W/checkconf-$3.log" >&2; die "unbound-checkconf rejects $conf"; }
  "$UNBOUND" -d -c "$conf" >"$W/unbound-$3.log" 2>&1 &
  pids+=($!)
  wait_dns "$1" "$port" mimi.arpa. $! "$W/unbound-$3.log"
}
UGP=$(free_port $UG) UFP=$(free_port $UF)
start_unbound $UG "$UGP" $GOOD good
start_unbound $UF "$UFP" $FORGED forged

ALICE=2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.
NX=0.0.0.0.1.1.1.5.5.5.1.e164.mimi.arpa.
flags_of() { sed -n 's/.*;; flags: \([a-z ]*\);.*/\1/p' <<<"$1"; }
status_of() { sed -n 's/.*status: \([A-Z]*\),.*/\1/p' <<<"$1"; }

out=$(dig @$UG -p "$UGP" +dnssec +time=5 +tries=1 "$ALICE" TYPE65280)
check_eq "Unbound (anchored): the mapping is NOERROR" NOERROR "$(status_of "$out")"
check "Unbound (anchored): AD set on the mapping" grep -qw ad <<<"$(flags_of "$out")"
check "Unbound (anchored): the answer carries the RRSIG" grep -q "RRSIG.*TYPE65280 15" <<<"$out"
out=$(dig @$UG -p "$UGP" +dnssec +time=5 +tries=1 "$NX" TYPE65280)
check "Unbound (anchored): a number not in the zone is denied with AD set ($(status_of "$out"))" \
  grep -qw ad <<<"$(flags_of "$out")"
out=$(dig @$UF -p "$UFP" +dnssec +time=5 +tries=1 "$ALICE" TYPE65280)
check_eq "Unbound: the zone signed by another key is SERVFAIL" SERVFAIL "$(status_of "$out")"
grep -q "validation failure" "$W/unbound-forged.log" && ok "Unbound logs the validation failure" ||
  bad "no validation failure in Unbound's log"

# --- delv and kdig --------------------------------------------------------------------
printf 'trust-anchors {\n  mimi.arpa. static-ds %s %s %s "%s";\n};\n' "$TAG" "$ALG" "$DT" "$DIGEST" >"$W/anchors.conf"
delv_says() { delv @"$1" -p "$P" -a "$W/anchors.conf" +root=mimi.arpa. "$2" "$3" 2>&1 || true; }
check "delv: the mapping is fully validated" grep -q "; fully validated" <<<"$(delv_says $GOOD "$ALICE" TYPE65280)"
check "delv: mimi.arpa. DNSKEY is fully validated" grep -q "; fully validated" <<<"$(delv_says $GOOD mimi.arpa. DNSKEY)"
check "delv: chat.example.'s APKEY at the apex is fully validated" grep -q "; fully validated" <<<"$(delv_says $GOOD chat.example.ap.mimi.arpa. TYPE65281)"
check "delv: the compact denial is fully validated" grep -q "negative response, fully validated" <<<"$(delv_says $GOOD "$NX" TYPE65280)"
check "delv: the forged zone does not validate" bash -c '! grep -q "fully validated" <<<"$1"' _ "$(delv_says $FORGED "$ALICE" TYPE65280)"
out=$(kdig @$GOOD -p "$P" +dnssec "$NX" TYPE65280)
check "kdig +dnssec: one compact NSEC owned by the name asked, next \\000.name" \
  grep -qiE "^$NX\s.*NSEC\s+\\\\000\.$NX.*NXNAME|^$NX\s.*NSEC\s+\\\\000\.$NX.*TYPE128" <<<"$out"
# dig 9.18 will not set the CO bit (+ednsflags drops it): one query by hand, DO and CO set.
co_rcode() {
  python3 - "$@" <<'PY'
import socket, struct, sys
addr, port, qname = sys.argv[1], int(sys.argv[2]), sys.argv[3]
q = struct.pack(">HHHHHH", 0x4d49, 0, 1, 0, 0, 1)
q += b"".join(bytes([len(l)]) + l.encode() for l in qname.rstrip(".").split(".")) + b"\0"
q += struct.pack(">HH", 65280, 1) + b"\0" + struct.pack(">HHBBHH", 41, 1232, 0, 0, 0xC000, 0)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.sendto(q, (addr, port))
r = s.recv(65535)
print({0: "NOERROR", 3: "NXDOMAIN"}.get(r[3] & 15, r[3] & 15))
PY
}
check_eq "a query with DO and CO set: NXDOMAIN (RFC 9824)" NXDOMAIN "$(co_rcode $GOOD "$P" "$NX")"
out=$(dig @$GOOD -p "$P" +dnssec "$NX" TYPE65280)
check_eq "dig without CO: NOERROR (RFC 9824)" NOERROR "$(status_of "$out")"

# --- mimi's validating resolver under an apex Knot signs ------------------------------------
# The apex as other DNS servers read it (SSI and APKEY in RFC 3597 form), without
# work.example.'s APKEY, e164 delegated to the good DP, with e164's DS.
mkdir -p "$W/knot"
"$MIMI" zone export --generic zones/root.zone | grep -v '^work\.example\.ap' |
  sed "s/127\.53\.0\.2\$/$GOOD/" >"$W/knot/root.zone"
ds_line "$W/good/e164.zone.dnssec" >>"$W/knot/root.zone"
# The carrier zone signed ahead of time with its key, for Knot to serve as it is.
"$MIMI" zone export --generic --dnssec "$W/good/5.5.5.1.e164.zone.dnssec" zones/5.5.5.1.e164.zone \
  --out "$W/knot/carrier.zone"
cat >"$W/knot/knot.conf" <<EOF
server:
    listen: $KNOT@$P
    rundir: "$W/knot"
    background-workers: 1
database:
    storage: "$W/knot"
policy:
  - id: ed
    algorithm: ed25519
    nsec3: off
template:
  - id: default
    storage: "$W/knot"
zone:
  - domain: mimi.arpa.
    file: "$W/knot/root.zone"
    zonefile-sync: -1
    journal-content: changes
    dnssec-signing: on
    dnssec-policy: ed
  - domain: 5.5.5.1.e164.mimi.arpa.
    file: "$W/knot/carrier.zone"
    zonefile-sync: -1
    journal-content: none
log:
  - target: stderr
    any: warning
EOF
"$KNOTD" -c "$W/knot/knot.conf" >"$W/knot/knot.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do
  kdig @$KNOT -p "$P" +dnssec +time=1 +retry=0 mimi.arpa. SOA 2>/dev/null | grep -q "RRSIG.*SOA" && break
  sleep 0.2
done
KSK=$(kdig @$KNOT -p "$P" +short mimi.arpa. DNSKEY | grep '^257 ' | head -n1)
[ -n "$KSK" ] || { show <"$W/knot/knot.log" >&2; die "Knot did not sign mimi.arpa."; }
for _ in $(seq 1 50); do
  kdig @$KNOT -p "$P" +time=1 +retry=0 5.5.5.1.e164.mimi.arpa. SOA 2>/dev/null | grep -q "status: NOERROR" && break
  sleep 0.2
done
# validates_through SERVER NAME UNBOUND_ADDR: a validating Unbound asking SERVER for the
# carrier zone (the DP for the others) answers a mapping and an absent number with AD; the
# absent one NXDOMAIN, which shows it came from SERVER (the DP answers NOERROR, compactly).
validates_through() {
  local port out
  port=$(free_port "$3")
  start_unbound "$3" "$port" $GOOD "$2" "$1"
  out=$(dig @"$3" -p "$port" +dnssec +time=5 +tries=1 "$ALICE" TYPE65280)
  check "Unbound through $2 serving the exported signed carrier zone: the mapping has AD" \
    grep -qw ad <<<"$(flags_of "$out")"
  out=$(dig @"$3" -p "$port" +dnssec +time=5 +tries=1 "$NX" TYPE65280)
  check "Unbound through $2: an absent number is denied by the export's NSEC chain with AD ($(status_of "$out"))" \
    bash -c 'grep -qw ad <<<"$1" && [ "$2" = NXDOMAIN ]' _ "$(flags_of "$out")" "$(status_of "$out")"
}
validates_through $KNOT Knot 127.0.0.93
check "kdig: Knot serves the export's NSEC chain for the absent number" grep -q "NSEC" <<<"$(kdig @$KNOT -p "$P" +dnssec "$NX" TYPE65280)"
# NSD serving the same export as it is.
mkdir -p "$W/nsd"
cp "$W/knot/carrier.zone" "$W/nsd/carrier.zone"
cat >"$W/nsd/nsd.conf" <<EOF
server:
    ip-address: $NSDA@$P
    server-count: 1
    reuseport: no
    username: ""
    chroot: ""
    zonesdir: "$W/nsd"
    database: ""
    zonelistfile: "$W/nsd/zone.list"
    xfrdfile: "$W/nsd/xfrd.state"
    pidfile: "$W/nsd/nsd.pid"
remote-control:
    control-enable: no
zone:
    name: "5.5.5.1.e164.mimi.arpa."
    zonefile: "carrier.zone"
EOF
"$NSD" -d -c "$W/nsd/nsd.conf" >"$W/nsd/nsd.log" 2>&1 &
pids+=($!)
wait_dns $NSDA "$P" 5.5.5.1.e164.mimi.arpa. $! "$W/nsd/nsd.log"
validates_through $NSDA NSD 127.0.0.91
check "Knot signs the apex with an NSEC chain" grep -q "NSEC" <<<"$(kdig @$KNOT -p "$P" +dnssec nothing.mimi.arpa. TYPE65280)"
: >"$W/empty-trust.toml"
resolver_conf() { # ANCHOR_LINE
  printf 'apex = "mimi.arpa."\nroots = ["%s"]\nport = %s\ntrust = "%s"\n[limits]\ntimeout_ms = 2000\n[dnssec]\ntrust_anchor = ["%s"]\n' \
    "$KNOT" "$P" "$W/empty-trust.toml" "$1"
}
resolver_conf "mimi.arpa. IN DNSKEY $KSK" >"$W/resolver.toml"
out=$(MIMI_LOG=error "$MIMI" lookup "+1 555 111 3333" --config "$W/resolver.toml" --json || true)
check "mimi lookup (validating, empty trust file): bob's chat.example mapping, its key from Knot's APKEY" \
  grep -q '"ssi":"mimi://chat.example/u/bob"' <<<"$out"
check "mimi lookup: work.example's mapping refused, its APKEY proved absent by Knot's NSEC chain" \
  grep -q 'untrusted provider work.example.' <<<"$out"
"$MIMI" key dnssec generate --zone mimi.arpa. --out "$W/other.dnssec" >/dev/null
resolver_conf "$(ds_line "$W/other.dnssec")" >"$W/resolver-other.toml"
out=$(MIMI_LOG=error "$MIMI" lookup "+1 555 111 3333" --config "$W/resolver-other.toml" 2>&1 || true)
check "mimi lookup anchored on another key: bogus, naming the step" \
  grep -q "bogus: no DNSKEY of mimi.arpa. matches its DS set" <<<"$out"

interop_end
