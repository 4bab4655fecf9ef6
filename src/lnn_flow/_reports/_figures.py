"""Figures: every figure a report draws, built without pyplot (no GUI backend).

Each takes the numbers its study computed (rows and curves) and only draws them, so
what a figure shows is what the report's tables hold.
"""

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from .. import theory


# --- the demo: both flows over time ---------------------------------------------------


def positive_part(values):
    """Values for a log axis: zeros (e.g. exact agreement at t = 0) are masked."""
    values = np.asarray(values, float)
    return np.where(values > 0, values, np.nan)


def demo_figure(curves, atol: float, agreement: float | None = None) -> Figure:
    """Both flows over time per depth: loss, the factor/end-to-end gap (Theorem 1:
    zero) and Lemma 1's conserved D_j, against the factor flow's `atol`. Losses from
    a curve's `past_floor` saves on (the flows differ by more than `agreement`) are
    drawn dotted, as untrusted."""
    fig = Figure(figsize=(13, 4))
    left, middle, right = fig.subplots(1, 3)
    any_floor = False
    for i, (depth, c) in enumerate(curves.items()):
        color = f"C{i}"
        floor = np.asarray(c.get("past_floor", np.zeros(len(c["ts"]), bool)))
        trusted = lambda v: np.where(floor, np.nan, v)
        left.semilogy(c["ts"], trusted(c["loss_factor"]), color=color,
                      label=f"n = {depth}: factor flow")
        # Markers: the two flows agree to ~the tolerance, so a plain line would hide.
        left.semilogy(c["ts"], trusted(c["loss_end_to_end"]), "x", ms=4, markevery=5,
                      color=color, label=f"n = {depth}: end-to-end flow")
        if floor.any():
            any_floor = True
            start = max(int(np.argmax(floor)) - 1, 0)  # joins the solid part
            for key in ("loss_factor", "loss_end_to_end"):
                left.semilogy(c["ts"][start:], c[key][start:], ":", lw=1, color=color,
                              label=None if key == "loss_end_to_end" else
                              f"n = {depth}: past floor")
        middle.semilogy(c["ts"], positive_part(c["gap"]), color=color, label=f"n = {depth}")
        if depth >= 2:
            right.semilogy(c["ts"], positive_part(c["unbalancedness"]), color=color,
                           label=f"n = {depth}: max_j ||D_j(t)||_F")
    for ax in (middle, right):
        ax.axhline(atol, color="k", ls=":", lw=0.8,
                   label=f"factor flow atol {atol:.0e}")
    why = "" if agreement is None else f", the flows differ > {agreement:.0e}"
    left.set(xlabel="t", ylabel="loss l(W(t))", title="loss along both flows" + (
        f"\n(dotted: past floor{why})" if any_floor else ""))
    middle.set(xlabel="t", ylabel="max_ij |(W_n...W_1 - W)_ij|",
               title="factor vs end-to-end gap\n(Theorem 1: zero)")
    right.set(xlabel="t", ylabel="Frobenius norm",
              title="D_j = W_{j+1}^T W_{j+1} - W_j W_j^T\n(Lemma 1: constant; "
              "balanced init: zero)")
    left.legend(fontsize=7, loc="lower left")
    for ax in (middle, right):
        ax.legend(fontsize=7)
    if not any(depth >= 2 for depth in curves):
        right.text(0.5, 0.5, "depth 1 only: no D_j", ha="center",
                   transform=right.transAxes)
    fig.tight_layout()
    return fig


# --- sweeps ---------------------------------------------------------------------------


def sweep_loss_figure(rows: Sequence[dict[str, Any]], varying: Sequence[str], title: str):
    """The final loss per configuration (median, q10 to q90 over its finished seeds;
    log scale), one line per `report_rows` row, labelled by its varying parameters and
    `finished/seeds`. Rows where seeds failed or did not finish are drawn in red; a row
    with none finished has no marker, its label says so."""
    figure = Figure(figsize=(6.5, 1.2 + 0.35 * len(rows)))
    ax = figure.subplots()
    done = [r["finished"] for r in rows]
    labels = [", ".join(str(r[k]) for k in varying) + f"  ({d}/{r['seeds']} finished)"
              for r, d in zip(rows, done)]
    medians = np.array([r.get("loss_final_median", np.nan) for r in rows], float)
    spread = np.array([[m - r.get("loss_final_q10", m) for m, r in zip(medians, rows)],
                       [r.get("loss_final_q90", m) - m for m, r in zip(medians, rows)]])
    partial = np.array([d < r["seeds"] for r, d in zip(rows, done)], bool)
    y = np.arange(len(rows))
    for mask, color, label in ((~partial, "C0", "every seed finished"),
                               (partial, "C3", "some seeds failed or unfinished")):
        if mask.any() and np.isfinite(medians[mask]).any():
            ax.errorbar(medians[mask], y[mask], xerr=spread[:, mask], fmt="o", capsize=3,
                        color=color, label=label)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xscale="log", xlabel="final loss (median, q10 to q90 over finished seeds)",
           ylabel=", ".join(varying), title=title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


# --- Supposition 1 / Figure 2 --------------------------------------------------------


def completion_figure(rows, facts) -> Figure:
    """Supposition 1 / Figure 2: error, nuclear norm and effective rank of each
    solution against the observed entries (failed solves marked), truth dotted."""
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


def greedy_figure(curves, target, fraction) -> Figure:
    """Theorem 3 / Figure 3: singular values of W(t) per depth against the truth's,
    with the switch-on times (sigma_r reaching `fraction` of sigma_r(W*))."""
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


def symlog_threshold(values) -> float:
    """The linear range of a symlog axis: the power of ten at or below the smallest
    nonzero |value| shown, so every trusted value lies on the log part."""
    values = np.abs(np.asarray(values, float))
    values = values[np.isfinite(values) & (values > 0)]
    return 10.0 ** np.floor(np.log10(values.min())) if values.size else 1.0


def norms_figure(curves, rows) -> Figure:
    """Proposition 5 and Lemma 2: ||W|| against the loss with the bound, and det W(t)
    keeping its sign; values past the precision floor drawn dotted as untrusted."""
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
    right.set_yscale("symlog", linthresh=symlog_threshold(np.concatenate(trusted_dets))
                     if trusted_dets else 1.0)
    right.axhline(0.0, color="gray", lw=0.8)
    right.set(xlabel="t", ylabel="det W(t) (signed, symlog)",
              title="Lemma 2: the sign of det W(t) is constant")
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig
