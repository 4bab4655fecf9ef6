"""`lnn_flow._maths._spectral.power`: singular-value powers exact at zero."""

import jax
import jax.numpy as jnp
import numpy as np

from lnn_flow._maths._spectral import power


def test_power_is_zero_at_zero_and_one_for_exponent_zero():
    s = jnp.array([0.0, 0.25, 4.0])
    np.testing.assert_array_equal(power(s, 0.5), [0.0, 0.5, 2.0])
    # [.]^0 is the identity, null space included: 0 ** 0 = 1 (Corollary 1).
    np.testing.assert_array_equal(power(s, 0), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(power(s, 0.0), [1.0, 1.0, 1.0])


def test_power_gradient_is_finite_at_zero():
    grad = jax.grad(lambda s: jnp.sum(power(s, 2 / 3)))(jnp.array([0.0, 1.0]))
    assert bool(jnp.all(jnp.isfinite(grad)))
    np.testing.assert_allclose(grad[1], 2 / 3)
