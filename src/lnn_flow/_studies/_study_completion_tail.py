"""The completion study's second part (Supposition 1 / Figure 2 of the notes): how the
end-of-flow error depends on where the flow is stopped and on the init scale.

The factor flow (eq. 2) from a small init is stopped at a loss threshold, not at a
minimizer: stopped once the loss fell by `r`, the error to the ground truth can still
hold a part `~ sqrt(r)` (the residual not yet fitted; `SMALL["completion"]` shows it
at depth 3), and where the flow ends depends on the init scale. Whether a depth "beats
nuclear norm" (Supposition 1 and its counterexample, Figure 2) is therefore a
statement at a given loss reduction and init scale; this part measures both axes
over seeds.

Every solve uses `solver="auto"` ([`lnn_flow._solving._auto`][]: Tsit5, then Chebyshev or
implicit steps once the tail of the flow turns stiff) at `factor_flow`'s default
tolerances, as the first table does by default. Stops are *chained*: each init is
solved to the largest loss reduction, then continued from `factors_final` with
`t0 = t_final` to the next reduction, and so on ([`chained_stops`][]), so the
stops of one init cost about one solve to the smallest reduction. Every threshold is
relative to the loss at the init, `r * l(W(0))`, as in the first table.

Seeds are looped over with `factor_flow` (one compiled program per depth), not batched
with `solve_batch`: its keyword options, `t0` and `loss_threshold` among them, are the
same for every member (only `init` carries the batch axis), while the chained stops
need a per-member `t0` and every member's threshold is relative to its own initial
loss; and under `jax.vmap` the switching solver's `lax.cond` runs both kinds of step
for every member (`lnn_flow._solving._switching`).
"""

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm import tqdm  # tqdm.auto warns in Jupyter without ipywidgets

from .._core import _checks
from .. import init
from .._flows._factor import factor_flow
from .._maths._network import end_to_end
from ._study_rows import effective_rank

# Seed `i` of this part starts from `init.balanced(key_i, dims, scale)` with
# `key_i = fold_in(fold_in(PRNGKey(seed), TAIL_KEY), i)` (15: the issue that asked for
# this part). The key is the same for every depth and scale: `init.balanced` draws the
# end-to-end Gaussian from the same subkey for every depth, so seed `i` starts from
# the same end-to-end direction at every depth and scale.
TAIL_KEY = 15
# The step budget of each stop (the first table's too); the time horizon is a cap of
# `HORIZON_PER_ENTRY * m` (time scales with m: the loss averages over observations), as
# there: the stop is the loss threshold. At 1e5 m, depth 2 from init 1e-6 at 4000 of
# 100 x 100 entries reached the cap short of a 1e-10 reduction, which it makes at
# t = 4.9e8 (`solver="auto"` steps through long tails at little cost).
MAX_STEPS = 200_000
HORIZON_PER_ENTRY = 1e8


class Stop(NamedTuple):
    """One stop of a chain: the end-to-end matrix there, whether it was reached (`success
    & stopped`), and the steps taken from the init (all stops so far)."""

    W: Any
    finished: bool
    steps: int


class Plan(NamedTuple):
    """The second part's checked arguments: reductions from the largest (the order the
    chain reaches them), scales from the smallest, duplicates dropped; `m` is None
    when the part does not run (no `loss_reductions` and no `scales`)."""

    reductions: tuple[float, ...]
    scales: tuple[float, ...]
    seeds: int
    depths: tuple[int, ...]
    m: int | None

    def parameters(self) -> dict[str, Any]:
        return dict(loss_reductions=list(self.reductions), scales=list(self.scales),
                    seeds=self.seeds, tail_num_measurements=self.m,
                    tail_depths=list(self.depths))


