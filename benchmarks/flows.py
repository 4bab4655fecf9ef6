"""Wall time and vector-field evaluations of both flows, after compilation.

Matrix sensing (eq. 9), d x d ground truth of rank 2, m = 8 d Gaussian measurements,
depth 3, balanced init of norm `--scale` (1e-3), Tsit5 with rtol 1e-8, atol 1e-10 (the
end-to-end flow: its own default atol), float64, solved to `--t1` (60). Compile time
(first call, minus one run) is reported separately; run times are the median of
`--repeats` calls. Ratios are end-to-end flow over factor flow, in this process. The
end-to-end flow runs with both decompositions of its field (SVD, and eigh of the Gram
matrix), and the "rel err" column is the trajectory's error at rtol 1e-10 (61 saves,
relative to max |W|) against the factor flow at Dopri8 rtol 1e-13. At a small init the
Gram form loses the directions with sigma < ~1e-7 sigma_max (`_spectral.reduced_svd`):
`--scale 1e-7 --t1 600` shows it. `--e2e-atol 1e-10` runs the end-to-end flow with that
fixed atol instead of its scaled default `min(1e-10, 1e-2 rtol max|W0|)`.
Usage: python benchmarks/flows.py [--dims 10 20 50 100] [--repeats 5] [--scale 1e-3]
       [--t1 60] [--e2e-atol A]
"""

import argparse
import statistics
import time

import diffrax
import jax
import jax.numpy as jnp

import lnn_flow as lf


def timed(fn, repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - start)
    run = statistics.median(runs)
    return out, first - run, run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--t1", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1e-3, help="init norm (1e-3)")
    parser.add_argument("--e2e-atol", type=float, default=None,
                        help="atol of the end-to-end flow (default: the flow's own)")
    args = parser.parse_args()
    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}, "
          f"depth {args.depth}, init scale {args.scale:g}, t1 {args.t1:g}, "
          f"end-to-end atol {args.e2e_atol or 'default'}")
    print(
        f"{'d':>4} {'flow':>10} {'compile s':>9} {'run ms':>8} {'steps':>6} "
        f"{'vf evals':>8} {'us/eval':>8} {'field us':>8} {'final loss':>10} {'rel err':>8}"
    )
    for d in args.dims:
        key_p, key_i = jax.random.split(jax.random.PRNGKey(d))
        loss, _ = lf.problems.random_matrix_sensing(key_p, (d, d), 2, 8 * d)
        ws0 = lf.init.balanced(key_i, (d,) * (args.depth + 1), args.scale)
        W0 = lf.end_to_end(ws0)
        ts = jnp.linspace(0.0, args.t1, 61)
        reference = lf.factor_flow(
            loss, ws0, args.t1, ts, solver=diffrax.Dopri8(), rtol=1e-13, atol=1e-16,
            max_steps=100_000,
        ).end_to_end
        scale = jnp.linalg.norm(reference, axis=(1, 2)).max()

        def rel_err(flow):
            sol = flow(ts, 1e-10)
            error = jnp.linalg.norm(sol.end_to_end - reference, axis=(1, 2)).max()
            failed = "" if bool(sol.success) else f"  rel-err solve FAILED: {sol.message}"
            return float(error / scale), failed

        cases = {
            "factor": (
                lambda ts=None, rtol=1e-8: lf.factor_flow(
                    loss, ws0, args.t1, ts, rtol=rtol, atol=1e-2 * rtol
                ),
                jax.jit(lambda ws: lf.factor_vector_field(loss, ws)),
                ws0,
            ),
        }
        for decomposition in ("svd", "gram"):
            cases[f"e2e {decomposition}"] = (
                lambda ts=None, rtol=1e-8, dec=decomposition: lf.end_to_end_flow(
                    loss, W0, args.depth, args.t1, ts, rtol=rtol, decomposition=dec,
                    **({} if args.e2e_atol is None else {"atol": args.e2e_atol}),
                ),
                jax.jit(
                    lambda W, dec=decomposition: lf.end_to_end_vector_field(
                        loss, W, args.depth, decomposition=dec
                    )
                ),
                W0,
            )
        run_ms = {}
        field_us = {}
        for name, (solve, field, state) in cases.items():
            sol, compile_s, run = timed(solve, args.repeats)
            _, _, field_run = timed(lambda: field(state), 20 * args.repeats)
            run_ms[name] = run * 1e3
            field_us[name] = field_run * 1e6
            evals = int(sol.stats.num_vector_field_evals)
            error, error_failed = rel_err(solve)
            print(
                f"{d:>4} {name:>10} {compile_s:>9.2f} {run * 1e3:>8.1f} "
                f"{int(sol.stats.num_steps):>6} {evals:>8} {run / evals * 1e6:>8.1f} "
                f"{field_run * 1e6:>8.1f} {float(sol.loss_final):>10.2e} "
                f"{error:>8.1e}"
                + ("" if bool(sol.success) else f"  FAILED: {sol.message}")
                + error_failed
            )
        for name in ("e2e svd", "e2e gram"):
            print(
                f"{d:>4} {'ratio':>10} {'':>9} {run_ms[name] / run_ms['factor']:>8.2f}"
                f" {'':>6} {'':>8} {'':>8} {field_us[name] / field_us['factor']:>8.2f}"
                f"   ({name} / factor)"
            )


if __name__ == "__main__":
    main()
