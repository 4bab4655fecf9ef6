"""The hierarchical study: implicit regularization towards low hierarchical tensor rank
in the flow of a hierarchical tensor factorization (Section 5; Razin, Maman & Cohen
2022), [`lnn_flow.hierarchical`][].

Tensor completion of an order-`N` truth of low hierarchical rank (an HT tensor on the
binary mode tree with `truth_width` channels per node, unit Frobenius norm) from
`num_measurements` observed entries:

a. **Incremental learning.** One solve from a small balanced init: every local
   component's norm over time, with its switch-on time (the first time it reaches
   `fraction` of its final norm, for components that end above `cutoff` of their
   node's largest), and the singular values of every tree node's matricization over
   time (the hierarchical rank).
b. **Three factorizations of the same entries**, over `seeds` inits and the init
   `scales`: the hierarchical flow, the CP flow (`width` components) and the depth-`N`
   factor flow on the matricization of the modes `{0, ..., N/2 - 1}` against the rest
   (a matrix factorization), each from balanced inits of that scale; reconstruction
   error and the ranks of the solution (effective hierarchical rank: the mean over the
   non-root nodes of the matricizations' effective ranks).

Every solve stops at `loss_reduction * l(0)` (a horizon cap of `horizon * m`, saves
log-spaced over its last four decades, and `max_steps`), with `solver` ("auto" by default: the tails are stiff).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from .. import hierarchical as ht
from .. import init, losses, tensor
from .._batching._batch import solve_batch
from .._core import _checks
from .._reports._report import Report
from ._study_rows import SOLVERS, effective_rank
from ._study_tensor import _flag, _spread, switch_on_times
from .._sweeps._sweep_summary import effective_rank as _effective_of_values
from . import _figures_hierarchical


def hierarchical_study(
    *,
    order: int = 4,
    size: int = 4,
    truth_width: int = 1,
    width: int = 4,
    num_measurements: int = 120,
    scale: float = 0.1,
    scales: tuple[float, ...] = (0.1, 0.3),
    seeds: int = 3,
    loss_reduction: float = 1e-8,
    horizon: float = 1e8,
    num_saves: int = 80,
    fraction: float = 0.5,
    cutoff: float = 0.1,
    max_steps: int = 100_000,
    solver: str = "auto",
    seed: int = 0,
    progress: bool = False,
) -> Report:
    """Incremental hierarchical-rank learning and three factorizations of one
    completion problem (module docstring). `order` must be even (the matricization
    of part b splits the modes in half); `scale` is part a's init, `scales` part b's."""
    order = _checks.positive_int("order", order, 2)
    if order % 2:
        raise ValueError(f"`order` must be even (part b matricizes half the modes); got {order}")
    size = _checks.positive_int("size", size, 2)
    truth_width = _checks.positive_int("truth_width", truth_width)
    width = _checks.positive_int("width", width)
    m = _checks.positive_int("num_measurements", num_measurements)
    if m > size ** order:
        raise ValueError(f"`num_measurements` must be at most size**order = "
                         f"{size ** order}; got {m}")
    seeds = _checks.positive_int("seeds", seeds)
    num_saves = _checks.positive_int("num_saves", num_saves, 2)
    max_steps = _checks.positive_int("max_steps", max_steps)
    for name, value in (("scale", scale), ("loss_reduction", loss_reduction),
                        ("horizon", horizon), ("fraction", fraction), ("cutoff", cutoff)):
        _checks.positive(name, jnp.asarray(float(value)))
    scales = tuple(float(_checks.positive("scales", jnp.asarray(float(s)))) for s in scales)
    if not scales:
        raise ValueError("`scales` must hold at least one init scale")
    solver = _checks.one_of("solver", solver, SOLVERS)
    start = time.perf_counter()
    shape = (size,) * order
    tree = ht.binary_tree(order)
    key_truth, key_entries, key_init = jax.random.split(jax.random.PRNGKey(seed), 3)
    truth = _planted(key_truth, shape, truth_width)
    loss = _observed(key_entries, truth, m)
    threshold = loss_reduction * float(loss(jnp.zeros(shape)))
    t1 = horizon * m
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-4 * t1, t1, num_saves - 1)]).at[-1].set(t1)
    options = dict(loss_threshold=threshold, max_steps=max_steps, solver=SOLVERS[solver])
    bar = tqdm(total=1 + 3 * len(scales), desc="hierarchical", disable=not progress)

    ws0 = ht.balanced(key_init, shape, width, scale)
    sol = ht.flow(loss, ws0, t1, ts, **options)
    bar.update()
    part_a = _incremental(sol, tree, truth, fraction, cutoff)

    keys = jax.random.split(key_init, seeds)
    rows = []
    for s in scales:
        for label, solved in _three(loss, shape, keys, s, width, t1, ts, options, bar):
            rows.append(_comparison_row(label, s, solved, truth, tree, order))
    bar.close()
    parameters = dict(order=order, size=size, truth_width=truth_width, width=width,
                      num_measurements=m, scale=scale, scales=list(scales), seeds=seeds,
                      loss_reduction=loss_reduction, horizon=horizon, num_saves=num_saves,
                      fraction=fraction, cutoff=cutoff, max_steps=max_steps,
                      solver=solver, seed=seed)
    truth_ranks = [int(np.sum(sv > 1e-10 * sv[0]))
                   for sv in ht.matricization_singular_values(truth, tree)]
    facts = dict(truth_hierarchical_rank=truth_ranks,
                 seconds=round(time.perf_counter() - start, 1))
    figures = {"local_components": _figures_hierarchical.local_components(part_a["curves"]),
               "matricizations": _figures_hierarchical.matricizations(part_a["curves"]),
               "comparison": _figures_hierarchical.comparison(rows)}
    return Report(
        name="hierarchical",
        title="Hierarchical tensor factorization: incremental hierarchical-rank learning",
        description=_description(order, size, truth_width, width, m, solver, part_a, rows),
        tables={"local_components": part_a["rows"], "recovery": [part_a["recovery"]],
                "comparison": rows},
        figures=figures,
        parameters=parameters,
        facts=facts,
    )


def _planted(key, shape, width):
    """An HT tensor on the binary tree with `width` channels per node, Gaussian
    weights, scaled to unit Frobenius norm."""
    ws = ht.gaussian(key, shape, width, 1.0)
    W = ht.end_to_end(ws, ht.binary_tree(len(shape)))
    return W / jnp.linalg.norm(W)


def _observed(key, truth, m):
    flat = jax.random.choice(key, truth.size, (m,), replace=False)
    indices = jnp.stack(jnp.unravel_index(flat, truth.shape), axis=1)
    return losses.TensorCompletion(indices, truth[tuple(indices.T)], truth.shape)


def _incremental(sol, tree, truth, fraction, cutoff):
    """Part a: a row per local component (per node, largest final norm first), the
    recovery row, and the curves (the saves reached, then the final state)."""
    reached = np.asarray(sol.reached)
    ts = np.append(np.asarray(sol.ts)[reached], float(sol.t_final))
    saved = [tuple(np.asarray(w)[k] for w in sol.factors) for k in np.flatnonzero(reached)]
    states = saved + [tuple(np.asarray(w) for w in sol.factors_final)]
    norms = [np.stack(per_node) for per_node in
             zip(*[[np.asarray(n) for n in ht.local_component_norms(s, tree)] for s in states])]
    spectra = [np.stack(per_node) for per_node in zip(*[
        [np.asarray(v) for v in ht.matricization_singular_values(ht.end_to_end(s, tree), tree)]
        for s in states])]
    done = bool(sol.success & sol.stopped)
    nodes = [n for n in ht.nodes(tree) if not isinstance(n, int)]
    rows, curves_nodes = [], []
    for node, n in zip(nodes, norms):
        final = n[-1]
        order = np.argsort(final)[::-1]
        carries = final >= cutoff * final.max()
        times = np.where(carries, switch_on_times(ts, n, fraction), np.nan)
        for k, r in enumerate(order):
            rows.append({"node": _name(node), "component": k + 1,
                         "init_norm": float(n[0, r]), "final_norm": _flag(final[r], done),
                         "carries": bool(carries[r]),
                         "switch_on_time": _flag(times[r], done), "finished": done})
        curves_nodes.append(dict(node=_name(node), norms=n[:, order], times=times[order],
                                 carries=carries[order]))
    W = np.asarray(sol.end_to_end_final)
    truth_np = np.asarray(truth)
    recovery = {
        "relative_error": _flag(np.linalg.norm(W - truth_np) / np.linalg.norm(truth_np), done),
        "carrying_components": int(sum(int(np.sum(c["carries"])) for c in curves_nodes)),
        "train_loss": float(sol.loss_final), "t_final": float(sol.t_final),
        "steps": int(sol.stats.num_steps), "finished": done,
    }
    curves = dict(ts=ts, nodes=curves_nodes, finished=done,
                  spectra=[dict(node=_name(v), values=s) for v, s in zip(ht.nodes(tree)[1:], spectra)],
                  truth_spectra=[np.asarray(v) for v in
                                 ht.matricization_singular_values(truth, tree)])
    return dict(rows=rows, recovery=recovery, curves=curves)


def _name(node) -> str:
    """`((0, 1), (2, 3))` -> "{0,1,2,3}": the modes below a node."""
    return "{" + ",".join(map(str, sorted(ht.leaves(node)))) + "}"


def _three(loss, shape, keys, scale, width, t1, ts, options, bar):
    """Part b's solves from balanced inits of `scale`, one per key."""
    tree = ht.binary_tree(len(shape))
    h_inits = jax.vmap(lambda k: ht.balanced(k, shape, width, scale))(keys)
    yield "hierarchical", jax.block_until_ready(
        solve_batch("hierarchical", loss, h_inits, t1, ts, tree=tree, **options))
    bar.update()
    cp_inits = jax.vmap(lambda k: tensor.balanced(k, shape, width, scale))(keys)
    yield "CP", jax.block_until_ready(solve_batch("tensor", loss, cp_inits, t1, ts, **options))
    bar.update()
    half = len(shape) // 2
    rows, cols = int(np.prod(shape[:half])), int(np.prod(shape[half:]))
    matrix_loss = _matricized(loss, shape, half)
    dims = (cols,) + (min(rows, cols),) * (len(shape) - 1) + (rows,)
    m_inits = jax.vmap(lambda k: init.balanced(k, dims, scale))(keys)
    yield f"matrix (depth {len(shape)})", jax.block_until_ready(
        solve_batch("factor", matrix_loss, m_inits, t1, ts, **options))
    bar.update()


