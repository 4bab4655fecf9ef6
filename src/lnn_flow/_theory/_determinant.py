"""Lemma 2 and Proposition 5: the sign of `det W(t)` and the norms it forces.

The determinant along a solved square flow (constant sign, with the precision floor
where the computation stops resolving it), a pre-flight check of whether an init can
reach the minimizer, and Proposition 5's example loss (eq. 15) with its lower bound on
`||W(t)||`. Re-exported by `lnn_flow.theory`.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from .._core import _checks
from .._solving._result import FlowSolution
from ..losses import MatrixSensing


class DeterminantTrack(eqx.Module):
    """`det W(t)` along the saves of a square flow (Lemma 2: its sign is constant)."""

    ts: Float[Array, " k"]
    det: Float[Array, " k"]
    sigma_min: Float[Array, " k"]
    # From the first save where the computed trajectory hit the precision floor on: its
    # smallest singular value fell to the rounding level, or det changed sign, which an
    # exact flow cannot do (Lemma 2), so the solver's error exceeded sigma_min there;
    # or, given a tighter `reference` solve, det disagreed with the reference's.
    at_precision_floor: Bool[Array, " k"]
    floor_reached: Bool[Array, ""]
    # The sign of det is constant over the saves before the floor.
    sign_constant: Bool[Array, ""]


def determinant_track(
    solution: FlowSolution,
    reference: FlowSolution | None = None,
    *,
    agreement: float = 1e-2,
) -> DeterminantTrack:
    """Lemma 2 along a solved square flow, reporting where the computation stops being
    trustworthy instead of returning a trajectory that contradicts Lemma 2.

    Depth 2 on Proposition 5's example drives `det W` to zero exponentially. Once
    `sigma_min` is below the solver's error (or `d * eps * sigma_max`), the computed `W`
    can cross the singular matrices and flip the sign of `det`. Saves from the first
    such event on are flagged `at_precision_floor`; denser saves locate it more
    precisely.

    A sign flip shows the floor only once the error has swamped `det` completely; the
    error is large well before. `reference`, the same flow solved at tighter tolerances
    and saved at the same `ts`, measures it: saves from the first one whose `det`
    differs from the reference's by more than `agreement * |det_ref|` (or that the
    reference did not reach) are flagged too.
    """
    Ws = solution.end_to_end
    if Ws.shape[-1] != Ws.shape[-2]:
        raise ValueError(f"Lemma 2 needs square W; got {tuple(Ws.shape[-2:])}")
    if reference is not None and reference.end_to_end.shape != Ws.shape:
        raise ValueError(
            "`reference` must be the same flow saved at the same `ts`; got saves of "
            f"shape {tuple(reference.end_to_end.shape)}, expected {tuple(Ws.shape)}"
        )
    if not agreement > 0:
        raise ValueError(f"`agreement` must be > 0; got {agreement}")
    reached = solution.reached
    det = jnp.linalg.det(Ws)
    s = jnp.linalg.svd(Ws, compute_uv=False)
    rounding = reached & (s[..., -1] <= Ws.shape[-1] * jnp.finfo(Ws.dtype).eps * s[..., 0])
    sign = jnp.sign(det)
    flipped = jnp.concatenate(
        [jnp.zeros_like(sign[..., :1], bool), sign[..., 1:] != sign[..., :-1]], axis=-1
    ) & reached
    untrusted = rounding | flipped
    if reference is not None:
        det_ref = jnp.linalg.det(reference.end_to_end)
        off = ~(jnp.abs(det - det_ref) <= agreement * jnp.abs(det_ref))  # NaN: off
        untrusted = untrusted | (reached & (off | ~reference.reached))
    at_floor = jnp.cumsum(untrusted, axis=-1) > 0
    trusted = reached & ~at_floor
    constant = jnp.all(jnp.where(trusted, sign == sign[..., :1], True), axis=-1)
    return DeterminantTrack(
        solution.ts, det, s[..., -1], at_floor, jnp.any(at_floor, axis=-1), constant
    )


class DeterminantPreflight(eqx.Module):
    """Lemma 2 before a solve: can the flow from `W0` reach the minimizer at all?"""

    reachable: Bool[Array, ""]
    det_initial: Float[Array, ""]
    det_minimizer: Float[Array, ""]
    # For the whitened square loss, a lower bound on the loss along the whole flow
    # when unreachable: 1/2 sigma_min(target)^2 (distance to the singular matrices).
    loss_floor: Float[Array, ""]


def determinant_preflight(
    W0: Float[ArrayLike, "d d"], minimizer: Float[ArrayLike, "d d"]
) -> DeterminantPreflight:
    """For a square problem with a unique (or one-signed) full-rank minimizer, a flow
    whose `det W(0)` has the other sign, or is zero, never reaches it (Lemma 2: the
    sign of `det W(t)` is constant). `W0` may carry a leading batch axis via `vmap`."""
    W0 = _checks.as_float_array("W0", W0, ndim=2)
    minimizer = _checks.as_float_array("minimizer", minimizer, ndim=2)
    if W0.shape != minimizer.shape or W0.shape[0] != W0.shape[1]:
        raise ValueError(
            f"`W0` and `minimizer` must be square of one shape; got {tuple(W0.shape)} "
            f"and {tuple(minimizer.shape)}"
        )
    d0, dm = jnp.linalg.det(W0), jnp.linalg.det(minimizer)
    reachable = jnp.sign(d0) == jnp.sign(dm)
    floor = jnp.where(
        reachable, 0.0, 0.5 * jnp.linalg.svd(minimizer, compute_uv=False)[-1] ** 2
    )
    return DeterminantPreflight(reachable, d0, dm, floor)


def proposition5_norm_bound(
    loss_values: Float[ArrayLike, " k"],
    norm: Callable[[Float[Array, "2 2"]], Float[Array, ""]] = jnp.linalg.norm,
) -> Float[Array, " k"]:
    """Proposition 5's lower bound `c (l - l*)^{-1/2} + c'` on `||W(t)||` for the 2x2
    example ([`proposition5_loss`][], `l* = 0`) along a flow with
    `det W(0) > 0`, for any `norm` (default Frobenius).

    From the proof: `||W|| >= ||e1 e1^T|| / sqrt(6 l) - 2 S` with `S` the sum of the
    norms of the four units `e_i e_j^T`, so `c = ||e1 e1^T|| / sqrt(6)`, `c' = -2 S`
    (for `l >= 1/6` the bound is negative, hence trivially true)."""
    units = jnp.eye(4).reshape(4, 2, 2)
    sizes = jax.vmap(norm)(units)
    c = sizes[0] / jnp.sqrt(6.0)
    return c / jnp.sqrt(jnp.asarray(loss_values)) - 2 * jnp.sum(sizes)


def proposition5_loss() -> MatrixSensing:
    """The matrix-sensing loss of Proposition 5's proof (eq. 15):
    `A_1 = e1 e2^T`, `A_2 = e2 e1^T`, `A_3 = e2 e2^T`, `b = (1, 1, 0)`, so
    `l(W) = 1/6 [(w12 - 1)^2 + (w21 - 1)^2 + w22^2]`. Every minimizer (`l* = 0`) has
    `det W = -1`, so a flow from `det W(0) > 0` approaches `l*` only with diverging
    norm (Lemma 2 and Proposition 5)."""
    A = jnp.zeros((3, 2, 2)).at[0, 0, 1].set(1.0).at[1, 1, 0].set(1.0).at[2, 1, 1].set(1.0)
    return MatrixSensing(A, jnp.array([1.0, 1.0, 0.0]))
