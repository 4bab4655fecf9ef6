"""Idle batch slots: one vmap, chunks, and refilled slots (`lnn_flow.solve_pool`).

Seeds with very different plateau lengths: matrix sensing (eq. 9), d x d, rank 2,
m = 8 d, depth 3, balanced init with norms log-spaced over 1e-4..1e-2 (plateau length
grows as the init shrinks), Tsit5 rtol 1e-8, float64. Two studies: a fixed horizon
`t1`, and a loss stop (`loss_threshold` = 1e-6 x the largest initial loss).

Utilization = steps the members needed / steps the slots were stepped for: a vmapped
while loop steps all its members until the slowest stops, so one vmap costs
`B * max(steps)`, chunks `chunk * max(steps in chunk)` each, and the refilled pool
`group * max(steps in group)` per round for each group of slots that ran (see
`lnn_flow._batching._pool`: 4 groups on CPU, 1 on GPU/TPU). Wall times after compilation (median
of `--repeats`), ratios against one vmap in this process; `compile s` = first call
minus the median (trace, compile and one run's noise).
Usage: python benchmarks/refill.py [--seeds 512] [--d 10] [--slots 64] [--rounds 16 32 64]
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import lnn_flow as lf


def timed(fn, repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        runs.append(time.perf_counter() - start)
    return out, statistics.median(runs), first - statistics.median(runs)


def with_pool_totals(sol):
    """`(solution, PoolStats)`: the pool's totals are repeated for every member."""
    return sol, jax.tree_util.tree_map(lambda x: x[0], sol.pool)


def chunked_utilization(steps, chunk):
    steps = np.asarray(steps)
    used = slots = 0
    for i in range(0, len(steps), chunk):
        part = steps[i : i + chunk]
        used += part.sum()
        slots += len(part) * part.max()
    return used / slots


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=512)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--t1", type=float, default=300.0)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--rounds", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    d, n = args.d, args.seeds
    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")
    loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(0), (d, d), 2, 8 * d)
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    # Shuffled, so that chunks mix short and long plateaus as a sweep over seeds would.
    scales = jax.random.permutation(jax.random.PRNGKey(2), jnp.logspace(-4, -2, n))
    ws0 = jax.vmap(lambda k, s: lf.init.balanced(k, (d,) * 4, s))(keys, scales)
    ts = jnp.linspace(0.0, args.t1, 11)
    threshold = 1e-6 * float(jnp.max(jax.vmap(lambda ws: loss(lf.end_to_end(ws)))(ws0)))
    print(
        f"d = {d}, depth 3, {n} seeds, init norms 1e-4..1e-2, t1 = {args.t1}, "
        f"loss stop at {threshold:.2e}"
    )
    print(
        f"{'study':>9} {'method':>22} {'wall s':>8} {'seeds/s':>8} {'utilization':>11} "
        f"{'steps':>9} {'ok':>4} {'vs vmap':>8} {'compile s':>9}"
    )
    for study, extra in (("fixed t1", {}), ("loss stop", {"loss_threshold": threshold})):
        runs = {
            "one vmap": lambda: (
                lf.solve_batch("factor", loss, ws0, args.t1, ts, chunk_size=None, **extra),
                None,
            ),
            f"chunks of {args.slots}": lambda: (
                lf.solve_batch(
                    "factor", loss, ws0, args.t1, ts, chunk_size=args.slots, **extra
                ),
                None,
            ),
        }
        for r in args.rounds:
            runs[f"pool {args.slots} x {r} steps"] = lambda r=r: with_pool_totals(
                lf.solve_pool(
                    "factor", loss, ws0, args.t1, ts, slots=args.slots, round_steps=r,
                    **extra,
                )
            )
        base = None
        for name, run in runs.items():
            (sol, stats), wall, compile_s = timed(run, args.repeats)
            steps = np.asarray(sol.stats.num_steps)
            if stats is not None:
                utilization = float(stats.utilization)
            elif name == "one vmap":
                utilization = steps.sum() / (n * steps.max())
            else:
                utilization = chunked_utilization(steps, args.slots)
            base = wall if base is None else base
            print(
                f"{study:>9} {name:>22} {wall:>8.3f} {n / wall:>8.1f} {utilization:>11.3f} "
                f"{steps.sum():>9} {int(np.sum(sol.success)):>4} {base / wall:>7.2f}x "
                f"{compile_s:>9.1f}"
            )


if __name__ == "__main__":
    main()
