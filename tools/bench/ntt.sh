#!/usr/bin/env bash
# NTT benchmark (src/pir/ntt.rs, docs/ntt.md): the project's own negacyclic NTT against
# fhe_math::ntt::NttOperator (what MulPIR uses today; with the `tfhe-ntt` feature this crate
# enables, that is tfhe-ntt's prime64 plan) in the same run, on one thread, at
#   n = 512 with Respire's q2 = 16760833,
#   n = 2048 with Respire's q1 halves 268369921 and 249561089,
#   n = 4096 with MulPIR's moduli 268369921, 134176769, 134111233, 134012929.
# For each: ns per forward transform, per inverse (with the 1/n scaling), their sum, and per
# mul_acc (acc += a * b pointwise mod q, fully reduced; the peer does mul_vec + add_vec),
# for our AVX2 backend, our portable backend and the peer, with ratios ours / peer (below 1
# is faster). mul_acc_wide (no reduction, amortised folding) has no peer of its own; it is
# set against the peer's mul_acc. All outputs are fully reduced on every side.
#
# Times are the median thread CPU time per call over N batches (honest on a shared machine,
# where wall time includes waiting for other tenants).
#
# Usage: tools/bench/ntt.sh [SAMPLES] [SAMPLE_MS]   (default 9 batches of about 30 ms)
set -euo pipefail
cd "$(dirname "$0")/../.."
SAMPLES=${1:-9}
SAMPLE_MS=${2:-30}
cargo build --release --quiet --features mulpir --example ntt_bench
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec "${CARGO_TARGET_DIR:-target}"/release/examples/ntt_bench --samples "$SAMPLES" --sample-ms "$SAMPLE_MS"
