"""Definition 4 and Theorem 3 (lnn_flow._theory._singular_values): the analytic SVD and the
singular value rates along solved flows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATOL, RTOL, sensing

import lnn_flow as lf

th = lf.theory


def test_analytic_svd_has_no_jumps_or_flips():
    """A rotation-and-crossing path: sorted SVD reorders at the crossing; the analytic
    one follows each component continuously."""
    ts = jnp.linspace(0.0, 1.0, 100)  # no save exactly at the crossing (W has a
    # double singular value there, so any rotation of its pair is an SVD)
    R = lambda a: jnp.array([[jnp.cos(a), -jnp.sin(a)], [jnp.sin(a), jnp.cos(a)]])
    Ws = jax.vmap(lambda t: R(t) @ jnp.diag(jnp.array([1.0 + t, 1.5 - t])) @ R(2 * t).T)(ts)
    svd = th.analytic_svd(Ws)
    # Sorted at t = 0; the two cross at t = 0.25 and keep their columns after.
    np.testing.assert_allclose(svd.sigma, jnp.stack([1.5 - ts, 1.0 + ts], 1), atol=1e-12)
    np.testing.assert_allclose(
        jnp.einsum("kir,kr,kjr->kij", svd.U, svd.sigma, svd.V), Ws, atol=1e-12
    )
    assert jnp.all(jnp.sum(svd.U[1:] * svd.U[:-1], axis=1) > 0.9)


@pytest.mark.parametrize("depth", [2, 3])
def test_theorem3_rates_match_the_trajectory(depth):
    loss, _ = sensing((5, 5), rank=2, m=20)
    ws0 = lf.init.balanced(jax.random.PRNGKey(1), (5,) * (depth + 1), 0.1)
    sol = lf.factor_flow(loss, ws0, 20.0, rtol=RTOL, atol=ATOL, dense=True, max_steps=4096)
    dyn = th.singular_value_dynamics(loss, sol, jnp.linspace(0.0, 20.0, 201))
    scale = jnp.abs(dyn.predicted_rates).max()
    # The interpolant's derivative is accurate to about local tolerance / step:
    # rtol 1e-10 with steps >= 1e-3 gives <= 1e-7 relative; allow 1e-6.
    np.testing.assert_allclose(dyn.observed_rates, dyn.predicted_rates, atol=1e-6 * scale)
    assert scale > 0.1 and jnp.abs(dyn.sigma[-1, 0]) > 10 * jnp.abs(dyn.sigma[0, 0])
