#!/usr/bin/env bash
# A regression check (not a benchmark, run by .ci/run): private lookups that read an
# encrypted replica while the resolver applies deltas of several messages, or a whole table,
# must never answer "absent" for a present identifier. They once did: the resolver wrote
# each SLOTS record into the served table as it arrived, so between two records a slot that
# an addition's cuckoo walk moved was in neither of its buckets. Now a delta is applied under
# one lock once whole and a whole table goes to a new file (src/resolver/replica/mod.rs,
# sync_shard). Exit status 1 on any wrong answer.
#
# One `mimi dp serve` with a carrier zone of 2^LOG_SLOTS slots (default 14) behind a root DP;
# examples/replica_race.rs looks up every present identifier again and again from two
# resolvers (one without a private cache, one with) while rounds of additions and
# replacements are published and each replica is refreshed once a round. It prints every
# present identifier answered absent (with the time, beside the rounds' refresh times) and
# every wrong answer left after the last delta.
#
# Usage: tools/bench/replica-race.sh [LOG_SLOTS] [--rounds N] [--changes N]
#   (default 14, 10 rounds of 60 additions and 60 replacements; under a minute)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/lib.sh
LOG_SLOTS=${1:-14}
shift $(($# < 1 ? $# : 1))
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin mimi --example replica_race
MIMI=$(realpath "$TARGET/release/mimi")
BIN=$(realpath "$TARGET/release/examples/replica_race")
scratch_start replica-race.sh
d=$W
RA=127.0.0.161 MA=127.0.0.162
# Load 0.85 at the start and about 0.89 after the default rounds: a cuckoo table near 0.94
# sometimes cannot place an addition, and the DP then builds a new epoch (the run copes, but
# ends its rounds there).
N=$(python3 -c "print(int(0.85 * 2 ** $LOG_SLOTS))")
cd "$d"
ORIGIN=$(carrier_zone . 555 "$N" $MA)
"$MIMI" zone new mimi.arpa. --out root.zone --ns ns1.mimi.arpa.=$RA >/dev/null
"$MIMI" zone delegate root.zone --child "$ORIGIN" --ns "ns1.$ORIGIN=$MA" >/dev/null
tsig_key ap-query. ap.tsig
tsig_key chat-update. chat.tsig
PORT=$(free_port $RA $MA)
mkdir -p journal
client=$(printf '[[client]]\nprovider = "chat.example."\ntsig = "ap.tsig"\nlookups_per_day = "unlimited"\n')
cat >dp.toml <<EOC
listen = ["$MA:$PORT"]
trust = "trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"
$client
[[update]]
provider = "chat.example"
tsig = "chat.tsig"
[updates]
per_second = 1000000
burst = 1000000
[journal]
dir = "journal"
[pir]
threads = 1
[[zone]]
origin = "$ORIGIN"
file = "555.zone"
EOC
cat >root.toml <<EOC
listen = ["$RA:$PORT"]
trust = "trust.toml"
[access]
anonymous_lookups_per_day = "unlimited"
$client
[[zone]]
origin = "mimi.arpa."
file = "root.zone"
[pir]
EOC
NO_COLOR=1 MIMI_LOG=warn "$MIMI" dp serve --config root.toml 2>root.log &
pids+=($!)
wait_pircfg $RA "$PORT" mimi.arpa. $! root.log 60
NO_COLOR=1 MIMI_LOG=warn "$MIMI" dp serve --config dp.toml 2>dp.log &
DPID=$!
pids+=("$DPID")
wait_pircfg $MA "$PORT" "$ORIGIN" "$DPID" dp.log
# Bounded: a run that stalls fails here rather than holding CI.
timeout --kill-after=10 "${RACE_TIMEOUT:-600}" "$BIN" --port "$PORT" --root $RA --dp $MA --dp-pid "$DPID" --trust trust.toml --ap-tsig ap.tsig \
  --update-tsig chat.tsig --key chat.key --mappings "$N" --work "$d" "$@"
