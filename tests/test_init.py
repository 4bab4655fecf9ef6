"""Initializations: balanced (Assumption 1), from_end_to_end (Procedure 1), gaussian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf

DIMS = [(4, 4), (4, 4, 4), (3, 6, 5), (5, 7, 2, 8, 3), (6, 6, 6, 6, 6), (2, 9, 9, 4)]


def _shapes(ws):
    return [tuple(w.shape) for w in ws]


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("random_hidden", [False, True])
def test_from_end_to_end_reproduces_w_and_is_balanced(dims, random_hidden):
    k = min(dims)
    key_l, key_r, key_h = jax.random.split(jax.random.PRNGKey(len(dims)), 3)
    W = jax.random.normal(key_l, (dims[-1], k)) @ jax.random.normal(key_r, (k, dims[0]))
    ws = lf.init.from_end_to_end(W, dims, key=key_h if random_hidden else None)
    assert _shapes(ws) == [(dims[j + 1], dims[j]) for j in range(len(dims) - 1)]
    # Exact to rounding: S^{1/n} multiplied n times gives S back to a few eps.
    np.testing.assert_allclose(lf.end_to_end(ws), W, rtol=0, atol=1e-13 * jnp.abs(W).max())
    assert lf.unbalancedness(ws) <= 1e-13 * jnp.linalg.norm(W) ** (2 / (len(dims) - 1))


def test_from_end_to_end_keeps_exact_zeros_of_rank_deficient_w():
    """Rounding-level singular values are not raised to 1/n (2e-6 for 1e-17 at n = 3)."""
    W = jnp.outer(jnp.array([1.0, -2.0, 0.5]), jnp.array([0.3, 1.0, 2.0, -1.0]))
    ws = lf.init.from_end_to_end(W, (4, 4, 4, 3))
    np.testing.assert_allclose(lf.end_to_end(ws), W, atol=1e-14)
    for w in ws:
        s = jnp.linalg.svd(w, compute_uv=False)
        assert jnp.all(s[1:] < 1e-14)


def test_from_end_to_end_refuses_rank_above_the_bottleneck():
    W = jnp.eye(4)
    with pytest.raises(ValueError, match="rank above the narrowest width k = 2"):
        lf.init.from_end_to_end(W, (4, 2, 4))
    with pytest.raises(ValueError, match=r"`W` must have shape \(d_n, d_0\)"):
        lf.init.from_end_to_end(W, (4, 4, 3))


def test_depth_one_is_w_itself():
    W = jnp.arange(6.0).reshape(2, 3)
    (w,) = lf.init.from_end_to_end(W, (3, 2))
    np.testing.assert_array_equal(w, W)
    assert lf.unbalancedness((w,)) == 0.0


@pytest.mark.parametrize("dims", DIMS)
def test_balanced_has_requested_norm_and_zero_unbalancedness(dims):
    ws = lf.init.balanced(jax.random.PRNGKey(3), dims, 1e-3)
    W = lf.end_to_end(ws)
    np.testing.assert_allclose(jnp.linalg.norm(W), 1e-3, rtol=1e-12)
    assert lf.unbalancedness(ws) <= 1e-15 * 1e-3 ** (2 / (len(dims) - 1))
    assert jnp.linalg.matrix_rank(W) == min(dims)
    other = lf.end_to_end(lf.init.balanced(jax.random.PRNGKey(4), dims, 1e-3))
    assert not jnp.allclose(W, other)


def test_balanced_under_vmap():
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    ws = jax.vmap(lambda k: lf.init.balanced(k, (3, 4, 2), 0.5))(keys)
    assert _shapes(ws) == [(5, 4, 3), (5, 2, 4)]
    norms = jax.vmap(lambda *w: jnp.linalg.norm(lf.end_to_end(w)))(*ws)
    np.testing.assert_allclose(norms, 0.5, rtol=1e-12)


def test_gaussian_statistics_and_unbalancedness():
    ws = lf.init.gaussian(jax.random.PRNGKey(1), (200, 300, 100), 0.1)
    assert _shapes(ws) == [(300, 200), (100, 300)]
    for w in ws:
        assert abs(float(jnp.std(w)) - 0.1) < 0.005  # 6e4 samples: std error ~3e-4
    assert lf.unbalancedness(ws) > 1.0
    ws = lf.init.gaussian(jax.random.PRNGKey(1), (3, 4, 5), [1.0, 0.0])
    assert jnp.all(ws[1] == 0)


def test_independent_product_has_the_requested_expected_norm():
    """`E ||W_3 W_2 W_1||_F^2 = scale^2` over 400 keys, to four standard errors of the
    sample mean; every factor's entries share one std, from the formula."""
    dims, scale = (6, 8, 5, 7), 1e-3
    keys = jax.random.split(jax.random.PRNGKey(2), 400)
    ws = jax.vmap(lambda k: lf.init.independent(k, dims, scale))(keys)
    squares = np.asarray(jax.vmap(lambda *w: jnp.sum(lf.end_to_end(w) ** 2))(*ws))
    error = 4 * squares.std(ddof=1) / np.sqrt(len(squares))
    assert abs(squares.mean() - scale**2) <= error, (squares.mean(), error)
    std = (scale**2 / np.prod(dims)) ** (1 / 6)
    for w in ws:  # 400 x 40..56 entries each: relative std error < 0.6%
        assert abs(float(jnp.std(w)) / std - 1) < 0.03
    one = tuple(w[0] for w in ws)
    assert lf.unbalancedness(one) > 0


@pytest.mark.parametrize(
    "dims,error",
    [
        ((4,), "at least two entries"),
        ((4, 0, 3), "positive widths"),
        ((4, 2.5, 3), "must hold integers"),
    ],
)
def test_bad_dims(dims, error):
    with pytest.raises((ValueError, TypeError), match=error):
        lf.init.balanced(jax.random.PRNGKey(0), dims, 1.0)


def test_bad_scale():
    with pytest.raises(ValueError, match="`scale` must be >= 0"):
        lf.init.balanced(jax.random.PRNGKey(0), (3, 3), -1.0)
    with pytest.raises(ValueError, match="`scale` must be one value or one per layer"):
        lf.init.gaussian(jax.random.PRNGKey(0), (3, 3, 3), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="`scale` must be finite and >= 0"):
        lf.init.gaussian(jax.random.PRNGKey(0), (3, 3), float("nan"))
    with pytest.raises(TypeError, match="`scale` must be real"):
        lf.init.gaussian(jax.random.PRNGKey(0), (3, 3), 1j)


def test_gaussian_std_is_the_deprecated_name_of_scale():
    key, dims = jax.random.PRNGKey(3), (3, 4, 2)
    expected = lf.init.gaussian(key, dims, scale=0.5)
    with pytest.warns(DeprecationWarning, match="`std` is deprecated.*use `scale`"):
        old = lf.init.gaussian(key, dims, std=0.5)
    for a, b in zip(old, expected):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="both `scale` and its deprecated name `std`"):
        lf.init.gaussian(key, dims, 0.5, std=0.5)
    with pytest.raises(TypeError, match="missing required argument: 'scale'"):
        lf.init.gaussian(key, dims)
