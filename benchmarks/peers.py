"""Peers: the factor flow solved by torch GD, torchdiffeq, jax.experimental.ode and
lnn_flow, each tuned to the same trajectory accuracy, side by side.

Problem (as in benchmarks/flows.py): matrix sensing (eq. 9) of a d x d rank-2 truth from
m = 8 d Gaussian measurements, depth 3 (widths d), balanced init of end-to-end norm 1e-3,
float64; B initializations (seeds) per run, solved together. The gradient flow on the
factors (eq. 2), dW_j/dt = -d l(W_3 W_2 W_1) / dW_j, over [0, t1], saved at `ts`.

Reference: lnn_flow with Dopri8 at rtol 1e-13, atol 1e-15 (one compiled `solve_batch`
per (d, B)). Error of a peer: max over saves k of ||W(t_k) - W_ref(t_k)||_F divided by
max_k ||W_ref(t_k)||_F, on the end-to-end matrix W = W_3 W_2 W_1, maxed over seeds.
Every peer is tuned to the same target (`--accuracy`, default 1e-4):

- torch-gd: plain gradient descent, the way the papers do it: factors as torch float64
  tensors (B, d, d), the loss in torch, gradients by `torch.autograd.grad`, the update
  `W -= lr * grad` under `torch.no_grad()` in a Python loop (the seeds' losses are
  summed, so each seed gets its own gradient). lr = (ts[1] - ts[0]) / N with integer N,
  so that iterate k N is the save at t_k. GD's error is first order in lr: the error
  err0 of a coarse run with N0 steps per save interval predicts
  N = ceil(N0 err0 / (0.8 accuracy)); the run at N is checked and N raised 1.5x until
  it meets the target (at most `--gd-tries` runs). A run predicted to take longer than
  `--gd-budget` seconds is not run: `--gd-probe-steps` warm steps are timed and the
  full run's wall time extrapolated; such rows are marked "extrapolated" and their
  error is the first-order prediction (prefixed "~").
- torchdiffeq: `odeint(func, ws0, ts, method="dopri5")`, state the tuple of factors
  (B, d, d), gradients by autograd inside `func`. The error norm runs over the whole
  batch, so all seeds share one step size (what a torch user gets).
- jax-odeint: `jax.experimental.ode.odeint` (dopri5) on `lf.factor_vector_field`,
  jitted, seeds by `jax.vmap` (B = 1: no vmap).
- lnn_flow: `lf.factor_flow` (Tsit5; B = 1) or `lf.solve_batch("factor", ...)`.
- lnn_flow-auto: the same with `solver="auto"` (its field evaluations: the switch
  record's count of explicit and Chebyshev steps and probes; "-" if it took implicit
  steps, whose Newton work is not counted).

The ODE peers are tuned over rtol = 1e-3, 1e-4, ..., 1e-12 with atol = 1e-2 rtol (the
ratio of lnn_flow's defaults and of benchmarks/flow_vs_descent.py), from loose to
tight, taking the loosest that meets the target. The factors' entries have RMS 4e-3
(d = 100) to 2e-2 (d = 10) at t = 0 and 2e-2 .. 1.4e-1 at t1, so the absolute and the
relative part of the error test are of the same order: a mixed test, the same for
every solver, which differ only in how their step control answers it.

Measured, for the chosen setting: the error; gradient evaluations per seed (batched
solves evaluate every seed's gradient at each evaluation of the batch, until the
slowest seed is done: lnn_flow reports its max over seeds; jax-odeint's count comes
from a separate, untimed run whose vector field ticks a `jax.debug.callback`; GD: steps);
wall time (the solve and waiting for its result; reading results back for the error
check is not timed), the median of `--repeats` calls after a warm-up, the ODE peers timed
round-robin (one call of each per round, so load from other processes falls on all of
them alike; GD: the checked run, repeated while that fits `--gd-budget`); compile time, the first call of a program less
a warm call (jax-odeint compiles once per tolerance, rtol being static there; lnn_flow
traces it); and the ratio of the peer's wall time to lnn_flow's, in this process.
torch and torchdiffeq are optional: without them their rows are skipped with a note.

B defaults to 1 and 8, not 64: the default grid (dims 10 20 50 100) is estimated at
10-15 minutes on an idle 2-core CPU, most of it at d = 100 (the Dopri8 reference, and
every tried tolerance of three solvers, repeated, each evaluation reading the 64 MB
measurement tensor); B = 64 at d = 100 alone would take about as long again. Pass
`--batches 1 64` for the larger batch. GD at the default target needs about 1e6 steps
(N ~ 1.3e4 per unit time), so with `--gd-budget 60` its rows are extrapolated.
torch's intra-op threads (`--torch-threads`, default all cores) thrash when the cores
are shared with other work: time on an otherwise idle machine.

Usage: python benchmarks/peers.py [--dims 10 20 50 100] [--batches 1 8]
           [--accuracy 1e-4] [--t1 60] [--saves 61] [--repeats 3] [--gd-budget 60]
           [--peers torch-gd torchdiffeq jax-odeint lnn_flow] [--torch-threads 2]
"""

