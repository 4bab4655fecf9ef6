"""Solves per second of the factor flow: one batched call vs a loop of single solves.

Matrix sensing (eq. 9) of a 20 x 20 rank-2 truth from m = 160 Gaussian measurements,
depth 3 (widths 20), balanced init of norm 1e-3, Tsit5 with rtol 1e-8, atol 1e-10,
float64, t1 = 60. For each batch size B: `lf.solve_batch` (seeds vmapped, sharded
over all visible devices) vs a Python loop calling the jitted `lf.factor_flow` once per
seed, both after compilation (compile time reported apart: first call minus a run);
also the batched call with `chunk_size` (seeds solved a chunk at a time); peak memory
after each B (process max RSS; device peak where JAX reports it).

Then the cost of vmap advancing every member until the slowest finishes: seeds whose
init scales span 1e-4 .. 1e-2 (plateaus of very different lengths), with and without a
loss threshold stop; utilization = sum of per-member steps / (B * max steps), and the
wall time of one mixed batch vs the same seeds in order of scale, `chunk_size` at a time.

Usage: python benchmarks/throughput.py [--max-batch 1024] [--utilization-batch 64]
"""

import argparse
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import lnn_flow as lf

D, DEPTH, RANK, M, SCALE, T1 = 20, 3, 2, 160, 1e-3, 60.0
OPTIONS = dict(rtol=1e-8, atol=1e-10)


def timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def peak_memory() -> str:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mib = rss / (1 << 20) if sys.platform == "darwin" else rss / 1024
    text = f"{rss_mib:7.0f} MiB rss"
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        text += f", {stats['peak_bytes_in_use'] / (1 << 20):.0f} MiB device"
    return text


def initial(B, scales, seed=1):
    keys = jax.random.split(jax.random.PRNGKey(seed), B)
    scales = jnp.broadcast_to(jnp.asarray(scales, jnp.float64), (B,))
    return jax.vmap(lambda k, s: lf.init.balanced(k, (D,) * (DEPTH + 1), s))(keys, scales)


def throughput(loss, sizes, chunk):
    print(f"{'B':>5} {'vmap s':>8} {'loop s':>8} {'vmap/s':>8} {'loop/s':>8} "
          f"{'speedup':>7} {f'chunk{chunk}/s':>9} {'compile vmap':>12} {'compile 1':>9}"
          "  peak memory")
    single = lambda ws: lf.factor_flow(loss, ws, T1, **OPTIONS)
    member = lambda ws, i: tuple(w[i] for w in ws)
    for B in sizes:
        ws0 = jax.block_until_ready(initial(B, SCALE))
        batched = lambda: lf.solve_batch("factor", loss, ws0, T1, chunk_size=None,
                                         **OPTIONS)
        _, first = timed(batched)
        out, run = timed(batched)
        chunked = lambda: lf.solve_batch("factor", loss, ws0, T1, chunk_size=chunk,
                                         **OPTIONS)
        timed(chunked)
        _, chunk_run = timed(chunked)
        # The loop's compile is paid once per shape (B = 1 shows it); later calls reuse.
        _, first_single = timed(lambda: single(member(ws0, 0)))
        _, single_run = timed(lambda: single(member(ws0, 0)))
        # Loops over more than 64 seeds are timed on 64 and scaled (B = 8192 on a GPU
        # would take minutes at ~60 ms a solve).
        timed_seeds = min(B, 64)
        start = time.perf_counter()
        for i in range(timed_seeds):
            jax.block_until_ready(single(member(ws0, i)))
        loop = (time.perf_counter() - start) * B / timed_seeds
        assert bool(out.success.all())
        print(f"{B:5d} {run:8.3f} {loop:8.3f} {B / run:8.1f} {B / loop:8.1f} "
              f"{loop / run:7.2f} {B / chunk_run:9.1f} {first - run:12.2f} "
              f"{first_single - single_run:9.2f}  "
              f"{peak_memory()}", flush=True)


def utilization(loss, B, chunks):
    print(f"\nUtilization: B = {B} seeds, init scale log-spaced over 1e-4 .. 1e-2 "
          f"(plateaus of different lengths); sorted: the seeds in order of scale, "
          f"solved {B // chunks} at a time (chunk_size)")
    scales = np.logspace(-4, -2, B)
    ws0 = initial(B, scales, seed=2)
    print(f"{'stop':>22} {'steps min/med/max':>18} {'utilization':>11} "
          f"{'mixed s':>8} {'sorted s':>8}")
    for label, extra in (("t1 = 200", {}), ("loss <= 1e-4 (t1 200)",
                                            {"loss_threshold": 1e-4})):
        solve = lambda chunk: lf.solve_batch(
            "factor", loss, ws0, 200.0, chunk_size=chunk, **OPTIONS, **extra)
        timed(lambda: solve(None))  # compile
        out, mixed = timed(lambda: solve(None))
        steps = np.asarray(out.stats.num_steps)
        used = steps.sum() / (B * steps.max())
        size = B // chunks  # members are already in order of scale
        timed(lambda: solve(size))  # compile
        _, sorted_time = timed(lambda: solve(size))
        per_chunk = steps[: chunks * size].reshape(chunks, size)
        chunk_used = per_chunk.sum() / (size * per_chunk.max(axis=1).sum())
        print(f"{label:>22} {steps.min():6d}/{int(np.median(steps)):5d}/{steps.max():5d} "
              f"{used:11.2f} {mixed:8.3f} {sorted_time:8.3f}   "
              f"(sorted utilization {chunk_used:.2f})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-batch", type=int, default=1024,
                        help="largest B of 1, 16, 64, 256, 1024, 8192 to run (default 1024)")
    parser.add_argument("--utilization-batch", type=int, default=64)
    parser.add_argument("--chunks", type=int, default=4,
                        help="utilization: sorted seeds solved in this many chunks")
    parser.add_argument("--chunk-size", type=int, default=16,
                        help="throughput: chunk_size of the chunked batched call")
    args = parser.parse_args()
    print(f"backend: {jax.default_backend()}, devices: {jax.device_count()} "
          f"({jax.devices()[0].device_kind}), jax {jax.__version__}")
    print(f"factor flow: matrix sensing d = {D}, rank {RANK}, m = {M}, depth {DEPTH}, "
          f"balanced init {SCALE}, Tsit5 rtol 1e-8 atol 1e-10, t1 = {T1}, float64\n")
    loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(0), (D, D), RANK, M)
    sizes = [b for b in (1, 16, 64, 256, 1024, 8192) if b <= args.max_batch]
    throughput(loss, sizes, args.chunk_size)
    utilization(loss, args.utilization_batch, args.chunks)


if __name__ == "__main__":
    main()
