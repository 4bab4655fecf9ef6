"""The greedy low-rank learning study: singular values of the end-to-end flow
switching on one after another (Theorem 3, Figure 3 of the notes); re-exported by
`lnn_flow.studies`."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float
from tqdm import tqdm  # tqdm.auto warns in Jupyter without ipywidgets

from .._reports import _figures
from .. import init, problems
from .._core._deprecation import renamed
from .._flows._end_to_end import end_to_end_flow
from .._maths._network import end_to_end
from .._reports._report import Report
from ._study_rows import timer

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
    num_measurements: int | None = None,
    depths: Sequence[int] = (1, 2, 3),
    scale: float = 1e-3,
    t1: float = 150.0,
    fraction: float = 0.5,
    seed: int = 0,
    progress: bool = False,
    measurements: int | None = None,
) -> Report:
    """Matrix sensing of a rank-`rank` ground truth `W*` with distinct singular values:
    singular values of the end-to-end flow (Theorem 1) over time at each depth, and the
    time each `sigma_r` switches on (first reaches `fraction * sigma_r(W*)`).

    Theorem 3: `sigma_r' = n (sigma_r^2)^{1-1/n} <-grad l, u_r v_r^T>`; with near-zero
    init the factor `(sigma_r^2)^{1-1/n}` holds small values back, so for n >= 2 they
    switch on one after another (greedy low-rank learning), more sharply with depth.

    The sensing uses `num_measurements` Gaussian measurement matrices (default
    `4 * size * rank`) and a balanced init of Frobenius norm `scale`. `measurements` is
    the deprecated name of `num_measurements` (a DeprecationWarning; removed in the next
    release).
    """
    num_measurements = renamed(
        "greedy_study", "measurements", "num_measurements", measurements, num_measurements
    )
    m = num_measurements if num_measurements is not None else 4 * size * rank
    key_problem, key_init = jax.random.split(jax.random.PRNGKey(seed))
    loss, truth = problems.random_matrix_sensing(key_problem, (size, size), rank, m)
    target = jnp.linalg.svd(truth, compute_uv=False)[:rank]
    grid = jnp.linspace(0.0, t1, 1501)
    rows, curves = [], {}
    for depth in tqdm(depths, desc="greedy", disable=not progress):
        W0 = end_to_end(init.balanced(key_init, (size,) * (depth + 1), scale))
        elapsed = timer()
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
            + _findings(rows)
        ),
        tables={"switch_on": rows},
        figures={"singular_values": _figures.greedy_figure(curves, target, fraction)},
        parameters=dict(size=size, rank=rank, num_measurements=m, depths=list(depths),
                        scale=scale, t1=t1, fraction=fraction, seed=seed),
    )


def _findings(rows) -> str:
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
