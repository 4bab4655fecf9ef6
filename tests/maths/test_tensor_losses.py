"""Tensor completion and tensor sensing losses: values, gradients against finite
differences, and refusal of bad data naming the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf
from lnn_flow.losses import TensorCompletion, TensorSensing

SHAPE = (3, 4, 5)


@pytest.fixture(scope="module")
def losses():
    completion, _ = lf.problems.random_tensor_completion(jax.random.PRNGKey(0), SHAPE, 2, 25)
    sensing, _ = lf.problems.random_tensor_sensing(jax.random.PRNGKey(1), SHAPE, 2, 12)
    return {"completion": completion, "sensing": sensing}


def test_values_match_the_definitions(losses):
    W = jax.random.normal(jax.random.PRNGKey(2), SHAPE)
    c = losses["completion"]
    explicit = np.mean([(W[tuple(i)] - v) ** 2 for i, v in zip(c.indices, c.values)]) / 2
    np.testing.assert_allclose(c(W), explicit, rtol=1e-13)
    s = losses["sensing"]
    explicit = np.mean([(np.sum(a * W) - b) ** 2 for a, b in zip(s.A, s.b)]) / 2
    np.testing.assert_allclose(s(W), explicit, rtol=1e-13)
    assert c.shape == s.shape == SHAPE


@pytest.mark.parametrize("name", ["completion", "sensing"])
def test_gradient_matches_central_differences(losses, name):
    """Both losses are quadratic in W, so a central difference along V has no
    truncation error (the third derivative is zero): what is left is rounding,
    about eps |l| / h per evaluation pair (eps = 2.2e-16, h = 1e-3, |l| = O(10)):
    ~2e-11; 1e-9 bounds it with a margin."""
    loss = losses[name]
    W = jax.random.normal(jax.random.PRNGKey(3), SHAPE)
    G = jax.grad(loss)(W)
    h = 1e-3
    for seed in range(5):
        V = jax.random.normal(jax.random.PRNGKey(10 + seed), SHAPE)
        fd = (loss(W + h * V) - loss(W - h * V)) / (2 * h)
        np.testing.assert_allclose(jnp.sum(G * V), fd, rtol=0, atol=1e-9)


def test_completion_refuses_bad_data():
    idx = jnp.array([[0, 1, 2], [2, 3, 4]])
    vals = jnp.array([1.0, 2.0])
    TensorCompletion(idx, vals, SHAPE)  # fine
    with pytest.raises(ValueError, match=r"`indices` must hold entries in \[0, d_n\).*"
                       r"indices\[1, 2\] = 5 is outside \[0, 5\)"):
        TensorCompletion(idx.at[1, 2].set(5), vals, SHAPE)
    with pytest.raises(ValueError, match=r"indices\[0, 0\] = -1"):
        TensorCompletion(idx.at[0, 0].set(-1), vals, SHAPE)
    with pytest.raises(ValueError, match=r"`indices` must have shape \(m, N\).*N = 3"):
        TensorCompletion(idx[:, :2], vals, SHAPE)
    with pytest.raises(TypeError, match="`indices` must be an .* integer array"):
        TensorCompletion(idx.astype(float), vals, SHAPE)
    with pytest.raises(ValueError, match="`values` must be finite"):
        TensorCompletion(idx, vals.at[0].set(jnp.nan), SHAPE)
    with pytest.raises(ValueError, match="`indices` must match `values` in number"):
        TensorCompletion(idx, jnp.ones(3), SHAPE)
    with pytest.raises(ValueError, match=r"entry \(0, 1, 2\) two different values"):
        TensorCompletion(jnp.array([[0, 1, 2], [0, 1, 2]]), vals, SHAPE)
    with pytest.raises(ValueError, match="`shape` must be .* order N >= 2"):
        TensorCompletion(idx[:, :1], vals, (3,))
    with pytest.raises(TypeError, match="`values` must be real"):
        TensorCompletion(idx, vals.astype(complex), SHAPE)
    loss = TensorCompletion(idx, vals, SHAPE)
    with pytest.raises(ValueError, match=r"`W` must have shape \(3, 4, 5\)"):
        loss(jnp.zeros((3, 4, 6)))


def test_sensing_refuses_bad_data():
    A = jnp.ones((2, *SHAPE))
    with pytest.raises(ValueError, match="`b` must match `A` in number of measurements"):
        TensorSensing(A, jnp.ones(3))
    with pytest.raises(ValueError, match="`A` must be finite"):
        TensorSensing(A.at[0, 0, 0, 0].set(jnp.inf), jnp.ones(2))
    with pytest.raises(ValueError, match="`A` must have shape .* order N >= 2"):
        TensorSensing(jnp.ones((2, 3)), jnp.ones(2))
    with pytest.raises(TypeError, match="`A` must be real"):
        TensorSensing(A.astype(complex), jnp.ones(2))
    with pytest.raises(ValueError, match=r"`W` must have shape \(3, 4, 5\)"):
        TensorSensing(A, jnp.ones(2))(jnp.zeros((5, 4, 3)))


def test_losses_pass_through_jit_and_vmap(losses):
    W = jax.random.normal(jax.random.PRNGKey(4), (2, *SHAPE))
    for loss in losses.values():
        np.testing.assert_allclose(jax.vmap(jax.jit(lambda w, loss=loss: loss(w)))(W), [loss(W[0]), loss(W[1])],
                                   rtol=1e-13)
