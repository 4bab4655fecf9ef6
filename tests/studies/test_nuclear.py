"""Eq. (10): the ADMM minimum-nuclear-norm completion against an interior-point solve."""

import jax
import numpy as np
import pytest

import lnn_flow as lf
from lnn_flow._studies._nuclear import min_nuclear_norm_completion

cp = pytest.importorskip("cvxpy")


@pytest.mark.parametrize("shape,rank,m", [((12, 10), 2, 50), ((8, 15), 1, 40)])
def test_matches_convex_solver(shape, rank, m):
    loss, _ = lf.problems.random_matrix_completion(jax.random.PRNGKey(m), shape, rank, m)
    ours = min_nuclear_norm_completion(loss, rtol=1e-9)
    assert ours.converged
    # W agrees with the observations (it is projected onto them); the pre-projection
    # iterate Z is within the stopping test's primal residual, rtol * max(|X|, |Z|)_F,
    # and |Z|_F <= |W|_F (1 + rtol): hence 1.01 |W|_F.
    rows, cols = np.asarray(loss.rows), np.asarray(loss.cols)
    np.testing.assert_array_equal(np.asarray(ours.W)[rows, cols], np.asarray(loss.values))
    assert 0 < float(ours.constraint_violation) <= 1e-9 * 1.01 * float(np.linalg.norm(ours.W))
    X = cp.Variable(shape)
    problem = cp.Problem(cp.Minimize(cp.normNuc(X)), [X[rows, cols] == np.asarray(loss.values)])
    problem.solve(solver="CLARABEL")
    # Clarabel stops at ~1e-8 relative duality gap; ADMM at rtol 1e-9 residuals.
    np.testing.assert_allclose(float(ours.nuclear_norm), problem.value, rtol=1e-6)
    # (The minimizer need not be unique, so only the optimal value and feasibility,
    # which define a solution of eq. (10), are compared.)


def test_unconverged_solve_reports_its_violation():
    """Stopped early, ADMM's two iterates disagree: the reported violation says so
    (measured after the projection it would be 0 however early the stop)."""
    loss, _ = lf.problems.random_matrix_completion(jax.random.PRNGKey(50), (12, 10), 2, 50)
    early = min_nuclear_norm_completion(loss, rtol=1e-9, max_iterations=3)
    assert not early.converged and int(early.iterations) == 3
    # 1e-3 of the data's scale: three iterations leave a residual far above the
    # converged 1e-9 * |W| (the first SVT step shrinks every singular value by 1/rho).
    assert float(early.constraint_violation) > 1e-3 * float(np.abs(loss.values).max())


def test_rejects_other_losses():
    with pytest.raises(TypeError, match="MatrixCompletion"):
        min_nuclear_norm_completion(lf.losses.WhitenedSquare(np.eye(2)))
