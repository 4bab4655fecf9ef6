"""`solver="auto"` as two solves: a lean explicit start, then the switching solver.

Most of a flow's steps are not stiff (the plateau, the saddle escape), and where a
flow never turns stiff `solver="auto"` should cost what Tsit5 does. The switching
solver ([`lnn_flow._solving._switching.Switching`][]) pays on every step for its bookkeeping:
the power-iteration probes (a `lax.cond` and a field evaluation every `probe_every`
steps), the cost model's vote, the switch record and the three-way `lax.switch`. On
a CPU each small operation in a solver's loop body costs a few microseconds whatever
its size, as much as a field evaluation of a small network
(`python benchmarks/auto_overhead.py` prints both ways of running `auto` against
Tsit5).

So a `Switching` solve (with `lean_start`, the default) runs as

1. [`LeanStart`][]: Tsit5 steps and the stiffness estimate that they give for free
   (`||k_7 - k_6|| / ||y_7 - y_6||`, Hairer & Wanner, *Solving ODEs II*, IV.2: the
   Switching solver's explicit-mode estimate without its probes). Once `patience`
   accepted steps in a row have `h rho >= to_implicit` (their size is bound by
   stability, not accuracy), the step ends the solve (the handoff);
2. a second `diffeqsolve` with the switching solver from where the first stopped,
   entering the method the cost model gives a stiff step (Chebyshev steps for a
   gradient flow, implicit ones otherwise) and recording that switch. Its spectral
   radius estimate starts from `WARMUP` power iterations started on the last step's
   stage difference (dominated by the stiff modes), and is never below the stage
   estimate: a Chebyshev step with an underestimated radius is unstable.

Controller state (one step budget for both solves: [`lnn_flow._solving._controller._FiniteGuard`][]),
last step size and FSAL field carry over, and the saves of both are stitched as the
pool stitches its rounds ([`lnn_flow._batching._slots`][]). A solve that never hands off runs
the first part only (a `lax.cond`; under `vmap` the second runs with zero length for
members that did not hand off). Dense output (`dense=True`) keeps the single switching
solve: one `diffrax.Solution` interpolates it.
"""

from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import equinox.internal as eqxi
from jaxtyping import Array, Bool, Float, Int, PyTree

from ._chebyshev import power_step, random_direction
from ._controller import controller, diverged_flag
from ._events import stop_flags
from ._switching import (
    EXPLICIT,
    TSIT5_EVALS,
    Switching,
    _norm,
    _SwitchState,
    explicit_stiffness,
)

# Power iterations at the handoff, from the last step's stage difference.
WARMUP = 10
# The first solve's result at a handoff: a code Tsit5 and the PID controller never
# give, so it cannot be mistaken for a real stop.
HANDOFF = diffrax.RESULTS.max_steps_rejected


class _LeanState(eqx.Module):
    inner: PyTree[Array]  # Tsit5's FSAL state: (first step, f(y0))
    streak: Int[Array, ""]  # stiff steps in a row
    stage_difference: PyTree[Array]  # the last step's k_7 - k_6
    rho: Float[Array, ""]  # the last step's stage estimate h rho / h
    last_h: Float[Array, ""]  # the last step's width


class LeanStart(diffrax.AbstractAdaptiveSolver):
    """Tsit5 with the free stiffness vote of [`Switching`][] (module docstring): it
    ends its solve with `HANDOFF` after `switching.patience` stiff steps in a row.
    Its state is what the handoff needs, no more: every leaf of a solver state is
    carried and selected on every step."""

    switching: Switching

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.Tsit5.interpolation_cls

    def order(self, terms):
        return 5

    def error_order(self, terms):
        return self.switching.error_order(terms)

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def init(self, terms, t0, t1, y0, args) -> _LeanState:
        inner = diffrax.Tsit5().init(terms, t0, t1, y0, args)
        zero = jnp.zeros((), jax.tree_util.tree_leaves(y0)[0].dtype)
        return _LeanState(inner, jnp.asarray(0, jnp.int32),
                          jax.tree_util.tree_map(jnp.zeros_like, y0), zero, zero)

    def step(self, terms, t0, t1, y0, args, solver_state: _LeanState, made_jump):
        y1, err, info, inner, result = diffrax.Tsit5().step(
            terms, t0, t1, y0, args, solver_state.inner, made_jump)
        h = jnp.abs(t1 - t0)
        h_rho = explicit_stiffness(info["k"])
        streak = jnp.where(h_rho >= self.switching.to_implicit, solver_state.streak + 1, 0)
        result = diffrax.RESULTS.where(streak >= self.switching.patience, HANDOFF, result)
        state = _LeanState(
            (jnp.asarray(inner[0]), inner[1]), streak,
            jax.tree_util.tree_map(lambda k: k[6] - k[5], info["k"]),
            jnp.where(h > 0, h_rho / jnp.where(h > 0, h, 1.0), 0.0), h)
        return y1, err, info, state, result


class Run(eqx.Module):
    """What [`lnn_flow._solving._solve.assemble`][] needs from a solve, however many
    `diffeqsolve` calls it took."""

    saved_ys: PyTree[Array]
    written: Bool[Array, " k"]
    t_final: Float[Array, ""]
    y_final: PyTree[Array]
    result: diffrax.RESULTS
    stopped: Bool[Array, ""]
    at_rest: Bool[Array, ""]
    num_steps: Int[Array, ""]
    num_accepted_steps: Int[Array, ""]
    diverged: Bool[Array, ""]
    solver_state: PyTree[Array]
    controller_state: PyTree[Array]


