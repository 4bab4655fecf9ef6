"""Long horizons: the cost of a flow solved far past convergence, and cheaper paths.

Problems (float64, depth 3 by default, balanced init):

- `sensing`: matrix sensing (eq. 9) of a d x d rank-2 truth from m = 8 d Gaussian
  measurements, `lf.problems.random_matrix_sensing(PRNGKey(d), (d, d), 2, 8 d)`, init
  `lf.init.balanced(key, (d,) * (depth + 1), 1e-3)` (as in benchmarks/flows.py).
- `whitened`: `lf.losses.WhitenedSquare(target)`, target a d x d Gaussian / sqrt(d)
  with one row negated if needed so that det(target) has the sign of det(W0): the flow
  keeps the sign of det W (Lemma 2), so otherwise the loss stalls at
  sigma_min(target)^2 / 2 and never converges. Same init.
- `prop5`: Proposition 5's 2 x 2 loss (`lf.theory.proposition5_loss()`), det W0 > 0:
  the loss tends to 0 only as ||W|| diverges, slowly; the flow never settles.

The convergence time T is when the factor flow (Tsit5, rtol 1e-8, atol 1e-10) first
has loss <= rel * loss(W0) (`loss_threshold` stop, `t_final`); rel = 1e-8, except 1e-3
for prop5 (its loss decays like a power of t). For horizons h = m T (default m = 1, 20)
and each flow (factor by default; `--flows end2end` for the end-to-end flow, solved with
atol 1e-20 since W0 is tiny) it measures steps (rejected), vector-field evaluations,
Jacobians (implicit: one Jacobian + LU per step, rejected steps included), wall time of
one run after compilation (fastest of 3 when under 2 s; compile time apart) and the
error of the end-to-end matrix relative to the Tsit5 solution at the same horizon, for:

- `tsit5`: `diffrax.Tsit5()` (the default solver), PID rtol 1e-8, to h.
- `auto`: `solver="auto"` from t = 0 to h (`lnn_flow._solving._switching`: Tsit5, switching to
  an implicit Kvaerno5 once its steps are stability-bound), same tolerances; the note
  says where it switched.
- `kv5`: `diffrax.Kvaerno5()` from t = 0 to h (only for problems in `--kv5-from-zero`,
  default prop5: at d = 20 each step factorizes a dense 1200 x 1200 Jacobian, and the
  near-zero transient takes hundreds of steps, half of them rejected).
- `tsit5>kv5`: Tsit5 to T (the factor flow stops at the loss threshold; the end-to-end
  flow runs to the factor flow's T), then Kvaerno5 from T to h: explicit through the
  transient, implicit in the stiff tail. Cost = both solves. Kvaerno5 always runs with
  atol 1e-10, also on the end-to-end flow (see `run_problem`).
- `steady(r)`: Tsit5 with `diffrax.Event(diffrax.steady_state_event(rtol=r, atol=0))`,
  t1 = h: stops at the first step end where rms(f(y)) < r * rms(y); the column t_end/T
  is where it stopped (it also stops on saddle plateaus, where f is small too).

Then ratios: cost at m T over cost at T per method, and each method over tsit5 at m T.
`--reference` adds the error against a tight solution (Dopri8 rtol 1e-12 to T, then
Kvaerno5 rtol 1e-12, atol 1e-14 to h). Long runs are timed once: noisy on shared cores.
With `--reference` the default (factor flow, three problems) took 6.5 minutes on 2
cores, most of it Tsit5 to 20 T on sensing; `--flows end2end --problems sensing
whitened` took 20 minutes with other work on the cores (Tsit5 to 20 T on sensing alone
725 s).

Usage: python benchmarks/long_horizon.py [--d 20] [--depth 3] [--multipliers 1 20]
    [--problems sensing whitened prop5] [--flows factor end2end]
    [--steady-rtols 1e-6 1e-8] [--kv5-from-zero prop5] [--reference]
"""

import argparse
import time

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

import lnn_flow as lf

RTOL, ATOL = 1e-8, 1e-10
ATOL_END_TO_END = 1e-20
EXPLICIT_MAX_STEPS = 2**22


# --- problems ------------------------------------------------------------------------


