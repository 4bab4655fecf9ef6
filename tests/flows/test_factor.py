"""Eq. (2): the factor vector field and the factor flow, with what every flow result
must carry (saves, stop, failure, statistics) and how it composes with jit/vmap."""

import warnings

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
from conftest import (
    ATOL,
    gradient_counter,
    REFERENCE_ATOL,
    REFERENCE_RTOL,
    RTOL,
    sensing,
    trajectory_tolerance,
    whitened,
)

import lnn_flow as lf

DIMS = (4, 5, 3, 6)
TS = jnp.linspace(0.0, 5.0, 11)


@pytest.fixture(scope="module")
def problem():
    loss, truth = sensing((DIMS[-1], DIMS[0]))
    return loss, truth


def test_field_is_minus_the_explicit_gradient(problem):
    """dW_j/dt = -W_{n:j+1}^T grad l(W_{n:1}) W_{j-1:1}^T (proof of Lemma 1)."""
    loss, _ = problem
    ws = lf.init.gaussian(jax.random.PRNGKey(1), DIMS, 0.7)
    G = jax.grad(loss)(lf.end_to_end(ws))
    n = len(ws)
    for j, got in enumerate(lf.factor_vector_field(loss, ws)):
        above = lf.end_to_end(ws[j + 1:]) if j + 1 < n else jnp.eye(G.shape[0])
        below = lf.end_to_end(ws[:j]) if j > 0 else jnp.eye(G.shape[1])
        np.testing.assert_allclose(got, -above.T @ G @ below.T, rtol=1e-12, atol=1e-14)


@pytest.fixture(scope="module")
def unbalanced_solution(problem):
    loss, _ = problem
    ws0 = lf.init.gaussian(jax.random.PRNGKey(4), DIMS, 0.6)
    return ws0, lf.factor_flow(loss, ws0, TS[-1], TS, rtol=RTOL, atol=ATOL)


def test_unbalancedness_matrices_are_conserved(unbalanced_solution):
    """Lemma 1: each W_{j+1}^T W_{j+1} - W_j W_j^T is constant along the flow."""
    ws0, sol = unbalanced_solution
    assert sol.success and sol.reached.all()
    start = lf.unbalancedness_matrices(ws0)
    assert min(float(jnp.linalg.norm(g)) for g in start) > 0.1  # really unbalanced
    scale = max(float(jnp.abs(f).max()) for f in sol.factors) ** 2
    tol = 2 * trajectory_tolerance(sol.stats.num_steps, scale)
    for k in range(TS.shape[0]):
        now = lf.unbalancedness_matrices(tuple(f[k] for f in sol.factors))
        for a, b in zip(start, now):
            assert jnp.abs(a - b).max() <= tol
    # Proposition 2: the magnitude is conserved too, and the loss fell.
    assert abs(lf.unbalancedness(sol.factors_final) - lf.unbalancedness(ws0)) <= tol
    assert sol.loss[-1] < 0.1 * sol.loss[0]


def test_loss_is_non_increasing_on_unbalanced_flow(unbalanced_solution):
    _, sol = unbalanced_solution
    slack = float(sol.stats.num_steps) * (RTOL * sol.loss[0] + ATOL)
    assert jnp.all(jnp.diff(sol.loss) <= slack)


def test_vmap_equals_separate_solves(problem):
    loss, _ = problem
    keys = jax.random.split(jax.random.PRNGKey(9), 8)
    batch = jax.vmap(lambda k: lf.init.balanced(k, DIMS, 0.1))(keys)
    solve = lambda ws: lf.factor_flow(loss, ws, TS[-1], TS)
    batched = jax.vmap(solve)(batch)
    assert batched.end_to_end.shape == (8, TS.shape[0], DIMS[-1], DIMS[0])
    for i in range(8):
        alone = solve(tuple(w[i] for w in batch))
        # Same program per member; XLA's batched kernels may round differently.
        np.testing.assert_allclose(batched.end_to_end[i], alone.end_to_end, rtol=0,
                                   atol=1e-12)
        np.testing.assert_allclose(batched.stats.num_steps[i], alone.stats.num_steps)
    assert all(m == "" for m in batched.message)


