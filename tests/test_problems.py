"""Random problem instances (`lnn_flow.problems`): planted low-rank truths, and the
sensing and completion losses that vanish at them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf


def test_low_rank_matrix_has_the_rank_and_norm_asked_for():
    W = lf.problems.low_rank_matrix(jax.random.PRNGKey(0), (6, 5), 2)
    assert W.shape == (6, 5) and jnp.linalg.matrix_rank(W) == 2
    np.testing.assert_allclose(jnp.linalg.norm(W), np.sqrt(2), rtol=1e-12)
    W = lf.problems.low_rank_matrix(jax.random.PRNGKey(0), (6, 5), 2, norm=3.0)
    np.testing.assert_allclose(jnp.linalg.norm(W), 3.0, rtol=1e-12)


def test_sensing_and_completion_vanish_at_the_truth():
    key = jax.random.PRNGKey(1)
    loss, truth = lf.problems.random_matrix_sensing(key, (5, 4), 2, 12)
    assert loss.A.shape == (12, 5, 4) and float(loss(truth)) < 1e-28
    loss, truth = lf.problems.random_matrix_completion(key, (5, 4), 2, num_measurements=9)
    assert loss.rows.shape == (9,) and float(loss(truth)) == 0.0
    # Drawn without replacement: nine distinct entries.
    assert len({(int(r), int(c)) for r, c in zip(loss.rows, loss.cols)}) == 9


def test_completion_refuses_more_entries_than_the_matrix_has():
    with pytest.raises(ValueError, match="`num_measurements` must be <= the number of "
                                         "entries 20; got 21"):
        lf.problems.random_matrix_completion(jax.random.PRNGKey(0), (5, 4), 2, 21)
    with pytest.raises(ValueError, match="`num_measurements` must be >= 1"):
        lf.problems.random_matrix_completion(jax.random.PRNGKey(0), (5, 4), 2, 0)


def test_num_observed_is_the_deprecated_name_of_num_measurements():
    key = jax.random.PRNGKey(2)
    loss, truth = lf.problems.random_matrix_completion(key, (5, 4), 2, 7)
    with pytest.warns(DeprecationWarning,
                      match="`num_observed` is deprecated.*use `num_measurements`"):
        old, old_truth = lf.problems.random_matrix_completion(key, (5, 4), 2,
                                                              num_observed=7)
    np.testing.assert_array_equal(old.rows, loss.rows)
    np.testing.assert_array_equal(old_truth, truth)
    with pytest.raises(TypeError, match="both `num_measurements` and its deprecated "
                                        "name `num_observed`"):
        lf.problems.random_matrix_completion(key, (5, 4), 2, 7, num_observed=7)
    with pytest.raises(TypeError, match="missing required argument: 'num_measurements'"):
        lf.problems.random_matrix_completion(key, (5, 4), 2)
