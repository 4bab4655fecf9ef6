"""`solver="auto"` as two solves (`lnn_flow._solving._auto`): Tsit5 up to the handoff, the
switching solver after it; saves stitched, one step budget, batches equal members."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import trajectory_tolerance

import lnn_flow as lf
from lnn_flow._solving._switching import auto_solver

RTOL, ATOL = 1e-8, 1e-10


@pytest.fixture(scope="module")
def problem():
    """`test_switching.py`'s stiff completion (6x6 rank 2 from 24 entries, depth 3, init
    norm 0.3, to a 1e-9 loss reduction: hands off at t ~ 3.9e3, stops at t ~ 2.6e4),
    saved before and after the handoff."""
    loss, _ = lf.problems.random_matrix_completion(jax.random.PRNGKey(3), (6, 6), 2, 24)
    ws0 = lf.init.balanced(jax.random.PRNGKey(4), (6, 6, 6, 6), 0.3)
    threshold = 1e-9 * float(loss(lf.end_to_end(ws0)))
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-1, 1e3, 9),
                          jnp.linspace(4e3, 2.5e4, 6)])
    return loss, ws0, threshold, ts


def _solve(problem, solver="auto", max_steps=2**18, **kwargs):
    loss, ws0, threshold, ts = problem
    return lf.factor_flow(loss, ws0, 1e6, ts, solver=solver, rtol=RTOL, atol=ATOL,
                          loss_threshold=threshold, max_steps=max_steps, **kwargs)


@pytest.fixture(scope="module")
def two_phase(problem):
    return _solve(problem)


def _single_phase(problem):
    size = sum(w.size for w in problem[1])
    return eqx.tree_at(lambda s: s.lean_start, auto_solver(size, RTOL, ATOL), False)


def test_the_start_is_tsit5_and_the_saves_after_the_handoff_continue_it(problem,
                                                                         two_phase):
    """Before the handoff the steps are Tsit5's under the I controller "auto" uses (the
    same saves to rounding); after it the second solve writes the later saves, every
    one of them reached, landing where the single switching solve lands (both at
    rtol 1e-8: twice conftest's rule at their steps)."""
    sol = two_phase
    assert bool(sol.success & sol.stopped), sol.message
    (_, _, handoff), (second, _, _) = sol.switching.intervals(sol.t_final)[:2]
    assert second == "chebyshev" and 0 < handoff < float(sol.t_final)
    tsit5 = _solve(problem, diffrax.Tsit5(),
                   stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL))
    before = np.asarray(sol.ts) <= handoff
    assert before.sum() >= 3 and (~before & np.asarray(sol.reached)).sum() >= 3
    np.testing.assert_allclose(sol.end_to_end[before], tsit5.end_to_end[before],
                               rtol=0, atol=1e-14)
    assert bool(jnp.all(sol.reached[: int(np.sum(np.asarray(sol.ts) <= sol.t_final))]))
    single = _solve(problem, _single_phase(problem))
    assert bool(single.success & single.stopped)
    steps = int(sol.stats.num_steps) + int(single.stats.num_steps)
    tol = 2 * trajectory_tolerance(steps, float(jnp.abs(single.end_to_end_final).max()),
                                   RTOL, ATOL)
    both = np.asarray(sol.reached & single.reached)
    gap = np.abs(np.asarray(sol.end_to_end - single.end_to_end))[both].max()
    assert gap <= tol, (gap, tol)
    record = sol.switching
    assert (int(record.num_explicit_steps) + int(record.num_chebyshev_steps)
            + int(record.num_implicit_steps) == int(sol.stats.num_accepted_steps))


def test_one_step_budget_spans_both_solves(problem, two_phase):
    """`max_steps` bounds the steps of both solves together: a budget that runs out
    after the handoff ends the solve there, at exactly `max_steps` steps, with the
    message that says so."""
    budget = int(two_phase.stats.num_steps) // 2
    sol = _solve(problem, max_steps=budget)
    assert int(sol.switching.num_switches) >= 1  # it ran out after the handoff
    assert int(sol.stats.num_steps) == budget
    assert sol.result == diffrax.RESULTS.max_steps_reached and not bool(sol.success)
    assert "max_steps" in sol.message
    assert float(sol.t_final) < float(two_phase.t_final)


def test_a_vmapped_batch_equals_its_members(problem):
    """Under `vmap` both branches of the handoff run: a member that hands off and one
    that never does (a zero init is a fixed point: never stiff) each get their own
    result, as alone."""
    loss, ws0, threshold, ts = problem
    inits = jax.tree_util.tree_map(lambda w: jnp.stack([w, 0 * w]), ws0)
    batch = lf.solve_batch("factor", loss, inits, 1e6, ts, solver="auto", rtol=RTOL,
                           atol=ATOL, loss_threshold=threshold, max_steps=2**18,
                           chunk_size=None)
    for i in range(2):
        alone = lf.factor_flow(loss, jax.tree_util.tree_map(lambda w: w[i], inits), 1e6,
                               ts, solver="auto", rtol=RTOL, atol=ATOL,
                               loss_threshold=threshold, max_steps=2**18)
        assert int(batch.switching.num_switches[i]) == int(alone.switching.num_switches)
        assert int(batch.stats.num_steps[i]) == int(alone.stats.num_steps)
        np.testing.assert_allclose(batch.end_to_end[i], alone.end_to_end, rtol=0,
                                   atol=1e-12, equal_nan=True)
    assert int(batch.switching.num_switches[0]) >= 1
    assert int(batch.switching.num_switches[1]) == 0
