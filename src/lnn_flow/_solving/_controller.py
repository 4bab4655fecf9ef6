"""The step-size controller of every solve, behind a finite guard that tells a flow
that diverged from one that only ran out of steps (`FlowSolution.diverged`).

The default is a PI controller (`PIDController(pcoeff=0.4, icoeff=0.3)`, one of the
coefficient sets diffrax's documentation suggests for problems whose error estimate
does not vary smoothly; Hairer & Wanner, *Solving ODEs II*, Sec. IV.2) rather than
diffrax's default I controller (`pcoeff=0, icoeff=1`). Gradient flows from a small
init sit on a plateau and then escape a saddle quickly (Section 4 of the notes): the
I controller grows the step on the plateau and its trajectory error then stops falling
with `rtol`, while the PI controller's keeps falling, at fewer evaluations for the
same error. `python benchmarks/controller.py` prints both next to
`jax.experimental.ode.odeint` on `benchmarks/peers.py`'s problem. Past convergence an
explicit method's step sits at its stability limit, where the PI controller rejects
fewer steps. An implicit method (and `solver="auto"` once it switches) should instead
grow its step as fast as the error allows in a stiff tail, which the I controller does
faster: with PI for every solver, `solver="auto"` took more steps on each problem of
`python benchmarks/long_horizon.py --reference`, so implicit solvers and "auto" keep
the I controller.
"""

import diffrax
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool

from ._result import all_finite

PCOEFF, ICOEFF = 0.4, 0.3


def controller(solver, stepsize_controller, rtol, atol, max_steps=None):
    """The given controller, else at `rtol`/`atol`: PI (`PCOEFF`, `ICOEFF`) for an
    explicit Runge-Kutta solver, diffrax's I controller for the others (implicit,
    `solver="auto"`), constant steps for a solver without an error estimate; adaptive
    ones behind [`_FiniteGuard`][] (`max_steps`: its step budget, see there)."""
    if stepsize_controller is None:
        if not isinstance(solver, diffrax.AbstractAdaptiveSolver):
            return diffrax.ConstantStepSize()
        if isinstance(solver, diffrax.AbstractERK):
            stepsize_controller = diffrax.PIDController(
                rtol=rtol, atol=atol, pcoeff=PCOEFF, icoeff=ICOEFF
            )
        else:
            stepsize_controller = diffrax.PIDController(rtol=rtol, atol=atol)
    if isinstance(stepsize_controller, diffrax.AbstractAdaptiveStepSizeController):
        return _FiniteGuard(stepsize_controller, max_steps)
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
    rejected step that cannot shrink would be retried forever, so the solve ends there
    at once (`RESULTS.dt_min_reached`) instead of running out of `max_steps`; either
    way, with the flag set it did not run out of budget: it diverged, or its loss is
    not finite just past the state reached ([`lnn_flow._solving._solve.assemble`][] tells
    which: `FlowSolution.diverged`, `FlowSolution.blocked`). One `isfinite` reduction
    per step, no extra vector-field evaluation.

    With `max_steps` given, the state also counts the steps tried (accepted or not),
    and reaching it ends the solve with `RESULTS.max_steps_reached`: a solve split into
    several `diffeqsolve` calls that pass the controller state on ([`lnn_flow._solving._auto`][])
    keeps ONE budget for all of them (diffrax's own `max_steps` is per call). A step
    that reaches `t1` and the budget at once is reported as such; the caller tells it
    apart by `t_final`.
    """

    inner: diffrax.AbstractAdaptiveStepSizeController
    max_steps: int | None = None

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
        return _FiniteGuard(self.inner.wrap(direction), self.max_steps)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, state = self.inner.init(terms, t0, t1, y0, dt0, args, func, error_order)
        if self.max_steps is None:
            return tnext, (state, jnp.asarray(False))
        return tnext, (state, jnp.asarray(False), jnp.asarray(0, jnp.int32))

    def adapt_step_size(
        self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state
    ):
        state, stuck, *tried = controller_state
        bad = ~all_finite(y1_candidate)
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
        # A zero-width step (dt under the resolution of t) is accepted and repeats.
        stall = (~keep & cannot_shrink) | ~(width > 0)
        result = diffrax.RESULTS.where(stall, diffrax.RESULTS.dt_min_reached, result)
        if self.max_steps is None:  # a count costs ~5% of a Tsit5 step at d = 10
            return keep, next_t0, next_t1, jump, (state, stuck), result
        tried = tried[0] + 1
        result = diffrax.RESULTS.where(
            tried >= self.max_steps, diffrax.RESULTS.max_steps_reached, result)
        return keep, next_t0, next_t1, jump, (state, stuck, tried), result


def diverged_flag(stepsize_controller, controller_state) -> Bool[Array, ""]:
    """From a solve's controller and final controller state: had the solve stopped
    advancing ([`_FiniteGuard`][])? False for other controllers."""
    if not isinstance(stepsize_controller, _FiniteGuard):
        return jnp.asarray(False)
    return controller_state[1]
