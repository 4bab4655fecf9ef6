"""Stiff and slow tails: `solver="auto"` against Tsit5 (and Kvaerno5 with diffrax's
default root finder) on the cases of Section 4 whose numbers live at the end of the flow.

Cases (each printed as a table: steps, wall time of a warm run, and what was reached):

- `prop5`: Proposition 5 (2x2, W0 = 0.5 I, balanced factors, depth 3 and 4), rtol 1e-10,
  atol 1e-12, stop at loss 1e-8: success, det W (Lemma 2: keeps its sign), ||W|| against
  the proposition's lower bound; and `solver="auto"`'s steps per decade of `t` (solves
  to t = 1, 10, ..., 1e9: the implicit steps grow in proportion to `t`).
- `completion`: matrix completion of a d x d rank-r truth from m entries, depth 3,
  balanced init of norm 1e-3, stop at a loss reduction of 1e-10 (default 30x30, r 3,
  m 300; `--full`: 100x100, r 5, m 2000, the problem of Figure 2): error to the truth
  for both solvers and the distance between their end points, relative to its norm.
- `horizon`: matrix sensing 10x10 rank 2 (80 measurements), depth 3, init 1e-3: `T` is
  the time the loss falls by 1e-8; steps to `T` and to `20 T` with each solver.
- `batch`: `solve_batch` of 8 seeds with `solver="auto"` (6x6 completion, depth 3,
  loss reduced 1e-9), vmapped (`chunk_size=None`) and one after another (`1`, what
  `chunk_size="auto"` picks for it on CPU).
- `root_finders`: the implicit steps' stage equations solved by Newton with a dense LU
  (optimistix's residual stop, and Hairer & Wanner's contraction stop), by a chord
  method (one Jacobian per root find), by diffrax's VeryChord (one per step), and by
  Newton with matrix-free GMRES, on `horizon` to 20 T (300 states) and on
  Proposition 5 at depth 3 (8 states; atol 1e-12 and 1e-14), each with the residual
  floor of `solver="auto"` (`Switching._noise_floored`) and, last, the residual stop
  without it: the measurements behind `lnn_flow._solving._switching.implicit_solver`.

Wall times are warm (the compiled solve reused; times and tolerances are traced) and
timed once: long runs on shared cores are noisy, so read the steps first.

    python benchmarks/stiff_tails.py [--cases prop5 completion horizon batch root_finders]
                                     [--full]
"""

import argparse
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx

import lnn_flow as lf
from flows import timed  # benchmarks/flows.py: (result, compile s, median run s)
from lnn_flow._solving._chebyshev import RKC2
from lnn_flow._solving._switching import Switching, auto_solver, implicit_solver

MAX_STEPS = 2**20


COMPILE = {}


def warm(run):
    """`(result, seconds)` of one warm call of `run` (flows.py's `timed`); the first
    call's extra time (compilation, mostly) is kept in `COMPILE["last"]` for `_row`.
    With `COMPILE["once"]` (`--full`), the first call only, compilation included."""
    if COMPILE.get("once"):
        start = time.perf_counter()
        out = jax.block_until_ready(run())
        COMPILE["last"] = float("nan")
        return out, time.perf_counter() - start
    out, COMPILE["last"], seconds = timed(run, 1)
    return out, seconds


