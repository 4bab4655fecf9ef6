"""The CP flow's conservation law (analogue of Lemma 1) and component-norm dynamics
(analogue of Theorem 3), checked along solves; order 2 against the matrix theory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATOL, RTOL, SAME_SIZE, trajectory_tolerance

import lnn_flow as lf

SHAPE = (3, 4, 5)
T1 = 3.0
TS = jnp.linspace(0.0, T1, 7)


@pytest.fixture(scope="module")
def sensing():
    loss, _ = lf.problems.random_tensor_sensing(jax.random.PRNGKey(0), SHAPE, 2, 30)
    return loss


@pytest.fixture(scope="module")
def unbalanced(sensing):
    fs0 = lf.tensor.gaussian(jax.random.PRNGKey(5), SHAPE, 3, 0.6)
    return fs0, lf.tensor.flow(sensing, fs0, T1, TS, rtol=RTOL, atol=ATOL)


def test_conservation_from_an_unbalanced_init(unbalanced):
    """||a_r^n||^2 - ||a_r^n'||^2 constant: each factor entry is within
    e = trajectory_tolerance(steps, max|y|) of the true flow (conftest's rule: init of
    O(1) norm, no saddle), so a column of d <= 5 entries within sqrt(d) e, its squared
    norm within 2 ||a|| sqrt(d) e (+ e^2), and a difference of two within twice it."""
    fs0, sol = unbalanced
    assert sol.success and sol.reached.all()
    assert float(lf.tensor.unbalancedness(fs0)) > 0.5  # really unbalanced
    check = lf.tensor.check_conservation(sol)
    biggest = max(float(jnp.abs(f).max()) for f in sol.factors)
    e = trajectory_tolerance(sol.stats.num_steps, biggest)
    tol = 2 * 2 * np.sqrt(float(check.scale)) * np.sqrt(max(SHAPE)) * e
    assert float(check.max_drift) <= tol, (float(check.max_drift), tol)
    assert check.drift.shape == TS.shape and float(check.drift[0]) == 0.0
    np.testing.assert_allclose(
        lf.tensor.unbalancedness(sol.factors_final), lf.tensor.unbalancedness(fs0),
        atol=tol)
    assert float(sol.loss[-1]) < 0.5 * float(sol.loss[0])  # the flow did move


def test_predicted_equal_observed_component_norm_rates(sensing):
    """From a balanced init (kept balanced by the conservation law) the rates are
    d||W_r||/dt = N ||W_r||^{2-2/N} <-G, W_r/||W_r||>. Observed: the time derivative
    of the dense interpolant (4th order for Tsit5), off by ~ tol / h per entry for
    local error tol = rtol max|y| + atol and step h (mean step T1 / steps here);
    d||W_r||/dt sums N column terms of size <= ||W_r||^{1-1/N} sqrt(d) |da'|, and
    SAME_SIZE allows the interpolant's constant."""
    fs0 = lf.tensor.balanced(jax.random.PRNGKey(1), SHAPE, 3, 0.3)
    sol = lf.tensor.flow(sensing, fs0, T1, TS, rtol=RTOL, atol=ATOL, dense=True)
    ts = jnp.linspace(0.05, T1 - 0.05, 12)
    observed = lf.tensor.observed_component_norm_rates(sol, ts)
    factors = jax.vmap(sol.evaluate_factors)(ts)
    predicted = jax.vmap(lambda *fs: lf.tensor.component_norm_rates(sensing, fs))(
        *factors)
    assert observed.shape == predicted.shape == (12, 3)
    biggest = max(float(jnp.abs(f).max()) for f in sol.factors)
    norms = float(jnp.max(jax.vmap(lambda *fs: lf.tensor.component_norms(fs))(*factors)))
    h = T1 / float(sol.stats.num_steps)
    per_entry = SAME_SIZE * (RTOL * biggest + ATOL) / h
    tol = 3 * norms ** (2 / 3) * np.sqrt(max(SHAPE)) * per_entry
    assert float(jnp.abs(observed - predicted).max()) <= tol
    assert float(jnp.abs(predicted).max()) > 0.1  # rates of order one, not zero
    one = lf.tensor.observed_component_norm_rates(sol, ts[3])
    np.testing.assert_allclose(one, observed[3], rtol=1e-12)
    with pytest.raises(ValueError, match="outside the solved interval"):
        lf.tensor.observed_component_norm_rates(sol, T1 + 1.0)


def test_rates_are_theorem3_at_order_two():
    """N = 2: ||W_r|| = ||a_r^1|| ||a_r^2||; for balanced columns with orthogonal
    a^1's and a^2's these are the singular values of W = A_1 A_2^T and the rates
    are Theorem 3's at depth 2, 2 sigma_r <-G, u_r v_r^T>."""
    loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(2), (4, 3), 2, 8)
    U, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(3), (4, 2)))
    V, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(4), (3, 2)))
    sigma = jnp.array([1.5, 0.4])
    fs = (U * jnp.sqrt(sigma), V * jnp.sqrt(sigma))
    W = lf.tensor.end_to_end(fs)
    expected = lf.theory.singular_value_rates(loss, W, U, sigma, V, 2)
    np.testing.assert_allclose(lf.tensor.component_norm_rates(loss, fs), expected,
                               rtol=1e-12)


def test_checks_refuse_what_they_cannot_read(sensing, unbalanced):
    _, sol = unbalanced
    with pytest.raises(ValueError, match="no dense output"):
        lf.tensor.observed_component_norm_rates(sol, 1.0)
    W0 = jnp.ones((4, 3))
    matrix = lf.end_to_end_flow(lf.losses.WhitenedSquare(W0), 0.1 * W0, 2, 1.0)
    with pytest.raises(ValueError, match="one CP flow solve"):
        lf.tensor.check_conservation(matrix)
    fs = lf.tensor.balanced(jax.random.PRNGKey(0), (3, 5, 4), 2, 1.0)
    with pytest.raises(ValueError, match="`fs` gives an end-to-end tensor of shape"):
        lf.tensor.component_norm_rates(sensing, fs)
