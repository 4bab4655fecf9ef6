"""What the studies share (`lnn_flow._studies._study_rows`): effective rank and a solution's row."""

import jax.numpy as jnp
import numpy as np

from lnn_flow import studies
from lnn_flow._studies._study_rows import effective_rank, solution_row, timer


def test_effective_rank_is_the_rank_for_equal_singular_values():
    np.testing.assert_allclose(effective_rank(jnp.diag(jnp.array([2.0, 2.0, 0.0]))), 2.0)
    assert 1.0 < effective_rank(jnp.diag(jnp.array([1.0, 0.1]))) < 2.0
    assert studies.effective_rank is effective_rank  # re-exported


def test_solution_row_compares_with_the_truth():
    truth = jnp.diag(jnp.array([3.0, 4.0]))
    row = solution_row("x", 0.5 * truth, truth, 0.25, 1.23456, True, depth=2)
    assert list(row)[:2] == ["solution", "depth"]
    assert row["relative_error"] == 0.5 and row["nuclear_norm"] == 3.5
    assert row["seconds"] == 1.235 and row["success"] is True
    assert 0.0 <= timer()() < 1.0
