"""Modified flows (backward error analysis of gradient descent): the field against the
modified objective and against a dense-derivative reference, and the orders at which
descent follows them (2 and 3, against 1 for the plain flow).

Finite differences are central with step 1e-5: truncation `eps^2 |phi'''| ~ 1e-10`
and rounding `ulp(phi) / eps ~ 1e-11`, so 1e-7 relative is a loose, failing-capable
bound. Autodiff references agree to rounding (`ROUNDING`).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROUNDING, sensing

import lnn_flow as lf
from lnn_flow._flows._modified import modified_field

DIMS = (3, 4, 3)
LR = 0.1


@pytest.fixture(scope="module")
def problem():
    loss, _ = sensing((DIMS[-1], DIMS[0]))
    ws0 = lf.init.balanced(jax.random.PRNGKey(5), DIMS, 0.7)
    return loss, ws0


def _dot(a, b):
    return sum(jnp.sum(x * y) for x, y in zip(a, b))


def test_order_one_field_is_minus_the_gradient_of_the_modified_objective(problem):
    """-d/ds phi~(ws + s v) by central differences, along three random directions."""
    loss, ws = problem
    field = lf.modified_factor_vector_field(loss, ws, LR)
    eps = 1e-5
    for seed in range(3):
        keys = jax.random.split(jax.random.PRNGKey(seed), len(ws))
        v = tuple(jax.random.normal(k, w.shape) for k, w in zip(keys, ws))
        at = lambda s: lf.modified_objective(loss, tuple(w + s * u for w, u in zip(ws, v)), LR)
        slope = -(at(eps) - at(-eps)) / (2 * eps)
        np.testing.assert_allclose(_dot(field, v), slope, rtol=1e-7)
    autodiff = jax.grad(lambda w: lf.modified_objective(loss, w, LR))(ws)
    for f, g in zip(field, autodiff):
        np.testing.assert_allclose(f, -g, atol=ROUNDING)
    # and it differs from the plain field by the (lr/2) H grad phi term
    plain = lf.factor_vector_field(loss, ws)
    assert max(float(jnp.abs(f - p).max()) for f, p in zip(field, plain)) > 1e-3


def test_second_order_field_matches_dense_derivatives(problem):
    """f + h(-f'f/2) + h^2 (f''(f,f)/12 + f'f'f/3) with the Jacobian and the second
    derivative of eq. (2)'s field formed densely (jacfwd, hessian) on the flat state."""
    loss, ws = problem
    flat, unravel = jax.flatten_util.ravel_pytree(ws)
    f = lambda y: jax.flatten_util.ravel_pytree(lf.factor_vector_field(loss, unravel(y)))[0]
    f0 = f(flat)
    J = jax.jacfwd(f)(flat)
    T = jax.jacfwd(jax.jacfwd(f))(flat)  # T[i, j, k] = d^2 f_i / dy_j dy_k
    expected = (
        f0 - LR / 2 * J @ f0
        + LR**2 * (jnp.einsum("ijk,j,k->i", T, f0, f0) / 12 + J @ J @ f0 / 3)
    )
    got = jax.flatten_util.ravel_pytree(lf.modified_factor_vector_field(loss, ws, LR, order=2))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=ROUNDING)


def test_modified_equation_of_a_linear_field_is_the_log_series():
    """For y' = a y, Euler's iterates (1 + ha)^k lie on y' = (log(1 + ha)/h) y exactly:
    a - h a^2/2 + h^2 a^3/3 - ..., whose first two corrections the field must give."""
    a, h = -1.7, 0.05
    got = modified_field(lambda y: a * y, jnp.asarray(1.0), h, 2)
    assert float(got) == pytest.approx(a - h * a**2 / 2 + h**2 * a**3 / 3, rel=ROUNDING)


def test_depth_one_end_to_end_is_the_factor_flow_of_one_factor(problem):
    """At depth 1 eq. (3) is -grad l, and both modified flows solve the same ODE."""
    loss, ws = problem
    W0 = lf.end_to_end(ws)
    kw = dict(lr=LR, order=2, rtol=1e-12, atol=1e-14)
    a = lf.modified_end_to_end_flow(loss, W0, 1, 1.0, **kw)
    b = lf.modified_factor_flow(loss, (W0,), 1.0, **kw)
    np.testing.assert_allclose(a.end_to_end_final, b.end_to_end_final, atol=1e-10)


