"""RKC2 (`lnn_flow._solving._chebyshev`): its stability polynomial recomputed from the stage
recurrence, its order on a linear and a nonlinear problem, its spectral-radius
estimate, and agreement with a tight Tsit5 reference on the factor, end-to-end and
CP tensor flows, alone and in a batch."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REFERENCE_ATOL, REFERENCE_RTOL, sensing, trajectory_tolerance

import lnn_flow as lf
from lnn_flow._solving._chebyshev import (
    RKC2,
    num_stages,
    power_step,
    random_direction,
    stability_interval,
    stability_polynomial,
)


@pytest.mark.parametrize("s", [2, 3, 5, 10, 40, 200])
def test_stability_interval_recomputed_from_the_recurrence(s):
    """`|R_s(z)| <= 1` on `[-beta(s), 0]`, `R_s` evaluated by running the stages on
    `y' = z y`: the interval recomputed on a grid (from 0 to the first `|R| > 1`)
    holds `beta(s) = (1 + w0)/w1`, where `w0 + w1 z` leaves `[-1, 1]` and `T_s`
    starts to grow: for `s >= 10` it ends there (to 0.1%), for fewer stages up to 20%
    past it; `beta(s) ~ 0.653 s^2` for large `s` (RKC's value for damping 2/13), and
    the damping keeps `|R_s| <= 0.96` away from the interval's ends."""
    beta = float(stability_interval(s))
    z = np.linspace(0.0, -1.5 * beta, 30001)
    R = np.asarray(jax.vmap(lambda x: stability_polynomial(x, s))(jnp.asarray(z)))
    out = np.abs(R) > 1 + 1e-9
    assert out.any()
    recomputed = -z[np.argmax(out) - 1]
    assert beta <= recomputed <= (1.001 if s >= 10 else 1.2) * beta, (beta, recomputed)
    if s >= 40:
        assert beta / s**2 == pytest.approx(0.653, abs=2e-3)
    middle = (z < -0.1 * beta) & (z > -0.9 * beta)
    assert np.abs(R[middle]).max() <= 0.96


@pytest.mark.parametrize("h_rho", [0.0, 0.5, 3.0, 40.0, 1e3, 1e5])
def test_stage_count_covers_h_rho(h_rho):
    s = int(num_stages(h_rho, 2, 10_000))
    assert float(stability_interval(s)) >= h_rho
    assert s == 2 or float(stability_interval(s - 2)) < h_rho  # not wastefully many


@pytest.mark.parametrize("s", [2, 5, 20])
def test_second_order_on_the_linear_test_equation(s):
    """`R_s(z) - exp(z) = C z^3 + O(z^4)`: halving z divides the error by ~8."""
    z = np.array([-0.02, -0.01])
    errors = np.abs(np.array([float(stability_polynomial(x, s)) for x in z]) - np.exp(z))
    assert errors[0] / errors[1] == pytest.approx(8.0, rel=0.05)


def _constant_step_error(solver, num_steps, y0, field, t1):
    sol = diffrax.diffeqsolve(diffrax.ODETerm(field), solver, 0.0, t1, t1 / num_steps,
                              y0, stepsize_controller=diffrax.ConstantStepSize(),
                              max_steps=num_steps + 1)
    exact = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Dopri8(), 0.0, t1, None,
                                y0, stepsize_controller=diffrax.PIDController(
                                    rtol=1e-13, atol=1e-15), max_steps=10_000)
    return float(jnp.abs(sol.ys[-1] - exact.ys[-1]).max())


@pytest.mark.parametrize("s", [2, 6])
def test_second_order_on_a_nonlinear_flow(s):
    """A depth-3 factor flow's field (nonlinear, cubic in the state) with constant
    steps and `s` stages: halving the step divides the global error by ~4."""
    loss, _ = sensing((3, 3), rank=1, seed=2)
    ws0 = lf.init.balanced(jax.random.PRNGKey(1), (3, 3, 3, 3), 1.0)
    y0 = jnp.concatenate([w.ravel() for w in ws0])
    unravel = lambda y: tuple(y[9 * i: 9 * i + 9].reshape(3, 3) for i in range(3))
    field = lambda t, y, args: jnp.concatenate(
        [g.ravel() for g in lf.factor_vector_field(loss, unravel(y))])
    solver = RKC2(min_stages=s, max_stages=s)
    coarse, fine = (_constant_step_error(solver, n, y0, field, 1.0) for n in (40, 80))
    assert coarse / fine == pytest.approx(4.0, rel=0.15)


def test_power_iteration_finds_the_spectral_radius():
    """On `f(y) = -A y`, warm-started power steps (field differences) converge to
    `|lambda|_max(A)`."""
    A = jnp.diag(jnp.array([1.0, 10.0, 250.0, 3.0]))
    f = lambda t, y: -A @ y
    y = jnp.array([1.0, -2.0, 0.5, 1.5])
    direction, rho = random_direction(y), jnp.zeros(())
    for _ in range(40):
        direction, rho = power_step(f, 0.0, y, f(0.0, y), direction, rho)
    assert float(rho) == pytest.approx(250.0, rel=1e-6)


