"""Implicit regularization studies (Section 4 of the notes), each returning a
[`Report`][lnn_flow.studies.Report] with tables, figures and a summary.

- `completion`: deep linear networks vs the minimum-nuclear-norm solution on matrix
  completion (Supposition 1, Figure 2).
- `greedy`: singular values switching on one after another (Theorem 3, Figure 3).
- `norms`: norms that diverge as the loss falls (Lemma 2, Proposition 5).

Every study takes keyword parameters with defaults of the size the notes use; `STUDIES`
maps names to functions and `SMALL` holds reduced parameters that still show the effect.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float
from matplotlib.figure import Figure
from tqdm import tqdm  # tqdm.auto warns in Jupyter without ipywidgets

from . import init, problems, theory
from ._end_to_end import end_to_end_flow
from ._factor import factor_flow
from ._network import end_to_end
from ._nuclear import min_nuclear_norm_completion
from ._report import Report
from ._sweep import effective_rank as _effective_rank_of_singular_values

__all__ = [
    "Report",
    "SMALL",
    "STUDIES",
    "completion_study",
    "effective_rank",
    "greedy_study",
    "norms_study",
    "switch_on_times",
]


def effective_rank(W: Float[ArrayLike, "*batch dn d0"]) -> np.ndarray:
    """Effective rank of Roy & Vetterli (2007), `exp(H(p))` for the distribution
    `p_r = sigma_r / sum(sigma)`: the rank when the nonzero singular values are equal,
    degrading smoothly with their spread (the measure the sweep summaries use)."""
    return _effective_rank_of_singular_values(np.linalg.svd(np.asarray(W), compute_uv=False))


def _row(label, W, truth, train_loss, seconds, success, **extra) -> dict[str, Any]:
    W = jnp.asarray(W)
    return {
        "solution": label,
        **extra,
        "relative_error": float(jnp.linalg.norm(W - truth) / jnp.linalg.norm(truth)),
        "nuclear_norm": float(jnp.sum(jnp.linalg.svd(W, compute_uv=False))),
        "effective_rank": float(effective_rank(W)),
        "train_loss": float(train_loss),
        "seconds": round(float(seconds), 3),
        "success": bool(success),
    }


def _timer():
    import time

    start = time.perf_counter()
    return lambda: time.perf_counter() - start


# --- Supposition 1 / Figure 2 -------------------------------------------------------


def completion_study(
    *,
    size: int = 100,
    rank: int = 5,
    counts: Sequence[int] = (1000, 2000, 4000, 8000),
    depths: Sequence[int] = (1, 2, 3, 4),
    scale: float = 1e-3,
    loss_reduction: float = 1e-6,
    seed: int = 0,
    progress: bool = False,
) -> Report:
    """Matrix completion of a `size x size` rank-`rank` ground truth from `counts`
    observed entries (sampled without replacement): the factor flow at each depth from a
    balanced init of norm `scale`, stopped when the loss fell by `loss_reduction`, next
    to the minimum-nuclear-norm solution of eq. (10).

    Supposition 1 says the network finds the minimum-nuclear-norm solution; with few
    observations deeper networks find solutions of lower rank and error instead.
    """
    key_problem, key_init = jax.random.split(jax.random.PRNGKey(seed))
    rows = []
    jobs = [(m, depth) for m in counts for depth in (None, *depths)]
    truth_norm = None
    for m, depth in tqdm(jobs, desc="completion", disable=not progress):
        loss, truth = problems.random_matrix_completion(
            key_problem, (size, size), rank, int(m)
        )
        truth_norm = float(jnp.sum(jnp.linalg.svd(truth, compute_uv=False)))
        elapsed = _timer()
        if depth is None:
            ref = min_nuclear_norm_completion(loss)
            jax.block_until_ready(ref.W)
            rows.append(
                _row("min nuclear norm", ref.W, truth, loss(ref.W), elapsed(),
                     ref.converged, observations=int(m), depth="-")
            )
            continue
        ws0 = init.balanced(key_init, (size,) * (depth + 1), scale)
        threshold = loss_reduction * float(loss(end_to_end(ws0)))
        # Time scales with m (the loss averages over observations); the stop is the
        # loss threshold, the horizon only a cap.
        sol = factor_flow(
            loss, ws0, 1e5 * m, loss_threshold=threshold, max_steps=200_000
        )
        jax.block_until_ready(sol.end_to_end_final)
        rows.append(
            _row(f"depth {depth}", sol.end_to_end_final, truth, sol.loss_final,
                 elapsed(), sol.success & sol.stopped, observations=int(m), depth=depth)
        )
    figure = _completion_figure(rows, truth_norm)
    return Report(
        name="completion",
        title="Matrix completion: deep linear networks vs minimum nuclear norm",
        description=(
            "Supposition 1 (Figure 2 of the notes): solutions of the factor flow (eq. 2) "
            "from near-zero balanced init, stopped once the training loss fell by `loss_reduction`, next to the "
            "minimum-nuclear-norm solution of eq. (10) (ADMM). Relative error is "
            "||W - W*||_F / ||W*||_F; effective rank is exp(entropy of sigma / sum "
            f"sigma). Ground-truth nuclear norm: {truth_norm:.4g}. With many "
            "observations the networks' error floor (~1e-3) is set by the stopping "
            "loss: their last approach to the exact completion is stiff and slow for "
            "an explicit solver (loss_reduction = 1e-10 gives 2e-4 to 6e-4 at 15x the "
            "wall time, several solves hitting max_steps)."
        ),
        tables={"completion": rows},
        figures={"completion": figure},
        parameters=dict(size=size, rank=rank, counts=list(counts), depths=list(depths),
                        scale=scale, loss_reduction=loss_reduction, seed=seed),
    )


def _completion_figure(rows, truth_norm) -> Figure:
    fig = Figure(figsize=(11, 3.8))
    axes = fig.subplots(1, 3)
    labels = list(dict.fromkeys(r["solution"] for r in rows))
    for label in labels:
        mine = [r for r in rows if r["solution"] == label]
        x = [r["observations"] for r in mine]
        style = "k--" if label == "min nuclear norm" else "o-"
        for ax, key in zip(axes, ("relative_error", "nuclear_norm", "effective_rank")):
            ax.plot(x, [r[key] for r in mine], style, label=label)
    axes[1].axhline(truth_norm, color="gray", lw=0.8, ls=":", label="ground truth")
    for ax, name in zip(axes, ("reconstruction error (relative)", "nuclear norm",
                               "effective rank")):
        ax.set_xlabel("observed entries")
        ax.set_title(name)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- Theorem 3 / Figure 3 ------------------------------------------------------------


def switch_on_times(
    solution, thresholds: Float[ArrayLike, " r"], ts: Float[ArrayLike, " k"]
) -> Float[Array, " r"]:
    """For each `r`, the first time the r-th largest singular value of the end-to-end
    matrix crosses `thresholds[r]`, from the dense solution: bracketed on the grid `ts`,
    then located by bisection on the interpolant (to `1e-10` relative). NaN if never."""
    ts = jnp.asarray(ts)
    thresholds = jnp.asarray(thresholds)
    sigma = jax.vmap(lambda t: jnp.linalg.svd(solution.evaluate(t), compute_uv=False))(ts)
    r = thresholds.shape[0]
    above = sigma[:, :r] >= thresholds
    first = jnp.argmax(above, axis=0)
    crossed = jnp.any(above, axis=0)

    def locate(index, rank_index, threshold):
        lower, upper = ts[jnp.maximum(index - 1, 0)], ts[index]
        gap = lambda t, _: jnp.linalg.svd(solution.evaluate(t), compute_uv=False)[
            rank_index
        ] - threshold
        solver = optx.Bisection(rtol=1e-10, atol=1e-10 * (ts[-1] - ts[0]))
        root = optx.root_find(
            gap, solver, 0.5 * (lower + upper), options={"lower": lower, "upper": upper},
            throw=False,
        ).value
        return jnp.where(index == 0, ts[0], root)

    times = jax.vmap(locate)(first, jnp.arange(r), thresholds)
    return jnp.where(crossed, times, jnp.nan)


def greedy_study(
    *,
    size: int = 20,
    rank: int = 3,
    measurements: int | None = None,
    depths: Sequence[int] = (1, 2, 3),
    scale: float = 1e-3,
    t1: float = 150.0,
    fraction: float = 0.5,
    seed: int = 0,
    progress: bool = False,
) -> Report:
    """Matrix sensing of a rank-`rank` ground truth `W*` with distinct singular values:
    singular values of the end-to-end flow (Theorem 1) over time at each depth, and the
    time each `sigma_r` switches on (first reaches `fraction * sigma_r(W*)`).

    Theorem 3: `sigma_r' = n (sigma_r^2)^{1-1/n} <-grad l, u_r v_r^T>`; with near-zero
    init the factor `(sigma_r^2)^{1-1/n}` holds small values back, so for n >= 2 they
    switch on one after another (greedy low-rank learning), more sharply with depth.
    """
    m = measurements if measurements is not None else 4 * size * rank
    key_problem, key_init = jax.random.split(jax.random.PRNGKey(seed))
    loss, truth = problems.random_matrix_sensing(key_problem, (size, size), rank, m)
    target = jnp.linalg.svd(truth, compute_uv=False)[:rank]
    grid = jnp.linspace(0.0, t1, 1501)
    rows, curves = [], {}
    for depth in tqdm(depths, desc="greedy", disable=not progress):
        W0 = end_to_end(init.balanced(key_init, (size,) * (depth + 1), scale))
        elapsed = _timer()
        sol = end_to_end_flow(loss, W0, depth, t1, grid, dense=True, max_steps=8192)
        times = switch_on_times(sol, fraction * target, grid)
        jax.block_until_ready(times)
        curves[depth] = (grid, jnp.linalg.svd(sol.end_to_end, compute_uv=False), times)
        for r in range(rank):
            rows.append({
                "depth": depth,
                "r": r + 1,
                "switch_on_time": float(times[r]),
                "sigma_truth": float(target[r]),
                "sigma_final": float(curves[depth][1][-1, r]),
                "final_loss": float(sol.loss_final),
                "relative_error": float(jnp.linalg.norm(sol.end_to_end_final - truth)
                                        / jnp.linalg.norm(truth)),
                "seconds": round(elapsed(), 3),
                "success": bool(sol.success),
            })
    return Report(
        name="greedy",
        title="Greedy low-rank learning: singular values over time",
        description=(
            "Theorem 3 (Figure 3 of the notes): singular values of the end-to-end matrix "
            f"along the flow at each depth, on matrix sensing with {m} Gaussian "
            f"measurements of a {size}x{size} rank-{rank} ground truth. A singular value "
            f"switches on when it first reaches {fraction} of the ground truth's; times "
            "are located by bisection on the solver's dense output."
        ),
        tables={"switch_on": rows},
        figures={"singular_values": _greedy_figure(curves, target, fraction)},
        parameters=dict(size=size, rank=rank, measurements=m, depths=list(depths),
                        scale=scale, t1=t1, fraction=fraction, seed=seed),
    )


def _greedy_figure(curves, target, fraction) -> Figure:
    fig = Figure(figsize=(4 * len(curves), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(curves), sharey=True))
    for ax, (depth, (ts, sigma, times)) in zip(axes, curves.items()):
        shown = min(sigma.shape[1], target.shape[0] + 2)
        ax.plot(ts, sigma[:, :shown])
        for r, t in enumerate(np.asarray(times)):
            if np.isfinite(t):
                ax.axvline(t, color=f"C{r}", ls=":", lw=0.8)
        ax.set_title("linear (n = 1)" if depth == 1 else f"{depth}-layer network")
        ax.set_xlabel("t")
    axes[0].set_ylabel("singular values of W(t)")
    fig.tight_layout()
    return fig


# --- Lemma 2 / Proposition 5 ---------------------------------------------------------


def norms_study(
    *,
    depths: Sequence[int] = (2, 3, 4),
    W0: Sequence[Sequence[float]] = ((0.3, 0.1), (-0.05, 0.2)),
    t1: float = 5000.0,
    num_saves: int = 400,
    progress: bool = False,
) -> Report:
    """The 2x2 matrix sensing example of Proposition 5 from `det W(0) > 0`: every
    minimizer has `det = -1`, so by Lemma 2 the loss can approach zero only as
    `||W||` diverges, above the bound `c l^{-1/2} + c'`."""
    loss = theory.proposition5_loss()
    W0 = jnp.asarray(W0, float)
    if W0.shape != (2, 2) or not jnp.linalg.det(W0) > 0:
        raise ValueError("`W0` must be a 2x2 matrix with positive determinant")
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-2, t1, num_saves - 1)])
    ts = jnp.minimum(ts, t1)  # geomspace may round its end past t1
    rows, curves = [], {}
    for depth in tqdm(depths, desc="norms", disable=not progress):
        elapsed = _timer()
        sol = end_to_end_flow(loss, W0, depth, t1, ts, max_steps=200_000)
        track = theory.determinant_track(sol)
        norms = jnp.linalg.norm(sol.end_to_end, axis=(1, 2))
        bound = theory.proposition5_norm_bound(sol.loss)
        curves[depth] = (ts, sol.loss, norms, track, sol.reached)
        trusted = sol.reached & ~track.at_precision_floor
        rows.append({
            "depth": depth,
            "final_loss": float(sol.loss_final),
            "final_norm": float(jnp.linalg.norm(sol.end_to_end_final)),
            "bound_holds": bool(jnp.all(jnp.where(trusted, norms >= bound, True))),
            "det_sign_constant": bool(track.sign_constant),
            "precision_floor_reached": bool(track.floor_reached),
            "seconds": round(elapsed(), 3),
            "success": bool(sol.success),
        })
    return Report(
        name="norms",
        title="Norms that diverge: Proposition 5",
        description=(
            "The loss l(W) = 1/6 [(w12 - 1)^2 + (w21 - 1)^2 + w22^2] (eq. 15) solved by "
            "the end-to-end flow from det W(0) > 0. Lemma 2 keeps det W(t) > 0 while every "
            "minimizer has det = -1, so ||W|| grows without bound as the loss falls; the "
            "dashed line is the bound of Proposition 5 (Frobenius norm). At depth 2, det W "
            "decays exponentially and the computed trajectory reaches the precision floor; "
            "this is reported rather than trusted."
        ),
        tables={"norms": rows},
        figures={"norm_vs_loss": _norms_figure(curves)},
        parameters=dict(depths=list(depths), W0=np.asarray(W0).tolist(), t1=t1,
                        num_saves=num_saves),
    )


def _norms_figure(curves) -> Figure:
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    lowest = 1 / 6
    for depth, (ts, loss, norms, track, reached) in curves.items():
        trusted = np.asarray(reached & ~track.at_precision_floor)
        (line,) = left.loglog(loss[trusted], norms[trusted], label=f"n = {depth}")
        lowest = min(lowest, float(jnp.min(loss[trusted])))
        right.loglog(ts[trusted][1:], jnp.abs(track.det[trusted])[1:], color=line.get_color(),
                     label=f"n = {depth}")
        if bool(track.floor_reached):
            k = int(np.argmax(np.asarray(track.at_precision_floor)))
            left.plot(loss[k - 1], norms[k - 1], "x", color=line.get_color(), ms=9,
                      label=f"n = {depth}: precision floor")
            right.loglog(ts[k - 1:], jnp.abs(track.det[k - 1:]), ":", lw=0.8,
                         color=line.get_color(), label=f"n = {depth}: untrusted")
    grid = jnp.geomspace(lowest, 1 / 6, 200)
    bound = theory.proposition5_norm_bound(grid)
    left.loglog(grid[bound > 0], bound[bound > 0], "k--", label="Prop. 5 bound")
    left.invert_xaxis()
    left.set(xlabel="loss (decreasing)", ylabel="||W||_F", title="norm against loss")
    left.legend(fontsize=8)
    right.set(xlabel="t", ylabel="|det W(t)|", title="Lemma 2: det W(t) > 0 throughout")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


STUDIES: dict[str, Callable[..., Report]] = {
    "completion": completion_study,
    "greedy": greedy_study,
    "norms": norms_study,
}

# Reduced parameters that still show each effect (tests, notebooks, CI).
SMALL: dict[str, dict[str, Any]] = {
    "completion": dict(size=30, rank=2, counts=(150, 300), depths=(1, 3)),
    "greedy": dict(size=10, rank=3, depths=(1, 3), t1=150.0),
    "norms": dict(depths=(2, 3), t1=2000.0, num_saves=200),
}
