#!/usr/bin/env bash
# The figures of the performance issue on an accelerator, in one run (each section
# capped at 240 s): field costs and end-to-end accuracy per decomposition, batch
# throughput of the factor flow up to B = 8192 (vmapped, sequential and the automatic
# choice, vs a loop), refilled slots against one vmap on 8192 seeds, the CP tensor
# flow, and lnn_flow against jax.experimental.ode (torch peers need a CUDA torch).
#
# Needs no package index: lnn_flow is imported from src/ (PYTHONPATH), and its
# dependencies (jax, diffrax, equinox, optax, optimistix, lineax, jaxtyping, matplotlib,
# tqdm, threadpoolctl) must already be installed, as on the device image. Nothing is
# installed. `SMALL=1` runs every section at toy sizes: a rehearsal on a CPU machine.
# Usage: bash benchmarks/gpu_evidence.sh   [SMALL=1 bash benchmarks/gpu_evidence.sh]
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if ! python -c "import lnn_flow, jax; print('lnn_flow from', lnn_flow.__file__, '| jax', jax.__version__, jax.devices())"; then
    echo "gpu_evidence: cannot import lnn_flow from src/ or one of its dependencies" >&2
    exit 1
fi
section() { echo; echo "=== $1"; shift; timeout 240 "$@" || echo "(section ended with status $?)"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
if [ "${SMALL:-0}" = 1 ]; then
    dims="10"; big_dims="10"; max_batch=8; seeds=16; slots=4; batches="1 4"
    completion=0
else
    dims="10 20 50 100"; big_dims="20 100"; max_batch=8192; seeds=8192; slots=2048
    batches="1 1024"; completion=16
fi
# shellcheck disable=SC2086
section "flows: field cost, end-to-end / factor, SVD vs Gram" \
    python benchmarks/flows.py --dims $dims --repeats 3
section "throughput: factor flow, vmap / sequential / auto vs loop, B up to $max_batch" \
    python benchmarks/throughput.py --max-batch "$max_batch" --dims 20 \
    --completion-batch "$completion" --utilization-batch "$max_batch"
section "refill: $seeds seeds, init 1e-4..1e-2, $slots slots" \
    python benchmarks/refill.py --seeds "$seeds" --slots "$slots" --rounds 32 --repeats 1
section "tensor: the CP flow, orders 3 and 4" python benchmarks/tensor.py
# shellcheck disable=SC2086
section "peers (JAX only): lnn_flow vs jax.experimental.ode.odeint" \
    python benchmarks/peers.py --peers lnn_flow jax-odeint --dims $big_dims --batches $batches --repeats 1
