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

from . import _checks, init, problems, theory
from ._end_to_end import end_to_end_flow
from ._factor import factor_flow
from ._network import end_to_end
from ._nuclear import min_nuclear_norm_completion
from ._report import Report, Untrusted
from ._sweep import effective_rank as _effective_rank_of_singular_values

__all__ = [
    "Report",
    "SMALL",
    "Untrusted",
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
    facts = {
        "truth_nuclear_norm": truth_norm,
        "truth_effective_rank": float(effective_rank(truth)),
    }
    return Report(
        name="completion",
        title="Matrix completion: deep linear networks vs minimum nuclear norm",
        description=(
            "Supposition 1 (Figure 2 of the notes): solutions of the factor flow (eq. 2) "
            "from near-zero balanced init, stopped once the training loss fell by "
            "`loss_reduction`, next to the minimum-nuclear-norm solution of eq. (10) "
            "(ADMM). Relative error is ||W - W*||_F / ||W*||_F; effective rank is "
            "exp(entropy of sigma / sum sigma). "
            + _completion_findings(rows, facts)
        ),
        tables={"completion": rows},
        figures={"completion": _completion_figure(rows, facts)},
        parameters=dict(size=size, rank=rank, counts=list(counts), depths=list(depths),
                        scale=scale, loss_reduction=loss_reduction, seed=seed),
        facts=facts,
    )


def _completion_findings(rows, facts) -> str:
    """What this run found, every number formatted from `rows` or `facts`."""
    text = [
        f"The ground truth has nuclear norm {facts['truth_nuclear_norm']:.4g} and "
        f"effective rank {facts['truth_effective_rank']:.4g}."
    ]
    for m in dict.fromkeys(r["observations"] for r in rows):
        mine = [r for r in rows if r["observations"] == m and r["success"]]
        if not mine:
            continue
        best = min(mine, key=lambda r: r["relative_error"])
        text.append(
            f"With {m} observed entries the lowest error is {best['relative_error']:.3g} "
            f"({best['solution']}, effective rank {best['effective_rank']:.3g})."
        )
    failed = [r for r in rows if not r["success"]]
    if failed:
        text.append(
            "Not finished (ADMM not converged, or the flow stopped by `max_steps` "
            "before the loss threshold), so not compared above: "
            + ", ".join(f"{r['solution']} at {r['observations']}" for r in failed)
            + "."
        )
    return " ".join(text)


def _completion_figure(rows, facts) -> Figure:
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 3)
    keys = ("relative_error", "nuclear_norm", "effective_rank")
    for label in dict.fromkeys(r["solution"] for r in rows):
        mine = [r for r in rows if r["solution"] == label]
        x = [r["observations"] for r in mine]
        style = "k--" if label == "min nuclear norm" else "o-"
        for ax, key in zip(axes, keys):
            ax.plot(x, [r[key] for r in mine], style, label=label)
    failed = [r for r in rows if not r["success"]]
    for ax, key in zip(axes, keys):
        ax.plot([r["observations"] for r in failed], [r[key] for r in failed], "rx", ms=10,
                label="not finished (see table)" if failed else None)
    axes[1].axhline(facts["truth_nuclear_norm"], color="gray", lw=1, ls=":")
    axes[2].axhline(facts["truth_effective_rank"], color="gray", lw=1, ls=":",
                    label="ground truth")
    for ax, name in zip(axes, ("reconstruction error ||W - W*|| / ||W*||",
                               "nuclear norm", "effective rank")):
        ax.set_xlabel("observed entries")
        ax.set_title(name, fontsize=10)
        ax.set_xscale("log")
        ticks = sorted({r["observations"] for r in rows})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
    axes[0].set_yscale("log")
    handles, labels = axes[2].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8,
               frameon=False)
    fig.suptitle("one seed per configuration", fontsize=8, x=0.99, ha="right")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


# --- Theorem 3 / Figure 3 ------------------------------------------------------------


