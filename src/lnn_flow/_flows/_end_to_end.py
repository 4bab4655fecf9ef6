"""The end-to-end dynamics of Theorem 1 (eq. 3) and their gradient flow.

Under balanced initialization (Assumption 1) the end-to-end matrix `W = W_{n:1}` of a
depth-`n` linear network trained by gradient flow follows an ODE of its own:

    dW/dt = - sum_{j=1}^n [W W^T]^{(j-1)/n} grad l(W) [W^T W]^{(n-j)/n}         (3)

equivalently `vec(dW/dt) = -P(W) vec(grad l(W))` with the preconditioner of Corollary 1.
"""

import functools
from typing import Unpack

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._core import _checks
from .._maths._divided_differences import precondition_tangent
from .._solving._options import SolveKwargs, SolveOptions
from .._solving._result import FlowSolution
from .._solving._solve import solve
from .._maths._spectral import decomposition_name, power, reduced_svd
from .._solving._system import AbstractFlowSystem, Loss, flow_gradient


def end_to_end_vector_field(
    loss: Loss, W: Float[ArrayLike, "dn d0"], depth: int, *, decomposition: str = "svd"
) -> Float[Array, "dn d0"]:
    """`dW/dt` of Theorem 1 (eq. 3) at the end-to-end matrix `W` for a depth-`depth`
    network.

    One reduced SVD `W = U diag(s) V^T` gives all `n` terms. With `k = min(d_n, d_0)`,
    `[W W^T]^a = U diag(s^{2a}) U^T` for `a > 0` (zero on the null space) and
    `[.]^0 = I`, so with `G = grad l(W)` and `c = 2(n-1)/n`:

        sum_j ... = U diag(s^c) U^T G  +  G V diag(s^c) V^T
                    + U [(U^T G V) * M] V^T,   M_{rr'} = sum_{j=2}^{n-1}
                      s_r^{2(j-1)/n} s_{r'}^{2(n-j)/n}

    (the first two are the terms j = n and j = 1). Exact for singular and non-square
    `W`; rounding-level singular values are zeroed before fractional powers.
    `decomposition="gram"` takes the SVD from the smaller Gram matrix instead (faster,
    accurate only while `s_min / s_max >> sqrt(max(d_n, d_0) * eps)`; see
    `_spectral.reduced_svd`).

    Derivatives in `W` (`jax.jvp`, `jax.jacrev`, implicit solvers, gradients through a
    solve) use the Daleckii-Krein rule of `_divided_differences`: finite at repeated
    and zero singular values; where rank(W) < min(d_n, d_0) the field has a kink and
    they are its symmetric derivative.
    """
    depth, W = _depth_and_matrix(depth, W)
    _checks.fits_loss(loss, W.shape, "W")
    return _field(loss, W, depth, decomposition_name(decomposition))


def apply_preconditioner(
    W: Float[ArrayLike, "dn d0"],
    G: Float[ArrayLike, "dn d0"],
    depth: int,
    *,
    decomposition: str = "svd",
) -> Float[Array, "dn d0"]:
    """`sum_j [W W^T]^{(j-1)/n} G [W^T W]^{(n-j)/n}`: the preconditioner `P(W)` of
    Corollary 1 applied to `G` without forming it (`vec` of the result is
    `P(W) vec(G)`), from one reduced SVD as in [`lnn_flow.end_to_end_vector_field`][].
    """
    depth, W = _depth_and_matrix(depth, W)
    G = _checks.as_float_array("G", G, ndim=2)
    if G.shape != W.shape:
        raise ValueError(f"`G` must have the shape of `W` {tuple(W.shape)}; got {tuple(G.shape)}")
    return _precondition(W, G, depth, decomposition_name(decomposition))


def _depth_and_matrix(depth, W) -> tuple[int, Float[Array, "dn d0"]]:
    """`depth` a positive integer, `W` a non-empty real matrix (errors name them)."""
    depth = _checks.positive_int("depth", depth)
    return depth, _checks.non_empty("W", _checks.as_float_array("W", W, ndim=2))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _precondition(
    W: Float[Array, "dn d0"],
    G: Float[Array, "dn d0"],
    depth: int,
    decomposition: str = "svd",
) -> Float[Array, "dn d0"]:
    """`P(W)[G]` of Corollary 1 from one reduced SVD. Its derivative in `(W, G)` is the
    Daleckii-Krein rule of `_divided_differences` (finite at repeated and zero singular
    values, where differentiating the SVD divides by zero gaps)."""
    return _precondition_from_svd(W, G, depth, decomposition)


