"""Hierarchical tensor factorization (Section 5 of the notes; Razin, Maman & Cohen
2022): the model of deep convolutional arithmetic networks as a flow system, its
gradient flow, and the flow's conservation law and local-component dynamics. Also
`lnn_flow.tensor.hierarchical`.

Weights `ws`: one matrix per node of a mode tree (nested tuples of mode indices, e.g.
`((0, 1), (2, 3))`), in pre-order, `W^v` of shape `(R_v, R_parent(v))`; the
end-to-end tensor multiplies the children's channels at every node and contracts
with the node's matrix ([`lnn_flow._maths._hierarchical`][]). A one-level tree without
output layer is the CP factorization of `lnn_flow.tensor`.
"""

from ._flows._hierarchical_flow import flow
from ._maths._hierarchical import (
    binary_tree,
    leaves,
    local_component_norms,
    matricization_singular_values,
    nodes,
    unbalancedness,
)
from ._maths._hierarchical import product as end_to_end
from ._maths._hierarchical_init import balanced, gaussian
from ._theory._hierarchical_theory import (
    HTConservationCheck,
    check_conservation,
    local_component_norm_rates,
    observed_local_component_norm_rates,
)

__all__ = [
    "HTConservationCheck",
    "balanced",
    "binary_tree",
    "check_conservation",
    "end_to_end",
    "flow",
    "gaussian",
    "leaves",
    "local_component_norm_rates",
    "local_component_norms",
    "matricization_singular_values",
    "nodes",
    "observed_local_component_norm_rates",
    "unbalancedness",
]
