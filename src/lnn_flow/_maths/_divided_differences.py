"""Derivatives of PSD powers by divided differences (Daleckii-Krein), finite everywhere.

The preconditioner of Corollary 1 (eq. 6) applied to `G`, the right-hand side of eq. (3)
with `G = grad l(W)`, is

    P(W)[G] = sum_{j=1}^n A^{p_j} G B^{q_j},   A = W W^T,  B = W^T W,
    p_j = (j-1)/n,  q_j = (n-j)/n.

Differentiating it through an SVD divides by singular-value gaps, which are zero at
repeated singular values (`W = 0.1 I`) and at zero ones (rank-deficient or non-square
`W`). For a symmetric `A = Q diag(lam) Q^T` and a scalar `f`, the Daleckii-Krein formula
gives the derivative without any such division:

    D f(A)[E] = Q (L o (Q^T E Q)) Q^T,   L_ik = f[lam_i, lam_k],

with `o` the entrywise product and `f[x, y] = (f(x) - f(y)) / (x - y)` the divided
difference, `f'(x)` at `x = y`. For `f(x) = x^p`, `0 < p < 1`, it is computed here

- far apart (`|x - y| > max(x, y) / 2`) directly: no cancellation beyond a factor
  `1 / (1 - 2^-p)`;
- close (`x, y > 0`) as `y^(p-1) expm1(p r) / expm1(r)` with `r = log1p((x - y) / y)`:
  relative accuracy of a few eps down to `x = y`, where it is `p y^(p-1)`;
- `0` where `x = y = 0`. There `f'(0)` is infinite, but the entry multiplies `Q^T E Q`
  on the null space of `A`, which vanishes to first order for `E = dW W^T + W dW^T`.
  Along `W + t dW` with rank(W) < min(shape) that block grows like `t^2`, so `A^p`
  moves by `|t|^(2p)` (even in `t`) and, as its eigenvectors turn, by `t |t|^(2p)`: the
  field is not differentiable there, and this rule gives its symmetric derivative, the
  limit of `(F(W + h dW) - F(W - h dW)) / 2h`, reached like `h^(2/n)`
  (tests/test_end_to_end.py). A full-rank non-square `W` keeps its null space along
  `W + t dW`: no kink.

`p = 0` (the `A^0 = I` of the terms `j = 1` and `j = n`) has `L = 0`.

[`precondition_tangent`][] assembles the derivative of `P(W)[G]` in `(W, G)` from ONE
full SVD `W = U diag(s) V^T` (`U`, `V` square): `U` holds the eigenvectors of `A`
including its null space, `V` those of `B`, and `lam = s^2` padded with zeros
(rounding-level `s` zeroed as in `_spectral.clean_singular_values`). It is linear in
the tangents and built from jnp ops, so reverse mode transposes it.
"""

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._spectral import clean_singular_values, power


def divided_differences(lam: Float[Array, " m"], p: float) -> Float[Array, "m m"]:
    """`L_ik = (lam_i^p - lam_k^p) / (lam_i - lam_k)` for `lam >= 0` and a static
    `0 <= p < 1`: `p lam^(p-1)` at equal points, stable at nearly equal ones, `0` where
    both are zero and everywhere for `p = 0`."""
    if not 0 <= p < 1:
        raise ValueError(f"`p` must be in [0, 1); got {p}")
    x, y = lam[:, None], lam[None, :]
    if p == 0:
        return jnp.zeros_like(x * y)
    top = jnp.maximum(x, y)
    gap = x - y
    far = jnp.abs(gap) > 0.5 * top
    direct = (power(x, p) - power(y, p)) / jnp.where(far, gap, 1.0)
    # Close and positive: both within a factor 2, so y > 0 unless both are zero.
    both_zero = top == 0
    base = jnp.where(far | both_zero, 1.0, y)
    r = jnp.log1p(jnp.where(far, 0.0, gap) / base)
    r_safe = jnp.where(r == 0, 1.0, r)
    ratio = jnp.where(r == 0, p, jnp.expm1(p * r_safe) / jnp.expm1(r_safe))
    close = base ** (p - 1) * ratio
    return jnp.where(both_zero, 0.0, jnp.where(far, direct, close))


def power_derivative(
    Q: Float[Array, "m m"], lam: Float[Array, " m"], p: float, E: Float[Array, "m m"]
) -> Float[Array, "m m"]:
    """`D(A^p)[E] = Q (L o (Q^T E Q)) Q^T` for `A = Q diag(lam) Q^T` (Daleckii-Krein),
    `L` the [`divided_differences`][] of `x^p`."""
    return Q @ (divided_differences(lam, p) * (Q.T @ E @ Q)) @ Q.T


def precondition_tangent(
    W: Float[Array, "dn d0"],
    G: Float[Array, "dn d0"],
    dW: Float[Array, "dn d0"],
    dG: Float[Array, "dn d0"],
    depth: int,
) -> Float[Array, "dn d0"]:
    """The derivative of `P(W)[G]` (Corollary 1, eq. 3) along `(dW, dG)`:

        P(W)[dG] + sum_j D(A^{p_j})[dA] G B^{q_j} + A^{p_j} G D(B^{q_j})[dB],

    `dA = dW W^T + W dW^T`, `dB = dW^T W + W^T dW`. In the singular bases (`X = U^T dW
    V`, `S` the `dn x d0` diagonal of `s`) `U^T dA U = X S^T + S X^T` and `V^T dB V =
    X^T S + S^T X`, so everything is computed there and rotated back once.
    """
    if depth == 1:
        return dG
    dn, d0 = W.shape
    U, s, Vt = jnp.linalg.svd(W, full_matrices=True)
    V = Vt.T
    s = clean_singular_values(s, W.shape)
    k = s.shape[0]
    sA = jnp.zeros(dn, s.dtype).at[:k].set(s)
    sB = jnp.zeros(d0, s.dtype).at[:k].set(s)
    X = U.T @ dW @ V
    XSt = jnp.zeros((dn, dn), s.dtype).at[:, :k].set(X[:, :k] * s)  # X S^T
    StX = jnp.zeros((d0, d0), s.dtype).at[:k, :].set(s[:, None] * X[:k, :])  # S^T X
    dA = XSt + XSt.T
    dB = StX + StX.T
    Gt = U.T @ G @ V
    dGt = U.T @ dG @ V
    out = jnp.zeros_like(Gt)
    for j in range(1, depth + 1):
        p, q = (j - 1) / depth, (depth - j) / depth
        left, right = power(sA, 2 * p), power(sB, 2 * q)
        out = out + left[:, None] * dGt * right
        if p > 0:
            out = out + (divided_differences(sA**2, p) * dA) @ Gt * right
        if q > 0:
            out = out + left[:, None] * (Gt @ (divided_differences(sB**2, q) * dB))
    return U @ out @ Vt
