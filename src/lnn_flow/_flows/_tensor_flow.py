"""Gradient flow on CP factors: the training dynamics of the arithmetic networks of
Section 5 (tensor factorization; Razin, Maman & Cohen 2021).

With `W = sum_r a_r^1 (x) ... (x) a_r^N` ([`lnn_flow._maths._cp`][]) and the objective
`phi(A_1, ..., A_N) = l(W)`, gradient flow is

    dA_n/dt = -d phi / d A_n,   column r:  da_r^n/dt = -grad l(W) x_{m != n} a_r^m,

the gradient `G = grad l(W)` contracted with the other factors' columns in every mode
but `n` (the chain rule through the multilinear `W`, computed here by reverse-mode
autodiff). For `N = 2` this is eq. (2) at depth 2 with `W_1 = A_2^T`, `W_2 = A_1`.
"""

from typing import ClassVar, Unpack

import equinox as eqx
from jaxtyping import ArrayLike, Float

from .._maths._cp import CPFactors, cp_factors, product, shape_of
from .._solving._options import SolveKwargs, SolveOptions
from .._solving._result import FlowSolution
from .._solving._solve import solve
from .._solving._system import AbstractFlowSystem, Loss, flow_gradient
from .._maths._tensor_losses import fits_loss


def _field(loss: Loss, fs: CPFactors) -> CPFactors:
    grads = flow_gradient(lambda fs_: loss(product(fs_)), fs)
    return tuple(-g for g in grads)


def cp_vector_field(loss: Loss, fs: CPFactors) -> CPFactors:
    """`(dA_1/dt, ..., dA_N/dt)`: minus the gradient of `l(W)` with respect to each
    factor (by reverse-mode autodiff through the CP product)."""
    fs = cp_factors(fs, "fs")
    fits_loss(loss, shape_of(fs), "fs")
    return _field(loss, fs)


class _CPSystem(AbstractFlowSystem):
    """The CP gradient flow with state `(A_1, ..., A_N)`: the factors are the state;
    `depth` is the order `N`."""

    loss: Loss
    depth: int = eqx.field(static=True)
    combine: ClassVar = staticmethod(product)
    gradient_flow: ClassVar[bool] = True

    def vector_field(self, t, fs, args):
        return _field(self.loss, fs)

    def end_to_end(self, fs):
        return product(fs)

    def factors(self, fs):
        return fs


def flow(
    loss: Loss,
    fs0: tuple[Float[ArrayLike, "_ R"], ...],
    t1: float,
    ts: Float[ArrayLike, " k"] | None = None,
    **options: Unpack[SolveKwargs],
) -> FlowSolution:
    """Solve the gradient flow on CP factors `fs0 = (A_1, ..., A_N)` (Section 5).

    The objective is `phi(A_1, ..., A_N) = l(W)` with the end-to-end tensor
    `W = sum_r W_r`, `W_r = a_r^1 (x) ... (x) a_r^N`. `W` is linear in each column, so
    the directional derivative of `phi` along a change `delta a_r^n` is
    `<G, a_r^1 (x) ... (x) delta a_r^n (x) ... (x) a_r^N>` with `G = grad l(W)`, and the
    flow `dA_n/dt = -grad_{A_n} phi` reads, column by column,

        d a_r^n / dt = -G x_1 a_r^1 ... x_{n-1} a_r^{n-1} x_{n+1} a_r^{n+1} ... x_N a_r^N

    (`x_m` contracts mode `m`). For `N = 2`, `W = A_1 A_2^T` and this is the depth-2
    factor flow of eq. (2) with `W_1 = A_2^T`, `W_2 = A_1`. This is the dynamical
    setting of Razin, Maman & Cohen (2021), "Implicit Regularization in Tensor
    Factorization", whose analysis (cited in Section 5 of the notes) shows the
    implicit regularization lowering tensor rank: from a small balanced init the
    component norms evolve as `d||W_r||/dt = N ||W_r||^{2-2/N} <-G, W_r/||W_r||>`
    ([`lnn_flow._theory._tensor_theory.component_norm_rates`][]), so components grow one
    at a time.

    **Arguments:**

    - `loss`: `l(W) -> scalar` on the `(d_1, ..., d_N)` end-to-end tensor: a loss from
      `lnn_flow.losses` (`TensorCompletion`, `TensorSensing`, or a matrix loss for
      `N = 2`) or any JAX-traceable callable.
    - `fs0`: initial factors, `A_n` of shape `(d_n, R)`, `N >= 2`
      (`lnn_flow.tensor.balanced`, `lnn_flow.tensor.gaussian`).
    - `t1`, `ts`, `**options`: as for [`lnn_flow.factor_flow`][] (the same solve
      options, defaults in `lnn_flow._solving._options.DEFAULTS`; `atol=None` is 1e-10).

    **Returns:** a [`lnn_flow.FlowSolution`][] whose `end_to_end` holds the tensors,
    `factors` the CP factors and `depth` the order `N`; `evaluate(t)` gives the tensor
    at `t` and `evaluate_factors(t)` the factors (with `dense=True`).

    **Raises** `ValueError`/`TypeError` naming the argument, before anything is solved,
    for: fewer than two factors, factors that are not 2-D or differ in `R` (columns),
    complex, boolean, empty or non-finite factors, mixed dtypes, a loss of another
    tensor shape or not finite at `fs0`, and the option checks of
    `lnn_flow._solving._options.prepare`.
    """
    fs0 = cp_factors(fs0, "fs0")
    fits_loss(loss, shape_of(fs0), "fs0")
    options = SolveOptions.from_kwargs(options)
    return solve(_CPSystem(loss, len(fs0)), fs0, t1, ts, options, init_name="fs0")


def cp_system(loss: Loss, member, arguments) -> _CPSystem:
    """The registry's system builder ([`lnn_flow._batching._methods`][]): one member of `init`
    checked as CP factors against the loss (errors name `init`)."""
    fs = cp_factors(member, "init", finite=False)
    fits_loss(loss, shape_of(fs), "init")
    return _CPSystem(loss, len(fs))
