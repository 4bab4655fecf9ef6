"""Modified flows: the ODEs that gradient descent follows one and two orders closer than
the gradient flow it discretizes (backward error analysis).

Descent with step `h = lr` is forward Euler on `dy/dt = f(y)` (eq. 2 on the factors,
or Theorem 1's eq. 3 end to end; [`lnn_flow._flows._descent`][]). Its iterates are, to
`O(h^{r+1})` over a fixed horizon, samples at `t = k h` of the *modified equation*

    dy/dt = f + h f_1 + h^2 f_2 + ...,   f_1 = -(1/2) f' f,
                                         f_2 = (1/12) f''(f, f) + (1/3) f' f' f

(Hairer, Lubich & Wanner, *Geometric Numerical Integration*, Sec. IX.1, the example
of the explicit Euler method). For a gradient flow `f = -grad phi` the first correction
is a gradient too: `-(h/2) H grad phi = -(h/4) grad |grad phi|^2`, so the order-1
modified flow is the gradient flow of

    phi~ = phi + (h/4) |grad phi|^2

(Barrett & Dherin 2021, "Implicit Gradient Regularization"): descent implicitly
penalizes large gradients. The second correction is not a gradient in general.
Every term is a Jacobian-vector product of `f` (forward over reverse mode: a
Hessian-vector product for a gradient flow), never a dense Jacobian.

The modified end-to-end flow is the modified equation of
[`lnn_flow.end_to_end_descent`][] (Euler on eq. 3). It is *not* the end-to-end
matrix of the modified factor flow: `|grad phi|^2` depends on the factors, not only on
their product, so the modified factor flow leaves the balanced manifold of
Assumption 1 and has no closed equation in `W` alone.
"""

from typing import Unpack

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._core import _checks
from .._maths._network import Factors, end_to_end
from .._maths._spectral import decomposition_name
from .._solving._options import SolveKwargs, SolveOptions
from .._solving._result import FlowSolution
from .._solving._solve import solve
from .._solving._system import AbstractFlowSystem, Loss
from ._descent import check_lr
from ._end_to_end import _EndToEndSystem
from ._factor import _FactorSystem, checked_factors

ORDERS = (1, 2)


def modified_field(field, y: PyTree[Array], lr, order: int) -> PyTree[Array]:
    """`f + h f_1 (+ h^2 f_2)` at `y` for the field `f = field(y)` and step `h = lr`:
    the right-hand side of the modified equation of forward Euler, to `order` 1 or 2."""
    f = field(y)
    _, jf = jax.jvp(field, (y,), (f,))  # f' f
    scaled = lambda a, x: jax.tree_util.tree_map(lambda u: a * u, x)
    add = lambda *xs: jax.tree_util.tree_map(lambda *u: sum(u), *xs)
    out = add(f, scaled(-0.5 * lr, jf))
    if order == 2:
        _, jjf = jax.jvp(field, (y,), (jf,))  # f' f' f
        # f''(f, f): the second derivative of `field` along the fixed direction f.
        along = lambda z: jax.jvp(field, (z,), (f,))[1]
        _, hff = jax.jvp(along, (y,), (f,))
        out = add(out, scaled(lr**2 / 12, hff), scaled(lr**2 / 3, jjf))
    return out


class _ModifiedSystem(AbstractFlowSystem):
    """`system`'s modified equation for forward Euler with step `lr`, to `order`."""

    system: AbstractFlowSystem
    lr: Float[Array, ""]
    loss: Loss
    depth: int = eqx.field(static=True)
    order: int = eqx.field(static=True)

    def __init__(self, system: AbstractFlowSystem, lr, order: int):
        self.system = system
        self.lr = lr
        self.loss = system.loss
        self.depth = system.depth
        self.order = order

    @property
    def combine(self):
        return self.system.combine

    @property
    def gradient_flow(self) -> bool:
        # f - (h/2) f'f = -grad(phi + h/4 |grad phi|^2) for f = -grad phi; f_2 is no gradient.
        return self.system.gradient_flow and self.order == 1

    def vector_field(self, t, y, args):
        field = lambda z: self.system.vector_field(t, z, args)
        return modified_field(field, y, self.lr, self.order)

    def end_to_end(self, y):
        return self.system.end_to_end(y)

    def factors(self, y):
        return self.system.factors(y)

    def default_atol(self, y0, rtol):
        return self.system.default_atol(y0, rtol)


def check_lr_order(lr, order, dtype) -> tuple[Float[Array, ""], int]:
    """`lr > 0` (a real scalar, traced values allowed) and `order` in (1, 2)."""
    lr = check_lr(lr, dtype)
    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"`order` must be 1 or 2; got {order!r}")
    return lr, int(order)


