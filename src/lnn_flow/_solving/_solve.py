"""One solve path for every flow system ([`solve`][]) and one [`assemble`][] of its
result.

A flow is a `diffrax.diffeqsolve` on a system ([`lnn_flow._solving._system.AbstractFlowSystem`][]).
Compilation is keyed on shapes and the static configuration only: times, tolerances
and the loss threshold are traced, so changing their values never recompiles.
"""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, Int, PyTree

from .._core import _checks
from ._auto import run, two_phase_solve
from ._controller import controller
from ._events import stop_event
from ._flat import FlatSystem, flat
from ._options import SolveOptions, check_output, prepare, warn_dense_memory
from ._result import FlowSolution, SolverStats, all_finite
from ._switching import Switching, auto_solver, switch_record
from ._system import AbstractFlowSystem


def solve(
    system: AbstractFlowSystem,
    y0: PyTree[Array],
    t1,
    ts,
    options: SolveOptions,
    *,
    init_name: str = "the initial state",
) -> FlowSolution:
    """Validate the options, then run the compiled solve of `system` from `y0`.

    `init_name` is the argument the user passed `y0` as (`"ws0"`, `"W0"`), named by
    the errors about it. A loss that is not finite at `y0` is refused here, before
    anything is solved.
    """
    if options.atol is None:
        _checks.real_scalar("rtol", options.rtol)  # before it scales the default atol
        options = dataclasses.replace(options, atol=system.default_atol(y0, options.rtol))
    checked = prepare(y0, t1=t1, ts=ts, **options.solve_kwargs(), loss=system.loss)
    check_output(options.dense, options.progress_meter)
    if options.dense:
        warn_dense_memory(y0, checked["solver"], checked["max_steps"])
    meter = options.progress_meter
    meter = _NO_METER if meter is None else meter
    with _checks.traceable_loss():
        solution, initial_loss = _solve(
            system, y0, **checked, dense=bool(options.dense), progress_meter=meter
        )
    return _checks.refuse_nonfinite_initial_loss(init_name, initial_loss, solution)


_NO_METER = diffrax.NoProgressMeter()


@eqx.filter_jit
def _solve(
    system,
    y0,
    t0,
    t1,
    ts,
    rtol,
    atol,
    dt0,
    loss_threshold,
    *,
    solver,
    stepsize_controller,
    max_steps,
    dense,
    progress_meter,
    steady_state=False,
) -> tuple[FlowSolution, Float[Array, ""]]:
    initial_loss = system.loss_of_state(y0)
    _checks.scalar_loss(initial_loss)
    # From a non-finite loss no step is taken (t1 = t0); `solve` then refuses it.
    start = jnp.isfinite(initial_loss)
    t1, ts = jnp.where(start, t1, t0), jnp.where(start, ts, t0)
    system, y0 = flat(system, y0)  # the solver steps one vector (`_flat`)
    if isinstance(solver, str):  # "auto", checked by `prepare`
        solver = auto_solver(y0.size, rtol, atol, system.gradient_flow)
    switching = isinstance(solver, Switching)
    event = stop_event(system, loss_threshold, steady_state, rtol, atol)
    term = diffrax.ODETerm(system.vector_field)
    sol = None
    if switching and solver.lean_start and not dense:
        outcome = two_phase_solve(
            term, solver, t0, t1, dt0, y0, ts, stepsize_controller=stepsize_controller,
            rtol=rtol, atol=atol, event=event, max_steps=max_steps,
            progress_meter=progress_meter)
    else:
        stepsize_controller = controller(solver, stepsize_controller, rtol, atol)
        saveat = diffrax.SaveAt(
            subs=[diffrax.SubSaveAt(ts=ts), diffrax.SubSaveAt(t1=True)],
            dense=dense,
            controller_state=True,
            solver_state=switching,
        )
        sol = diffrax.diffeqsolve(
            term,
            solver,
            t0,
            t1,
            dt0,
            y0,
            saveat=saveat,
            stepsize_controller=stepsize_controller,
            event=event,
            max_steps=max_steps,
            throw=False,
            progress_meter=progress_meter,
        )
        outcome = run(sol, event, stepsize_controller)
    solution = assemble(
        system,
        solver,
        ts=ts,
        t0=t0,
        y0=y0,
        saved_ys=outcome.saved_ys,
        written=outcome.written,
        t_final=outcome.t_final,
        y_final=outcome.y_final,
        result=outcome.result,
        stopped=outcome.stopped,
        at_rest=outcome.at_rest,
        num_steps=outcome.num_steps,
        num_accepted_steps=outcome.num_accepted_steps,
        diverged=outcome.diverged,
        stop_modes=(loss_threshold is not None, steady_state),
        solution=sol if dense else None,
        switching=switch_record(t0, outcome.solver_state) if switching else None,
        rtol=rtol,
        loss_threshold=loss_threshold,
    )
    return solution, initial_loss


