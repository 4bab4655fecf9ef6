"""Definition 4 and Theorem 3: singular value dynamics along a trajectory.

An analytic SVD of saved end-to-end matrices (columns continued in time, signed
singular values), Theorem 3's rates
`sigma_r' = n (sigma_r^2)^{1-1/n} <-grad l, u_r v_r^T>`, and those rates next to the
ones observed from a solve's dense output. Re-exported by `lnn_flow.theory`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._core import _checks
from .._solving._result import FlowSolution
from .._solving._system import Loss


class AnalyticSVD(eqx.Module):
    """`W(t_k) = U_k diag(sigma_k) V_k^T` with columns continued in time (Definition 4):
    no reordering jumps, no sign flips between consecutive times; `sigma` may be
    negative (footnote 9) and need not be sorted."""

    U: Float[Array, "k dn r"]
    sigma: Float[Array, "k r"]
    V: Float[Array, "k d0 r"]


def _continue_svd(previous, W):
    U_prev, V_prev = previous
    U, s, Vt = jnp.linalg.svd(W, full_matrices=False)
    V = Vt.T
    overlap = jnp.abs(U_prev.T @ U) + jnp.abs(V_prev.T @ V)
    r = s.shape[0]

    def pick(_, carry):
        order, score = carry
        flat = jnp.argmax(score)
        old, new = flat // r, flat % r
        order = order.at[old].set(new)
        score = score.at[old, :].set(-jnp.inf).at[:, new].set(-jnp.inf)
        return order, score

    order, _ = jax.lax.fori_loop(0, r, pick, (jnp.zeros(r, int), overlap))
    U, s, V = U[:, order], s[order], V[:, order]
    sign_u = jnp.where(jnp.sum(U_prev * U, axis=0) < 0, -1.0, 1.0)
    sign_v = jnp.where(jnp.sum(V_prev * V, axis=0) < 0, -1.0, 1.0)
    U, V = U * sign_u, V * sign_v
    return (U, V), (U, s * sign_u * sign_v, V)


def analytic_svd(Ws: Float[ArrayLike, "k dn d0"]) -> AnalyticSVD:
    """An SVD of each `W(t_k)` continued from the previous one (Definition 4).

    Columns are matched to the previous time's by the largest overlap
    `|u_prev . u| + |v_prev . v|` (greedy assignment) and their signs fixed so that
    `u_prev . u > 0` and `v_prev . v > 0`; the singular value then carries the sign.
    Saves must be close enough that singular vectors move by less than 45 degrees
    between them (a few dozen saves per unit of the flow's fastest rate suffice).
    """
    Ws = _checks.finite("Ws", _checks.as_float_array("Ws", Ws, ndim=3))
    U0, s0, Vt0 = jnp.linalg.svd(Ws[0], full_matrices=False)
    _, (U, sigma, V) = jax.lax.scan(_continue_svd, (U0, Vt0.T), Ws)
    return AnalyticSVD(U, sigma, V)


def singular_value_rates(
    loss: Loss,
    W: Float[ArrayLike, "dn d0"],
    U: Float[ArrayLike, "dn r"],
    sigma: Float[ArrayLike, " r"],
    V: Float[ArrayLike, "d0 r"],
    depth: int,
) -> Float[Array, " r"]:
    """Theorem 3: `sigma_r' = n (sigma_r^2)^{1 - 1/n} <-grad l(W), u_r v_r^T>`."""
    depth = _checks.positive_int("depth", depth)
    G = jax.grad(loss)(jnp.asarray(W))
    drive = -jnp.einsum("ir,ij,jr->r", U, G, V)
    return depth * (jnp.asarray(sigma) ** 2) ** (1 - 1 / depth) * drive


class SingularValueDynamics(eqx.Module):
    """Signed singular values along a trajectory with their rates, observed and
    predicted by Theorem 3."""

    ts: Float[Array, " k"]
    sigma: Float[Array, "k r"]
    observed_rates: Float[Array, "k r"]
    predicted_rates: Float[Array, "k r"]
    svd: AnalyticSVD


@eqx.filter_jit
def _interpolant_and_derivative(solution: FlowSolution, ts):
    """`W(t)` and `W'(t)` of the dense interpolant at each of `ts`, compiled as one
    program (forward mode through `evaluate`, vmapped over `ts`)."""
    one = jnp.ones((), ts.dtype)
    return jax.vmap(lambda t: jax.jvp(solution.evaluate, (t,), (one,)))(ts)


def singular_value_dynamics(
    loss: Loss, solution: FlowSolution, ts: Float[ArrayLike, " k"]
) -> SingularValueDynamics:
    """Theorem 3 along a solved flow (solved with `dense=True`), at times `ts`.

    Observed: `sigma_r'(t) = u_r^T W'(t) v_r` (eq. 11 with `u_r^T u_r' = 0`), where
    `W'(t)` is the time derivative of the solver's dense interpolant (forward-mode
    through it; for the factor flow through the product of interpolated factors), not a
    finite difference of saves. Predicted: `n (sigma_r^2)^{1-1/n} <-grad l, u_r v_r^T>`.
    """
    ts = _checks.as_float_array("ts", ts, ndim=1)
    W, W_dot = _interpolant_and_derivative(solution, ts)
    svd = analytic_svd(W)
    observed = jnp.einsum("kir,kij,kjr->kr", svd.U, W_dot, svd.V)
    predicted = jax.vmap(
        lambda W_, U, s, V: singular_value_rates(loss, W_, U, s, V, solution.depth)
    )(W, svd.U, svd.sigma, svd.V)
    return SingularValueDynamics(ts, svd.sigma, observed, predicted, svd)
