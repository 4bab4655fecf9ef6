"""Where one small solve's time goes: lnn_flow next to jax odeint and a bare diffrax
solve of the same flat ODE, on `peers.py`'s problem at one seed.

Rows (each a warm call; wall = median over `--repeats` round-robin rounds, so load from
other processes falls on every row alike; ratio = odeint's wall / the row's, > 1:
faster than odeint):
- `jax-odeint`: `jax.experimental.ode.odeint` (dopri5), the end-to-end matrix at the
  saves (as in `peers.py`).
- `diffrax floor`: `diffrax.diffeqsolve` with Tsit5 and lnn_flow's default PI controller
  (`lnn_flow._solving._controller`: `PIDController(pcoeff=0.4, icoeff=0.3)`) on the flat state,
  returning only the end-to-end matrix at the saves: what any lnn_flow solve costs at
  least with these settings.
- `floor + losses`: the floor that also returns the loss at every save (one
  vmapped loss over the saved end-to-end matrices): the least a result with a loss
  curve computes on top of the solve.
- `compiled solve`: lnn_flow's compiled program alone (`lnn_flow._solving._solve._solve`, the
  options checked beforehand): the floor plus the full `FlowSolution` (losses, factors
  and end-to-end matrices at every save, final values, flags, counts).
- `factor_flow`: the public call, argument checks included.
- `solve_batch B=1`: `lf.solve_batch("factor", ...)` on a batch of this one seed
  (`chunk_size="auto"`, which solves a single seed unbatched): the batch's host checks
  (every argument, each member, one compiled initial-loss evaluation of the batch)
  instead of `factor_flow`'s.
- `factor_flow I`: the same with `stepsize_controller=diffrax.PIDController(rtol,
  atol)`, diffrax's default I controller, in place of lnn_flow's PI default
  (`benchmarks/controller.py` compares the two over tolerances).
"error" is `peers.py`'s trajectory error against its Dopri8 reference; evals are
gradient evaluations (odeint's counted by a callback, as `peers.py` does).

Usage: python benchmarks/call_overhead.py [--dims 10 20] [--rtol 1e-5] [--repeats 41]
"""

import argparse
import statistics
import time

import diffrax
import jax
import numpy as np
import peers

import lnn_flow as lf
from lnn_flow._solving import _controller, _flat, _options, _solve
from lnn_flow._flows import _factor


def diffrax_floor(loss, ws, ts, rtol, atol, losses=False):
    system, y0 = _flat.flat(_factor._FactorSystem(loss, len(ws)), ws)

    @jax.jit
    def run(y0, system, ts):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(system.vector_field), diffrax.Tsit5(), ts[0], ts[-1], None,
            y0, saveat=diffrax.SaveAt(ts=ts), max_steps=peers.MAX_STEPS,
            stepsize_controller=diffrax.PIDController(
                rtol=rtol, atol=atol, pcoeff=_controller.PCOEFF, icoeff=_controller.ICOEFF
            ),
        )
        W = jax.vmap(system.end_to_end)(sol.ys)
        if losses:
            return W, sol.stats["num_steps"], jax.vmap(system.loss)(W)
        return W, sol.stats["num_steps"]

    return lambda: run(y0, system, ts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--repeats", type=int, default=41)
    args = parser.parse_args()
    rtol = args.rtol
    atol = rtol * peers.ATOL_FACTOR
    ts = jax.numpy.linspace(0.0, 60.0, 61)
    print(f"backend {jax.default_backend()}, peers.py's problem at B = 1, rtol {rtol:.0e}, "
          f"atol {atol:.0e}; median of {args.repeats} round-robin rounds\n")
    print(f"{'d':>4} {'row':>15} {'error':>8} {'evals':>6} {'ms':>8} {'ratio':>6}")
    for d in args.dims:
        loss, _, ws, ref, make, count = peers.one_seed(d, ts)
        _, odeint = make(rtol, atol)
        checked = _options.prepare(
            ws, t0=0.0, t1=60.0, ts=ts, solver=None, rtol=rtol, atol=atol,
            max_steps=peers.MAX_STEPS, dt0=None, stepsize_controller=None,
            loss_threshold=None,
        )
        system = _factor._FactorSystem(loss, len(ws))
        i_controller = diffrax.PIDController(rtol=rtol, atol=atol)
        flow = lambda **kw: lf.factor_flow(
            loss, ws, 60.0, ts, rtol=rtol, atol=atol, max_steps=peers.MAX_STEPS, **kw)
        rows = {
            "jax-odeint": odeint.timer,
            "diffrax floor": diffrax_floor(loss, ws, ts, rtol, atol),
            "floor + losses": diffrax_floor(loss, ws, ts, rtol, atol, losses=True),
            "compiled solve": lambda: _solve._solve(
                system, ws, **checked, dense=False, progress_meter=_solve._NO_METER)[0],
            "factor_flow": flow,
            "solve_batch B=1": lambda: lf.solve_batch(
                "factor", loss, tuple(w[None] for w in ws), 60.0, ts, rtol=rtol, atol=atol,
                max_steps=peers.MAX_STEPS),
            "factor_flow I": lambda: flow(stepsize_controller=i_controller),
        }
        outputs = {name: jax.block_until_ready(fn()) for name, fn in rows.items()}
        runs = {name: [] for name in rows}
        for _ in range(args.repeats):
            for name, fn in rows.items():
                start = time.perf_counter()
                jax.block_until_ready(fn())
                runs[name].append(time.perf_counter() - start)
        wall = {name: statistics.median(r) * 1e3 for name, r in runs.items()}
        for name, out in outputs.items():
            if name == "jax-odeint":
                W, evals = out, count(rtol, atol)
            elif name in ("diffrax floor", "floor + losses"):
                W, evals = out[0][None], int(_solve._vector_field_evals(diffrax.Tsit5(), out[1]))
            elif name == "solve_batch B=1":
                W, evals = out.end_to_end, int(out.stats.num_vector_field_evals[0])
            else:
                W, evals = out.end_to_end[None], int(out.stats.num_vector_field_evals)
            error = peers.trajectory_error(np.asarray(W), ref)
            print(f"{d:>4} {name:>15} {error:>8.1e} {evals:>6} {wall[name]:>8.3f} "
                  f"{wall['jax-odeint'] / wall[name]:>6.2f}", flush=True)
        print(f"{d:>4} {'host checks':>15} {'':>8} {'':>6} "
              f"{wall['factor_flow'] - wall['compiled solve']:>8.3f}   (factor_flow "
              "less compiled solve)")
        print(f"{d:>4} {'batch host':>15} {'':>8} {'':>6} "
              f"{wall['solve_batch B=1'] - wall['compiled solve']:>8.3f}   (solve_batch B=1 "
              "less compiled solve)")


if __name__ == "__main__":
    main()
