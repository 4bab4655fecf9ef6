"""Gradient flow on the weights of a hierarchical tensor factorization (Section 5;
Razin, Maman & Cohen 2022), the training dynamics of a deep convolutional arithmetic
network: `dW^v/dt = -d phi / dW^v` for every node `v` of the mode tree, with `phi(ws) =
l(W(ws))` and `W` the end-to-end tensor of [`lnn_flow._maths._hierarchical`][]. `W` is
linear in each `W^v`, so `-d phi/dW^v` is `grad l(W)` contracted with every other
weight (reverse-mode autodiff through the tree's product). A one-level tree without
output layer is the CP flow ([`lnn_flow._flows._tensor_flow.flow`][]).
"""

from typing import Any, Unpack

import equinox as eqx
from jaxtyping import ArrayLike, Float

from .._maths._hierarchical import HTProduct, HTWeights, binary_tree, ht_weights, mode_tree, product
from .._maths._tensor_losses import fits_loss
from .._solving._options import SolveKwargs, SolveOptions
from .._solving._result import FlowSolution
from .._solving._solve import solve
from .._solving._system import AbstractFlowSystem, Loss, flow_gradient


class _HTSystem(AbstractFlowSystem):
    """The hierarchical factorization's gradient flow with state `ws` (the weights,
    pre-order); `depth` is the order `N`, `tree` and `output` fix the product."""

    loss: Loss
    depth: int = eqx.field(static=True)
    tree: Any = eqx.field(static=True)
    output: bool = eqx.field(static=True)
    gradient_flow = True

    @property
    def combine(self):
        return HTProduct(self.tree, self.output)

    def vector_field(self, t, ws, args):
        grads = flow_gradient(lambda ws_: self.loss(product(ws_, self.tree, self.output)), ws)
        return tuple(-g for g in grads)

    def end_to_end(self, ws):
        return product(ws, self.tree, self.output)

    def factors(self, ws):
        return ws


def _checked(loss, ws, tree, output, name, finite=True):
    order = getattr(loss, "shape", None)
    tree_ = tree
    if tree_ is None:
        if order is None:
            raise ValueError("`tree` is needed where the loss does not state its shape")
        tree_ = binary_tree(len(order))
    tree_ = mode_tree(tree_, None if order is None else len(order))
    if not isinstance(output, bool):
        raise TypeError(f"`output` must be True or False; got {output!r}")
    ws, shape = ht_weights(ws, tree_, output, name, finite=finite)
    fits_loss(loss, shape, name)
    return ws, tree_, shape


def flow(
    loss: Loss,
    ws0: HTWeights,
    t1: float,
    ts: Float[ArrayLike, " k"] | None = None,
    *,
    tree=None,
    output: bool = True,
    **options: Unpack[SolveKwargs],
) -> FlowSolution:
    """Solve the gradient flow on the weights `ws0` of a hierarchical tensor
    factorization on the mode tree `tree` (default: the balanced binary tree over the
    loss's modes; [`lnn_flow.hierarchical.binary_tree`][]).

    **Arguments:**

    - `loss`: `l(W) -> scalar` on the `(d_0, ..., d_{N-1})` tensor (`TensorCompletion`,
      `TensorSensing` or a callable; a callable needs `tree`).
    - `ws0`: one weight matrix per tree node in pre-order, `(R_v, R_parent(v))`
      ([`lnn_flow.hierarchical.balanced`][], `gaussian`).
    - `output`: whether the root has its `(R_root, 1)` output matrix (`False`: the
      root sums its channels; a one-level tree is then CP).
    - `t1`, `ts`, `**options`: as for [`lnn_flow.factor_flow`][] (`solver="auto"`
      included: the field is minus a gradient).

    **Returns:** a [`lnn_flow.FlowSolution`][] with the tensors in `end_to_end`, the
    weights in `factors` and `depth = N`; `evaluate(t)` gives the tensor at `t`.

    **Raises** `ValueError`/`TypeError` naming the argument before anything is solved:
    a tree that does not cover the modes once, weights of the wrong count, shape or
    dtype (complex included), non-finite weights, a loss of another shape.
    """
    ws0, tree, shape = _checked(loss, ws0, tree, output, "ws0")
    options = SolveOptions.from_kwargs(options)
    return solve(_HTSystem(loss, len(shape), tree, output), ws0, t1, ts, options,
                 init_name="ws0")


def hierarchical_system(loss: Loss, member, arguments) -> _HTSystem:
    """The registry's system builder ([`lnn_flow._batching._methods`][]): one member of
    `init` checked against `tree`, `output` and the loss (errors name `init`)."""
    output = arguments.get("output", True)
    _, tree, shape = _checked(loss, member, arguments.get("tree"), output, "init",
                              finite=False)
    return _HTSystem(loss, len(shape), tree, output)
