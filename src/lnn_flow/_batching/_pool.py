"""Refilled batch slots: many seeds through a fixed set of vmapped solver slots.

A vmapped adaptive solve steps every member until the slowest finishes, so in a batch
of seeds with plateaus of different lengths the finished members sit idle (the
fraction of slot-steps that do work is printed by `benchmarks/refill.py` for init
scales 1e-4..1e-2, at a fixed `t1` and with a loss stop). Here `slots` members are
solved together in *rounds*: each round is one `diffrax.diffeqsolve` of at most
`round_steps` steps per member, resumed from the previous round's solver state,
step-size-controller state and last step size. Between rounds, inside the same compiled
`lax.while_loop`, every member that finished (reached `t1`, stopped at the loss
threshold, failed, or spent `max_steps`) writes its result and hands its slot to the
next pending seed.

Drain (no seed pending): the slots are split into `groups` groups run one after another
in a round (`lnn_flow._batching._slots._round`: a `lax.map` over groups, each a `vmap` over its
slots inside a `lax.cond` that skips a group with no running member), and after every
round the running members move to the front slots (`_pack`), so as they thin out whole
groups skip. Idle slot-steps are then bounded by the rounds' ragged ends and, in the
drain, by the idle slots of the groups still running. On CPU `groups` is 4 (an idle
vmapped lane costs about what a running one does); on GPU/TPU it is 1 (idle lanes are
nearly free there; see `_default_groups`). The round body is one program whatever the
groups: the drain used to move the running members to narrower loops (a quarter, then a
sixteenth of the slots), each its own `while_loop` whose vmapped segment was traced and
compiled again. Measured with d = 20 sensing, 64 seeds, 16 slots, on 2 shared CPU
cores, back to back: three loop widths 2.4 s trace + 9.3 s XLA compile, the one body
(4 groups) 1.0 s + 3.9 s (1 group: 1.0 s + 3.7 s).

The slots and their rounds are `lnn_flow._batching._slots`; here are the loop around them
(`pooled_solve`: `_body` per round, `_pack` and `_default_groups` for the drain), the
results table (`_blank_results`, `_write`) and the final `_assemble`.
"""

import dataclasses
from functools import partial

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree

from ._slots import _Pool, _Segment, _Slots, _first_slots, _refill, _round, _select, _take
from ._methods import arguments, lookup
from .._solving._options import prepare
from .._solving._result import FlowSolution, PoolStats
from .._solving._flat import FlatLayout, FlatSystem
from .._solving._solve import assemble
from .._solving._system import FIXED_ATOL

_MAX_STEPS = diffrax.RESULTS.max_steps_reached
_CPU_GROUPS = 4


class _Results(eqx.Module):
    saved: PyTree[Array]  # (num_seeds, k, ...)
    written: Bool[Array, "n k"]
    y_final: PyTree[Array]
    t_final: Float[Array, " n"]
    result: diffrax.RESULTS  # batched over seeds
    stopped: Bool[Array, " n"]
    at_rest: Bool[Array, " n"]
    diverged: Bool[Array, " n"]
    num_steps: Int[Array, " n"]
    num_accepted: Int[Array, " n"]
    rounds: Int[Array, " n"]  # diffeqsolve calls each seed was solved in


def _blank_results(init: PyTree[Array], k: int) -> _Results:
    """Results before any round: NaN saves and finals, nothing written."""
    n = jax.tree_util.tree_leaves(init)[0].shape[0]
    blank = lambda x: jnp.full((n, k) + x.shape[1:], jnp.nan, x.dtype)
    return _Results(
        jax.tree_util.tree_map(blank, init),
        jnp.zeros((n, k), bool),
        jax.tree_util.tree_map(lambda x: jnp.full_like(x, jnp.nan), init),
        jnp.full(n, jnp.nan),
        jax.tree_util.tree_map(lambda v: jnp.full(n, v), diffrax.RESULTS.successful),
        jnp.zeros(n, bool),
        jnp.zeros(n, bool),
        jnp.zeros(n, bool),
        jnp.zeros(n, int),
        jnp.zeros(n, int),
        jnp.zeros(n, int),
    )


