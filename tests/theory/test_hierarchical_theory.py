"""The hierarchical factorization flow's local-component law (R), predicted against
the solved trajectory, and the conservation check's refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATOL, RTOL, SAME_SIZE

import lnn_flow as lf

ht = lf.tensor.hierarchical
SHAPE = (3, 3, 3, 3)
TREE = ((0, 1), (2, 3))
T1 = 3.0


@pytest.fixture(scope="module")
def solved():
    loss, _ = lf.problems.random_tensor_sensing(jax.random.PRNGKey(0), SHAPE, 2, 40)
    ws0 = ht.balanced(jax.random.PRNGKey(1), SHAPE, 3, 1.0)
    sol = ht.flow(loss, ws0, T1, jnp.linspace(0.0, T1, 4), rtol=RTOL, atol=ATOL,
                  dense=True)
    return loss, sol


def test_predicted_equal_observed_local_component_rates(solved):
    """(R) at the interpolated weights against the time derivative of the interpolant
    (independent of the loss): off by ~ tol / h per entry for local error tol = rtol
    max|y| + atol and mean step h; a norm of K = 3 vectors of <= sqrt(3) entries each
    moves by <= 3 ||A||^{2/3} sqrt(3) per entry's error; SAME_SIZE allows the
    interpolant's constant (as for the CP law, tests/theory/test_tensor_theory.py)."""
    loss, sol = solved
    assert sol.success
    ts = jnp.linspace(0.05, T1 - 0.05, 9)
    observed = ht.observed_local_component_norm_rates(sol, ts)
    predicted = jax.vmap(lambda ws: ht.local_component_norm_rates(loss, ws, TREE))(
        jax.vmap(sol.evaluate_factors)(ts))
    norms = max(float(jnp.max(n)) for n in jax.vmap(
        lambda ws: ht.local_component_norms(ws, TREE))(jax.vmap(sol.evaluate_factors)(ts)))
    biggest = max(float(jnp.abs(w).max()) for w in sol.factors)
    h = T1 / float(sol.stats.num_steps)
    tol = 3 * norms ** (2 / 3) * np.sqrt(3) * SAME_SIZE * (RTOL * biggest + ATOL) / h
    assert len(observed) == len(predicted) == 3
    for o, p in zip(observed, predicted):
        assert o.shape == p.shape == (9, 3)
        assert float(jnp.abs(o - p).max()) <= tol
    assert max(float(jnp.abs(p).max()) for p in predicted) > 1e-2  # rates, not zeros


def test_balanced_rate_is_k_norm_power(solved):
    """Balanced (K = 3 at every node of a binary tree with an output layer), (R) is
    3 ||A||^{4/3} <-g, A/||A||>. The drive <-g, A> read here from the node's own rows
    (the rates take it from the first child's columns): equal by (C). Balance holds to
    the conservation drift (~rtol of the squared norms): rtol 1e-6 leaves room."""
    loss, sol = solved
    ws = sol.factors_final
    rates = ht.local_component_norm_rates(loss, ws, TREE)
    norms = ht.local_component_norms(ws, TREE)
    grads = jax.grad(lambda ws_: loss(ht.end_to_end(ws_, TREE)))(ws)
    drive = -jnp.sum(ws[1] * grads[1], axis=1)  # node (0, 1), weight 1 in pre-order
    np.testing.assert_allclose(rates[1], 3 * norms[1] ** (1 / 3) * drive, rtol=1e-6)
    assert float(jnp.abs(drive).max()) > 1e-3


def test_checks_refuse_what_they_cannot_read(solved):
    loss, _ = solved
    W0 = jnp.ones((4, 3))
    matrix = lf.end_to_end_flow(lf.losses.WhitenedSquare(W0), 0.1 * W0, 2, 1.0)
    with pytest.raises(ValueError, match="one hierarchical factorization solve"):
        ht.check_conservation(matrix)
    with pytest.raises(ValueError, match="one hierarchical factorization solve"):
        ht.observed_local_component_norm_rates(matrix, jnp.array([0.5]))