@pytest.mark.parametrize("kind", ["factor", "end_to_end"])
def test_descent_follows_the_modified_flows_to_orders_two_and_three(problem, kind):
    """max_k ||W_k - W~(k lr)|| over [0, 2] at lr 0.08, 0.04, 0.02: fitted orders 1 (the
    plain flow), 2 and 3 (the modified flows of order 1 and 2), each within 0.15: the
    next term of each expansion is relatively O(lr), a few percent of the slope at
    these step sizes. Flows at rtol 1e-12 (errors ~1e-10 by conftest's rule); the
    smallest distance is asserted three decades above that."""
    loss, ws0 = problem
    init = ws0 if kind == "factor" else lf.end_to_end(ws0)
    kw = dict(rtol=1e-12, atol=1e-14, dense=True)
    if kind == "factor":
        flow = lf.factor_flow(loss, init, 2.0, **kw)
    else:
        flow = lf.end_to_end_flow(loss, init, len(ws0), 2.0, **kw)
    fit = lf.distance_vs_lr(loss, flow, init, [0.08, 0.04, 0.02], 2.0, modified=(1, 2))
    assert fit.flow_order == 0 and [m.flow_order for m in fit.modified] == [1, 2]
    assert float(fit.order) == pytest.approx(1.0, abs=0.15)
    assert float(fit.modified[0].order) == pytest.approx(2.0, abs=0.15)
    assert float(fit.modified[1].order) == pytest.approx(3.0, abs=0.15)
    assert float(fit.modified[1].max_distance[-1]) > 1e3 * 1e-10
    # each modified flow is closer than the one before, at every step size
    assert np.all(np.asarray(fit.modified[0].max_distance) < np.asarray(fit.max_distance))
    assert np.all(np.asarray(fit.modified[1].max_distance)
                  < np.asarray(fit.modified[0].max_distance))


def test_batch_of_modified_flows_equals_single_solves(problem):
    loss, ws0 = problem
    inits = tuple(jnp.stack([w, 1.1 * w]) for w in ws0)
    batch = lf.solve_batch("modified_factor", loss, inits, 1.0, lr=LR, order=1,
                           rtol=1e-10, atol=1e-12)
    for i in range(2):
        one = lf.modified_factor_flow(loss, tuple(w[i] for w in inits), 1.0, lr=LR,
                                      rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(batch.end_to_end_final[i], one.end_to_end_final,
                                   atol=1e-12)


def test_pool_of_modified_end_to_end_flows_equals_single_solves(problem):
    loss, ws0 = problem
    W0 = lf.end_to_end(ws0)
    inits = jnp.stack([W0, 1.1 * W0])
    kw = dict(lr=LR, order=2, rtol=1e-10, atol=1e-12)
    pool = lf.solve_pool("modified_end_to_end", loss, inits, len(ws0), 1.0, slots=2, **kw)
    for i in range(2):
        one = lf.modified_end_to_end_flow(loss, inits[i], len(ws0), 1.0, **kw)
        np.testing.assert_allclose(pool.end_to_end_final[i], one.end_to_end_final,
                                   atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(lr=-0.1), "`lr` must be > 0"),
     (dict(lr=0.1j), "`lr`"),
     (dict(lr=0.1, order=3), "`order` must be 1 or 2"),
     (dict(lr=0.1, order=True), "`order` must be 1 or 2")],
)
def test_bad_step_or_order_is_refused(problem, kwargs, match):
    loss, ws0 = problem
    with pytest.raises((ValueError, TypeError), match=match):
        lf.modified_factor_flow(loss, ws0, 1.0, **kwargs)


def test_distance_fit_refuses_an_unknown_order(problem):
    loss, ws0 = problem
    flow = lf.factor_flow(loss, ws0, 1.0, dense=True)
    with pytest.raises(ValueError, match="`modified` must list orders 1 or 2"):
        lf.distance_vs_lr(loss, flow, ws0, [0.1], 1.0, modified=(3,))
