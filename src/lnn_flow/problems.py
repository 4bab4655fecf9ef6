"""Random problem instances with a planted low-rank ground truth (Section 4.1)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._core import _checks
from ._core._deprecation import renamed
from .losses import MatrixCompletion, MatrixSensing


def low_rank_matrix(
    key: PRNGKeyArray,
    shape: tuple[int, int],
    rank: int,
    *,
    norm: float | None = None,
    dtype=None,
) -> Float[Array, "dn d0"]:
    """A random `shape` matrix `L R^T` of the given `rank` (Gaussian `L`, `R`), scaled to
    Frobenius norm `norm` (default `sqrt(rank)`: singular values of order one)."""
    key = _checks.prng_key("key", key)
    dims = _checks.dims(shape, "shape")
    if len(dims) != 2:
        raise ValueError(f"`shape` must be (d_n, d_0); got {dims}")
    dn, d0 = dims
    dtype = _checks.float_dtype("dtype", dtype)
    rank = _checks.positive_int("rank", rank)
    if rank > min(dn, d0):
        raise ValueError(f"`rank` must be <= min(shape) = {min(dn, d0)}; got {rank}")
    k_left, k_right = jax.random.split(key)
    W = jax.random.normal(k_left, (dn, rank), dtype) @ jax.random.normal(
        k_right, (rank, d0), dtype
    )
    norm = _checks.target_norm(norm, rank, dtype)
    return W * (norm / jnp.linalg.norm(W))


def random_matrix_sensing(
    key: PRNGKeyArray,
    shape: tuple[int, int],
    rank: int,
    num_measurements: int,
    *,
    dtype=None,
) -> tuple[MatrixSensing, Float[Array, "dn d0"]]:
    """Matrix sensing (eq. 9) of a random rank-`rank` ground truth `W*` from
    `num_measurements` Gaussian measurement matrices (i.i.d. N(0, 1) entries, which
    satisfy the restricted isometry property w.h.p. for enough measurements).

    Returns `(loss, W*)`; `loss(W*) = 0`.
    """
    k_truth, k_sense = jax.random.split(_checks.prng_key("key", key))
    truth = low_rank_matrix(k_truth, shape, rank, dtype=dtype)
    m = _checks.positive_int("num_measurements", num_measurements)
    A = jax.random.normal(k_sense, (m, *truth.shape), truth.dtype)
    return MatrixSensing(A, jnp.tensordot(A, truth, axes=2)), truth


def random_matrix_completion(
    key: PRNGKeyArray,
    shape: tuple[int, int],
    rank: int,
    num_measurements: int | None = None,
    *,
    dtype=None,
    num_observed: int | None = None,
) -> tuple[MatrixCompletion, Float[Array, "dn d0"]]:
    """Matrix completion (eq. 9 with one-hot measurement matrices) of a random
    rank-`rank` ground truth `W*` from `num_measurements` observed entries, drawn
    uniformly without replacement. Returns `(loss, W*)`.

    `num_observed` is the deprecated name of `num_measurements` (a DeprecationWarning;
    removed in the next release).
    """
    num_measurements = renamed(
        "random_matrix_completion", "num_observed", "num_measurements", num_observed,
        num_measurements, required=True,
    )
    k_truth, k_entries = jax.random.split(_checks.prng_key("key", key))
    truth = low_rank_matrix(k_truth, shape, rank, dtype=dtype)
    dn, d0 = truth.shape
    m = _checks.positive_int("num_measurements", num_measurements)
    if m > dn * d0:
        raise ValueError(
            f"`num_measurements` must be <= the number of entries {dn * d0}; got {m}"
        )
    flat = jax.random.choice(k_entries, dn * d0, (m,), replace=False)
    rows, cols = flat // d0, flat % d0
    return MatrixCompletion(rows, cols, truth[rows, cols], truth.shape), truth
from ._maths._tensor_problems import (  # noqa: E402, F401
    low_rank_tensor, random_tensor_completion, random_tensor_sensing,
)
