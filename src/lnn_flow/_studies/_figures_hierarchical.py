"""Figures of the hierarchical study ([`lnn_flow._studies._study_hierarchical`][]),
built without pyplot; each draws only numbers the study's rows and curves hold."""

import numpy as np
from matplotlib.figure import Figure

from .._reports._figures import positive_part
from ._figures_tensor import _log_y_if_shown, _spread_plot, _unfinished_legend


def local_components(curves) -> Figure:
    """Part a: every local component's norm over time (log-log), one panel per
    internal node, switch-on times dotted."""
    nodes = curves["nodes"]
    fig = Figure(figsize=(4.6 * len(nodes) + 2.0, 4.0))
    axes = np.atleast_1d(fig.subplots(1, len(nodes)))
    ts = np.asarray(curves["ts"])
    shown = ts > 0  # log time axis: the init is drawn at the first save
    status = "" if curves["finished"] else " (NOT finished)"
    for ax, c in zip(axes, nodes):
        for r in range(c["norms"].shape[1]):
            style = "-" if c["carries"][r] else "--"
            ax.loglog(ts[shown], positive_part(c["norms"][shown, r]), style, color=f"C{r}",
                      label=f"component {r + 1}" + ("" if c["carries"][r] else " (below cutoff)"))
        label = "switch-on time"
        for r, t in enumerate(np.asarray(c["times"])):
            if np.isfinite(t):
                ax.axvline(t, color=f"C{r}", ls=":", lw=0.9, label=label)
                label = None
        ax.set(xlabel="t", ylabel="local component norm", title=f"node {c['node']}{status}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def matricizations(curves, shown_values: int = 4) -> Figure:
    """Part a: singular values of each non-root node's matricization over time
    (log-log), the largest `shown_values` in colour and the rest grey, the truth's
    dashed; values below 1e-14 of the largest (rounding) are cut off by the axis."""
    spectra = curves["spectra"]
    columns = min(len(spectra), 3)
    rows_ = -(-len(spectra) // columns)
    fig = Figure(figsize=(4.4 * columns, 3.6 * rows_))
    axes = np.atleast_1d(fig.subplots(rows_, columns)).ravel()
    ts = np.asarray(curves["ts"])
    shown = ts > 0
    for ax, s, truth in zip(axes, spectra, curves["truth_spectra"]):
        values = np.asarray(s["values"])
        for k in range(values.shape[1]):
            top = k < shown_values
            ax.loglog(ts[shown], positive_part(values[shown, k]),
                      color=f"C{k}" if top else "0.7", lw=1.2 if top else 0.6,
                      label=f"sigma_{k + 1}" if top else
                      ("smaller singular values" if k == shown_values else None))
        truth = np.asarray(truth)
        for k, v in enumerate(truth[truth > 1e-12 * truth[0]]):
            ax.axhline(v, color="k", ls="--", lw=0.7, label="truth" if k == 0 else None)
        ax.set_ylim(bottom=1e-14 * max(values.max(), truth.max()))
        ax.set(xlabel="t", ylabel="singular value", title=f"matricization {s['node']}")
        ax.legend(fontsize=6)
    for ax in axes[len(spectra):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def comparison(rows) -> Figure:
    """Part b: error and effective hierarchical rank against the init scale, one curve
    per factorization (median, min-max over the finished seeds)."""
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    partial = False
    for marker, label in zip("osd", dict.fromkeys(r["factorization"] for r in rows)):
        mine = [r for r in rows if r["factorization"] == label]
        partial |= _spread_plot(left, mine, "scale", "error", label, marker)
        _spread_plot(right, mine, "scale", "hierarchical_rank", label, marker)
    _log_y_if_shown(left, rows, "error")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("init scale")
        if partial:
            _unfinished_legend(ax)
        ax.legend(fontsize=7)
    left.set(ylabel="relative error ||W - W*|| / ||W*||", title="reconstruction error")
    right.set(ylabel="effective rank, mean over tree nodes",
              title="effective hierarchical rank")
    fig.tight_layout()
    return fig
