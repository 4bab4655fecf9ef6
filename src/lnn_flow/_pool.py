"""Refilled batch slots: many seeds through a fixed set of vmapped solver slots.

A vmapped adaptive solve steps every member until the slowest finishes, so in a batch
of seeds with plateaus of different lengths the finished members sit idle (the
fraction of slot-steps that do work is printed by `benchmarks/refill.py` for init
scales 1e-4..1e-2, at a fixed `t1` and with a loss stop). Here `slots` members are solved together in *rounds*: each round is
one vmapped `diffrax.diffeqsolve` of at most `round_steps` steps per member, resumed
from the previous round's solver state, step-size-controller state and last step size.
Between rounds, inside the same compiled `lax.while_loop`, every member that finished
(reached `t1`, stopped at the loss threshold, failed, or spent `max_steps`) writes its
result and hands its slot to the next pending seed. When no seed is pending, the members
still running move to narrower loops (a quarter, then a sixteenth of the slots) as they
thin out. Idle slot-steps are then bounded by the rounds' ragged ends and the drain.
"""

import inspect
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree

from . import _checks
from ._end_to_end import _EndToEndSystem, default_atol, end_to_end_flow
from ._factor import _FactorSystem, factor_flow
from ._solution import (
    FlowSolution, assemble, controller, diverged_flag, prepare, stop_event, stop_flags,
)
from ._spectral import decomposition_name

_MAX_STEPS = diffrax.RESULTS.max_steps_reached
_MIN_DRAIN_WIDTH = 1


class PoolStats(eqx.Module):
    """Work of a refilled solve: `utilization = member_steps / slot_steps`."""

    rounds: Int[Array, ""]
    # Steps the members took (accepted and rejected), summed.
    member_steps: Int[Array, ""]
    # Steps the slots were stepped for: each round costs `slots` times the steps of its
    # slowest member, as a vmapped while loop runs until its last member stops.
    slot_steps: Int[Array, ""]

    @property
    def utilization(self) -> Float[Array, ""]:
        return self.member_steps / jnp.maximum(self.slot_steps, 1)


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


def _take(tree, index):
    return jax.tree_util.tree_map(lambda x: x[index], tree)