def assemble(
    system, solver, *, ts, t0, y0, saved_ys, written, t_final, y_final, result,
    stopped, num_steps, num_accepted_steps, at_rest=False, solution=None,
    diverged=False, stop_modes=(False, False), num_starts=1, switching=None, rtol=None,
    loss_threshold=None,
) -> FlowSolution:
    """A `FlowSolution` from what a solve wrote: states at `ts` (rows with
    `written == False` were never reached) and the final state.

    `diverged`: the solve's last step was a rejected non-finite trial or had zero width
    ([`diverged_flag`][lnn_flow._solving._controller.diverged_flag]); it counts only where the solve then stalled or ran out of
    steps. Such a stall on a bounded state whose field is small enough to step on
    (`eps |t| max|f(y)| <= rtol max|y|`: a step at the resolution of `t` would have
    been accepted had the field past it been finite) is `blocked`: the loss or its
    gradient is not finite just past it ([`lnn_flow._solving._system.flow_gradient`][]). A
    finite-time blow-up stalls where the field outgrows that bound: `diverged`.
    `stop_modes`: (`loss_threshold` given, `steady_state`), for the evaluation count;
    `num_starts`: how many `diffeqsolve` calls the solve was split into (the pool's
    rounds)."""
    # diffrax writes saves as it steps past them; a save at t0 is the initial state
    # even when no step was ever accepted.
    at_start = ts == t0

    def rows(mask, x):
        return mask.reshape((-1,) + (1,) * (x.ndim - 1))

    saved_ys = jax.tree_util.tree_map(
        lambda saved, start: jnp.where(rows(at_start, saved), start[None], saved),
        saved_ys,
        y0,
    )
    end_to_end = jax.vmap(system.end_to_end)(saved_ys)
    loss = jax.vmap(system.loss)(end_to_end)
    # A fixed-step solver keeps stepping through overflow and NaN: such saves count
    # as unreached, like those after a stop or a failure.
    finite_rows = jnp.isfinite(loss) & jnp.all(
        jnp.isfinite(end_to_end.reshape(end_to_end.shape[0], -1)), axis=1
    )
    reached = (written & finite_rows) | at_start
    blank = lambda x: jnp.where(rows(reached, x), x, jnp.nan)
    saved_ys, end_to_end, loss = jax.tree_util.tree_map(
        blank, (saved_ys, end_to_end, loss)
    )
    final_end_to_end = system.end_to_end(y_final)
    final_loss = system.loss(final_end_to_end)
    finite = all_finite(y_final) & jnp.isfinite(final_loss)
    event = result == diffrax.RESULTS.event_occurred
    at_rest = jnp.asarray(at_rest) & event
    stalled = jnp.asarray(diverged) & (
        (result == diffrax.RESULTS.max_steps_reached)
        | (result == diffrax.RESULTS.dt_min_reached)
    )
    # Evaluated only on a stall (a `cond`): the field count of a solve stays exact.
    blocked = stalled & finite & jax.lax.cond(
        stalled, lambda: _blocked(system, t_final, y_final, rtol), lambda: jnp.asarray(False)
    )
    return FlowSolution(
        ts=ts,
        end_to_end=end_to_end,
        loss=loss,
        # Per save, like `end_to_end`: a system's `factors` maps one state.
        factors=jax.vmap(system.factors)(saved_ys),
        reached=reached,
        t_final=t_final,
        end_to_end_final=final_end_to_end,
        loss_final=final_loss,
        factors_final=system.factors(y_final),
        # A non-finite loss never counts as crossing the threshold.
        stopped=stopped & event & jnp.isfinite(final_loss),
        at_rest=at_rest,
        finite=finite,
        diverged=~finite | (stalled & ~blocked),
        blocked=blocked,
        loss_threshold=loss_threshold,
        result=result,
        stats=SolverStats(
            num_steps=num_steps,
            num_accepted_steps=num_accepted_steps,
            num_rejected_steps=num_steps - num_accepted_steps,
            num_vector_field_evals=_vector_field_evals(
                solver, num_steps, *stop_modes, at_rest, num_starts
            ),
        ),
        solution=solution,
        depth=system.depth,
        layout=system.layout if isinstance(system, FlatSystem) else None,
        combine=(system.system if isinstance(system, FlatSystem) else system).combine,
        switching=switching,
    )


def _blocked(system, t_final, y_final, rtol) -> Bool[Array, ""]:
    """A stall at `t_final` (see [`assemble`][]) not explained by the field's size:
    the field at the state reached is non-finite, or so small that a step at the
    resolution of `t` moves the state by under `rtol` of its size."""
    if rtol is None:
        return jnp.asarray(False)
    y, _ = ravel_pytree(y_final)
    f, _ = ravel_pytree(system.vector_field(t_final, y_final, None))
    eps = jnp.finfo(y.dtype).eps
    step = eps * jnp.maximum(jnp.abs(t_final), 1.0) * jnp.max(jnp.abs(f))
    return ~jnp.all(jnp.isfinite(f)) | (step <= rtol * jnp.max(jnp.abs(y)))


def _vector_field_evals(
    solver: diffrax.AbstractSolver,
    num_steps,
    threshold: bool = False,
    steady_state: bool = False,
    at_rest=False,
    num_starts=1,
) -> Int[Array, ""]:
    """Vector-field evaluations of one solve, as run alone (under `vmap`, `lax.cond`
    branches of other members run too and are not counted).

    An explicit Runge-Kutta step evaluates its stages (less one for FSAL methods, whose
    first stage is the previous step's last; plus one at the start). `steady_state`
    evaluates the field once more per step and once at each start (diffrax's
    `steady_state_event`); the root find that locates a stop evaluates the triggered
    condition, which for a rest stop with a `loss_threshold` also given is the field,
    once ([`_Crossing`][lnn_flow._solving._events._Crossing]; a loss crossing evaluates only the loss). -1 where the
    solver is not an explicit Runge-Kutta method or Euler (unknown).
    """
    tableau = getattr(solver, "tableau", None)
    if isinstance(solver, diffrax.AbstractERK) and hasattr(tableau, "num_stages"):
        fsal = int(tableau.fsal)
        count = num_steps * (tableau.num_stages - fsal) + fsal
    elif isinstance(solver, diffrax.Euler):
        count = num_steps
    else:
        return jnp.full_like(num_steps, -1)
    if steady_state:
        count = count + num_steps + num_starts
        if threshold:
            count = count + jnp.asarray(at_rest).astype(count.dtype)
    return count
