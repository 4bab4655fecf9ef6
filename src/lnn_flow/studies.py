"""Implicit regularization studies (Sections 4 and 5 of the notes), each returning a
[`Report`][lnn_flow.studies.Report] with tables, figures and a summary.

- `completion`: deep linear networks vs the minimum-nuclear-norm solution on matrix
  completion (Supposition 1, Figure 2).
- `greedy`: singular values switching on one after another (Theorem 3, Figure 3).
- `norms`: norms that diverge as the loss falls (Lemma 2, Proposition 5).
- `tensor`: the CP flow's components switching on one at a time, the init scale, and
  the tensor flow against the factor flow on the matricized entries (Section 5).
- `hierarchical`: local components of a hierarchical tensor factorization switching on
  one at a time, and the same entries fitted by hierarchical, CP and matrix
  factorization (Section 5; Razin, Maman & Cohen 2022).
- `descent`: gradient descent against the flow and its modified flows (orders 1 and
  2), and mini-batch SGD against its stochastic modified equation.

Every study takes keyword parameters with defaults of the size the notes use; `STUDIES`
maps names to functions and `SMALL` holds reduced parameters that still show the effect.
A number of measurements (sensing) or observed entries (completion) is
`num_measurements`, the init size `scale`.
"""

from collections.abc import Callable
from typing import Any

from ._reports._report import Report, Untrusted
from ._studies._study_completion import completion_study
from ._studies._study_descent import descent_study
from ._studies._study_greedy import greedy_study, switch_on_times
from ._studies._study_hierarchical import hierarchical_study
from ._studies._study_norms import norms_study
from ._studies._study_rows import effective_rank
from ._studies._study_tensor import tensor_study

__all__ = [
    "Report",
    "SMALL",
    "Untrusted",
    "STUDIES",
    "completion_study",
    "descent_study",
    "effective_rank",
    "greedy_study",
    "hierarchical_study",
    "norms_study",
    "switch_on_times",
    "tensor_study",
]

STUDIES: dict[str, Callable[..., Report]] = {
    "completion": completion_study,
    "greedy": greedy_study,
    "norms": norms_study,
    "tensor": tensor_study,
    "hierarchical": hierarchical_study,
    "descent": descent_study,
}

# Reduced parameters that still show each effect (tests, notebooks, CI).
SMALL: dict[str, dict[str, Any]] = {
    # The second part at 300 observed entries: at 150 the first table's solutions all
    # miss the truth (relative errors 0.7 to 0.99).
    "completion": dict(size=30, rank=2, num_measurements=(150, 300), depths=(1, 3),
                       scale=1e-3, loss_reduction=1e-6,
                       loss_reductions=(1e-4, 1e-6, 1e-8), scales=(1e-4, 1e-2), seeds=2,
                       tail_num_measurements=300),
    "greedy": dict(size=10, rank=3, depths=(1, 3), t1=150.0),
    "norms": dict(depths=(2, 3), t1=2000.0, num_saves=200),
    # Rows that finish: at 60 observed entries no seed reached the loss threshold
    # within max_steps (every statistic NaN); at 100 and 120 all but one do.
    "tensor": dict(orders=(3,), sizes=(6,), rank=2, components=4,
                   num_measurements=(100, 120), scales=(1e-6, 1e-3), seeds=3,
                   num_saves=120, max_steps=4000),
    "hierarchical": dict(scales=(0.1, 0.3), seeds=2, num_saves=50),
    "descent": dict(depths=(2,), lrs=(0.1, 0.2), seeds=300),
}

# Parameters renamed, per study: old name -> new name. The old names are still accepted
# (with a DeprecationWarning) for one release, by the functions and by `lnn-flow run`.
_RENAMED: dict[str, dict[str, str]] = {
    "completion": {"counts": "num_measurements"},
    "greedy": {"measurements": "num_measurements"},
    "norms": {},
    "tensor": {},
    "hierarchical": {},
    "descent": {},
}