def test_end_to_end_flow_under_vmap(problem):
    loss, _ = problem
    W0 = jax.random.normal(jax.random.PRNGKey(2), (8, DIMS[-1], DIMS[0])) * 0.1
    solve = lambda W: lf.end_to_end_flow(loss, W, 3, TS[-1], TS)
    batched = jax.vmap(solve)(W0)
    for i in (0, 7):
        np.testing.assert_allclose(batched.end_to_end[i], solve(W0[i]).end_to_end,
                                   rtol=0, atol=1e-12)


def test_changing_values_does_not_retrace(problem):
    """Times, tolerances, thresholds and data are traced: one trace serves all values."""
    loss, _ = problem
    traces = []

    def counting_loss(W):
        traces.append(1)  # runs only while JAX traces
        return loss(W)

    ws0 = lf.init.balanced(jax.random.PRNGKey(0), DIMS, 0.1)
    lf.factor_flow(counting_loss, ws0, 1.0, TS / 5)
    first = len(traces)
    ws1 = lf.init.balanced(jax.random.PRNGKey(1), DIMS, 0.2)
    lf.factor_flow(counting_loss, ws1, 2.0, TS / 2.5, rtol=1e-6, atol=1e-9)
    assert len(traces) == first


def test_loss_threshold_stops_and_marks_later_saves(problem):
    loss, _ = problem
    ws0 = lf.init.balanced(jax.random.PRNGKey(5), DIMS, 0.5)
    ts = jnp.linspace(0.0, 50.0, 51)
    full = lf.factor_flow(loss, ws0, ts[-1], ts)
    threshold = 0.5 * float(full.loss[0] + full.loss[-1])
    sol = lf.factor_flow(loss, ws0, ts[-1], ts, loss_threshold=threshold)
    assert sol.success and bool(sol.stopped)
    assert "loss_threshold" in sol.message
    # The stop time is a root of l(t) - threshold, found to the solver tolerance.
    np.testing.assert_allclose(sol.loss_final, threshold, rtol=1e-6)
    assert sol.reached[0] and not sol.reached[-1]
    assert jnp.all(ts[sol.reached] <= sol.t_final)
    assert jnp.all(jnp.isnan(sol.loss[~sol.reached]))
    np.testing.assert_allclose(
        sol.loss[sol.reached], full.loss[sol.reached], rtol=1e-6
    )
    early = lf.factor_flow(loss, ws0, ts[-1], ts, loss_threshold=10 * full.loss[0])
    assert bool(early.stopped) and float(early.t_final) == 0.0


def test_failed_solve_keeps_what_it_computed(problem):
    loss, _ = problem
    ws0 = lf.init.balanced(jax.random.PRNGKey(5), DIMS, 0.5)
    ts = jnp.linspace(0.0, 50.0, 51)
    sol = lf.factor_flow(loss, ws0, ts[-1], ts, max_steps=10)
    assert not sol.success
    assert "maximum number of solver steps" in sol.message
    assert 0.0 < sol.t_final < ts[-1]
    assert sol.reached[0] and not sol.reached.all()
    assert jnp.all(jnp.isfinite(sol.loss[sol.reached]))
    assert jnp.isfinite(sol.loss_final) and sol.loss_final < sol.loss[0]


def test_vector_field_evaluation_count_is_exact(problem):
    loss, _ = problem
    calls = []
    tap = gradient_counter(calls)  # counts gradient evaluations
    ws0 = lf.init.balanced(jax.random.PRNGKey(5), DIMS, 0.5)
    for solver in (diffrax.Tsit5(), diffrax.Dopri8(), diffrax.Heun()):
        calls.clear()
        sol = lf.factor_flow(lambda W: loss(tap(W)), ws0, 2.0, solver=solver,
                             rtol=1e-6, atol=1e-8)
        jax.block_until_ready(sol.loss)
        assert sol.stats.num_vector_field_evals == len(calls)


