"""Figures of the flow-versus-descent study ([`lnn_flow._studies._study_descent`][]),
built without pyplot; each draws only numbers the study computed."""

import numpy as np
from matplotlib.figure import Figure

from .._reports._figures import positive_part


def trajectories_figure(curves, quantiles, sgd_lr, batch_size) -> Figure:
    """Loss (log scale) and relative error over time, one column per depth: the flow,
    descent at each step size with its order-1 modified flow, and SGD over seeds and its
    SDE over Brownian paths as median lines with bands between the outer quantiles; then
    descent's distance from the flow and from its modified flow along time."""
    depths = list(curves)
    fig = Figure(figsize=(6.0 * len(depths), 12.0))
    axes = np.asarray(fig.subplots(3, len(depths), squeeze=False))
    lo, hi = f"{quantiles[0]:.0%}", f"{quantiles[-1]:.0%}"
    for column, depth in enumerate(depths):
        c = curves[depth]
        for row, (what, label) in enumerate((("loss", "loss"),
                                              ("error", "||W - W*|| / ||W*||"))):
            ax = axes[row, column]
            index = 1 if what == "loss" else 2
            ax.plot(c["flow"][0], positive_part(np.asarray(c["flow"][index])), "k-", lw=1.6,
                    label="gradient flow (eq. 2)")
            for k, d in enumerate(c["descent"]):
                color = f"C{k + 2}"
                ts = np.asarray(d["ts"])
                every = max(1, len(ts) // 25)
                ax.plot(ts[::every], positive_part(np.asarray(d[what])[::every]), "o",
                        ms=3.5, color=color, label=f"GD, lr {d['lr']:g}")
                ax.plot(ts, positive_part(np.asarray(d[f"modified_{what}"])), "--",
                        color=color, lw=1.1, label=f"modified flow, lr {d['lr']:g}")
            n = c["noise"]
            ts = np.asarray(n["ts"])
            for name, color, style in (("SGD", "C0", "-"), ("SDE (modified drift)", "C1", "--")):
                q = np.asarray(n[name][0 if what == "loss" else 1])
                ax.plot(ts, positive_part(q[len(quantiles) // 2]), style, color=color, lw=1.4,
                        label=f"{name} median (lr {sgd_lr:g}, batch {batch_size})")
                ax.fill_between(ts, positive_part(q[0]), positive_part(q[-1]), color=color,
                                alpha=0.2, label=f"{name} {lo}-{hi}")
            if what == "loss":
                ax.set_yscale("log")
            else:
                ax.axhline(0.0, color="0.5", lw=0.6)
            ax.set(xlabel="t (GD and SGD: step k at t = k lr)", ylabel=label,
                   title=f"depth {depth}: {what}")
            ax.legend(fontsize=6.5, ncol=2)
        ax = axes[2, column]
        for k, d in enumerate(c["descent"]):
            ts = np.asarray(d["ts"])[1:]  # both start at the init: distance 0
            ax.semilogy(ts, positive_part(np.asarray(d["to_flow"])[1:]), "-", color=f"C{k + 2}",
                        label=f"GD lr {d['lr']:g} to the flow")
            ax.semilogy(ts, positive_part(np.asarray(d["to_modified"])[1:]), "--",
                        color=f"C{k + 2}", label=f"GD lr {d['lr']:g} to its modified flow")
        ax.set(xlabel="t = k lr", ylabel="||W_k - W(k lr)||",
               title=f"depth {depth}: descent's distance along time")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def orders_figure(curves) -> Figure:
    """Maximum distance of descent from the flow and from the modified flows against
    the step size (log-log), each with its least-squares line and fitted order."""
    depths = list(curves)
    fig = Figure(figsize=(5.2 * len(depths), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(depths)))
    names = ("gradient flow", "modified flow, order 1", "modified flow, order 2")
    for ax, depth in zip(axes, depths):
        fit = curves[depth]["fit"]
        for k, (f, name) in enumerate(zip((fit, *fit.modified), names)):
            lrs, d = np.asarray(f.lrs), np.asarray(f.max_distance)
            ax.loglog(lrs, d, "o", color=f"C{k}", label=f"{name} (predicted order {k + 1})")
            ax.loglog(lrs, float(f.constant) * lrs ** float(f.order), "-", color=f"C{k}",
                      lw=0.9, label=f"fit: order {float(f.order):.2f}")
        horizon = float(np.asarray(fit.lrs)[0] * np.asarray(fit.steps)[0])
        ax.set(xlabel="step size lr", ylabel="max_k ||W_k - W(k lr)||",
               title=f"depth {depth}: descent's distance to each flow on [0, {horizon:g}]")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
