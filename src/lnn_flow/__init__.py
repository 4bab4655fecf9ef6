"""lnn_flow: gradient flows of deep linear neural networks as diffrax ODEs.

Factors `ws = (W_1, ..., W_n)`, `W_j` of shape `(d_j, d_{j-1})`; the end-to-end matrix
`W_n ... W_1` (Definition 2). Two flows, solved side by side:

- `factor_flow`: gradient flow on the factors (eq. 2);
- `end_to_end_flow`: the end-to-end dynamics of Theorem 1 (eq. 3) on `W` alone;
- `gradient_descent`, `end_to_end_descent`: their discrete counterparts (Claim 1);
- `modified_factor_flow`, `modified_end_to_end_flow`: the flows descent follows to
  second and third order (backward error analysis);
- `stochastic_gradient_descent`, `sgd_sde`: mini-batch SGD and the stochastic
  differential equation it follows (stochastic modified equations);
- `solve_batch`, `run_sweep`: many initializations and configurations, across devices.

`lnn_flow.theory` checks the notes' results along solved trajectories and
`lnn_flow.studies` runs the implicit-regularization studies of Section 4.

Importing lnn_flow turns on JAX's 64-bit mode (numerics are float64 unless a caller
passes float32 arrays) and runs the LAPACK behind JAX's CPU `svd`/`eigh` on one thread.
Both are process-wide: opt out with `LNN_FLOW_NO_X64=1` or
`LNN_FLOW_LAPACK_THREADS=keep` (or a thread count) before the import, or call
`lnn_flow.configure(x64=..., lapack_threads=...)` after it (see `lnn_flow._core._config`).
Equation numbers refer to Cohen & Razin, *Lecture Notes on Linear Neural Networks*.

The private subpackages are the layers, bottom to top: `_core`, `_maths`, `_solving`,
`_flows`, `_theory`, `_reports`, `_batching`, `_sweeps`, `_studies`, `_command`; a module
imports only from its own layer and those below (`tests/test_layout.py`).
"""

from ._core._config import configure
from ._core._config import configure_from_environment as _configure_from_environment

_configure_from_environment()  # x64 and one LAPACK thread; opt-outs: lnn_flow._core._config

from . import init, losses, problems, theory  # noqa: E402
from . import tensor  # noqa: E402
from ._flows._end_to_end import (  # noqa: E402
    apply_preconditioner,
    end_to_end_flow,
    end_to_end_vector_field,
)
from ._maths._preconditioner import preconditioner, preconditioner_eigh, unvec, vec  # noqa: E402
from ._flows._compare import (  # noqa: E402
    Acceleration,
    OrderFit,
    distance_to_flow,
    distance_vs_lr,
    first_iteration_within,
    fit_order,
    implicit_acceleration,
    loss_minimum,
    max_distance_to_flow,
    unbalancedness_along,
    unbalancedness_step,
)
from ._flows._descent import end_to_end_descent, gradient_descent  # noqa: E402
from ._flows._modified import (  # noqa: E402
    modified_end_to_end_flow,
    modified_factor_flow,
    modified_factor_vector_field,
    modified_objective,
)
from ._flows._stochastic import (  # noqa: E402
    sgd_diffusion,
    sgd_sde,
    stochastic_gradient_descent,
)
from ._batching._batch import solve_batch, solve_pool  # noqa: E402
from ._sweeps._sweep import (  # noqa: E402
    CorruptResultError,
    load_study,
    load_sweep,
    run_sweep,
    summarize,
)
from ._flows._factor import factor_flow, factor_vector_field  # noqa: E402
from ._maths._network import (  # noqa: E402
    end_to_end,
    overparameterized_objective,
    unbalancedness,
    unbalancedness_matrices,
)
from ._solving._result import FlowSolution, PoolStats, SolverStats  # noqa: E402
from ._solving._chebyshev import RKC2  # noqa: E402
from ._solving._options import SolveOptions  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str):
    # `lnn_flow.studies` imports matplotlib: loaded on first access, so `import
    # lnn_flow` stays light and `lf.studies` works like `lf.theory`.
    if name == "studies":
        import importlib

        return importlib.import_module(f"{__name__}.studies")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Acceleration",
    "CorruptResultError",
    "FlowSolution",
    "RKC2",
    "OrderFit",
    "PoolStats",
    "SolveOptions",
    "SolverStats",
    "apply_preconditioner",
    "configure",
    "distance_to_flow",
    "distance_vs_lr",
    "end_to_end_descent",
    "end_to_end",
    "end_to_end_flow",
    "end_to_end_vector_field",
    "factor_flow",
    "factor_vector_field",
    "first_iteration_within",
    "fit_order",
    "gradient_descent",
    "implicit_acceleration",
    "init",
    "load_study",
    "load_sweep",
    "loss_minimum",
    "losses",
    "max_distance_to_flow",
    "modified_end_to_end_flow",
    "modified_factor_flow",
    "modified_factor_vector_field",
    "modified_objective",
    "overparameterized_objective",
    "preconditioner",
    "preconditioner_eigh",
    "problems",
    "run_sweep",
    "sgd_diffusion",
    "sgd_sde",
    "solve_batch",
    "solve_pool",
    "stochastic_gradient_descent",
    "studies",
    "summarize",
    "theory",
    "tensor",
    "unbalancedness",
    "unbalancedness_along",
    "unbalancedness_step",
    "unbalancedness_matrices",
    "unvec",
    "vec",
]
