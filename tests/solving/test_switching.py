"""`solver="auto"` (`lnn_flow._solving._switching`): the stiffness estimates, the same trajectory
as a tight explicit reference where the flow is not stiff, a switch to implicit steps
where it is (landing where the explicit reference lands), matrix-free and dense implicit
steps that agree, and the record of which method ran when."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REFERENCE_ATOL, REFERENCE_RTOL, sensing, trajectory_tolerance

import lnn_flow as lf
from lnn_flow._solving._switching import (
    TSIT5_STABILITY,
    Switching,
    auto_solver,
    explicit_stiffness,
    implicit_solver,
)


def test_tsit5_stability_boundary_is_the_tableaus():
    """|R(z)| <= 1 on [-3.5068, 0] for Tsit5's stability function R(z) = 1 + z b^T
    (I - z A)^{-1} 1, to the 1e-4 grid used here."""
    tableau = diffrax.Tsit5.tableau
    A = np.zeros((7, 7))
    for i, row in enumerate(tableau.a_lower):
        A[i + 1, : len(row)] = row
    b = np.asarray(tableau.b_sol)
    z = np.arange(-4.0, 0.0, 1e-4)
    R = np.array([1 + x * b @ np.linalg.solve(np.eye(7) - x * A, np.ones(7)) for x in z])
    boundary = z[np.argmax(np.abs(R) <= 1)]
    assert abs(boundary + TSIT5_STABILITY) < 2e-4


@pytest.mark.parametrize("h_lambda", [0.1, 1.0, 3.0])
def test_stage_estimate_is_h_lambda_on_a_linear_flow(h_lambda):
    """On `y' = -lambda y` every stage difference is an eigenvector: the estimate is
    `h lambda` to rounding."""
    term = diffrax.ODETerm(lambda t, y, args: -2.0 * y)
    y0, h = jnp.array([1.0, -0.5]), h_lambda / 2.0
    solver = diffrax.Tsit5()
    state = solver.init(term, 0.0, h, y0, None)
    *_, info, _, _ = solver.step(term, 0.0, h, y0, None, state, False)
    assert float(explicit_stiffness(info["k"])) == pytest.approx(h_lambda, rel=1e-9)


@pytest.fixture(scope="module")
def stiff_completion():
    """Completion of a 6x6 rank-2 truth from 24 entries, depth 3, balanced init of norm
    0.3 (no saddle to escape, so conftest's rule holds), to a loss reduction 1e-9: past
    the fit, steps of an explicit solver are pinned at the stability limit."""
    loss, truth = lf.problems.random_matrix_completion(jax.random.PRNGKey(3), (6, 6), 2, 24)
    ws0 = lf.init.balanced(jax.random.PRNGKey(4), (6, 6, 6, 6), 0.3)
    threshold = 1e-9 * float(loss(lf.end_to_end(ws0)))
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-1, 1e3, 9)])
    return loss, ws0, threshold, ts


def _solve(problem, solver, rtol=1e-8, atol=1e-10, **kwargs):
    loss, ws0, threshold, ts = problem
    return lf.factor_flow(loss, ws0, 1e6, ts, solver=solver, rtol=rtol, atol=atol,
                          loss_threshold=threshold, max_steps=2**18, **kwargs)


@pytest.fixture(scope="module")
def explicit_reference(stiff_completion):
    return _solve(stiff_completion, diffrax.Tsit5(), REFERENCE_RTOL * 10,
                  REFERENCE_ATOL * 10)


@pytest.fixture(scope="module")
def auto(stiff_completion):
    return _solve(stiff_completion, "auto")


def test_auto_switches_on_a_stiff_flow_and_lands_where_the_explicit_reference_does(
    stiff_completion, auto, explicit_reference
):
    ref = explicit_reference
    assert bool(ref.success & ref.stopped) and bool(auto.success & auto.stopped)
    record = auto.switching
    # A gradient flow's stiff tail: Chebyshev steps, no implicit ones.
    assert int(record.num_switches) >= 1 and int(record.num_chebyshev_steps) > 0
    assert int(record.num_implicit_steps) == 0
    intervals = record.intervals(auto.t_final)
    assert intervals[0][0] == "explicit" and intervals[1][0] == "chebyshev"
    assert intervals[0][1] == 0.0 and intervals[-1][2] == float(auto.t_final)
    assert (int(record.num_explicit_steps) + int(record.num_chebyshev_steps)
            + int(record.num_implicit_steps) == int(auto.stats.num_accepted_steps))
    # Fewer field evaluations than Tsit5 at the same tolerances (same compiled solve
    # as `ref`): the record counts accepted steps'; rejected ones are charged at the
    # mean cost of an accepted one.
    tsit5 = _solve(stiff_completion, diffrax.Tsit5())
    evals = int(record.num_field_evals) * int(auto.stats.num_steps) / int(
        auto.stats.num_accepted_steps)
    assert evals < int(tsit5.stats.num_vector_field_evals)
    # Same trajectory and end point: to twice conftest's rule at the auto solve's
    # tolerances (the reference's own error is 100x below it).
    scale = float(jnp.abs(ref.end_to_end_final).max())
    tol = 2 * trajectory_tolerance(auto.stats.num_steps, scale, 1e-8, 1e-10)
    both = np.asarray(ref.reached & auto.reached)
    assert both.sum() >= 5
    gap = np.abs(np.asarray(auto.end_to_end - ref.end_to_end))[both].max()
    assert gap <= tol, (gap, tol)
    # The stop is the loss crossing: where it is found moves with the trajectory's
    # error; the final matrices agree to the same rule.
    final = float(jnp.abs(auto.end_to_end_final - ref.end_to_end_final).max())
    assert final <= tol, (final, tol)


def test_proposition5_reaches_its_loss_with_the_determinants_sign():
    """Proposition 5 (2x2, W0 = 0.5 I, depth 3) at rtol 1e-10: Tsit5 cannot get the loss
    below ~3e-5 in 2^20 steps (benchmarks/stiff_tails.py); `solver="auto"` reaches 1e-8
    in under 20k steps with det W > 0 (Lemma 2: its sign is constant) and the norm
    above the proposition's lower bound. Also the regression test of the stop at
    t ~ 1.6e9: a loss-threshold event found there reads as `success` (the root find
    that locates it is a bisection inside the step, `lnn_flow._solving._events._Crossing`,
    which cannot run out of steps the way a Newton root find did)."""
    ws0 = lf.init.from_end_to_end(0.5 * jnp.eye(2), (2, 2, 2, 2), key=jax.random.PRNGKey(0))
    sol = lf.factor_flow(lf.theory.proposition5_loss(), ws0, 1e12, solver="auto",
                         rtol=1e-10, atol=1e-12, loss_threshold=1e-8, max_steps=20_000)
    assert bool(sol.success & sol.stopped), sol.message
    assert float(sol.t_final) > 1e8 and float(sol.loss_final) <= 1e-8
    # All three methods: Tsit5, then Chebyshev steps accuracy-bound at a small h rho
    # (rtol 1e-10, second order) bouncing back to Tsit5 until implicit steps take over.
    methods = {m for m, _, _ in sol.switching.intervals(sol.t_final)}
    assert methods == {"explicit", "chebyshev", "implicit"}
    assert sol.switching.intervals(sol.t_final)[-1][0] == "implicit"
    assert int(sol.switching.num_implicit_steps) > 0
    W = sol.end_to_end_final
    assert float(jnp.linalg.det(W)) > 0
    bound = float(lf.theory.proposition5_norm_bound(sol.loss_final[None])[0])
    assert float(jnp.linalg.norm(W)) >= bound > 1e3


def test_auto_on_a_non_stiff_flow_stays_explicit_and_is_tsit5():
    """A short flow from a balanced init of norm 0.3 is never stability-bound: no
    switch, and the steps are Tsit5's own under the controller "auto" steps with
    (diffrax's I controller; `_controller`), the same trajectory to rounding."""
    loss, _ = sensing((4, 4), rank=2, seed=5)
    ws0 = lf.init.balanced(jax.random.PRNGKey(6), (4, 4, 4), 0.3)
    ts = jnp.linspace(0.0, 3.0, 7)
    auto = lf.factor_flow(loss, ws0, 3.0, ts, solver="auto", rtol=1e-10, atol=1e-12)
    tsit5 = lf.factor_flow(loss, ws0, 3.0, ts, rtol=1e-10, atol=1e-12,
                           stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12))
    assert int(auto.switching.num_switches) == 0
    assert auto.switching.intervals(auto.t_final) == [("explicit", 0.0, 3.0)]
    assert int(auto.stats.num_steps) == int(tsit5.stats.num_steps)
    np.testing.assert_allclose(auto.end_to_end, tsit5.end_to_end, rtol=0, atol=1e-14)


def test_matrix_free_and_dense_implicit_steps_agree(stiff_completion):
    """The same solve with the implicit stages' linear systems solved by a dense LU
    and by GMRES (matrix-free): the same end point, to twice conftest's rule."""
    loss, ws0, threshold, ts = stiff_completion
    size = sum(w.size for w in ws0)
    # Tsit5 <-> Kvaerno5 only (no Chebyshev steps), so the tail runs implicit steps.
    dense = Switching(implicit_solver(size, 1e-8, 1e-10, dense_max=size), symmetric=False)
    gmres = Switching(implicit_solver(size, 1e-8, 1e-10, dense_max=0), symmetric=False)
    a = _solve(stiff_completion, dense)
    b = _solve(stiff_completion, gmres)
    assert bool(a.success & a.stopped) and bool(b.success & b.stopped)
    assert int(a.switching.num_implicit_steps) > 0 < int(b.switching.num_implicit_steps)
    steps = max(int(a.stats.num_steps), int(b.stats.num_steps))
    tol = 2 * trajectory_tolerance(steps, float(jnp.abs(a.end_to_end_final).max()),
                                   1e-8, 1e-10)
    assert float(jnp.abs(a.end_to_end_final - b.end_to_end_final).max()) <= tol


@pytest.mark.slow
def test_dense_output_follows_each_method(stiff_completion):
    """`dense=True` interpolates with Tsit5's interpolant over explicit steps, the
    Hermite cubic over Chebyshev steps and Kvaerno5's over implicit ones: it
    reproduces the saves of the same solve, which is one switching solve (no lean
    start, `lnn_flow._solving._auto`): the same as without dense output."""
    dense = _solve(stiff_completion, "auto", dense=True)
    ts = np.asarray(dense.ts)[np.asarray(dense.reached)]
    values = jnp.stack([dense.evaluate(t) for t in ts])
    saved = np.asarray(dense.end_to_end)[np.asarray(dense.reached)]
    np.testing.assert_allclose(values, saved, rtol=0, atol=1e-12)
    size = sum(w.size for w in stiff_completion[1])
    single = eqx.tree_at(lambda s: s.lean_start, auto_solver(size, 1e-8, 1e-10), False)
    np.testing.assert_array_equal(dense.end_to_end_final,
                                  _solve(stiff_completion, single).end_to_end_final)


def test_auto_in_solve_batch_matches_each_member(stiff_completion):
    loss, ws0, threshold, ts = stiff_completion
    inits = jax.tree_util.tree_map(lambda w: jnp.stack([w, 1.1 * w]), ws0)
    batch = lf.solve_batch("factor", loss, inits, 1e6, ts, solver="auto", rtol=1e-8,
                           atol=1e-10, loss_threshold=threshold, max_steps=2**18)
    assert batch.switching.num_switches.shape == (2,)
    alone = _solve((loss, ws0, threshold, ts), "auto")
    np.testing.assert_allclose(batch.end_to_end_final[0], alone.end_to_end_final,
                               rtol=0, atol=1e-12)


def test_auto_refuses_a_controller_and_the_pool():
    loss, _ = sensing((3, 3), rank=1)
    ws0 = lf.init.balanced(jax.random.PRNGKey(0), (3, 3), 0.3)
    with pytest.raises(ValueError, match="own PID controller"):
        lf.factor_flow(loss, ws0, 1.0, solver="auto",
                       stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8))
    with pytest.raises(ValueError, match=r"`solver` must be a diffrax solver or 'auto'"):
        lf.factor_flow(loss, ws0, 1.0, solver="Auto")
    inits = jax.tree_util.tree_map(lambda w: w[None], ws0)
    with pytest.raises(ValueError, match="not solve_pool"):
        lf.solve_pool("factor", loss, inits, 1.0, solver="auto")