@_precondition.defjvp
def _precondition_jvp(depth, decomposition, primals, tangents):
    W, G = primals
    dW, dG = tangents
    out = _precondition_from_svd(W, G, depth, decomposition)
    return out, precondition_tangent(W, G, dW, dG, depth)


def _precondition_from_svd(
    W: Float[Array, "dn d0"],
    G: Float[Array, "dn d0"],
    depth: int,
    decomposition: str,
) -> Float[Array, "dn d0"]:
    if depth == 1:
        return G
    U, s, V = reduced_svd(W, decomposition)
    Vt = V.T
    outer = power(s, 2 * (depth - 1) / depth)
    out = U @ (outer[:, None] * (U.T @ G)) + ((G @ V) * outer) @ Vt
    if depth > 2:
        j = jnp.arange(2, depth, dtype=s.dtype)[:, None]
        left = power(s[None, :], 2 * (j - 1) / depth)
        right = power(s[None, :], 2 * (depth - j) / depth)
        mix = left.T @ right
        out = out + U @ ((U.T @ G @ V) * mix) @ Vt
    return out


def _field(
    loss: Loss, W: Float[Array, "dn d0"], depth: int, decomposition: str = "svd"
) -> Float[Array, "dn d0"]:
    return -_precondition(W, flow_gradient(loss, W), depth, decomposition)


class _EndToEndSystem(AbstractFlowSystem):
    """The ODE of Theorem 1 with state `W`: the end-to-end matrix is the state, and it
    holds no factors."""

    loss: Loss
    depth: int = eqx.field(static=True)
    decomposition: str = eqx.field(static=True, default="svd")

    def vector_field(self, t, W, args):
        return _field(self.loss, W, self.depth, self.decomposition)

    def end_to_end(self, W):
        return W

    def default_atol(self, W0, rtol):
        return default_atol(W0, rtol)

    def factors(self, W):
        return None


def default_atol(W0: Float[Array, "dn d0"], rtol) -> Float[Array, ""]:
    """`min(1e-10, 1e-2 * rtol * max|W0|)`, above the smallest normal float."""
    scale = jnp.max(jnp.abs(W0)) if W0.size else jnp.zeros((), W0.dtype)
    atol = jnp.minimum(1e-10, 1e-2 * jnp.asarray(rtol, W0.dtype) * scale)
    return jnp.maximum(atol, jnp.finfo(W0.dtype).tiny)


def end_to_end_flow(
    loss: Loss,
    W0: Float[ArrayLike, "dn d0"],
    depth: int,
    t1: float,
    ts: Float[ArrayLike, " k"] | None = None,
    *,
    decomposition: str = "svd",
    **options: Unpack[SolveKwargs],
) -> FlowSolution:
    """Solve the end-to-end ODE of Theorem 1 (eq. 3) from `W0` with diffrax.

    This is the gradient flow of a depth-`depth` network started from balanced factors
    (Assumption 1) whose product is `W0`, solved on the `d_n x d_0` end-to-end matrix
    alone. Arguments and result as in [`lnn_flow.factor_flow`][], except that
    `result.factors` is `None`, and:

    - `atol`: default `min(1e-10, 1e-2 * rtol * max|W0|)`. The end-to-end matrix of a
      small init is tiny (`~scale^depth`): a fixed `atol = 1e-10` would integrate the
      plateau at a loose relative accuracy (`python benchmarks/flows.py --dims 20`,
      d = 20, depth 3, init 1e-3: trajectory error 3.0e-11 at rtol 1e-10 with this
      default, 1.1e-6 with `--e2e-atol 1e-10`).
    - `decomposition`: `"svd"` (default) or `"gram"`, as in
      [`lnn_flow.end_to_end_vector_field`][].

    Theorem 1 assumes hidden widths >= min(d_0, d_n). A network with a narrower layer
    keeps rank(W) <= k; this ODE is tangent to the rank-k matrices but amplifies solver
    noise off them (fractional powers of ~atol-sized singular values), so solve such
    networks with `factor_flow`.

    Refuses bad input as [`lnn_flow.factor_flow`][] does (`W0` complex, empty or
    non-finite, or a loss not finite at `W0`), before anything is solved.
    """
    depth = _checks.positive_int("depth", depth)
    W0 = _checks.non_empty("W0", _checks.as_float_array("W0", W0, ndim=2))
    W0 = _checks.finite("W0", W0)
    _checks.fits_loss(loss, W0.shape, "W0")
    options = SolveOptions.from_kwargs(options)
    system = _EndToEndSystem(loss, depth, decomposition_name(decomposition))
    return solve(system, W0, t1, ts, options, init_name="W0")