def _write(results: _Results, state: _Slots, seg: _Segment, active, done) -> _Results:
    """`results` with the saves of every active slot and the finals of the finished
    (`done`) ones; empty slots' index is out of range and dropped."""
    n = results.t_final.shape[0]
    seed = jnp.where(active, state.seed, n)
    old = _take(results.saved, jnp.minimum(seed, n - 1))
    merged = _select(seg.written, seg.saved_ys, old)
    put = lambda a, x: a.at[seed].set(x, mode="drop")
    put_done = lambda a, x: a.at[jnp.where(done, seed, n)].set(x, mode="drop")
    return _Results(
        jax.tree_util.tree_map(put, results.saved, merged),
        put(results.written, seg.written | results.written[jnp.minimum(seed, n - 1)]),
        jax.tree_util.tree_map(put_done, results.y_final, seg.y),
        put_done(results.t_final, seg.t),
        jax.tree_util.tree_map(put_done, results.result, seg.result),
        put_done(results.stopped, seg.stopped),
        put_done(results.at_rest, seg.at_rest),
        put_done(results.diverged, seg.diverged),
        put_done(results.num_steps, state.num_steps),
        put_done(results.num_accepted, state.num_accepted),
        put_done(results.rounds, state.rounds),
    )


def _all_finite(y: PyTree[Array]) -> Bool[Array, " s"]:
    """Per slot: every entry of its state is finite."""
    return jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1)
                   for x in jax.tree_util.tree_leaves(y)]),
        axis=0,
    )


def _body(pool: _Pool, groups: int, carry):
    """One round: every slot steps (`_round`, in `groups` groups), the finished members
    write their results (`_write`) and hand their slots to the next pending seeds
    (`_refill`); then the running slots move to the front (`_pack`)."""
    state, results, next_seed, stats = carry
    num_seeds, slots = pool.num_seeds, state.seed.shape[0]
    seg = _round(pool, state, groups)
    active = state.seed < num_seeds
    steps = jnp.where(active, seg.num_steps, 0)
    state = _Slots(
        state.seed, seg.y, seg.t, seg.dt, state.atol, seg.solver_state,
        seg.controller_state, state.num_steps + steps,
        state.num_accepted + jnp.where(active, seg.num_accepted, 0), state.rounds + active,
    )
    ran_out = state.num_steps >= pool.max_steps
    # A member whose steps stalled ended its solve (`dt_min_reached`); one whose trial
    # steps overflowed but still shrink keeps its rounds until `max_steps`, as a solve
    # alone would.
    done = active & ((seg.result != _MAX_STEPS) | ran_out | ~_all_finite(seg.y))
    results = _write(results, state, seg, active, done)
    order = jnp.cumsum(done) - 1
    new_seeds = jnp.where(done, jnp.minimum(next_seed + order, num_seeds), state.seed)
    state = jax.lax.cond(
        jnp.any(done), lambda s: _refill(pool, s, done, new_seeds), lambda s: s, state
    )
    group = slots // groups
    stats = PoolStats(
        stats.rounds + 1,
        stats.member_steps + jnp.sum(steps),
        # Each group is a vmapped loop: it costs its width times its slowest member
        # (nothing when it was skipped).
        stats.slot_steps + group * jnp.sum(jnp.max(steps.reshape(groups, group), axis=1)),
    )
    return _pack(state, num_seeds), results, next_seed + jnp.sum(done), stats


def _pack(state: _Slots, num_seeds: int) -> _Slots:
    """The slots reordered: running ones first, each part in slot order (stable). While
    seeds are pending every slot is running and this is the identity; in the drain it
    gathers the running members into the first groups, so the others skip."""
    return _take(state, jnp.argsort(state.seed >= num_seeds, stable=True))


def _default_groups(slots: int) -> int:
    """Groups of slots a round runs one after another: on CPU the largest divisor of
    `slots` up to `_CPU_GROUPS` (a vmapped lane costs there about as much idle as
    running, so a drained group should be skippable); elsewhere (GPU, TPU: idle lanes
    of a vmap are nearly free, sequential groups are not) one group."""
    if jax.default_backend() != "cpu":
        return 1
    return max(g for g in range(1, min(_CPU_GROUPS, slots) + 1) if slots % g == 0)