def _matricized(loss, shape, half):
    """The observed entries in the matricization of the first `half` modes against the
    rest (C order, as `W.reshape(d_0 ... d_{half-1}, -1)`)."""
    idx = np.asarray(loss.indices)
    r = np.ravel_multi_index(tuple(idx[:, :half].T), shape[:half])
    c = np.ravel_multi_index(tuple(idx[:, half:].T), shape[half:])
    rows, cols = int(np.prod(shape[:half])), int(np.prod(shape[half:]))
    return losses.MatrixCompletion(r, c, loss.values, (rows, cols))


def _comparison_row(label, scale, sol, truth, tree, order):
    done = np.asarray(sol.success & sol.stopped)
    truth_np = np.asarray(truth)
    W = np.asarray(sol.end_to_end_final).reshape((len(done),) + truth_np.shape)
    errors = np.linalg.norm((W - truth_np).reshape(len(W), -1), axis=1) / np.linalg.norm(truth_np)
    half = order // 2
    matrix = W.reshape(len(W), int(np.prod(truth_np.shape[:half])), -1)
    ranks = [np.mean([float(_effective_of_values(np.asarray(v)))
                      for v in ht.matricization_singular_values(jnp.asarray(w), tree)])
             for w in W]
    return {"factorization": label, "scale": scale, "seeds": len(done),
            "finished": int(done.sum()),
            **_spread(errors, done, "error"),
            **_spread(ranks, done, "hierarchical_rank"),
            **_spread(effective_rank(matrix), done, "matricization_rank")}