def check_arguments(
    loss_reductions, scales, seeds, tail_depths, tail_num_measurements, num_measurements,
    size: int,
) -> Plan:
    """The new arguments of `completion_study`, checked before anything is solved (a
    `ValueError`/`TypeError` naming the argument)."""
    seeds = _checks.positive_int("seeds", seeds, integral_floats=False)
    reductions = _floats("loss_reductions", loss_reductions)
    bad = [r for r in reductions if not 0 < r < 1]
    if bad:
        raise ValueError(f"`loss_reductions` must lie in (0, 1); got {bad[0]!r}")
    scales = _floats("scales", scales)
    bad = [s for s in scales if not s > 0]
    if bad:
        raise ValueError(f"`scales` must be > 0; got {bad[0]!r}")
    depths = _checks.integers(tail_depths, "tail_depths")
    if not depths or any(d < 1 for d in depths):
        raise ValueError(f"`tail_depths` must be positive integers; got {depths}")
    m = tail_num_measurements
    if m is not None:
        m = _checks.positive_int("tail_num_measurements", m, integral_floats=False)
        if m > size * size:
            raise ValueError("`tail_num_measurements` must be <= the number of entries "
                             f"{size * size}; got {m}")
    elif reductions or scales:
        if not len(num_measurements):
            raise ValueError("`tail_num_measurements` is needed when `num_measurements` "
                             "is empty")
        m = int(min(num_measurements))
    return Plan(tuple(sorted(set(reductions), reverse=True)), tuple(sorted(set(scales))),
                seeds, tuple(dict.fromkeys(depths)),
                m if reductions or scales else None)


