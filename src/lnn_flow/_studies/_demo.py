"""The built-in default study: matrix sensing solved by both flows at depths 1-3.

`demo_report` returns it as a `Report` (table, figure of both flows over time,
summary).

The two flows are one trajectory (Theorem 1) solved independently, so each checks the
other: where their losses differ by more than [`AGREEMENT`][] (relative), at least one
of them is off by that much, the loss having fallen to the solves' accuracy floor (at
depth 1 it keeps falling exponentially). From there on the losses are marked
`past floor` in the table, CSV, JSON and summary and drawn dotted in the figure: what
they show is solver error, not the flow's loss.
"""

import time

import diffrax

import jax
import jax.numpy as jnp
import numpy as np

from .._reports import _figures, _table
from .. import init, problems
from .._flows._end_to_end import default_atol, end_to_end_flow
from .._flows._factor import factor_flow
from .._maths._network import unbalancedness_matrices
from .._reports._report import Report, Untrusted

# What the demo solves with, passed explicitly and stated from these values. The
# end-to-end flow keeps its own atol, min(1e-10, 1e-2 rtol max|W0|) (`default_atol`).
SOLVER = diffrax.Tsit5()
RTOL = 1e-8
FACTOR_ATOL = 1e-10
# With JAX's 64-bit mode off (`LNN_FLOW_NO_X64=1`) the problem is float32 (eps 1.2e-7):
# tolerances it resolves, two decades above its eps.
RTOL_FLOAT32 = 1e-5
FACTOR_ATOL_FLOAT32 = 1e-8


def tolerances(dtype) -> tuple[float, float]:
    """`(rtol, factor atol)` of the demo's solves for a problem of `dtype`."""
    if np.finfo(dtype).eps > 1e-10:
        return RTOL_FLOAT32, FACTOR_ATOL_FLOAT32
    return RTOL, FACTOR_ATOL
# Relative difference of the two flows' losses past which neither is trusted: the
# table prints losses to 4 significant digits (rounding: up to 5e-4 relative).
AGREEMENT = 1e-4
PAST_FLOOR = "past floor"


def past_floor(loss_factor, loss_end_to_end) -> np.ndarray:
    """Per save: from the first save (both reached) where the two flows' losses differ
    by more than `AGREEMENT` relative to the larger one, on. Theorem 1 makes them
    equal, so a larger difference is the error of at least one solve."""
    a, b = np.asarray(loss_factor), np.asarray(loss_end_to_end)
    reached = np.isfinite(a) & np.isfinite(b)
    off = reached & ~(np.abs(a - b) <= AGREEMENT * np.maximum(np.abs(a), np.abs(b)))
    return np.cumsum(off) > 0


FLOOR_NOTE = (
    f"past the solves' accuracy floor: the two flows' losses differ there by more than "
    f"{AGREEMENT:.0e} (relative), so they show solver error, not the flow's loss"
)
FLOOR_TEXT = f"Losses marked `({PAST_FLOOR})` are {FLOOR_NOTE} (dotted in the figure)."


def _conserved(factors) -> tuple[np.ndarray, np.ndarray]:
    """Along the saves: `max_j ||D_j(t)||_F` and `max_j ||D_j(t) - D_j(0)||_F` for the
    matrices `D_j = W_{j+1}^T W_{j+1} - W_j W_j^T` of Lemma 1 (zeros for depth 1)."""
    num_saves = factors[0].shape[0]
    if len(factors) < 2:
        return np.zeros(num_saves), np.zeros(num_saves)
    ds = jax.vmap(lambda *ws: jnp.stack(unbalancedness_matrices(ws)))(*factors)
    size = np.asarray(jnp.linalg.norm(ds, axis=(-2, -1)).max(-1))
    drift = np.asarray(jnp.linalg.norm(ds - ds[:1], axis=(-2, -1)).max(-1))
    return size, drift


def _study(dim, rank, num_measurements, scale, t1, depths, num_saves, seed):
    """Rows (one per depth) and the curves over time the figure draws."""
    k_problem, k_init = jax.random.split(jax.random.PRNGKey(seed))
    loss, truth = problems.random_matrix_sensing(
        k_problem, (dim, dim), rank, num_measurements
    )
    ts = jnp.linspace(0.0, t1, num_saves)
    dtype = np.dtype(truth.dtype)
    rtol, factor_atol = tolerances(dtype)
    rows, curves = [], {}
    for depth in depths:
        ws0 = init.balanced(k_init, (dim,) * (depth + 1), scale)
        start = time.perf_counter()
        factor = factor_flow(loss, ws0, t1, ts, solver=SOLVER, rtol=rtol,
                             atol=factor_atol)
        jax.block_until_ready(factor.loss)
        factor_time = time.perf_counter() - start
        W0 = factor.end_to_end[0]
        start = time.perf_counter()
        e2e = end_to_end_flow(loss, W0, depth, t1, ts, solver=SOLVER, rtol=rtol)
        jax.block_until_ready(e2e.loss)
        e2e_time = time.perf_counter() - start
        gap = np.asarray(jnp.abs(factor.end_to_end - e2e.end_to_end).max(axis=(1, 2)))
        size, drift = _conserved(factor.factors)
        floor = past_floor(factor.loss, e2e.loss)
        curves[depth] = dict(
            ts=np.asarray(ts), loss_factor=np.asarray(factor.loss),
            loss_end_to_end=np.asarray(e2e.loss), gap=gap, unbalancedness=size,
            drift=drift, past_floor=floor,
        )
        # The final losses are the last save's (ts ends at t1).
        flag = (lambda v: Untrusted(v, PAST_FLOOR)) if floor[-1] else float
        rows.append(
            {
                "depth": depth,
                "loss_factor": flag(float(factor.loss_final)),
                "loss_end_to_end": flag(float(e2e.loss_final)),
                # NaN (not a number) wherever a solve did not reach a save.
                "max_gap": float(np.max(gap)),
                "unbalancedness_t0": float(size[0]),
                "unbalancedness_drift": float(np.max(drift)),
                "relative_error_to_truth": float(
                    jnp.linalg.norm(e2e.end_to_end_final - truth) / jnp.linalg.norm(truth)
                ),
                "steps_factor": int(factor.stats.num_steps),
                "steps_end_to_end": int(e2e.stats.num_steps),
                "seconds_factor": factor_time,
                "seconds_end_to_end": e2e_time,
                "dtype": dtype.name,
                "rtol": rtol,
                "atol_factor": factor_atol,
                "atol_end_to_end": float(default_atol(W0, rtol)),
                "success": bool(factor.success) and bool(e2e.success),
            }
        )
    return rows, curves