def _description(order, size, truth_width, width, m, solver, part_a, rows):
    shown = lambda x: f"{float(x):.3g}"
    rec = part_a["recovery"]
    by_label = {}
    for r in rows:
        by_label.setdefault(r["factorization"], []).append(r)
    lines = [
        f"Tensor completion of an order-{order} tensor of size {size} per mode, planted "
        f"as a hierarchical factorization on the binary mode tree with {truth_width} "
        f"channel(s) per node (unit Frobenius norm), from {m} observed entries; "
        f"hierarchical factorizations of width {width} solved by their gradient flow "
        f"(solver {solver}). Local components and the laws they follow: "
        "`lnn_flow.hierarchical` (after Razin, Maman & Cohen).",
        "",
        f"Part a: from the small init, the flow reached a relative error of "
        f"{shown(rec['relative_error'])} with {rec['carrying_components']} local "
        "components above the cutoff (table local_components: switch-on times, largest "
        "first per node).",
        "",
        "Part b (table comparison, median over the finished seeds):",
    ]
    for label, group in by_label.items():
        parts = ", ".join(f"scale {shown(r['scale'])}: error {shown(r['error_median'])}, "
                          f"hierarchical rank {shown(r['hierarchical_rank_median'])}"
                          for r in group)
        lines.append(f"- {label}: {parts}.")
    return "\n".join(lines)
