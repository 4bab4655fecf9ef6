"""The notes' results as functions a researcher runs on their own problem.

Each function cites the result it computes or checks (Cohen & Razin, *Lecture Notes on
Linear Neural Networks*). Checks along a trajectory take a solved
[`lnn_flow.FlowSolution`][] (some need `dense=True`) and return an `eqx.Module` of
arrays, so they compose with `vmap` over seeds.

- Propositions 1, 3: gradient/Hessian of `phi`, the non-strict saddle at the origin.
- Definition 3, Theorem 2: deficiency margin, convergence time and envelope.
- Definition 4, Theorem 3: analytic SVD along a trajectory, predicted vs observed rates.
- Lemma 2, Proposition 5: determinant sign, a pre-flight check, the norm bound.
- Exercises 1, 2, 5: the `d_n = 1` field, the symmetric network `W W^T`, closed forms.
"""

from ._theory._convergence import (
    Theorem2Check,
    check_theorem2,
    convergence_envelope,
    deficiency_margin,
    theorem2_time,
)
from ._theory._determinant import (
    DeterminantPreflight,
    DeterminantTrack,
    determinant_preflight,
    determinant_track,
    proposition5_loss,
    proposition5_norm_bound,
)
from ._theory._exercises import exercise1_vector_field, exercise5_singular_values
from ._theory._landscape import objective_gradient, objective_hessian, proposition3_point
from ._theory._singular_values import (
    AnalyticSVD,
    SingularValueDynamics,
    analytic_svd,
    singular_value_dynamics,
    singular_value_rates,
)
from ._flows._symmetric import symmetric_factor_flow, symmetric_flow, symmetric_vector_field

__all__ = [
    "AnalyticSVD",
    "DeterminantPreflight",
    "DeterminantTrack",
    "SingularValueDynamics",
    "Theorem2Check",
    "analytic_svd",
    "check_theorem2",
    "convergence_envelope",
    "deficiency_margin",
    "determinant_preflight",
    "determinant_track",
    "exercise1_vector_field",
    "exercise5_singular_values",
    "objective_gradient",
    "objective_hessian",
    "proposition3_point",
    "proposition5_loss",
    "proposition5_norm_bound",
    "singular_value_dynamics",
    "singular_value_rates",
    "symmetric_factor_flow",
    "symmetric_flow",
    "symmetric_vector_field",
    "theorem2_time",
]