import argparse
import math
import os
import statistics
import time
from dataclasses import dataclass

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import lnn_flow as lf

DEPTH, RANK, SCALE = 3, 2, 1e-3
PEERS = ("torch-gd", "torchdiffeq", "jax-odeint", "lnn_flow", "lnn_flow-auto")
RTOLS = tuple(10.0**-e for e in range(3, 13))
ATOL_FACTOR = 1e-2
REF_OPTIONS = dict(solver=diffrax.Dopri8(), rtol=1e-13, atol=1e-15, max_steps=100_000)
MAX_STEPS = 100_000  # per solve (lnn_flow), per save interval (jax-odeint's mxstep)


@dataclass
class Row:
    peer: str
    setting: str
    error: float
    evals: int | None  # gradient evaluations per seed
    wall: float  # seconds, whole batch
    compile: float | None = None
    rtol: float | None = None  # the chosen tolerance of an ODE peer
    extrapolated: bool = False
    note: str = ""
    timer: object = None  # an ODE peer's chosen solve, timed with the others (below)


def median_time(fn, repeats):
    """Median wall time of `repeats` calls of `fn` (each blocks until its result)."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def trajectory_error(W, ref):
    """max_k ||W_k - ref_k||_F / max_k ||ref_k||_F on (B, k, d, d) saves, max over seeds;
    inf where a peer returned non-finite values."""
    W, ref = np.asarray(W), np.asarray(ref)
    diff = np.linalg.norm(W - ref, axis=(-2, -1)).max(axis=1)
    err = diff / np.linalg.norm(ref, axis=(-2, -1)).max(axis=1)
    return float(np.max(np.where(np.isfinite(err), err, np.inf)))


def problem(d, B):
    """The loss and B seeds of balanced factors, each factor (B, d, d)."""
    key_p, key_i = jax.random.split(jax.random.PRNGKey(d))
    loss, _ = lf.problems.random_matrix_sensing(key_p, (d, d), RANK, 8 * d)
    keys = jax.random.split(key_i, B)
    ws0 = jax.vmap(lambda k: lf.init.balanced(k, (d,) * (DEPTH + 1), SCALE))(keys)
    return loss, ws0


def one_seed(d, ts):
    """The problem at B = 1 for `call_overhead.py` and `controller.py`: the loss, the
    batch of one, its factors, the Dopri8 reference saves `(1, k, d, d)` and jax
    odeint's `(make, count)` ([`jax_odeint_peer`][])."""
    loss, batch = problem(d, 1)
    ref = lf.solve_batch("factor", loss, batch, float(ts[-1]), ts, **REF_OPTIONS)
    make, count = jax_odeint_peer(loss, batch, ts)
    return loss, batch, tuple(w[0] for w in batch), np.asarray(ref.end_to_end), make, count


