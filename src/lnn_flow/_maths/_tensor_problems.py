"""Random tensor problems with a planted low-CP-rank ground truth (Section 5), the
order-`N` analogues of `random_matrix_completion`/`random_matrix_sensing` (Section
4.1). Re-exported by `lnn_flow.problems`."""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._core import _checks
from ._cp import product, tensor_shape
from ._tensor_losses import TensorCompletion, TensorSensing


def low_rank_tensor(
    key: PRNGKeyArray,
    shape: Sequence[int],
    rank: int,
    *,
    norm: float | None = None,
    component_norms: Sequence[float] | None = None,
    dtype=None,
) -> Float[Array, "*E"]:
    """A random tensor `sum_{r=1}^{rank} a_r^1 (x) ... (x) a_r^N` of `shape` (Gaussian
    factors, i.i.d. N(0, 1) entries), scaled to Frobenius norm `norm`.

    The normalization is `low_rank_matrix`'s: the default `norm = sqrt(rank)` gives
    components of norm of order one (for the matrix, singular values of order one).
    `rank` may be at most `prod(shape) / max(shape)`, the largest CP rank any tensor of
    `shape` has (a sum over the fibres along its longest mode).

    `component_norms` (instead of `norm`): `rank` positive norms, component `r`
    rescaled to Frobenius norm `||W_r|| = component_norms[r]`, balanced across its modes
    (each `||a_r^n|| = component_norms[r]^(1/N)`; the directions stay Gaussian). The
    components of a random draw can differ much in norm, and the CP flow learns a small
    one late (its norm grows at a rate `~ ||W_r||^{2-2/N}`, Section 5); this fixes
    them. The tensor's norm is then not set (the components are not orthogonal).
    """
    fs = low_rank_factors(key, shape, rank, norm=norm, component_norms=component_norms,
                          dtype=dtype)
    W = product(fs)
    if component_norms is not None:
        return W
    norm = _checks.target_norm(norm, rank, dtype)
    return W * (norm / jnp.linalg.norm(W))


def low_rank_factors(
    key: PRNGKeyArray,
    shape: Sequence[int],
    rank: int,
    *,
    norm: float | None = None,
    component_norms: Sequence[float] | None = None,
    dtype=None,
) -> tuple[Float[Array, "_ R"], ...]:
    """The CP factors `(A_1, ..., A_N)` [`low_rank_tensor`][] draws, checked; with
    `component_norms` already rescaled, else the raw Gaussian draw (its scale to `norm`
    is applied to the tensor). `norm` is passed only to refuse giving both."""
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
    fs = tuple(jax.random.normal(k, (d, rank), dtype) for k, d in zip(keys, shape))
    if component_norms is None:
        return fs
    if norm is not None:
        raise ValueError("give `norm` (the tensor's) or `component_norms` (each "
                         "component's), not both")
    c = _component_norms(component_norms, rank).astype(dtype)
    return tuple(f * (c ** (1 / len(fs)) / jnp.linalg.norm(f, axis=0)) for f in fs)


def _component_norms(component_norms, rank: int) -> Float[Array, " R"]:
    """`component_norms` as `rank` finite positive floats; errors name the argument."""
    if isinstance(component_norms, (str, bytes)) or np.ndim(component_norms) != 1:
        raise TypeError(f"`component_norms` must be a sequence of {rank} norms (one per "
                        f"component); got {component_norms!r}")
    if any(isinstance(c, (bool, np.bool_)) for c in component_norms):
        raise TypeError(f"`component_norms` must hold real numbers; got {component_norms!r}")
    c = _checks.as_float_array("component_norms", component_norms, ndim=1)
    if c.shape[0] != rank:
        raise ValueError(f"`component_norms` must hold `rank` = {rank} norms; got "
                         f"{c.shape[0]}")
    return _checks.positive("component_norms", c)


def random_tensor_sensing(
    key: PRNGKeyArray,
    shape: Sequence[int],
    rank: int,
    num_measurements: int,
    *,
    component_norms: Sequence[float] | None = None,
    dtype=None,
) -> tuple[TensorSensing, Float[Array, "*E"]]:
    """Tensor sensing of a random rank-`rank` ground truth `W*` ([`low_rank_tensor`][])
    from `num_measurements` Gaussian measurement tensors (i.i.d. N(0, 1) entries).

    `component_norms`: the truth's component norms, as in [`low_rank_tensor`][].
    Returns `(loss, W*)`; `loss(W*) = 0`.
    """
    k_truth, k_sense = jax.random.split(_checks.prng_key("key", key))
    truth = low_rank_tensor(k_truth, shape, rank, component_norms=component_norms,
                            dtype=dtype)
    m = _checks.positive_int("num_measurements", num_measurements)
    A = jax.random.normal(k_sense, (m, *truth.shape), truth.dtype)
    return TensorSensing(A, jnp.tensordot(A, truth, axes=truth.ndim)), truth


def random_tensor_completion(
    key: PRNGKeyArray,
    shape: Sequence[int],
    rank: int,
    num_measurements: int,
    *,
    component_norms: Sequence[float] | None = None,
    dtype=None,
) -> tuple[TensorCompletion, Float[Array, "*E"]]:
    """Tensor completion of a random rank-`rank` ground truth `W*`
    ([`low_rank_tensor`][]) from `num_measurements` observed entries, drawn uniformly
    without replacement (distinct entries); `component_norms`: the truth's component
    norms, as in [`low_rank_tensor`][]. Returns `(loss, W*)`; `loss(W*) = 0`.
    """
    k_truth, k_entries = jax.random.split(_checks.prng_key("key", key))
    truth = low_rank_tensor(k_truth, shape, rank, component_norms=component_norms,
                            dtype=dtype)
    size = truth.size
    m = _checks.positive_int("num_measurements", num_measurements)
    if m > size:
        raise ValueError(
            f"`num_measurements` must be <= the number of entries {size}; got {m}"
        )
    flat = jax.random.choice(k_entries, size, (m,), replace=False)
    indices = jnp.stack(jnp.unravel_index(flat, truth.shape), axis=1)
    return TensorCompletion(indices, truth[tuple(indices.T)], truth.shape), truth
