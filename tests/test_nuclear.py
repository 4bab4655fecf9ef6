"""Eq. (10): the ADMM minimum-nuclear-norm completion against an interior-point solve."""

import jax
import numpy as np
import pytest

import lnn_flow as lf
from lnn_flow._nuclear import min_nuclear_norm_completion

cp = pytest.importorskip("cvxpy")


@pytest.mark.parametrize("shape,rank,m", [((12, 10), 2, 50), ((8, 15), 1, 40)])
def test_matches_convex_solver(shape, rank, m):
    loss, _ = lf.problems.random_matrix_completion(jax.random.PRNGKey(m), shape, rank, m)
    ours = min_nuclear_norm_completion(loss, rtol=1e-9)
    assert ours.converged and float(ours.constraint_violation) == 0.0
    X = cp.Variable(shape)
    rows, cols = np.asarray(loss.rows), np.asarray(loss.cols)
    problem = cp.Problem(cp.Minimize(cp.normNuc(X)), [X[rows, cols] == np.asarray(loss.values)])
    problem.solve(solver="CLARABEL")
    # Clarabel stops at ~1e-8 relative duality gap; ADMM at rtol 1e-9 residuals.
    np.testing.assert_allclose(float(ours.nuclear_norm), problem.value, rtol=1e-6)
    # (The minimizer need not be unique, so only the optimal value and feasibility,
    # which define a solution of eq. (10), are compared.)


def test_rejects_other_losses():
    with pytest.raises(TypeError, match="MatrixCompletion"):
        min_nuclear_norm_completion(lf.losses.WhitenedSquare(np.eye(2)))
