"""Initial CP factors: balanced (equal column norms, components of norm `scale`) and
Gaussian, with their argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf

SHAPE = (3, 4, 5)


def test_balanced_components_have_norm_scale_and_equal_columns():
    fs = lf.tensor.balanced(jax.random.PRNGKey(0), SHAPE, 6, 0.5)
    assert [f.shape for f in fs] == [(d, 6) for d in SHAPE]
    np.testing.assert_allclose(lf.tensor.component_norms(fs), 0.5, rtol=1e-14)
    for f in fs:
        np.testing.assert_allclose(jnp.linalg.norm(f, axis=0), 0.5 ** (1 / 3), rtol=1e-14)
    assert float(lf.tensor.unbalancedness(fs)) < 1e-15
    other = lf.tensor.balanced(jax.random.PRNGKey(1), SHAPE, 6, 0.5)
    assert not np.allclose(fs[0], other[0])  # random directions
    f32 = lf.tensor.balanced(jax.random.PRNGKey(0), SHAPE, 2, 1.0, dtype=jnp.float32)
    assert all(f.dtype == jnp.float32 for f in f32)


def test_gaussian_entries_have_std():
    fs = lf.tensor.gaussian(jax.random.PRNGKey(0), (40, 50), 60, 0.3)
    entries = jnp.concatenate([f.ravel() for f in fs])
    # 5400 iid N(0, 0.09) entries: the sample std is within 5 standard errors
    # (0.3 / sqrt(2 * 5400) = 0.0029) of 0.3.
    assert abs(float(entries.std()) - 0.3) < 5 * 0.3 / np.sqrt(2 * entries.size)
    assert abs(float(entries.mean())) < 5 * 0.3 / np.sqrt(entries.size)
    assert float(lf.tensor.unbalancedness(fs)) > 0.1


@pytest.mark.parametrize("init", [lf.tensor.balanced, lf.tensor.gaussian])
def test_bad_arguments_are_refused_naming_them(init):
    key = jax.random.PRNGKey(0)
    value = "scale" if init is lf.tensor.balanced else "std"
    with pytest.raises(TypeError, match="`key` must be a JAX PRNG key"):
        init(0, SHAPE, 2, 1.0)
    with pytest.raises(ValueError, match="`shape` must be .* order N >= 2"):
        init(key, (4,), 2, 1.0)
    with pytest.raises(ValueError, match="`shape` must hold positive dimensions"):
        init(key, (4, 0), 2, 1.0)
    with pytest.raises(TypeError, match="`shape` must hold integers"):
        init(key, (4, 2.5), 2, 1.0)
    with pytest.raises(ValueError, match="`rank` must be >= 1"):
        init(key, SHAPE, 0, 1.0)
    with pytest.raises(TypeError, match="`rank` must be an integer"):
        init(key, SHAPE, 1.5, 1.0)
    with pytest.raises(ValueError, match=f"`{value}` must be > 0"):
        init(key, SHAPE, 2, 0.0)
    with pytest.raises(ValueError, match=f"`{value}` must be finite"):
        init(key, SHAPE, 2, jnp.inf)
    with pytest.raises(TypeError, match=f"`{value}` must be a real number"):
        init(key, SHAPE, 2, 1j)
    with pytest.raises(TypeError, match="`dtype` must be a real floating dtype"):
        init(key, SHAPE, 2, 1.0, dtype=jnp.int32)
