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


def test_factor_gradient_is_the_closed_form_of_eq_2():
    import jax

    from lnn_flow._maths._network import factor_gradient, overparameterized_objective

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    ws = tuple(jax.random.normal(k, s) for k, s in zip(keys, [(4, 3), (5, 4), (2, 5)]))
    target = jax.random.normal(keys[3], (2, 3))
    loss = lambda W: 0.5 * jnp.sum((W - target) ** 2)  # grad l(W) = W - target
    G = lf.end_to_end(ws) - target
    W1, W2, W3 = ws
    # d phi / d W_j = W_{n:j+1}^T grad l W_{j-1:1}^T (eq. 2)
    want = ((W3 @ W2).T @ G, W3.T @ G @ W1.T, G @ (W2 @ W1).T)
    for got, expected in zip(factor_gradient(loss, ws), want):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert float(overparameterized_objective(loss, ws)) == float(loss(lf.end_to_end(ws)))