def make_problem(name, d, depth):
    """`(loss, ws0, rel)`: the loss, balanced initial factors and the relative loss
    threshold that defines T."""
    key_p, key_i = jax.random.split(jax.random.PRNGKey(d))
    if name == "sensing":
        loss, _ = lf.problems.random_matrix_sensing(key_p, (d, d), 2, 8 * d)
        return loss, lf.init.balanced(key_i, (d,) * (depth + 1), 1e-3), 1e-8
    if name == "whitened":
        ws0 = lf.init.balanced(key_i, (d,) * (depth + 1), 1e-3)
        target = jax.random.normal(jax.random.PRNGKey(100 + d), (d, d)) / jnp.sqrt(d)
        same = jnp.linalg.slogdet(target)[0] == jnp.linalg.slogdet(lf.end_to_end(ws0))[0]
        target = jnp.where(same, target, target.at[0].multiply(-1.0))
        return lf.losses.WhitenedSquare(target), ws0, 1e-8
    if name == "prop5":
        W0 = jax.random.normal(key_p, (2, 2))
        W0 = W0.at[0].multiply(jnp.sign(jnp.linalg.det(W0)))  # det W0 > 0
        W0 = 0.5 * W0 / jnp.linalg.norm(W0)
        ws0 = lf.init.from_end_to_end(W0, (2,) * (depth + 1), key=key_i)
        return lf.theory.proposition5_loss(), ws0, 1e-3
    raise ValueError(name)


# --- solves --------------------------------------------------------------------------


def flow_solve(flow, loss, y0, depth, t0, t1, solver=None, max_steps=EXPLICIT_MAX_STEPS,
               loss_threshold=None, rtol=RTOL, atol=None):
    """`lf.factor_flow` or `lf.end_to_end_flow` from `y0` (factors or W) on [t0, t1]."""
    if flow == "factor":
        atol = ATOL if atol is None else atol
        return lf.factor_flow(loss, y0, t1, t0=t0, solver=solver, rtol=rtol, atol=atol,
                              max_steps=max_steps, loss_threshold=loss_threshold)
    atol = ATOL_END_TO_END if atol is None else atol
    return lf.end_to_end_flow(loss, y0, depth, t1, t0=t0, solver=solver, rtol=rtol,
                              atol=atol, max_steps=max_steps,
                              loss_threshold=loss_threshold)


@eqx.filter_jit
def steady_state_solve(loss, y0, t1, ss_rtol, ss_atol, depth, max_steps):
    """Tsit5 from t = 0 to `t1`, stopped by diffrax's steady-state event; `depth=None`
    solves the factor flow (`y0` factors), else the end-to-end flow (`y0 = W0`)."""
    if depth is None:
        field = lambda t, ws, args: lf.factor_vector_field(loss, ws)
        atol = ATOL
    else:
        field = lambda t, W, args: lf.end_to_end_vector_field(loss, W, depth)
        atol = ATOL_END_TO_END
    event = diffrax.Event(diffrax.steady_state_event(rtol=ss_rtol, atol=ss_atol))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        0.0,
        t1,
        None,
        y0,
        stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=atol),
        event=event,
        max_steps=max_steps,
        throw=False,
    )
    y = jax.tree_util.tree_map(lambda x: x[-1], sol.ys)
    W = lf.end_to_end(y) if depth is None else y
    return dict(
        t=sol.ts[-1],
        W=W,
        loss=loss(W),
        steps=sol.stats["num_steps"],
        rejected=sol.stats["num_rejected_steps"],
        ok=(sol.result == diffrax.RESULTS.successful)
        | (sol.result == diffrax.RESULTS.event_occurred),
    )


def timed(run, warm, quick=2.0, repeats=3):
    """Compile with `warm()` (same static configuration, tiny span), then time `run()`:
    the fastest of `repeats` runs when one takes under `quick` seconds, else one run."""
    start = time.perf_counter()
    jax.block_until_ready(warm())
    compile_s = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(run())
        best = min(best, time.perf_counter() - start)
        if best > quick:
            break
    return out, best, compile_s


