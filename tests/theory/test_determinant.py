"""Lemma 2 and Proposition 5 (lnn_flow._theory._determinant): the sign of det W along solved
flows, the precision floor, the pre-flight check and the norm bound."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import sensing

import lnn_flow as lf

th = lf.theory


@pytest.fixture(scope="module")
def proposition5_flows():
    loss = th.proposition5_loss()
    W0 = jnp.array([[0.3, 0.1], [-0.05, 0.2]])  # det > 0
    ts = jnp.linspace(0.0, 400.0, 81)
    return loss, {
        depth: lf.end_to_end_flow(loss, W0, depth, ts[-1], ts, max_steps=100_000)
        for depth in (2, 3, 4)
    }


@pytest.mark.parametrize("depth", [3, 4])
def test_determinant_sign_constant_and_norm_bound(proposition5_flows, depth):
    _, flows = proposition5_flows
    sol = flows[depth]
    assert sol.success
    track = th.determinant_track(sol)
    assert track.sign_constant and jnp.all(track.det[sol.reached] > 0)
    assert not track.floor_reached
    norms = jnp.linalg.norm(sol.end_to_end, axis=(1, 2))
    bound = th.proposition5_norm_bound(sol.loss)
    assert jnp.all(norms >= bound)
    assert sol.loss[-1] < 1e-3 and norms[-1] > 2 * norms[0]  # loss falls, norm grows


def test_depth_two_precision_floor_is_reported(proposition5_flows):
    """det W decays exponentially at depth 2 and the computed trajectory crosses the
    singular matrices once sigma_min is below the solver's error: this is reported as
    the precision floor, and the sign before it is constant as Lemma 2 says."""
    _, flows = proposition5_flows
    sol = flows[2]
    track = th.determinant_track(sol)
    assert track.floor_reached
    trusted = sol.reached & ~track.at_precision_floor
    assert trusted[:3].all() and jnp.all(track.det[trusted] > 0)
    assert track.sign_constant
    first = jnp.argmax(track.at_precision_floor)
    assert track.sigma_min[first - 1] < 1e-3 * track.sigma_min[0]  # it was decaying


def test_determinant_sign_constant_on_random_square_problem():
    loss, _ = sensing((4, 4), rank=4, m=16)
    for seed in range(4):
        ws0 = lf.init.balanced(jax.random.PRNGKey(seed), (4, 4, 4, 4), 0.5)
        sol = lf.factor_flow(loss, ws0, 30.0, jnp.linspace(0.0, 30.0, 61))
        track = th.determinant_track(sol)
        assert track.sign_constant and not track.floor_reached


def test_preflight_predicts_which_inits_can_converge():
    """Lemma 2 on the whitened square loss with a full-rank target: an init whose det
    has the other sign stays at loss >= sigma_min(target)^2 / 2 forever."""
    target = jnp.diag(jnp.array([1.0, 0.8, 0.6]))
    loss = lf.losses.WhitenedSquare(target)
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    W0 = jax.vmap(lambda k: lf.end_to_end(lf.init.balanced(k, (3, 3, 3, 3), 0.1)))(keys)
    pre = jax.vmap(lambda W: th.determinant_preflight(W, target))(W0)
    assert 0 < pre.reachable.sum() < 16
    final = jax.vmap(lambda W: lf.end_to_end_flow(loss, W, 3, 200.0, max_steps=50_000))(W0)
    converged = final.loss_final < 1e-6
    np.testing.assert_array_equal(converged, pre.reachable)
    assert jnp.all(final.loss_final[~pre.reachable] >= pre.loss_floor[~pre.reachable])
