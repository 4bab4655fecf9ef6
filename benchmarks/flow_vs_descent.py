"""Flow versus descent: how far gradient descent is from the factor flow (eq. 2), and
what equal accuracy costs each way.

Problems (float64, depth 3, balanced init of end-to-end norm 1e-3, horizon t in [0, T]):
matrix sensing (eq. 9; d x d, rank-2 truth, m = 8 d Gaussian measurements) and the
whitened square loss (Example 1; target a random d x d rank-2 matrix). Reference: the
factor flow solved by Tsit5 at rtol 1e-12, atol 1e-14 with dense output.

(a) max_k ||W_k - W_ref(k lr)||_F / max_t ||W_ref(t)||_F over [0, T] for plain GD with
    each lr (the flow evaluated from its dense output at every iterate), and the fitted
    order.
(b) At relative end-to-end error 1e-4 and 1e-6 over the whole trajectory: gradient
    evaluations and wall time of GD with the largest lr that reaches it (lr found from
    the first-order fit of (a) and checked by a run; runs longer than --max-gd-steps are
    extrapolated from the fit and marked so), and of the adaptive ODE solve with the
    loosest tolerance that reaches it (error measured at 2001 uniform times). Wall times
    are after compilation: GD as the per-step time of a warm run times the step count,
    ODE solves as the median of --repeats warm calls. Ratios are measured in this process.

Usage: python benchmarks/flow_vs_descent.py [--d 20] [--t1 60] [--max-gd-steps 2000000]
"""

import argparse
import statistics
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import lnn_flow as lf

TARGETS = (1e-4, 1e-6)
LRS = (0.04, 0.02, 0.01, 0.005, 0.0025)


def warm_time(fn, repeats):
    jax.block_until_ready(fn())
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        runs.append(time.perf_counter() - start)
    return out, statistics.median(runs)


def relative_error(sol, ref_W):
    err = jnp.linalg.norm(sol.end_to_end - ref_W, axis=(1, 2)).max()
    return float(err / jnp.linalg.norm(ref_W, axis=(1, 2)).max())


def ode_row(loss, ws0, t1, grid, ref_W, solver, rtol, repeats):
    solve = lambda: lf.factor_flow(
        loss, ws0, t1, grid, solver=solver, rtol=rtol, atol=rtol * 1e-2, max_steps=20_000
    )
    sol, run = warm_time(solve, repeats)
    return relative_error(sol, ref_W), int(sol.stats.num_vector_field_evals), run


def study(name, loss, ws0, args):
    t1 = args.t1
    print(f"\n=== {name}: d = {args.d}, depth 3, init norm 1e-3, T = {t1} ===")
    ref = lf.factor_flow(
        loss, ws0, t1, rtol=1e-12, atol=1e-14, dense=True, max_steps=4096
    )
    assert bool(ref.success), ref.message
    grid = jnp.linspace(0.0, t1, 2001)
    ref_W = jax.vmap(ref.evaluate)(grid)
    print(f"reference: Tsit5 rtol 1e-12, {int(ref.stats.num_vector_field_evals)} evals, "
          f"final loss {float(ref.loss_final):.2e}")

    # (a) distance vs lr
    fit = lf.distance_vs_lr(loss, ref, ws0, LRS, t1, relative=True)
    print("(a) max relative GD-to-flow distance over [0, T]")
    print(f"{'lr':>10} {'steps':>8} {'max rel dist':>13} {'dist / lr':>10}")
    for lr, n, dist in zip(fit.lrs, fit.steps, fit.max_distance):
        print(f"{float(lr):>10.5f} {int(n):>8} {float(dist):>13.3e} "
              f"{float(dist / lr):>10.3f}")
    order, constant = float(fit.order), float(fit.constant)
    print(f"fitted order {order:.3f}  (rel dist ~ {constant:.3f} * lr^{order:.3f})")

    # GD per-step wall time, warm, no observer
    probe = 20_000
    _, run = warm_time(
        lambda: lf.gradient_descent(loss, ws0, t1 / probe, probe, save_every=probe), 1
    )
    per_step = run / probe

    print("(b) equal accuracy against the reference (relative end-to-end error)")
    print(f"{'target':>8} {'method':>22} {'lr / rtol':>10} {'rel error':>10} "
          f"{'grad evals':>11} {'wall s':>9} {'note':>14}")
    solvers = {"Tsit5": diffrax.Tsit5(), "Dopri8": diffrax.Dopri8()}
    rtols = 10.0 ** -np.arange(3, 12.5, 0.5)
    ode_rows = {
        s: [(r, *ode_row(loss, ws0, t1, grid, ref_W, solver, r, args.repeats)) for r in rtols]
        for s, solver in solvers.items()
    }
    default = ode_row(loss, ws0, t1, grid, ref_W, diffrax.Tsit5(), 1e-8, args.repeats)
    for target in TARGETS:
        # GD: largest lr reaching the target, from the first-order fit, then checked.
        lr = (target / constant) ** (1 / order)
        steps = int(np.ceil(t1 / lr))
        note = "extrapolated"
        err = float("nan")
        for _ in range(4):
            if steps > args.max_gd_steps:
                break
            lr = t1 / steps
            err = float(lf.max_distance_to_flow(loss, ref, ws0, lr, steps, relative=True))
            if err <= target:
                note = "measured"
                break
            steps = int(np.ceil(steps * (err / target) * 1.02))
        gd_evals, gd_wall = steps, steps * per_step
        print(f"{target:>8.0e} {'GD':>22} {t1 / steps:>10.2e} {err:>10.2e} "
              f"{gd_evals:>11d} {gd_wall:>9.3f} {note:>14}")
        best = None
        for s, rows in ode_rows.items():
            ok = [row for row in rows if row[1] <= target]
            if not ok:
                print(f"{target:>8.0e} {s + ' (none reached)':>22}")
                continue
            r, err_o, evals, wall = min(ok, key=lambda row: row[2])
            print(f"{target:>8.0e} {s + ' adaptive':>22} {r:>10.1e} {err_o:>10.2e} "
                  f"{evals:>11d} {wall:>9.4f}")
            if best is None or evals < best[1]:
                best = (s, evals, wall)
        if best is not None:
            print(f"{target:>8.0e} {'ratio GD / ' + best[0]:>22} {'':>10} {'':>10} "
                  f"{gd_evals / best[1]:>11.3g} {gd_wall / best[2]:>9.3g}")
    err_d, evals_d, wall_d = default
    print(f"default solve (Tsit5, rtol 1e-8, atol 1e-10): rel error {err_d:.2e}, "
          f"{evals_d} evals, {wall_d:.4f} s")
    print("ODE sweep (solver, rtol, rel error, evals):")
    for s, rows in ode_rows.items():
        print("  " + s + ": " + ", ".join(f"{r:.0e}:{e:.1e}/{n}" for r, e, n, _ in rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--t1", type=float, default=60.0)
    parser.add_argument("--max-gd-steps", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")
    d = args.d
    key_p, key_i, key_t = jax.random.split(jax.random.PRNGKey(d), 3)
    ws0 = lf.init.balanced(key_i, (d,) * 4, 1e-3)
    sensing, _ = lf.problems.random_matrix_sensing(key_p, (d, d), 2, 8 * d)
    study("matrix sensing", sensing, ws0, args)
    target = lf.problems.low_rank_matrix(key_t, (d, d), 2)
    study("whitened square", lf.losses.WhitenedSquare(target), ws0, args)


if __name__ == "__main__":
    main()
