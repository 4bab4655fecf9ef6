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
    """`s ** exponent` for `s >= 0` and `exponent > 0`, with `0 ** exponent = 0`
    and a gradient that stays finite at zero."""
    positive = s > 0
    return jnp.where(positive, jnp.where(positive, s, 1.0) ** exponent, 0.0)
