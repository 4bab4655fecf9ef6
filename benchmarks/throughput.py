"""Solves per second of the factor flow: one batched call vs a loop of single solves.

Matrix sensing (eq. 9) of a d x d rank-2 truth from m = 8 d Gaussian measurements
(`--dims`, default 10 20 50), depth 3 (widths d), balanced init of norm 1e-3, Tsit5 with
rtol 1e-8, atol 1e-10, float64, t1 = 60; then the completion study's problem (100 x 100,
rank 5, 2000 observed entries, depths 2 and 3, stopped at a 1e-6 loss reduction) with
`--completion-batch` seeds. For each batch size B: `lf.solve_batch` with every
`chunk_size` strategy (`None`: all seeds vmapped; `1`: one after another in one
compiled `lax.map`; `"auto"`: the default, and which of the two it picked) vs a Python
loop calling the jitted `lf.factor_flow` once per seed, all after compilation (compile
time reported apart: first call minus a run); each wall time is the median of
`--repeats` runs, fewer where they would take more than `--budget` seconds in all (at
least one; on shared cores single runs of one program vary: at B = 1, seq and auto run
the same program, so their columns show the spread); x columns are per-seed speed
relative to the loop (> 1: faster than the loop); "field" is the ratio `auto` decides
on (the vmapped vector field's cost per member over a single one's, measured again
here); peak memory after each B (process max RSS; device peak where JAX reports it).

Then the cost of vmap advancing every member until the slowest finishes: seeds whose
init scales span 1e-4 .. 1e-2 (plateaus of very different lengths), with and without a
loss threshold stop; utilization = sum of per-member steps / (B * max steps), and the
wall time of one mixed batch vs the same seeds in order of scale, `chunk_size` at a time.

Usage: python benchmarks/throughput.py [--max-batch 1024] [--dims 10 20 50]
           [--completion-batch 8] [--utilization-batch 64] [--repeats 5] [--budget 20]
"""

import argparse
import resource
import statistics
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


def timed_median(fn, repeats, budget):
    """`fn`'s output and median wall time over up to `repeats` runs, stopping once
    another run would take the total past `budget` seconds."""
    out, first = timed(fn)
    runs = [first]
    while len(runs) < repeats and sum(runs) + first <= budget:
        runs.append(timed(fn)[1])
    return out, statistics.median(runs)


def peak_memory() -> str:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mib = rss / (1 << 20) if sys.platform == "darwin" else rss / 1024
    text = f"{rss_mib:7.0f} MiB rss"
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        text += f", {stats['peak_bytes_in_use'] / (1 << 20):.0f} MiB device"
    return text


def initial(B, scales, seed=1, d=D, depth=DEPTH):
    keys = jax.random.split(jax.random.PRNGKey(seed), B)
    scales = jnp.broadcast_to(jnp.asarray(scales, jnp.float64), (B,))
    return jax.vmap(lambda k, s: lf.init.balanced(k, (d,) * (depth + 1), s))(keys, scales)


def strategy_of(loss, ws0, depth) -> str:
    """What `chunk_size="auto"` picked for this batch (`lnn_flow._batching._batch_strategy`), and
    the field ratio it decided on: the vmapped field's cost per member over a single
    one's (measured here again; "-" where `auto` does not measure)."""
    from lnn_flow._batching._batch_strategy import CPU_CHUNK, SMALL_STATE, choose, field_costs
    from lnn_flow._flows._factor import _FactorSystem

    B = ws0[0].shape[0]
    chunk = choose("factor", loss, ws0, (T1,), dict(OPTIONS), B, tuple(jax.devices()))
    name = "seq" if chunk == 1 else "vmap" if chunk is None else f"vmap/{chunk}"
    if B < 2 or sum(w[0].size for w in ws0) < SMALL_STATE:
        return f"{name:>7} {'-':>5}"
    members = tuple(w[:CPU_CHUNK] for w in ws0)
    single, batched = field_costs(_FactorSystem(loss, depth), members)
    return f"{name:>7} {batched / single:5.2f}"


