"""Powers of singular values, exact at zero and stable at rounding noise.

The PSD powers `[W W^T]^beta` and `[W^T W]^beta` of Theorem 1 act on the singular
values of `W` as `sigma^(2 beta)`. Singular values that are zero in exact arithmetic come
out of a decomposition at ~`eps * sigma_max`, and a fractional power amplifies them
(`(1e-17)^(1/3) ~ 2e-6`), so they are set to exactly zero below a relative cutoff.
"""

import jax.numpy as jnp
from jaxtyping import Array, Float


def clean_singular_values(
    s: Float[Array, "*batch k"], shape: tuple[int, int]
) -> Float[Array, "*batch k"]:
    """Zero the singular values at rounding level: `s <= max(shape) * eps * max(s)`.

    This is the rank cutoff of `numpy.linalg.matrix_rank`.
    """
    cutoff = max(shape) * jnp.finfo(s.dtype).eps * jnp.max(s, axis=-1, keepdims=True)
    return jnp.where(s > cutoff, s, 0.0)


def power(s: Float[Array, "*shape"], exponent: float | Float[Array, "*shape"]):
    """`s ** exponent` for `s >= 0`, with `0 ** exponent = 0` for `exponent > 0` and a
    gradient that stays finite at zero. A static `exponent == 0` gives ones: `0 ** 0 =
    1`, since `[.]^0` is the identity, null space included (Corollary 1's
    `P(W)` sums such powers)."""
    if isinstance(exponent, (int, float)) and exponent == 0:
        return jnp.ones_like(s)
    positive = s > 0
    return jnp.where(positive, jnp.where(positive, s, 1.0) ** exponent, 0.0)


DECOMPOSITIONS = ("svd", "gram")


def decomposition_name(decomposition: str) -> str:
    """`decomposition`, checked against [`DECOMPOSITIONS`][]."""
    if decomposition not in DECOMPOSITIONS:
        raise ValueError(
            f"`decomposition` must be one of {DECOMPOSITIONS}; got {decomposition!r}"
        )
    return decomposition


def reduced_svd(
    W: Float[Array, "dn d0"], decomposition: str = "svd"
) -> tuple[Float[Array, "dn k"], Float[Array, " k"], Float[Array, "d0 k"]]:
    """`W = U diag(s) V^T` with `k = min(d_n, d_0)`, rounding-level `s` zeroed.

    - `"svd"`: LAPACK's SVD; singular values accurate to `~eps * s_max`.
    - `"gram"`: one symmetric eigendecomposition of the smaller Gram matrix (`W^T W` for
      `d_n >= d_0`), `s_i = |W v_i|` and `u_i = W v_i / s_i`: cheaper on CPU
      (`benchmarks/flows.py` prints both costs). The Gram matrix squares the condition
      number, so directions with `s_i^2 <= max(shape) * eps * s_max^2` are unresolved
      and set to zero: accurate while `s_min / s_max >> sqrt(max(shape) * eps)`
      (6.7e-8 at d = 20), wrong below (their fractional powers vanish, so tiny singular
      values stop growing). `python benchmarks/flows.py --dims 20 --scale 1e-7 --t1 600`
      shows it: there the Gram flow at rtol 1e-10 runs out of steps where the SVD's
      does not.
    """
    if decomposition_name(decomposition) == "svd":
        U, s, Vt = jnp.linalg.svd(W, full_matrices=False)
        return U, clean_singular_values(s, W.shape), Vt.T
    if W.shape[0] < W.shape[1]:
        V, s, U = reduced_svd(W.T, decomposition)
        return U, s, V
    eigenvalues, V = jnp.linalg.eigh(W.T @ W)
    resolved = eigenvalues > max(W.shape) * jnp.finfo(W.dtype).eps * eigenvalues[-1]
    US = W @ V
    s = jnp.where(resolved, jnp.linalg.norm(US, axis=0), 0.0)
    return US * jnp.where(resolved, 1.0 / jnp.where(resolved, s, 1.0), 0.0), s, V
