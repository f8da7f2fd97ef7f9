#!/usr/bin/env bash
# Private-lookup benchmark (src/pir, docs/private-lookup.md): for each size 2^K slots of 256
# bytes and each scheme, build a synthetic zone (one 160-byte record per identifier; MulPIR:
# 4-slot cuckoo buckets = 1 KiB PIR elements at load 0.9; Respire: 1-slot buckets = 256-byte
# records at load 0.45), then run Q lookups (alternately present and absent
# identifiers): OPRF, then both bucket queries answered
#   - on a one-thread rayon pool (wall and thread CPU time, with the per-phase split),
#   - on the global pool (all cores),
#   - batched together on one thread (one pass over the database for the pair);
# the client's query generation and decode+open are timed too, and every present identifier
# must be found and every absent one not. Prints a per-query table and a per-lookup table
# beside the source draft's Table 2 (upload 14 KB, download 21 KB, client storage 5 MB,
# client 0.1 s, server 0.8-1 s single thread for a 1M-record shard) with ratios.
#
# CPU times are the honest single-thread figure on a shared machine: wall time there includes
# waiting for the other tenants.
#
# With Respire among the schemes, each size is then built again to take batch queries
# (src/pir/batch.rs: three bucket copies of the table) for each batch of BATCHES lookups, and
# one batch of that many lookups is answered on one thread and on all cores; a per-lookup
# table follows, beside issue 13's goals.
#
# Usage: tools/bench/pir.sh [LOG_SLOTS] [QUERIES] [TIMEOUT_SECONDS] [SCHEMES] [BATCHES]
#        (default: 16,18,20 slots, 3 lookups per size, 1800 s in all, mulpir,respire,
#        batches of 16,32,64 lookups; "" for none)
# Memory: the 2^20 runs need about 4 GB (MulPIR: 2.1 GB of preprocessed database) and 6 GB
# (Respire: 4 GiB of NTT-form plaintexts); a 2^20 Respire zone with bucket copies for batch
# queries about 4x that.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${1:-16,18,20}
QUERIES=${2:-3}
LIMIT=${3:-1800}
SCHEMES=${4:-mulpir,respire}
BATCHES=${5-16,32,64}
cargo build --release --quiet --features mulpir --example pir_bench
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec timeout "$LIMIT" target/release/examples/pir_bench --log-slots "$SIZES" --queries "$QUERIES" --schemes "$SCHEMES" --batches "$BATCHES"
