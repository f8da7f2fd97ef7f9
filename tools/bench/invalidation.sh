#!/usr/bin/env bash
# Invalidation benchmark: a resolver caching CACHED names of a zone of N mappings while the
# zone's DP takes RATE single-mapping UPDATEs a second (each to a cached name), for SECONDS
# per mode: no updates; NOTIFY + CHANGES at b = 8, 12 and 16; and the whole zone dropped on
# every NOTIFY (what PowerDNS Recursor's allow-notify-for does), all in one run. Prints the
# time from an UPDATE's acknowledgement to the resolver answering the new mapping (p50/p99),
# the extra refetches per second (cache misses beyond the changed names themselves), the
# cache hit rate of lookups of random cached names, and lookups per second.
# Usage: tools/bench/invalidation.sh [N] [CACHED] [RATE] [SECONDS]
#        (defaults 1000000 100000 100 20)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
N=${1:-1000000}
CACHED=${2:-100000}
RATE=${3:-100}
SECS=${4:-20}
cargo build --release --quiet --bin mimi --example invalidation_bench
MIMI=$PWD/target/release/mimi
BENCH=$PWD/target/release/examples/invalidation_bench
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
ORIGIN=5.5.5.1.e164.mimi.arpa.
echo "== a zone of $N mappings"
block_zone "$d" "$N" 127.0.0.91
"$MIMI" zone new mimi.arpa. --out "$d/root.zone" --ns ns1.mimi.arpa.=127.0.0.92 >/dev/null
"$MIMI" zone delegate "$d/root.zone" --child $ORIGIN --ns ns1.$ORIGIN=127.0.0.91 >/dev/null
echo "== $CACHED cached names, $RATE updates/s, $SECS s per mode"
MIMI_LOG=${MIMI_LOG:-warn} "$BENCH" --work "$d/work" --zone-file "$d/carrier.zone" --root-file "$d/root.zone" \
  --trust "$d/trust.toml" --key "$d/chat.key" --count "$N" --cached "$CACHED" --rate "$RATE" --seconds "$SECS"
