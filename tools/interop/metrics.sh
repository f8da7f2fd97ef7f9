#!/usr/bin/env bash
# Metrics (docs/operations.md) against Prometheus's own tools:
#   - `promtool check metrics` accepts what the DP's and the resolver's /metrics answer (the
#     Prometheus text format, for clients that do not ask for OpenMetrics);
#   - a real Prometheus server (Debian package prometheus), started here with both as scrape
#     targets, scrapes them (OpenMetrics); a query to its HTTP API shows the DP's query
#     counter rising by at least the queries of a short dig loop, and the resolver's lookups;
#   - `systemd-analyze verify` accepts the service units in dist/.
#
# Usage: tools/interop/metrics.sh   (needs prometheus (promtool, prometheus), dnsutils (dig),
#        systemd (systemd-analyze), python3; .ci/run installs them; KEEP=1 keeps the temporary
#        directory)
# The DP listens on 127.0.0.89, the resolver on 127.0.0.88, Prometheus on 127.0.0.87, each at
# a free port.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
interop_start metrics.sh
need "prometheus, dnsutils, systemd, python3" promtool prometheus dig systemd-analyze python3

DP=127.0.0.89 RES=127.0.0.88 PROM=127.0.0.87
P=$(free_port $DP) DPM=$(free_port $DP) RP=$(free_port $RES) RM=$(free_port $RES) PP=$(free_port $PROM)
CARRIER=5.5.5.1.e164.mimi.arpa.

# One DP serving the apex and the number chain down to the carrier block, and a resolver
# whose root is that DP (it answers each zone's part itself).
{
  printf 'listen = ["%s:%s"]\ntrust = "%s"\n' $DP "$P" "$PWD/zones/trust.toml"
  for z in root:mimi.arpa. e164:e164.mimi.arpa. 1.e164:1.e164.mimi.arpa. 5.5.5.1.e164:$CARRIER; do
    cp "zones/${z%%:*}.zone" "$W/${z%%:*}.zone"
    printf '[[zone]]\norigin = "%s"\nfile = "%s"\n' "${z#*:}" "$W/${z%%:*}.zone"
  done
  printf '[metrics]\nlisten = "%s:%s"\n' $DP "$DPM"
} >"$W/dp.toml"
NO_COLOR=1 MIMI_LOG=warn "$MIMI" dp serve --config "$W/dp.toml" >"$W/dp.log" 2>&1 &
pids+=($!)
wait_dns $DP "$P" $CARRIER $! "$W/dp.log"
printf 'apex = "mimi.arpa."\nroots = ["%s"]\nport = %s\ntrust = "%s"\nlisten = ["%s:%s"]\n[metrics]\nlisten = "%s:%s"\n' \
  $DP "$P" "$PWD/zones/trust.toml" $RES "$RP" $RES "$RM" >"$W/resolver.toml"
NO_COLOR=1 MIMI_LOG=warn "$MIMI" resolver serve --config "$W/resolver.toml" >"$W/resolver.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  python3 -c "import socket,sys; socket.create_connection(('$RES', $RM), 1)" 2>/dev/null && break
  sleep 0.1
done

get() { python3 -c "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode(), end='')" "$1"; }
get "http://$DP:$DPM/metrics" >"$W/dp.metrics"
get "http://$RES:$RM/metrics" >"$W/resolver.metrics"
check "promtool check metrics accepts the DP's /metrics" promtool check metrics <"$W/dp.metrics"
check "promtool check metrics accepts the resolver's /metrics" promtool check metrics <"$W/resolver.metrics"
check "the DP shows its zone's serial" grep -q "^mimi_dp_zone_serial{zone=\"$CARRIER\"} " "$W/dp.metrics"

# Prometheus scraping both every second.
cat >"$W/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: mimi-dp
    static_configs: [{ targets: ["$DP:$DPM"] }]
  - job_name: mimi-resolver
    static_configs: [{ targets: ["$RES:$RM"] }]
EOF
check "promtool check config accepts the scrape config" promtool check config "$W/prometheus.yml"
prometheus --config.file="$W/prometheus.yml" --storage.tsdb.path="$W/tsdb" \
  --web.listen-address="$PROM:$PP" >"$W/prometheus.log" 2>&1 &
pids+=($!)
# value QUERY: the first sample's value of an instant query, or nothing yet.
value() {
  python3 - "http://$PROM:$PP/api/v1/query" "$1" <<'PY' 2>/dev/null || true
import json, sys, urllib.parse, urllib.request
url = sys.argv[1] + "?" + urllib.parse.urlencode({"query": sys.argv[2]})
r = json.load(urllib.request.urlopen(url, timeout=5))["data"]["result"]
print(r[0]["value"][1] if r else "")
PY
}
before=""
for _ in $(seq 150); do
  before=$(value 'mimi_dp_queries_total{job="mimi-dp"}')
  [ -n "$before" ] && break
  sleep 0.2
done
check "Prometheus scrapes the DP (mimi_dp_queries_total = ${before:-none})" test -n "$before"
for i in $(seq 30); do
  dig @$DP -p "$P" +time=1 +tries=1 +short "$i.$CARRIER" SOA >/dev/null || true
done
check "mimi lookup through the resolver finds the mapping" bash -c \
  'MIMI_LOG=error "$1" lookup "+1 555 111 2222" --server "$2" | grep -q chat.example/u/alice' _ "$MIMI" "$RES:$RP"
after=$before
for _ in $(seq 100); do
  after=$(value 'mimi_dp_queries_total{job="mimi-dp"}')
  python3 -c "import sys; sys.exit(0 if float(sys.argv[2] or 0) >= float(sys.argv[1]) + 30 else 1)" "$before" "$after" && break
  sleep 0.2
done
check "the DP's query counter in Prometheus rose by the dig loop's 30 queries ($before -> $after)" \
  python3 -c "import sys; sys.exit(0 if float(sys.argv[2] or 0) >= float(sys.argv[1]) + 30 else 1)" "$before" "$after"
lookups=""
for _ in $(seq 100); do
  lookups=$(value 'mimi_resolver_lookups_total{job="mimi-resolver"}')
  [ -n "$lookups" ] && python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 1 else 1)" "$lookups" && break
  sleep 0.2
done
check "Prometheus shows the resolver's lookup (mimi_resolver_lookups_total = ${lookups:-none})" \
  python3 -c "import sys; sys.exit(0 if float(sys.argv[1] or 0) >= 1 else 1)" "$lookups"
# The service units (dist/), with the binary path of this build: systemd-analyze verify
# accepts them, without a warning.
mkdir -p "$W/units"
for unit in dist/mimi-dp.service dist/mimi-resolver.service; do
  sed "s#/usr/bin/mimi#$MIMI#g" "$unit" >"$W/units/$(basename "$unit")"
  out=$(systemd-analyze verify "$W/units/$(basename "$unit")" 2>&1) && rc=0 || rc=$?
  check "systemd-analyze verify accepts $unit${out:+: $out}" test "$rc" = 0 -a -z "$out"
done
interop_end
