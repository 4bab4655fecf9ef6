"""Exercises 1 and 5 (lnn_flow._theory._exercises) against solved flows; Exercise 2 is
tested with its flows in tests/test_symmetric.py."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATOL, RTOL, sensing, trajectory_tolerance

import lnn_flow as lf

th = lf.theory


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_exercise1_single_output_field(depth):
    loss, _ = sensing((1, 5), rank=1, m=4)
    w = jax.random.normal(jax.random.PRNGKey(depth), (1, 5))
    np.testing.assert_allclose(
        th.exercise1_vector_field(loss, w, depth),
        lf.end_to_end_vector_field(loss, w, depth),
        atol=1e-13,
    )


@pytest.mark.parametrize("depth", [2, 3])
def test_exercise5_closed_forms_match_solved_flows(depth):
    """A linear loss l(W) = -<C, W> with C = U diag(c) V^T and W(0) = eps U V^T: the
    drive <-grad l, u_r v_r^T> = c_r is constant and the singular vectors stay put."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(5))
    U, _ = jnp.linalg.qr(jax.random.normal(k1, (3, 3)))
    V, _ = jnp.linalg.qr(jax.random.normal(k2, (3, 3)))
    c = jnp.array([0.9, 0.6, 0.3])
    C = U @ jnp.diag(c) @ V.T
    eps = 0.05
    ts = jnp.linspace(0.0, 3.0 if depth == 2 else 2.8, 16)  # n = 3 blows up at 3.0
    sol = lf.factor_flow(
        lambda W: -jnp.sum(C * W),
        lf.init.from_end_to_end(eps * U @ V.T, (3,) * (depth + 1)),
        ts[-1], ts, rtol=RTOL, atol=ATOL,
    )
    got = jnp.einsum("ir,kij,jr->kr", U, sol.end_to_end, V)
    want = th.exercise5_singular_values(eps, c, ts, depth)
    e = trajectory_tolerance(sol.stats.num_steps, want.max())
    np.testing.assert_allclose(got, want, atol=2 * e)
    ratio = want[:, 0] / want[:, 1]
    assert ratio[-1] > 5 * ratio[0]  # gaps grow fast


def test_exercise5_past_blow_up_and_negative_start():
    # n = 4, sigma(0) = 1, c = 1: blow-up at sigma0^{2/n-1} / ((1 - 2/n) n c) = 0.5.
    values = th.exercise5_singular_values(1.0, 1.0, jnp.array([0.0, 0.3, 0.6, 1.0]), 4)
    np.testing.assert_allclose(values[:2, 0], [1.0, 6.25])
    assert jnp.all(jnp.isinf(values[2:, 0]))


class LinearLoss(eqx.Module):
    """l(W) = -c W[0, 0], with `c` traced (one compile per depth, not per case)."""

    c: jax.Array

    def __call__(self, W):
        return -self.c * W[0, 0]


@pytest.mark.parametrize(
    "sigma0, c, depth, t1",
    [
        (-0.5, 0.7, 2, 1.0),   # shrinks towards 0 (exponentially)
        (-0.5, -0.7, 2, 1.0),  # grows in size, stays negative
        (-0.5, 0.7, 3, 1.5),   # shrinks towards 0 (like t^-3)
        (-0.5, -0.7, 3, 1.5),  # grows; blow-up at 0.5^(-1/3) / 0.7 = 1.80
        (-0.3, -0.4, 4, 2.0),  # grows; blow-up at 0.3^(-1/2) / 0.8 = 2.28
        (0.4, -0.6, 3, 1.5),   # positive start, negative drive: shrinks
    ],
)
def test_exercise5_negative_starts_match_the_solved_network(sigma0, c, depth, t1):
    """Against the network itself, not the formula: a 1 x 1 depth-`depth` network with
    l(w) = -c w has W = sigma (u = v = 1, the analytic SVD keeps the sign), so its
    factor flow (eq. 2, gradient flow of the factors, which knows nothing of the closed
    form) must follow `exercise5_singular_values` from negative starts too."""
    ts = jnp.linspace(0.0, t1, 11)
    ws0 = lf.init.from_end_to_end(jnp.array([[sigma0]]), (1,) * (depth + 1))
    assert float(lf.end_to_end(ws0)[0, 0]) == pytest.approx(sigma0, rel=1e-15)
    sol = lf.factor_flow(LinearLoss(jnp.asarray(c)), ws0, t1, ts, rtol=RTOL, atol=ATOL)
    assert sol.success
    want = th.exercise5_singular_values(sigma0, c, ts, depth)[:, 0]
    # The flow does not expand errors here (|sigma| shrinks, or grows by < 10x before
    # the blow-up), so the conftest rule bounds the trajectory error.
    e = trajectory_tolerance(sol.stats.num_steps, jnp.abs(want).max())
    np.testing.assert_allclose(sol.end_to_end[:, 0, 0], want, rtol=0, atol=e)
    assert jnp.all(jnp.sign(want) == jnp.sign(sigma0))  # Lemma 2: the sign is kept
    moved = abs(float(want[-1]) - sigma0)
    assert moved > 0.2 * abs(sigma0)  # the comparison is not of a near-constant
