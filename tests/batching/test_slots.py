"""`lnn_flow._batching._slots`: a slot starts on a seed, is refilled, and runs one round; rounds
chained one after another resume a solve where the last one stopped."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATOL, RTOL, inits_over_scales, member, sensing, trajectory_tolerance

import lnn_flow as lf
from lnn_flow._batching._pool import pool_problem
from lnn_flow._batching._slots import _Pool, _first_slots, _refill, _resume_dt, _round, _segment

DIMS = (3, 4, 3)
N = 4
T1 = 6.0
TS = jnp.linspace(0.0, T1, 5)
ROUND_STEPS = 3  # a solve takes tens of steps: many rounds


@pytest.fixture(scope="module")
def setup():
    loss, _ = sensing((DIMS[-1], DIMS[0]), m=6)
    init = inits_over_scales(DIMS, N, -0.5, 0)  # norms 0.3..1: no long saddle
    system, states, atols, options = pool_problem(
        "factor", loss, init, (T1, TS), dict(rtol=RTOL, atol=ATOL)
    )
    pool = _Pool(system, states, atols, options["t0"], options["t1"], options["ts"],
                 options["rtol"], options["dt0"], options["loss_threshold"],
                 options["solver"], options["stepsize_controller"],
                 options["steady_state"], options["max_steps"], ROUND_STEPS)
    return loss, init, pool


def same(a, b):
    return all(np.array_equal(x, y, equal_nan=True) for x, y in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_first_slots_start_seeds_in_order(setup):
    _, init, pool = setup
    state = _first_slots(pool, 2)
    np.testing.assert_array_equal(state.seed, [0, 1])
    np.testing.assert_array_equal(state.t, [0.0, 0.0])
    assert same(state.y, jax.tree_util.tree_map(lambda x: x[:2], init))
    assert bool(jnp.all(state.dt > 0))
    assert int(state.num_steps.sum() + state.num_accepted.sum() + state.rounds.sum()) == 0


def test_refill_restarts_only_the_masked_slots(setup):
    _, init, pool = setup
    state = _first_slots(pool, 2)
    # Pretend slot 1 has run: counters and time moved on.
    state = eqx_replace(state, t=jnp.array([0.5, 2.0]), num_steps=jnp.array([4, 9]),
                        rounds=jnp.array([1, 3]))
    refilled = _refill(pool, state, jnp.array([False, True]), jnp.array([7, 3]))
    assert same(member(refilled, 0), member(state, 0))  # unmasked: untouched
    assert int(refilled.seed[1]) == 3 and float(refilled.t[1]) == 0.0
    assert same(member(refilled.y, 1), member(init, 3))
    assert int(refilled.num_steps[1]) == 0 and int(refilled.rounds[1]) == 0
    # Seed `num_seeds` marks an empty slot: it idles at t1.
    empty = _refill(pool, state, jnp.array([True, False]), jnp.array([N, 0]))
    assert int(empty.seed[0]) == N and float(empty.t[0]) == T1


def eqx_replace(module, **changes):
    return eqx.tree_at(lambda m: [getattr(m, k) for k in changes], module,
                       list(changes.values()))


def test_resume_dt_is_the_last_step_taken():
    inf = jnp.inf
    # Steps to 0.1 and 0.3, then a rejected step repeating 0.3; unused entries inf.
    steps = jnp.array([0.1, 0.3, 0.3, inf, inf])
    assert float(_resume_dt(jnp.array(0.0), jnp.array(0.1), steps)) == pytest.approx(0.2)
    # No step taken (all rejected or none): half the step tried.
    none = jnp.array([0.0, inf])
    assert float(_resume_dt(jnp.array(0.0), jnp.array(0.1), none)) == 0.05


def test_rounds_chained_resume_the_solve(setup):
    loss, init, pool = setup
    state = member(_first_slots(pool, 1), 0)
    run = jax.jit(lambda s: _segment(pool, s.y, s.t, s.dt, s.atol, s.solver_state,
                                     s.controller_state))
    saved = np.full((TS.shape[0],) + DIMS[-1:] + DIMS[:1], np.nan)
    written = np.zeros(TS.shape[0], bool)
    rounds = 0
    while float(state.t) < T1:
        seg = run(state)
        assert int(seg.num_steps) <= ROUND_STEPS
        new = np.asarray(seg.written)
        assert not (new & written).any()  # each save is written by one round only
        saved[new] = np.asarray(jax.vmap(lf.end_to_end)(seg.saved_ys))[new]
        written |= new
        state = eqx_replace(state, y=seg.y, t=seg.t, dt=seg.dt,
                            solver_state=seg.solver_state,
                            controller_state=seg.controller_state)
        rounds += 1
    assert rounds > 3 and written.all()
    alone = lf.factor_flow(loss, member(init, 0), T1, TS, rtol=RTOL, atol=ATOL)
    # Away from the saddle (norms 0.3..1) local errors add up: each solve is within
    # conftest's sum-of-local-errors bound of the exact flow, so within twice it of the
    # other.
    bound = 2 * trajectory_tolerance(alone.stats.num_steps, np.abs(saved).max())
    np.testing.assert_allclose(saved, alone.end_to_end, rtol=0, atol=bound)


def test_round_skips_groups_without_a_running_slot(setup):
    _, _, pool = setup
    state = _first_slots(pool, 4)
    # In groups of 2 slots. Slots 0 and 2 empty: both groups run; slots 2 and 3 empty:
    # the second group is skipped (its slots keep their state and take no step).
    for empty, skipped in (([0, 2], False), ([2, 3], True)):
        mask = jnp.isin(jnp.arange(4), jnp.array(empty))
        s = _refill(pool, state, mask, jnp.full(4, N))
        seg = jax.jit(lambda s: _round(pool, s, 2))(s)
        # Each group that ran is the vmap of its 2 slots alone (the same width: a vmap
        # of another width rounds differently, ~1e-7 in t here).
        for group in ([0, 1], [2, 3])[: 1 if skipped else 2]:
            alone = jax.jit(lambda s: _round(pool, s, 1))(member(s, jnp.array(group)))
            assert same(member(seg, jnp.array(group)), alone)
        running = ~np.asarray(mask)
        assert bool(jnp.all(seg.num_steps[running] > 0))
        if skipped:
            np.testing.assert_array_equal(seg.num_steps[2:], [0, 0])
            assert same(member(seg.y, slice(2, 4)), member(s.y, slice(2, 4)))
            assert not bool(seg.written[2:].any())