def describe(dim, rank, num_measurements, scale, t1, rows) -> str:
    """What was solved, with the tolerances the solves used (not fixed prose)."""
    atol_text = ", ".join(dict.fromkeys(f"{r['atol_end_to_end']:.1e}" for r in rows))
    first = rows[0]
    return (
        f"Matrix sensing: {dim}x{dim} ground truth of rank {rank}, {num_measurements} "
        f"Gaussian measurements, balanced init of norm {scale}, t1 = {t1}.\n"
        f"Factor flow (eq. 2) vs end-to-end flow (Theorem 1), {type(SOLVER).__name__}, "
        f"{first['dtype']}, rtol {first['rtol']:.0e}; atol {first['atol_factor']:.0e} "
        f"(factor flow) and min(1e-10, 1e-2 rtol max|W0|) = {atol_text} (end-to-end "
        "flow)."
    )


def demo_report(
    dim: int = 20,
    rank: int = 2,
    num_measurements: int = 160,
    scale: float = 1e-3,
    t1: float = 60.0,
    depths: tuple[int, ...] = (1, 2, 3),
    num_saves: int = 61,
    seed: int = 0,
) -> Report:
    """Solve one matrix-sensing problem (eq. 9) by the factor flow (eq. 2) and the
    end-to-end flow (Theorem 1) from the same balanced near-zero init, per depth, as a
    report folder.

    The table has one row per depth: final losses, the largest gap between the product
    of the factor trajectory and the end-to-end trajectory over the saves, the drift of
    the conserved unbalancedness (Lemma 1), distance to the ground truth, steps, times.
    The figure shows both flows over time (loss, the factor/end-to-end gap, Lemma 1's conserved quantities)."""
    rows, curves = _study(dim, rank, num_measurements, scale, t1, depths, num_saves,
                          seed)
    return Report(
        name="demo",
        title="Factor flow vs end-to-end flow on matrix sensing",
        description=(
            describe(dim, rank, num_measurements, scale, t1, rows)
            + "\n\nmax_gap: largest |W_n...W_1 - W| over the saves (Theorem 1 says 0); "
            "unbalancedness_drift: largest change of W_{j+1}^T W_{j+1} - W_j W_j^T "
            "(Lemma 1 says 0); seconds include compilation (first call per shape).\n\n"
            + FLOOR_TEXT
        ),
        tables={"demo": rows},
        figures={"flows": _figures.demo_figure(curves, FACTOR_ATOL, AGREEMENT)},
        parameters=dict(dim=dim, rank=rank, num_measurements=num_measurements,
                        scale=scale, t1=t1, depths=list(depths), num_saves=num_saves,
                        seed=seed),
    )


def _loss(value) -> str:
    return f"{value:.3e}" + ("^" if isinstance(value, Untrusted) else "")


def format_table(rows: list[dict]) -> str:
    """The demo's rows for a terminal, each quantity at the precision it is read at
    (losses to 4 digits, agreement gaps to 2), via the one table printer; losses past
    the accuracy floor end in `^`."""
    header = ["depth", "loss (factor)", "loss (e2e)", "max gap", "unbal. t0", "drift",
              "rel.err W*", "steps f/e2e", "s f/e2e*", "ok"]
    body = [
        [
            str(r["depth"]), _loss(r["loss_factor"]), _loss(r["loss_end_to_end"]),
            f"{r['max_gap']:.1e}", f"{r['unbalancedness_t0']:.1e}",
            f"{r['unbalancedness_drift']:.1e}", f"{r['relative_error_to_truth']:.3e}",
            f"{r['steps_factor']}/{r['steps_end_to_end']}",
            f"{r['seconds_factor']:.2f}/{r['seconds_end_to_end']:.2f}",
            "yes" if r["success"] else "NO",
        ]
        for r in rows
    ]
    footer = "* wall seconds including compilation (first call per shape)"
    losses = [r[k] for r in rows for k in ("loss_factor", "loss_end_to_end")]
    if any(isinstance(v, Untrusted) for v in losses):
        footer += f"\n^ {FLOOR_NOTE}"
    return _table.aligned(header, body, rule=True) + "\n" + footer
