#!/usr/bin/env bash
# Respire single-query benchmark (src/pir/respire; issue 13): for each size 2^K records of
# 256 bytes (four records per large-ring plaintext, nu3 = 2, and nu1 = 9 where possible as in
# the paper: 2^16 records = 2^9 x 2^5 plaintexts, 2^18 = 2^9 x 2^7, 2^20 = 2^9 x 2^9), build a
# database of random records, then run Q queries at random indexes and print
#   - sizes computed from the parameters: query bytes as sent (two 32-byte seeds and the packed
#     coefficients of b at 56 bits), response bytes (2048), public keys with seeded masks (as
#     implemented, and with the projection keys shared as the paper counts), database memory;
#   - the server's time per fetch on one thread (thread CPU time; the Respire code does not
#     use rayon), split into expansion, first dimension, folding + rotation and response
#     (projection, vectorisation, compression), and the client's query and decode times;
#   - the noise: bits of margin of the large-ring answer and the largest final phase error;
#   - a comparison with Respire's Table 1 (2^20 x 256 B: 4.1 KB query, 2.0 KB response,
#     3.9 MB keys, 1.26 s on a Xeon 8488C) and issue 13's goals (per lookup of two fetches:
#     14 KB up, 21 KB down; 1.0 s per fetch on one thread), labelled when the size differs.
# Every decoded record must equal the record at its index; the run exits non-zero otherwise.
#
# CPU times are the honest single-thread figure on a shared machine: wall time there includes
# waiting for the other tenants.
#
# Usage: tools/bench/respire.sh [LOG_RECORDS] [QUERIES] [TIMEOUT_SECONDS]
#        (default: 16,18 records, 3 queries per size, 900 s in all; add 20 for the paper's size)
# Memory (peak RSS measured on one run): 2^16 about 400 MiB, 2^18 about 1.5 GiB; 2^20 holds a
# 4 GiB database and, while it is encoded, 2 GiB of plaintexts beside it: about 6 GiB peak.
# Time: the default run takes about 15 s after the build on a 2-core EPYC; 2^20 adds about 25 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=${1:-16,18}
QUERIES=${2:-3}
LIMIT=${3:-900}
cargo build --release --quiet --example respire_bench
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec timeout "$LIMIT" "${CARGO_TARGET_DIR:-target}"/release/examples/respire_bench --log-records "$SIZES" --queries "$QUERIES"
