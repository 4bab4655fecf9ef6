"""The Daleckii-Krein derivative of PSD powers (`_divided_differences`), the rule behind
the derivative of the end-to-end field of Theorem 1 (eq. 3) / Corollary 1."""

from decimal import Decimal, localcontext

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnn_flow._maths._divided_differences import (
    divided_differences,
    power_derivative,
    precondition_tangent,
)
from lnn_flow._flows._end_to_end import _precondition_from_svd

EPS = float(jnp.finfo(jnp.float64).eps)
EXPONENTS = [1 / 2, 1 / 3, 2 / 3, 1 / 4, 3 / 4]


def _exact(x: float, y: float, p: float) -> float:
    """`(x^p - y^p) / (x - y)` at 50 digits (Decimal powers are correctly rounded), for
    the float `p` the code uses."""
    with localcontext() as ctx:
        ctx.prec = 50
        X, Y, P = Decimal(x), Decimal(y), Decimal(p)
        return float((X**P - Y**P) / (X - Y))


@pytest.mark.parametrize("p", EXPONENTS)
def test_distinct_points_give_the_exact_divided_difference(p):
    # Far apart (direct formula) and within a factor 2 (the expm1/log1p form).
    lam = jnp.array([3.0, 1.0, 0.9, 0.55, 1e-3, 2.5e-3])
    got = np.asarray(divided_differences(lam, p))
    for i in range(lam.size):
        for k in range(lam.size):
            if i != k:
                want = _exact(float(lam[i]), float(lam[k]), p)
                # A few eps: each branch is a handful of correctly rounded operations,
                # and the direct one cancels at most 1 / (1 - 2^-p) <= 6.8 (p >= 1/4).
                assert abs(got[i, k] - want) <= 50 * EPS * abs(want), (i, k)


@pytest.mark.parametrize("p", EXPONENTS)
def test_equal_points_give_the_derivative(p):
    lam = jnp.array([2.0, 0.3, 1e-6])
    got = np.diag(np.asarray(divided_differences(lam, p)))
    np.testing.assert_allclose(got, p * np.asarray(lam) ** (p - 1), rtol=4 * EPS)


@pytest.mark.parametrize("p", EXPONENTS)
def test_nearly_equal_points_stay_accurate(p):
    # Relative gap 1e-12: the naive quotient cancels ~12 digits; this one keeps them.
    x = 0.7
    y = x * (1 + 1e-12)
    got = float(divided_differences(jnp.array([x, y]), p)[0, 1])
    assert np.isfinite(got)
    assert abs(got - _exact(x, y, p)) <= 50 * EPS * abs(got)
    # ... and is the derivative up to the gap: |f''| / |f'| * gap / 2 ~ 1e-12.
    assert abs(got - p * x ** (p - 1)) <= 1e-12 * abs(got)


@pytest.mark.parametrize("p", EXPONENTS)
def test_zeros(p):
    L = np.asarray(divided_differences(jnp.array([0.0, 0.0, 0.25]), p))
    assert np.all(np.isfinite(L))
    assert L[0, 0] == L[0, 1] == L[1, 0] == L[1, 1] == 0.0  # zero-zero: 0
    # zero-positive: (x^p - 0) / (x - 0) = x^(p-1)
    np.testing.assert_allclose([L[0, 2], L[2, 1]], 0.25 ** (p - 1), rtol=4 * EPS)


def test_exponent_zero_and_range():
    assert jnp.all(divided_differences(jnp.array([0.0, 1.0, 1.0]), 0.0) == 0)
    with pytest.raises(ValueError, match="must be in"):
        divided_differences(jnp.ones(2), 1.0)


def _psd_power(A, p):
    lam, Q = jnp.linalg.eigh(A)
    return (Q * jnp.where(lam > 0, jnp.abs(lam), 0.0) ** p) @ Q.T


@pytest.mark.parametrize("spectrum", [[3.0, 1.2, 0.5, 0.2], [0.4, 0.4, 0.4, 1.5]])
@pytest.mark.parametrize("p", [1 / 2, 1 / 3])
def test_power_derivative_matches_central_differences(spectrum, p):
    """Distinct and repeated eigenvalues: `D(A^p)[E]` equals `(f(A+hE) - f(A-hE)) / 2h`
    up to O(h^2) truncation plus O(eps / h) rounding, ~1e-10 relative at h = 1e-5
    (the smallest eigenvalue is 0.2, so A +- hE stays positive definite)."""
    Q, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(0), (4, 4)))
    lam = jnp.asarray(spectrum)
    A = (Q * lam) @ Q.T
    E = jax.random.normal(jax.random.PRNGKey(1), (4, 4))
    E = E + E.T
    h = 1e-5
    fd = (_psd_power(A + h * E, p) - _psd_power(A - h * E, p)) / (2 * h)
    got = power_derivative(Q, lam, p, E)
    np.testing.assert_allclose(got, fd, atol=1e-8 * float(jnp.abs(got).max()), rtol=0)


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (5, 3)])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_tangent_equals_svd_derivative_where_that_is_finite(shape, depth):
    """At a random W (distinct nonzero singular values, full rank) differentiating the
    reduced SVD is fine: the two derivatives of `P(W)[G]` in `(W, G)` agree to rounding
    (seen <= 9e-16 relative; 1e-12 allows for the gaps' conditioning)."""
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(depth), 4)
    W, G, dW, dG = (jax.random.normal(k, shape) for k in (k1, k2, k3, k4))
    _, want = jax.jvp(lambda W, G: _precondition_from_svd(W, G, depth, "svd"), (W, G),
                      (dW, dG))
    got = precondition_tangent(W, G, dW, dG, depth)
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(got, want, atol=1e-12 * scale, rtol=0)