# ---------------------------------------------------------------- ODE tolerance tuning


def tune_tolerance(name, make, accuracy, repeats, ref):
    """Scan RTOLS loose to tight with `make(rtol, atol) -> (program, fn)`, where
    `fn() -> (saves (B, k, d, d), evals or None)`; keep the loosest meeting `accuracy`
    and time it. Compile = first call of a program less a second call."""
    compile_s, error, chosen = {}, None, None
    for rtol in RTOLS:
        program, fn = make(rtol, rtol * ATOL_FACTOR)
        start = time.perf_counter()
        W, evals = fn()
        first = time.perf_counter() - start
        if program not in compile_s:
            start = time.perf_counter()
            fn()
            compile_s[program] = max(0.0, first - (time.perf_counter() - start))
        error = trajectory_error(W, ref)
        if error <= accuracy:
            chosen = rtol
            break
    if chosen is None:
        return Row(name, f"rtol {RTOLS[-1]:.0e}", error, evals, math.nan,
                   note=f"target missed at every rtol down to {RTOLS[-1]:.0e}")
    return Row(name, f"rtol {chosen:.0e}", error, evals, math.nan,
               compile=compile_s[program], rtol=chosen, timer=getattr(fn, "timer", fn))


def time_interleaved(rows, repeats):
    """Each ODE peer's chosen solve, timed round-robin (`repeats` rounds, one call of
    every peer per round; wall = the median): load from other processes then falls on
    every peer alike instead of on whichever was timed during it."""
    runs = {id(row): [] for row in rows if row.timer is not None}
    for _ in range(repeats):
        for row in rows:
            if row.timer is not None:
                start = time.perf_counter()
                row.timer()
                runs[id(row)].append(time.perf_counter() - start)
    for row in rows:
        if row.timer is not None:
            row.wall = statistics.median(runs[id(row)])


def lnn_flow_peer(loss, ws0, t1, ts, solver=None):
    B = ws0[0].shape[0]

    def make(rtol, atol):
        options = dict(rtol=rtol, atol=atol, max_steps=MAX_STEPS, solver=solver)
        if B == 1:
            one = tuple(w[0] for w in ws0)
            solve = lambda: lf.factor_flow(loss, one, t1, ts, **options)
        else:
            solve = lambda: lf.solve_batch("factor", loss, ws0, t1, ts, **options)

        def fn():
            sol = jax.block_until_ready(solve())
            W = np.asarray(sol.end_to_end).reshape(B, len(ts), *ws0[0].shape[1:])
            if not np.all(np.asarray(sol.success)):
                W = np.full_like(W, np.nan)
            evals = sol.stats.num_vector_field_evals
            if sol.switching is not None:  # "auto": its own count (no implicit steps)
                if np.any(np.asarray(sol.switching.num_implicit_steps) > 0):
                    return W, None
                evals = sol.switching.num_field_evals
            return W, int(np.max(np.asarray(evals)))

        fn.timer = lambda: jax.block_until_ready(solve())
        return "one program (tolerances traced)", fn

    return make


def jax_odeint_peer(loss, ws0, ts):
    from jax.experimental.ode import odeint

    B = ws0[0].shape[0]
    ticks = [0.0]

    def tick(lanes):  # one call per batched evaluation, or one per seed if unrolled
        ticks[0] += np.size(lanes) / B

    def program(rtol, atol, counting):
        def one(ws, loss, ts):
            def field(y, t):
                if counting:
                    jax.debug.callback(tick, y[0][..., 0, 0])
                return lf.factor_vector_field(loss, y)

            ys = odeint(field, ws, ts, rtol=rtol, atol=atol, mxstep=MAX_STEPS)
            return jax.vmap(lf.end_to_end)(ys)

        if B == 1:  # one seed: no vmap (a vmap over one member runs batched ops)
            single = jax.jit(one)
            return lambda ws, loss, ts: single(tuple(w[0] for w in ws), loss, ts)[None]
        return jax.jit(jax.vmap(one, in_axes=(0, None, None)))

    def make(rtol, atol):
        solve = program(rtol, atol, counting=False)

        def fn():
            return np.asarray(jax.block_until_ready(solve(ws0, loss, ts))), None

        fn.timer = lambda: jax.block_until_ready(solve(ws0, loss, ts))
        return rtol, fn

    def count(rtol, atol):
        ticks[0] = 0.0
        jax.block_until_ready(program(rtol, atol, counting=True)(ws0, loss, ts))
        return int(round(ticks[0]))

    return make, count