def test_euler_with_constant_step(problem):
    loss, _ = problem
    ws0 = lf.init.balanced(jax.random.PRNGKey(5), DIMS, 0.5)
    sol = lf.factor_flow(loss, ws0, 1.0, solver=diffrax.Euler(), dt0=0.1)
    assert int(sol.stats.num_steps) == 10
    ws = ws0
    for _ in range(10):
        ws = tuple(w + 0.1 * v for w, v in zip(ws, lf.factor_vector_field(loss, ws)))
    np.testing.assert_allclose(sol.end_to_end_final, lf.end_to_end(ws), atol=1e-13)
    with pytest.raises(ValueError, match="`dt0` is required"):
        lf.factor_flow(loss, ws0, 1.0, solver=diffrax.Euler())


def test_dense_output(problem):
    loss, _ = problem
    ws0 = lf.init.balanced(jax.random.PRNGKey(5), DIMS, 0.5)
    sol = lf.factor_flow(loss, ws0, TS[-1], TS, dense=True)
    np.testing.assert_allclose(sol.evaluate(TS[3]), sol.end_to_end[3], atol=1e-12)
    factors = sol.evaluate_factors(TS[4])
    np.testing.assert_allclose(lf.end_to_end(factors), sol.end_to_end[4], atol=1e-12)
    with pytest.raises(ValueError, match="dense=True"):
        lf.factor_flow(loss, ws0, 1.0).evaluate(0.5)


def test_plain_callable_loss():
    target = jnp.array([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]])
    ws0 = lf.init.balanced(jax.random.PRNGKey(0), (3, 3, 2), 0.1)
    sol = lf.factor_flow(lambda W: 0.5 * jnp.sum((W - target) ** 2), ws0, 30.0)
    np.testing.assert_allclose(sol.end_to_end_final, target, atol=1e-6)


def test_factor_flow_rejects_bad_input(problem):
    loss, _ = problem
    ws0 = lf.init.balanced(jax.random.PRNGKey(0), DIMS, 0.1)
    with pytest.raises(ValueError, match="dims do not chain"):
        lf.factor_flow(loss, (ws0[0], ws0[2], ws0[1]), 1.0)
    with pytest.raises(ValueError, match="at least one factor"):
        lf.factor_flow(loss, (), 1.0)
    with pytest.raises(TypeError, match="tuple of factor matrices"):
        lf.factor_flow(loss, ws0[0], 1.0)
    with pytest.raises(ValueError, match="`ws0` gives an end-to-end matrix of shape"):
        lf.factor_flow(loss, ws0[:2], 1.0)
    with pytest.raises(ValueError, match=r"`ws0\[1\]` must be finite"):
        lf.factor_flow(loss, (ws0[0], ws0[1] * jnp.inf, ws0[2]), 1.0)
    with pytest.raises(ValueError, match="`t1` must be greater than t0"):
        lf.factor_flow(loss, ws0, -1.0)
    with pytest.raises(ValueError, match="`ts` must lie within"):
        lf.factor_flow(loss, ws0, 1.0, jnp.array([0.0, 2.0]))
    with pytest.raises(ValueError, match="`ts` must be non-decreasing"):
        lf.factor_flow(loss, ws0, 1.0, jnp.array([0.5, 0.2]))
    with pytest.raises(ValueError, match="`atol` must be >= 0"):
        lf.factor_flow(loss, ws0, 1.0, atol=-1.0)
    with pytest.raises(ValueError, match="`max_steps` must be >= 1"):
        lf.factor_flow(loss, ws0, 1.0, max_steps=0)
    with pytest.raises(ValueError, match="`loss_threshold` must be finite"):
        lf.factor_flow(loss, ws0, 1.0, loss_threshold=jnp.nan)


