"""Figures of the tensor study ([`lnn_flow._studies._study_tensor`][]), built without pyplot
like those of [`lnn_flow._reports._figures`][]: each draws only numbers the study's rows and
curves hold."""

import numpy as np
from matplotlib.figure import Figure

from .._reports._figures import positive_part


def components_figure(curves, fraction: float) -> Figure:
    """Part a: `||W_r(t)||` over time (log-log), one curve per component, the truth's
    component norms dashed, switch-on times dotted; one panel per order."""
    fig = Figure(figsize=(5.2 * len(curves) + 2.2, 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(curves)))
    for ax, c in zip(axes, curves):
        ts = np.asarray(c["ts"])
        shown = ts > 0  # log time axis: t = 0 (the init) is drawn at the first save
        for r in range(c["norms"].shape[1]):
            style = "-" if c["carries"][r] else "--"
            ax.loglog(ts[shown], positive_part(c["norms"][shown, r]), style,
                      color=f"C{r}", label=f"component {r + 1}"
                      + ("" if c["carries"][r] else " (does not carry)"))
        for s, value in enumerate(np.sort(np.asarray(c["truth_norms"]))[::-1]):
            ax.axhline(value, color="k", ls=(0, (5, 3)), lw=0.7,
                       label="truth component norms" if s == 0 else None)
        label = f"switch-on: {fraction:g} of final norm"
        for r, t in enumerate(np.asarray(c["times"])):
            if np.isfinite(t):
                ax.axvline(t, color=f"C{r}", ls=":", lw=0.9, label=label)
                label = None
        status = "" if c["finished"] else " (NOT finished)"
        ax.set(xlabel="t", ylabel="component norm ||W_r(t)||_F",
               title=f"order {c['order']}, {c['shape']}{status}")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def _spread_plot(ax, rows, x_key, key, label, marker="o"):
    """Median against `x_key` with min-max error bars; configurations with unfinished
    seeds ringed in red, those with none finished marked by a red x at the bottom.
    Returns whether any seed was not finished."""
    x = np.array([r[x_key] for r in rows], float)
    med = np.array([r[f"{key}_median"] for r in rows], float)
    low = np.array([r[f"{key}_min"] for r in rows], float)
    high = np.array([r[f"{key}_max"] for r in rows], float)
    bars = ax.errorbar(x, med, yerr=[med - low, high - med], fmt=f"{marker}-",
                       capsize=3, label=label)
    color = bars.lines[0].get_color()
    partial = np.array([0 < r["finished"] < r["seeds"] for r in rows])
    none = np.array([r["finished"] == 0 for r in rows])
    ax.plot(x[partial], med[partial], "o", ms=11, mfc="none", mec="r", color=color)
    ax.plot(x[none], np.full(none.sum(), 0.04), "x", ms=9, mew=2, color=color,
            mec="r", transform=ax.get_xaxis_transform())
    return bool(partial.any() or none.any())


def _unfinished_legend(ax):
    """Legend entries for the marks of `_spread_plot`."""
    ax.plot([], [], "o", ms=11, mfc="none", mec="r",
            label="ringed: some seeds not finished (excluded)")
    ax.plot([], [], "x", ms=9, mew=2, mec="r", label="x at the bottom: no seed finished")


def _log_y_if_shown(ax, rows, key):
    """A log y axis, unless no finished seed left a value to draw (all NaN)."""
    values = np.array([r[f"{key}_{q}"] for r in rows for q in ("min", "max")], float)
    if np.any(np.isfinite(values) & (values > 0)):
        ax.set_yscale("log")


def init_scale_figure(rows, rank: int) -> Figure:
    """Part b: relative error and effective tensor rank against the init scale, one
    curve per number of observed entries (median, min-max over finished seeds)."""
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    partial = False
    for m in dict.fromkeys(r["observed"] for r in rows):
        mine = [r for r in rows if r["observed"] == m]
        partial |= _spread_plot(left, mine, "scale", "error", f"{m} observed")
        _spread_plot(right, mine, "scale", "tensor_rank", f"{m} observed")
    right.axhline(rank, color="k", ls="--", lw=0.8, label=f"truth CP rank {rank}")
    if partial:
        _unfinished_legend(left)
    _log_y_if_shown(left, rows, "error")
    left.set(xscale="log", xlabel="init scale (component norm)",
             ylabel="||W - W*|| / ||W*||", title="reconstruction error")
    right.set(xscale="log", xlabel="init scale (component norm)",
              ylabel="components carrying the solution",
              title="effective tensor rank")
    for ax in (left, right):
        ax.legend(fontsize=7)
    seeds = max(r["seeds"] for r in rows)
    fig.suptitle(f"median and min-max over up to {seeds} seeds (finished solves)",
                 fontsize=8, x=0.99, ha="right")
    fig.tight_layout()
    return fig


def matrix_view_figure(rows, truth_rank: float) -> Figure:
    """Part c: the CP flow against the depth-N factor flow on the mode-1 unfolding:
    error and the unfolding's effective rank against the observed entries."""
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    partial = False
    for i, flow in enumerate(dict.fromkeys(r["flow"] for r in rows)):
        mine = [r for r in rows if r["flow"] == flow]
        marker = "os"[i % 2]
        partial |= _spread_plot(left, mine, "observed", "error", flow, marker)
        _spread_plot(right, mine, "observed", "unfolding_effective_rank", flow, marker)
    right.axhline(truth_rank, color="k", ls="--", lw=0.8,
                  label=f"ground truth's unfolding ({truth_rank:.3g})")
    if partial:
        _unfinished_legend(left)
    ticks = sorted({r["observed"] for r in rows})
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("observed entries")
        ax.legend(fontsize=7)
    _log_y_if_shown(left, rows, "error")
    left.set(ylabel="||W - W*|| / ||W*||",
             title="reconstruction error (median, min-max over finished seeds)")
    right.set(ylabel="effective rank of the mode-1 unfolding",
              title="rank of the unfolded solution")
    fig.tight_layout()
    return fig
