#!/usr/bin/env bash
# Unbound iterating the demo tree gets the same SSI records as `mimi resolver`: the DPs speak
# standard DNS, and a stock recursive resolver (Unbound, iterator only, QNAME minimisation on)
# finds exactly the mappings the mimi resolver finds.
#
# The demo tree of `mimi demo` (zones/, one `mimi dp serve` per zone and address, the carrier
# block on both of its name servers 127.53.0.4 and 127.53.0.14), then Unbound with a stub
# zone for mimi.arpa. at the root DP, and `mimi resolver serve`. For each demo identifier:
#   - the rcode from Unbound, from `mimi resolver serve` and the expected one agree;
#   - the SSI records (TYPE65280 RDATA, normalised, sorted) from both are identical;
#   - the mappings decoded from Unbound's records equal `mimi lookup --config R --json`;
#   - `mimi lookup --server UNBOUND --trust zones/trust.toml` verifies Unbound's answer.
# The unknown +1 555 111 0000 is NXDOMAIN from both, and so is the expired +1 555 111 9999
# (the DPs refuse it at load, so no server has it).
#
# Ports: glue carries no port, and Unbound sends every query to an address learnt from glue
# to port 53. So that Unbound really follows the referrals, the script re-runs itself in a
# private network namespace (`unshare -n`, or `unshare -rn` without root), where port 53 is
# free by construction and no packet can leave the machine; the DPs share port 53 there.
# Without a namespace (or with MIMI_NO_NETNS=1) the DPs share a free port P and Unbound gets
# a stub-zone for every zone of the tree instead (it still iterates inside each zone, but
# takes the delegations' addresses from its config); the output says which mode ran.
#
# Usage: tools/interop/unbound.sh   (needs unbound, dnsutils, python3; .ci/run installs them;
#        KEEP=1 keeps the temporary directory with configs and logs)
# Unbound listens on 127.0.0.91, mimi resolver serve on 127.0.0.92, at free ports.
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/../.."
. tools/lib.sh
UNBOUND=$(sbin unbound) IP=$(sbin ip)

# --- a private network namespace, where the tree can use port 53 ------------------------
if [ -z "${MIMI_IN_NETNS:-}" ] && [ -z "${MIMI_NO_NETNS:-}" ] && command -v unshare >/dev/null &&
   command -v "$IP" >/dev/null; then
  for flags in -n -rn; do
    if unshare $flags "$IP" link set lo up 2>/dev/null; then
      exec unshare $flags env MIMI_IN_NETNS=1 MIMI="${MIMI:-}" bash "$SELF" "$@"
    fi
  done
fi
# (in the namespace, when there is one)
interop_start unbound.sh
need "unbound, dnsutils, python3" dig python3 "$UNBOUND"

U=127.0.0.91 R=127.0.0.92

if [ -n "${MIMI_IN_NETNS:-}" ]; then
  "$IP" link set lo up
  MODE=netns P=53
else
  MODE=stubs P=$(free_port "${ALL_DP[@]}")
fi
UP=$(free_port $U)
RP=$(free_port $R)

# --- the DPs ------------------------------------------------------------------------------
TRUST=$PWD/zones/trust.toml
start_tree_dps "$W" "$PWD/zones" "$TRUST" "$P"
if [ $MODE = netns ]; then
  echo "unbound.sh: ${#TREE[@]} DPs on 127.53.0.x port 53 in a private network namespace; Unbound follows the referrals"
else
  echo "unbound.sh: ${#TREE[@]} DPs on 127.53.0.x port $P (no network namespace: Unbound gets a stub-zone per zone)"
fi

# --- Unbound ------------------------------------------------------------------------------
: >"$W/root.hints" # no root servers: Unbound knows only the stub zones and asks nobody else
{
  unbound_server_conf "$W" $U "$UP"
  echo "  verbosity: 1"
  if [ $MODE = netns ]; then
    printf 'stub-zone:\n  name: "mimi.arpa."\n  stub-addr: 127.53.0.1@%s\n' "$P"
  else
    unbound_tree_stubs "$P"
  fi
} >"$W/unbound.conf"
"$(sbin unbound-checkconf)" "$W/unbound.conf" >"$W/checkconf.log" 2>&1 ||
  { sed 's/^/  /' "$W/checkconf.log" >&2; die "unbound-checkconf rejects $W/unbound.conf"; }
"$UNBOUND" -d -c "$W/unbound.conf" >"$W/unbound.log" 2>&1 &
pids+=($!)
wait_dns $U "$UP" mimi.arpa. $! "$W/unbound.log"

# --- mimi resolver serve ------------------------------------------------------------------
cat >"$W/resolver.toml" <<EOF
roots = ["127.53.0.1"]
port = $P
trust = "$TRUST"
listen = ["$R:$RP"]
[limits]
timeout_ms = 500
EOF
NO_COLOR=1 MIMI_LOG=warn "$MIMI" resolver serve --config "$W/resolver.toml" >"$W/resolver.log" 2>&1 &
pids+=($!)
rpid=$!
for _ in $(seq 50); do
  kill -0 $rpid 2>/dev/null || { sed 's/^/  /' "$W/resolver.log" >&2; die "mimi resolver serve exited"; }
  [[ $(dig @$R -p "$RP" +time=1 +tries=1 mimi.arpa. TYPE65280 2>&1 || true) == *status:* ]] && break
  sleep 0.1
done
echo "unbound.sh: Unbound $("$UNBOUND" -V | sed -n 's/^Version //p') on $U:$UP, mimi resolver serve on $R:$RP"

