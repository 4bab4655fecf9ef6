"""Propositions 1 and 3 (lnn_flow._theory._landscape): the origin is a saddle of `phi`, non-strict
from depth 3 on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import whitened

import lnn_flow as lf

th = lf.theory


@pytest.mark.parametrize("dims", [(3, 4, 4, 2), (2, 3, 3, 3, 4)])
def test_origin_is_a_non_strict_saddle_for_depth_three_and_more(dims):
    loss, _ = whitened((dims[-1], dims[0]))
    zero = tuple(jnp.zeros((dims[j + 1], dims[j])) for j in range(len(dims) - 1))
    assert all(jnp.all(g == 0) for g in th.objective_gradient(loss, zero))
    assert jnp.all(th.objective_hessian(loss, zero) == 0)
    phi0 = lf.overparameterized_objective(loss, zero)
    g0 = jax.grad(loss)(jnp.zeros((dims[-1], dims[0])))
    n = len(dims) - 1
    for eps in (1e-1, 1e-3, 1e-6):
        W = -eps * g0 / jnp.linalg.norm(g0)
        ws = th.proposition3_point(W, dims)
        np.testing.assert_allclose(lf.end_to_end(ws), W, atol=1e-15)
        assert lf.overparameterized_objective(loss, ws) < phi0
        size = jnp.sqrt(sum(jnp.sum(w**2) for w in ws))
        k = min(dims[0], dims[-1])
        np.testing.assert_allclose(size, jnp.sqrt(1 + (n - 1) * k) * eps ** (1 / n),
                                   rtol=1e-12)


def test_depth_two_origin_is_a_strict_saddle():
    """Contrast: for n = 2 the Hessian at the origin has a negative eigenvalue."""
    loss, _ = whitened((3, 3))
    zero = (jnp.zeros((3, 3)), jnp.zeros((3, 3)))
    assert jnp.linalg.eigvalsh(th.objective_hessian(loss, zero)).min() < -0.1