def _floats(name: str, values) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"`{name}` must be a sequence of numbers; got {values!r}")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
            raise TypeError(f"`{name}` must hold real numbers; got {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"`{name}` must be finite; got {v!r}")
        out.append(float(v))
    return tuple(out)


def seed_key(seed: int, i: int) -> jax.Array:
    """The key of seed `i` of this part (see `TAIL_KEY`)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), TAIL_KEY), i)


def chained_stops(loss, ws0, reductions: Sequence[float], t1: float) -> list[Stop]:
    """The factor flow (eq. 2) from `ws0` stopped at each of `reductions` (decreasing)
    in turn: solved to `reductions[0] * l(W(0))`, then continued from there (its
    `factors_final`, with `t0 = t_final`) to the next threshold. A stop not reached
    (the step budget or `t1` ran out, or the solve failed) ends the chain: the later
    stops are unfinished too, with `W = None`."""
    initial = float(loss(end_to_end(ws0)))
    ws, t0, steps, stops = ws0, 0.0, 0, []
    for reduction in reductions:
        if stops and not stops[-1].finished:
            stops.append(Stop(None, False, stops[-1].steps))
            continue
        sol = factor_flow(loss, ws, t1, t0=t0, solver="auto",
                          loss_threshold=reduction * initial, max_steps=MAX_STEPS)
        steps += int(sol.stats.num_steps)
        stops.append(Stop(sol.end_to_end_final, bool(sol.success & sol.stopped), steps))
        ws, t0 = sol.factors_final, float(sol.t_final)
    return stops


def stopping_and_scale_rows(
    loss, truth, m: int, *, depths, scales, reductions, seeds: int, seed: int,
    progress: bool = False, initialize=init.balanced,
) -> list[dict[str, Any]]:
    """One row per (depth, scale, loss reduction): `seeds` inits of norm `scale`
    (`initialize(key, dims, scale)`, balanced by default; keys: [`seed_key`][]), each
    solved by [`chained_stops`][] to every reduction; the error and effective rank
    over the finished seeds."""
    size_in, size_out = truth.shape[1], truth.shape[0]
    jobs = [(d, s) for d in depths for s in scales]
    rows = []
    for depth, scale in tqdm(jobs, desc="completion: stopping and scale",
                             disable=not progress):
        dims = (size_in,) + (size_out,) * depth  # square: every width is the size
        chains = [
            chained_stops(loss, initialize(seed_key(seed, i), dims, scale),
                          reductions, HORIZON_PER_ENTRY * m)
            for i in range(seeds)
        ]
        for k, reduction in enumerate(reductions):
            rows.append(_row(depth, scale, reduction, [c[k] for c in chains], truth))
    return rows


def _row(depth, scale, reduction, stops: list[Stop], truth) -> dict[str, Any]:
    done = [s for s in stops if s.finished]
    truth = np.asarray(truth)
    errors = [float(np.linalg.norm(np.asarray(s.W) - truth) / np.linalg.norm(truth))
              for s in done]
    ranks = [float(effective_rank(s.W)) for s in done]
    row = {"depth": depth, "scale": scale, "loss_reduction": reduction,
           "seeds": len(stops), "finished": len(done)}
    for name, values in (("relative_error", errors), ("effective_rank", ranks)):
        for q, label in ((0.5, "median"), (0.1, "q10"), (0.9, "q90")):
            row[f"{name}_{label}"] = float(np.quantile(values, q)) if values else math.nan
    row["steps_median"] = float(np.median([s.steps for s in done])) if done else math.nan
    return row


def closest_scale(rows, scale: float) -> float:
    """The scale among `rows` nearest `scale` on a log scale (of two as near, the
    smaller)."""
    return min(sorted({r["scale"] for r in rows}), key=lambda s: abs(math.log(s / scale)))


def findings(rows, reference_error: float, m: int, scale: float) -> str:
    """What this part found, every number formatted from `rows` or `reference_error`
    (the minimum-nuclear-norm solution's error at `m` observed entries)."""
    at = closest_scale(rows, scale)
    deepest = min(r["loss_reduction"] for r in rows)
    seeds = "/".join(str(n) for n in sorted({r["seeds"] for r in rows}))
    text = [f"Table stopping_and_scale: {seeds} balanced inits per depth and init "
            "scale, each solved with solver='auto' and stopped at every loss reduction "
            f"in turn (the stops chained), from {m} observed entries; medians over the "
            f"finished seeds, the minimum-nuclear-norm error there being "
            f"{reference_error:.3g}:"]
    ok = lambda r: r["finished"] > 0
    for depth in dict.fromkeys(r["depth"] for r in rows):
        mine = [r for r in rows if r["depth"] == depth and ok(r)]
        along = [r for r in mine if r["scale"] == at]
        if len(along) >= 2:
            first, last = along[0], along[-1]
            text.append(
                f"at depth {depth} from init scale {at:.3g} the error goes from "
                f"{first['relative_error_median']:.3g} (loss reduced by "
                f"{first['loss_reduction']:.3g}) to {last['relative_error_median']:.3g} "
                f"(by {last['loss_reduction']:.3g});")
        across = sorted((r for r in mine if r["loss_reduction"] == deepest),
                        key=lambda r: r["scale"])
        if len(across) >= 2:
            text.append(
                f"at depth {depth} and loss reduction {deepest:.3g} it goes from "
                f"{across[0]['relative_error_median']:.3g} (init scale "
                f"{across[0]['scale']:.3g}) to {across[-1]['relative_error_median']:.3g} "
                f"(init scale {across[-1]['scale']:.3g});")
    below = [r for r in rows if ok(r) and r["relative_error_median"] < reference_error]
    groups: dict[tuple, list[str]] = {}
    for r in below:
        groups.setdefault((r["depth"], r["scale"]), []).append(f"{r['loss_reduction']:.3g}")
    text.append(f"{len(below)} of {sum(ok(r) for r in rows)} configurations with a "
                "finished seed have a median error below the minimum-nuclear-norm one"
                + (": " + "; ".join(f"depth {d} at init scale {s:.3g} (loss reductions "
                                    f"{', '.join(rs)})" for (d, s), rs in groups.items())
                   if below else "") + ".")
    short = [r for r in rows if r["finished"] < r["seeds"]]
    if short:
        text.append("Not every seed finished (the step budget or the time cap ran out "
                    "before the loss threshold) in: " + "; ".join(
                        f"{_name(r)} ({r['finished']} of {r['seeds']})" for r in short)
                    + "; their statistics use the finished seeds only (NaN: none).")
    return " ".join(text)


def _name(row) -> str:
    return (f"depth {row['depth']} at scale {row['scale']:.3g}, reduction "
            f"{row['loss_reduction']:.3g}")
