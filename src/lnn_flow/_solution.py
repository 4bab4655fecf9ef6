"""One solve routine and one result type for every flow.

Both flows (the factor flow of eq. 2 and the end-to-end flow of Theorem 1) are
`diffrax.diffeqsolve` calls on a *system*: an `eqx.Module` holding the loss, with a
`vector_field(t, y, args)`, and maps from the state `y` to the end-to-end matrix and to
the factors. Compilation is keyed on shapes and the static configuration only: times,
tolerances and the loss threshold are traced, so changing their values never recompiles.
"""

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from . import _checks
from . import losses as _losses
from ._network import end_to_end

Loss = Callable[[Float[Array, "dn d0"]], Float[Array, ""]]

_NONFINITE_MESSAGE = "The state became non-finite (NaN or inf): the flow diverged."
_DIVERGED_MESSAGE = (
    "The flow diverged at t = {:.6g}: its vector field is so large there that the "
    "solver's steps overflowed to non-finite states or fell below the resolution of "
    "t, until `max_steps` ran out (the state at `t_final` is the last it reached)."
)


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
    # The flow diverged: the final state is non-finite, or the solve ran out of steps
    # because its steps overflowed (non-finite trial states) or shrank below the
    # resolution of `t` (see `_FiniteGuard`). None: not tracked (then `~finite`).
    diverged: Bool[Array, ""] | None = None

    @property
    def success(self) -> Bool[Array, "*batch"]:
        """True where the solve reached `t1` or stopped (loss threshold, rest) on a
        finite state."""
        ok = (self.result == diffrax.RESULTS.successful) | (
            self.result == diffrax.RESULTS.event_occurred
        )
        return ok & self.finite & ~self._diverged()

    def _diverged(self):
        return ~self.finite if self.diverged is None else self.diverged

    @property
    def message(self) -> str | list:
        """Why the solve ended ("" on reaching `t1`); a nested list under a batch
        axis. Read on the host (not under `jit`)."""
        shape = np.shape(self.finite)
        finite = np.asarray(self.finite)
        diverged = np.broadcast_to(np.asarray(self._diverged()), shape)
        rest = np.broadcast_to(np.asarray(self.at_rest), shape)
        t_final = np.broadcast_to(np.asarray(self.t_final), shape)
        out = np.empty(shape, dtype=object)
        for i in np.ndindex(shape):
            result = jax.tree_util.tree_map(lambda v: v[i], self.result)
            if not finite[i]:
                out[i] = _NONFINITE_MESSAGE
            elif diverged[i]:
                out[i] = _DIVERGED_MESSAGE.format(float(t_final[i]))
            elif result == diffrax.RESULTS.event_occurred:
                out[i] = (
                    "Stopped: the flow came to rest (`steady_state`)."
                    if rest[i]
                    else "Stopped: the loss fell to `loss_threshold`."
                )
            elif result == diffrax.RESULTS.max_steps_reached:
                # Where it ran out, and how large the state was there: a flow running
                # to infinity in finite time (a loss unbounded below) shows here.
                size = np.abs(np.asarray(self.end_to_end_final)[i]).max(initial=0.0)
                out[i] = (
                    f"The maximum number of solver steps was reached at t = "
                    f"{float(t_final[i]):.6g}, with max|W| = {size:.3g} and loss "
                    f"{float(np.asarray(self.loss_final)[i]):.6g}. Try increasing "
                    "`max_steps`."
                )
            else:
                out[i] = diffrax.RESULTS[result]
        return out.tolist()

    def evaluate(self, t: Float[ArrayLike, ""]) -> Float[Array, "dn d0"]:
        """The end-to-end matrix at a time `t` in `[t0, t_final]` from the dense output.

        The dense output covers only the interval solved: a concrete `t` outside it
        raises a `ValueError`; a traced one (under `jit`/`vmap`) gives NaN there."""
        y = self._dense(t).evaluate(t)
        return y if self.factors is None else _product(y)

    def evaluate_factors(self, t: Float[ArrayLike, ""]) -> tuple[Float[Array, "_ _"], ...]:
        """The factors `(W_1(t), ..., W_n(t))` from the dense output (factor flow), for
        `t` in `[t0, t_final]` as in [`lnn_flow.FlowSolution.evaluate`][]."""
        if self.factors is None:
            raise ValueError("the end-to-end flow has no factors; use `evaluate`")
        return self._dense(t).evaluate(t)

    def derivative(self, t: Float[ArrayLike, ""]) -> PyTree[Float[Array, "..."]]:
        """The time derivative of the state at `t` from the dense output."""
        return self._dense(t).derivative(t)

    def _dense(self, t=None) -> diffrax.Solution:
        """The dense output; with a concrete `t`, checked to lie in `[t0, t_final]`."""
        if self.solution is None:
            raise ValueError("no dense output: solve with `dense=True`")
        if t is None:
            return self.solution
        _checks.real_scalar("t", t)
        if not isinstance(t, (int, float, np.number)):
            _checks.real_dtype("t", jnp.result_type(t))
        bounds = (t, self.solution.t0, self.t_final)
        if all(_checks.is_concrete(x) for x in bounds):
            t, t0, t_final = (np.asarray(x) for x in bounds)
            if t0.ndim == 0 and t_final.ndim == 0 and ((t < t0) | (t > t_final)).any():
                ended = "" if t_final == self.solution.t1 else (
                    f" (the solve ended at t_final = {float(t_final):.6g}: "
                    f"{self.message or 'see `message`'})"
                )
                raise ValueError(
                    f"`t` = {t} lies outside the solved interval [t0, t_final] = "
                    f"[{float(t0):.6g}, {float(t_final):.6g}]{ended}; the dense output "
                    "holds no values there"
                )
        return self.solution


