"""Exercise 2's systems: the field on `W_s = W W^T` is the chain rule of the flow on
`W`, and the factor system keeps `(W^T, W)` exact transposes."""

import jax
import jax.numpy as jnp
from conftest import ATOL, RTOL, trajectory_tolerance

import lnn_flow as lf
import lnn_flow.theory as th
from lnn_flow._flows._symmetric import _SymmetricFactorSystem, _SymmetricSystem
from lnn_flow.theory import symmetric_vector_field

TARGET = jnp.array([[1.0, 0.3, 0.0], [0.2, 0.5, -0.4], [0.0, 0.1, 2.0]])
LOSS = lambda Ws: jnp.sum((Ws - TARGET) ** 2)  # not symmetric in its argument
W = jax.random.normal(jax.random.PRNGKey(0), (3, 3))


def test_field_on_the_product_is_the_chain_rule():
    # d(W W^T)/dt = W' W^T + W W'^T with W' = -grad_W l(W W^T) (Exercise 2).
    _, W_dot = _SymmetricFactorSystem(LOSS).vector_field(0.0, (W.T, W), None)
    expected = W_dot @ W.T + W @ W_dot.T
    got = _SymmetricSystem(LOSS).vector_field(0.0, W @ W.T, None)
    # float64 rounding of a few 3x3 products of O(1) entries.
    assert jnp.allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert jnp.allclose(symmetric_vector_field(LOSS, W @ W.T), got, rtol=0, atol=0)


def test_factor_system_keeps_transposes_and_maps():
    system = _SymmetricFactorSystem(LOSS)
    dWt, dW = system.vector_field(0.0, (W.T, W), None)
    assert jnp.array_equal(dWt, dW.T)
    assert jnp.allclose(system.end_to_end((W.T, W)), W @ W.T, rtol=0, atol=0)
    assert system.depth == 2 and _SymmetricSystem(LOSS).factors(W @ W.T) is None


def test_exercise2_symmetric_flow_matches_factor_flow():
    target = jnp.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]])
    loss = lf.losses.WhitenedSquare(target)
    W0 = 0.3 * jax.random.normal(jax.random.PRNGKey(0), (3, 3))
    ts = jnp.linspace(0.0, 5.0, 21)
    on_w = th.symmetric_factor_flow(loss, W0, ts[-1], ts, rtol=RTOL, atol=ATOL)
    on_product = th.symmetric_flow(loss, W0 @ W0.T, ts[-1], ts, rtol=RTOL, atol=ATOL)
    steps = max(int(on_w.stats.num_steps), int(on_product.stats.num_steps))
    tol = 2 * trajectory_tolerance(steps, jnp.abs(on_w.end_to_end).max())
    assert jnp.abs(on_w.end_to_end - on_product.end_to_end).max() <= tol
    assert on_product.loss[-1] < 0.01 * on_product.loss[0]