def record(sol):
    """Row fields of a `FlowSolution`."""
    implicit = int(sol.stats.num_vector_field_evals) < 0
    steps = int(sol.stats.num_steps)
    # solver="auto": only its implicit steps linearize (accepted ones counted)
    jacs = steps if sol.switching is None else int(sol.switching.num_implicit_steps)
    return dict(
        t=float(sol.t_final),
        steps=steps,
        rejected=int(sol.stats.num_rejected_steps),
        evals=None if implicit else int(sol.stats.num_vector_field_evals),
        jacs=jacs if implicit else 0,
        W=np.asarray(sol.end_to_end_final),
        loss=float(sol.loss_final),
        ok=bool(sol.success),
        note="" if bool(sol.success) else sol.message,
    )


# --- one problem ---------------------------------------------------------------------


def run_problem(name, flow, args, out_rows):
    loss, ws0, rel = make_problem(name, args.d, args.depth)
    depth = len(ws0)
    W0 = lf.end_to_end(ws0)
    y0 = ws0 if flow == "factor" else W0
    l0 = float(loss(W0))
    threshold = rel * l0
    t_big = 1e9
    # Tsit5 to the loss threshold: defines T (always with the factor flow) and is the
    # explicit stage of tsit5>kv5.
    if flow == "factor":
        stage, stage_s, stage_c = timed(
            lambda: flow_solve(flow, loss, y0, depth, 0.0, t_big, loss_threshold=threshold),
            lambda: flow_solve(flow, loss, y0, depth, 0.0, 1e-3, loss_threshold=threshold),
        )
        T = float(stage.t_final)
    else:
        first = flow_solve("factor", loss, ws0, depth, 0.0, t_big, loss_threshold=threshold)
        if not bool(first.stopped):
            print(f"{name} {flow}: the factor flow's loss never fell to {rel:g} of its "
                  f"initial value ({first.message}); skipped")
            return
        T = float(first.t_final)
        # The end-to-end flow runs to the factor flow's T (no threshold event: its
        # Newton root find on the crossing time inherits atol 1e-20 and can fail).
        stage, stage_s, stage_c = timed(
            lambda: flow_solve(flow, loss, y0, depth, 0.0, T),
            lambda: flow_solve(flow, loss, y0, depth, 0.0, 1e-3),
        )
    if not (bool(stage.stopped) if flow == "factor" else bool(stage.success)):
        print(f"{name} {flow}: the solve to T failed ({stage.message}); skipped")
        return
    state_T, t_stage = (stage.factors_final if flow == "factor" else stage.end_to_end_final,
                        float(stage.t_final))
    print(f"{name} {flow}: T = {T:.6g} (loss <= {rel:g} * l0 = {threshold:.3g}; "
          f"state size {sum(x.size for x in jax.tree_util.tree_leaves(y0))})")
    print(HEADER + (f" {'err/ref':>9}" if args.reference else ""))
    kv5_cap = args.implicit_max_steps
    # Kvaerno5's Newton iteration inherits the controller's tolerances: with the
    # end-to-end atol 1e-20 its convergence test is out of reach near small entries, most
    # steps are rejected and the solve stalls (sensing: 200 steps, none accepted, from
    # T). All Kvaerno5 solves use atol 1e-10 (by T, W is O(1)).
    implicit_atol = ATOL
    tsit5_W, accepted = {}, {}
    for m in args.multipliers:
        h = m * T
        rows = {}
        # tsit5
        sol, wall, comp = timed(
            lambda: flow_solve(flow, loss, y0, depth, 0.0, h),
            lambda: flow_solve(flow, loss, y0, depth, 0.0, 1e-3),
        )
        rows["tsit5"] = dict(record(sol), wall=wall, compile=comp)
        tsit5_W[m] = rows["tsit5"]["W"]
        accepted[m] = rows["tsit5"]["steps"] - rows["tsit5"]["rejected"]
        # auto: one solve from 0, switching where the steps are stability-bound
        sol, wall, comp = timed(
            lambda: flow_solve(flow, loss, y0, depth, 0.0, h, "auto"),
            lambda: flow_solve(flow, loss, y0, depth, 0.0, 1e-3, "auto"),
        )
        rows["auto"] = dict(record(sol), wall=wall, compile=comp)
        switched = sol.switching.intervals(sol.t_final)
        rows["auto"]["note"] += " ".join(
            f"{method[0]}[{a / T:.3g}T,{b / T:.3g}T]" for method, a, b in switched)
        # kv5 from zero
        if name in args.kv5_from_zero:
            sol, wall, comp = timed(
                lambda: flow_solve(flow, loss, y0, depth, 0.0, h, diffrax.Kvaerno5(),
                                   max_steps=kv5_cap, atol=implicit_atol),
                lambda: flow_solve(flow, loss, y0, depth, 0.0, 1e-3, diffrax.Kvaerno5(),
                                   max_steps=kv5_cap, atol=implicit_atol),
            )
            rows["kv5"] = dict(record(sol), wall=wall, compile=comp)
        # tsit5 > kv5
        first = dict(record(stage), wall=stage_s, compile=stage_c)
        if h > t_stage * (1 + 1e-12):
            sol, wall, comp = timed(
                lambda: flow_solve(flow, loss, state_T, depth, t_stage, h,
                                   diffrax.Kvaerno5(), max_steps=kv5_cap, atol=implicit_atol),
                lambda: flow_solve(flow, loss, state_T, depth, t_stage, t_stage + 1e-3,
                                   diffrax.Kvaerno5(), max_steps=kv5_cap, atol=implicit_atol),
            )
            tail = record(sol)
            rows["tsit5>kv5"] = dict(
                tail,
                steps=first["steps"] + tail["steps"],
                rejected=first["rejected"] + tail["rejected"],
                evals=None,
                wall=stage_s + wall,
                compile=stage_c + comp,
                note=tail["note"] + f" ({first['steps']} explicit + {tail['steps']} implicit "
                f"steps, {stage_s:.2f} + {wall:.2f} s)",
            )
        else:
            rows["tsit5>kv5"] = first
        # steady-state stop
        for r in args.steady_rtols:
            out, wall, comp = timed(
                lambda: steady_state_solve(loss, y0, jnp.asarray(h), jnp.asarray(r), 0.0,
                                           None if flow == "factor" else depth,
                                           EXPLICIT_MAX_STEPS),
                lambda: steady_state_solve(loss, y0, jnp.asarray(1e-3), jnp.asarray(r), 0.0,
                                           None if flow == "factor" else depth,
                                           EXPLICIT_MAX_STEPS),
            )
            steps = int(out["steps"])
            rows[f"steady({r:g})"] = dict(
                t=float(out["t"]), steps=steps, rejected=int(out["rejected"]),
                evals=7 * steps + 1,  # Tsit5 (6 per step + 1) + 1 per step for the event
                jacs=0, W=np.asarray(out["W"]), loss=float(out["loss"]),
                ok=bool(out["ok"]), note="", wall=wall, compile=comp,
            )
        ref_W = None
        if args.reference:
            ref1 = flow_solve(flow, loss, y0, depth, 0.0, min(h, t_stage), diffrax.Dopri8(),
                              rtol=1e-12, atol=1e-14 if flow == "factor" else 1e-24)
            ref_W = np.asarray(ref1.end_to_end_final)
            if h > t_stage * (1 + 1e-12):
                y_mid = ref1.factors_final if flow == "factor" else ref1.end_to_end_final
                ref2 = flow_solve(flow, loss, y_mid, depth, t_stage, h, diffrax.Kvaerno5(),
                                  max_steps=kv5_cap, rtol=1e-12, atol=1e-14)
                ref_W = np.asarray(ref2.end_to_end_final)
                if not bool(ref2.success):
                    print(f"  reference at {m:g}T failed: {ref2.message}")
        for method, row in rows.items():
            row.update(problem=name, flow=flow, method=method, m=m, T=T, l0=l0,
                       err=_rel(row["W"], tsit5_W[m]),
                       ref_err=None if ref_W is None else _rel(row["W"], ref_W))
            out_rows.append(row)
            _print_row(row, args.reference)
    for m in args.multipliers:
        if m != 1:
            print(f"  drift of W from T to {m:g}T (tsit5): "
                  f"{_rel(tsit5_W[1], tsit5_W[m]):.2e} relative; mean accepted Tsit5 step "
                  f"on (T, {m:g}T]: {(m - 1) * T / (accepted[m] - accepted[1]):.3g}")
    if flow == "factor":
        # The factor flow's Jacobian is minus the Hessian of phi: symmetric.
        flat, unravel = jax.flatten_util.ravel_pytree(state_T)
        J = jax.jacfwd(lambda x: jax.flatten_util.ravel_pytree(
            lf.factor_vector_field(loss, unravel(x)))[0])(flat)
        lam = float(-jnp.min(jnp.linalg.eigvalsh((J + J.T) / 2)))
        print(f"  stiffness at T: largest eigenvalue of the Hessian of phi {lam:.3g}; "
              f"Tsit5 is stable for steps up to about 3.5 / {lam:.3g} = {3.5 / lam:.3g}")