def _product(ws):
    return end_to_end(tuple(ws))


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
    once ([`_Crossing`][]; a loss crossing evaluates only the loss). -1 where the
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
    init_name="the initial state",
) -> FlowSolution:
    """Validate the solve arguments, then run the compiled solve.

    `init_name` is the argument the user passed `y0` as (`"ws0"`, `"W0"`), named by
    the errors about it. A loss that is not finite at `y0` is refused here, before
    anything is solved.
    """
    options = prepare(
        y0, t0=t0, t1=t1, ts=ts, solver=solver, rtol=rtol, atol=atol,
        max_steps=max_steps, dt0=dt0, stepsize_controller=stepsize_controller,
        loss_threshold=loss_threshold, steady_state=steady_state, loss=system.loss,
    )
    if dense not in (True, False):
        raise TypeError(f"`dense` must be True or False; got {dense!r}")
    if progress_meter is not None and not isinstance(
        progress_meter, diffrax.AbstractProgressMeter
    ):
        raise TypeError(
            "`progress_meter` must be a diffrax progress meter (e.g. "
            f"diffrax.TqdmProgressMeter()); got {type(progress_meter).__name__}"
        )
    y0 = _checks.finite_initial_loss(init_name, system, y0)
    if dense:
        _warn_dense_memory(y0, options["solver"], options["max_steps"])
    if progress_meter is None:
        progress_meter = diffrax.NoProgressMeter()
    return _solve(system, y0, **options, dense=bool(dense), progress_meter=progress_meter)


