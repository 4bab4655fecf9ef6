"""The stops of a solve: the loss falling to `loss_threshold` (located by bisection
inside the step that crossed it) and, with `steady_state`, the flow coming to rest."""

from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Bool, Float, PyTree


def stop_event(system, loss_threshold, steady_state, rtol, atol) -> diffrax.Event | None:
    """Stop where the loss falls to `loss_threshold` (None: never) and, with
    `steady_state`, once `|dy/dt| < atol + rtol |y|` (RMS norms): the flow is at rest to
    the solve's tolerance (one more vector-field evaluation per step)."""
    conditions = {}
    root_finder = None
    if loss_threshold is not None:
        loss_of_state = system.loss_of_state
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
