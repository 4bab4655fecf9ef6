"""Solver slots of a refilled solve (`lnn_flow._batching._pool`): each slot solves one seed in
rounds, and a round is one `diffrax.diffeqsolve` of at most `round_steps` steps resumed
from the previous round's solver state, step-size-controller state and last step size.

Here: what one slot holds (`_Slots`), how it starts on a seed (`_start`, `_refill`) and
how it runs one round (`_segment`; `_round` for all slots, in groups that skip when none of
their slots is running). Which seed a slot takes, and when, is `_pool`'s.
"""

from functools import partial
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PyTree

from .._solving._controller import controller, diverged_flag
from .._solving._events import stop_event, stop_flags


class _Slots(eqx.Module):
    seed: Int[Array, " s"]  # the seed each slot solves; `num_seeds` marks an empty slot
    y: PyTree[Array]
    t: Float[Array, " s"]
    dt: Float[Array, " s"]
    atol: Float[Array, " s"]
    solver_state: PyTree[Array]
    controller_state: PyTree[Array]
    num_steps: Int[Array, " s"]
    num_accepted: Int[Array, " s"]
    rounds: Int[Array, " s"]


def _take(tree, index):
    return jax.tree_util.tree_map(lambda x: x[index], tree)


def _select(mask, new, old):
    def one(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)

    return jax.tree_util.tree_map(one, new, old)


class _Pool(eqx.Module):
    """What every round of a refilled solve shares: the system, the members' initial
    states and tolerances, and the solve options (those of `prepare`)."""

    system: Any
    init: PyTree[Array]  # leading seed axis
    atol: Float[Array, " n"]
    t0: Any
    t1: Any
    ts: Float[Array, " k"]
    rtol: Any
    dt0: Any
    loss_threshold: Any
    solver: Any
    stepsize_controller: Any
    steady_state: bool = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    round_steps: int = eqx.field(static=True)

    @property
    def num_seeds(self) -> int:
        return jax.tree_util.tree_leaves(self.init)[0].shape[0]

    @property
    def term(self) -> diffrax.ODETerm:
        return diffrax.ODETerm(self.system.vector_field)


class _Segment(eqx.Module):
    """One round of one slot: its saves and where it stopped."""

    saved_ys: PyTree[Array]  # (k, ...): NaN or stale where not `written`
    written: Bool[Array, " k"]
    y: PyTree[Array]
    t: Float[Array, ""]
    dt: Float[Array, ""]  # the step to resume with
    solver_state: PyTree[Array]
    controller_state: PyTree[Array]
    result: diffrax.RESULTS
    stopped: Bool[Array, ""]
    at_rest: Bool[Array, ""]
    diverged: Bool[Array, ""]
    num_steps: Int[Array, ""]
    num_accepted: Int[Array, ""]


def _start(pool: _Pool, seed: Int[Array, ""], active: Bool[Array, ""]):
    """Fresh `(y, t, dt, atol, solver_state, controller_state)` for `seed` (an
    inactive slot idles at `t1`)."""
    index = jnp.minimum(seed, pool.num_seeds - 1)
    y, atol_i, term, solver = _take(pool.init, index), pool.atol[index], pool.term, pool.solver
    ctrl = controller(solver, pool.stepsize_controller, pool.rtol, atol_i)
    tnext, controller_state = ctrl.init(
        term, pool.t0, pool.t1, y, pool.dt0, None, solver.func, solver.error_order(term)
    )
    t = jnp.where(active, pool.t0, pool.t1)
    solver_state = solver.init(term, t, tnext, y, None)
    return y, t, tnext - pool.t0, atol_i, solver_state, controller_state


def _first_slots(pool: _Pool, slots: int) -> _Slots:
    """Slots holding seeds `0..slots-1`, each at its start."""
    first = jnp.arange(slots)
    zeros = jnp.zeros(slots, int)
    return _Slots(first, *jax.vmap(partial(_start, pool))(first, jnp.ones(slots, bool)),
                  zeros, zeros, zeros)


def _refill(pool: _Pool, state: _Slots, mask: Bool[Array, " s"], seeds: Int[Array, " s"]):
    """`state` with the slots in `mask` restarted on `seeds` (`num_seeds`: empty)."""
    fresh = _Slots(
        seeds, *jax.vmap(partial(_start, pool))(seeds, seeds < pool.num_seeds),
        jnp.zeros_like(state.num_steps), jnp.zeros_like(state.num_accepted),
        jnp.zeros_like(state.rounds),
    )
    return _select(mask, fresh, state)


