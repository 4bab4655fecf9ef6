"""Gradient descent on the factors (eq. 1 / eq. 2 discretized) and the discretized
end-to-end dynamics of Claim 1: the update itself, saves, optax, divergence, vmap,
no recompilation for new values, and bad input.

"To rounding" tolerances: a run of N float64 steps accumulates at most about
N * eps ~ N * 2.2e-16 relative error per operation chain; with N <= 200 and a few dozen
flops per entry, `ROUNDING` = 1e-11 relative (conftest) is a bound with a wide margin.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import DESCENT_DIMS, ROUNDING

import lnn_flow as lf

DIMS = DESCENT_DIMS
LR = 0.05
STEPS = 60


@pytest.fixture(scope="module")
def problem(descent_problem):
    """The shared depth-3 sensing problem of conftest (`DESCENT_DIMS`)."""
    return descent_problem


@pytest.fixture(scope="module")
def run(problem):
    loss, ws0 = problem
    return lf.gradient_descent(loss, ws0, LR, STEPS)


def manual_descent(loss, ws, lr, steps):
    """W_j <- W_j - lr * d phi / d W_j, written out step by step."""
    ws = tuple(ws)
    for _ in range(steps):
        grads = jax.grad(lf.overparameterized_objective, argnums=1)(loss, ws)
        ws = tuple(w - lr * g for w, g in zip(ws, grads))
    return ws


def test_plain_descent_is_the_gradient_step(problem, run):
    loss, ws0 = problem
    assert run.success and run.finite and run.reached.all()
    expected = manual_descent(loss, ws0, LR, 5)
    for got, want in zip(run.factors, expected):
        np.testing.assert_allclose(got[5], want, rtol=ROUNDING, atol=ROUNDING)
    np.testing.assert_allclose(run.ts, LR * np.arange(STEPS + 1), rtol=1e-15)
    np.testing.assert_allclose(run.end_to_end[5], lf.end_to_end(expected), rtol=ROUNDING)
    np.testing.assert_allclose(run.loss, jax.vmap(loss)(run.end_to_end), rtol=1e-13)
    assert run.loss[-1] < 0.5 * run.loss[0]  # descent descends
    assert int(run.stats.num_vector_field_evals) == STEPS
    assert int(run.stats.num_rejected_steps) == 0
    assert float(run.t_final) == pytest.approx(STEPS * LR, rel=1e-15)
    assert run.solution is None and run.depth == 3 and run.message == ""


def test_save_every_thins_the_same_iterates(problem, run):
    loss, ws0 = problem
    thin = lf.gradient_descent(loss, ws0, LR, STEPS + 2, save_every=7)
    steps = np.arange(0, STEPS + 1, 7)  # saves at 0, 7, ..., 56; 62 only in *_final
    np.testing.assert_allclose(thin.ts, LR * steps, rtol=1e-15)
    np.testing.assert_allclose(thin.end_to_end, run.end_to_end[steps], rtol=ROUNDING)
    longer = lf.gradient_descent(loss, ws0, LR, 2, save_every=1)
    start = tuple(f[-1] for f in run.factors)
    two_more = manual_descent(loss, start, LR, 2)
    for got, want in zip(thin.factors_final, two_more):
        np.testing.assert_allclose(got, want, rtol=ROUNDING, atol=ROUNDING)
    assert longer.ts.shape == (3,)


def test_euler_with_constant_step_reproduces_descent(problem, run):
    """Forward Euler with step eta on the factor field eq. (2) is GD with lr eta."""
    loss, ws0 = problem
    euler = lf.factor_flow(
        loss, ws0, STEPS * LR, run.ts, solver=diffrax.Euler(), dt0=LR, max_steps=STEPS + 1
    )
    assert euler.success
    np.testing.assert_allclose(euler.end_to_end, run.end_to_end, rtol=ROUNDING, atol=1e-13)
    for a, b in zip(euler.factors, run.factors):
        np.testing.assert_allclose(a, b, rtol=ROUNDING, atol=1e-13)


def test_end_to_end_descent_is_claim_1_step(problem):
    loss, ws0 = problem
    W0 = lf.end_to_end(ws0)
    sol = lf.end_to_end_descent(loss, W0, 3, LR, 3)
    W = W0
    for _ in range(3):  # vec(W) <- vec(W) - zeta P(W) vec(grad l(W))
        W = W + LR * lf.end_to_end_vector_field(loss, W, 3)
    np.testing.assert_allclose(sol.end_to_end_final, W, rtol=ROUNDING, atol=1e-14)
    assert sol.factors is None and sol.factors_final is None and sol.depth == 3


def test_end_to_end_descent_uses_the_decomposition_it_is_given(problem):
    loss, ws0 = problem
    W0 = lf.end_to_end(ws0)
    sol = lf.end_to_end_descent(loss, W0, 3, LR, 3, decomposition="gram")
    W = W0
    for _ in range(3):
        W = W + LR * lf.end_to_end_vector_field(loss, W, 3, decomposition="gram")
    np.testing.assert_allclose(sol.end_to_end_final, W, rtol=ROUNDING, atol=1e-14)
    with pytest.raises(ValueError, match="`decomposition` must be one of"):
        lf.end_to_end_descent(loss, W0, 3, LR, 3, decomposition="qr")


def test_depth_one_is_plain_descent_on_the_loss(problem):
    loss, ws0 = problem
    W0 = lf.end_to_end(ws0)
    e2e = lf.end_to_end_descent(loss, W0, 1, LR, 20)
    factor = lf.gradient_descent(loss, (W0,), LR, 20)
    W = W0
    for _ in range(20):
        W = W - LR * jax.grad(loss)(W)
    np.testing.assert_allclose(e2e.end_to_end_final, W, rtol=ROUNDING)
    np.testing.assert_allclose(factor.end_to_end, e2e.end_to_end, rtol=ROUNDING)


def test_optax_momentum_matches_its_recurrence(problem):
    """Heavy ball: m <- g + beta m, W <- W - lr m (optax.trace, then the step)."""
    loss, ws0 = problem
    beta = 0.9
    sol = lf.gradient_descent(loss, ws0, LR, 10, optimizer=optax.trace(decay=beta))
    ws, ms = tuple(ws0), tuple(jnp.zeros_like(w) for w in ws0)
    for _ in range(10):
        grads = jax.grad(lf.overparameterized_objective, argnums=1)(loss, ws)
        ms = tuple(g + beta * m for g, m in zip(grads, ms))
        ws = tuple(w - LR * m for w, m in zip(ws, ms))
    for got, want in zip(sol.factors_final, ws):
        np.testing.assert_allclose(got, want, rtol=ROUNDING, atol=1e-14)
    plain = lf.gradient_descent(loss, ws0, LR, 10)
    assert not np.allclose(plain.end_to_end_final, sol.end_to_end_final, rtol=1e-3)


def test_vmap_over_initializations_equals_separate_runs(problem):
    loss, _ = problem
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    batch = jax.vmap(lambda k: lf.init.balanced(k, DIMS, 0.5))(keys)
    batched = jax.vmap(lambda ws: lf.gradient_descent(loss, ws, LR, 30, save_every=10))(
        batch
    )
    assert batched.end_to_end.shape == (3, 4, DIMS[-1], DIMS[0])
    for i in range(3):
        ws = tuple(f[i] for f in batch)
        one = lf.gradient_descent(loss, ws, LR, 30, save_every=10)
        np.testing.assert_allclose(batched.end_to_end[i], one.end_to_end, rtol=ROUNDING)
        np.testing.assert_allclose(batched.loss[i], one.loss, rtol=ROUNDING)
    assert batched.success.all()


def test_vmap_over_step_sizes_equals_separate_runs(problem):
    loss, ws0 = problem
    lrs = jnp.array([0.01, 0.03])
    batched = jax.vmap(lambda lr: lf.gradient_descent(loss, ws0, lr, 20))(lrs)
    for i, lr in enumerate(lrs):
        one = lf.gradient_descent(loss, ws0, float(lr), 20)
        np.testing.assert_allclose(batched.end_to_end[i], one.end_to_end, rtol=ROUNDING)
        np.testing.assert_allclose(batched.ts[i], one.ts, rtol=1e-15)


class CountingSquare(eqx.Module):
    """`1/2 ||W - target||^2` that counts how often it is traced."""

    target: jax.Array
    traces = [0]

    def __call__(self, W):
        CountingSquare.traces[0] += 1
        return 0.5 * jnp.sum((W - self.target) ** 2)


def test_new_step_size_or_data_does_not_recompile():
    target = jnp.ones((3, 2))
    ws0 = lf.init.balanced(jax.random.PRNGKey(0), (2, 3, 3), 0.1)
    lf.gradient_descent(CountingSquare(target), ws0, 0.1, 5)
    traced = CountingSquare.traces[0]
    assert traced > 0
    lf.gradient_descent(CountingSquare(2 * target), ws0, 0.2, 5)
    lf.gradient_descent(CountingSquare(target), tuple(2 * w for w in ws0), 0.3, 5)
    assert CountingSquare.traces[0] == traced


def test_divergence_is_reported_and_keeps_earlier_iterates(problem):
    loss, ws0 = problem
    sol = lf.gradient_descent(loss, tuple(10 * w for w in ws0), 1.0, 40, save_every=2)
    assert not sol.finite and not sol.success
    assert "non-finite" in sol.message
    taken = int(sol.stats.num_accepted_steps)
    assert 0 < taken < 40
    assert int(sol.stats.num_vector_field_evals) == taken + 1  # the diverging step
    assert float(sol.t_final) == pytest.approx(taken * 1.0)
    reached = np.asarray(sol.reached)
    assert reached[0] and not reached[-1]
    assert reached.sum() == taken // 2 + 1  # saves at even steps up to `taken`
    assert np.isfinite(np.asarray(sol.end_to_end[reached])).all()
    assert np.isnan(np.asarray(sol.end_to_end[~reached])).all()
    # The final state is the last finite iterate: `taken` plain steps from ws0.
    expected = manual_descent(loss, tuple(10 * w for w in ws0), 1.0, taken)
    # Rounding grows with the iterates here (entries up to ~1e100), hence rtol 1e-9.
    np.testing.assert_allclose(sol.end_to_end_final, lf.end_to_end(expected), rtol=1e-9)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"lr": -0.1}, ValueError, "`lr`"),
        ({"lr": float("nan")}, ValueError, "`lr`"),
        ({"steps": 0}, ValueError, "`steps`"),
        ({"steps": 2.5}, TypeError, "`steps`"),
        ({"save_every": 0}, ValueError, "`save_every`"),
        ({"optimizer": "sgd"}, TypeError, "`optimizer`"),
    ],
)
def test_bad_arguments_name_themselves(problem, kwargs, error, name):
    loss, ws0 = problem
    args = {"lr": 0.1, "steps": 3} | kwargs
    lr, steps = args.pop("lr"), args.pop("steps")
    with pytest.raises(error, match=name):
        lf.gradient_descent(loss, ws0, lr, steps, **args)


def test_bad_initializations_name_themselves(problem):
    loss, ws0 = problem
    with pytest.raises(ValueError, match="`ws0`"):
        lf.gradient_descent(loss, (ws0[0], ws0[0]), 0.1, 3)
    with pytest.raises(ValueError, match="`ws0`"):
        lf.gradient_descent(loss, ws0[:2], 0.1, 3)  # product shape does not fit loss
    with pytest.raises(ValueError, match="`W0`"):
        lf.end_to_end_descent(loss, jnp.full((DIMS[-1], DIMS[0]), jnp.nan), 2, 0.1, 3)
    with pytest.raises(ValueError, match="`depth`"):
        lf.end_to_end_descent(loss, lf.end_to_end(ws0), 0, 0.1, 3)
