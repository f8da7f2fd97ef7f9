#!/usr/bin/env bash
# Encrypted-replica benchmark (DESIGN.md section 11, docs/private-lookup.md): what a private
# lookup costs the DP with a replica (one OPRF evaluation) against PIR, in one run, with real
# work against real DPs on loopback.
#
# One `mimi dp serve` (a child process: its CPU is utime + stime from /proc/PID/stat) serves
# two carrier zones with [pir]: a large one of 2^LOG_SLOTS 256-byte slots at load 0.9 (20:
# 943,718 signed mappings, as the model's shard in docs/scale.md) and one of 2^SYNC_LOG_SLOTS
# slots (16: 58,982 mappings) for the contact sync, where 600 PIR queries at 2^20 would take
# a quarter of an hour. A root DP delegates both. examples/replica_bench.rs (its doc lists the
# phases) drives two resolvers of one AP, both identified by a [[client]] TSIG key: one
# replicating both zones, one using PIR. It prints a table: DP CPU per lookup (replica in
# OPRF batches of 64, and one identifier per request; PIR) and the ratio, the full download
# (bytes, time, DP CPU), delta bytes per changed mapping (replace, withdraw, add by DNS
# UPDATE), lookup latency, and a contact sync of 300 identifiers by replica and by PIR.
#
# Usage: tools/bench/replica.sh [LOG_SLOTS] [SYNC_LOG_SLOTS] [replica_bench flags...]
#   default 20 16 (5 to 7 minutes here, under 2 of them making the zones and the DP's PIR databases);
#   SYNC_LOG_SLOTS = LOG_SLOTS runs the sync in the large zone; flags such as --lookups,
#   --pir-lookups, --changes, --sync set the counts (examples/replica_bench.rs --help).
#   env: KEEP=1 keeps the work directory (configs, logs, JSON of the figures).
# Memory: at 2^20 the DP is 4 GB resident once loaded (zone, PIR databases), the replica 268 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
LOG_SLOTS=${1:-20}
SYNC_LOG_SLOTS=${2:-16}
shift $(($# < 2 ? $# : 2))
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --features mulpir --bin mimi --example replica_bench
MIMI=$(realpath "$TARGET/release/mimi")
BENCH=$(realpath "$TARGET/release/examples/replica_bench")
for t in dig python3; do command -v $t >/dev/null || { echo "replica.sh: needs $t" >&2; exit 1; }; done
scratch_start replica.sh
d=$W
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(($(awk '/MemTotal/ { print $2 }' /proc/meminfo) / 1048576)) GiB, load $(cut -d' ' -f1-3 /proc/loadavg)"

RA=127.0.0.141 MA=127.0.0.142
AREA=555 SYNC_AREA=556
# Mappings for exactly 2^K slots: the table has ceil(ceil(n / 0.9) / 4) buckets of 4.
mappings() { python3 -c "print(int(0.9 * 2 ** $1))"; }
N=$(mappings "$LOG_SLOTS")
SN=$(mappings "$SYNC_LOG_SLOTS")
[ "$SYNC_LOG_SLOTS" = "$LOG_SLOTS" ] && SYNC_AREA=$AREA SN=$N
t0=$(date +%s)
echo "== zones: $N mappings (2^$LOG_SLOTS slots)$([ "$SYNC_AREA" != "$AREA" ] && echo ", $SN (2^$SYNC_LOG_SLOTS slots)")"
cd "$d"
ORIGIN=$(carrier_zone . $AREA "$N" $MA)
zones=("$ORIGIN $AREA.zone")
if [ "$SYNC_AREA" != "$AREA" ]; then
  SYNC_ORIGIN=$(carrier_zone . $SYNC_AREA "$SN" $MA)
  zones+=("$SYNC_ORIGIN $SYNC_AREA.zone")
fi
"$MIMI" zone new mimi.arpa. --out root.zone --ns ns1.mimi.arpa.=$RA >/dev/null
for z in "${zones[@]}"; do
  read -r origin _ <<<"$z"
  "$MIMI" zone delegate root.zone --child "$origin" --ns "ns1.$origin=$MA" >/dev/null
done
tsig_key ap-query. ap.tsig
tsig_key chat-update. chat.tsig
PORT=$(free_port $RA $MA)
mkdir -p journal
{
  cat <<EOF
listen = ["$MA:$PORT"]
trust = "trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"  # the bench's SOA checks are anonymous
[[client]]
provider = "chat.example."  # the AP whose resolvers replicate and look up
tsig = "ap.tsig"
lookups_per_day = "unlimited"
[[update]]
provider = "chat.example"
tsig = "chat.tsig"
[updates]
per_second = 1000000
burst = 1000000
[journal]
dir = "journal"
# No zone-file rewrite during the run: it would count in the DP's CPU.
flush_interval_secs = 86400
flush_changes = 100000000
[pir]
scheme = "mulpir"  # the README and docs/scale.md figures of this script were measured with MulPIR
threads = 1  # one PIR thread: the per-query CPU figure is single-thread, as in pir.sh
EOF
  for z in "${zones[@]}"; do
    read -r origin file <<<"$z"
    printf '[[zone]]\norigin = "%s"\nfile = "%s"\n' "$origin" "$file"
  done
} >dp.toml
cat >root.toml <<EOF
listen = ["$RA:$PORT"]
trust = "trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"
[[client]]
provider = "chat.example."
tsig = "ap.tsig"
lookups_per_day = "unlimited"
[[zone]]
origin = "mimi.arpa."
file = "root.zone"
[pir]  # its PIRCFG lists the delegated blocks, so a private walk goes straight to them
scheme = "mulpir"  # the README and docs/scale.md figures of this script were measured with MulPIR
EOF
NO_COLOR=1 MIMI_LOG=warn "$MIMI" dp serve --config root.toml 2>root.log &
pids+=($!)
wait_pircfg $RA "$PORT" mimi.arpa. $! root.log 60
NO_COLOR=1 MIMI_LOG=warn "$MIMI" dp serve --config dp.toml 2>dp.log &
DPID=$!
pids+=("$DPID")
for z in "${zones[@]}"; do
  read -r origin _ <<<"$z"
  wait_pircfg $MA "$PORT" "$origin" "$DPID" dp.log
done
echo "== DP up after $(($(date +%s) - t0)) s (zones generated, loaded, PIR databases built): $(($(awk '/^VmRSS:/ { print $2 }' "/proc/$DPID/status") / 1024)) MiB"

"$BENCH" --port "$PORT" --root $RA --dp $MA --dp-pid "$DPID" --trust trust.toml \
  --ap-tsig ap.tsig --update-tsig chat.tsig --key chat.key \
  --area $AREA --mappings "$N" --log-slots "$LOG_SLOTS" \
  --sync-area $SYNC_AREA --sync-mappings "$SN" --sync-log-slots "$SYNC_LOG_SLOTS" \
  --work "$d" --json "$d/replica.json" "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); $(($(date +%s) - t0)) s in all"