def _select(mask, new, old):
    def one(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)

    return jax.tree_util.tree_map(one, new, old)


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
) -> tuple[FlowSolution, PoolStats]:
    """Solve `system` from every member of `init` (leading seed axis) through `slots`
    refilled slots; traceable, so it runs inside `jit` and `shard_map`.

    Member `i` of the result is `init[i]` solved alone, with the same tolerances; its
    steps differ from an uninterrupted solve only where a round ends (the next round
    restarts the controller from the last accepted step). `max_steps` is checked
    between rounds, so a member may take up to `round_steps - 1` more.
    """
    num_seeds = jax.tree_util.tree_leaves(init)[0].shape[0]
    slots = min(slots, num_seeds)
    term = diffrax.ODETerm(system.vector_field)

    def start(seed, active):
        """Fresh solver and controller state for `seed` (empty slots idle at t1)."""
        y = _take(init, jnp.minimum(seed, num_seeds - 1))
        atol_i = atol[jnp.minimum(seed, num_seeds - 1)]
        ctrl = controller(solver, stepsize_controller, rtol, atol_i)
        tnext, controller_state = ctrl.init(
            term, t0, t1, y, dt0, None, solver.func, solver.error_order(term)
        )
        t = jnp.where(active, t0, t1)
        solver_state = solver.init(term, t, tnext, y, None)
        return y, t, tnext - t0, atol_i, solver_state, controller_state

    def refill(slots_state: _Slots, mask, seeds):
        y, t, dt, atol_i, solver_state, controller_state = jax.vmap(start)(
            seeds, seeds < num_seeds
        )
        fresh = _Slots(
            seeds, y, t, dt, atol_i, solver_state, controller_state,
            jnp.zeros_like(slots_state.num_steps), jnp.zeros_like(slots_state.num_accepted),
            jnp.zeros_like(slots_state.rounds),
        )
        return _select(mask, fresh, slots_state)

    def segment(y, t, dt, atol_i, solver_state, controller_state):
        saveat = diffrax.SaveAt(
            subs=[
                diffrax.SubSaveAt(ts=jnp.clip(ts, t, t1)),
                diffrax.SubSaveAt(t1=True),
                diffrax.SubSaveAt(steps=True, fn=lambda t, y, args: t),
            ],
            solver_state=True,
            controller_state=True,
        )
        event = stop_event(system, loss_threshold, steady_state, rtol, atol_i)
        ctrl = controller(solver, stepsize_controller, rtol, atol_i)
        sol = diffrax.diffeqsolve(
            term,
            solver,
            t,
            t1,
            dt,
            y,
            saveat=saveat,
            stepsize_controller=ctrl,
            event=event,
            max_steps=round_steps,
            throw=False,
            solver_state=solver_state,
            controller_state=controller_state,
            made_jump=False,
        )
        (saved_ts, final_ts, step_ts), (saved_ys, final_ys, _) = sol.ts, sol.ys
        # Saves this round wrote: times at or after its start (earlier ones were
        # clipped onto the start and belong to earlier rounds).
        written = jnp.isfinite(saved_ts) & (ts >= t)
        # The next round starts from the last step this one took (a rejected step
        # may repeat a time, hence the last *positive* difference).
        times = jnp.concatenate([t[None], step_ts])
        widths = times[1:] - times[:-1]
        taken = jnp.isfinite(widths) & (widths > 0)
        last = jnp.max(jnp.where(taken, jnp.arange(widths.shape[0]), -1))
        next_dt = jnp.where(last >= 0, widths[jnp.maximum(last, 0)], 0.5 * dt)
        stopped, at_rest = stop_flags(event, sol)
        return (
            saved_ys, written, _take(final_ys, 0), final_ts[0], next_dt,
            sol.solver_state, sol.controller_state, sol.result, stopped, at_rest,
            diverged_flag(ctrl, sol.controller_state),
            sol.stats["num_steps"], sol.stats["num_accepted_steps"],
        )

    def body(carry):
        state, results, next_seed, stats = carry
        width = state.seed.shape[0]
        (saved_ys, written, y, t, dt, solver_state, controller_state, result, stopped,
         at_rest, diverged, steps, accepted) = jax.vmap(segment)(
            state.y, state.t, state.dt, state.atol, state.solver_state,
            state.controller_state,
        )
        active = state.seed < num_seeds
        steps = jnp.where(active, steps, 0)
        state = _Slots(
            state.seed, y, t, dt, state.atol, solver_state, controller_state,
            state.num_steps + steps, state.num_accepted + jnp.where(active, accepted, 0),
            state.rounds + active,
        )
        finite = jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1)
                       for x in jax.tree_util.tree_leaves(y)]),
            axis=0,
        )
        ran_out = state.num_steps >= max_steps
        done = active & ((result != _MAX_STEPS) | ran_out | ~finite)
        # A member whose steps overflowed or stalled (`diverged`) keeps its rounds
        # until `max_steps`, as a solve alone would.
        # Write saves of every active slot, finals of finished ones; empty slots'
        # index is out of range and dropped.
        seed = jnp.where(active, state.seed, num_seeds)
        old = _take(results.saved, jnp.minimum(seed, num_seeds - 1))
        merged = _select(written, saved_ys, old)
        put = lambda a, x: a.at[seed].set(x, mode="drop")
        put_done = lambda a, x: a.at[jnp.where(done, seed, num_seeds)].set(x, mode="drop")
        results = _Results(
            jax.tree_util.tree_map(put, results.saved, merged),
            put(results.written, written | results.written[jnp.minimum(seed, num_seeds - 1)]),
            jax.tree_util.tree_map(put_done, results.y_final, y),
            put_done(results.t_final, t),
            jax.tree_util.tree_map(put_done, results.result, result),
            put_done(results.stopped, stopped),
            put_done(results.at_rest, at_rest),
            put_done(results.diverged, diverged),
            put_done(results.num_steps, state.num_steps),
            put_done(results.num_accepted, state.num_accepted),
            put_done(results.rounds, state.rounds),
        )
        order = jnp.cumsum(done) - 1
        new_seeds = jnp.where(done, jnp.minimum(next_seed + order, num_seeds), state.seed)
        state = jax.lax.cond(
            jnp.any(done), lambda s: refill(s, done, new_seeds), lambda s: s, state
        )
        stats = PoolStats(
            stats.rounds + 1,
            stats.member_steps + jnp.sum(steps),
            stats.slot_steps + width * jnp.max(steps),
        )
        return state, results, next_seed + jnp.sum(done), stats

    first = jnp.arange(slots)
    state = _Slots(
        first,
        *jax.vmap(start)(first, jnp.ones(slots, bool)),
        jnp.zeros(slots, int),
        jnp.zeros(slots, int),
        jnp.zeros(slots, int),
    )
    k = ts.shape[0]
    blank = lambda x: jnp.full((num_seeds, k) + x.shape[1:], jnp.nan, x.dtype)
    results = _Results(
        jax.tree_util.tree_map(blank, init),
        jnp.zeros((num_seeds, k), bool),
        jax.tree_util.tree_map(lambda x: jnp.full_like(x, jnp.nan), init),
        jnp.full(num_seeds, jnp.nan),
        jax.tree_util.tree_map(
            lambda v: jnp.full(num_seeds, v), diffrax.RESULTS.successful
        ),
        jnp.zeros(num_seeds, bool),
        jnp.zeros(num_seeds, bool),
        jnp.zeros(num_seeds, bool),
        jnp.zeros(num_seeds, int),
        jnp.zeros(num_seeds, int),
        jnp.zeros(num_seeds, int),
    )
    zero = jnp.zeros((), int)
    carry = (state, results, jnp.asarray(slots), PoolStats(zero, zero, zero))
    # Drain: once no seed is pending and the members still running fit in a quarter
    # of the slots, they move to a loop that many slots wide (up to twice), so the
    # last long members do not keep all the slots stepping.
    widths = [slots]
    while len(widths) < 3 and widths[-1] >= 4 * _MIN_DRAIN_WIDTH:
        widths.append(widths[-1] // 4)
    for narrower in widths[1:] + [0]:

        def cond(carry, narrower=narrower):
            state, _, next_seed, _ = carry
            running = jnp.sum(state.seed < num_seeds)
            return (running > 0) & ((next_seed < num_seeds) | (running > narrower))

        carry = jax.lax.while_loop(cond, body, carry)
        if narrower:
            state = carry[0]
            keep = jnp.argsort(state.seed >= num_seeds, stable=True)[:narrower]
            carry = (_take(state, keep),) + carry[1:]
    _, results, _, stats = carry

    def one(y0, saved, written, y_final, t_final, result, stopped, at_rest, diverged,
            steps, accepted, rounds):
        return assemble(
            system, solver, ts=ts, t0=t0, y0=y0, saved_ys=saved, written=written,
            t_final=t_final, y_final=y_final, result=result, stopped=stopped,
            at_rest=at_rest, num_steps=steps, num_accepted_steps=accepted,
            diverged=diverged, stop_modes=(loss_threshold is not None, steady_state),
            num_starts=rounds,
        )

    solution = jax.vmap(one)(
        init, results.saved, results.written, results.y_final, results.t_final,
        results.result, results.stopped, results.at_rest, results.diverged,
        results.num_steps, results.num_accepted, results.rounds,
    )
    return solution, stats


POOL_METHODS = {"factor": factor_flow, "end_to_end": end_to_end_flow}


def pool_problem(method: str, loss, init, args, kwargs):
    """The system, per-member `atol` and solve options of
    `method(loss, member, *args, **kwargs)` for a pooled solve."""
    if method not in POOL_METHODS:
        raise ValueError(
            f"`method` must be one of {sorted(POOL_METHODS)} for a refilled solve; "
            f"got {method!r}"
        )
    flow = POOL_METHODS[method]
    first = _take(init, 0)
    try:
        bound = inspect.signature(flow).bind(loss, first, *args, **kwargs)
    except TypeError as err:
        raise TypeError(f"arguments of `{flow.__name__}`: {err}") from None
    bound.apply_defaults()
    a = bound.arguments
    if a["dense"] or a["progress_meter"] is not None:
        raise ValueError("a refilled solve supports neither `dense` nor `progress_meter`")
    # `init` itself (real, finite per member, a finite initial loss) is checked on the
    # host by `solve_pool` before tracing; here every value may be traced.
    if method == "factor":
        ws = _checks.factors(first, "init")
        _checks.fits_loss(loss, (ws[-1].shape[0], ws[0].shape[1]), "init")
        system = _FactorSystem(loss, len(ws))
    else:
        _checks.fits_loss(loss, first.shape, "init")
        system = _EndToEndSystem(
            loss, _checks.depth(a["depth"]), decomposition_name(a["decomposition"])
        )
    options = prepare(
        first, t0=a["t0"], t1=a["t1"], ts=a["ts"], solver=a["solver"], rtol=a["rtol"],
        atol=1e-10 if a["atol"] is None else a["atol"], max_steps=a["max_steps"], dt0=a["dt0"],
        stepsize_controller=a["stepsize_controller"],
        loss_threshold=a["loss_threshold"], steady_state=a["steady_state"], loss=loss,
    )
    # Host values (checked without dispatch by `prepare`) become JAX arrays here.
    options = {
        k: jnp.asarray(v) if isinstance(v, (np.ndarray, np.number)) else v
        for k, v in options.items()
    }
    atol = options.pop("atol")
    if a["atol"] is None:  # the end-to-end default scales with each member's |W0|
        atols = jax.vmap(default_atol, in_axes=(0, None))(init, options["rtol"])
    else:
        atols = jnp.full(jax.tree_util.tree_leaves(init)[0].shape[0], atol)
    return system, atols, options