def throughput(loss, d, depth, sizes, t1, options, timing):
    """Per B: the batched call with every `chunk_size` strategy (all vmapped `None`,
    one after another `1`, and `"auto"`) against a loop of single solves."""
    print(f"{'B':>5} {'vmap s':>8} {'seq s':>8} {'auto s':>8} {'auto':>7} {'field':>5} "
          f"{'loop s':>8} "
          f"{'vmap x':>6} {'seq x':>6} {'auto x':>6} {'compile vmap':>12} "
          f"{'compile 1':>9}  peak memory   (x: per-seed speed vs the loop)")
    single = lambda ws: lf.factor_flow(loss, ws, t1, **options)
    member = lambda ws, i: tuple(w[i] for w in ws)
    for B in sizes:
        ws0 = jax.block_until_ready(initial(B, SCALE, d=d, depth=depth))
        runs, compiles = {}, {}
        for name, chunk in (("vmap", None), ("seq", 1), ("auto", "auto")):
            batched = lambda: lf.solve_batch("factor", loss, ws0, t1, chunk_size=chunk,
                                             **options)
            _, first = timed(batched)
            out, runs[name] = timed_median(batched, *timing)
            compiles[name] = first - runs[name]
            assert bool(out.success.all()), out.message
        # The loop's compile is paid once per shape (B = 1 shows it); later calls reuse.
        _, first_single = timed(lambda: single(member(ws0, 0)))
        _, single_run = timed(lambda: single(member(ws0, 0)))
        # Loops over more than 64 seeds are timed on 64 and scaled (B = 8192 on a GPU
        # would take minutes at ~60 ms a solve).
        timed_seeds = min(B, 64)

        def loop_of_singles():
            for i in range(timed_seeds):
                jax.block_until_ready(single(member(ws0, i)))

        loop = timed_median(loop_of_singles, *timing)[1] * B / timed_seeds
        print(f"{B:5d} {runs['vmap']:8.3f} {runs['seq']:8.3f} {runs['auto']:8.3f} "
              f"{strategy_of(loss, ws0, depth)} {loop:8.3f} {loop / runs['vmap']:6.2f} "
              f"{loop / runs['seq']:6.2f} {loop / runs['auto']:6.2f} "
              f"{compiles['vmap']:12.2f} {first_single - single_run:9.2f}  "
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


def completion(depths, B, timing):
    """The 100 x 100 rank-5 completion from 2000 observed entries (the completion
    study's problem), each seed stopped when its loss fell by 1e-6."""
    loss, _ = lf.problems.random_matrix_completion(jax.random.PRNGKey(0), (100, 100), 5,
                                                   2000)
    threshold = 1e-6 * float(loss(jnp.zeros((100, 100))))
    options = dict(OPTIONS, loss_threshold=threshold, max_steps=200_000)
    for depth in depths:
        print(f"\ncompletion 100 x 100, rank 5, 2000 observed entries, depth {depth}, "
              f"balanced init {SCALE}, stop at loss {threshold:.3g}")
        throughput(loss, 100, depth, [B], 1e5 * 2000, options, timing)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-batch", type=int, default=1024,
                        help="largest B of 1, 16, 64, 256, 1024, 8192 to run (default 1024)")
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 20, 50],
                        help="sensing: d of the d x d problem (m = 8 d); B is capped at "
                             "64 for d >= 50 (default 10 20 50)")
    parser.add_argument("--completion-batch", type=int, default=8,
                        help="seeds of the 100 x 100 completion, depths 2 and 3 (0: skip)")
    parser.add_argument("--utilization-batch", type=int, default=64,
                        help="seeds of the utilization section (0: skip it)")
    parser.add_argument("--chunks", type=int, default=4,
                        help="utilization: sorted seeds solved in this many chunks")
    parser.add_argument("--repeats", type=int, default=5,
                        help="runs per wall time, the median shown (default 5)")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds a wall time's repeats may take (default 20)")
    args = parser.parse_args()
    timing = (args.repeats, args.budget)
    print(f"backend: {jax.default_backend()}, devices: {jax.device_count()} "
          f"({jax.devices()[0].device_kind}), jax {jax.__version__}")
    for d in args.dims:
        print(f"\nfactor flow: matrix sensing d = {d}, rank {RANK}, m = {8 * d}, depth "
              f"{DEPTH}, balanced init {SCALE}, Tsit5 rtol 1e-8 atol 1e-10, t1 = {T1}, "
              "float64")
        loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(0), (d, d), RANK,
                                                    8 * d)
        cap = args.max_batch if d < 50 else min(args.max_batch, 64)
        sizes = [b for b in (1, 16, 64, 256, 1024, 8192) if b <= cap]
        throughput(loss, d, DEPTH, sizes, T1, OPTIONS, timing)
    if args.completion_batch:
        completion((2, 3), args.completion_batch, timing)
    if args.utilization_batch:
        loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(0), (D, D), RANK, M)
        utilization(loss, args.utilization_batch, args.chunks)


if __name__ == "__main__":
    main()
