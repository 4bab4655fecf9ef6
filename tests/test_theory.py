"""The notes' results checked on problems where they must hold."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATOL, RTOL, sensing, trajectory_tolerance, whitened

import lnn_flow as lf

th = lf.theory


# --- Propositions 1 and 3 ------------------------------------------------------------


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


# --- Definition 3, Theorem 2 -----------------------------------------------------------

TARGET = jnp.array([[2.0, 0.3, 0.0], [-0.2, 1.5, 0.4], [0.1, 0.0, 1.8]])


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_theorem2_envelope_holds_from_a_deficiency_margin(depth):
    loss = lf.losses.WhitenedSquare(TARGET)
    W0 = TARGET + 0.4 * jax.random.normal(jax.random.PRNGKey(depth), TARGET.shape) / 3
    assert th.deficiency_margin(W0, TARGET) > 0.2
    ws0 = lf.init.from_end_to_end(W0, (3,) * (depth + 1))
    ts = jnp.linspace(0.0, 8.0, 41)
    sol = lf.factor_flow(loss, ws0, ts[-1], ts, rtol=RTOL, atol=ATOL)
    # The computed loss carries the trajectory error e (conftest rule) as
    # |l(W + e) - l(W)| <= |W - target| e + e^2/2.
    e = trajectory_tolerance(sol.stats.num_steps, jnp.abs(sol.end_to_end).max())
    check = th.check_theorem2(sol, loss, slack=jnp.sqrt(2 * sol.loss[0]) * e + e**2)
    assert check.holds
    assert check.gap[-1] < 1e-3 * check.gap[0]  # the flow converges...
    assert check.gap[-1] > 0  # ...and the comparison is not of zeros
    eps = float(check.gap[-1])
    t_bound = th.theorem2_time(check.gap[0], eps, 1.0, check.delta, depth)
    assert t_bound >= ts[-1] * (1 - 1e-9)  # the bound is valid: reaching eps took t1


def test_deficiency_margin_and_envelope_values():
    np.testing.assert_allclose(th.deficiency_margin(jnp.eye(2), 2 * jnp.eye(2)),
                               2 - jnp.sqrt(2.0))
    env = th.convergence_envelope(jnp.array([0.0, 1.0]), 2.0, 1.0, 0.25, 2)
    np.testing.assert_allclose(env, [2.0, 2.0 * np.exp(-2 * 0.25)])


# --- Definition 4, Theorem 3 -----------------------------------------------------------


def test_analytic_svd_has_no_jumps_or_flips():
    """A rotation-and-crossing path: sorted SVD reorders at the crossing; the analytic
    one follows each component continuously."""
    ts = jnp.linspace(0.0, 1.0, 100)  # no save exactly at the crossing (W has a
    # double singular value there, so any rotation of its pair is an SVD)
    R = lambda a: jnp.array([[jnp.cos(a), -jnp.sin(a)], [jnp.sin(a), jnp.cos(a)]])
    Ws = jax.vmap(lambda t: R(t) @ jnp.diag(jnp.array([1.0 + t, 1.5 - t])) @ R(2 * t).T)(ts)
    svd = th.analytic_svd(Ws)
    # Sorted at t = 0; the two cross at t = 0.25 and keep their columns after.
    np.testing.assert_allclose(svd.sigma, jnp.stack([1.5 - ts, 1.0 + ts], 1), atol=1e-12)
    np.testing.assert_allclose(
        jnp.einsum("kir,kr,kjr->kij", svd.U, svd.sigma, svd.V), Ws, atol=1e-12
    )
    assert jnp.all(jnp.sum(svd.U[1:] * svd.U[:-1], axis=1) > 0.9)


@pytest.mark.parametrize("depth", [2, 3])
def test_theorem3_rates_match_the_trajectory(depth):
    loss, _ = sensing((5, 5), rank=2, m=20)
    ws0 = lf.init.balanced(jax.random.PRNGKey(1), (5,) * (depth + 1), 0.1)
    sol = lf.factor_flow(loss, ws0, 20.0, rtol=RTOL, atol=ATOL, dense=True, max_steps=4096)
    dyn = th.singular_value_dynamics(loss, sol, jnp.linspace(0.0, 20.0, 201))
    scale = jnp.abs(dyn.predicted_rates).max()
    # The interpolant's derivative is accurate to about local tolerance / step:
    # rtol 1e-10 with steps >= 1e-3 gives <= 1e-7 relative; allow 1e-6.
    np.testing.assert_allclose(dyn.observed_rates, dyn.predicted_rates, atol=1e-6 * scale)
    assert scale > 0.1 and jnp.abs(dyn.sigma[-1, 0]) > 10 * jnp.abs(dyn.sigma[0, 0])


# --- Lemma 2, Proposition 5 ------------------------------------------------------------


@pytest.fixture(scope="module")
def proposition5_flows():
    loss = th.proposition5_loss()
    W0 = jnp.array([[0.3, 0.1], [-0.05, 0.2]])  # det > 0
    ts = jnp.linspace(0.0, 400.0, 81)
    return loss, {
        depth: lf.end_to_end_flow(loss, W0, depth, ts[-1], ts, max_steps=100_000)
        for depth in (2, 3, 4)
    }


@pytest.mark.parametrize("depth", [3, 4])
def test_determinant_sign_constant_and_norm_bound(proposition5_flows, depth):
    _, flows = proposition5_flows
    sol = flows[depth]
    assert sol.success
    track = th.determinant_track(sol)
    assert track.sign_constant and jnp.all(track.det[sol.reached] > 0)
    assert not track.floor_reached
    norms = jnp.linalg.norm(sol.end_to_end, axis=(1, 2))
    bound = th.proposition5_norm_bound(sol.loss)
    assert jnp.all(norms >= bound)
    assert sol.loss[-1] < 1e-3 and norms[-1] > 2 * norms[0]  # loss falls, norm grows


def test_depth_two_precision_floor_is_reported(proposition5_flows):
    """det W decays exponentially at depth 2 and the computed trajectory crosses the
    singular matrices once sigma_min is below the solver's error: this is reported as
    the precision floor, and the sign before it is constant as Lemma 2 says."""
    _, flows = proposition5_flows
    sol = flows[2]
    track = th.determinant_track(sol)
    assert track.floor_reached
    trusted = sol.reached & ~track.at_precision_floor
    assert trusted[:3].all() and jnp.all(track.det[trusted] > 0)
    assert track.sign_constant
    first = jnp.argmax(track.at_precision_floor)
    assert track.sigma_min[first - 1] < 1e-3 * track.sigma_min[0]  # it was decaying


def test_determinant_sign_constant_on_random_square_problem():
    loss, _ = sensing((4, 4), rank=4, m=16)
    for seed in range(4):
        ws0 = lf.init.balanced(jax.random.PRNGKey(seed), (4, 4, 4, 4), 0.5)
        sol = lf.factor_flow(loss, ws0, 30.0, jnp.linspace(0.0, 30.0, 61))
        track = th.determinant_track(sol)
        assert track.sign_constant and not track.floor_reached


def test_preflight_predicts_which_inits_can_converge():
    """Lemma 2 on the whitened square loss with a full-rank target: an init whose det
    has the other sign stays at loss >= sigma_min(target)^2 / 2 forever."""
    target = jnp.diag(jnp.array([1.0, 0.8, 0.6]))
    loss = lf.losses.WhitenedSquare(target)
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    W0 = jax.vmap(lambda k: lf.end_to_end(lf.init.balanced(k, (3, 3, 3, 3), 0.1)))(keys)
    pre = jax.vmap(lambda W: th.determinant_preflight(W, target))(W0)
    assert 0 < pre.reachable.sum() < 16
    final = jax.vmap(lambda W: lf.end_to_end_flow(loss, W, 3, 200.0, max_steps=50_000))(W0)
    converged = final.loss_final < 1e-6
    np.testing.assert_array_equal(converged, pre.reachable)
    assert jnp.all(final.loss_final[~pre.reachable] >= pre.loss_floor[~pre.reachable])


# --- Exercises -----------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_exercise1_single_output_field(depth):
    loss, _ = sensing((1, 5), rank=1, m=4)
    w = jax.random.normal(jax.random.PRNGKey(depth), (1, 5))
    np.testing.assert_allclose(
        th.exercise1_vector_field(loss, w, depth),
        lf.end_to_end_vector_field(loss, w, depth),
        atol=1e-13,
    )


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


@pytest.mark.parametrize("depth", [2, 3])
def test_exercise5_closed_forms_match_solved_flows(depth):
    """A linear loss l(W) = -<C, W> with C = U diag(c) V^T and W(0) = eps U V^T: the
    drive <-grad l, u_r v_r^T> = c_r is constant and the singular vectors stay put."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(5))
    U, _ = jnp.linalg.qr(jax.random.normal(k1, (3, 3)))
    V, _ = jnp.linalg.qr(jax.random.normal(k2, (3, 3)))
    c = jnp.array([0.9, 0.6, 0.3])
    C = U @ jnp.diag(c) @ V.T
    eps = 0.05
    ts = jnp.linspace(0.0, 3.0 if depth == 2 else 2.8, 16)  # n = 3 blows up at 3.0
    sol = lf.factor_flow(
        lambda W: -jnp.sum(C * W),
        lf.init.from_end_to_end(eps * U @ V.T, (3,) * (depth + 1)),
        ts[-1], ts, rtol=RTOL, atol=ATOL,
    )
    got = jnp.einsum("ir,kij,jr->kr", U, sol.end_to_end, V)
    want = th.exercise5_singular_values(eps, c, ts, depth)
    e = trajectory_tolerance(sol.stats.num_steps, want.max())
    np.testing.assert_allclose(got, want, atol=2 * e)
    ratio = want[:, 0] / want[:, 1]
    assert ratio[-1] > 5 * ratio[0]  # gaps grow fast


