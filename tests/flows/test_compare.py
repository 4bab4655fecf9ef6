"""Flow versus descent: first-order distance of gradient descent from the flow, the
exact eta^2 unbalancedness change per step, and the implicit-acceleration helper.

The reference flows are solved with rtol 1e-12, atol 1e-14; by the rule in conftest.py
their error is below `num_steps * (1e-12 * |W| + 1e-14)` ~ 1e-9 here, a thousand times
below the smallest descent distance measured (~1e-5 at lr 1e-3), so the distances are
descent's own error.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DESCENT_DIMS, ROUNDING, trajectory_tolerance

import lnn_flow as lf

DIMS = DESCENT_DIMS
HORIZON = 3.0
FLOW_RTOL, FLOW_ATOL = 1e-12, 1e-14


@pytest.fixture(scope="module")
def problem(descent_problem):
    """The shared depth-3 sensing problem of conftest (`DESCENT_DIMS`)."""
    return descent_problem


@pytest.fixture(scope="module")
def flow(problem):
    loss, ws0 = problem
    sol = lf.factor_flow(
        loss, ws0, HORIZON, rtol=FLOW_RTOL, atol=FLOW_ATOL, dense=True
    )
    assert sol.success
    # The flow's own error, far below every distance asserted on below.
    scale = float(jnp.abs(sol.end_to_end).max())
    assert trajectory_tolerance(sol.stats.num_steps, scale, FLOW_RTOL, FLOW_ATOL) < 1e-8
    return sol


@pytest.fixture(scope="module")
def fit(problem, flow):
    loss, ws0 = problem
    return lf.distance_vs_lr(loss, flow, ws0, [4e-3, 2e-3, 1e-3], HORIZON)


def test_tiny_step_stays_within_order_lr_of_the_flow(fit, flow):
    """max_k ||W_k - W(k lr)|| = C lr + O(lr^2): the constant C is the same at each lr
    (to 10%: the O(lr^2) term relative to C lr is ~ lr * C'/C, a few 1e-3 here), and the
    distance is well below the trajectory's scale."""
    per_lr = np.asarray(fit.max_distance / fit.lrs)
    assert np.all(np.isfinite(per_lr))
    np.testing.assert_allclose(per_lr, per_lr[-1], rtol=0.1)
    scale = float(jnp.linalg.norm(flow.end_to_end_final))
    assert float(fit.max_distance[-1]) < 0.01 * scale
    assert float(fit.max_distance[-1]) > 1e3 * 1e-9  # far above the flow's own error


def test_halving_lr_halves_the_maximum_distance(fit):
    """First order: each halving divides the distance by 2 (to 10%, as above), and the
    least-squares order is 1 (to 0.05)."""
    ratios = np.asarray(fit.max_distance[:-1] / fit.max_distance[1:])
    np.testing.assert_allclose(ratios, 2.0, rtol=0.1)
    assert abs(float(fit.order) - 1.0) < 0.05
    assert np.asarray(fit.steps).tolist() == [750, 1500, 3000]


def test_streamed_distance_equals_stored_distance(problem, flow):
    """The in-scan maximum equals the maximum over a descent that saves every iterate
    (same iterates, same dense evaluations: to rounding)."""
    loss, ws0 = problem
    lr, steps = 0.01, 300
    descent = lf.gradient_descent(loss, ws0, lr, steps)
    stored = lf.distance_to_flow(flow, descent)
    assert stored.shape == (steps + 1,)
    assert float(stored[0]) < 1e-12  # both start at ws0
    streamed = lf.max_distance_to_flow(loss, flow, ws0, lr, steps)
    np.testing.assert_allclose(streamed, stored.max(), rtol=ROUNDING)
    scale = jax.vmap(flow.evaluate)(descent.ts)
    relative = lf.max_distance_to_flow(loss, flow, ws0, lr, steps, relative=True)
    expected = stored.max() / jnp.linalg.norm(scale, axis=(1, 2)).max()
    np.testing.assert_allclose(relative, expected, rtol=ROUNDING)


def test_end_to_end_descent_is_first_order_to_its_flow(problem):
    """Claim 1's discretization against the flow of Theorem 1 (eq. 3)."""
    loss, ws0 = problem
    W0 = lf.end_to_end(ws0)
    flow = lf.end_to_end_flow(
        loss, W0, 3, HORIZON, rtol=FLOW_RTOL, atol=FLOW_ATOL, dense=True
    )
    fit = lf.distance_vs_lr(loss, flow, W0, [2e-3, 1e-3], HORIZON)
    ratio = float(fit.max_distance[0] / fit.max_distance[1])
    assert ratio == pytest.approx(2.0, rel=0.1)  # first order, as for the factors


def test_last_iterate_time_rounding_past_the_flow_is_clipped(problem, flow):
    """(3 / 187) * 187 > 3 in float64: the last iterate's time overshoots the horizon by
    rounding, where the dense output is undefined; the distance must stay finite."""
    loss, ws0 = problem
    assert (HORIZON / 187) * 187 > HORIZON
    dist = lf.max_distance_to_flow(loss, flow, ws0, HORIZON / 187, 187)
    assert np.isfinite(float(dist)) and float(dist) < 0.1


def test_diverged_descent_is_infinitely_far(problem, flow):
    loss, ws0 = problem
    far = lf.max_distance_to_flow(loss, flow, tuple(10 * w for w in ws0), 1.0, 3)
    assert far == jnp.inf


def test_comparison_rejects_what_it_cannot_compare(problem, flow):
    loss, ws0 = problem
    no_dense = lf.factor_flow(loss, ws0, 1.0)
    with pytest.raises(ValueError, match="dense"):
        lf.max_distance_to_flow(loss, no_dense, ws0, 0.1, 5)
    with pytest.raises(ValueError, match="`steps`"):
        lf.max_distance_to_flow(loss, flow, ws0, 0.1, 40)  # 4.0 > HORIZON
    with pytest.raises(ValueError, match="`lr`"):
        lf.max_distance_to_flow(loss, flow, ws0, -0.1, 5)
    with pytest.raises(ValueError, match="`lrs`"):
        lf.distance_vs_lr(loss, flow, ws0, [], HORIZON)
    with pytest.raises(ValueError, match="`decomposition` must be one of"):
        lf.max_distance_to_flow(loss, flow, ws0, 0.1, 5, decomposition="qr")


def test_end_to_end_comparison_takes_the_flows_decomposition(problem):
    loss, ws0 = problem
    W0 = lf.end_to_end(ws0)
    flow = lf.end_to_end_flow(loss, W0, 3, 1.0, decomposition="gram", dense=True,
                              rtol=FLOW_RTOL, atol=FLOW_ATOL)
    gram = lf.max_distance_to_flow(loss, flow, W0, 0.01, 100, decomposition="gram")
    svd = lf.max_distance_to_flow(loss, flow, W0, 0.01, 100)
    # Same iterates up to rounding (W0 is well conditioned: both decompositions are
    # exact to ~1e-15 relative), so the same first-order distance, ~lr.
    assert 1e-4 < float(gram) < 0.1
    np.testing.assert_allclose(gram, svd, rtol=1e-9)


def test_fit_order_recovers_a_power_law():
    lrs = np.array([0.1, 0.05, 0.025])
    order, constant = lf.fit_order(lrs, 3.0 * lrs**2)
    assert float(order) == pytest.approx(2.0, rel=1e-12)
    assert float(constant) == pytest.approx(3.0, rel=1e-12)
    order, _ = lf.fit_order(lrs, np.array([np.inf, 0.1, 0.05]))  # inf is left out
    assert float(order) == pytest.approx(1.0, rel=1e-12)


def test_unbalancedness_change_per_step_is_exact(problem):
    """One step changes W_{j+1}^T W_{j+1} - W_j W_j^T by exactly
    eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T): the first-order terms cancel."""
    loss, _ = problem
    ws = lf.init.gaussian(jax.random.PRNGKey(5), DIMS, 0.8)  # unbalanced on purpose
    lr = 0.1
    before = lf.unbalancedness_matrices(ws)
    after = lf.unbalancedness_matrices(lf.gradient_descent(loss, ws, lr, 1).factors_final)
    predicted = lf.unbalancedness_step(loss, ws, lr)
    for b, a, p in zip(before, after, predicted):
        change = a - b
        # Rounding: the difference of two O(|W|^2) matrices, ~10 eps |W|^2.
        tol = 10 * np.finfo(float).eps * float(jnp.abs(b).max() + jnp.abs(a).max())
        assert float(jnp.abs(p).max()) > 1e4 * tol  # a real, measurable change
        np.testing.assert_allclose(change, p, rtol=0, atol=tol)
    # Halving the step quarters it (order eta^2, not eta).
    half = lf.unbalancedness_step(loss, ws, lr / 2)
    np.testing.assert_allclose(half[0], predicted[0] / 4, rtol=1e-12)


def test_descent_creates_unbalancedness_the_flow_conserves(problem, flow):
    loss, ws0 = problem
    descent = lf.gradient_descent(loss, ws0, 0.05, 60, save_every=6)
    along = np.asarray(lf.unbalancedness_along(descent))
    assert along[0] < 1e-12  # balanced init
    assert along[-1] > 1e3 * 1e-12  # descent made it unbalanced
    # Its size: the sum of the eta^2 changes of the steps taken (Lemma 1 discretized).
    ws, total = ws0, [jnp.zeros_like(g) for g in lf.unbalancedness_matrices(ws0)]
    for _ in range(60):
        total = [t + d for t, d in zip(total, lf.unbalancedness_step(loss, ws, 0.05))]
        ws = lf.gradient_descent(loss, ws, 0.05, 1).factors_final
    expected = max(float(jnp.linalg.norm(t)) for t in total)
    assert along[-1] == pytest.approx(expected, rel=1e-8)
    with pytest.raises(ValueError, match="`solution`"):
        lf.unbalancedness_along(lf.end_to_end_descent(loss, lf.end_to_end(ws0), 3, 0.1, 2))


@pytest.fixture(scope="module")
def l4_problem():
    """A documented synthetic l_4 regression: 3 inputs, 1 output, 40 examples, labels
    from a planted W* of norm ~2 plus noise (so l* > 0 and W* is far from zero)."""
    kx, kn = jax.random.split(jax.random.PRNGKey(11))
    X = jax.random.normal(kx, (3, 40))
    Y = jnp.array([[1.5, -1.0, 0.8]]) @ X + 0.3 * jax.random.normal(kn, (1, 40))
    return lf.losses.LpRegression(X, Y, p=4), X, Y




def test_loss_minimum_is_least_squares_for_p2(l4_problem):
    _, X, Y = l4_problem
    loss = lf.losses.LpRegression(X, Y, p=2)
    W = jnp.linalg.lstsq(X.T, Y.T)[0].T
    assert float(lf.loss_minimum(loss, (1, 3))) == pytest.approx(float(loss(W)), rel=1e-10)


def test_acceleration_study_skips_divergent_step_sizes(l4_problem):
    loss, _, _ = l4_problem
    optimum = lf.loss_minimum(loss, (1, 3))
    lrs = [1e-3, 3e-3, 1e-2, 3e-2, 1.0]  # the largest diverges on l_4
    study = lf.implicit_acceleration(
        loss, (3, 3, 1), lrs, 800, 1e-2, key=jax.random.PRNGKey(0), optimum=optimum
    )
    assert study.depth == 2
    diverged, iterations = np.asarray(study.diverged), np.asarray(study.iterations)
    assert diverged[-1] and iterations[-1] == -1  # failed, so never the best
    ok = iterations >= 0
    assert ok.any()
    assert int(study.best_iterations) == iterations[ok].min()
    assert float(study.best_lr) == lrs[int(np.argmin(np.where(ok, iterations, 10**9)))]
    k = int(study.best_iterations)
    losses = np.asarray(study.losses)
    assert losses[k] <= float(optimum) + 1e-2 < losses[k - 1]  # the first hit
    # Smaller steps are slower wherever both succeed (a sanity check of the count).
    both = ok[:-1] & ok[1:]
    assert np.all(iterations[:-1][both] >= iterations[1:][both])
