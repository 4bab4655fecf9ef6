"""Gradient flow on the factors (eq. 2): the training dynamics of the network itself.

    dW_j/dt = -d phi/d W_j = -W_{n:j+1}^T grad l(W_{n:1}) W_{j-1:1}^T,   j = 1, ..., n

for the overparameterized objective `phi(W_1, ..., W_n) = l(W_n ... W_1)` of eq. (1).
"""

from typing import ClassVar, Unpack

import equinox as eqx
from jaxtyping import ArrayLike, Float

from .._core import _checks
from .._maths._network import Factors, end_to_end
from .._solving._options import SolveKwargs, SolveOptions
from .._solving._result import FlowSolution
from .._solving._solve import solve
from .._solving._system import AbstractFlowSystem, Loss, flow_gradient


def factor_vector_field(loss: Loss, ws: Factors) -> Factors:
    """`(dW_1/dt, ..., dW_n/dt)` of the gradient flow eq. (2): minus the gradient of
    `phi` with respect to each factor (by reverse-mode autodiff through the product)."""
    ws = _checks.factors(ws, "ws")
    _checks.fits_loss(loss, (ws[-1].shape[0], ws[0].shape[1]), "ws")
    return _field(loss, ws)


def _field(loss: Loss, ws: Factors) -> Factors:
    grads = flow_gradient(lambda ws_: loss(end_to_end(ws_)), ws)
    return tuple(-g for g in grads)


def checked_factors(loss: Loss, ws, name: str = "ws0") -> Factors:
    """`ws` as factors `(W_1, ..., W_n)`: real, finite, chained shapes that fit the
    loss; errors name `name`."""
    ws = _checks.factors(ws, name)
    ws = tuple(_checks.finite(f"{name}[{j}]", w) for j, w in enumerate(ws))
    _checks.fits_loss(loss, (ws[-1].shape[0], ws[0].shape[1]), name)
    return ws


class _FactorSystem(AbstractFlowSystem):
    """The ODE of eq. (2) with state `(W_1, ..., W_n)`: the factors are the state."""

    loss: Loss
    depth: int = eqx.field(static=True)
    gradient_flow: ClassVar[bool] = True  # eq. (2): minus the gradient of phi

    def vector_field(self, t, ws, args):
        return _field(self.loss, ws)

    def end_to_end(self, ws):
        return end_to_end(ws)

    def factors(self, ws):
        return ws


def factor_flow(
    loss: Loss,
    ws0: tuple[Float[ArrayLike, "_ _"], ...],
    t1: float,
    ts: Float[ArrayLike, " k"] | None = None,
    **options: Unpack[SolveKwargs],
) -> FlowSolution:
    """Solve the gradient flow of eq. (2) on the factors `ws0 = (W_1, ..., W_n)`.

    **Arguments:**

    - `loss`: `l(W) -> scalar` on the `d_n x d_0` end-to-end matrix: a loss from
      `lnn_flow.losses` or any JAX-traceable callable.
    - `ws0`: initial factors, `W_j` of shape `(d_j, d_{j-1})`.
    - `t1`: final time (> `t0`). `ts`: save times in `[t0, t1]`; `None` saves `t0, t1`.
    - `**options`: the solve options ([`lnn_flow._solving._options.SolveOptions`][], defaults
      in `DEFAULTS` there), the same for every flow:
    - `t0`: start time (0).
    - `solver`: any diffrax solver; default `diffrax.Tsit5()` (5th-order explicit
      Runge-Kutta: gradient flows from near-zero init are non-stiff for most of their
      course). Solvers without an error estimate (e.g. `diffrax.Euler()`) need `dt0`
      and take constant steps.
    - `rtol`, `atol`: tolerances of the PID step-size controller (defaults 1e-8 and,
      with `atol=None`, the system's own: 1e-10 here; the end-to-end flow scales it).
    - `max_steps`: step budget; reaching it ends the solve with `success == False`
      and keeps what was computed. With `dense=True` memory grows with `max_steps`.
    - `loss_threshold`: stop when the loss falls to this value (a diffrax `Event`,
      time located by a Newton root find); later saves are marked unreached.
    - `steady_state`: stop once the flow is at rest to the solve's tolerance,
      `|dy/dt| < atol + rtol |y|` (RMS norms; `result.at_rest`), e.g. for horizons far
      past convergence, where an explicit solver's steps are limited by stability,
      not accuracy (`benchmarks/long_horizon.py`); later saves are marked unreached
      and `*_final` holds the state at rest. A flow that slow on a saddle's plateau
      (near a tiny init) stops there too: check `loss_final`.
    - `dense`: keep the dense output for `result.evaluate(t)` at any `t` in
      `[t0, t_final]`.
    - `progress_meter`: e.g. `diffrax.TqdmProgressMeter()` for a progress bar.

    **Returns:** a [`lnn_flow.FlowSolution`][].

    **Raises** `ValueError`/`TypeError` naming the argument, before anything is solved,
    for: complex, boolean, empty or non-finite factors, factors of mixed dtypes, a
    loss that is not a finite real scalar at `ws0`, and the option checks of
    `lnn_flow._solving._options.prepare` (times, tolerances finer than the dtype resolves,
    a negative `loss_threshold` for a loss of `lnn_flow.losses`).
    """
    ws0 = checked_factors(loss, ws0)
    options = SolveOptions.from_kwargs(options)
    return solve(_FactorSystem(loss, len(ws0)), ws0, t1, ts, options, init_name="ws0")
