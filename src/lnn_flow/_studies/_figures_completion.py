"""The completion study's second figure (Supposition 1 / Figure 2 of the notes): the
end-of-flow error against the loss reduction at which the flow stopped, and against
the init scale. Built without pyplot; it draws only the rows of the report's table
"stopping_and_scale"."""

import numpy as np
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from ._study_completion_tail import closest_scale


def stopping_and_scale_figure(rows, reference_error: float, m: int, scale: float) -> Figure:
    """Left: relative error against the loss reduction (log, deeper to the right), one
    line per depth at the init scale closest to `scale`. Right: against the init scale
    at the smallest loss reduction. Medians over the finished seeds with a q10-q90
    band; the minimum-nuclear-norm solution's error at `m` observed entries dashed;
    configurations with no finished seed marked at the bottom of the panel."""
    fig = Figure(figsize=(11, 4.4))
    left, right = fig.subplots(1, 2)
    at = closest_scale(rows, scale)
    deepest = min(r["loss_reduction"] for r in rows)
    depths = list(dict.fromkeys(r["depth"] for r in rows))
    for ax, key, keep in (
        (left, "loss_reduction", lambda r: r["scale"] == at),
        (right, "scale", lambda r: r["loss_reduction"] == deepest),
    ):
        for i, depth in enumerate(depths):
            mine = sorted((r for r in rows if r["depth"] == depth and keep(r)),
                          key=lambda r: r[key])
            _line(ax, mine, key, f"C{i}", f"depth {depth}: median, band q10-q90")
        ax.axhline(reference_error, color="k", ls="--", lw=1,
                   label=f"min nuclear norm ({m} observed entries)")
        _unfinished(ax, [r for r in rows if keep(r) and r["finished"] == 0], key)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("relative error ||W - W*||_F / ||W*||_F")
        ax.legend(fontsize=7)
    left.invert_xaxis()  # deeper reductions to the right
    left.set(xlabel="loss reduction at the stop, l(W) / l(W(0)) (deeper to the right)",
             title=f"error against the stop (init scale {at:.3g})")
    right.set(xlabel="init scale ||W(0)||_F",
              title=f"error against the init scale (loss reduction {deepest:.3g})")
    seeds = sorted({r["seeds"] for r in rows})
    fig.suptitle(f"{'/'.join(map(str, seeds))} seeds per configuration", fontsize=8,
                 x=0.99, ha="right")
    fig.tight_layout()
    return fig


def _line(ax, rows, key: str, color: str, label: str) -> None:
    x = np.array([r[key] for r in rows], float)
    med, lo, hi = (np.array([r[f"relative_error_{q}"] for r in rows], float)
                   for q in ("median", "q10", "q90"))
    ax.plot(x, med, "o-", color=color, label=label)
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
    short = [r for r in rows if 0 < r["finished"] < r["seeds"]]
    if short:
        ax.plot([r[key] for r in short], [r["relative_error_median"] for r in short],
                "o", mfc="none", mec="r", ms=11,
                label=f"{label.split(':')[0]}: some seeds not finished (see table)")


def _unfinished(ax, rows, key: str) -> None:
    """A red cross at the bottom of the panel for each configuration with no finished
    seed (its statistics are NaN)."""
    if not rows:
        return
    bottom = blended_transform_factory(ax.transData, ax.transAxes)
    x = [r[key] for r in rows]
    ax.plot(x, [0.04] * len(x), "rx", ms=10, transform=bottom,
            label="no seed finished (NaN)")
