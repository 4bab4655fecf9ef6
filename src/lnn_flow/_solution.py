"""One solve routine and one result type for every flow.

Both flows (the factor flow of eq. 2 and the end-to-end flow of Theorem 1) are
`diffrax.diffeqsolve` calls on a *system*: an `eqx.Module` holding the loss, with a
`vector_field(t, y, args)`, and maps from the state `y` to the end-to-end matrix and to
the factors. Compilation is keyed on shapes and the static configuration only: times,
tolerances and the loss threshold are traced, so changing their values never recompiles.
"""

import warnings
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from . import _checks
from ._network import end_to_end

Loss = Callable[[Float[Array, "dn d0"]], Float[Array, ""]]

_NONFINITE_MESSAGE = "The state became non-finite (NaN or inf): the flow diverged."


class SolverStats(eqx.Module):
    """Work done by the solver."""

    num_steps: Int[Array, ""]
    num_accepted_steps: Int[Array, ""]
    num_rejected_steps: Int[Array, ""]
    # Vector-field (gradient) evaluations: stages per step (less one for FSAL methods)
    # times steps, plus the first FSAL stage. -1 where the solver is not an explicit
    # Runge-Kutta method and the count is unknown.
    num_vector_field_evals: Int[Array, ""]


class FlowSolution(eqx.Module):
    """A solved flow, saved at `ts`.

    Saves at times the solve did not reach (after a `loss_threshold` stop, or after a
    failure) hold NaN and have `reached == False`; the state where the solve ended is in
    the `*_final` fields (non-finite, with `finite == False`, when a fixed-step solver
    stepped into NaN). Under `jax.vmap` every field gains a leading batch axis.
    """

    ts: Float[Array, " k"]
    end_to_end: Float[Array, "k dn d0"]
    loss: Float[Array, " k"]
    # (W_1(t), ..., W_n(t)) each of shape (k, d_j, d_{j-1}); None for the end-to-end flow.
    factors: tuple[Float[Array, "k _ _"], ...] | None
    reached: Bool[Array, " k"]
    t_final: Float[Array, ""]
    end_to_end_final: Float[Array, "dn d0"]
    loss_final: Float[Array, ""]
    factors_final: tuple[Float[Array, "_ _"], ...] | None
    stopped: Bool[Array, ""]  # the loss fell to `loss_threshold` and the solve stopped
    # `steady_state=True` stopped the solve: |dy/dt| < atol + rtol |y| (RMS norms).
    at_rest: Bool[Array, ""]
    finite: Bool[Array, ""]
    result: diffrax.RESULTS
    stats: SolverStats
    # Dense output (`dense=True`): a `diffrax.Solution` with `.evaluate(t)`.
    solution: diffrax.Solution | None
    depth: int = eqx.field(static=True)

    @property
    def success(self) -> Bool[Array, "*batch"]:
        """True where the solve reached `t1` or stopped (loss threshold, rest)."""
        ok = (self.result == diffrax.RESULTS.successful) | (
            self.result == diffrax.RESULTS.event_occurred
        )
        return ok & self.finite

    @property
    def message(self) -> str | list:
        """The solver's message ("" on success); a nested list under a batch axis."""
        codes = np.asarray(self.result._value)
        finite = np.broadcast_to(np.asarray(self.finite), codes.shape)
        table = diffrax.RESULTS._index_to_message

        def one(code, ok, rest):
            if not ok:
                return _NONFINITE_MESSAGE
            if code == diffrax.RESULTS.event_occurred._value:
                if rest:
                    return "Stopped: the flow came to rest (`steady_state`)."
                return "Stopped: the loss fell to `loss_threshold`."
            return table[int(code)]

        rest = np.broadcast_to(np.asarray(self.at_rest), codes.shape)
        return np.vectorize(one, otypes=[object])(codes, finite, rest).tolist()

    def evaluate(self, t: Float[ArrayLike, ""]) -> Float[Array, "dn d0"]:
        """The end-to-end matrix at any time `t` from the dense output."""
        y = self._dense().evaluate(t)
        return y if self.factors is None else _product(y)

    def evaluate_factors(self, t: Float[ArrayLike, ""]) -> tuple[Float[Array, "_ _"], ...]:
        """The factors `(W_1(t), ..., W_n(t))` from the dense output (factor flow)."""
        if self.factors is None:
            raise ValueError("the end-to-end flow has no factors; use `evaluate`")
        return self._dense().evaluate(t)

    def derivative(self, t: Float[ArrayLike, ""]) -> PyTree[Float[Array, "..."]]:
        """The time derivative of the state at `t` from the dense output."""
        return self._dense().derivative(t)

    def _dense(self) -> diffrax.Solution:
        if self.solution is None:
            raise ValueError("no dense output: solve with `dense=True`")
        return self.solution