@pytest.fixture(scope="module")
def stiff_completion():
    """6x6 completion, depth 3, init norm 0.3, run to t = 2e3: far past the fit, where
    Tsit5's steps are stability-bound."""
    loss, _ = lf.problems.random_matrix_completion(jax.random.PRNGKey(3), (6, 6), 2, 24)
    ws0 = lf.init.balanced(jax.random.PRNGKey(4), (6, 6, 6, 6), 0.3)
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-1, 2e3, 9)]).at[-1].set(2e3)
    return loss, ws0, ts


RTOL, ATOL = 1e-9, 1e-11


def _gap_and_tolerance(sol, ref, rtol=RTOL, atol=ATOL):
    """Max gap over common saves, and twice conftest's rule at `sol`'s steps (the
    reference's own error is 1e4x below it)."""
    both = np.asarray(sol.reached & ref.reached)
    gap = np.abs(np.asarray(sol.end_to_end - ref.end_to_end))[both].max()
    scale = float(jnp.abs(ref.end_to_end).max())
    return gap, 2 * trajectory_tolerance(sol.stats.num_steps, scale, rtol, atol), both


def test_factor_flow_matches_a_tight_reference(stiff_completion):
    loss, ws0, ts = stiff_completion
    ref = lf.factor_flow(loss, ws0, 2e3, ts, rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL,
                         max_steps=2**18)
    sol = lf.factor_flow(loss, ws0, 2e3, ts, solver=RKC2(), rtol=RTOL, atol=ATOL,
                         max_steps=2**18)
    assert bool(sol.success) and bool(ref.success)
    gap, tol, both = _gap_and_tolerance(sol, ref)
    assert both.sum() == len(ts) and gap <= tol, (gap, tol)


def test_dense_output_is_the_hermite_cubic_through_the_saves(stiff_completion):
    loss, ws0, ts = stiff_completion
    sol = lf.factor_flow(loss, ws0, 2e3, ts, solver=RKC2(), rtol=RTOL, atol=ATOL,
                         max_steps=2**18, dense=True)
    values = jnp.stack([sol.evaluate(t) for t in np.asarray(ts)])
    np.testing.assert_allclose(values, sol.end_to_end, rtol=0, atol=1e-12)
    # Between saves: within the trajectory rule of a plain solve to that time.
    t = 137.0
    ref = lf.factor_flow(loss, ws0, t, rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL,
                         max_steps=2**18)
    scale = float(jnp.abs(ref.end_to_end_final).max())
    tol = 2 * trajectory_tolerance(sol.stats.num_steps, scale, RTOL, ATOL)
    assert float(jnp.abs(sol.evaluate(t) - ref.end_to_end_final).max()) <= tol


def test_end_to_end_flow_matches_a_tight_reference():
    """Theorem 1's flow (its Jacobian is not symmetric; near a minimum its spectrum
    is near-real) with RKC2 against Tsit5 at rtol 1e-13, to t = 200 past the fit."""
    loss, _ = sensing((4, 4), rank=2, seed=7)
    W0 = lf.end_to_end(lf.init.balanced(jax.random.PRNGKey(8), (4, 4, 4, 4), 0.5))
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-1, 200.0, 7)]).at[-1].set(200.0)
    ref = lf.end_to_end_flow(loss, W0, 3, 200.0, ts, rtol=REFERENCE_RTOL,
                             atol=REFERENCE_ATOL, max_steps=2**18)
    sol = lf.end_to_end_flow(loss, W0, 3, 200.0, ts, solver=RKC2(), rtol=RTOL,
                             atol=ATOL, max_steps=2**18)
    assert bool(sol.success) and bool(ref.success)
    gap, tol, both = _gap_and_tolerance(sol, ref)
    assert both.all() and gap <= tol, (gap, tol)


def test_cp_tensor_flow_matches_a_tight_reference():
    """Section 5's CP flow (a gradient flow: symmetric Jacobian) on a 4x4x4 completion."""
    loss, _ = lf.problems.random_tensor_completion(jax.random.PRNGKey(5), (4, 4, 4), 1, 40)
    fs0 = lf.tensor.balanced(jax.random.PRNGKey(6), (4, 4, 4), 3, 0.3)
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-1, 500.0, 7)]).at[-1].set(500.0)
    ref = lf.tensor.flow(loss, fs0, 500.0, ts, rtol=REFERENCE_RTOL,
                            atol=REFERENCE_ATOL, max_steps=2**18)
    sol = lf.tensor.flow(loss, fs0, 500.0, ts, solver=RKC2(), rtol=RTOL, atol=ATOL,
                            max_steps=2**18)
    assert bool(sol.success) and bool(ref.success)
    gap, tol, both = _gap_and_tolerance(sol, ref)
    assert both.all() and gap <= tol, (gap, tol)


def test_batch_members_equal_solves_alone(stiff_completion):
    """`solve_batch` runs RKC2 one member after another on CPU (stage counts differ
    per member): each member is the solve alone, bit for bit."""
    loss, ws0, ts = stiff_completion
    inits = jax.tree_util.tree_map(lambda w: jnp.stack([w, 1.2 * w]), ws0)
    batch = lf.solve_batch("factor", loss, inits, 2e3, ts, solver=RKC2(), rtol=RTOL,
                           atol=ATOL, max_steps=2**18)
    for i in range(2):
        alone = lf.factor_flow(loss, tuple(w[i] for w in inits), 2e3, ts, solver=RKC2(),
                               rtol=RTOL, atol=ATOL, max_steps=2**18)
        np.testing.assert_array_equal(batch.end_to_end[i], alone.end_to_end)