def prepare(
    y0, *, t0, t1, ts, solver, rtol, atol, max_steps, dt0, stepsize_controller,
    loss_threshold, steady_state=False, loss=None,
) -> dict[str, Any]:
    """Check and normalize the solve arguments shared by every flow.

    Concrete values are checked on the host (a `ValueError`/`TypeError` naming the
    argument, before anything compiles); traced ones carry runtime checks.

    - A negative `loss_threshold` is refused when `loss` is one of `lnn_flow.losses`
      (all >= 0, so the stop could never trigger); a plain callable may be negative
      by design, so its threshold is taken as given.
    - With the default PID controller, tolerances finer than the state's dtype
      resolves are refused: the controller compares each step's error estimate, a
      difference of stage values each rounded to `eps |y|` (`eps =
      jnp.finfo(dtype).eps`: 1.2e-7 for float32, 2.2e-16 for float64), against
      `atol + rtol |y|`. Below `eps |y|` no step size passes reliably and the solve
      ends at `max_steps` (`tests/test_input_refusal.py` shows it for float32), so
      `rtol < eps` is refused unless `atol >= eps * max|y0|` covers it.
    """
    leaves = jax.tree_util.tree_leaves(y0)
    dtype = leaves[0].dtype

    def scalar(name, x):
        _checks.real_scalar(name, x)
        if isinstance(x, (int, float, np.number)):  # host values stay on the host
            return _checks.finite(name, np.asarray(x, dtype))
        return _checks.finite(name, _checks.as_float_array(name, x, ndim=0).astype(dtype))

    t0 = scalar("t0", t0)
    t1 = scalar("t1", t1)
    t1 = _checks._require("t1", t1 - t0, lambda v: ~(v > 0), "must be greater than t0", on=t1)
    rtol = _checks.non_negative("rtol", scalar("rtol", rtol))
    atol = _checks.non_negative("atol", scalar("atol", atol))
    atol = _checks._require(
        "atol", rtol + atol, lambda v: ~(v > 0), "and rtol must not both be 0", on=atol
    )
    if ts is None:
        ts = (np if isinstance(t0 + t1, np.ndarray | np.number) else jnp).stack([t0, t1])
    else:
        ts = _checks.finite("ts", _checks.as_float_array("ts", ts, ndim=1).astype(dtype))
        if ts.shape[0] < 1:
            raise ValueError("`ts` must hold at least one time")
        ts = _checks._require(
            "ts", ts, lambda v: (v[1:] < v[:-1]).any(), "must be non-decreasing"
        )
        ts = _checks._require(
            "ts",
            ts,
            lambda v: (v[0] < t0) | (v[-1] > t1),
            lambda: f"must lie within [t0, t1] = [{t0}, {t1}]; got times from "
            f"{np.asarray(ts).min()} to {np.asarray(ts).max()}"
            if all(_checks.is_concrete(x) for x in (t0, t1, ts))
            else "must lie within [t0, t1]",
        )
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)):
        raise TypeError(f"`max_steps` must be an integer; got {max_steps!r}")
    if max_steps < 1:
        raise ValueError(f"`max_steps` must be >= 1; got {max_steps}")
    if loss_threshold is not None:
        loss_threshold = scalar("loss_threshold", loss_threshold)
        if _non_negative_loss(loss):
            loss_threshold = _checks._require(
                "loss_threshold", loss_threshold, lambda v: v < 0,
                lambda: f"must be >= 0 for {type(loss).__name__} (a loss >= 0); got "
                f"{_checks._show(loss_threshold)}",
            )
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
    if stepsize_controller is not None and not isinstance(
        stepsize_controller, diffrax.AbstractStepSizeController
    ):
        raise TypeError(
            "`stepsize_controller` must be a diffrax step-size controller; got "
            f"{type(stepsize_controller).__name__}"
        )
    if adaptive and stepsize_controller is None:
        rtol = _resolvable(rtol, atol, leaves, dtype)
    return dict(
        t0=t0, t1=t1, ts=ts, rtol=rtol, atol=atol, dt0=dt0,
        loss_threshold=loss_threshold, steady_state=steady_state, solver=solver,
        stepsize_controller=stepsize_controller, max_steps=int(max_steps),
    )


def _non_negative_loss(loss) -> bool:
    return isinstance(loss, _losses.NON_NEGATIVE)