def modified_objective(
    loss: Loss, ws: tuple[Float[ArrayLike, "_ _"], ...], lr: float
) -> Float[Array, ""]:
    """`phi~(W_1, ..., W_n) = phi + (lr/4) sum_j |d phi / d W_j|_F^2`, with `phi` of
    eq. (1): the objective whose gradient flow is the order-1 modified factor flow,
    the flow gradient descent with step `lr` follows to `O(lr^2)` (implicit gradient
    regularization)."""
    ws = _checks.factors(ws, "ws")
    _checks.fits_loss(loss, (ws[-1].shape[0], ws[0].shape[1]), "ws")
    lr = check_lr(lr, ws[0].dtype)
    phi = lambda ws_: loss(end_to_end(ws_))
    value, grads = jax.value_and_grad(phi)(ws)
    return value + lr / 4 * sum(jnp.sum(g**2) for g in grads)


def modified_factor_vector_field(
    loss: Loss, ws: tuple[Float[ArrayLike, "_ _"], ...], lr: float, order: int = 1
) -> Factors:
    """The modified factor flow's right-hand side at `ws`: eq. (2)'s field plus the
    corrections of the modified equation for step `lr` (order 1: minus the gradient of
    [`lnn_flow.modified_objective`][])."""
    ws = _checks.factors(ws, "ws")
    _checks.fits_loss(loss, (ws[-1].shape[0], ws[0].shape[1]), "ws")
    lr, order = check_lr_order(lr, order, ws[0].dtype)
    return _ModifiedSystem(_FactorSystem(loss, len(ws)), lr, order).vector_field(None, ws, None)


def modified_factor_flow(
    loss: Loss,
    ws0: tuple[Float[ArrayLike, "_ _"], ...],
    t1: float,
    ts: Float[ArrayLike, " k"] | None = None,
    *,
    lr: float,
    order: int = 1,
    **options: Unpack[SolveKwargs],
) -> FlowSolution:
    """Solve the modified factor flow: the ODE that [`lnn_flow.gradient_descent`][] with
    step `lr` follows to `O(lr^{order+1})` on a fixed horizon (its iterate `k` is within
    that of this flow at `t = k lr`; the plain flow eq. 2 is `O(lr)` away).

    - `order=1`: the gradient flow of `phi + (lr/4) |grad phi|^2`
      ([`lnn_flow.modified_objective`][]); a gradient flow, so `solver="auto"` may take
      Chebyshev steps.
    - `order=2`: adds `lr^2 ((1/12) f''(f, f) + (1/3) f' f' f)`, `f` eq. (2)'s field.

    `lr` is traced (a new step size does not recompile); every other argument, the
    options and the result are those of [`lnn_flow.factor_flow`][]. The field costs
    one (order 1) or three (order 2) extra Jacobian-vector products of eq. (2)'s field.
    Batches and pools take it as method `"modified_factor"`.
    """
    ws0 = checked_factors(loss, ws0)
    lr, order = check_lr_order(lr, order, ws0[0].dtype)
    options = SolveOptions.from_kwargs(options)
    system = _ModifiedSystem(_FactorSystem(loss, len(ws0)), lr, order)
    return solve(system, ws0, t1, ts, options, init_name="ws0")


def modified_end_to_end_flow(
    loss: Loss,
    W0: Float[ArrayLike, "dn d0"],
    depth: int,
    t1: float,
    ts: Float[ArrayLike, " k"] | None = None,
    *,
    lr: float,
    order: int = 1,
    decomposition: str = "svd",
    **options: Unpack[SolveKwargs],
) -> FlowSolution:
    """Solve the modified equation of [`lnn_flow.end_to_end_descent`][] (Claim 1's
    discretized end-to-end dynamics, Euler on eq. 3 with step `lr`): the ODE its iterates
    follow to `O(lr^{order+1})`. Arguments and result as in
    [`lnn_flow.end_to_end_flow`][], with `lr` and `order` as in
    [`lnn_flow.modified_factor_flow`][].

    Eq. (3) is not a gradient field in `W` (the preconditioner `P(W)` is not a Hessian),
    so neither is its modified equation. It models end-to-end descent only: descent on
    the factors creates unbalancedness of order `lr^2` per step
    ([`lnn_flow.unbalancedness_step`][]) and its order-1 correction depends on the
    factors, so the factors' modified flow has no closed end-to-end form.
    Batches and pools take it as method `"modified_end_to_end"`.
    """
    depth = _checks.positive_int("depth", depth)
    W0 = _checks.non_empty("W0", _checks.as_float_array("W0", W0, ndim=2))
    W0 = _checks.finite("W0", W0)
    _checks.fits_loss(loss, W0.shape, "W0")
    lr, order = check_lr_order(lr, order, W0.dtype)
    options = SolveOptions.from_kwargs(options)
    base = _EndToEndSystem(loss, depth, decomposition_name(decomposition))
    return solve(_ModifiedSystem(base, lr, order), W0, t1, ts, options, init_name="W0")
