"""What the studies (`lnn_flow.studies`) share: the solvers a study's `solver` names,
the effective rank, a table row comparing a solution with the ground truth, and a
wall-clock timer."""

import time
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from .._sweeps._sweep_summary import effective_rank as _effective_rank_of_singular_values

# A study's `solver` argument -> the flows' `solver` (None: their default, Tsit5).
SOLVERS = {"auto": "auto", "tsit5": None}


def effective_rank(W: Float[ArrayLike, "*batch dn d0"]) -> np.ndarray:
    """Effective rank of Roy & Vetterli (2007), `exp(H(p))` for the distribution
    `p_r = sigma_r / sum(sigma)`: the rank when the nonzero singular values are equal,
    degrading smoothly with their spread (the measure the sweep summaries use)."""
    return _effective_rank_of_singular_values(np.linalg.svd(np.asarray(W), compute_uv=False))


def solution_row(label, W, truth, train_loss, seconds, success, **extra) -> dict[str, Any]:
    """One table row: the solution `W` named `label` against the ground truth `truth`
    (relative Frobenius error, nuclear norm, effective rank), with `extra` columns after
    the label."""
    W = jnp.asarray(W)
    return {
        "solution": label,
        **extra,
        "relative_error": float(jnp.linalg.norm(W - truth) / jnp.linalg.norm(truth)),
        "nuclear_norm": float(jnp.sum(jnp.linalg.svd(W, compute_uv=False))),
        "effective_rank": float(effective_rank(W)),
        "train_loss": float(train_loss),
        "seconds": round(float(seconds), 3),
        "success": bool(success),
    }


def timer() -> Callable[[], float]:
    """A function returning the seconds since `timer()` was called."""
    start = time.perf_counter()
    return lambda: time.perf_counter() - start