def _resolvable(rtol, atol, leaves, dtype):
    """`rtol`, refused where `atol + rtol |y|` is below the rounding `eps |y0|`."""
    eps = float(jnp.finfo(dtype).eps)
    if _checks.is_concrete(rtol) and rtol >= eps:  # the common case: nothing to check
        return rtol
    if all(_checks.is_concrete(x) for x in (rtol, atol, *leaves)):
        scale = max(float(np.abs(np.asarray(x)).max()) for x in leaves)
        if rtol < eps and atol < eps * scale:
            raise ValueError(
                f"`rtol` = {float(rtol):.3g} (with `atol` = {float(atol):.3g}) is finer "
                f"than {jnp.dtype(dtype).name} resolves (eps = {eps:.3g} relative, "
                f"{eps * scale:.3g} absolute at max|y0| = {scale:.3g}): the solve could "
                f"only end at `max_steps`; pass rtol >= {eps:.2g}"
                + (" or float64 arrays" if eps > np.finfo(np.float64).eps else "")
            )
        return rtol
    scale = jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in leaves]))
    bad = (rtol < eps) & (atol < eps * scale)
    return eqx.error_if(
        rtol, bad, f"`rtol` and `atol` are finer than {jnp.dtype(dtype).name} resolves "
        f"(eps = {eps:.3g}): pass rtol >= {eps:.2g} or float64 arrays"
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
    error estimate); adaptive ones behind [`_FiniteGuard`][]."""
    if stepsize_controller is None:
        if not isinstance(solver, diffrax.AbstractAdaptiveSolver):
            return diffrax.ConstantStepSize()
        stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol)
    if isinstance(stepsize_controller, diffrax.AbstractAdaptiveStepSizeController):
        return _FiniteGuard(stepsize_controller)
    return stepsize_controller


class _FiniteGuard(diffrax.AbstractAdaptiveStepSizeController):
    """An adaptive controller that rejects non-finite trial steps, and records when
    the solve can no longer advance.

    diffrax's PID controller scales the error estimate by `atol + rtol max(|y0|, |y1|)`:
    a trial step that overflows to `inf` (a large init, a flow running to infinity)
    gives `inf / inf = NaN`, a NaN step size, and every later step is rejected at a
    NaN time until `max_steps` ("Try increasing `max_steps`"). Here such a candidate is
    replaced by the step's start with an infinite error, so the step is rejected and
    shrinks by the controller's `factormin`, as diffrax already does for NaN.

    The state adds a flag: since the last accepted step that advanced `t`, a trial
    overflowed or a rejected step could not shrink (its size is at the resolution of
    `t`, so `t + dt` rounds back to the same step, as near a finite-time blow-up). A
    solve that ends at `max_steps` with the flag set did not run out of budget: it
    diverged (`FlowSolution.diverged`). One `isfinite` reduction per step, no extra
    vector-field evaluation.
    """

    inner: diffrax.AbstractAdaptiveStepSizeController

    @property
    def rtol(self):
        return self.inner.rtol

    @property
    def atol(self):
        return self.inner.atol

    @property
    def norm(self):
        return self.inner.norm

    def wrap(self, direction):
        return _FiniteGuard(self.inner.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, state = self.inner.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return tnext, (state, jnp.asarray(False))

    def adapt_step_size(
        self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state
    ):
        state, stuck = controller_state
        bad = ~_all_finite(y1_candidate)
        y1_candidate = jax.tree_util.tree_map(
            lambda a, b: jnp.where(bad, a, b), y0, y1_candidate
        )
        if y_error is not None:
            y_error = jax.tree_util.tree_map(
                lambda e: jnp.where(bad, jnp.inf, e), y_error
            )
        keep, next_t0, next_t1, jump, state, result = self.inner.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, state
        )
        width = jnp.asarray(t1) - jnp.asarray(t0)
        advanced = keep & (width > 0)
        cannot_shrink = ~keep & ~(next_t1 - next_t0 < width)
        stuck = (stuck | bad | cannot_shrink | ~(width > 0)) & ~advanced
        return keep, next_t0, next_t1, jump, (state, stuck), result


def diverged_flag(stepsize_controller, controller_state) -> Bool[Array, ""]:
    """From a solve's controller and final controller state: had the solve stopped
    advancing ([`_FiniteGuard`][])? False for other controllers."""
    if not isinstance(stepsize_controller, _FiniteGuard):
        return jnp.asarray(False)
    return controller_state[1]


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
        # Bisection inside the step that crossed: it cannot fail, and the stop time
        # is on the crossed side (a Newton root find could run out of steps on a
        # crossing it had detected, and the solve then read as a failure).
        root_finder = _Crossing(rtol=rtol)
    if steady_state:
        conditions["rest"] = diffrax.steady_state_event(
            rtol=rtol, atol=atol, norm=optx.rms_norm
        )
    if not conditions:
        return None
    return diffrax.Event(conditions, root_finder=root_finder)


class _CrossingState(eqx.Module):
    lower: Float[Array, ""]  # the condition is > 0 here (before the crossing)
    upper: Float[Array, ""]  # and <= 0 here (crossed)
    done: Bool[Array, ""]


class _Crossing(optx.AbstractRootFinder):
    """Locates a diffrax event inside the step that triggered it, by bisection.

    diffrax root-finds on `t` in `[tprev, tnext]` of the step whose end triggered an
    event, with a function whose leaves are the triggered condition (the loss minus
    the threshold, or `tnext - t` for a boolean one) and zeros. Each of these is > 0
    before the event and <= 0 at `tnext`, so bisection on their sum keeps `upper` on
    the crossed side: the reported stop has `loss <= loss_threshold` (as interpolated),
    and the root find cannot fail or leave the step. It ends when the bracket is below
    `rtol |t|` or one float wide (<= 53 halvings plus `log2(1/rtol)`, within
    optimistix's default 256), and at once when the value at `tnext` is exactly 0
    (a boolean event: one evaluation of its condition).
    """

    rtol: Any
    atol: float = 0.0
    norm: ClassVar[Callable[[PyTree], Array]] = jnp.abs

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(f_struct))
        lower = jnp.asarray(options["lower"], dtype)
        upper = jnp.asarray(options["upper"], dtype)
        at_upper = _total(fn(upper, args)[0])
        return _CrossingState(lower, upper, ~(at_upper != 0))

    def step(self, fn, y, args, options, state, tags):
        mid = state.lower + 0.5 * (state.upper - state.lower)
        value, aux = fn(mid, args)
        crossed = ~(_total(value) > 0)
        lower = jnp.where(crossed, state.lower, mid)
        upper = jnp.where(crossed, mid, state.upper)
        width = upper - lower
        done = (width <= self.rtol * jnp.abs(upper)) | (mid == state.lower) | (
            mid == state.upper
        )
        return mid, _CrossingState(lower, upper, done), aux

    def terminate(self, fn, y, args, options, state, tags):
        return state.done, optx.RESULTS.successful

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return state.upper, aux, {}


def _total(tree) -> Float[Array, ""]:
    return sum(jax.tree_util.tree_leaves(tree))


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
        subs=[diffrax.SubSaveAt(ts=ts), diffrax.SubSaveAt(t1=True)],
        dense=dense,
        controller_state=True,
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
        diverged=diverged_flag(stepsize_controller, sol.controller_state),
        stop_modes=(loss_threshold is not None, steady_state),
        solution=sol if dense else None,
    )


def assemble(
    system, solver, *, ts, t0, y0, saved_ys, written, t_final, y_final, result,
    stopped, num_steps, num_accepted_steps, at_rest=False, solution=None,
    diverged=False, stop_modes=(False, False), num_starts=1,
) -> FlowSolution:
    """A `FlowSolution` from what a solve wrote: states at `ts` (rows with
    `written == False` were never reached) and the final state.

    `diverged`: the solve's last step was a rejected non-finite trial or had zero width
    ([`diverged_flag`][]); it counts only where the solve then ran out of steps.
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
    finite = _all_finite(y_final) & jnp.isfinite(final_loss)
    event = result == diffrax.RESULTS.event_occurred
    at_rest = jnp.asarray(at_rest) & event
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
        stopped=stopped & event,
        at_rest=at_rest,
        finite=finite,
        diverged=~finite | (
            jnp.asarray(diverged) & (result == diffrax.RESULTS.max_steps_reached)
        ),
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
    )


def _all_finite(tree: Any) -> Bool[Array, ""]:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