def _row(name, sol, seconds, **extra):
    """One solve: `success` (reached t1 or its stop on a finite state), `stopped` (the
    loss threshold was reached; "-" without one), steps, warm wall time, where it
    ended, and for `solver="auto"` which method ran when."""
    steps = int(sol.stats.num_steps)
    where = ""
    evals = int(sol.stats.num_vector_field_evals)
    if sol.switching is not None:
        rec = sol.switching
        intervals = rec.intervals(sol.t_final)
        shown = intervals[:4] + intervals[4:][-2:]
        where = " ".join(f"{m[0]}[{a:.3g},{b:.3g}]" for m, a, b in shown)
        if len(intervals) > len(shown):
            where = where.replace("] ", "] ... ", 4).replace(" ... ", " ", 3)
        where = (f"  {int(rec.num_explicit_steps)} explicit + "
                 f"{int(rec.num_chebyshev_steps)} Chebyshev + "
                 f"{int(rec.num_implicit_steps)} implicit accepted, "
                 f"{int(rec.num_field_evals)} evals outside implicit steps, "
                 f"{int(rec.num_switches)} switches: {where}")
    elif evals >= 0:
        where = f"  {evals} evals"
    stop = extra.pop("stop", True)
    stopped = str(bool(sol.stopped)) if stop else "-"
    cols = " ".join(f"{k} {v}" for k, v in extra.items())
    print(f"  {name:<38} success {bool(sol.success)!s:<5} stopped {stopped:<5} "
          f"steps {steps:>8} wall {seconds:8.2f}s (first call +{COMPILE['last']:.1f}s) "
          f"loss {float(sol.loss_final):.3e} "
          f"t {float(sol.t_final):.3e} {cols}{where}", flush=True)


def prop5(args):
    print("Proposition 5, 2x2, W0 = 0.5 I, rtol 1e-10, atol 1e-12, stop at loss 1e-8")
    loss = lf.theory.proposition5_loss()
    for depth in (3, 4):
        ws0 = lf.init.from_end_to_end(0.5 * jnp.eye(2), (2,) * (depth + 1),
                                      key=jax.random.PRNGKey(0))
        print(f" depth {depth}")
        for name, solver in (("Tsit5", None), ("Kvaerno5 (VeryChord)", diffrax.Kvaerno5()),
                             ("auto", "auto")):
            sol, seconds = warm(lambda: lf.factor_flow(
                loss, ws0, 1e12, solver=solver, rtol=1e-10, atol=1e-12,
                loss_threshold=1e-8, max_steps=MAX_STEPS))
            W = sol.end_to_end_final
            norm, det = float(jnp.linalg.norm(W)), float(jnp.linalg.det(W))
            bound = float(lf.theory.proposition5_norm_bound(sol.loss_final[None])[0])
            holds = "holds" if norm >= bound else "FAILS"
            _row(name, sol, seconds, det=f"{det:.3e}",
                 bound=f"{holds}(|W| {norm:.4g} >= {bound:.4g})")
        steps = [int(lf.factor_flow(loss, ws0, 10.0**k, solver="auto", rtol=1e-10,
                                    atol=1e-12, max_steps=MAX_STEPS).stats.num_steps)
                 for k in range(0, 10)]
        per_decade = np.diff([0, *steps])
        print("  auto, steps per decade of t (t < 1, then [1e0, 1e1), ... [1e8, 1e9)): "
              + " ".join(str(int(n)) for n in per_decade))


def _methods(size, rtol, atol):
    """`(name, solver, rtol, atol)` of the solvers compared on the stiff tails: Tsit5,
    `solver="auto"` (a lean Tsit5 start, then Tsit5, RKC2 and Kvaerno5: `lnn_flow._solving._auto`)
    at `atol` and at `atol / 100` (in the tail the second-order steps' error is bound by
    atol: the factors' entries along the decaying spurious directions are small), the
    same as one switching solve at `atol / 100` (`lean_start=False`: how auto ran
    before), the two-way switch auto was before the Chebyshev steps (Tsit5 and Kvaerno5
    only, one switching solve: `Switching(symmetric=False, lean_start=False)`), and
    RKC2 alone at rtol / 100."""
    two_way = Switching(implicit_solver(size, rtol, atol), symmetric=False,
                        lean_start=False)
    single = eqx.tree_at(lambda s: s.lean_start, auto_solver(size, rtol, atol / 100), False)
    return (("Tsit5", None, rtol, atol), ("auto", "auto", rtol, atol),
            ("auto", "auto", rtol, atol / 100),
            ("auto, one switching solve", single, rtol, atol / 100),
            ("Tsit5<->Kvaerno5", two_way, rtol, atol), ("RKC2", RKC2(), rtol / 100, atol))