def test_fixed_step_divergence_marks_saves_unreached():
    """Euler with too large a step diverges; it keeps stepping through NaN, but those
    saves are reported as unreached and the solve as failed."""
    loss = lf.losses.WhitenedSquare(jnp.diag(jnp.array([2.0, 1.5])))
    ws0 = (jnp.eye(2), jnp.eye(2))
    ts = jnp.linspace(0.0, 30.0, 11)
    sol = lf.factor_flow(loss, ws0, ts[-1], ts, solver=diffrax.Euler(), dt0=1.5)
    assert not sol.success and not sol.finite
    assert "non-finite" in sol.message
    assert sol.reached[0] and not sol.reached[-1]
    assert jnp.all(jnp.isfinite(sol.loss[sol.reached]))


def test_steady_state_stops_at_rest_long_before_t1():
    # Depth 2 on the whitened loss converges exponentially; far past convergence an
    # explicit solver's steps are capped by stability, so most of a long solve is
    # spent on a flow at rest.
    loss, _ = whitened((4, 4))
    ws0 = lf.init.balanced(jax.random.PRNGKey(7), (4, 4, 4), 0.3)
    t1 = 1000.0
    full = lf.factor_flow(loss, ws0, t1, rtol=RTOL, atol=ATOL, max_steps=100_000)
    rest = lf.factor_flow(loss, ws0, t1, rtol=RTOL, atol=ATOL, max_steps=100_000,
                          steady_state=True)
    assert full.success and rest.success and bool(rest.at_rest)
    assert not bool(full.at_rest) and not bool(rest.stopped)
    assert rest.message == "Stopped: the flow came to rest (`steady_state`)."
    assert float(rest.t_final) < 0.1 * t1
    assert int(rest.stats.num_steps) < 0.5 * int(full.stats.num_steps)
    # At rest |dy/dt| < atol + rtol |y|: what is left to move is that over the rate of
    # convergence (O(1) here), far below the solves' own error bound.
    scale = float(jnp.abs(full.end_to_end_final).max())
    tol = 2 * trajectory_tolerance(int(full.stats.num_steps), scale)
    error = float(jnp.abs(full.end_to_end_final - rest.end_to_end_final).max())
    assert error <= tol, (error, tol)


# --- Solvers, start times, dtypes and options beyond the defaults ----------------------

# The flows below start from the balanced init of norm 0.5 used above (no saddle to
# escape, so conftest's rule bounds their errors) and share compiled programs with the
# tests above: the same problem, `TS`'s shape, Tsit5 with no stop.
START = dict(key=5, scale=0.5)


@pytest.fixture(scope="module")
def start():
    return lf.init.balanced(jax.random.PRNGKey(START["key"]), DIMS, START["scale"])


def tight(loss, ws0, t1, ts):
    """Tsit5 at `REFERENCE_RTOL`: a reference 1000x more accurate than the solves it
    checks (the same compiled program as every default solve with save times `ts`)."""
    ref = lf.factor_flow(loss, ws0, t1, ts, rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL,
                         max_steps=16_384)
    assert ref.success, ref.message
    return ref


def test_kvaerno5_agrees_with_a_tight_reference(problem, start):
    """An implicit solver (diffrax.Kvaerno5: the factor flow's Jacobian has no
    eigh/SVD, so it is finite everywhere) on eq. (2), adaptive at the default
    tolerances."""
    loss, _ = problem
    sol = lf.factor_flow(loss, start, TS[-1], TS, solver=diffrax.Kvaerno5())
    assert sol.success and sol.reached.all(), sol.message
    ref = tight(loss, start, TS[-1], TS)
    scale = float(jnp.abs(ref.end_to_end).max())
    # Local errors <= 1e-8 |y| + 1e-10 per step (default tolerances), summed.
    tol = trajectory_tolerance(sol.stats.num_steps, scale, 1e-8, 1e-10)
    error = float(jnp.abs(sol.end_to_end - ref.end_to_end).max())
    assert error <= tol, (error, tol)
    assert sol.loss[-1] < 0.5 * sol.loss[0]  # it moved