def switch_on_times(
    solution, thresholds: Float[ArrayLike, " r"], ts: Float[ArrayLike, " k"]
) -> Float[Array, " r"]:
    """For each `r`, the first time the r-th largest singular value of the end-to-end
    matrix crosses `thresholds[r]`, from the dense solution: bracketed on the grid `ts`,
    then located by bisection on the interpolant (to `1e-10` relative). NaN if never
    crossed on the grid, or if the bisection failed (its result is checked, not
    trusted)."""
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
        found = optx.root_find(
            gap, solver, 0.5 * (lower + upper), options={"lower": lower, "upper": upper},
            throw=False,
        )
        root = jnp.where(found.result == optx.RESULTS.successful, found.value, jnp.nan)
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
            "are located by bisection on the solver's dense output. "
            + _greedy_findings(rows)
        ),
        tables={"switch_on": rows},
        figures={"singular_values": _greedy_figure(curves, target, fraction)},
        parameters=dict(size=size, rank=rank, measurements=m, depths=list(depths),
                        scale=scale, t1=t1, fraction=fraction, seed=seed),
    )


def _greedy_findings(rows) -> str:
    """The order in which the singular values switched on at each depth, from `rows`."""
    text = []
    for depth in dict.fromkeys(r["depth"] for r in rows):
        mine = [r for r in rows if r["depth"] == depth]
        on = sorted((r for r in mine if np.isfinite(r["switch_on_time"])),
                    key=lambda r: r["switch_on_time"])
        never = [r for r in mine if not np.isfinite(r["switch_on_time"])]
        said = [", ".join(f"sigma_{r['r']} at t = {r['switch_on_time']:.3g}" for r in on)]
        if len(on) > 1:
            ordered = [r["r"] for r in on] == sorted(r["r"] for r in on)
            said[0] += " (largest first)" if ordered else " (not in order of size)"
        if never:
            said.append("not switched on by t1: "
                        + ", ".join(f"sigma_{r['r']}" for r in never))
        text.append(f"Depth {depth}: " + "; ".join(x for x in said if x) + ".")
        if not all(r["success"] for r in mine):
            text.append(f"Depth {depth}: the solve did not reach t1 (success False).")
    return " ".join(text)


def _greedy_figure(curves, target, fraction) -> Figure:
    fig = Figure(figsize=(4 * len(curves) + 1.5, 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(curves), sharey=True))
    for ax, (depth, (ts, sigma, times)) in zip(axes, curves.items()):
        shown = min(sigma.shape[1], target.shape[0] + 2)
        for r in range(shown):
            ax.plot(ts, sigma[:, r], color=f"C{r}", label=f"sigma_{r + 1}(W(t))")
        for r, value in enumerate(np.asarray(target)):
            ax.axhline(value, color=f"C{r}", ls="--", lw=0.8,
                       label="sigma_r(W*), ground truth" if r == 0 else None)
        switch_on = f"switch-on: sigma_r = {fraction} sigma_r(W*)"
        for r, t in enumerate(np.asarray(times)):
            if np.isfinite(t):
                ax.axvline(t, color=f"C{r}", ls=":", lw=0.8, label=switch_on)
                switch_on = None  # one legend entry
        ax.set_title("linear (n = 1)" if depth == 1 else f"{depth}-layer network")
        ax.set_xlabel("t")
    axes[0].set_ylabel("singular values of W(t)")
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


# --- Lemma 2 / Proposition 5 ---------------------------------------------------------

# The reference solve's rtol, relative to the study's, and the relative agreement on
# det W expected of the study's solve (theory.determinant_track).
_REFERENCE_RTOL = 1e-2
_DET_AGREEMENT = 1e-2