def _product(ws):
    return end_to_end(tuple(ws))


def _vector_field_evals(solver: diffrax.AbstractSolver, num_steps) -> Int[Array, ""]:
    tableau = getattr(solver, "tableau", None)
    if isinstance(solver, diffrax.AbstractERK) and hasattr(tableau, "num_stages"):
        fsal = int(tableau.fsal)
        return num_steps * (tableau.num_stages - fsal) + fsal
    if isinstance(solver, diffrax.Euler):
        return num_steps
    return jnp.full_like(num_steps, -1)


def solve(
    system,
    y0: PyTree[Array],
    *,
    t0,
    t1,
    ts,
    solver,
    rtol,
    atol,
    max_steps,
    dt0,
    stepsize_controller,
    loss_threshold,
    dense,
    progress_meter,
    steady_state=False,
) -> FlowSolution:
    """Validate the solve arguments, then run the compiled solve."""
    options = prepare(
        y0, t0=t0, t1=t1, ts=ts, solver=solver, rtol=rtol, atol=atol,
        max_steps=max_steps, dt0=dt0, stepsize_controller=stepsize_controller,
        loss_threshold=loss_threshold, steady_state=steady_state,
    )
    if dense:
        _warn_dense_memory(y0, options["solver"], options["max_steps"])
    if progress_meter is None:
        progress_meter = diffrax.NoProgressMeter()
    return _solve(system, y0, **options, dense=bool(dense), progress_meter=progress_meter)


def prepare(
    y0, *, t0, t1, ts, solver, rtol, atol, max_steps, dt0, stepsize_controller,
    loss_threshold, steady_state=False,
) -> dict[str, Any]:
    """Check and normalize the solve arguments shared by every flow."""
    dtype = jax.tree_util.tree_leaves(y0)[0].dtype

    def scalar(name, x):
        if isinstance(x, (int, float, np.number)):  # host values stay on the host
            return _checks.finite(name, np.asarray(x, dtype))
        return _checks.finite(name, _checks.as_float_array(name, x, ndim=0).astype(dtype))

    t0 = scalar("t0", t0)
    t1 = scalar("t1", t1)
    _checks._require("t1", t1 - t0, lambda v: ~(v > 0), "must be greater than t0")
    rtol = _checks.non_negative("rtol", scalar("rtol", rtol))
    atol = _checks.non_negative("atol", scalar("atol", atol))
    _checks._require("atol", rtol + atol, lambda v: ~(v > 0), "and rtol must not both be 0")
    if ts is None:
        ts = (np if isinstance(t0 + t1, np.ndarray | np.number) else jnp).stack([t0, t1])
    else:
        ts = _checks.finite("ts", _checks.as_float_array("ts", ts, ndim=1).astype(dtype))
        if ts.shape[0] < 1:
            raise ValueError("`ts` must hold at least one time")
        _checks._require(
            "ts", ts, lambda v: (v[1:] < v[:-1]).any(), "must be non-decreasing"
        )
        _checks._require(
            "ts",
            ts,
            lambda v: (v[0] < t0) | (v[-1] > t1),
            "must lie within [t0, t1]",
        )
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)):
        raise TypeError(f"`max_steps` must be an integer; got {max_steps!r}")
    if max_steps < 1:
        raise ValueError(f"`max_steps` must be >= 1; got {max_steps}")
    if loss_threshold is not None:
        loss_threshold = scalar("loss_threshold", loss_threshold)
    if not isinstance(steady_state, bool):
        raise TypeError(f"`steady_state` must be True or False; got {steady_state!r}")
    solver = diffrax.Tsit5() if solver is None else solver
    if not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"`solver` must be a diffrax solver; got {type(solver).__name__}")
    adaptive = isinstance(solver, diffrax.AbstractAdaptiveSolver)
    if dt0 is not None:
        dt0 = _checks.positive("dt0", scalar("dt0", dt0))
    elif not adaptive and stepsize_controller is None:
        raise ValueError(
            f"`dt0` is required: {type(solver).__name__} has no error estimate, so it "
            "takes constant steps of size dt0"
        )
    return dict(
        t0=t0, t1=t1, ts=ts, rtol=rtol, atol=atol, dt0=dt0,
        loss_threshold=loss_threshold, steady_state=steady_state, solver=solver,
        stepsize_controller=stepsize_controller, max_steps=int(max_steps),
    )


_DENSE_WARN_BYTES = 2 * 2**30


def _warn_dense_memory(y0, solver, max_steps: int) -> None:
    """Dense output keeps every step's interpolation data in buffers sized by
    `max_steps` up front: warn before a large allocation."""
    state = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(y0))
    stages = getattr(getattr(solver, "tableau", None), "num_stages", 7)
    estimate = max_steps * state * (stages + 2)
    if estimate > _DENSE_WARN_BYTES:
        warnings.warn(
            f"dense=True reserves about {estimate / 2**30:.1f} GiB for max_steps="
            f"{max_steps}; pass a smaller max_steps if the solve needs fewer steps",
            stacklevel=4,
        )


