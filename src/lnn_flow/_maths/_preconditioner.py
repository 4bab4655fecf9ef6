"""The preconditioner `P(W)` of Corollary 1 (eq. 6), explicitly and by eigenpairs.

`vec(dW/dt) = -P(W) vec(grad l(W))` with `vec` stacking columns (column-first), and

    P(W) = sum_{j=1}^n [W^T W]^{(n-j)/n} (x) [W W^T]^{(j-1)/n}

(Kronecker product; proof of Corollary 1). With the full SVD `W = U S V^T`, its
eigenvectors are `vec(u_r v_{r'}^T) = v_{r'} (x) u_r` with eigenvalues
`sum_j sigma_r^{2(n-j)/n} sigma_{r'}^{2(j-1)/n}`, where `sigma_r = 0` for
`r > min(d_0, d_n)` and `0^0 = 1`. The matrix-free form is
[`lnn_flow.apply_preconditioner`][] (in the Theorem 1 module).
"""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._core import _checks
from ._spectral import clean_singular_values, power


def vec(A: Float[Array, "m n"]) -> Float[Array, " mn"]:
    """Column-first vectorization, as in Corollary 1."""
    return A.T.reshape(-1)


def unvec(a: Float[Array, " mn"], shape: tuple[int, int]) -> Float[Array, "m n"]:
    """Inverse of [`lnn_flow.vec`][]."""
    return a.reshape(shape[1], shape[0]).T


def _padded_spectra(W):
    """`W = U diag(left) V^T` with the full `U`, `V` and the singular values padded
    with zeros to `d_n` (`left`) and `d_0` (`right`) entries."""
    U, s, Vt = jnp.linalg.svd(W, full_matrices=True)
    s = clean_singular_values(s, W.shape)
    dn, d0 = W.shape
    left = jnp.zeros(dn, s.dtype).at[: s.shape[0]].set(s)
    right = jnp.zeros(d0, s.dtype).at[: s.shape[0]].set(s)
    return U, left, right, Vt.T


def preconditioner(W: Float[ArrayLike, "dn d0"], depth: int) -> Float[Array, "p p"]:
    """The explicit `(d_n d_0) x (d_n d_0)` PSD matrix `P(W)` of Corollary 1, built as
    `sum_j [W^T W]^{(n-j)/n} (x) [W W^T]^{(j-1)/n}` (column-first `vec`)."""
    depth = _checks.positive_int("depth", depth)
    W = _checks.as_float_array("W", W, ndim=2)
    U, left, right, V = _padded_spectra(W)
    total = 0.0
    for j in range(1, depth + 1):
        L = (U * power(left, 2 * (j - 1) / depth)) @ U.T
        R = (V * power(right, 2 * (depth - j) / depth)) @ V.T
        total = total + jnp.kron(R, L)
    return total


def preconditioner_eigh(
    W: Float[ArrayLike, "dn d0"], depth: int
) -> tuple[Float[Array, " p"], Float[Array, "p p"]]:
    """Eigenvalues and orthonormal eigenvectors of `P(W)` from the SVD of `W`
    (Corollary 1): column `r' d_n + r` is `vec(u_r v_{r'}^T)` with eigenvalue
    `sum_j sigma_r^{2(n-j)/n} sigma_{r'}^{2(j-1)/n}`. `P = Q diag(lam) Q^T`."""
    depth = _checks.positive_int("depth", depth)
    W = _checks.as_float_array("W", W, ndim=2)
    U, left, right, V = _padded_spectra(W)
    eigenvalues = sum(
        jnp.outer(
            power(right, 2 * (j - 1) / depth),
            power(left, 2 * (depth - j) / depth),
        )
        for j in range(1, depth + 1)
    )
    return eigenvalues.reshape(-1), jnp.kron(V, U)