def norms_study(
    *,
    depths: Sequence[int] = (2, 3, 4),
    W0: Sequence[Sequence[float]] = ((0.3, 0.1), (-0.05, 0.2)),
    t1: float = 5000.0,
    num_saves: int = 400,
    rtol: float = 1e-8,
    progress: bool = False,
) -> Report:
    """The 2x2 matrix sensing example of Proposition 5 from `det W(0) > 0`: every
    minimizer has `det = -1`, so by Lemma 2 the loss can approach zero only as
    `||W||` diverges, above the bound `c l^{-1/2} + c'`.

    Each depth is solved twice, at `rtol` and at `rtol * _REFERENCE_RTOL` (the
    reference): saves from the first one where the two disagree on `det W` by more than
    `_DET_AGREEMENT` relative, or where `det` changes sign (which Lemma 2 rules out),
    are past the precision floor. Values from there on are reported as
    [`Untrusted`][], never as results.
    """
    loss = theory.proposition5_loss()
    W0 = _checks.as_float_array("W0", W0)
    if W0.shape != (2, 2):
        raise ValueError(f"`W0` must be a 2x2 matrix; got shape {tuple(W0.shape)}")
    if not jnp.linalg.det(W0) > 0:
        raise ValueError(
            f"`W0` must have a positive determinant (Proposition 5); got det "
            f"{float(jnp.linalg.det(W0)):.3g}"
        )
    if not 0 < rtol < 1:
        raise ValueError(f"`rtol` must be in (0, 1); got {rtol}")
    if not t1 > 1e-2:
        raise ValueError(f"`t1` must be > 0.01 (saves are log-spaced from 0.01); got {t1}")
    if not num_saves >= 3:
        raise ValueError(f"`num_saves` must be >= 3; got {num_saves}")
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-2, t1, num_saves - 1)])
    ts = ts.at[-1].set(t1)  # geomspace may round its end off t1
    rows, curves = [], {}
    for depth in tqdm(depths, desc="norms", disable=not progress):
        elapsed = _timer()
        sol = end_to_end_flow(loss, W0, depth, t1, ts, rtol=rtol, max_steps=200_000)
        reference = end_to_end_flow(loss, W0, depth, t1, ts, rtol=rtol * _REFERENCE_RTOL,
                                    max_steps=200_000)
        track = theory.determinant_track(sol, reference, agreement=_DET_AGREEMENT)
        norms = jnp.linalg.norm(sol.end_to_end, axis=(1, 2))
        bound = theory.proposition5_norm_bound(sol.loss)
        curves[depth] = (ts, sol.loss, norms, track, sol.reached)
        trusted = np.asarray(sol.reached & ~track.at_precision_floor)
        last = int(np.flatnonzero(trusted)[-1]) if trusted.any() else None
        floor = bool(track.floor_reached)
        flag = (lambda v: Untrusted(v, "past floor")) if floor else float
        status = "; ".join(
            ["precision floor"] * floor
            + ([] if sol.success else [str(sol.message)])
            + ([] if reference.success else [f"reference: {reference.message}"])
        ) or "ok"
        rows.append({
            "depth": depth,
            "trusted_until_t": float(ts[last]) if last is not None else float("nan"),
            "loss_at_trusted_t": float(sol.loss[last]) if last is not None else float("nan"),
            "norm_at_trusted_t": float(norms[last]) if last is not None else float("nan"),
            "final_loss": flag(float(sol.loss_final)),
            "final_norm": flag(float(jnp.linalg.norm(sol.end_to_end_final))),
            "bound_holds": bool(jnp.all(jnp.where(trusted, norms >= bound, True))),
            # Saves where the bound says something (it is <= 0 for l >= l_0).
            "bound_positive_saves": int(jnp.sum(trusted & (bound > 0))),
            "det_sign_constant": bool(track.sign_constant),
            "precision_floor_reached": floor,
            "seconds": round(elapsed(), 3),
            "success": bool(sol.success) and not floor,
            "status": status,
        })
    facts = {"reference_rtol": rtol * _REFERENCE_RTOL, "det_agreement": _DET_AGREEMENT}
    return Report(
        name="norms",
        title="Norms that diverge: Proposition 5",
        description=(
            "The loss `l(W) = 1/6 [(w12 - 1)^2 + (w21 - 1)^2 + w22^2]` (eq. 15) solved by "
            "the end-to-end flow from `det W(0) > 0`. Lemma 2 keeps `det W(t) > 0` while "
            "every minimizer has `det = -1`, so ||W|| grows without bound as the loss "
            "falls; the dashed line is the bound of Proposition 5 (Frobenius norm). Each "
            f"depth is also solved at rtol {facts['reference_rtol']:.3g}: from the first "
            "save where det W disagrees with that reference by more than "
            f"{facts['det_agreement']:g} relative, or changes sign, the computed "
            "trajectory is past the precision floor and its values are marked untrusted. "
            + _norms_findings(rows)
        ),
        tables={"norms": rows},
        figures={"norm_vs_loss": _norms_figure(curves, rows)},
        parameters=dict(depths=list(depths), W0=np.asarray(W0).tolist(), t1=t1,
                        num_saves=num_saves, rtol=rtol),
        facts=facts,
    )


