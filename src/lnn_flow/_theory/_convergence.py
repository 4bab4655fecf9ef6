"""Definition 3 and Theorem 2: convergence under a deficiency margin.

The deficiency margin of the whitened square loss (Example 1, via Exercise 3), the
time Theorem 2 guarantees for `phi(t) - phi* <= epsilon`, the Gronwall envelope of its
proof, and the envelope checked along a solved flow. Re-exported by `lnn_flow.theory`.
"""

import warnings

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from .._core import _checks
from .._solving._result import FlowSolution
from ..losses import WhitenedSquare


def deficiency_margin(
    W: Float[ArrayLike, "dn d0"], target: Float[ArrayLike, "dn d0"]
) -> Float[Array, ""]:
    """`sigma_min(target) - ||W - target||_F`: for the whitened square loss
    `1/2 ||W - target||^2` (Example 1, via Exercise 3) `W` has deficiency margin `delta`
    (Definition 3) iff `delta` is below this value; positive means `W` has one."""
    W = _checks.as_float_array("W", W, ndim=2)
    target = _checks.as_float_array("target", target, ndim=2)
    return jnp.linalg.svd(target, compute_uv=False)[-1] - jnp.linalg.norm(W - target)


def theorem2_time(
    initial_gap, epsilon, alpha, delta, depth: int
) -> Float[Array, ""]:
    """The time after which `phi(t) - phi* <= epsilon` (Theorem 2):
    `ln((phi(0) - phi*) / epsilon) / (2 alpha delta^{2(n-1)/n})`."""
    depth = _checks.positive_int("depth", depth)
    rate = _theorem2_rate(alpha, delta, depth)
    initial_gap = _checks.positive("initial_gap", jnp.asarray(initial_gap, float))
    epsilon = _checks.positive("epsilon", jnp.asarray(epsilon, float))
    return jnp.log(initial_gap / epsilon) / rate


def _theorem2_rate(alpha, delta, depth: int):
    alpha = _checks.positive("alpha", jnp.asarray(alpha, float))
    delta = _checks.positive("delta", jnp.asarray(delta, float))
    return 2 * alpha * delta ** (2 * (depth - 1) / depth)


def convergence_envelope(
    ts: Float[ArrayLike, " k"], initial_gap, alpha, delta, depth: int
) -> Float[Array, " k"]:
    """Gronwall's envelope of Theorem 2's proof:
    `l(t) - l* <= (l(0) - l*) exp(-2 alpha delta^{2(n-1)/n} t)`."""
    depth = _checks.positive_int("depth", depth)
    rate = _theorem2_rate(alpha, delta, depth)
    initial_gap = _checks.non_negative("initial_gap", jnp.asarray(initial_gap, float))
    return initial_gap * jnp.exp(-rate * jnp.asarray(ts))


class Theorem2Check(eqx.Module):
    """The solved loss gap next to Theorem 2's envelope."""

    ts: Float[Array, " k"]
    gap: Float[Array, " k"]  # l(t) - l*
    envelope: Float[Array, " k"]
    delta: Float[Array, ""]
    holds: Bool[Array, ""]  # gap <= envelope + slack at every reached save


def check_theorem2(
    loss: WhitenedSquare,
    solution: FlowSolution,
    *,
    delta: float | None = None,
    slack: float = 0.0,
) -> Theorem2Check:
    """Theorem 2 along a solved flow of the whitened square loss (1-strongly convex,
    `l* = 0`). `delta` defaults to the deficiency margin of `W(0)`; `slack` is an
    absolute allowance for solver error in the computed loss.

    The old order `check_theorem2(solution, loss)` still works for one release, with a
    `DeprecationWarning`."""
    if isinstance(loss, FlowSolution) and not isinstance(solution, FlowSolution):
        warnings.warn(
            "check_theorem2(solution, loss) is deprecated; call "
            "check_theorem2(loss, solution)",
            DeprecationWarning,
            stacklevel=2,
        )
        loss, solution = solution, loss
    if not isinstance(loss, WhitenedSquare):
        raise TypeError("`loss` must be a WhitenedSquare (alpha = 1, l* = 0)")
    if solution.end_to_end.ndim != 3:
        raise ValueError(
            "`solution` must be one solve (end_to_end of shape (k, dn, d0)); for a "
            "batch use jax.vmap(lambda s: check_theorem2(loss, s))(solutions)"
        )
    W0 = solution.end_to_end[0]
    margin = deficiency_margin(W0, loss.target) if delta is None else jnp.asarray(delta)
    ts = solution.ts
    gap = solution.loss
    rate = 2 * jnp.maximum(margin, 0.0) ** (2 * (solution.depth - 1) / solution.depth)
    envelope = gap[0] * jnp.exp(-rate * (ts - ts[0]))
    ok = jnp.where(solution.reached, gap <= envelope + slack, True)
    return Theorem2Check(ts, gap, envelope, margin, jnp.all(ok) & (margin > 0))
