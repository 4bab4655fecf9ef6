"""The flow-versus-descent study: how much of what gradient descent and SGD do is the
flow, how much the step size and how much the noise; re-exported by `lnn_flow.studies`.

On matrix sensing at each depth: gradient descent at several step sizes against the
gradient flow (eq. 2) and the order-1 modified flow of each step size
([`lnn_flow._flows._modified`][]); the maximum distance of descent from the plain and
modified flows over a grid of step sizes with fitted orders (1, 2, 3); and mini-batch
SGD over seeds against its stochastic modified equation over Brownian paths
([`lnn_flow._flows._stochastic`][]).
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from .. import init, problems
from .._core import _checks
from .._flows._compare import distance_vs_lr, max_distance_to_flow
from .._flows._descent import gradient_descent
from .._flows._factor import factor_flow
from .._flows._modified import modified_factor_flow
from .._flows._stochastic import _sampled, sgd_sde, stochastic_gradient_descent
from .._reports._report import Report
from ._figures_descent import orders_figure, trajectories_figure
from ._study_rows import timer

# Tolerances of every flow solved here: errors ~1e-10 over these horizons, three
# decades under the smallest distance the order fit measures.
_TIGHT = dict(rtol=1e-12, atol=1e-14)
QUANTILES = (0.1, 0.5, 0.9)


def descent_study(
    *,
    size: int = 5,
    rank: int = 1,
    num_measurements: int = 40,
    depths: Sequence[int] = (2, 3),
    scale: float = 0.2,
    t1: float = 8.0,
    lrs: Sequence[float] = (0.05, 0.1, 0.2),
    fit_lrs: Sequence[float] = (0.08, 0.04, 0.02),
    fit_horizon: float = 2.0,
    sgd_lr: float = 0.1,
    batch_size: int = 4,
    seeds: int = 1000,
    num_saves: int = 41,
    seed: int = 0,
    progress: bool = False,
) -> Report:
    """Flow versus descent, one order further (module docstring), on sensing of a
    `size x size` rank-`rank` truth from `num_measurements` Gaussian measurements and a
    balanced init of end-to-end norm `scale`, for each depth in `depths`:

    - descent at each step size in `lrs` on `[0, t1]` against the plain flow and the
      order-1 modified flow of that step size (table `descent`);
    - distances on `[0, fit_horizon]` over the step sizes `fit_lrs`, with the fitted
      orders of the plain flow and the order-1 and order-2 modified flows (table
      `orders`; backward error analysis predicts 1, 2 and 3);
    - SGD with step `sgd_lr` and `batch_size` over `seeds` seeds against the SDE with
      the flow's drift and with the modified drift over as many Brownian paths
      (table `noise`, quantiles `QUANTILES` in the figure), and GD and the flow.
    """
    depths = tuple(_checks.positive_int("depths", d) for d in depths)
    if not depths or min(depths) < 1:
        raise ValueError(f"`depths` must list depths >= 1; got {depths}")
    for name, values in (("lrs", lrs), ("fit_lrs", fit_lrs)):
        values = np.asarray(values, float)
        if values.ndim != 1 or values.size < (2 if name == "fit_lrs" else 1) \
                or not np.all(values > 0):
            raise ValueError(f"`{name}` must list positive step sizes"
                             f"{' (at least two, to fit an order)' if name == 'fit_lrs' else ''}; "
                             f"got {values.tolist()}")
    seeds = _checks.positive_int("seeds", seeds)
    if seeds < 10:
        raise ValueError(f"`seeds` must be >= 10 for quantiles over seeds; got {seeds}")
    num_saves = _checks.positive_int("num_saves", num_saves)
    if num_saves < 2:
        raise ValueError(f"`num_saves` must be >= 2; got {num_saves}")
    steps = int(round(t1 / sgd_lr))
    if steps % (num_saves - 1):
        raise ValueError(
            f"`num_saves` - 1 must divide the {steps} SGD steps (t1 / sgd_lr), so that "
            f"SGD and the SDE share their save times; got num_saves={num_saves}")
    key_problem, key_init, key_sgd, key_sde = jax.random.split(jax.random.PRNGKey(seed), 4)
    loss, truth = problems.random_matrix_sensing(key_problem, (size, size), rank,
                                                 num_measurements)
    _sampled(loss, batch_size, replace=False)  # the batch fits the measurements
    error = jax.vmap(lambda W: jnp.linalg.norm(W - truth) / jnp.linalg.norm(truth))
    grid = jnp.linspace(0.0, t1, 201)
    rows, orders, noise, curves, partial = [], [], [], {}, ""
    setup = dict(loss=loss, error=error, grid=grid, t1=t1, lrs=lrs, fit_lrs=fit_lrs,
                 fit_horizon=fit_horizon, sgd=(sgd_lr, steps, num_saves, batch_size, seeds,
                                               key_sgd, key_sde))
    try:
        for depth in tqdm(depths, desc="descent", disable=not progress):
            ws0 = init.balanced(key_init, (size,) * (depth + 1), scale)
            found = _one_depth(depth, ws0, **setup)
            rows += found[0]
            orders += found[1]
            noise += found[2]
            curves[depth] = found[3]
    except KeyboardInterrupt:
        if not curves:
            raise
        # Ctrl-C: the finished depths make a partial report (`lnn-flow run` writes it).
        partial = (f"interrupted (Ctrl-C) with {len(curves)} of {len(depths)} depths "
                   "finished; rerun to compute the rest")
    return Report(
        name="descent",
        title="Flow versus descent: modified flows and SGD as an SDE",
        description=_description(rows, orders, noise, size, rank, num_measurements,
                                 scale, sgd_lr, batch_size, seeds),
        tables={"descent": rows, "orders": orders, "noise": noise},
        figures={"trajectories": trajectories_figure(curves, QUANTILES, sgd_lr, batch_size),
                 "orders": orders_figure(curves)},
        facts=dict(flow_rtol=_TIGHT["rtol"], flow_atol=_TIGHT["atol"],
                   quantiles=list(QUANTILES)),
        parameters=dict(size=size, rank=rank, num_measurements=num_measurements,
                        depths=list(depths), scale=scale, t1=t1, lrs=list(lrs),
                        fit_lrs=list(fit_lrs), fit_horizon=fit_horizon, sgd_lr=sgd_lr,
                        batch_size=batch_size, seeds=seeds, num_saves=num_saves, seed=seed),
        partial=partial,
    )


def _one_depth(depth, ws0, *, loss, error, grid, t1, lrs, fit_lrs, fit_horizon, sgd):
    """One depth's rows of the three tables and its curves: descent against the flow
    and the modified flows, the order fit, SGD against its SDE."""
    elapsed = timer()
    rows, orders = [], []
    flow = factor_flow(loss, ws0, t1, grid, dense=True, **_TIGHT)
    curve = {"flow": (grid, flow.loss, error(flow.end_to_end)), "descent": []}
    for lr in lrs:
        n = int(round(t1 / lr))
        gd = gradient_descent(loss, ws0, lr, n)
        modified = modified_factor_flow(loss, ws0, t1, gd.ts, lr=lr, dense=True, **_TIGHT)
        to_flow = max_distance_to_flow(loss, flow, ws0, lr, n)
        to_modified = max_distance_to_flow(loss, modified, ws0, lr, n)
        W_flow = jax.vmap(flow.evaluate)(jnp.minimum(gd.ts, flow.t_final))
        curve["descent"].append(dict(
            lr=lr, ts=gd.ts, loss=gd.loss, error=error(gd.end_to_end),
            modified_loss=modified.loss, modified_error=error(modified.end_to_end),
            to_flow=jnp.linalg.norm(gd.end_to_end - W_flow, axis=(1, 2)),
            to_modified=jnp.linalg.norm(gd.end_to_end - modified.end_to_end, axis=(1, 2))))
        rows.append({
            "depth": depth, "lr": lr, "steps": n,
            "loss_descent": float(gd.loss_final), "loss_flow": float(flow.loss_final),
            "loss_modified_flow": float(modified.loss_final),
            "max_distance_to_flow": float(to_flow),
            "max_distance_to_modified": float(to_modified),
            "closer_by": float(to_flow / to_modified),
            "finished": bool(gd.finite & flow.success & modified.success),
        })
    short = factor_flow(loss, ws0, fit_horizon, dense=True, **_TIGHT)
    fit = distance_vs_lr(loss, short, ws0, fit_lrs, fit_horizon, modified=(1, 2))
    curve["fit"] = fit
    for f, label in zip((fit, *fit.modified), ("flow", "modified, order 1",
                                               "modified, order 2")):
        orders.append({
            "depth": depth, "flow": label, "predicted_order": f.flow_order + 1,
            "fitted_order": float(f.order), "constant": float(f.constant),
            **{f"distance_at_{lr:.4g}": float(d) for lr, d in zip(
                np.asarray(f.lrs), np.asarray(f.max_distance))},
        })
    noise = []
    curve["noise"] = _noise(loss, ws0, error, *sgd, depth, noise, flow)
    for r in rows:
        r["depth_seconds"] = round(elapsed(), 3)  # all of this depth's parts
    return rows, orders, noise, curve


# Module level, so that a second study with the same shapes reuses their programs.
@eqx.filter_jit
def _sgd_runs(loss, ws0, lr, keys, *, steps, batch_size, every):
    return jax.vmap(lambda k: stochastic_gradient_descent(
        loss, ws0, lr, steps, batch_size=batch_size, key=k, save_every=every))(keys)


@eqx.filter_jit
def _sde_paths(loss, ws0, ts, lr, keys, *, horizon, batch_size, drift):
    return jax.vmap(lambda k: sgd_sde(
        loss, ws0, horizon, ts, lr=lr, batch_size=batch_size, key=k, drift=drift))(keys)


def _noise(loss, ws0, error, lr, steps, num_saves, batch_size, seeds, key_sgd, key_sde,
           depth, noise, flow):
    """SGD over seeds, the SDE (both drifts) over paths, GD and the flow at the same
    saves; appends their rows to `noise` and returns their curves."""
    every = steps // (num_saves - 1)
    sgd = _sgd_runs(loss, ws0, lr, jax.random.split(key_sgd, seeds), steps=steps,
                    batch_size=batch_size, every=every)
    ts = sgd.ts[0]
    runs = {"SGD": sgd}
    for drift in ("flow", "modified"):
        runs[f"SDE ({drift} drift)"] = _sde_paths(
            loss, ws0, ts, lr, jax.random.split(key_sde, seeds), horizon=float(ts[-1]),
            batch_size=batch_size, drift=drift)
    runs["GD"] = gradient_descent(loss, ws0, lr, steps, save_every=every)
    W_flow = jax.vmap(flow.evaluate)(ts)
    reference = sgd.end_to_end_final
    se_ref = jnp.std(reference, axis=0) / np.sqrt(seeds)
    sgd_sd = float(np.std(np.asarray(sgd.loss)[:, -1]))
    curves = {"ts": ts, "flow_loss": jax.vmap(loss)(W_flow), "flow_error": error(W_flow)}
    for name, r in runs.items():
        final = r.end_to_end_final.reshape((-1,) + reference.shape[1:])
        finished = int(jnp.sum(r.finite if name.startswith("SGD") or name == "GD"
                               else r.success))
        spread = jnp.std(final, axis=0) / np.sqrt(final.shape[0]) if final.shape[0] > 1 \
            else jnp.zeros_like(se_ref)
        gap = jnp.max(jnp.abs(final.mean(0) - reference.mean(0))
                      / jnp.sqrt(se_ref**2 + spread**2))
        losses = np.atleast_2d(np.asarray(r.loss))
        errors = np.asarray(jax.vmap(error)(r.end_to_end)) if losses.shape[0] > 1 \
            else np.asarray(error(r.end_to_end))[None]
        curves[name] = (np.quantile(losses, QUANTILES, axis=0),
                        np.quantile(errors, QUANTILES, axis=0))
        final_loss = losses[:, -1]
        noise.append({
            "depth": depth, "run": name, "runs": losses.shape[0], "finished": finished,
            "final_loss_mean": float(final_loss.mean()),
            "final_loss_sd": float(final_loss.std()),
            "final_loss_sd_ratio_to_sgd": float(final_loss.std() / sgd_sd) if sgd_sd > 0
            else float("nan"),
            "final_error_median": float(np.median(errors[:, -1])),
            "mean_gap_to_sgd_in_se": float(gap) if name != "SGD" else 0.0,
        })
    noise.append({
        "depth": depth, "run": "flow", "runs": 1, "finished": int(bool(flow.success)),
        "final_loss_mean": float(curves["flow_loss"][-1]), "final_loss_sd": 0.0,
        "final_loss_sd_ratio_to_sgd": 0.0,
        "final_error_median": float(curves["flow_error"][-1]),
        "mean_gap_to_sgd_in_se": float(jnp.max(jnp.abs(W_flow[-1] - reference.mean(0))
                                               / se_ref)),
    })
    return curves


def _description(rows, orders, noise, size, rank, m, scale, lr, b, seeds) -> str:
    text = [
        f"Matrix sensing of a {size}x{size} rank-{rank} ground truth from {m} Gaussian "
        f"measurements, balanced init of end-to-end norm {scale}. Gradient descent with "
        "step lr is forward Euler on the flow (eq. 2); backward error analysis says its "
        "iterates follow the gradient flow of phi + (lr/4)|grad phi|^2 (the order-1 "
        "modified flow) to O(lr^2), and the order-2 modified flow to O(lr^3). Every flow "
        f"here is solved at rtol {_TIGHT['rtol']:.0e}, atol {_TIGHT['atol']:.0e}."
    ]
    for depth in dict.fromkeys(r["depth"] for r in orders):
        fitted = {r["flow"]: r["fitted_order"] for r in orders if r["depth"] == depth}
        closer = [r["closer_by"] for r in rows if r["depth"] == depth]
        text.append(
            f"Depth {depth}: fitted orders {fitted['flow']:.2f} (flow), "
            f"{fitted['modified, order 1']:.2f} (modified, order 1) and "
            f"{fitted['modified, order 2']:.2f} (modified, order 2); on [0, t1] descent "
            f"is {min(closer):.3g} to {max(closer):.3g} times closer to the modified flow "
            "than to the flow.")
        mine = {r["run"]: r for r in noise if r["depth"] == depth}
        text.append(
            f"SGD (lr {lr}, batch {b}, {seeds} seeds) against its SDE over as many "
            f"Brownian paths: final loss mean {mine['SGD']['final_loss_mean']:.4g} "
            f"(sd {mine['SGD']['final_loss_sd']:.3g}) against "
            f"{mine['SDE (modified drift)']['final_loss_mean']:.4g} "
            f"(sd {mine['SDE (modified drift)']['final_loss_sd']:.3g}, "
            f"{mine['SDE (modified drift)']['final_loss_sd_ratio_to_sgd']:.2f} times SGD's) "
            "with the modified "
            f"drift and {mine['SDE (flow drift)']['final_loss_mean']:.4g} with the flow's; "
            f"GD {mine['GD']['final_loss_mean']:.4g}, the flow "
            f"{mine['flow']['final_loss_mean']:.4g}. The end-to-end matrix's mean differs "
            f"from SGD's by at most {mine['SDE (modified drift)']['mean_gap_to_sgd_in_se']:.2f} "
            f"standard errors for the modified-drift SDE, "
            f"{mine['SDE (flow drift)']['mean_gap_to_sgd_in_se']:.2f} for the flow-drift "
            f"SDE, {mine['GD']['mean_gap_to_sgd_in_se']:.2f} for GD and "
            f"{mine['flow']['mean_gap_to_sgd_in_se']:.2f} for the flow.")
    return " ".join(text)
