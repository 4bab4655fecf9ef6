"""`solve_pool`: refilled slots give every seed the solve it would get alone, and keep
the slots busier than one vmap."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    ATOL,
    REFERENCE_ATOL,
    REFERENCE_RTOL,
    RTOL,
    SAME_SIZE,
    inits_over_scales,
    member,
    spread_problem,
)

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
    # Norms over three decades: plateaus, hence step counts, differ widely.
    return spread_problem(DIMS, B, -3, 0)


@pytest.fixture(scope="module")
def pooled(problem):
    loss, ws0 = problem
    return lf.solve_pool("factor", loss, ws0, T1, TS, rtol=RTOL, atol=ATOL, **POOL)


def reference(solve, *args, **kwargs):
    """The same solve at `REFERENCE_RTOL`/`REFERENCE_ATOL` (same compiled program:
    tolerances are traced)."""
    return solve(*args, rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL, **kwargs)


def assert_matches_alone(sol, i, alone, ref):
    """Pool member `i` is as accurate as the member solved alone. The seeds start at
    norms down to 1e-3 and escape the saddle at the origin, where errors grow, so
    conftest's sum-of-local-errors rule is no bound here: both are measured against a
    tight reference instead, and the pool may differ from it only as much as a solve
    with another step sequence does (`SAME_SIZE`; seen <= 4)."""
    assert bool(sol.reached[i].all()) == bool(alone.reached.all())
    assert bool(member(sol.result, i) == alone.result)
    saves = lambda x: np.nan_to_num(np.asarray(x))  # unreached saves are NaN in all
    for name in ("end_to_end", "end_to_end_final"):
        want = saves(getattr(ref, name))
        alone_error = np.abs(saves(getattr(alone, name)) - want).max()
        pool_error = np.abs(saves(getattr(sol, name)[i]) - want).max()
        assert pool_error <= SAME_SIZE * alone_error, (name, pool_error, alone_error)


def test_members_match_solving_each_alone(problem, pooled):
    loss, ws0 = problem
    sol = pooled
    assert sol.end_to_end.shape == (B, TS.shape[0], DIMS[-1], DIMS[0])
    assert bool(sol.success.all()) and bool(sol.reached.all())
    steps = np.asarray(sol.stats.num_steps)
    assert steps.max() > 1.3 * steps.min()  # the seeds really differ in length
    assert steps.min() > POOL["round_steps"]  # every seed spans several rounds
    for i in range(B):
        ws = member(ws0, i)
        alone = lf.factor_flow(loss, ws, T1, TS, rtol=RTOL, atol=ATOL)
        ref = reference(lf.factor_flow, loss, ws, T1, TS)
        assert ref.success
        assert_matches_alone(sol, i, alone, ref)
        assert float(sol.t_final[i]) == T1


def test_stats_count_every_step_and_beat_vmapped_chunks(pooled):
    sol, stats = pooled, member(pooled.pool, 0)
    steps = np.asarray(sol.stats.num_steps)
    assert int(stats.member_steps) == steps.sum()
    assert int(stats.rounds) >= steps.sum() / (POOL["slots"] * POOL["round_steps"])
    # The same 4 slots as vmapped chunks of 4 seeds: each chunk runs to its slowest.
    chunks = [steps[i : i + POOL["slots"]] for i in range(0, B, POOL["slots"])]
    chunked = steps.sum() / sum(len(c) * c.max() for c in chunks)
    assert chunked < float(stats.utilization) <= 1.0
    # A round costs each group that ran its width times its slowest member; in groups
    # of one slot (CPU's default for 4 slots) nothing idles, in the drain included.
    if _default_groups(POOL["slots"]) == POOL["slots"]:
        assert int(stats.slot_steps) == int(stats.member_steps)


def test_loss_stop_and_end_to_end_method(problem):
    loss, ws0 = problem
    W0 = jax.vmap(lf.end_to_end)(ws0)
    threshold = 0.05 * float(loss(W0[0]))
    sol = lf.solve_pool("end_to_end", loss, W0, 3, T1, TS, rtol=RTOL,
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
        # The reference stops at its own crossing: compare states up to the earlier one.
        # At rtol 1e-13 some members need more than the default 16,384 steps.
        ref = lf.end_to_end_flow(loss, W0[i], 3, T1, TS, rtol=REFERENCE_RTOL,
                                 loss_threshold=threshold, max_steps=65_536)
        assert bool(ref.stopped) == bool(alone.stopped)
        assert abs(float(ref.t_final) - float(alone.t_final)) <= 1e-6 * T1
        assert_matches_alone(sol, i, alone, ref)


def at_rest(loss, ws, rtol, atol):
    """diffrax's `steady_state_event` test, recomputed from the field of eq. (2):
    `rms(dy/dt) < atol + rtol rms(y)` over all factor entries."""
    rms = lambda tree: float(jnp.sqrt(jnp.mean(jnp.concatenate(
        [jnp.ravel(x) for x in tree]) ** 2)))
    return rms(lf.factor_vector_field(loss, ws)) < atol + rtol * rms(ws)


# Long enough for seeds past their plateaus to come to rest at these tolerances.
REST_T1 = 200.0
REST_TS = jnp.linspace(0.0, REST_T1, TS.shape[0])  # TS's shape: the same programs
REST_TOL = dict(rtol=1e-6, atol=1e-8)


def test_steady_state_members_match_solving_each_alone():
    # A full-rank target with no bottleneck (hidden widths >= 4): past its plateaus
    # the flow converges exponentially, so seeds come to rest; towards sensing's rank-2
    # truth the zero singular values decay only like a power of t at depth 3 and
    # almost no seed rests. Small singular values keep the step size (stability-limited
    # at rest) large. Seeds from the smallest inits are still on the plateau of the
    # last target direction at t1: not at rest, as the flag must say.
    loss = lf.losses.WhitenedSquare(jnp.diag(jnp.array([0.4, 0.35, 0.3, 0.25])))
    ws0 = inits_over_scales((4, 5, 4, 4), B, -3, 0)
    sol = lf.solve_pool("factor", loss, ws0, REST_T1, REST_TS, steady_state=True,
                        **REST_TOL, **POOL)
    stats = member(sol.pool, 0)
    assert bool(sol.success.all())
    assert int(stats.member_steps) == int(np.sum(sol.stats.num_steps))
    rested = np.asarray(sol.at_rest)
    assert 3 <= rested.sum() < B, rested  # both kinds: the stop really happens
    for i in range(B):
        ws = member(ws0, i)
        alone = lf.factor_flow(loss, ws, REST_T1, REST_TS, steady_state=True, **REST_TOL)
        assert bool(sol.at_rest[i]) == bool(alone.at_rest)
        final = member(sol.factors_final, i)
        if rested[i]:
            # Each stopped where the field says it is at rest, before t1; the stop
            # time itself is ill-conditioned (|dy/dt| decays slowly through the
            # tolerance), so pool and alone may stop far apart in t.
            assert at_rest(loss, final, **REST_TOL)
            assert float(sol.t_final[i]) < REST_T1 and float(alone.t_final) < REST_T1
            assert not bool(sol.reached[i, -1])
        else:
            assert float(sol.t_final[i]) == REST_T1 and bool(sol.reached[i].all())
        # Up to the stop the event changes nothing: the pool's saves are as accurate
        # as the member's alone, against a tight reference (saddle: see conftest).
        ref = lf.factor_flow(loss, ws, REST_T1, REST_TS, rtol=REFERENCE_RTOL,
                             atol=REFERENCE_ATOL)
        both = np.asarray(sol.reached[i] & alone.reached)
        assert both[0] and both.sum() >= 2
        want = np.asarray(ref.end_to_end)[both]
        alone_error = np.abs(np.asarray(alone.end_to_end)[both] - want).max()
        pool_error = np.abs(np.asarray(sol.end_to_end[i])[both] - want).max()
        assert pool_error <= SAME_SIZE * alone_error, (i, pool_error, alone_error)


def test_failures_keep_what_was_computed(problem, pooled):
    loss, ws0 = problem
    # A step budget (checked between rounds) of the median need: long seeds fail,
    # short ones finish.
    budget = int(np.median(pooled.stats.num_steps))
    sol = lf.solve_pool("factor", loss, ws0, T1, TS, rtol=RTOL, atol=ATOL,
                        max_steps=budget, **POOL)
    failed = ~np.asarray(sol.success)
    assert failed.any() and not failed.all()
    assert bool(jnp.all((sol.result == diffrax.RESULTS.max_steps_reached)[failed]))
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


# --- the pieces of `pooled_solve` ------------------------------------------------------

from lnn_flow._batching._pool import _blank_results, _default_groups, _pack, _write  # noqa: E402
from lnn_flow._batching._slots import _Segment, _Slots  # noqa: E402


def test_default_groups_divide_the_slots(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert [_default_groups(s) for s in (64, 12, 6, 5, 3, 1)] == [4, 4, 3, 1, 3, 1]
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert _default_groups(64) == 1


def slots_with(seeds, **fields):
    s = len(seeds)
    base = dict(seed=jnp.array(seeds), y=jnp.arange(s, dtype=float)[:, None],
                t=jnp.zeros(s), dt=jnp.ones(s), atol=jnp.ones(s), solver_state=None,
                controller_state=None, num_steps=jnp.arange(s) + 10,
                num_accepted=jnp.arange(s) + 5, rounds=jnp.ones(s, int))
    return _Slots(**{**base, **fields})


def test_pack_moves_running_slots_first_in_order():
    state = slots_with([5, 1, 5, 2])  # 5 = num_seeds: empty
    np.testing.assert_array_equal(_pack(state, 5).seed, [1, 2, 5, 5])
    np.testing.assert_array_equal(_pack(state, 5).y[:, 0], [1.0, 3.0, 0.0, 2.0])


def test_write_saves_of_active_slots_and_finals_of_finished_ones():
    n, k = 3, 2
    results = _blank_results(jnp.zeros((n, 1)), k)
    state = slots_with([2, 0, 3])  # slot 2 is empty (seed 3 = n)
    seg = _Segment(
        saved_ys=jnp.array([[[20.0], [21.0]], [[0.0], [1.0]], [[9.0], [9.0]]]),
        written=jnp.array([[False, True], [True, True], [True, True]]),
        y=jnp.array([[7.0], [8.0], [9.0]]), t=jnp.array([1.0, 2.0, 3.0]),
        dt=jnp.ones(3), solver_state=None, controller_state=None,
        result=diffrax.RESULTS.successful, stopped=jnp.array([False, True, True]),
        at_rest=jnp.zeros(3, bool), diverged=jnp.zeros(3, bool),
        num_steps=jnp.ones(3, int), num_accepted=jnp.ones(3, int),
    )
    active = state.seed < n
    done = jnp.array([False, True, False])
    out = _write(results, state, seg, active, done)
    # Seed 2 (running): only its written save; seed 0 (done): saves and finals.
    np.testing.assert_array_equal(out.written, [[True, True], [False, False], [False, True]])
    np.testing.assert_array_equal(out.saved[2, :, 0], [np.nan, 21.0])
    np.testing.assert_array_equal(out.saved[0, :, 0], [0.0, 1.0])
    np.testing.assert_array_equal(out.t_final, [2.0, np.nan, np.nan])
    np.testing.assert_array_equal(out.stopped, [True, False, False])
    np.testing.assert_array_equal(out.num_steps, [11, 0, 0])
    # The empty slot wrote nothing (seed 1 untouched).
    assert not bool(out.written[1].any()) and bool(jnp.isnan(out.y_final[1]).all())


def test_old_tuple_unpacking_warns_and_still_works(pooled):
    with pytest.warns(DeprecationWarning, match="solution.pool"):
        sol, stats = pooled
    assert sol is pooled and int(stats.rounds) == int(pooled.pool.rounds[0])


def test_pool_totals_repeat_for_every_member_so_members_index(pooled):
    # Every leaf keeps the batch axis: a member is indexed like any batched solution.
    for x in jax.tree_util.tree_leaves(pooled.pool):
        assert x.shape == (B,) and bool(jnp.all(x == x[0]))
    one = member(pooled, B - 1)
    assert one.end_to_end.ndim == 3 and one.pool.rounds.ndim == 0


def test_a_solution_without_pool_stats_is_not_iterable(problem):
    loss, ws0 = problem
    with pytest.raises(TypeError, match="not iterable"):
        iter(lf.factor_flow(loss, member(ws0, 0), 0.1))


def test_body_hands_finished_slots_to_the_next_pending_seeds(problem):
    from lnn_flow._batching._pool import _body, pool_problem
    from lnn_flow._solving._result import PoolStats
    from lnn_flow._batching._slots import _first_slots, _Pool

    loss, ws0 = problem
    init = member(ws0, slice(B - 4, B))  # the 4 largest inits: short solves
    system, states, atols, o = pool_problem("factor", loss, init, (1.0, TS[:2] / T1),
                                            dict(rtol=1e-6, atol=1e-8))
    # Rounds long enough that every seed finishes in its first round.
    pool = _Pool(system, states, atols, o["t0"], o["t1"], o["ts"], o["rtol"], o["dt0"],
                 o["loss_threshold"], o["solver"], o["stepsize_controller"],
                 o["steady_state"], o["max_steps"], 10_000)
    zero = jnp.zeros((), int)
    carry = (_first_slots(pool, 2), _blank_results(states, 2), jnp.asarray(2),
             PoolStats(zero, zero, zero))
    body = jax.jit(lambda c: _body(pool, 2, c))  # 2 groups of 1 slot
    state, results, next_seed, stats = carry = body(carry)
    np.testing.assert_array_equal(state.seed, [2, 3])  # seeds 0, 1 done: slots refilled
    np.testing.assert_array_equal(state.t, [0.0, 0.0])
    np.testing.assert_array_equal(results.t_final, [1.0, 1.0, np.nan, np.nan])
    assert int(next_seed) == 4 and int(stats.rounds) == 1
    assert int(stats.member_steps) == int(results.num_steps.sum())
    state, results, next_seed, stats = body(carry)
    np.testing.assert_array_equal(state.seed, [4, 4])  # nothing pending: slots empty
    np.testing.assert_array_equal(results.t_final, [1.0] * 4)
    np.testing.assert_array_equal(results.rounds, [1] * 4)
