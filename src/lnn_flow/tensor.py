"""Tensor factorization (Section 5 of the notes): the CP parameterization, its
gradient flow and the flow's conservation law and component-norm dynamics.

Factors `fs = (A_1, ..., A_N)`, `A_n` of shape `(d_n, R)`; the end-to-end tensor
`W = sum_r a_r^1 (x) ... (x) a_r^N` of shape `(d_1, ..., d_N)`. The losses
(`TensorCompletion`, `TensorSensing`) are in `lnn_flow.losses` and the planted
problems (`random_tensor_completion`, `random_tensor_sensing`, `low_rank_tensor`) in
`lnn_flow.problems`; `lnn_flow.solve_batch("tensor", ...)` and
`lnn_flow.solve_pool("tensor", ...)` solve many inits of [`flow`][].
`lnn_flow.tensor.hierarchical` is the hierarchical factorization (the same toolkit
on a mode tree).
"""

from . import hierarchical
from ._maths._cp import component_norms, end_to_end, unbalancedness
from ._flows._tensor_flow import flow
from ._maths._tensor_init import balanced, gaussian
from ._theory._tensor_theory import (
    ConservationCheck,
    check_conservation,
    component_norm_rates,
    observed_component_norm_rates,
)

__all__ = [
    "ConservationCheck",
    "balanced",
    "check_conservation",
    "component_norm_rates",
    "component_norms",
    "end_to_end",
    "flow",
    "gaussian",
    "hierarchical",
    "observed_component_norm_rates",
    "unbalancedness",
]