def test_implicit_euler_with_constant_steps_is_first_order(problem, start):
    """diffrax.ImplicitEuler with a `dt0` and constant steps (its Newton iterations
    converged far below the step's own error): the error against a tight reference is
    C dt + O(dt^2), so halving dt halves it (to 5%: the O(dt^2) term relative to C dt
    is ~ dt * C'/C, a few 1e-2 at dt = 0.02)."""
    loss, _ = problem
    solver = diffrax.ImplicitEuler(root_finder=optx.Newton(rtol=1e-12, atol=1e-14))
    ref = tight(loss, start, TS[-1], TS)
    errors = []
    for dt in (0.02, 0.01):
        sol = lf.factor_flow(loss, start, TS[-1], TS, solver=solver, dt0=dt,
                             stepsize_controller=diffrax.ConstantStepSize())
        assert sol.success and int(sol.stats.num_steps) == round(float(TS[-1]) / dt)
        errors.append(float(jnp.abs(sol.end_to_end - ref.end_to_end).max()))
    assert errors[0] / errors[1] == pytest.approx(2.0, rel=0.05), errors
    assert errors[1] < 1e-2  # C dt: small, the flow is followed


@pytest.fixture(scope="module")
def two_stage(problem, start):
    """The README's long-horizon recipe ("Long horizons"): Tsit5 until the loss falls
    to 1e-8 of its start, then Kvaerno5 from `t0 = stage.t_final` on the factors left
    there, to twice that time, saving at `ts` in `[t0, t1]`."""
    loss, _ = problem
    stage = lf.factor_flow(loss, start, 1e9,
                           loss_threshold=1e-8 * loss(lf.end_to_end(start)))
    t0 = float(stage.t_final)
    t1 = 2 * t0
    ts = jnp.linspace(t0, t1, TS.shape[0])
    tail = lf.factor_flow(loss, stage.factors_final, t1, ts, t0=t0,
                          solver=diffrax.Kvaerno5())
    return stage, tail, ts


def test_second_stage_starts_at_t0_and_honours_ts(two_stage):
    stage, tail, ts = two_stage
    assert stage.success and bool(stage.stopped) and float(stage.t_final) > 1.0
    assert tail.success and tail.reached.all(), tail.message
    np.testing.assert_array_equal(tail.ts, ts)
    assert float(tail.t_final) == float(ts[-1])
    # The save at t0 is the state the second stage was started from, exactly.
    np.testing.assert_array_equal(tail.end_to_end[0], stage.end_to_end_final)
    for f, w in zip(tail.factors, stage.factors_final):
        np.testing.assert_array_equal(f[0], w)
    # Save times outside [t0, t1] are refused for t0 != 0 too.
    with pytest.raises(ValueError, match="`ts` must lie within"):
        lf.factor_flow(lambda W: jnp.sum(W**2), stage.factors_final, ts[-1],
                       ts.at[0].set(0.0), t0=float(ts[0]))


def test_second_stage_continues_the_first(problem, start, two_stage):
    """Both stages together equal one tight solve over [0, t1] at the second stage's
    save times: the errors add up, each bounded by conftest's rule at the default
    tolerances (1e-8, 1e-10); the flow from init 0.5 escapes no saddle, and past
    convergence errors decay or stay."""
    loss, _ = problem
    stage, tail, ts = two_stage
    one = tight(loss, start, ts[-1], ts)
    scale = float(jnp.abs(one.end_to_end).max())
    steps = int(stage.stats.num_steps) + int(tail.stats.num_steps)
    tol = trajectory_tolerance(steps, scale, 1e-8, 1e-10)
    error = float(jnp.abs(tail.end_to_end - one.end_to_end).max())
    assert error <= tol, (error, tol)
    # The loss kept falling after the stop (a real continuation, not a constant).
    assert float(tail.loss[-1]) < float(tail.loss[0])


