"""Definition 3 and Theorem 2 (lnn_flow._theory._convergence): the deficiency margin and the
convergence envelope, checked on solved flows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATOL, RTOL, trajectory_tolerance

import lnn_flow as lf

th = lf.theory


TARGET = jnp.array([[2.0, 0.3, 0.0], [-0.2, 1.5, 0.4], [0.1, 0.0, 1.8]])


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_theorem2_envelope_holds_from_a_deficiency_margin(depth):
    loss = lf.losses.WhitenedSquare(TARGET)
    W0 = TARGET + 0.4 * jax.random.normal(jax.random.PRNGKey(depth), TARGET.shape) / 3
    assert th.deficiency_margin(W0, TARGET) > 0.2
    ws0 = lf.init.from_end_to_end(W0, (3,) * (depth + 1))
    ts = jnp.linspace(0.0, 8.0, 41)
    sol = lf.factor_flow(loss, ws0, ts[-1], ts, rtol=RTOL, atol=ATOL)
    # The computed loss carries the trajectory error e (conftest rule) as
    # |l(W + e) - l(W)| <= |W - target| e + e^2/2.
    e = trajectory_tolerance(sol.stats.num_steps, jnp.abs(sol.end_to_end).max())
    check = th.check_theorem2(loss, sol, slack=jnp.sqrt(2 * sol.loss[0]) * e + e**2)
    assert check.holds
    assert check.gap[-1] < 1e-3 * check.gap[0]  # the flow converges...
    assert check.gap[-1] > 0  # ...and the comparison is not of zeros
    eps = float(check.gap[-1])
    t_bound = th.theorem2_time(check.gap[0], eps, 1.0, check.delta, depth)
    assert t_bound >= ts[-1] * (1 - 1e-9)  # the bound is valid: reaching eps took t1


def test_deficiency_margin_and_envelope_values():
    np.testing.assert_allclose(th.deficiency_margin(jnp.eye(2), 2 * jnp.eye(2)),
                               2 - jnp.sqrt(2.0))
    env = th.convergence_envelope(jnp.array([0.0, 1.0]), 2.0, 1.0, 0.25, 2)
    np.testing.assert_allclose(env, [2.0, 2.0 * np.exp(-2 * 0.25)])
