"""Cost per field evaluation: RKC2's stage loop (`lnn_flow._solving._chebyshev`) against Tsit5's
Runge-Kutta stages, on the same vector field.

Problem: `benchmarks/peers.py`'s matrix sensing (d x d, rank 2, m = 8 d, depth 3,
balanced init 1e-3), the factor flow's field at the state reached at t = 60. Each
solver takes `--steps` constant steps of size dt (tiny: the state barely moves, so
every run evaluates the same field), with `diffrax.diffeqsolve` on the flat state
(as every lnn_flow solve does, `lnn_flow._solving._flat`). RKC2 runs with a fixed stage count
s (`min_stages = max_stages = s`): per step s evaluations (one shared with the last
step) plus one power-iteration difference. Printed: microseconds per field
evaluation (median of `--repeats` warm runs) and the ratio to Tsit5's (6 per step).

    python benchmarks/chebyshev.py [--dims 10 20 50] [--stages 2 4 10 40]
"""

import argparse
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import lnn_flow as lf
from lnn_flow._solving._chebyshev import RKC2
from peers import problem


def _timed(run, repeats):
    jax.block_until_ready(run())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--stages", type=int, nargs="+", default=[2, 4, 10, 40])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}; {args.steps} constant steps per run, "
          f"median of {args.repeats}")
    print(f"{'d':>4} {'solver':>10} {'evals/step':>10} {'us/eval':>9} {'x Tsit5':>8}")
    for d in args.dims:
        loss, ws0 = problem(d, 1)
        ws = lf.factor_flow(loss, tuple(w[0] for w in ws0), 60.0).factors_final
        y0 = jnp.concatenate([w.ravel() for w in ws])
        shapes = [w.shape for w in ws]

        def field(t, y, args):
            parts, start = [], 0
            for shape in shapes:
                size = int(np.prod(shape))
                parts.append(y[start:start + size].reshape(shape))
                start += size
            return jnp.concatenate([g.ravel()
                                    for g in lf.factor_vector_field(loss, tuple(parts))])

        @jax.jit
        def run(y0, solver):
            return diffrax.diffeqsolve(
                diffrax.ODETerm(field), solver, 0.0, 1e-6 * args.steps, 1e-6, y0,
                stepsize_controller=diffrax.ConstantStepSize(),
                saveat=diffrax.SaveAt(t1=True), max_steps=args.steps + 1).ys

        tsit5 = _timed(lambda: run(y0, diffrax.Tsit5()), args.repeats) / (6 * args.steps)
        print(f"{d:>4} {'Tsit5':>10} {6:>10} {tsit5 * 1e6:>9.2f} {1.0:>8.2f}", flush=True)
        for s in args.stages:
            solver = RKC2(min_stages=s, max_stages=s)
            per = _timed(lambda: run(y0, solver), args.repeats) / ((s + 1) * args.steps)
            print(f"{d:>4} {f'RKC2 s={s}':>10} {s + 1:>10} {per * 1e6:>9.2f} "
                  f"{per / tsit5:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
