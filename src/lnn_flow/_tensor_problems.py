"""Random tensor problems with a planted low-CP-rank ground truth (Section 5), the
order-`N` analogues of `random_matrix_completion`/`random_matrix_sensing` (Section
4.1). Re-exported by `lnn_flow.problems`."""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from . import _checks
from ._cp import product, tensor_shape
from ._tensor_losses import TensorCompletion, TensorSensing


def low_rank_tensor(
    key: PRNGKeyArray,
    shape: Sequence[int],
    rank: int,
    *,
    norm: float | None = None,
    dtype=jnp.float64,
) -> Float[Array, "*E"]:
    """A random tensor `sum_{r=1}^{rank} a_r^1 (x) ... (x) a_r^N` of `shape` (Gaussian
    factors, i.i.d. N(0, 1) entries), scaled to Frobenius norm `norm`.

    The normalization is `low_rank_matrix`'s: the default `norm = sqrt(rank)` gives
    components of norm of order one (for the matrix, singular values of order one).
    `rank` may be at most `prod(shape) / max(shape)`, the largest CP rank any tensor of
    `shape` has (a sum over the fibres along its longest mode)."""
    key = _checks.prng_key("key", key)
    shape = tensor_shape(shape, "shape")
    dtype = _checks.float_dtype("dtype", dtype)
    rank = _checks.positive_int("rank", rank)
    most = math.prod(shape) // max(shape)
    if rank > most:
        raise ValueError(
            f"`rank` must be <= prod(shape) / max(shape) = {most} (the largest CP rank "
            f"of a tensor of shape {shape}); got {rank}"
        )
    keys = jax.random.split(key, len(shape))
    W = product(tuple(jax.random.normal(k, (d, rank), dtype) for k, d in zip(keys, shape)))
    if norm is None:
        norm = jnp.sqrt(rank)
    else:
        _checks.real_scalar("norm", norm)
        norm = _checks.non_negative("norm", _checks.as_float_array("norm", norm, ndim=0))
        norm = norm.astype(dtype)
    return W * (norm / jnp.linalg.norm(W))


def random_tensor_sensing(
    key: PRNGKeyArray,
    shape: Sequence[int],
    rank: int,
    num_measurements: int,
    *,
    dtype=jnp.float64,
) -> tuple[TensorSensing, Float[Array, "*E"]]:
    """Tensor sensing of a random rank-`rank` ground truth `W*` ([`low_rank_tensor`][])
    from `num_measurements` Gaussian measurement tensors (i.i.d. N(0, 1) entries).

    Returns `(loss, W*)`; `loss(W*) = 0`.
    """
    k_truth, k_sense = jax.random.split(_checks.prng_key("key", key))
    truth = low_rank_tensor(k_truth, shape, rank, dtype=dtype)
    m = _checks.positive_int("num_measurements", num_measurements)
    A = jax.random.normal(k_sense, (m, *truth.shape), dtype)
    return TensorSensing(A, jnp.tensordot(A, truth, axes=truth.ndim)), truth


def random_tensor_completion(
    key: PRNGKeyArray,
    shape: Sequence[int],
    rank: int,
    num_measurements: int,
    *,
    dtype=jnp.float64,
) -> tuple[TensorCompletion, Float[Array, "*E"]]:
    """Tensor completion of a random rank-`rank` ground truth `W*`
    ([`low_rank_tensor`][]) from `num_measurements` observed entries, drawn uniformly
    without replacement (distinct entries). Returns `(loss, W*)`; `loss(W*) = 0`.
    """
    k_truth, k_entries = jax.random.split(_checks.prng_key("key", key))
    truth = low_rank_tensor(k_truth, shape, rank, dtype=dtype)
    size = truth.size
    m = _checks.positive_int("num_measurements", num_measurements)
    if m > size:
        raise ValueError(
            f"`num_measurements` must be <= the number of entries {size}; got {m}"
        )
    flat = jax.random.choice(k_entries, size, (m,), replace=False)
    indices = jnp.stack(jnp.unravel_index(flat, truth.shape), axis=1)
    return TensorCompletion(indices, truth[tuple(indices.T)], truth.shape), truth