def controller(solver, stepsize_controller, rtol, atol):
    """The given controller, else PID at `rtol`/`atol` (constant steps without an
    error estimate)."""
    if stepsize_controller is not None:
        return stepsize_controller
    if isinstance(solver, diffrax.AbstractAdaptiveSolver):
        return diffrax.PIDController(rtol=rtol, atol=atol)
    return diffrax.ConstantStepSize()


def stop_event(system, loss_threshold, steady_state, rtol, atol) -> diffrax.Event | None:
    """Stop where the loss falls to `loss_threshold` (None: never) and, with
    `steady_state`, once `|dy/dt| < atol + rtol |y|` (RMS norms): the flow is at rest to
    the solve's tolerance (one more vector-field evaluation per step)."""
    conditions = {}
    root_finder = None
    if loss_threshold is not None:
        loss_of_state = lambda y: system.loss(system.end_to_end(y))
        # The crossing is located by a root find; the boolean stops at t0 when the
        # loss starts at or below the threshold (a crossing needs a sign change).
        conditions["loss"] = (
            lambda t, y, args, **kwargs: loss_of_state(y) - loss_threshold,
            lambda t, y, args, **kwargs: loss_of_state(y) <= loss_threshold,
        )
        # Newton's Cauchy test also asks |loss - threshold| < atol: the state's atol
        # can be far below the loss's rounding (the end-to-end flow of a small init),
        # so the loss is located to rtol of the threshold instead.
        root_finder = optx.Newton(rtol=rtol, atol=atol + rtol * jnp.abs(loss_threshold))
    if steady_state:
        conditions["rest"] = diffrax.steady_state_event(
            rtol=rtol, atol=atol, norm=optx.rms_norm
        )
    if not conditions:
        return None
    return diffrax.Event(conditions, root_finder=root_finder)


def stop_flags(event, sol) -> tuple[Bool[Array, ""], Bool[Array, ""]]:
    """(stopped at the loss threshold, stopped at rest) from a solve's event mask."""
    if event is None:
        return jnp.asarray(False), jnp.asarray(False)
    flag = lambda name: jnp.any(
        jnp.stack(jax.tree_util.tree_leaves(sol.event_mask.get(name, False)))
    )
    return flag("loss"), flag("rest")


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
) -> FlowSolution:
    stepsize_controller = controller(solver, stepsize_controller, rtol, atol)
    event = stop_event(system, loss_threshold, steady_state, rtol, atol)
    saveat = diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(ts=ts), diffrax.SubSaveAt(t1=True)], dense=dense
    )
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(system.vector_field),
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
    (saved_ts, final_ts), (saved_ys, final_ys) = sol.ts, sol.ys
    stopped, at_rest = stop_flags(event, sol)
    return assemble(
        system,
        solver,
        ts=ts,
        t0=t0,
        y0=y0,
        saved_ys=saved_ys,
        written=jnp.isfinite(saved_ts),
        t_final=final_ts[0],
        y_final=jax.tree_util.tree_map(lambda x: x[0], final_ys),
        result=sol.result,
        stopped=stopped,
        at_rest=at_rest,
        num_steps=sol.stats["num_steps"],
        num_accepted_steps=sol.stats["num_accepted_steps"],
        solution=sol if dense else None,
    )


def assemble(
    system, solver, *, ts, t0, y0, saved_ys, written, t_final, y_final, result,
    stopped, num_steps, num_accepted_steps, at_rest=False, solution=None,
) -> FlowSolution:
    """A `FlowSolution` from what a solve wrote: states at `ts` (rows with
    `written == False` were never reached) and the final state."""
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
    return FlowSolution(
        ts=ts,
        end_to_end=end_to_end,
        loss=loss,
        factors=system.factors(saved_ys),
        reached=reached,
        t_final=t_final,
        end_to_end_final=final_end_to_end,
        loss_final=final_loss,
        factors_final=system.factors(y_final),
        stopped=stopped & (result == diffrax.RESULTS.event_occurred),
        at_rest=jnp.asarray(at_rest) & (result == diffrax.RESULTS.event_occurred),
        finite=_all_finite(y_final) & jnp.isfinite(final_loss),
        result=result,
        stats=SolverStats(
            num_steps=num_steps,
            num_accepted_steps=num_accepted_steps,
            num_rejected_steps=num_steps - num_accepted_steps,
            num_vector_field_evals=_vector_field_evals(solver, num_steps),
        ),
        solution=solution,
        depth=system.depth,
    )


def _all_finite(tree: Any) -> Bool[Array, ""]:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
