"""What `solver="auto"` costs where the flow is not stiff: Tsit5 against `auto` as two
solves (`lnn_flow._solving._auto`: a lean Tsit5 start, the switching solver after a handoff) and
as one switching solve (`lean_start=False`, how `auto` ran before), side by side.

Problem: `benchmarks/peers.py`'s matrix sensing (d x d, rank 2, m = 8 d, depth 3,
balanced init of norm 1e-3, float64), the factor flow over [0, t1] (t1 = 60 by
default: the saddle escape and the fit, not the stiff tail), saved at `--saves` times,
rtol 1e-8, atol 1e-10. Per d:

- one seed (`lf.factor_flow`): wall time of a warm call (best of `--repeats`), the
  first call's extra (compilation), steps, switches;
- `--batch` seeds (`lf.solve_batch`): Tsit5 vmapped (its `chunk_size="auto"`), `auto`
  as `solve_batch` runs it on CPU (one seed after another) and `auto` vmapped
  (`chunk_size=None`: a member that never hands off never runs the switching solver).

Ratios are each configuration's wall time over Tsit5's in the same run.

    python benchmarks/auto_overhead.py [--dims 10 20 50] [--t1 60] [--batch 8]
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp

import lnn_flow as lf
from lnn_flow._solving._switching import auto_solver
from peers import problem

RTOL, ATOL = 1e-8, 1e-10


def _timed(run, repeats):
    start = time.perf_counter()
    out = run()
    jax.block_until_ready(out.end_to_end_final)
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        jax.block_until_ready(out.end_to_end_final)
        best = min(best, time.perf_counter() - start)
    return out, best, first - best


def _steps(sol):
    steps = jnp.atleast_1d(sol.stats.num_steps)
    return f"{int(steps.sum()):>7}"


def _switches(sol):
    if sol.switching is None:
        return "-"
    return str(int(jnp.atleast_1d(sol.switching.num_switches).sum()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--t1", type=float, default=60.0)
    parser.add_argument("--saves", type=int, default=61)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    ts = jnp.linspace(0.0, args.t1, args.saves)
    print(f"backend {jax.default_backend()}; sensing, depth 3, init 1e-3, t1 = {args.t1:g}, "
          f"rtol {RTOL:g}, atol {ATOL:g}; warm wall time, best of {args.repeats}")
    print(f"{'d':>4} {'B':>3} {'configuration':<28} {'wall s':>9} {'x Tsit5':>8} "
          f"{'compile s':>9} {'steps':>7} {'switches':>8}")
    for d in args.dims:
        loss, batch = problem(d, args.batch)
        one = tuple(w[0] for w in batch)
        size = sum(w.size for w in one)
        single = eqx.tree_at(lambda s: s.lean_start, auto_solver(size, RTOL, ATOL), False)
        options = dict(rtol=RTOL, atol=ATOL)
        rows = {
            (1, "Tsit5"): lambda: lf.factor_flow(loss, one, args.t1, ts, **options),
            (1, "auto"): lambda: lf.factor_flow(loss, one, args.t1, ts, solver="auto",
                                                **options),
            (1, "auto, one switching solve"): lambda: lf.factor_flow(
                loss, one, args.t1, ts, solver=single, **options),
            (args.batch, "Tsit5"): lambda: lf.solve_batch(
                "factor", loss, batch, args.t1, ts, **options),
            (args.batch, "auto (one seed at a time)"): lambda: lf.solve_batch(
                "factor", loss, batch, args.t1, ts, solver="auto", **options),
            (args.batch, "auto vmapped"): lambda: lf.solve_batch(
                "factor", loss, batch, args.t1, ts, solver="auto", chunk_size=None,
                **options),
        }
        base = {}
        for (B, name), run in rows.items():
            sol, wall, compile_s = _timed(run, args.repeats)
            base.setdefault(B, wall)
            print(f"{d:>4} {B:>3} {name:<28} {wall:>9.4f} {wall / base[B]:>8.2f} "
                  f"{compile_s:>9.2f} {_steps(sol)} {_switches(sol):>8}", flush=True)


if __name__ == "__main__":
    main()