@pytest.mark.slow
def test_auto_on_the_end_to_end_flow_lands_where_the_factor_flow_does(stiff_completion,
                                                                      auto):
    """Theorem 1 with implicit steps: the end-to-end flow's Jacobian (its eigh has a
    Daleckii-Krein derivative rule, finite at repeated singular values) drives the
    Newton solves; it switches, and stops at the factor flow's end point to twice
    conftest's rule at the two solves' steps."""
    loss, ws0, threshold, ts = stiff_completion
    e2e = lf.end_to_end_flow(loss, lf.end_to_end(ws0), 3, 1e6, ts, solver="auto",
                             rtol=1e-8, atol=1e-10, loss_threshold=threshold,
                             max_steps=2**18)
    assert bool(e2e.success & e2e.stopped) and int(e2e.switching.num_switches) >= 1
    steps = int(e2e.stats.num_steps) + int(auto.stats.num_steps)
    tol = 2 * trajectory_tolerance(steps, float(jnp.abs(auto.end_to_end_final).max()),
                                   1e-8, 1e-10)
    assert float(jnp.abs(e2e.end_to_end_final - auto.end_to_end_final).max()) <= tol


def _whitened(d):
    """`benchmarks/long_horizon.py`'s whitened problem: `1/2 ||W - target||^2`, target
    Gaussian / sqrt(d) with det of W0's sign (Lemma 2: else the loss stalls), depth 3,
    balanced init 1e-3; T is when Tsit5 has reduced the loss 1e-8."""
    key_p, key_i = jax.random.split(jax.random.PRNGKey(d))
    ws0 = lf.init.balanced(key_i, (d,) * 4, 1e-3)
    target = jax.random.normal(jax.random.PRNGKey(100 + d), (d, d)) / jnp.sqrt(d)
    same = jnp.linalg.slogdet(target)[0] == jnp.linalg.slogdet(lf.end_to_end(ws0))[0]
    loss = lf.losses.WhitenedSquare(jnp.where(same, target, target.at[0].multiply(-1.0)))
    threshold = 1e-8 * float(loss(lf.end_to_end(ws0)))
    T = float(lf.factor_flow(loss, ws0, 1e9, loss_threshold=threshold,
                             max_steps=2**20).t_final)
    return loss, ws0, T


def test_bounces_back_off_and_a_long_stiff_tail_still_gets_chebyshev_steps():
    """On a state too large for a dense LU, Chebyshev steps that bounce back to Tsit5
    are retried after a doubling wait. A lifetime budget of 8 bounces, spent in the
    whitened problem's transient, left its tail to Tsit5: 19x the steps to 20 T as to
    T (`python benchmarks/long_horizon.py`); now the tail from T to 20 T costs a
    fraction of the steps to T."""
    loss, ws0, T = _whitened(20)
    to = {m: lf.factor_flow(loss, ws0, m * T, solver="auto", max_steps=2**20)
          for m in (1, 20)}
    assert all(bool(s.success) for s in to.values())
    steps = {m: int(s.stats.num_steps) for m, s in to.items()}
    assert steps[20] <= 1.5 * steps[1], steps
    record = to[20].switching
    assert int(record.num_switches) >= 3  # it bounced, and came back for the tail:
    assert record.intervals(to[20].t_final)[-1][0] == "chebyshev"
    assert int(record.num_implicit_steps) == 0
