"""The built-in default study: matrix sensing solved by both flows at depths 1-3."""

import time

import jax
import jax.numpy as jnp

from . import init, problems
from ._end_to_end import end_to_end_flow
from ._factor import factor_flow
from ._network import unbalancedness, unbalancedness_matrices


def matrix_sensing_study(
    dim: int = 20,
    rank: int = 2,
    num_measurements: int = 160,
    scale: float = 1e-3,
    t1: float = 60.0,
    depths: tuple[int, ...] = (1, 2, 3),
    num_saves: int = 61,
    seed: int = 0,
) -> list[dict]:
    """Solve one matrix-sensing problem (eq. 9) by the factor flow (eq. 2) and the
    end-to-end flow (Theorem 1) from the same balanced near-zero init, per depth.

    Returns one row per depth: final losses, the largest gap between the product of
    the factor trajectory and the end-to-end trajectory over the saves, the drift of
    the conserved unbalancedness (Lemma 1), distance to the ground truth, steps, times.
    """
    k_problem, k_init = jax.random.split(jax.random.PRNGKey(seed))
    loss, truth = problems.random_matrix_sensing(
        k_problem, (dim, dim), rank, num_measurements
    )
    ts = jnp.linspace(0.0, t1, num_saves)
    rows = []
    for depth in depths:
        ws0 = init.balanced(k_init, (dim,) * (depth + 1), scale)
        start = time.perf_counter()
        factor = factor_flow(loss, ws0, t1, ts)
        jax.block_until_ready(factor.loss)
        factor_time = time.perf_counter() - start
        start = time.perf_counter()
        e2e = end_to_end_flow(loss, factor.end_to_end[0], depth, t1, ts)
        jax.block_until_ready(e2e.loss)
        e2e_time = time.perf_counter() - start
        conserved0 = unbalancedness_matrices(ws0)
        drift = max(
            (
                float(jnp.abs(g - g0).max())
                for k in range(num_saves)
                for g, g0 in zip(
                    unbalancedness_matrices(tuple(f[k] for f in factor.factors)),
                    conserved0,
                )
            ),
            default=0.0,
        )
        rows.append(
            {
                "depth": depth,
                "loss_factor": float(factor.loss_final),
                "loss_end_to_end": float(e2e.loss_final),
                "max_gap": float(jnp.abs(factor.end_to_end - e2e.end_to_end).max()),
                "unbalancedness_t0": float(unbalancedness(ws0)),
                "unbalancedness_drift": drift,
                "relative_error_to_truth": float(
                    jnp.linalg.norm(e2e.end_to_end_final - truth) / jnp.linalg.norm(truth)
                ),
                "steps_factor": int(factor.stats.num_steps),
                "steps_end_to_end": int(e2e.stats.num_steps),
                "seconds_factor": factor_time,
                "seconds_end_to_end": e2e_time,
                "success": bool(factor.success) and bool(e2e.success),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    header = (
        f"{'depth':>5} {'loss (factor)':>14} {'loss (e2e)':>11} {'max gap':>9} "
        f"{'unbal. t0':>9} {'drift':>9} {'rel.err W*':>10} {'steps f/e2e':>11} "
        f"{'s f/e2e*':>11} {'ok':>3}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['depth']:>5} {r['loss_factor']:>14.3e} {r['loss_end_to_end']:>11.3e} "
            f"{r['max_gap']:>9.1e} {r['unbalancedness_t0']:>9.1e} "
            f"{r['unbalancedness_drift']:>9.1e} {r['relative_error_to_truth']:>10.3e} "
            f"{r['steps_factor']:>5}/{r['steps_end_to_end']:<5} "
            f"{r['seconds_factor']:>5.2f}/{r['seconds_end_to_end']:<5.2f} "
            f"{'yes' if r['success'] else 'NO':>3}"
        )
    lines.append("* wall seconds including compilation (first call per shape)")
    return "\n".join(lines)


