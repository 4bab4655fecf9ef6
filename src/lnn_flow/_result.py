"""The one result type of every flow: [`FlowSolution`][] and its [`SolverStats`][].

Shapes are written for a general end-to-end object of shape `E` (a `(d_n, d_0)`
matrix today, a tensor for the factorizations of Section 5 of the notes): with `k`
save times, `end_to_end` has shape `(k, *E)` and `end_to_end_final` shape `E`. Every
field is what the system's per-state maps ([`lnn_flow._system.AbstractFlowSystem`][])
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

from . import _checks
from ._flat import FlatLayout
from ._network import end_to_end

if TYPE_CHECKING:
    from ._switching import SwitchRecord

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