@pytest.fixture(scope="module")
def float32_problem():
    """The problem of this module drawn in float32, and the same data in float64."""
    loss32, _ = sensing((DIMS[-1], DIMS[0]), dtype=jnp.float32)
    loss64 = lf.losses.MatrixSensing(loss32.A.astype(jnp.float64),
                                     loss32.b.astype(jnp.float64))
    ws32 = lf.init.balanced(jax.random.PRNGKey(5), DIMS, 0.5, dtype=jnp.float32)
    return loss32, loss64, ws32


FLOAT32_RTOL, FLOAT32_ATOL = 1e-5, 1e-7  # ~100x float32's eps = 1.2e-7


def test_float32_in_float32_out(float32_problem):
    loss32, loss64, ws32 = float32_problem
    sol = lf.factor_flow(loss32, ws32, TS[-1], TS, rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL)
    assert sol.success, sol.message
    arrays = {"ts": sol.ts, "end_to_end": sol.end_to_end, "loss": sol.loss,
              "t_final": sol.t_final, "end_to_end_final": sol.end_to_end_final,
              "loss_final": sol.loss_final}
    arrays.update({f"factors[{j}]": f for j, f in enumerate(sol.factors)})
    arrays.update({f"factors_final[{j}]": f for j, f in enumerate(sol.factors_final)})
    for name, x in arrays.items():
        assert x.dtype == jnp.float32, name
    assert_float32_near_float64(sol, loss64, ws32)


def assert_float32_near_float64(sol, loss64, ws32):
    """`sol` (float32) within its own tolerance of the float64 factor flow of the same
    data and init at tight tolerances: the float32 solve's local errors (its rtol/atol)
    plus its rounding, eps32 |y| per step, summed over its steps."""
    ref = tight(loss64, tuple(w.astype(jnp.float64) for w in ws32), TS[-1], TS)
    scale = float(jnp.abs(ref.end_to_end).max())
    eps32 = float(jnp.finfo(jnp.float32).eps)
    tol = trajectory_tolerance(sol.stats.num_steps, scale, FLOAT32_RTOL + eps32,
                               FLOAT32_ATOL)
    error = float(jnp.abs(sol.end_to_end.astype(jnp.float64) - ref.end_to_end).max())
    assert error <= tol, (error, tol)


def test_float32_end_to_end_flow(float32_problem):
    loss32, loss64, ws32 = float32_problem
    W32 = lf.end_to_end(ws32)
    sol = lf.end_to_end_flow(loss32, W32, len(DIMS) - 1, TS[-1], TS,
                             rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL)
    assert sol.success, sol.message
    for x in (sol.end_to_end, sol.loss, sol.end_to_end_final, sol.loss_final,
              sol.t_final):
        assert x.dtype == jnp.float32
    # As above; the field's SVD in float32 adds ~eps32 relative per evaluation,
    # inside the eps32 per step allowed.
    assert_float32_near_float64(sol, loss64, ws32)


def test_progress_meter_shows_progress_and_changes_nothing(problem, start, capfd):
    loss, _ = problem
    plain = lf.factor_flow(loss, start, TS[-1], TS)
    capfd.readouterr()
    shown = lf.factor_flow(loss, start, TS[-1], TS,
                           progress_meter=diffrax.TqdmProgressMeter())
    jax.block_until_ready(shown.loss)
    out, err = capfd.readouterr()
    assert "100.00%" in out + err  # tqdm's bar, run to the end
    # The meter only reads the time: the same steps, bit for bit.
    for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(shown)):
        np.testing.assert_array_equal(a, b)


def test_dense_memory_warning_comes_before_the_allocation(problem, start):
    loss, _ = problem
    with warnings.catch_warnings():
        # As an error: the warning must come before diffrax reserves ~2 GiB here.
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match=r"dense=True reserves about .* GiB for "
                           r"max_steps=1000000"):
            lf.factor_flow(loss, start, TS[-1], TS, dense=True, max_steps=1_000_000)
        # The default step budget on this small state reserves a few MiB: no warning.
        sol = lf.factor_flow(loss, start, TS[-1], TS, dense=True)
    assert sol.success
