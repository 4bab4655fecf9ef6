"""Exercises 1 and 5: the single-output end-to-end field and closed-form singular values.

Exercise 1 is eq. (3) for `d_n = 1`; Exercise 5 solves Theorem 3's singular value
dynamics under a constant drive. (Exercise 2, the symmetric network, is in
`lnn_flow._flows._symmetric`.) Re-exported by `lnn_flow.theory`.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._core import _checks
from .._solving._system import Loss


def exercise1_vector_field(
    loss: Loss, w: Float[ArrayLike, "1 d0"], depth: int
) -> Float[Array, "1 d0"]:
    """Exercise 1: eq. (3) for a single output (`d_n = 1`, `W = w` a row),

        dw/dt = -||w||^{2 - 2/n} (g + (n - 1) <g, w_hat> w_hat),   w_hat = w / ||w||,

    with `g = grad l(w)`: the gradient, amplified by the norm and pushed along the
    direction already taken (`w_hat`)."""
    depth = _checks.positive_int("depth", depth)
    w = _checks.as_float_array("w", w, ndim=2)
    if w.shape[0] != 1:
        raise ValueError(f"`w` must be a row (1, d_0); got {tuple(w.shape)}")
    g = jax.grad(loss)(w)
    if depth == 1:
        return -g
    norm = jnp.linalg.norm(w)
    safe = jnp.where(norm > 0, norm, 1.0)
    w_hat = w / safe
    along = jnp.sum(g * w_hat) * w_hat
    return -jnp.where(norm > 0, safe ** (2 - 2 / depth), 0.0) * (g + (depth - 1) * along)


def exercise5_singular_values(
    sigma0, drive, ts: Float[ArrayLike, " k"], depth: int
) -> Float[Array, "k r"]:
    """Closed-form `sigma_r(t)` under a constant drive `<-grad l, u_r v_r^T> = c_r`
    (Exercise 5; proof of Lemma 2 with `int_0^t g = n c_r t`), for `sigma_r(0) > 0`:

    - n = 2: `sigma_r(t) = sigma_r(0) exp(2 c_r t)`, so ratios between singular
      values evolve exponentially, `exp(2 (c_r - c_r') t)`;
    - n >= 3: `sigma_r(t) = (sigma_r(0)^{2/n-1} + (2/n-1) n c_r t)^{1/(2/n-1)}`, which
      blows up in finite time `sigma_r(0)^{2/n-1} / ((1-2/n) n c_r)` for `c_r > 0`;
    - n = 1: `sigma_r(t) = sigma_r(0) + c_r t`.

    Past the blow-up time the result is `inf`; a negative `sigma_r(0)` follows the
    mirrored formula of the proof of Lemma 2.
    """
    depth = _checks.positive_int("depth", depth)
    t = jnp.asarray(ts)[:, None]
    s0 = jnp.atleast_1d(jnp.asarray(sigma0, t.dtype))
    c = jnp.atleast_1d(jnp.asarray(drive, t.dtype))
    if depth == 1:
        return s0 + c * t
    # sigma(0) < 0 mirrors sigma(0) > 0 with the drive's sign flipped (proof of
    # Lemma 2); sigma(0) = 0 stays 0.
    sign = jnp.sign(s0)
    size, c = jnp.abs(s0), sign * c
    if depth == 2:
        return sign * size * jnp.exp(2 * c * t)
    p = 2 / depth - 1
    base = size**p + p * depth * c * t
    safe = jnp.where(base > 0, base, 1.0)
    return sign * jnp.where(base > 0, safe ** (1 / p), jnp.inf)  # inf past blow-up
