"""The one result type of every flow: [`FlowSolution`][] and its [`SolverStats`][].

Shapes are written for a general end-to-end object of shape `E` (a `(d_n, d_0)`
matrix today, a tensor for the factorizations of Section 5 of the notes): with `k`
save times, `end_to_end` has shape `(k, *E)` and `end_to_end_final` shape `E`. Every
field is what the system's per-state maps ([`lnn_flow._solving._system.AbstractFlowSystem`][])
give, applied to each save.
"""

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._core import _checks
from ._flat import FlatLayout
from .._maths._network import end_to_end

if TYPE_CHECKING:
    from ._switching import SwitchRecord

_NONFINITE_STATE_MESSAGE = (
    "The state became non-finite (NaN or inf) by t = {:.6g}: the flow diverged."
)
_NONFINITE_LOSS_MESSAGE = (
    "The loss is not finite ({}) at t = {:.6g}, at a bounded state (max|W| = {:.3g}): "
    "the loss function returned it there; the flow did not diverge."
)
_BLOCKED_MESSAGE = (
    "The solve stopped at t = {:.6g}, at a bounded state (max|W| = {:.3g}, loss "
    "{:.6g}): the loss or its gradient is not finite (NaN or inf) just past it, so "
    "every step beyond was rejected down to the resolution of t. The flow did not "
    "diverge: check the loss there."
)
_DIVERGED_MESSAGE = (
    "The flow diverged at t = {:.6g} (max|W| = {:.3g}): its vector field is so large "
    "there that the solver's steps overflowed to non-finite states or fell below the "
    "resolution of t (the state at `t_final` is the last it reached)."
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


class PoolStats(eqx.Module):
    """Work of a refilled solve ([`lnn_flow.solve_pool`][]):
    `utilization = member_steps / slot_steps`."""

    rounds: Int[Array, ""]
    # Steps the members took (accepted and rejected), summed.
    member_steps: Int[Array, ""]
    # Steps the slots were stepped for: in each round, every group of slots that ran
    # costs its width times the steps of its slowest member (a vmapped while loop runs
    # until its last member stops); a group with no running member is skipped.
    slot_steps: Int[Array, ""]

    @property
    def utilization(self) -> Float[Array, ""]:
        return self.member_steps / jnp.maximum(self.slot_steps, 1)


class FlowSolution(eqx.Module):
    """A solved flow, saved at `ts`.

    Saves at times the solve did not reach (after a `loss_threshold` stop, or after a
    failure) hold NaN and have `reached == False`; the state where the solve ended is in
    the `*_final` fields (non-finite, with `finite == False`, when a fixed-step solver
    stepped into NaN). Under `jax.vmap` every field gains a leading batch axis.
    """

    ts: Float[Array, " k"]
    # (k, *E): the end-to-end object at each save (E = (d_n, d_0) for a matrix).
    end_to_end: Float[Array, "k *E"]
    loss: Float[Array, " k"]
    # (W_1(t), ..., W_n(t)) each of shape (k, d_j, d_{j-1}); None for the end-to-end flow.
    factors: tuple[Float[Array, "k _ _"], ...] | None
    reached: Bool[Array, " k"]
    t_final: Float[Array, ""]
    end_to_end_final: Float[Array, "*E"]
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
    # How the dense output's flat vector holds the structured state (`_flat`).
    layout: FlatLayout | None = None
    # The work of the refilled slots, summed over devices: set by `solve_pool` only,
    # its totals repeated for every member (each field has the batch axis).
    pool: PoolStats | None = None
    # The system's `combine` (`_system`): factors -> the end-to-end object.
    combine: Callable[..., Array] = eqx.field(static=True, default=None)
    # `solver="auto"`: which method ran over which interval (`_switching.SwitchRecord`,
    # `.intervals(t_final)`); None for other solvers.
    switching: "SwitchRecord | None" = None
    # The solve could not step past `t_final` although the state there is bounded: the
    # loss or its gradient is not finite just past it (`_solve.assemble`). None: not
    # tracked.
    blocked: Bool[Array, ""] | None = None
    # The solve's `loss_threshold` (None: none given), for `message`.
    loss_threshold: Float[Array, ""] | None = None

    def __iter__(self):
        # `solution, stats = lf.solve_pool(...)`, the shape before `pool` was a field.
        if self.pool is None:
            raise TypeError("a FlowSolution is not iterable")
        warnings.warn(
            "`solution, stats = solve_pool(...)` is deprecated: solve_pool returns the "
            "solution, as solve_batch does; its PoolStats are `solution.pool`",
            DeprecationWarning,
            stacklevel=2,
        )
        return iter((self, jax.tree_util.tree_map(lambda x: x[0], self.pool)))

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
        """Why the solve ended, with the time and the size of the state there; "" on
        reaching `t1` (unless short of a given `loss_threshold`); a nested list under a
        batch axis. Read on the host (not under `jit`)."""
        shape = np.shape(self.finite)
        cast = lambda x: np.broadcast_to(np.asarray(x), shape)
        finite, t_final, loss = cast(self.finite), cast(self.t_final), cast(self.loss_final)
        diverged, rest = cast(self._diverged()), cast(self.at_rest)
        blocked = cast(False if self.blocked is None else self.blocked)
        stopped = cast(self.stopped)
        threshold = None if self.loss_threshold is None else cast(self.loss_threshold)
        W = np.asarray(self.end_to_end_final)
        out = np.empty(shape, dtype=object)
        for i in np.ndindex(shape):
            result = jax.tree_util.tree_map(lambda v: v[i], self.result)
            w = W[i].reshape(-1) if shape else W.reshape(-1)
            size = np.abs(w).max(initial=0.0) if np.all(np.isfinite(w)) else np.inf
            t, value = float(t_final[i]), float(loss[i])
            if not finite[i]:
                out[i] = (_NONFINITE_LOSS_MESSAGE.format(value, t, size)
                          if np.isfinite(size) else _NONFINITE_STATE_MESSAGE.format(t))
            elif blocked[i]:
                out[i] = _BLOCKED_MESSAGE.format(t, size, value)
            elif diverged[i]:
                out[i] = _DIVERGED_MESSAGE.format(t, size)
            elif result == diffrax.RESULTS.event_occurred:
                out[i] = (
                    "Stopped: the flow came to rest (`steady_state`)."
                    if rest[i]
                    else "Stopped: the loss fell to `loss_threshold`."
                )
            elif result == diffrax.RESULTS.max_steps_reached:
                # Where it ran out, and how large the state was there: a flow running
                # to infinity in finite time (a loss unbounded below) shows here.
                out[i] = (
                    f"The maximum number of solver steps was reached at t = {t:.6g}, "
                    f"with max|W| = {size:.3g} and loss {value:.6g}. Try increasing "
                    "`max_steps`."
                )
            elif result != diffrax.RESULTS.successful:
                out[i] = diffrax.RESULTS[result]
            elif threshold is not None and not stopped[i]:
                out[i] = (
                    f"Reached t1 = {t:.6g} with loss {value:.6g}, above "
                    f"`loss_threshold` = {float(threshold[i]):.6g}: the threshold was "
                    "not reached."
                )
            else:
                out[i] = ""
        return out.tolist()

    def evaluate(self, t: Float[ArrayLike, ""]) -> Float[Array, "*E"]:
        """The end-to-end object at a time `t` in `[t0, t_final]` from the dense output.

        The dense output covers only the interval solved: a concrete `t` outside it
        raises a `ValueError`; a traced one (under `jit`/`vmap`) gives NaN there."""
        y = self._state(t)
        if self.factors is None:
            return y
        return (self.combine or _product)(tuple(y))

    def evaluate_factors(self, t: Float[ArrayLike, ""]) -> tuple[Float[Array, "_ _"], ...]:
        """The factors `(W_1(t), ..., W_n(t))` from the dense output (factor flow), for
        `t` in `[t0, t_final]` as in [`lnn_flow.FlowSolution.evaluate`][]."""
        if self.factors is None:
            raise ValueError("the end-to-end flow has no factors; use `evaluate`")
        return self._state(t)

    def _state(self, t):
        """The structured state at `t` from the dense output."""
        y = self._dense(t).evaluate(t)
        return y if self.layout is None else self.layout.unravel(y)

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


def all_finite(tree) -> Bool[Array, ""]:
    """Every entry of every leaf of `tree` finite."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