# ------------------------------------------------------------------------------- torch


class TorchProblem:
    """The same loss and seeds in torch: l(W) = 1/(2m) sum_i (<A_i, W> - b_i)^2 per seed
    (`lf.losses.MatrixSensing`), summed over seeds."""

    def __init__(self, loss, ws0):
        import torch

        self.torch = torch
        m = loss.A.shape[0]
        self.A = torch.from_numpy(np.array(loss.A).reshape(m, -1))  # (m, d*d)
        self.b = torch.from_numpy(np.array(loss.b))
        self.ws0 = tuple(torch.from_numpy(np.array(w)) for w in ws0)  # (B, d, d) each

    def end_to_end(self, ws):
        W = ws[0]
        for w in ws[1:]:
            W = w @ W  # batched matmul
        return W

    def loss(self, ws):
        W = self.end_to_end(ws)
        residual = W.reshape(W.shape[0], -1) @ self.A.T - self.b  # (B, m)
        return 0.5 * (residual**2).mean(dim=1).sum()

    def gradients(self, ws):
        """d loss / d W_j for factors that require grad."""
        return self.torch.autograd.grad(self.loss(ws), ws)


def check_torch_field(tp, loss, ws0):
    """The torch gradient is lnn_flow's vector field (negated), to rounding."""
    ws = [w.clone().requires_grad_(True) for w in tp.ws0]
    grads = [g.numpy() for g in tp.gradients(ws)]
    field = jax.vmap(lambda w: lf.factor_vector_field(loss, w))(ws0)
    scale = max(np.abs(np.asarray(f)).max() for f in field)
    gap = max(np.abs(g + np.asarray(f)).max() for g, f in zip(grads, field))
    if not gap <= 1e-10 * scale:
        raise AssertionError(f"torch field differs from lnn_flow's: {gap:.2e}/{scale:.2e}")


def torch_gd(tp, dt, N, intervals, steps=None):
    """GD with lr = dt / N, saving the end-to-end matrix every N steps: (B, k, d, d)
    saves after `intervals` save intervals; or, with `steps`, just that many steps."""
    torch = tp.torch
    lr = dt / N
    ws = [w.clone().requires_grad_(True) for w in tp.ws0]

    def step():
        grads = tp.gradients(ws)
        with torch.no_grad():
            for w, g in zip(ws, grads):
                w -= lr * g

    if steps is not None:
        for _ in range(steps):
            step()
        return None
    with torch.no_grad():
        saves = [tp.end_to_end(ws).clone()]
    for _ in range(intervals):
        for _ in range(N):
            step()
        with torch.no_grad():
            saves.append(tp.end_to_end(ws).clone())
    return torch.stack(saves, dim=1).numpy()