def _assemble(pool: _Pool, results: _Results) -> FlowSolution:
    """The batched `FlowSolution`: `assemble` per member, as for a solve alone."""

    def one(y0, saved, written, y_final, t_final, result, stopped, at_rest, diverged,
            steps, accepted, rounds):
        return assemble(
            pool.system, pool.solver, ts=pool.ts, t0=pool.t0, y0=y0, saved_ys=saved,
            written=written, t_final=t_final, y_final=y_final, result=result,
            stopped=stopped, at_rest=at_rest, num_steps=steps,
            num_accepted_steps=accepted, diverged=diverged,
            stop_modes=(pool.loss_threshold is not None, pool.steady_state),
            num_starts=rounds, rtol=pool.rtol, loss_threshold=pool.loss_threshold,
        )

    return jax.vmap(one)(
        pool.init, results.saved, results.written, results.y_final, results.t_final,
        results.result, results.stopped, results.at_rest, results.diverged,
        results.num_steps, results.num_accepted, results.rounds,
    )


def pooled_solve(
    system,
    init: PyTree[Array],
    atol: Float[Array, " n"],
    *,
    t0,
    t1,
    ts,
    rtol,
    dt0,
    loss_threshold,
    steady_state,
    solver,
    stepsize_controller,
    max_steps: int,
    slots: int,
    round_steps: int,
    groups: int | None = None,
) -> tuple[FlowSolution, PoolStats]:
    """Solve `system` from every member of `init` (leading seed axis) through `slots`
    refilled slots; traceable, so it runs inside `jit` and `shard_map`.

    Member `i` of the result is `init[i]` solved alone, with the same tolerances; its
    steps differ from an uninterrupted solve only where a round ends (the next round
    restarts the controller from the last accepted step). `max_steps` is checked
    between rounds, so a member may take up to `round_steps - 1` more. `groups`
    (dividing `min(slots, num_seeds)`; default `_default_groups`) splits the slots
    into groups run one after another within a round, each skipped when idle.
    """
    layout = FlatLayout.of(_take(init, 0))  # the solver steps one vector per member
    system, init = FlatSystem(system, layout), jax.vmap(layout.ravel)(init)
    pool = _Pool(
        system, init, atol, t0, t1, ts, rtol, dt0, loss_threshold, solver,
        stepsize_controller, steady_state, max_steps, round_steps,
    )
    num_seeds = pool.num_seeds
    slots = min(slots, num_seeds)
    zero = jnp.zeros((), int)
    carry = (_first_slots(pool, slots), _blank_results(init, ts.shape[0]),
             jnp.asarray(slots), PoolStats(zero, zero, zero))
    groups = _default_groups(slots) if groups is None else groups
    if slots % groups:
        raise ValueError(f"`groups` ({groups}) must divide the slots ({slots})")

    def running(carry):
        return jnp.any(carry[0].seed < num_seeds)

    carry = jax.lax.while_loop(running, partial(_body, pool, groups), carry)
    _, results, _, stats = carry
    return _assemble(pool, results), stats


def pool_problem(method: str, loss, init, args, kwargs):
    """The system, initial states, per-member `atol` and solve options of the
    registered `method(loss, member, *args, **kwargs)` ([`lnn_flow._batching._methods`][]) for a
    pooled solve."""
    entry = lookup(method, pool=True)
    first = _take(init, 0)
    a = arguments(method, loss, first, args, kwargs)
    options = entry.options(a)
    if options.dense or options.progress_meter is not None:
        raise ValueError("a refilled solve supports neither `dense` nor `progress_meter`")
    if isinstance(options.solver, str):
        raise ValueError(
            "`solver='auto'` is for solve_batch and the flows, not solve_pool: the pool "
            "steps its slots in lockstep, where each member's own switch between "
            "explicit and implicit steps would run both kinds for every slot"
        )
    # `init` itself (real, finite per member, a finite initial loss) is checked on the
    # host by `solve_pool` before tracing; here every value may be traced.
    system = entry.system(loss, first, a)
    states = jax.vmap(entry.state)(init)
    scaled = options.atol is None  # the system's default, from each member's state
    given = dataclasses.replace(options, atol=FIXED_ATOL if scaled else options.atol)
    checked = prepare(
        entry.state(first), t1=a["t1"], ts=a["ts"], **given.solve_kwargs(), loss=loss
    )
    # Host values (checked without dispatch by `prepare`) become JAX arrays here.
    checked = {
        k: jnp.asarray(v) if isinstance(v, (np.ndarray, np.number)) else v
        for k, v in checked.items()
    }
    atol = checked.pop("atol")
    if scaled:
        atols = jax.vmap(system.default_atol, in_axes=(0, None))(states, checked["rtol"])
    else:
        atols = jnp.full(jax.tree_util.tree_leaves(init)[0].shape[0], atol)
    return system, states, atols, checked