def _resume_dt(t: Float[Array, ""], dt: Float[Array, ""], step_ts: Float[Array, " m"]):
    """The step to resume with: the last step a round took, i.e. the last *positive*
    difference of `(t, *step_ts)` (a rejected step may repeat a time; unused entries
    are inf); half of `dt` if it took none."""
    times = jnp.concatenate([t[None], step_ts])
    widths = times[1:] - times[:-1]
    taken = jnp.isfinite(widths) & (widths > 0)
    last = jnp.max(jnp.where(taken, jnp.arange(widths.shape[0]), -1))
    return jnp.where(last >= 0, widths[jnp.maximum(last, 0)], 0.5 * dt)


def _segment(pool: _Pool, y, t, dt, atol_i, solver_state, controller_state) -> _Segment:
    """At most `round_steps` steps from `(t, y)`, resumed from the solver and controller
    states of the previous round; saves the `ts` it passes."""
    ts, t1 = pool.ts, pool.t1
    saveat = diffrax.SaveAt(
        subs=[
            diffrax.SubSaveAt(ts=jnp.clip(ts, t, t1)),
            diffrax.SubSaveAt(t1=True),
            diffrax.SubSaveAt(steps=True, fn=lambda t, y, args: t),
        ],
        solver_state=True,
        controller_state=True,
    )
    event = stop_event(pool.system, pool.loss_threshold, pool.steady_state, pool.rtol, atol_i)
    ctrl = controller(pool.solver, pool.stepsize_controller, pool.rtol, atol_i)
    sol = diffrax.diffeqsolve(
        pool.term, pool.solver, t, t1, dt, y, saveat=saveat, stepsize_controller=ctrl,
        event=event, max_steps=pool.round_steps, throw=False, solver_state=solver_state,
        controller_state=controller_state, made_jump=False,
    )
    (saved_ts, final_ts, step_ts), (saved_ys, final_ys, _) = sol.ts, sol.ys
    stopped, at_rest = stop_flags(event, sol)
    return _Segment(
        # Saves this round wrote: times at or after its start (earlier ones were
        # clipped onto the start and belong to earlier rounds).
        saved_ys, jnp.isfinite(saved_ts) & (ts >= t), _take(final_ys, 0), final_ts[0],
        _resume_dt(t, dt, step_ts), sol.solver_state, sol.controller_state, sol.result,
        stopped, at_rest, diverged_flag(ctrl, sol.controller_state),
        sol.stats["num_steps"], sol.stats["num_accepted_steps"],
    )


def _idle(pool: _Pool, y, t, dt, atol_i, solver_state, controller_state) -> _Segment:
    """What `_segment` returns for a slot that does not step: its state unchanged,
    nothing saved, no step taken. Built from the inputs' shapes, so it costs no trace
    of the solve."""
    k = pool.ts.shape[0]
    nan = lambda x: jnp.full((k,) + x.shape, jnp.nan, x.dtype)
    nothing = jax.tree_util.tree_map(nan, y)
    no, zero = jnp.zeros((), bool), jnp.zeros((), int)
    return _Segment(nothing, jnp.zeros(k, bool), y, t, dt, solver_state, controller_state,
                    diffrax.RESULTS.successful, no, no, no, zero, zero)


def _round(pool: _Pool, state: _Slots, groups: int) -> _Segment:
    """One round of every slot: the slots split into `groups` consecutive groups, run
    one after another (`lax.map`), each a `jax.vmap` of `_segment` over its slots that
    is skipped (`lax.cond`; `_idle`) when none of them holds a seed. One traced and
    compiled segment, whatever the number of groups. Under an outer `vmap` the `cond`
    becomes a select of both branches: the same values, without the saving."""
    slots = state.seed.shape[0]
    fields = (state.y, state.t, state.dt, state.atol, state.solver_state,
              state.controller_state)

    run = lambda f: jax.vmap(partial(_segment, pool))(*f)
    if groups == 1:  # the loop runs only while a slot is running
        return run(fields)

    def group(seed, fields):
        keep = lambda f: jax.vmap(partial(_idle, pool))(*f)
        return jax.lax.cond(jnp.any(seed < pool.num_seeds), run, keep, fields)

    split = lambda x: x.reshape((groups, slots // groups) + x.shape[1:])
    grouped = jax.tree_util.tree_map(split, (state.seed, fields))
    out = jax.lax.map(lambda g: group(*g), grouped)
    return jax.tree_util.tree_map(lambda x: x.reshape((slots,) + x.shape[2:]), out)
