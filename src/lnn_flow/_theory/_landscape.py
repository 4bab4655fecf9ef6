"""Propositions 1 and 3: the landscape of `phi(W_1, ..., W_n) = l(W_n ... W_1)` (eq. 1).

Its gradient and Hessian (both zero at the origin for depth >= 3) and the points of
lower objective arbitrarily close to the origin built in the proof of Proposition 3,
which make the origin a non-strict saddle. Re-exported by `lnn_flow.theory`.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float

from .._core import _checks
from .._maths._network import Factors, factor_gradient, overparameterized_objective
from .._solving._system import Loss


def objective_gradient(loss: Loss, ws: Factors) -> Factors:
    """`d phi / d W_j` for each factor, `phi(W_1, ..., W_n) = l(W_n ... W_1)` (eq. 1).
    Zero at the origin for depth >= 2 (proof of Proposition 1)."""
    ws = _checks.factors(ws, "ws")
    return factor_gradient(loss, ws)


def objective_hessian(loss: Loss, ws: Factors) -> Float[Array, "p p"]:
    """The Hessian of `phi` on the flattened factors (`jax.flatten_util.ravel_pytree`
    order: `W_1` row-major, then `W_2`, ...). Zero at the origin for depth >= 3
    (proof of Proposition 3)."""
    ws = _checks.factors(ws, "ws")
    flat, unravel = ravel_pytree(ws)
    return jax.hessian(lambda x: overparameterized_objective(loss, unravel(x)))(flat)


def proposition3_point(
    W: Float[ArrayLike, "dn d0"], dims: Sequence[int]
) -> Factors:
    """Factors whose product is `W`, built as in the proof of Proposition 3: with
    `d_0 >= d_n`, `W_1` holds `||W||_F^{-1+1/n} W` in its top block and `W_j` (j >= 2)
    holds `||W||_F^{1/n} I` in its top-left block (mirrored when `d_0 < d_n`).

    Their norm is `sqrt(1 + (n-1) min(d_0, d_n)) ||W||_F^{1/n}` (the proof's
    `sqrt(n) eps^{1/n}` is the case `min(d_0, d_n) = 1`): taking `W` with
    `l(W) < l(0)` and `||W||_F = eps` gives points of lower objective arbitrarily close
    to the origin, so for n >= 3 the origin (zero gradient and Hessian) is a non-strict
    saddle.
    """
    dims = _checks.dims(dims)
    W = _checks.finite("W", _checks.as_float_array("W", W, ndim=2))
    W = _checks._require("W", W, lambda v: ~jnp.any(v != 0), "must be nonzero")
    d0, dn, n = dims[0], dims[-1], len(dims) - 1
    if W.shape != (dn, d0):
        raise ValueError(f"`W` must have shape {(dn, d0)} for dims {dims}")
    k = min(d0, dn)
    if min(dims[1:-1], default=k) < k:
        raise ValueError(f"`dims` hidden widths must be >= min(d_0, d_n) = {k}")
    norm = jnp.linalg.norm(W)
    root = norm ** (1.0 / n)
    if n == 1:
        return (W,)

    def block(rows, cols):  # the k x k identity in the top-left corner
        return jnp.zeros((rows, cols), W.dtype).at[:k, :k].set(jnp.eye(k, dtype=W.dtype))

    if d0 >= dn:
        first = jnp.zeros((dims[1], d0), W.dtype).at[:dn].set(W * norm ** (-1 + 1 / n))
        rest = [root * block(dims[j], dims[j - 1]) for j in range(2, n + 1)]
        return (first, *rest)
    last = jnp.zeros((dn, dims[-2]), W.dtype).at[:, :d0].set(W * norm ** (-1 + 1 / n))
    rest = [root * block(dims[j], dims[j - 1]) for j in range(1, n)]
    return (*rest, last)