def _norms_findings(rows) -> str:
    """What each depth showed, every number formatted from `rows`."""
    text = []
    for r in rows:
        if r["precision_floor_reached"]:
            text.append(
                f"Depth {r['depth']}: trusted until t = {r['trusted_until_t']:.4g} "
                f"(loss {r['loss_at_trusted_t']:.3g}, ||W||_F "
                f"{r['norm_at_trusted_t']:.3g}); from the next save on det W disagrees "
                "with the reference or changes sign: the final loss and norm are marked "
                "(past floor) and the table's success is False."
            )
        elif r["success"]:
            text.append(
                f"Depth {r['depth']}: det W kept its sign to t = {r['trusted_until_t']:.4g}; "
                f"the loss fell to {r['final_loss']:.3g} while ||W||_F grew to "
                f"{r['final_norm']:.3g}."
            )
        else:
            text.append(f"Depth {r['depth']}: the solve failed ({r['status']}).")
        if r["bound_positive_saves"] == 0:
            text.append(f"Depth {r['depth']}: the bound is not positive at any trusted "
                        "save, so it was not tested.")
        else:
            text.append(
                f"Depth {r['depth']}: the norm was "
                + ("above the bound at all" if r["bound_holds"] else "NOT above the bound "
                   "at some of the")
                + f" {r['bound_positive_saves']} trusted saves where it is positive."
            )
    return " ".join(text)


def _symlog_threshold(values) -> float:
    """The linear range of a symlog axis: the power of ten at or below the smallest
    nonzero |value| shown, so every trusted value lies on the log part."""
    values = np.abs(np.asarray(values, float))
    values = values[np.isfinite(values) & (values > 0)]
    return 10.0 ** np.floor(np.log10(values.min())) if values.size else 1.0


def _norms_figure(curves, rows) -> Figure:
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    lowest, trusted_dets = 1 / 6, []
    for (depth, (ts, loss, norms, track, reached)), row in zip(curves.items(), rows):
        reached = np.asarray(reached)
        trusted = reached & ~np.asarray(track.at_precision_floor)
        ts, loss, norms, det = (np.asarray(a) for a in (ts, loss, norms, track.det))
        (line,) = left.loglog(loss[trusted], norms[trusted], label=f"n = {depth}")
        color = line.get_color()
        right.plot(ts[trusted][1:], det[trusted][1:], color=color, label=f"n = {depth}")
        if trusted.any():
            lowest = min(lowest, float(loss[trusted].min()))
            trusted_dets.append(det[trusted])
        if row["precision_floor_reached"]:
            k = int(np.argmax(np.asarray(track.at_precision_floor)))
            past = np.arange(len(ts)) >= max(k - 1, 0)
            past &= reached
            untrusted = (f"n = {depth}: past precision floor, untrusted "
                         f"(final loss {float(row['final_loss']):.2g})")
            left.loglog(loss[past], norms[past], ":", color=color, label=untrusted)
            left.plot(loss[max(k - 1, 0)], norms[max(k - 1, 0)], "x", color=color, ms=9,
                      label=f"n = {depth}: precision floor")
            right.plot(ts[past], det[past], ":", color=color, label=untrusted)
    grid = jnp.geomspace(lowest * 1e-3, 1 / 6, 200)
    bound = theory.proposition5_norm_bound(grid)
    left.loglog(grid[bound > 0], bound[bound > 0], "k--", label="Prop. 5 bound")
    # Past the floor the loss can fall by many decades more: keep the trusted part
    # readable, with three decades of the untrusted continuation.
    left.set_xlim(1 / 3, lowest * 1e-3)  # inverted: loss decreasing
    left.set(xlabel="loss (decreasing)", ylabel="||W||_F", title="norm against loss")
    left.legend(fontsize=7)
    right.set_xscale("log")
    right.set_yscale("symlog", linthresh=_symlog_threshold(np.concatenate(trusted_dets))
                     if trusted_dets else 1.0)
    right.axhline(0.0, color="gray", lw=0.8)
    right.set(xlabel="t", ylabel="det W(t) (signed, symlog)",
              title="Lemma 2: the sign of det W(t) is constant")
    right.legend(fontsize=7)
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
