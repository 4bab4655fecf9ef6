#!/usr/bin/env bash
# The figures of the performance issue on an accelerator, in one run (about 8 min on
# an H100): field costs and end-to-end accuracy per decomposition, batch throughput of
# the factor flow up to B = 8192, refilled slots against one vmap on 8192 seeds, and
# lnn_flow against jax.experimental.ode (torch peers need a CUDA torch: not assumed).
# Usage: bash benchmarks/gpu_evidence.sh   (writes each section's output to stdout)
set -u
cd "$(dirname "$0")/.."
python -m pip install -q -e . 2>/dev/null || true
section() { echo; echo "=== $1"; shift; timeout 240 "$@" || echo "(section ended with status $?)"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
section "flows: field cost, end-to-end / factor, SVD vs Gram" \
    python benchmarks/flows.py --dims 10 20 50 100 --repeats 3
section "throughput: factor flow, vmap vs loop, B up to 8192" \
    python benchmarks/throughput.py --max-batch 8192 --utilization-batch 8192
section "refill: 8192 seeds, init 1e-4..1e-2, 2048 slots" \
    python benchmarks/refill.py --seeds 8192 --slots 2048 --rounds 32 --repeats 1
section "peers (JAX only): lnn_flow vs jax.experimental.ode.odeint" \
    python benchmarks/peers.py --peers lnn_flow jax-odeint --dims 20 100 --batches 1 1024 --repeats 1