def torch_gd_peer(tp, ts, ref, accuracy, args):
    dt, intervals = float(ts[1] - ts[0]), len(ts) - 1

    def run(N):
        start = time.perf_counter()
        W = torch_gd(tp, dt, N, intervals)
        return trajectory_error(W, ref), time.perf_counter() - start

    # Coarse run; refine N0 until the error is small enough for first-order behaviour.
    N0 = args.gd_coarse
    err0, wall0 = run(N0)
    while not err0 < 0.1 and N0 < 64 * args.gd_coarse:
        N0 *= 2
        err0, wall0 = run(N0)
    per_step = wall0 / (N0 * intervals)
    N = max(N0, math.ceil(N0 * err0 / (0.8 * accuracy)))
    last_N, last_err = N0, err0
    for _ in range(args.gd_tries):
        if per_step * N * intervals > args.gd_budget:
            probe = min(args.gd_probe_steps, N * intervals)
            torch_gd(tp, dt, N, intervals, steps=10)  # warm
            start = time.perf_counter()
            torch_gd(tp, dt, N, intervals, steps=probe)
            wall = (time.perf_counter() - start) / probe * N * intervals
            predicted = last_err * last_N / N
            return Row("torch-gd", f"lr {dt / N:.2e}", predicted, N * intervals, wall,
                       extrapolated=True,
                       note=f"extrapolated from {probe} steps (N = {N}/interval)")
        err, wall = run(N)
        if err <= accuracy:
            runs = [wall]
            while len(runs) < args.repeats and wall * (len(runs) + 1) <= args.gd_budget:
                runs.append(run(N)[1])
            return Row("torch-gd", f"lr {dt / N:.2e}", err, N * intervals,
                       statistics.median(runs), note=f"N = {N}/interval")
        last_N, last_err = N, err
        per_step = wall / (N * intervals)
        N = math.ceil(1.5 * N)
    return Row("torch-gd", f"lr {dt / last_N:.2e}", last_err, last_N * intervals, wall,
               note=f"target missed after {args.gd_tries} tries")


def torchdiffeq_peer(tp, ts):
    import torch
    from torchdiffeq import odeint

    t = torch.from_numpy(np.array(ts))
    calls = [0]

    def func(_t, ws):
        calls[0] += 1
        with torch.enable_grad():
            ws = [w.detach().requires_grad_(True) for w in ws]
            grads = tp.gradients(ws)
        return tuple(-g for g in grads)

    def make(rtol, atol):
        def fn():
            calls[0] = 0
            with torch.no_grad():
                ys = odeint(func, tp.ws0, t, method="dopri5", rtol=rtol, atol=atol)
                W = tp.end_to_end(ys)  # (k, B, d, d)
            return W.transpose(0, 1).numpy(), calls[0]

        return "torch (no compile)", fn

    return make


# -------------------------------------------------------------------------------- main


