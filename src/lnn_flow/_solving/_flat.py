"""The solver's state as one flat vector, whatever the system's state is.

diffrax works leaf by leaf on a pytree state: with `n` factors, every Runge-Kutta
combination, error norm and interpolation of a step is `n` small XLA operations per
stage. Solving on one vector (as `jax.experimental.ode.odeint` does) makes each of them
one operation. [`FlatSystem`][] wraps any [`lnn_flow._solving._system.AbstractFlowSystem`][] so
that the solve sees a vector while the system's own vector field and per-state maps see
its structured state; step control is unchanged (diffrax's RMS norm runs over all
entries of a pytree, the same entries as of the vector).
"""

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from ._system import AbstractFlowSystem, Loss


class FlatLayout(eqx.Module):
    """How a structured state (a pytree of arrays of one dtype) lies in a vector:
    static, so it is part of the compiled program's key and not of its data."""

    treedef: Any = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    @classmethod
    def of(cls, y: PyTree[Array]) -> "FlatLayout":
        leaves, treedef = jax.tree_util.tree_flatten(y)
        return cls(treedef, tuple(tuple(x.shape) for x in leaves))

    @property
    def size(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes)

    def ravel(self, y: PyTree[Array]) -> Float[Array, " p"]:
        leaves = jax.tree_util.tree_leaves(y)
        if len(leaves) == 1:
            return jnp.ravel(leaves[0])
        return jnp.concatenate([jnp.ravel(x) for x in leaves])

    def unravel(self, v: Float[Array, " p"]) -> PyTree[Array]:
        leaves, start = [], 0
        for shape in self.shapes:
            stop = start + math.prod(shape)
            leaves.append(v[start:stop].reshape(shape))
            start = stop
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


class FlatSystem(AbstractFlowSystem):
    """`system` on the flat vector of its state ([`FlatLayout`][])."""

    system: AbstractFlowSystem
    layout: FlatLayout
    loss: Loss
    depth: int = eqx.field(static=True)

    def __init__(self, system: AbstractFlowSystem, layout: FlatLayout):
        self.system = system
        self.layout = layout
        self.loss = system.loss
        self.depth = system.depth

    @property
    def gradient_flow(self) -> bool:
        return self.system.gradient_flow

    def vector_field(self, t, y, args):
        dy = self.system.vector_field(t, self.layout.unravel(y), args)
        return self.layout.ravel(dy)

    def end_to_end(self, y):
        return self.system.end_to_end(self.layout.unravel(y))

    def factors(self, y):
        return self.system.factors(self.layout.unravel(y))

    def default_atol(self, y0, rtol):
        return self.system.default_atol(self.layout.unravel(y0), rtol)


def flat(system: AbstractFlowSystem, y0: PyTree[Array]) -> tuple[FlatSystem, Array]:
    """`system` and one initial state `y0`, as the flat system and vector a solve
    steps."""
    layout = FlatLayout.of(y0)
    return FlatSystem(system, layout), layout.ravel(y0)
