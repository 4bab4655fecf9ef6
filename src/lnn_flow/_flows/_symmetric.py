"""Exercise 2: the symmetric network `W W^T`, as two flow systems.

For `phi_s(W) = l_s(W W^T)` the product `W_s = W W^T` follows an ODE of its own
(`symmetric_flow`); the gradient flow on `W` itself (`symmetric_factor_flow`) is the
depth-2 factor flow with factors `(W^T, W)`. Both are re-exported by `lnn_flow.theory`.
"""

from typing import Unpack

import equinox as eqx
from jaxtyping import Array, ArrayLike, Float

from .._core import _checks
from .._solving._options import SolveKwargs, SolveOptions
from .._solving._result import FlowSolution
from .._solving._solve import solve
from .._solving._system import AbstractFlowSystem, Loss, flow_gradient


def symmetric_vector_field(
    loss: Loss, Ws: Float[ArrayLike, "d d"]
) -> Float[Array, "d d"]:
    """Exercise 2: for `phi_s(W) = l_s(W W^T)` and `W' = -grad phi_s(W)`, the product
    `W_s = W W^T` follows, with `S = grad l_s(W_s) + grad l_s(W_s)^T`,

        dW_s/dt = -(S W_s + W_s S),

    since `grad phi_s(W) = S W`; it depends on `W` only through `W_s`."""
    Ws = _checks.as_float_array("Ws", Ws, ndim=2)
    return _symmetric_field(loss, Ws)


def _symmetric_field(loss, Ws):
    G = flow_gradient(loss, Ws)
    S = G + G.T
    return -(S @ Ws + Ws @ S)


class _SymmetricSystem(AbstractFlowSystem):
    """Exercise 2's ODE on `W_s = W W^T` alone (depth 2, no factors)."""

    loss: Loss
    depth: int = eqx.field(static=True, default=2)

    def vector_field(self, t, Ws, args):
        return _symmetric_field(self.loss, Ws)

    def end_to_end(self, Ws):
        return Ws

    def factors(self, Ws):
        return None


class _SymmetricFactorSystem(AbstractFlowSystem):
    """Exercise 2's flow on `W`, with state the factors `(W^T, W)` of the depth-2
    network `W W^T`: saves, `evaluate` and `evaluate_factors` then work as for
    [`lnn_flow.factor_flow`][]. Both leaves get the same field (transposed), so the
    first stays the exact transpose of the second."""

    loss: Loss
    depth: int = eqx.field(static=True, default=2)

    def vector_field(self, t, ws, args):
        _, W = ws
        dW = -flow_gradient(lambda W_: self.loss(W_ @ W_.T), W)
        return (dW.T, dW)

    def end_to_end(self, ws):
        return ws[1] @ ws[0]

    def factors(self, ws):
        return tuple(ws)


def symmetric_flow(
    loss: Loss, W0, t1, ts=None, **options: Unpack[SolveKwargs]
) -> FlowSolution:
    """Solve Exercise 2's ODE on the end-to-end matrix `W_s = W W^T` from `W0 = W_s(0)`
    (options as for [`lnn_flow.factor_flow`][])."""
    W0 = _checks.finite("W0", _checks.as_float_array("W0", W0, ndim=2))
    _checks.fits_loss(loss, W0.shape, "W0")
    options = SolveOptions.from_kwargs(options)
    return solve(_SymmetricSystem(loss), W0, t1, ts, options, init_name="W0")


def symmetric_factor_flow(
    loss: Loss, W0, t1, ts=None, **options: Unpack[SolveKwargs]
) -> FlowSolution:
    """Gradient flow on `W` for `phi_s(W) = l_s(W W^T)` (Exercise 2); `end_to_end` is
    `W W^T`, `factors` is `(W^T, W)`."""
    W0 = _checks.finite("W0", _checks.as_float_array("W0", W0, ndim=2))
    _checks.fits_loss(loss, (W0.shape[0], W0.shape[0]), "W0")
    options = SolveOptions.from_kwargs(options)
    system = _SymmetricFactorSystem(loss)
    return solve(system, (W0.T, W0), t1, ts, options, init_name="W0")
