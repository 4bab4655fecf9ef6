"""The tensor study: implicit regularization towards low tensor rank in the CP flow
(Section 5 of the notes; Razin, Maman & Cohen 2021); re-exported by
`lnn_flow.studies`.

Three parts on tensor completion of a planted tensor of low CP rank, each a table and
a figure of the report:

a. greedy low tensor rank: component norms `||W_r(t)||` over time from a small
   balanced init, with the time each component switches on;
b. init scale: reconstruction error and effective tensor rank against the init scale,
   over seeds, for each number of observed entries;
c. matrix view: the same observed entries, matricized (mode-1 unfolding) and completed
   by the factor flow (eq. 2) at depth `N` = the tensor's order, next to the CP flow.

Definitions (stated in the report too): a component *carries* the solution when its
final norm is at least `cutoff` times the largest; the *effective tensor rank* is the
number of components that do (an upper bound on the CP rank of the solution at that
tolerance); a carrying component *switches on* at the first time its norm reaches
`fraction` of its final norm (on the log-spaced save grid, log-log interpolated
between the two saves around the crossing). A solve is *finished* when it reached its
loss threshold (`success & stopped`); values of an unfinished solve are flagged
`Untrusted` or left out of the seed statistics, and counted.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm  # tqdm.auto warns in Jupyter without ipywidgets

from .._core import _checks
from . import _figures_tensor
from .. import init, losses, problems
from .._batching._batch import solve_batch
from .._maths._cp import effective_tensor_rank, product, saved_component_norms
from .._reports._report import Report, Untrusted
from ._study_rows import SOLVERS, effective_rank
from ._study_tensor_text import findings
from .._maths._tensor_init import balanced as cp_balanced
from .._maths._tensor_problems import low_rank_factors

_NOT_FINISHED = "not finished"


def tensor_study(
    *,
    orders: Sequence[int] = (3, 4),
    sizes: Sequence[int] = (10, 6),
    rank: int = 3,
    truth_norms: Sequence[float] | None = (1.5, 0.75),
    components: int = 6,
    num_measurements: Sequence[int] = (200, 300, 500),
    scale: float = 1e-6,
    scales: Sequence[float] = (1e-8, 1e-6, 1e-4, 1e-2),
    seeds: int = 5,
    fraction: float = 0.5,
    cutoff: float = 1e-2,
    loss_reduction: float = 1e-6,
    num_saves: int = 300,
    max_steps: int = 30_000,
    seed: int = 0,
    progress: bool = False,
    solver: str = "tsit5",
) -> Report:
    """Tensor completion of a rank-`rank` CP ground truth of shape `(sizes[i],) *
    orders[i]` by the CP flow ([`lnn_flow.tensor.flow`][]) from balanced inits of
    `components` components, each of norm `scale` (`lnn_flow.tensor.balanced`).

    The truth's component norms are evenly spaced from `truth_norms[0]` down to
    `truth_norms[1]` (`problems.low_rank_tensor`'s `component_norms`): comparable, so
    each is learned in bounded time (rates `~ ||W_r||^{2-2/N}`), yet distinct, so the
    switch-on order can be read. `None`: the Gaussian draw scaled to norm `sqrt(rank)`,
    whose smallest component can be tiny and switch on only after `max_steps`.

    Parts b and c use the first order and each count in `num_measurements` (observed
    entries, drawn without replacement), `seeds` inits per configuration (seed `i` of
    the batch is `jax.random.split(key, seeds)[i]`); part a shows init 0 at `scale`
    from the largest count, and for the other orders the same fraction of their
    entries. `scale` is added to `scales` if missing (part c uses it). Every solve
    stops at the loss threshold `loss_reduction * l(0)` (a cap of
    `1e6 * m` on time and `max_steps` on steps); `fraction` and `cutoff` define
    switching on and carrying (module docstring). `solver`: "tsit5" (vmapped over the
    seeds) or "auto" ([`lnn_flow._solving._auto`][]: Chebyshev or implicit steps in stiff
    tails; `solve_batch` runs its seeds one after another on CPU).
    """
    orders, sizes, ms, scales, truth_norms = _checked(
        orders, sizes, num_measurements, scale, scales, rank, components, seeds,
        truth_norms)
    norms = None if truth_norms is None else tuple(np.linspace(*truth_norms, rank))
    key_problem, key_init = jax.random.split(jax.random.PRNGKey(seed))
    keys = jax.random.split(key_init, seeds)
    setup = dict(components=components, loss_reduction=loss_reduction,
                 num_saves=num_saves, max_steps=max_steps,
                 solver=_checks.one_of("solver", solver, SOLVERS))
    shape = (sizes[0],) * orders[0]
    runs = [(m, s) for m in ms for s in scales]
    bar = tqdm(total=len(runs) + len(ms) + len(orders) - 1, desc="tensor",
               disable=not progress)
    problem = {m: _problem(key_problem, shape, rank, m, norms) for m in ms}
    solved, greedy, matrix_rows, partial = {}, [], [], ""
    try:
        for m, s in runs:
            solved[m, s] = _solve(problem[m][0], shape, keys, s, **setup)
            bar.update()
        greedy.append(_greedy(problem[ms[-1]], solved[ms[-1], scale], fraction, cutoff))
        for m in ms:
            matrix = _solve_unfolded(problem[m][0], shape, keys, scale, **setup)
            matrix_rows += _matrix_rows(problem[m][1], solved[m, scale], matrix, m)
            bar.update()
        for order, size in zip(orders[1:], sizes[1:]):
            other = (size,) * order
            m_other = round(ms[-1] * size**order / np.prod(shape))
            found = _problem(key_problem, other, rank, m_other, norms)
            sol = _solve(found[0], other, keys[:1], scale, **setup)
            greedy.append(_greedy(found, sol, fraction, cutoff))
            bar.update()
    except KeyboardInterrupt:
        if not solved:
            raise
        # Ctrl-C: what finished makes a partial report (`lnn-flow run` writes it and
        # exits 130).
        partial = (f"interrupted (Ctrl-C) with {len(solved)} of {len(runs)} init-scale "
                   f"configurations, {len(greedy)} of {len(orders)} component-norm "
                   f"solves and {len(matrix_rows) // 2} of {len(ms)} matrix-view "
                   "comparisons finished; rerun to compute the rest")
    finally:
        bar.close()
    scale_rows = [_seed_row(problem[m][1], solved[m, s], cutoff, observed=m, scale=s)
                  for m, s in runs if (m, s) in solved]
    parameters = dict(orders=list(orders), sizes=list(sizes), rank=rank,
                      truth_norms=truth_norms, components=components, num_measurements=list(ms), scale=scale,
                      scales=list(scales), seeds=seeds, fraction=fraction, cutoff=cutoff,
                      loss_reduction=loss_reduction, num_saves=num_saves,
                      max_steps=max_steps, seed=seed, solver=solver)
    return _report(greedy, scale_rows, matrix_rows, problem[ms[0]][1]["W"], parameters,
                   partial)


def _report(greedy, scale_rows, matrix_rows, truth, parameters, partial="") -> Report:
    """The Report of the three parts: tables, facts, figures and the prose; after an
    interrupt (`partial`), of the parts that finished."""
    tables = {
        "components": [r for g in greedy for r in g["rows"]],
        "recovery": [g["recovery"] for g in greedy],
        "init_scale": scale_rows,
        "matrix_view": matrix_rows,
    }
    facts = {f"truth_component_norms_order_{g['recovery']['order']}": g["truth_norms"]
             for g in greedy}
    truth = np.asarray(truth)
    facts["truth_unfolding_effective_rank"] = float(
        effective_rank(truth.reshape(truth.shape[0], -1)))
    figures = {
        "component_norms": lambda: _figures_tensor.components_figure(
            [g["curves"] for g in greedy], parameters["fraction"]),
        "init_scale": lambda: _figures_tensor.init_scale_figure(scale_rows,
                                                                parameters["rank"]),
        "matrix_view": lambda: _figures_tensor.matrix_view_figure(
            matrix_rows, facts["truth_unfolding_effective_rank"]),
    }
    shown = {"component_norms": greedy, "init_scale": scale_rows, "matrix_view": matrix_rows}
    return Report(
        name="tensor",
        title="Tensor factorization: implicit regularization towards low tensor rank",
        description=findings(tables, parameters),
        tables={name: rows for name, rows in tables.items() if rows},
        figures={name: draw() for name, draw in figures.items() if shown[name]},
        parameters=parameters,
        facts=facts,
        partial=partial,
    )


def _checked(orders, sizes, ms, scale, scales, rank, components, seeds, truth_norms):
    """The study's arguments, refused (before any solve) where they cannot work."""
    orders, sizes, ms = [int(o) for o in orders], [int(s) for s in sizes], list(ms)
    if not orders or len(orders) != len(sizes):
        raise ValueError(f"`orders` and `sizes` must pair up (one size per order); got "
                         f"orders {orders} and sizes {sizes}")
    if any(o < 2 for o in orders) or any(s < 1 for s in sizes):
        raise ValueError(f"`orders` must be >= 2 and `sizes` >= 1; got {orders}, {sizes}")
    if not ms or any(m < 1 or m > sizes[0] ** orders[0] for m in ms):
        raise ValueError(f"`num_measurements` must lie in [1, {sizes[0] ** orders[0]}] "
                         f"(entries of the order-{orders[0]} tensor); got {ms}")
    if min(rank, components, seeds) < 1 or not scales or min(scales) <= 0 or scale <= 0:
        raise ValueError("`rank`, `components`, `seeds` must be >= 1 and `scale`, "
                         "`scales` > 0")
    if truth_norms is not None:
        truth_norms = [float(x) for x in truth_norms]
        if len(truth_norms) != 2 or not np.inf > truth_norms[0] >= truth_norms[1] > 0:
            raise ValueError("`truth_norms` must be [largest, smallest], finite and > 0; "
                             f"got {truth_norms}")
    return (orders, sizes, sorted(int(m) for m in ms),
            sorted({*map(float, scales), scale}), truth_norms)


def _problem(key, shape, rank, m, norms):
    """`(loss, truth)`, `truth` holding the tensor `W` and its CP `factors`."""
    loss, W = problems.random_tensor_completion(key, shape, rank, m,
                                                component_norms=norms)
    return loss, dict(W=W, factors=_truth_factors(key, shape, rank, W, norms))


def _truth_factors(key, shape, rank, W, norms):
    """The CP factors `problems.random_tensor_completion` drew for `W` (its key split as
    there; rescaled to give `W` if `norms` is None); checked, so a change of the
    generator cannot go unseen."""
    k_truth, _ = jax.random.split(key)
    fs = low_rank_factors(k_truth, shape, rank, component_norms=norms, dtype=W.dtype)
    if norms is None:
        c = (jnp.linalg.norm(W) / jnp.linalg.norm(product(fs))) ** (1 / len(fs))
        fs = tuple(c * f for f in fs)
    if not jnp.allclose(product(fs), W, rtol=1e-10, atol=1e-12):
        raise RuntimeError("the ground truth's CP factors could not be reconstructed")
    return fs


def _save_times(t1: float, num_saves: int):
    ts = jnp.geomspace(t1 * 1e-9, t1, num_saves - 1).at[-1].set(t1)
    return jnp.concatenate([jnp.zeros(1), ts])


def _solve(loss, shape, keys, scale, *, components, loss_reduction, num_saves,
           max_steps, solver):
    """The CP flow from one balanced init per key, stopped at `loss_reduction * l(0)`."""
    inits = jax.vmap(lambda k: cp_balanced(k, shape, components, scale))(keys)
    return _batch("tensor", loss, inits, shape, loss_reduction, num_saves, max_steps,
                  solver)


def _batch(method, loss, inits, shape, loss_reduction, num_saves, max_steps, solver):
    m = int(loss.values.shape[0])
    threshold = loss_reduction * float(loss(jnp.zeros(shape)))
    t1 = 1e6 * m  # the loss averages over m entries: time scales with m
    sol = solve_batch(method, loss, inits, t1, _save_times(t1, num_saves),
                      loss_threshold=threshold, max_steps=max_steps, solver=solver)
    return jax.block_until_ready(sol)


def unfold(loss, shape) -> losses.MatrixCompletion:
    """The observed entries of `loss` in the mode-1 unfolding, `(d_1, d_2 ... d_N)`:
    entry `(i_1, ..., i_N)` at row `i_1`, column `ravel(i_2, ..., i_N)` (C order, as
    `W.reshape(d_1, -1)`)."""
    idx = np.asarray(loss.indices)
    cols = np.ravel_multi_index(tuple(idx[:, 1:].T), shape[1:])
    return losses.MatrixCompletion(idx[:, 0], cols, loss.values,
                                   (shape[0], int(np.prod(shape[1:]))))


def _solve_unfolded(loss, shape, keys, scale, *, components, loss_reduction,
                    num_saves, max_steps, solver):
    """The factor flow at depth N on the unfolded entries: `W = W_N ... W_1`, of
    shape `(d_1, d_2 ... d_N)`, hidden widths `d_1`, balanced init of norm `scale`."""
    dims = (int(np.prod(shape[1:])),) + (shape[0],) * len(shape)
    inits = jax.vmap(lambda k: init.balanced(k, dims, scale))(keys)
    return _batch("factor", unfold(loss, shape), inits, (shape[0], dims[0]),
                  loss_reduction, num_saves, max_steps, solver)


def switch_on_times(ts, norms, fraction: float) -> np.ndarray:
    """For each column `r` of `norms` (`(k, R)` at save times `ts`, `ts[0] = 0`), the
    first time `norms[:, r]` reaches `fraction * norms[-1, r]`, log-log interpolated
    between the saves around the crossing; NaN if it never does after `t = 0`."""
    ts, norms = np.asarray(ts, float), np.asarray(norms, float)
    out = np.full(norms.shape[1], np.nan)
    for r in range(norms.shape[1]):
        target = fraction * norms[-1, r]
        k = int(np.argmax(norms[:, r] >= target))
        if k == 0 or not norms[k, r] >= target:
            continue
        if ts[k - 1] <= 0 or norms[k - 1, r] <= 0:
            out[r] = ts[k]
            continue
        x0, x1 = np.log(ts[k - 1]), np.log(ts[k])
        y0, y1 = np.log(norms[k - 1, r]), np.log(norms[k, r])
        out[r] = np.exp(x0 + (np.log(target) - y0) * (x1 - x0) / (y1 - y0))
    return out


def _cosines(fs, truth_fs):
    """`<W_r, T_s> / (||W_r|| ||T_s||)` for components `r` of `fs`, `s` of `truth_fs`."""
    unit = lambda f: np.asarray(f) / np.linalg.norm(np.asarray(f), axis=0)
    return np.prod([unit(a).T @ unit(b) for a, b in zip(fs, truth_fs)], axis=0)


def _flag(value, finished):
    return float(value) if finished else Untrusted(float(value), _NOT_FINISHED)


def _greedy(problem, sol, fraction, cutoff, i=0):
    """Part a for init `i` of `sol`: a row per component (largest final norm first),
    the recovery row and the curves (saves reached, then the final state)."""
    loss, truth = problem
    shape = tuple(truth["W"].shape)
    reached = np.asarray(sol.reached[i])
    fs_final = tuple(np.asarray(f[i]) for f in sol.factors_final)
    final = saved_component_norms(fs_final)
    ts = np.append(np.asarray(sol.ts[i])[reached], float(sol.t_final[i]))
    norms = np.vstack([saved_component_norms(tuple(f[i] for f in sol.factors))[reached], final])
    order = np.argsort(final)[::-1]
    carries = final >= cutoff * final.max()
    times = np.where(carries, switch_on_times(ts, norms, fraction), np.nan)
    truth_norms = saved_component_norms(truth["factors"])
    cos = _cosines(fs_final, truth["factors"])
    done = bool(sol.success[i] & sol.stopped[i])
    label = "x".join(map(str, shape))
    rows = []
    for k, r in enumerate(order):
        s = int(np.argmax(np.abs(cos[r])))
        rows.append({
            "order": len(shape), "shape": label, "component": k + 1,
            "init_norm": float(norms[0, r]), "final_norm": _flag(final[r], done),
            "carries": bool(carries[r]),
            "switch_on_time": _flag(times[r], done),
            "truth_component": s + 1, "truth_norm": float(truth_norms[s]),
            "cosine_to_truth": float(abs(cos[r, s])), "finished": done,
        })
    W = np.asarray(sol.end_to_end_final[i])
    recovery = {
        "order": len(shape), "shape": label, "observed": int(loss.values.shape[0]),
        "relative_error": _flag(np.linalg.norm(W - truth["W"])
                                / np.linalg.norm(truth["W"]), done),
        "effective_tensor_rank": int(carries.sum()),
        "truth_rank": int(truth_norms.shape[0]),
        "train_loss": float(sol.loss_final[i]), "t_final": float(sol.t_final[i]),
        "steps": int(sol.stats.num_steps[i]), "finished": done,
    }
    curves = dict(order=len(shape), shape=label, ts=ts, norms=norms[:, order],
                  times=times[order], carries=carries[order], truth_norms=truth_norms,
                  finished=done)
    return dict(rows=rows, recovery=recovery, curves=curves,
                truth_norms=[float(x) for x in np.sort(truth_norms)[::-1]])


def _spread(values, done, name):
    """Median, min and max of `values` over the finished solves (NaN if none)."""
    v = np.asarray(values, float)[done]
    stats = (np.median(v), v.min(), v.max()) if v.size else (np.nan,) * 3
    return {f"{name}_{q}": float(x) for q, x in zip(("median", "min", "max"), stats)}


def _seed_row(truth, sol, cutoff, **label):
    """Part b: one row per (observed, scale), statistics over the finished seeds."""
    done = np.asarray(sol.success & sol.stopped)
    W = np.asarray(sol.end_to_end_final)
    errors = np.linalg.norm((W - truth["W"]).reshape(len(W), -1), axis=1)
    norms = saved_component_norms(sol.factors_final)
    ranks = effective_tensor_rank(norms, cutoff)
    return {**label, "seeds": len(done), "finished": int(done.sum()),
            **_spread(errors / np.linalg.norm(truth["W"]), done, "error"),
            **_spread(ranks, done, "tensor_rank")}


def _matrix_rows(truth, tensor, matrix, m):
    """Part c: the CP flow and the depth-N factor flow on the unfolded entries, each
    over the seeds (statistics over the finished ones)."""
    shape = tuple(truth["W"].shape)
    unfolded = np.asarray(truth["W"]).reshape(shape[0], -1)
    rows = []
    for flow, sol in ((f"CP flow, order {len(shape)}", tensor),
                      (f"factor flow, depth {len(shape)}", matrix)):
        done = np.asarray(sol.success & sol.stopped)
        W = np.asarray(sol.end_to_end_final).reshape(len(done), *unfolded.shape)
        errors = np.linalg.norm((W - unfolded).reshape(len(W), -1), axis=1)
        rows.append({"observed": m, "flow": flow, "seeds": len(done),
                     "finished": int(done.sum()),
                     **_spread(errors / np.linalg.norm(unfolded), done, "error"),
                     **_spread(effective_rank(W), done, "unfolding_effective_rank")})
    return rows