# --- the comparison -----------------------------------------------------------------------
# ask ADDR PORT NAME: dig's whole output (recursion desired; bounded; never fails).
ask() { dig @"$1" -p "$2" +time=2 +tries=2 "$3" TYPE65280 2>&1 || true; }
rcode() { sed -n 's/.*status: \([A-Z]*\).*/\1/p' <<<"$1" | head -1; }
# The SSI RDATA of the answer section, one hex string per record, sorted.
rdata() {
  awk '/^;; ANSWER SECTION:/ { on = 1; next } /^$/ { on = 0 } on && $4 == "TYPE65280" && $5 == "\\#" {
         h = ""; for (i = 7; i <= NF; i++) h = h $i; print tolower(h) }' <<<"$1" | sort
}
# Owner of the SOA in the authority section (negative answers).
soa_owner() { awk '/^;; AUTHORITY SECTION:/ { on = 1; next } /^$/ { on = 0 } on && $4 == "SOA" { print tolower($1) }' <<<"$1"; }
# Mappings from SSI RDATA (hex lines on stdin), as sorted lines "uri provider context priority seq not_after".
decode() {
  python3 -c '
import sys
ctx = {1: "personal", 2: "business", 3: "any"}
out = []
for h in sys.stdin.read().split():
    b = bytes.fromhex(h)
    flags, prio = b[1], int.from_bytes(b[2:4], "big")
    seq, not_after = int.from_bytes(b[4:12], "big"), int.from_bytes(b[20:28], "big")
    i, labels = 37, []
    while b[i]:
        labels.append(b[i + 1:i + 1 + b[i]].decode()); i += 1 + b[i]
    i += 1
    uri = b[i + 1:i + 1 + b[i]].decode()
    w = "withdrawn" if flags & 0x80 else ctx[flags & 3]
    provider = ".".join(labels)
    out.append(f"{uri} {provider} {w} {prio} {seq} {not_after}")
print("\n".join(sorted(out)))'
}
# The same lines from `mimi lookup --json` (stdin), or "status: reason".
from_json() {
  python3 -c '
import datetime, json, sys
j = json.load(sys.stdin)
if j["status"] != "found":
    print(j["status"] + ": " + (j.get("reason") or j.get("error") or "")); sys.exit()
def unix(t):
    return int(datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp())
keys = ("ssi", "provider", "context", "priority", "seq")
print("\n".join(sorted(" ".join(str(m[k]) for k in keys) + " " + str(unix(m["not_after"])) for m in j["mappings"])))'
}

# identifier, expected rcode, expected number of mappings
CASES=(
  "+1 555 111 2222|NOERROR|1"
  "+1 555 111 3333|NOERROR|2"
  "+1 202 555 0100|NOERROR|1"
  "+44 20 7946 0000|NOERROR|1"
  "hugh@example.com|NOERROR|1"
  "Carol@Example.COM|NOERROR|1"
  "+1 555 111 0000|NXDOMAIN|0"
  "+1 555 111 9999|NXDOMAIN|0"
)
for c in "${CASES[@]}"; do
  IFS='|' read -r sii want_rcode want_n <<<"$c"
  owner=$("$MIMI" name "$sii")
  ou=$(ask $U "$UP" "$owner")
  om=$(ask $R "$RP" "$owner")
  check_eq "$sii: rcode from Unbound and from mimi resolver serve" "$want_rcode $want_rcode" "$(rcode "$ou") $(rcode "$om")"
  ru=$(rdata "$ou")
  rm_=$(rdata "$om")
  check_eq "$sii: Unbound has $want_n SSI record(s)" "$want_n" "$(grep -c . <<<"$ru" || true)"
  if [ "$ru" = "$rm_" ]; then ok "$sii: same SSI records (RDATA) from Unbound and mimi resolver serve"
  else bad "$sii: SSI records differ: Unbound [$ru] mimi [$rm_]"; fi
  if [ "$want_rcode" = NXDOMAIN ]; then
    check_eq "$sii: both negative answers carry the carrier zone's SOA" \
      "5.5.5.1.e164.mimi.arpa. 5.5.5.1.e164.mimi.arpa." "$(soa_owner "$ou") $(soa_owner "$om")"
  fi

  rc=0
  lj=$("$MIMI" lookup "$sii" --config "$W/resolver.toml" --json) || rc=$?
  if [ "$want_n" -gt 0 ]; then
    check_eq "$sii: mimi lookup --config exit code" 0 $rc
    check_eq "$sii: Unbound's records decode to the mappings of mimi lookup --config" \
      "$(from_json <<<"$lj")" "$(decode <<<"$ru")"
  else
    check_eq "$sii: mimi lookup --config: not discoverable, exit 1" \
      "1 not_discoverable: no such name in the tree" "$rc $(from_json <<<"$lj")"
  fi
  rc=0
  sj=$("$MIMI" lookup "$sii" --server "$U:$UP" --trust "$TRUST" --json) || rc=$?
  check_eq "$sii: mimi lookup --server Unbound --trust (verified) = mimi lookup --config" \
    "$(from_json <<<"$lj")" "$(from_json <<<"$sj")"
done

# Nothing but SSI queries reaches the resolver's engine; Unbound answers the rest.
o=$(dig @$R -p "$RP" +time=2 +tries=1 mimi.arpa. SOA 2>&1 || true)
check_eq "mimi resolver serve: REFUSED for other types" REFUSED "$(rcode "$o")"
check_eq "no errors in the resolver's log" 0 "$(grep -c -i -e error -e 'lookup failed' "$W/resolver.log" || true)"

interop_end
