"""Planted low-CP-rank problems: the truth's normalization and rank, distinct observed
entries, a zero loss at the truth, and argument checks mirroring the matrix ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf
from lnn_flow._maths._tensor_problems import low_rank_factors

SHAPE = (4, 5, 6)


def test_low_rank_tensor_is_normalized_like_low_rank_matrix():
    key = jax.random.PRNGKey(0)
    W = lf.problems.low_rank_tensor(key, SHAPE, 3)
    assert W.shape == SHAPE and W.dtype == jnp.float64
    np.testing.assert_allclose(jnp.linalg.norm(W), np.sqrt(3), rtol=1e-14)
    np.testing.assert_allclose(
        jnp.linalg.norm(lf.problems.low_rank_tensor(key, SHAPE, 3, norm=2.5)), 2.5,
        rtol=1e-14)
    # CP rank 3: every unfolding has matrix rank <= 3 (here = 3).
    for n in range(3):
        unfolding = jnp.moveaxis(W, n, 0).reshape(SHAPE[n], -1)
        assert int(jnp.linalg.matrix_rank(unfolding)) == 3
    W32 = lf.problems.low_rank_tensor(key, SHAPE, 2, dtype=jnp.float32)
    assert W32.dtype == jnp.float32


def test_component_norms_are_hit_exactly_and_balanced():
    key = jax.random.PRNGKey(0)
    norms = (1.5, 1.0, 0.5)
    W = lf.problems.low_rank_tensor(key, SHAPE, 3, component_norms=norms)
    fs = low_rank_factors(key, SHAPE, 3, component_norms=norms)
    np.testing.assert_allclose(W, lf.tensor.end_to_end(fs), rtol=1e-14)
    np.testing.assert_allclose(lf.tensor.component_norms(fs), norms, rtol=1e-14)
    for f in fs:  # balanced: every mode carries norm**(1/N)
        np.testing.assert_allclose(jnp.linalg.norm(f, axis=0),
                                   np.power(norms, 1 / 3), rtol=1e-14)
    # The same Gaussian directions as the default draw, only the column scales change.
    raw = [jax.random.normal(k, (d, 3)) for k, d in zip(jax.random.split(key, 3), SHAPE)]
    for f, g in zip(fs, raw):
        np.testing.assert_allclose(f / jnp.linalg.norm(f, axis=0),
                                   g / jnp.linalg.norm(g, axis=0), rtol=1e-13)
    W32 = lf.problems.low_rank_tensor(key, SHAPE, 2, component_norms=[2, 1],
                                      dtype=jnp.float32)
    assert W32.dtype == jnp.float32
    for make in (lf.problems.random_tensor_completion, lf.problems.random_tensor_sensing):
        _, truth = make(jax.random.PRNGKey(1), SHAPE, 3, 20, component_norms=norms)
        k_truth, _ = jax.random.split(jax.random.PRNGKey(1))
        np.testing.assert_array_equal(
            truth, lf.problems.low_rank_tensor(k_truth, SHAPE, 3, component_norms=norms))


def test_default_draw_is_unchanged_bit_for_bit():
    """`component_norms=None` is the draw from before the option: Gaussian factors, the
    tensor scaled to norm sqrt(rank) (the formula written out here)."""
    key = jax.random.PRNGKey(7)
    keys = jax.random.split(key, 3)
    W = lf.tensor.end_to_end(tuple(jax.random.normal(k, (d, 3)) for k, d in zip(keys, SHAPE)))
    W = W * (jnp.sqrt(3) / jnp.linalg.norm(W))
    np.testing.assert_array_equal(lf.problems.low_rank_tensor(key, SHAPE, 3), W)
    np.testing.assert_array_equal(
        lf.problems.low_rank_tensor(key, SHAPE, 3, component_norms=None), W)
    _, truth = lf.problems.random_tensor_completion(jax.random.PRNGKey(1), SHAPE, 3, 20)
    np.testing.assert_array_equal(
        truth, lf.problems.low_rank_tensor(jax.random.split(jax.random.PRNGKey(1))[0],
                                           SHAPE, 3))


@pytest.mark.parametrize("norms, error, match", [
    ((1.0, 2.0), ValueError, r"`component_norms` must hold `rank` = 3 norms; got 2"),
    ((1.0, 0.0, 2.0), ValueError, "`component_norms` must be > 0"),
    ((1.0, -1.0, 2.0), ValueError, "`component_norms` must be > 0"),
    ((1.0, np.nan, 2.0), ValueError, "`component_norms` must be finite"),
    (1.0, TypeError, "`component_norms` must be a sequence of 3 norms"),
    ("abc", TypeError, "`component_norms` must be a sequence of 3 norms"),
    ((1.0, 2j, 1.0), TypeError, "`component_norms` must be real"),
    ((True, 1.0, 1.0), TypeError, "`component_norms` must hold real numbers"),
])
def test_bad_component_norms_are_refused(norms, error, match):
    with pytest.raises(error, match=match):
        lf.problems.low_rank_tensor(jax.random.PRNGKey(0), SHAPE, 3, component_norms=norms)


def test_norm_and_component_norms_are_not_both_given():
    with pytest.raises(ValueError, match="`norm` .* or `component_norms` .* not both"):
        lf.problems.low_rank_tensor(jax.random.PRNGKey(0), SHAPE, 2, norm=1.0,
                                    component_norms=(1.0, 1.0))


def test_completion_observes_distinct_entries_of_the_truth():
    loss, truth = lf.problems.random_tensor_completion(jax.random.PRNGKey(1), SHAPE, 2, 60)
    assert isinstance(loss, lf.losses.TensorCompletion) and loss.shape == SHAPE
    assert loss.indices.shape == (60, 3)
    flat = np.ravel_multi_index(tuple(np.asarray(loss.indices).T), SHAPE)
    assert len(set(flat.tolist())) == 60
    np.testing.assert_array_equal(loss.values, truth[tuple(loss.indices.T)])
    assert float(loss(truth)) == 0.0
    full, _ = lf.problems.random_tensor_completion(jax.random.PRNGKey(1), SHAPE, 2, 120)
    assert len(set(np.ravel_multi_index(tuple(np.asarray(full.indices).T), SHAPE))) == 120


def test_sensing_measures_the_truth():
    loss, truth = lf.problems.random_tensor_sensing(jax.random.PRNGKey(2), SHAPE, 2, 30)
    assert isinstance(loss, lf.losses.TensorSensing) and loss.A.shape == (30, *SHAPE)
    np.testing.assert_allclose(loss.measure(truth), loss.b, rtol=1e-13)
    assert float(loss(truth)) < 1e-28
    assert float(loss(jnp.zeros(SHAPE))) > 0.1


def test_bad_arguments_are_refused():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"`rank` must be <= prod\(shape\) / max"):
        lf.problems.low_rank_tensor(key, (2, 3), 3)
    with pytest.raises(ValueError, match="`shape` must be .* order N >= 2"):
        lf.problems.low_rank_tensor(key, (5,), 1)
    with pytest.raises(ValueError, match="`norm` must be >= 0"):
        lf.problems.low_rank_tensor(key, SHAPE, 1, norm=-1.0)
    with pytest.raises(ValueError, match="`num_measurements` must be <= the number of"):
        lf.problems.random_tensor_completion(key, (2, 2), 1, 5)
    with pytest.raises(ValueError, match="`num_measurements` must be >= 1"):
        lf.problems.random_tensor_sensing(key, SHAPE, 1, 0)
    with pytest.raises(TypeError, match="`key` must be a JAX PRNG key"):
        lf.problems.random_tensor_completion(3, SHAPE, 1, 5)
