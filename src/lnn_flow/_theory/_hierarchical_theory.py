"""The hierarchical factorization flow's conservation law and local-component
dynamics (Section 5; Razin, Maman & Cohen 2022), checked along solved flows.
Re-exported by `lnn_flow.tensor.hierarchical`.

A local component `(v, r)` of [`lnn_flow._maths._hierarchical`][] has vectors `u_1, ...,
u_K` (row `r` of `W^v`, column `r` of each child's matrix), and `W` depends on each
`u_k` only through their outer product `A = u_1 (x) ... (x) u_K`, linearly in each. With
`g = grad_A l` (all other weights fixed), `du_k/dt = -g x_{j != k} u_j`, so (derived
as for the CP flow, [`lnn_flow._theory._tensor_theory`][])

    d/dt ||u_k||^2 = -2 <g, A>              the same for every k              (C)
    d/dt ||A||     = ||A|| (sum_k ||u_k||^{-2}) <-g, A>                         (R)

and, balanced (`||u_k||^2 = ||A||^{2/K}`, kept by (C)), `d/dt ||A|| = K ||A||^{2-2/K}
<-g, A/||A||>`: the local components of a binary tree (K = 3) grow like the
components of an order-3 CP factorization, from a small init one at a time. The
scalar `<g, A> = <u_k, d phi / d u_k>` for any `k`: one gradient of `phi` gives it.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._core import _checks
from .._maths._hierarchical import (
    HTProduct,
    _layout,
    local_components,
    preorder,
    product,
)
from .._solving._result import FlowSolution
from .._solving._system import Loss


class HTConservationCheck(eqx.Module):
    """(C) along a solved flow: `drift[k] = max |g(t_k) - g(t_0)|` over every local
    component's `||u_j||^2 - ||u_0||^2` (NaN at unreached saves); `scale` the largest
    squared vector norm along the flow, what the relative tolerance applies to."""

    ts: Float[Array, " k"]
    drift: Float[Array, " k"]
    max_drift: Float[Array, ""]
    scale: Float[Array, ""]


def _structure(solution: FlowSolution) -> HTProduct:
    if not isinstance(solution.combine, HTProduct) or solution.factors is None \
            or solution.factors[0].ndim != 3:
        raise ValueError("`solution` must be one hierarchical factorization solve "
                         "(`lnn_flow.tensor.hierarchical.flow`); for a batch use jax.vmap")
    return solution.combine


def _gaps_and_squares(ws, tree, output):
    squares = local_components(ws, tree, output)
    gaps = jnp.concatenate([(sq[1:] - sq[:1]).ravel() for sq in squares])
    return gaps, jnp.max(jnp.concatenate([sq.ravel() for sq in squares]))


def check_conservation(solution: FlowSolution) -> HTConservationCheck:
    """(C) along `solution`, one solve of [`lnn_flow.hierarchical.flow`][]."""
    s = _structure(solution)
    gaps, squares = jax.vmap(lambda ws: _gaps_and_squares(ws, s.tree, s.output))(
        tuple(solution.factors))
    drift = jnp.max(jnp.abs(gaps - gaps[:1]), axis=1)
    drift = jnp.where(solution.reached, drift, jnp.nan)
    scale = jnp.max(jnp.where(solution.reached, squares, 0.0))
    return HTConservationCheck(solution.ts, drift, jnp.nanmax(drift), scale)


def local_component_norm_rates(loss: Loss, ws, tree, output: bool = True) -> list[Array]:
    """Predicted `d/dt ||A_{v,r}||` by (R) at the weights `ws`: one array `(R_v,)` per
    internal node in pre-order. Exact for any balance (for a balanced component it is
    `K ||A||^{2-2/K} <-g, A/||A||>`); computed from one gradient of `phi`."""
    grads = jax.grad(lambda ws_: loss(product(ws_, tree, output)))(tuple(ws))
    index = _layout(tree, output)
    paths = [path for path, node in preorder(tree) if not isinstance(node, int)]
    out = []
    for path, squares in zip(paths, local_components(ws, tree, output)):
        i = index[path + (0,)]  # <g, A> = <u_k, d phi/d u_k> on the first child's columns
        drive = -jnp.sum(ws[i] * grads[i], axis=0)
        norm = jnp.prod(jnp.sqrt(squares), axis=0)
        out.append(norm * jnp.sum(1.0 / squares, axis=0) * drive)
    return out


@eqx.filter_jit
def _rates(solution: FlowSolution, ts):
    s = solution.combine
    one = jnp.ones((), ts.dtype)

    def norms(t):
        ws = solution.evaluate_factors(t)
        return [jnp.prod(jnp.sqrt(sq), axis=0) for sq in local_components(ws, s.tree, s.output)]

    return jax.vmap(lambda t: jax.jvp(norms, (t,), (one,))[1])(ts)


def observed_local_component_norm_rates(solution: FlowSolution,
                                        t: Float[ArrayLike, " k"]) -> list[Array]:
    """Observed `d/dt ||A_{v,r}(t)||` at the times `t` (1-D) of a flow solved with
    `dense=True`: the forward-mode time derivative of the norms along the solver's
    interpolant, as [`lnn_flow.tensor.observed_component_norm_rates`][] does for CP
    (its error: that of the interpolant's derivative, about `tol / h`). One array
    `(k, R_v)` per internal node in pre-order."""
    _structure(solution)
    t = _checks.as_float_array("t", t, ndim=1)
    solution._dense(jnp.min(t))
    solution._dense(jnp.max(t))
    return _rates(solution, t)
