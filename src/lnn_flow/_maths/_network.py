"""Deep linear networks: the end-to-end matrix (Definition 2), the overparameterized
objective (eq. 1) and its gradient, and unbalancedness (Definition 1, Lemma 1)."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._core import _checks

Factors = tuple[Float[Array, "_ _"], ...]


def end_to_end(ws: Factors) -> Float[Array, "dn d0"]:
    """The end-to-end matrix `W_{n:1} = W_n W_{n-1} ... W_1` (Definition 2).

    `ws = (W_1, ..., W_n)` with `W_j` of shape `(d_j, d_{j-1})`.
    """
    ws = _checks.factors(ws)
    return functools.reduce(lambda acc, w: w @ acc, ws[1:], ws[0])


def overparameterized_objective(
    loss: Callable[[Float[Array, "dn d0"]], Float[Array, ""]], ws: Factors
) -> Float[Array, ""]:
    """`phi(W_1, ..., W_n) = l(W_n ... W_1)` (eq. 1)."""
    return loss(end_to_end(ws))


def factor_gradient(
    loss: Callable[[Float[Array, "dn d0"]], Float[Array, ""]], ws: Factors
) -> Factors:
    """`(d phi/d W_1, ..., d phi/d W_n)`, `d phi/d W_j = W_{n:j+1}^T grad l(W_{n:1})
    W_{j-1:1}^T` (eq. 2 is `dW_j/dt = -d phi/d W_j`), by reverse-mode autodiff through
    the product. The one place the factor gradient is written: the factor flow,
    gradient descent, the landscape checks and the descent's unbalancedness step use it."""
    return jax.grad(overparameterized_objective, argnums=1)(loss, ws)


def unbalancedness_matrices(ws: Factors) -> tuple[Float[Array, "_ _"], ...]:
    """`W_{j+1}^T W_{j+1} - W_j W_j^T` for `j = 1, ..., n - 1`.

    Lemma 1: each is constant along the gradient flow of eq. (2).
    """
    ws = _checks.factors(ws)
    return tuple(
        ws[j + 1].T @ ws[j + 1] - ws[j] @ ws[j].T for j in range(len(ws) - 1)
    )


def unbalancedness(ws: Factors) -> Float[Array, ""]:
    """Unbalancedness magnitude `max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T||_F`
    (Definition 1); `0.0` for depth 1. Conserved by gradient flow (Proposition 2)."""
    ws = _checks.factors(ws)
    gaps = unbalancedness_matrices(ws)
    if not gaps:
        return jnp.zeros((), ws[0].dtype)
    return jnp.max(jnp.stack([jnp.linalg.norm(g) for g in gaps]))
