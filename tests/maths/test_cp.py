"""The CP parameterization (Section 5): end-to-end tensor, component norms,
unbalancedness, and the factor validator."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf
from lnn_flow._maths._cp import cp_factors

SHAPES = [(3, 4), (2, 3, 4), (2, 3, 2, 3)]
R = 3


def factors(shape, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shape))
    return tuple(jax.random.normal(k, (d, R)) for k, d in zip(keys, shape))


def outer(vectors):
    out = vectors[0]
    for v in vectors[1:]:
        out = np.multiply.outer(out, v)
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_end_to_end_is_a_sum_of_outer_products(shape):
    fs = factors(shape)
    explicit = sum(outer([np.asarray(f[:, r]) for f in fs]) for r in range(R))
    # One einsum against a Python sum of R outer products: rounding only (a few
    # products and R additions of O(1) numbers, eps = 2.2e-16).
    np.testing.assert_allclose(lf.tensor.end_to_end(fs), explicit, rtol=0, atol=1e-13)
    assert lf.tensor.end_to_end(fs).shape == shape


def test_order_two_is_the_matrix_product():
    A1, A2 = factors((3, 4))
    np.testing.assert_allclose(lf.tensor.end_to_end((A1, A2)), A1 @ A2.T, atol=1e-14)
    np.testing.assert_allclose(lf.end_to_end((A2.T, A1)), A1 @ A2.T, atol=1e-14)


@pytest.mark.parametrize("shape", SHAPES)
def test_component_norms_are_frobenius_norms_of_components(shape):
    fs = factors(shape, seed=1)
    for r, got in enumerate(lf.tensor.component_norms(fs)):
        W_r = outer([np.asarray(f[:, r]) for f in fs])
        np.testing.assert_allclose(got, np.linalg.norm(W_r), rtol=1e-13)


def test_component_norms_of_saved_trajectories_keep_their_leading_axes():
    """A solution's `factors` carry a save axis (and a batch axis under solve_batch):
    the norms keep them, NaN at saves not reached (issue 26)."""
    fs = factors((2, 3, 4), seed=1)
    saved = tuple(jnp.stack([f, 2 * f, jnp.full_like(f, jnp.nan)]) for f in fs)
    batch = tuple(jnp.stack([s, s]) for s in saved)
    one = lf.tensor.component_norms(fs)
    got = lf.tensor.component_norms(saved)
    assert got.shape == (3, R) and lf.tensor.component_norms(batch).shape == (2, 3, R)
    np.testing.assert_allclose(got[0], one, rtol=1e-14)
    np.testing.assert_allclose(got[1], 8 * one, rtol=1e-14)  # order 3: 2^3
    assert np.isnan(got[2]).all()
    with pytest.raises(ValueError, match=r"`fs` must share its leading .* fs\[1\] has \(2,\)"):
        lf.tensor.component_norms((saved[0], saved[1][:2], saved[2]))


def test_unbalancedness():
    fs = factors((2, 3, 4), seed=2)
    sq = np.stack([np.sum(np.asarray(f) ** 2, axis=0) for f in fs])
    expected = max(abs(sq[n, r] - sq[m, r])
                   for r in range(R) for n, m in itertools.product(range(3), repeat=2))
    np.testing.assert_allclose(lf.tensor.unbalancedness(fs), expected, rtol=1e-13)
    # Rescaling a component's columns by c_n with prod c_n = 1 leaves W unchanged;
    # equal column norms make it zero.
    norms = np.sqrt(sq)
    balanced = tuple(f / norms[n] * np.prod(norms, axis=0) ** (1 / 3)
                     for n, f in enumerate(fs))
    assert float(lf.tensor.unbalancedness(balanced)) < 1e-13
    np.testing.assert_allclose(lf.tensor.end_to_end(balanced), lf.tensor.end_to_end(fs),
                               atol=1e-13)


def test_bad_factors_are_refused_naming_the_argument():
    A, B, C = factors((2, 3, 4))
    with pytest.raises(ValueError, match=r"fs\[2\] has 2 columns, fs\[0\] has 3"):
        cp_factors((A, B, C[:, :2]))
    with pytest.raises(ValueError, match=r"`fs` must hold at least two factors"):
        lf.tensor.end_to_end((A,))
    with pytest.raises(ValueError, match=r"`fs\[1\]` must have 2 dimension"):
        lf.tensor.end_to_end((A, B[:, 0], C))
    with pytest.raises(TypeError, match=r"`fs\[0\]` must be real"):
        lf.tensor.end_to_end((A.astype(jnp.complex128), B))
    with pytest.raises(TypeError, match=r"`fs\[1\]` must hold real numbers"):
        lf.tensor.component_norms((A, B > 0))
    with pytest.raises(ValueError, match=r"`fs\[1\]` must be finite"):
        lf.tensor.unbalancedness((A, B.at[0, 0].set(jnp.nan)))
    with pytest.raises(TypeError, match=r"fs\[0\] is float64 but fs\[1\] is float32"):
        lf.tensor.end_to_end((A, B.astype(jnp.float32)))
    with pytest.raises(TypeError, match="tuple of CP factors"):
        lf.tensor.end_to_end(A)
    with pytest.raises(TypeError, match="tuple of CP factors"):
        cp_factors(3.0, "init")
