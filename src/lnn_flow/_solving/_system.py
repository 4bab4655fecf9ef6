"""The declared interface every flow system implements.

A *system* is the ODE a flow solves: its right-hand side on a state `y` (the factors of
eq. 2, the end-to-end matrix of Theorem 1, ...) and two per-state maps: to the
end-to-end object the loss is evaluated on (a matrix today, a tensor for the
factorizations of Section 5) and to the factors (`None` where the state holds none).

The maps take ONE state. The solve path ([`lnn_flow._solving._solve.assemble`][]) applies them to
every save with `jax.vmap`, and to the final state directly, the same way for every
system: a map written per state cannot mix up the save axis with a factor axis.
"""

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._maths._network import end_to_end as _matrix_product

# `l(end_to_end) -> scalar`: a loss from `lnn_flow.losses` or any traceable callable.
Loss = Callable[[Float[Array, "..."]], Float[Array, ""]]

# The absolute tolerance of a solve given none, unless the system scales its own.
FIXED_ATOL = 1e-10


def flow_gradient(objective: Callable[[PyTree[Array]], Float[Array, ""]],
                  x: PyTree[Array]) -> PyTree[Array]:
    """`grad objective(x)`, NaN wherever `objective(x)` is not finite.

    A gradient flow is undefined where its objective is NaN or infinite, even where
    autodiff returns a finite gradient (a `jnp.where` onto NaN has a zero gradient in
    the branch not taken): the field is NaN there, so the solver rejects every step
    into such states ([`lnn_flow._solving._controller._FiniteGuard`][]) and the solve ends at
    the last state with a finite loss, saying so (`FlowSolution.blocked`). The value
    comes with the gradient (`jax.value_and_grad`): no extra evaluation.
    """
    value, grad = jax.value_and_grad(objective)(x)
    ok = jnp.isfinite(value)
    return jax.tree_util.tree_map(lambda g: jnp.where(ok, g, jnp.nan), grad)


class AbstractFlowSystem(eqx.Module):
    """An ODE `dy/dt = vector_field(t, y, args)` on a state `y` whose loss is
    `loss(end_to_end(y))`.

    Subclasses declare the fields `loss` and `depth` (static: it fixes the structure of
    the solve) and implement the three methods. A new flow is a new subclass in its
    own module plus its registration in [`lnn_flow._batching._methods`][]; the one solve path
    ([`lnn_flow._solving._solve.solve`][]) needs nothing else.
    """

    loss: eqx.AbstractVar[Loss]
    depth: eqx.AbstractVar[int]
    # `factors -> end-to-end object`, a plain function holding no system data: what
    # `FlowSolution.evaluate` applies to the factors of the dense output. The matrix
    # product `W_n ... W_1` unless a system's factors combine otherwise (CP factors).
    combine: ClassVar[Callable[..., Array]] = staticmethod(_matrix_product)
    # The vector field is minus a gradient, `-grad phi(y)`: its Jacobian `-H` is
    # symmetric with a real spectrum, the case of Chebyshev steps (`solver="auto"`,
    # [`lnn_flow._solving._switching`][]). False: no such promise (implicit steps only).
    gradient_flow: ClassVar[bool] = False

    @abc.abstractmethod
    def vector_field(self, t: Float[Array, ""], y: PyTree[Array], args) -> PyTree[Array]:
        """`dy/dt` at time `t` (the flows here are autonomous and ignore `t`, `args`)."""

    @abc.abstractmethod
    def end_to_end(self, y: PyTree[Array]) -> Float[Array, "..."]:
        """The end-to-end object of ONE state `y`: what `loss` is evaluated on."""

    @abc.abstractmethod
    def factors(self, y: PyTree[Array]) -> tuple[Float[Array, "..."], ...] | None:
        """The factors `(W_1, ..., W_n)` of ONE state `y`; `None` when the state holds
        no factors (flows on the end-to-end object alone)."""

    def default_atol(self, y0: PyTree[Array], rtol: ArrayLike) -> Float[Array, ""]:
        """The `atol` of a solve from `y0` given `atol=None` (the default option):
        `FIXED_ATOL` (1e-10) in the state's dtype, a host value (no dispatch). A system
        whose state can be tiny overrides it with one scaled from `y0` (the end-to-end
        flow)."""
        dtype = jax.tree_util.tree_leaves(y0)[0].dtype
        return np.asarray(FIXED_ATOL, dtype)

    def loss_of_state(self, y: PyTree[Array]) -> Float[Array, ""]:
        """`loss(end_to_end(y))`: the objective along the flow."""
        return self.loss(self.end_to_end(y))