def completion(args):
    d, r, m = (100, 5, 2000) if args.full else (30, 3, 300)
    scale, reduction = args.init_scale, args.reduction
    print(f"Completion {d}x{d} rank {r}, {m} entries, depth 3, init {scale:g}; T = when "
          f"solver='auto' reduces the loss {reduction:g}; every solve runs to T; error "
          "of W at T against Tsit5 rtol 1e-12, atol 1e-14")
    loss, truth = lf.problems.random_matrix_completion(jax.random.PRNGKey(0), (d, d), r, m)
    ws0 = lf.init.balanced(jax.random.PRNGKey(1), (d,) * 4, scale)
    threshold = reduction * float(loss(lf.end_to_end(ws0)))
    first = lf.factor_flow(loss, ws0, 1e15, solver="auto", loss_threshold=threshold,
                           max_steps=MAX_STEPS)
    T = float(first.t_final)
    print(f"  T = {T:.6g} ({first.message})", flush=True)
    reference, ref_seconds = warm(lambda: lf.factor_flow(
        loss, ws0, T, rtol=1e-12, atol=1e-14, max_steps=MAX_STEPS))
    ref_W = reference.end_to_end_final
    _row("reference", reference, ref_seconds, stop=False)
    size = sum(w.size for w in ws0)
    for name, solver, rtol, atol in _methods(size, 1e-8, 1e-10):
        sol, seconds = warm(lambda: lf.factor_flow(
            loss, ws0, T, solver=solver, rtol=rtol, atol=atol, max_steps=MAX_STEPS))
        _row(f"{name} rtol {rtol:g} atol {atol:g}", sol, seconds, stop=False,
             err=f"{_relative(sol.end_to_end_final, ref_W):.2e}",
             error=f"{_relative(sol.end_to_end_final, truth):.6g}")


def _relative(W, ref):
    return float(jnp.linalg.norm(W - ref) / jnp.linalg.norm(ref))


def horizon(args):
    print("Long horizon: sensing 10x10 rank 2, 80 measurements, depth 3, init 1e-3, "
          "rtol 1e-8; T = time of a 1e-8 loss reduction")
    loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(10), (10, 10), 2, 80)
    ws0 = lf.init.balanced(jax.random.PRNGKey(11), (10,) * 4, 1e-3)
    threshold = 1e-8 * float(loss(lf.end_to_end(ws0)))
    first = lf.factor_flow(loss, ws0, 1e9, loss_threshold=threshold, max_steps=MAX_STEPS)
    T = float(first.t_final)
    print(f"  T = {T:.4g} (Tsit5, {int(first.stats.num_steps)} steps)")
    for name, solver in (("Tsit5", None), ("auto", "auto")):
        steps = {}
        for mult in (1, 20):
            sol, seconds = warm(lambda: lf.factor_flow(
                loss, ws0, mult * T, solver=solver, max_steps=MAX_STEPS))
            steps[mult] = int(sol.stats.num_steps)
            _row(f"{name} to {mult}T", sol, seconds, stop=False)
        print(f"  {name}: steps(20T) / steps(T) = {steps[20] / steps[1]:.2f}")


def batch(args):
    print("solve_batch, 8 seeds, solver='auto': 6x6 completion (24 entries), depth 3, "
          "init norm 0.3, loss reduced 1e-9, rtol 1e-8")
    loss, _ = lf.problems.random_matrix_completion(jax.random.PRNGKey(3), (6, 6), 2, 24)
    keys = jax.random.split(jax.random.PRNGKey(4), 8)
    inits = jax.vmap(lambda k: lf.init.balanced(k, (6, 6, 6, 6), 0.3))(keys)
    first = jax.tree_util.tree_map(lambda x: x[0], inits)
    threshold = 1e-9 * float(loss(lf.end_to_end(first)))
    seconds = {}
    for chunk in (None, 1):
        sol, seconds[chunk] = warm(lambda: lf.solve_batch(
            "factor", loss, inits, 1e6, solver="auto", rtol=1e-8, atol=1e-10,
            loss_threshold=threshold, max_steps=2**16, chunk_size=chunk))
        print(f"  chunk_size={chunk!s:<5} wall {seconds[chunk]:.3f}s  all finished "
              f"{bool((sol.success & sol.stopped).all())}  steps {sol.stats.num_steps}")
    print(f"  vmapped / one after another: {seconds[None] / seconds[1]:.2f}")


