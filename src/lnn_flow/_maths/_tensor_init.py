"""Initial CP factors `(A_1, ..., A_N)`, `A_n` of shape `(d_n, R)` (Section 5).

- `balanced`: every component `W_r = a_r^1 (x) ... (x) a_r^N` of Frobenius norm
  `scale`, with `||a_r^n|| = scale^{1/N}` for every `n` (unbalancedness zero, the
  analogue of Assumption 1); random unit directions.
- `gaussian`: independent `N(0, std^2)` entries; unbalanced in general.

Re-exported by `lnn_flow.tensor`.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from .._core import _checks
from ._cp import CPFactors, tensor_shape


def _positive_scalar(name: str, value, dtype):
    _checks.real_scalar(name, value)
    value = _checks.as_float_array(name, value, ndim=0)
    return _checks.positive(name, value).astype(dtype)


def _arguments(key, shape, rank, dtype):
    key = _checks.prng_key("key", key)
    shape = tensor_shape(shape, "shape")
    rank = _checks.positive_int("rank", rank)
    dtype = _checks.float_dtype("dtype", dtype)
    return key, shape, rank, dtype


def balanced(
    key: PRNGKeyArray,
    shape: Sequence[int],
    rank: int,
    scale: float,
    dtype=None,
) -> CPFactors:
    """Balanced CP factors of `rank` components for a tensor of `shape`
    `(d_1, ..., d_N)`: each column `a_r^n` is a uniformly random direction of norm
    `scale^{1/N}`, so every component has `||W_r||_F = prod_n ||a_r^n|| = scale` and
    `||a_r^n||^2 - ||a_r^n'||^2 = 0` for all `r, n, n'`.

    `scale` must be positive and finite (a zero component has no direction: the
    origin is a stationary point of the flow)."""
    key, shape, rank, dtype = _arguments(key, shape, rank, dtype)
    scale = _positive_scalar("scale", scale, dtype)
    root = scale ** (1.0 / len(shape))
    keys = jax.random.split(key, len(shape))
    fs = []
    for k, d in zip(keys, shape):
        g = jax.random.normal(k, (d, rank), dtype)
        fs.append(root * g / jnp.linalg.norm(g, axis=0))
    return tuple(fs)


def gaussian(
    key: PRNGKeyArray,
    shape: Sequence[int],
    rank: int,
    std: float,
    dtype=None,
) -> CPFactors:
    """CP factors of `rank` components for a tensor of `shape` with independent
    `N(0, std^2)` entries: unbalanced in general, a test bed for the conservation law
    of [`lnn_flow._theory._tensor_theory.check_conservation`][]."""
    key, shape, rank, dtype = _arguments(key, shape, rank, dtype)
    std = _positive_scalar("std", std, dtype)
    keys = jax.random.split(key, len(shape))
    return tuple(std * jax.random.normal(k, (d, rank), dtype) for k, d in zip(keys, shape))