def test_exercise5_past_blow_up_and_negative_start():
    # n = 4, sigma(0) = 1, c = 1: blow-up at sigma0^{2/n-1} / ((1 - 2/n) n c) = 0.5.
    values = th.exercise5_singular_values(1.0, 1.0, jnp.array([0.0, 0.3, 0.6, 1.0]), 4)
    np.testing.assert_allclose(values[:2, 0], [1.0, 6.25])
    assert jnp.all(jnp.isinf(values[2:, 0]))


class LinearLoss(eqx.Module):
    """l(W) = -c W[0, 0], with `c` traced (one compile per depth, not per case)."""

    c: jax.Array

    def __call__(self, W):
        return -self.c * W[0, 0]


@pytest.mark.parametrize(
    "sigma0, c, depth, t1",
    [
        (-0.5, 0.7, 2, 1.0),   # shrinks towards 0 (exponentially)
        (-0.5, -0.7, 2, 1.0),  # grows in size, stays negative
        (-0.5, 0.7, 3, 1.5),   # shrinks towards 0 (like t^-3)
        (-0.5, -0.7, 3, 1.5),  # grows; blow-up at 0.5^(-1/3) / 0.7 = 1.80
        (-0.3, -0.4, 4, 2.0),  # grows; blow-up at 0.3^(-1/2) / 0.8 = 2.28
        (0.4, -0.6, 3, 1.5),   # positive start, negative drive: shrinks
    ],
)
def test_exercise5_negative_starts_match_the_solved_network(sigma0, c, depth, t1):
    """Against the network itself, not the formula: a 1 x 1 depth-`depth` network with
    l(w) = -c w has W = sigma (u = v = 1, the analytic SVD keeps the sign), so its
    factor flow (eq. 2, gradient flow of the factors, which knows nothing of the closed
    form) must follow `exercise5_singular_values` from negative starts too."""
    ts = jnp.linspace(0.0, t1, 11)
    ws0 = lf.init.from_end_to_end(jnp.array([[sigma0]]), (1,) * (depth + 1))
    assert float(lf.end_to_end(ws0)[0, 0]) == pytest.approx(sigma0, rel=1e-15)
    sol = lf.factor_flow(LinearLoss(jnp.asarray(c)), ws0, t1, ts, rtol=RTOL, atol=ATOL)
    assert sol.success
    want = th.exercise5_singular_values(sigma0, c, ts, depth)[:, 0]
    # The flow does not expand errors here (|sigma| shrinks, or grows by < 10x before
    # the blow-up), so the conftest rule bounds the trajectory error.
    e = trajectory_tolerance(sol.stats.num_steps, jnp.abs(want).max())
    np.testing.assert_allclose(sol.end_to_end[:, 0, 0], want, rtol=0, atol=e)
    assert jnp.all(jnp.sign(want) == jnp.sign(sigma0))  # Lemma 2: the sign is kept
    moved = abs(float(want[-1]) - sigma0)
    assert moved > 0.2 * abs(sigma0)  # the comparison is not of a near-constant


def test_theory_inputs_are_checked():
    with pytest.raises(ValueError, match="`delta` must be > 0"):
        th.theorem2_time(1.0, 0.1, 1.0, -0.5, 3)
    with pytest.raises(ValueError, match="`epsilon` must be > 0"):
        th.theorem2_time(1.0, 0.0, 1.0, 0.5, 3)
    with pytest.raises(ValueError, match="`W` must be nonzero"):
        th.proposition3_point(jnp.zeros((2, 3)), (3, 4, 4, 2))
