"""`solve_pool`: refilled slots give every seed the solve it would get alone, and keep
the slots busier than one vmap."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATOL, RTOL, sensing, trajectory_tolerance

import lnn_flow as lf

DIMS = (4, 5, 3, 4)
B = 12
T1 = 30.0
TS = jnp.linspace(0.0, T1, 7)
# 4 slots for 12 seeds in rounds of 8 steps: seeds queue, rounds end mid-solve, slots
# are refilled many times, and the last member drains alone (1 slot).
POOL = dict(slots=4, round_steps=8)


@pytest.fixture(scope="module")
def problem():
    loss, _ = sensing((DIMS[-1], DIMS[0]), m=12)
    keys = jax.random.split(jax.random.PRNGKey(3), B)
    # Norms over three decades: plateaus, hence step counts, differ widely.
    scales = jnp.logspace(-3, 0, B)
    ws0 = jax.vmap(lambda k, s: lf.init.balanced(k, DIMS, s))(keys, scales)
    return loss, ws0


def member(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


@pytest.fixture(scope="module")
def pooled(problem):
    loss, ws0 = problem
    return lf.solve_pool("factor", loss, ws0, T1, TS, rtol=RTOL, atol=ATOL, **POOL)


def assert_matches_alone(sol, alone, i):
    # Both solves keep local errors below rtol |y| + atol; their step sequences differ
    # where rounds end, so they agree to twice the tolerance rule of conftest.
    steps = max(int(sol.stats.num_steps[i]), int(alone.stats.num_steps))
    scale = float(jnp.abs(alone.end_to_end).max())
    tol = 2 * trajectory_tolerance(steps, scale)
    np.testing.assert_allclose(sol.end_to_end[i], alone.end_to_end, rtol=0, atol=tol)
    np.testing.assert_allclose(sol.end_to_end_final[i], alone.end_to_end_final, rtol=0,
                               atol=tol)
    assert bool(sol.reached[i].all()) == bool(alone.reached.all())
    assert int(sol.result._value[i]) == int(alone.result._value)


def test_members_match_solving_each_alone(problem, pooled):
    loss, ws0 = problem
    sol, stats = pooled
    assert sol.end_to_end.shape == (B, TS.shape[0], DIMS[-1], DIMS[0])
    assert bool(sol.success.all()) and bool(sol.reached.all())
    steps = np.asarray(sol.stats.num_steps)
    assert steps.max() > 1.3 * steps.min()  # the seeds really differ in length
    assert steps.min() > POOL["round_steps"]  # every seed spans several rounds
    for i in range(B):
        alone = lf.factor_flow(loss, member(ws0, i), T1, TS, rtol=RTOL, atol=ATOL)
        assert_matches_alone(sol, alone, i)
        assert float(sol.t_final[i]) == T1


def test_stats_count_every_step_and_beat_vmapped_chunks(pooled):
    sol, stats = pooled
    steps = np.asarray(sol.stats.num_steps)
    assert int(stats.member_steps) == steps.sum()
    assert int(stats.rounds) >= steps.sum() / (POOL["slots"] * POOL["round_steps"])
    # The same 4 slots as vmapped chunks of 4 seeds: each chunk runs to its slowest.
    chunks = [steps[i : i + POOL["slots"]] for i in range(0, B, POOL["slots"])]
    chunked = steps.sum() / sum(len(c) * c.max() for c in chunks)
    assert chunked < float(stats.utilization) <= 1.0


def test_loss_stop_and_end_to_end_method(problem):
    loss, ws0 = problem
    W0 = jax.vmap(lf.end_to_end)(ws0)
    threshold = 0.05 * float(loss(W0[0]))
    sol, _ = lf.solve_pool("end_to_end", loss, W0, 3, T1, TS, rtol=RTOL,
                           loss_threshold=threshold, **POOL)
    assert int(sol.stopped.sum()) >= 2
    for i in range(B):
        alone = lf.end_to_end_flow(loss, W0[i], 3, T1, TS, rtol=RTOL,
                                   loss_threshold=threshold)
        assert bool(sol.stopped[i]) == bool(alone.stopped)
        np.testing.assert_array_equal(sol.reached[i], alone.reached)
        # The crossing is located on each solve's own trajectory, which agree to
        # ~1e-10 relative: the stop times agree to far better than 1e-6 of t.
        assert abs(float(sol.t_final[i]) - float(alone.t_final)) <= 1e-6 * T1
        assert_matches_alone(
            jax.tree_util.tree_map(lambda x: jnp.nan_to_num(x), sol),
            jax.tree_util.tree_map(lambda x: jnp.nan_to_num(x), alone),
            i,
        )


def test_failures_keep_what_was_computed(problem, pooled):
    loss, ws0 = problem
    # A step budget (checked between rounds) of the median need: long seeds fail,
    # short ones finish.
    budget = int(np.median(pooled[0].stats.num_steps))
    sol, _ = lf.solve_pool("factor", loss, ws0, T1, TS, rtol=RTOL, atol=ATOL,
                           max_steps=budget, **POOL)
    failed = ~np.asarray(sol.success)
    assert failed.any() and not failed.all()
    assert bool(jnp.all(sol.result._value[failed]
                        == diffrax.RESULTS.max_steps_reached._value))
    assert bool(jnp.all(sol.stats.num_steps[failed] < budget + POOL["round_steps"]))
    assert bool(jnp.all(sol.reached[failed, 0]))  # saves up to the failure are kept
    assert bool(jnp.all(jnp.isfinite(sol.end_to_end_final[failed])))
    assert bool(jnp.all(sol.t_final[failed] < T1))


def test_bad_input_names_the_argument(problem):
    loss, ws0 = problem
    with pytest.raises(ValueError, match="`slots` must be a positive integer"):
        lf.solve_pool("factor", loss, ws0, T1, slots=0)
    with pytest.raises(ValueError, match="`round_steps` must be a positive integer"):
        lf.solve_pool("factor", loss, ws0, T1, round_steps=-1)
    with pytest.raises(ValueError, match="`method` must be one of"):
        lf.solve_pool("descent", loss, ws0, 0.1, 10)
    with pytest.raises(ValueError, match="neither `dense`"):
        lf.solve_pool("factor", loss, ws0, T1, dense=True)
    with pytest.raises(TypeError, match="arguments of `factor_flow`"):
        lf.solve_pool("factor", loss, ws0, T1, tolerance=1e-3)