def _rel(W, ref):
    return float(np.linalg.norm(W - ref) / np.linalg.norm(ref))


HEADER = (
    f"  {'method':>14} {'h':>5} {'t_end/T':>8} {'steps':>8} {'rej':>7} {'vf evals':>9} "
    f"{'jacs':>5} {'run s':>8} {'compile s':>9} {'loss/l0':>9} {'err/tsit5':>9}"
)


def _print_row(row, reference):
    evals = "-" if row["evals"] is None else str(row["evals"])
    line = (
        f"  {row['method']:>14} {row['m']:>4g}T {row['t'] / row['T']:>8.3f} "
        f"{row['steps']:>8} {row['rejected']:>7} {evals:>9} {row['jacs']:>5} "
        f"{row['wall']:>8.2f} {row['compile']:>9.2f} {row['loss'] / row['l0']:>9.2e} "
        f"{row['err']:>9.1e}"
    )
    if reference:
        line += f" {row['ref_err']:>9.1e}"
    if row["note"]:
        line += "  " + row["note"]
    print(line, flush=True)


def print_ratios(rows, multipliers):
    print("\nratios (steps, run time): cost at mT / cost at T, and method / tsit5 at mT")
    ms = [m for m in multipliers if m != 1]
    head = f"  {'problem':>8} {'flow':>7} {'method':>14}"
    for m in ms:
        head += f" {f'steps {m:g}T/T':>13} {f'time {m:g}T/T':>12}"
    for m in ms:
        head += f" {f'steps/tsit5 {m:g}T':>17} {f'time/tsit5 {m:g}T':>16}"
    print(head)
    index = {(r["problem"], r["flow"], r["method"], r["m"]): r for r in rows}
    seen = []
    for r in rows:
        key = (r["problem"], r["flow"], r["method"])
        if key in seen:
            continue
        seen.append(key)
        line = f"  {key[0]:>8} {key[1]:>7} {key[2]:>14}"
        for m in ms:
            a, b = index.get(key + (m,)), index.get(key + (1,))
            if a and b:
                line += f" {a['steps'] / b['steps']:>13.2f} {a['wall'] / b['wall']:>12.2f}"
            else:
                line += f" {'':>13} {'':>12}"
        for m in ms:
            a, b = index.get(key + (m,)), index.get(key[:2] + ("tsit5", m))
            if a and b:
                line += f" {a['steps'] / b['steps']:>17.3f} {a['wall'] / b['wall']:>16.3f}"
            else:
                line += f" {'':>17} {'':>16}"
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--multipliers", type=float, nargs="+", default=[1.0, 20.0],
                        help="horizons as multiples of the convergence time T")
    parser.add_argument("--problems", nargs="+", default=["sensing", "whitened", "prop5"],
                        choices=["sensing", "whitened", "prop5"])
    parser.add_argument("--flows", nargs="+", default=["factor"],
                        choices=["factor", "end2end"])
    parser.add_argument("--steady-rtols", type=float, nargs="*", default=[1e-6, 1e-8])
    parser.add_argument("--kv5-from-zero", nargs="*", default=["prop5"],
                        help="problems also solved by Kvaerno5 from t = 0")
    parser.add_argument("--implicit-max-steps", type=int, default=8192)
    parser.add_argument("--reference", action="store_true",
                        help="also compare against Dopri8 / Kvaerno5 at rtol 1e-12")
    args = parser.parse_args()
    args.multipliers = sorted(set(args.multipliers) | {1.0})
    print(f"backend: {jax.default_backend()}, d = {args.d}, depth = {args.depth}, "
          f"Tsit5/Kvaerno5 rtol {RTOL:g}, atol {ATOL:g} (end-to-end {ATOL_END_TO_END:g})")
    rows = []
    for flow in args.flows:
        for name in args.problems:
            print()
            run_problem(name, flow, args, rows)
    print_ratios(rows, args.multipliers)


if __name__ == "__main__":
    main()
