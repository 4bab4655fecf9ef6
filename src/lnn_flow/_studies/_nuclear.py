"""The minimum-nuclear-norm completion of eq. (10), by ADMM in JAX.

    minimize ||W||_*  subject to  W[rows_i, cols_i] = values_i,  i = 1..m

is the convex program that Supposition 1 compares deep linear networks against. ADMM
splits it into a nuclear-norm prox (singular value soft-thresholding) and a projection
onto the affine set of matrices that agree with the observations:

    Z <- SVT_{1/rho}(X + U),   X <- P(Z - U),   U <- U + X - Z

with residual balancing of the penalty `rho` (Boyd et al. 2011, Sec. 3.4.1). It
converges to the exact minimizer; the test suite checks it against an interior-point
solve (cvxpy) on small instances.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._core import _checks
from ..losses import MatrixCompletion


class NuclearNormSolution(eqx.Module):
    """ADMM's answer. `W` is the iterate projected onto the observations (it agrees
    with them exactly, by construction); `constraint_violation` is how far ADMM's other
    iterate, the singular-value-thresholded `Z` before that projection, is from them:
    `max |Z[rows, cols] - values|`, at most the primal residual `||W - Z||_F`. It tends
    to 0 as ADMM converges and says how far `W` is from a fixed point."""

    W: Float[Array, "dn d0"]
    nuclear_norm: Float[Array, ""]
    constraint_violation: Float[Array, ""]  # max |Z[rows, cols] - values|, pre-projection
    iterations: Int[Array, ""]
    converged: Bool[Array, ""]


def min_nuclear_norm_completion(
    loss: MatrixCompletion,
    *,
    rtol: float = 1e-7,
    max_iterations: int = 20_000,
) -> NuclearNormSolution:
    """The minimum-nuclear-norm matrix that agrees with the observations of a
    `MatrixCompletion` loss (eq. 10 with one-hot measurements; `l(W) = l* = 0`).

    Stops when the primal residual `||X - Z||_F` and the dual residual
    `rho ||Z - Z_prev||_F` both fall below `rtol` times the scale of the iterates.
    """
    if not isinstance(loss, MatrixCompletion):
        raise TypeError("`loss` must be a lnn_flow.losses.MatrixCompletion")
    if not rtol > 0:
        raise ValueError(f"`rtol` must be > 0; got {rtol}")
    max_iterations = _checks.positive_int("max_iterations", max_iterations)
    return _admm(loss, jnp.asarray(rtol, loss.values.dtype), max_iterations)


@eqx.filter_jit
def _admm(loss: MatrixCompletion, rtol, max_iterations: int) -> NuclearNormSolution:
    rows, cols, values = loss.rows, loss.cols, loss.values
    observed = jnp.zeros(loss.shape, values.dtype).at[rows, cols].set(values)
    mask = jnp.zeros(loss.shape, bool).at[rows, cols].set(True)
    project = lambda A: jnp.where(mask, observed, A)

    def shrink(A, threshold):
        U, s, Vt = jnp.linalg.svd(A, full_matrices=False)
        return (U * jnp.maximum(s - threshold, 0.0)) @ Vt

    def step(state):
        X, Z, U, rho, k, _ = state
        Z_new = shrink(X + U, 1.0 / rho)
        X = project(Z_new - U)
        U = U + X - Z_new
        primal = jnp.linalg.norm(X - Z_new)
        dual = rho * jnp.linalg.norm(Z_new - Z)
        scale = jnp.maximum(jnp.linalg.norm(X), jnp.linalg.norm(Z_new))
        done = (primal <= rtol * scale) & (dual <= rtol * jnp.maximum(rho * jnp.linalg.norm(U), scale))
        grow = primal > 10 * dual
        cut = dual > 10 * primal
        factor = jnp.where(grow, 2.0, jnp.where(cut, 0.5, 1.0))
        return X, Z_new, U / factor, rho * factor, k + 1, done

    def keep_going(state):
        *_, k, done = state
        return (~done) & (k < max_iterations)

    scale = jnp.linalg.norm(values) / jnp.sqrt(values.shape[0])
    zero = jnp.zeros(loss.shape, values.dtype)
    init = (project(zero), zero, zero, 1.0 / jnp.maximum(scale, 1e-30), 0, False)
    X, Z, _, _, k, done = jax.lax.while_loop(keep_going, step, init)
    return NuclearNormSolution(
        W=X,
        nuclear_norm=jnp.sum(jnp.linalg.svd(X, compute_uv=False)),
        constraint_violation=jnp.max(jnp.abs(Z[rows, cols] - values)),
        iterations=k,
        converged=done,
    )