def print_row(row, d, B, base):
    ratio = f"{row.wall / base:.2f}" if base and math.isfinite(row.wall) else "-"
    error = ("~" if row.extrapolated else "") + f"{row.error:.1e}"
    evals = "-" if row.evals is None else str(row.evals)
    compile_s = "-" if row.compile is None else f"{row.compile:.2f}"
    flag = "extrapolated" if row.extrapolated else ""
    print(f"{row.peer:>12} {d:>4} {B:>4} {row.setting:>13} {error:>9} {evals:>10} "
          f"{compile_s:>9} {row.wall:>9.3f} {row.wall / B * 1e3:>10.2f} {ratio:>6} "
          f"{flag:>12}  {row.note}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--accuracy", type=float, default=1e-4)
    parser.add_argument("--t1", type=float, default=60.0)
    parser.add_argument("--saves", type=int, default=61,
                        help="number of save times, ts = linspace(0, t1, saves)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gd-budget", type=float, default=60.0,
                        help="longest GD run (s) actually run; longer ones extrapolated")
    parser.add_argument("--gd-coarse", type=int, default=16,
                        help="GD steps per save interval of the coarse run")
    parser.add_argument("--gd-tries", type=int, default=4)
    parser.add_argument("--gd-probe-steps", type=int, default=2000)
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count(),
                        help="torch.set_num_threads (default: all cores)")
    args = parser.parse_args()
    total_start = time.perf_counter()

    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}, "
          f"jax {jax.__version__}, cpus: {os.cpu_count()}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    peers = [p for p in ("lnn_flow", "lnn_flow-auto", "jax-odeint", "torchdiffeq",
                         "torch-gd")
             if p in args.peers]
    torch_ok = False
    if {"torch-gd", "torchdiffeq"} & set(peers):
        try:
            import torch

            torch.set_num_threads(args.torch_threads)
            torch_ok = True
            print(f"torch {torch.__version__}: {torch.get_num_threads()} threads, "
                  f"{torch.get_num_interop_threads()} interop threads")
        except ImportError as err:
            print(f"note: torch not importable ({err}): skipping torch-gd, torchdiffeq")
            peers = [p for p in peers if p not in ("torch-gd", "torchdiffeq")]
    if "torchdiffeq" in peers:
        try:
            import torchdiffeq

            print(f"torchdiffeq {torchdiffeq.__version__}")
        except ImportError as err:
            print(f"note: torchdiffeq not importable ({err}): skipping torchdiffeq")
            peers.remove("torchdiffeq")
    ts = jnp.linspace(0.0, args.t1, args.saves)
    print(f"matrix sensing d x d, rank {RANK}, m = 8 d, depth {DEPTH}, balanced init "
          f"{SCALE}, float64, t1 = {args.t1}, {args.saves} saves; target error "
          f"{args.accuracy:.0e}; ODE tolerances atol = {ATOL_FACTOR:.0e} rtol; "
          f"wall = median of {args.repeats}; ratio = wall / lnn_flow wall\n")
    print(f"{'peer':>12} {'d':>4} {'B':>4} {'setting':>13} {'error':>9} "
          f"{'grad evals':>10} {'compile s':>9} {'wall s':>9} {'ms/seed':>10} "
          f"{'ratio':>6} {'':>12}")

    for d in args.dims:
        for B in args.batches:
            loss, ws0 = problem(d, B)
            start = time.perf_counter()
            ref = jax.block_until_ready(
                lf.solve_batch("factor", loss, ws0, args.t1, ts, **REF_OPTIONS))
            ref_first = time.perf_counter() - start  # one call, compile included
            if not bool(np.all(np.asarray(ref.success))):
                print(f"warning: reference failed for d = {d}, B = {B}: {ref.message}")
            ref_W = np.asarray(ref.end_to_end)
            ref_evals = int(np.max(np.asarray(ref.stats.num_vector_field_evals)))
            print(f"{'reference':>12} {d:>4} {B:>4} {'Dopri8 1e-13':>13} {'0':>9} "
                  f"{ref_evals:>10} {'-':>9} {ref_first:>9.3f} "
                  f"{ref_first / B * 1e3:>10.2f} {'-':>6} {'':>12}  "
                  "one call, compile included", flush=True)
            tp = None
            if torch_ok:
                tp = TorchProblem(loss, ws0)
                check_torch_field(tp, loss, ws0)
            rows = []
            for peer in peers:
                if peer == "lnn_flow":
                    row = tune_tolerance(peer, lnn_flow_peer(loss, ws0, args.t1, ts),
                                         args.accuracy, args.repeats, ref_W)
                elif peer == "lnn_flow-auto":
                    row = tune_tolerance(peer, lnn_flow_peer(loss, ws0, args.t1, ts,
                                                             "auto"),
                                         args.accuracy, args.repeats, ref_W)
                elif peer == "jax-odeint":
                    make, count = jax_odeint_peer(loss, ws0, ts)
                    row = tune_tolerance(peer, make, args.accuracy, args.repeats, ref_W)
                    if row.rtol is not None:
                        row.evals = count(row.rtol, row.rtol * ATOL_FACTOR)
                elif peer == "torchdiffeq":
                    row = tune_tolerance(peer, torchdiffeq_peer(tp, ts), args.accuracy,
                                         args.repeats, ref_W)
                else:
                    row = torch_gd_peer(tp, np.asarray(ts), ref_W, args.accuracy, args)
                rows.append(row)
            time_interleaved(rows, args.repeats)
            base = next((r.wall for r in rows if r.peer == "lnn_flow"
                         and math.isfinite(r.wall)), None)
            for row in rows:
                print_row(row, d, B, base)
    print(f"\ntotal {time.perf_counter() - total_start:.0f} s")


if __name__ == "__main__":
    main()