class _Unfloored(Switching):
    """`solver="auto"`'s switching with the Newton residual bound left at atol/10."""

    def _noise_floored(self, state, y):
        return self.implicit_solver


def _root_finders(rtol, atol):
    r, a = 0.1 * rtol, 0.1 * atol
    dense = lx.AutoLinearSolver(well_posed=None)
    gmres = lx.GMRES(rtol=1e-10, atol=1e-14, restart=40, stagnation_iters=40, max_steps=400)
    return {
        "Newton, dense LU": optx.Newton(rtol=r, atol=a, linear_solver=dense),
        "Newton, contraction stop": optx.Newton(rtol=r, atol=a, linear_solver=dense,
                                                cauchy_termination=False),
        "chord, dense LU": optx.Chord(rtol=r, atol=a, linear_solver=dense),
        "VeryChord, dense LU": diffrax.VeryChord(rtol=r, atol=a, linear_solver=dense),
        "Newton, GMRES": optx.Newton(rtol=r, atol=a, linear_solver=gmres),
    }


def root_finders(args):
    print("Implicit stage solves inside solver='auto' (Newton tolerances rtol/10, atol/10)")
    loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(10), (10, 10), 2, 80)
    ws0 = lf.init.balanced(jax.random.PRNGKey(11), (10,) * 4, 1e-3)
    threshold = 1e-8 * float(loss(lf.end_to_end(ws0)))
    T = float(lf.factor_flow(loss, ws0, 1e9, loss_threshold=threshold,
                             max_steps=MAX_STEPS).t_final)
    print(f" horizon problem (300 states) to 20 T = {20 * T:.4g}, rtol 1e-8")
    for name, finder in _root_finders(1e-8, 1e-10).items():
        solver = Switching(diffrax.Kvaerno5(root_finder=finder))
        sol, seconds = warm(lambda: lf.factor_flow(loss, ws0, 20 * T, solver=solver,
                                                   max_steps=2**16))
        _row(name, sol, seconds, stop=False)
    ws0 = lf.init.from_end_to_end(0.5 * jnp.eye(2), (2,) * 4, key=jax.random.PRNGKey(0))
    for atol in (1e-12, 1e-14):
        print(f" Proposition 5, depth 3 (8 states), rtol 1e-10, atol {atol:g}, stop at "
              "loss 1e-8")
        finders = _root_finders(1e-10, atol)
        unfloored = Switching(diffrax.Kvaerno5(root_finder=finders["Newton, dense LU"]))
        solvers = {name: Switching(diffrax.Kvaerno5(root_finder=f))
                   for name, f in finders.items()}
        solvers["Newton, no floor"] = _Unfloored(unfloored.implicit_solver)
        for name, solver in solvers.items():
            sol, seconds = warm(lambda: lf.factor_flow(
                lf.theory.proposition5_loss(), ws0, 1e12, solver=solver, rtol=1e-10,
                atol=atol, loss_threshold=1e-8, max_steps=2**17))
            det = float(jnp.linalg.det(sol.end_to_end_final))
            _row(name, sol, seconds, det=f"{det:.4e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cases = {"prop5": prop5, "completion": completion, "horizon": horizon,
             "batch": batch, "root_finders": root_finders}
    parser.add_argument("--cases", nargs="+", default=list(cases), choices=list(cases))
    parser.add_argument("--full", action="store_true",
                        help="completion at 100x100, rank 5, 2000 entries (minutes)")
    parser.add_argument("--init-scale", type=float, default=1e-3,
                        help="completion: Frobenius norm of the balanced init's W(0)")
    parser.add_argument("--reduction", type=float, default=1e-10,
                        help="completion: T is where the loss has fallen by this")
    args = parser.parse_args()
    COMPILE["once"] = args.full
    print(f"backend: {jax.default_backend()}, jax {jax.__version__}, "
          f"diffrax {diffrax.__version__}, numpy {np.__version__}")
    for case in args.cases:
        cases[case](args)


if __name__ == "__main__":
    main()
