"""Definition 2 (end-to-end matrix) and Definition 1 (unbalancedness)."""

import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf


def test_end_to_end_is_the_product_in_layer_order():
    W1 = jnp.arange(6.0).reshape(2, 3)
    W2 = jnp.arange(8.0).reshape(4, 2) - 3
    W3 = jnp.array([[1.0, 0.0, -1.0, 2.0]])
    np.testing.assert_array_equal(lf.end_to_end((W1, W2, W3)), W3 @ W2 @ W1)
    np.testing.assert_array_equal(lf.end_to_end([W1]), W1)


def test_unbalancedness_is_the_largest_gap():
    W1 = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    W2 = jnp.array([[3.0, 0.0], [0.0, 1.0]])
    W3 = jnp.eye(2)
    gaps = lf.unbalancedness_matrices((W1, W2, W3))
    np.testing.assert_array_equal(gaps[0], jnp.diag(jnp.array([8.0, -3.0])))
    np.testing.assert_array_equal(gaps[1], jnp.diag(jnp.array([-8.0, 0.0])))
    assert lf.unbalancedness((W1, W2, W3)) == pytest.approx(np.sqrt(73.0))  # Frobenius
    assert lf.unbalancedness((W1,)) == 0.0


def test_integer_factors_become_float64():
    W = lf.end_to_end((jnp.ones((2, 2), dtype=jnp.int32),))
    assert W.dtype == jnp.float64


def test_factors_that_do_not_chain():
    with pytest.raises(ValueError, match=r"ws\[1\] has shape \(2, 3\)"):
        lf.end_to_end((jnp.ones((2, 2)), jnp.ones((2, 3))))
    with pytest.raises(ValueError, match=r"`ws\[0\]` must have 2 dimension"):
        lf.unbalancedness((jnp.ones(3),))