def run(sol: diffrax.Solution, event, ctrl) -> Run:
    """A `Run` from one `diffeqsolve` saved at `SubSaveAt(ts)` and `SubSaveAt(t1)`."""
    (saved_ts, final_ts), (saved_ys, final_ys) = sol.ts, sol.ys
    stopped, at_rest = stop_flags(event, sol)
    return Run(saved_ys, jnp.isfinite(saved_ts), final_ts[0],
               jax.tree_util.tree_map(lambda x: x[0], final_ys), sol.result, stopped,
               at_rest, sol.stats["num_steps"], sol.stats["num_accepted_steps"],
               diverged_flag(ctrl, sol.controller_state), sol.solver_state,
               sol.controller_state)


def two_phase_solve(
    term, solver: Switching, t0, t1, dt0, y0, ts, *, stepsize_controller, rtol, atol,
    event, max_steps: int, progress_meter,
) -> Run:
    """`solver` from `(t0, y0)` to `t1` as [`LeanStart`][] then `solver` (module
    docstring), saved at `ts`."""
    saveat = lambda times: diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(ts=times), diffrax.SubSaveAt(t1=True)],
        controller_state=True, solver_state=True)
    lean_ctrl = controller(solver, stepsize_controller, rtol, atol)
    ctrl = controller(solver, stepsize_controller, rtol, atol, max_steps)
    solve = lambda solver_, ctrl_, t0_, t1_, dt0_, y0_, times, **resume: diffrax.diffeqsolve(
        term, solver_, t0_, t1_, dt0_, y0_, saveat=saveat(times),
        stepsize_controller=ctrl_, event=event, max_steps=max_steps, throw=False,
        progress_meter=progress_meter, **resume)
    first = run(solve(LeanStart(solver), lean_ctrl, t0, t1, dt0, y0, ts), event, lean_ctrl)
    handoff = first.result == HANDOFF

    def second(_):
        t, y, lean = first.t_final, first.y_final, first.solver_state
        state = _enter_stiff(solver, term, t, y, lean, first.num_accepted_steps)
        end = jnp.where(handoff, t1, t)  # zero length where vmap runs it for nothing
        # The budget counts the first solve's steps (`_FiniteGuard.max_steps`).
        counted = (*first.controller_state, jnp.asarray(first.num_steps, jnp.int32))
        sol = solve(solver, ctrl, t, end, lean.last_h, y, jnp.clip(ts, t, end),
                    solver_state=state, controller_state=counted, made_jump=False)
        later = run(sol, event, ctrl)
        written = later.written & (ts >= t)
        rows = lambda x: written.reshape((-1,) + (1,) * (x.ndim - 1))
        result = later.result
        # The shared budget ran out on the step that reached t1: finished.
        result = diffrax.RESULTS.where(
            (result == diffrax.RESULTS.max_steps_reached) & (later.t_final >= t1),
            diffrax.RESULTS.successful, result)
        return eqx.tree_at(
            lambda r: (r.saved_ys, r.written, r.result, r.num_steps, r.num_accepted_steps,
                       r.controller_state),
            later,
            (jax.tree_util.tree_map(lambda a, b: jnp.where(rows(a), a, b),
                                    later.saved_ys, first.saved_ys),
             written | first.written, result, first.num_steps + later.num_steps,
             first.num_accepted_steps + later.num_accepted_steps,
             first.controller_state),
        )

    def lean_only(_):
        state = solver.fresh_state(first.solver_state.inner, first.y_final)
        num = jnp.asarray(first.num_accepted_steps, jnp.int32)
        return eqx.tree_at(lambda r: r.solver_state, first, eqx.tree_at(
            lambda s: (s.num_steps, s.num_evals), state, (num, TSIT5_EVALS * num + 1)))

    first_only = lean_only(None)
    out = jax.lax.cond(eqxi.unvmap_any(handoff), second, lambda _: first_only, None)
    # Under vmap both branches ran: members that did not hand off keep the first.
    return jax.tree_util.tree_map(lambda a, b: jnp.where(handoff, a, b), out, first_only)


def _enter_stiff(solver: Switching, term, t, y, lean: _LeanState, num_accepted) -> _SwitchState:
    """The switching solver's state at a handoff: in the mode the cost model gives a
    stiff explicit step, that switch recorded, the steps so far counted (Tsit5's six
    field evaluations each, one more at the start), and a spectral radius from
    `WARMUP` power iterations on the stage difference, at least the stage estimate."""
    vf = lambda t_, y_: term.vf(t_, y_, None)
    fy = lean.inner[1]
    norm = _norm(lean.stage_difference)
    direction = jax.lax.cond(
        norm > 0,
        lambda: jax.tree_util.tree_map(lambda v: v / jnp.where(norm > 0, norm, 1.0),
                                       lean.stage_difference),
        lambda: random_direction(y))
    direction, rho = jax.lax.fori_loop(
        0, WARMUP, lambda _, c: power_step(vf, t, y, fy, *c),
        (direction, jnp.zeros_like(lean.rho)))
    mode = solver._proposal(jnp.asarray(EXPLICIT), jnp.asarray(jnp.inf, lean.rho.dtype),
                            jnp.asarray(0, jnp.int32))
    state = solver.fresh_state(lean.inner, y)
    num_accepted = jnp.asarray(num_accepted, jnp.int32)
    return eqx.tree_at(
        lambda s: (s.mode, s.proposal, s.direction, s.rho, s.num_steps, s.num_evals,
                   s.num_switches, s.switch_times, s.switch_modes),
        state,
        (mode, mode, direction, jnp.maximum(rho, lean.rho), num_accepted,
         TSIT5_EVALS * num_accepted + 1 + WARMUP, jnp.asarray(1, jnp.int32),
         state.switch_times.at[0].set(t), state.switch_modes.at[0].set(mode)),
    )
