"""Corollary 1: P(W) explicitly, by eigenpairs, and matrix-free; P vec(grad) = -vec(W')."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import sensing

import lnn_flow as lf

CASES = [(shape, depth) for shape in [(3, 3), (2, 4), (4, 3)] for depth in [1, 2, 3, 4]]


def _matrix(shape, rank_deficient, seed):
    key = jax.random.PRNGKey(seed)
    if rank_deficient:
        k1, k2 = jax.random.split(key)
        return jnp.outer(jax.random.normal(k1, (shape[0],)), jax.random.normal(k2, (shape[1],)))
    return jax.random.normal(key, shape)


@pytest.mark.parametrize("shape,depth", CASES)
@pytest.mark.parametrize("rank_deficient", [False, True])
def test_three_forms_agree_and_match_theorem_1(shape, depth, rank_deficient):
    W = _matrix(shape, rank_deficient, seed=depth)
    loss, _ = sensing(shape)
    P = lf.preconditioner(W, depth)
    lam, Q = lf.preconditioner_eigh(W, depth)
    # All three share one SVD; they differ by rounding of O(|P|) times a few eps.
    tol = 1e-12 * max(1.0, float(jnp.abs(P).max()))
    np.testing.assert_allclose(Q @ jnp.diag(lam) @ Q.T, P, atol=tol)
    np.testing.assert_allclose(Q.T @ Q, jnp.eye(Q.shape[0]), atol=1e-12)
    assert jnp.all(lam >= 0)
    G = jax.grad(loss)(W)
    np.testing.assert_allclose(P @ lf.vec(G), lf.vec(lf.apply_preconditioner(W, G, depth)),
                               atol=tol * float(jnp.abs(G).max()))
    np.testing.assert_allclose(
        lf.unvec(-P @ lf.vec(G), shape),
        lf.end_to_end_vector_field(loss, W, depth),
        atol=tol * float(jnp.abs(G).max()),
    )


def test_eigenpairs_follow_the_notes_indexing():
    """Column r' d_n + r is vec(u_r v_{r'}^T), eigenvalue sum_j s_r^{2(n-j)/n} s_r'^{2(j-1)/n}."""
    W = jnp.array([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # u = e_r, v = e_r', s = (3, 2, 0)
    lam, Q = lf.preconditioner_eigh(W, 3)
    s_left, s_right = [3.0, 2.0], [3.0, 2.0, 0.0]
    for rp in range(3):
        for r in range(2):
            want = sum(
                (s_left[r] ** (2 * (3 - j) / 3) if 3 - j else 1.0)
                * (s_right[rp] ** (2 * (j - 1) / 3) if j - 1 else 1.0)
                for j in (1, 2, 3)
            )
            np.testing.assert_allclose(lam[rp * 2 + r], want, rtol=1e-12)
            unit = jnp.zeros((2, 3)).at[r, rp].set(1.0)
            np.testing.assert_allclose(jnp.abs(Q[:, rp * 2 + r]), lf.vec(unit), atol=1e-12)


def test_smallest_eigenvalue_bound_of_theorem_2():
    """lambda_min(P(W)) >= sigma_min(W)^{2(n-1)/n} (proof of Theorem 2)."""
    W = jax.random.normal(jax.random.PRNGKey(3), (4, 4)) + 2 * jnp.eye(4)
    s_min = jnp.linalg.svd(W, compute_uv=False)[-1]
    for depth in (2, 3, 4):
        lam, _ = lf.preconditioner_eigh(W, depth)
        assert lam.min() >= s_min ** (2 * (depth - 1) / depth) * (1 - 1e-12)


def test_depth_one_is_the_identity():
    W = jnp.ones((2, 3))
    np.testing.assert_allclose(lf.preconditioner(W, 1), jnp.eye(6), atol=1e-15)  # U U^T rounding


def test_bad_input():
    with pytest.raises(ValueError, match="`G` must have the shape of `W`"):
        lf.apply_preconditioner(jnp.ones((2, 3)), jnp.ones((3, 2)), 2)
    with pytest.raises(ValueError, match="`depth` must be >= 1"):
        lf.preconditioner(jnp.ones((2, 3)), 0)
