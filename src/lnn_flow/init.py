"""Initial factors `(W_1, ..., W_n)` for `dims = (d_0, d_1, ..., d_n)`.

- `balanced`: unbalancedness zero (Assumption 1), random end-to-end matrix of
  Frobenius norm `scale`.
- `from_end_to_end`: balanced factors with a given product (Procedure 1 of
  Arora et al. 2019a).
- `gaussian`: independent entries of standard deviation `scale`; unbalanced in general.
- `independent`: independent Gaussian entries, one standard deviation for every factor,
  chosen so that the end-to-end matrix has expected Frobenius norm `scale` (the
  convention of Arora et al. 2019b's released code); unbalanced in general.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._core import _checks
from ._core._deprecation import renamed
from ._maths._network import Factors
from ._maths._spectral import reduced_svd


def _orthonormal_columns(key, rows: int, cols: int, dtype) -> Float[Array, "rows cols"]:
    if key is None:
        return jnp.eye(rows, cols, dtype=dtype)
    q, r = jnp.linalg.qr(jax.random.normal(key, (rows, cols), dtype))
    return q * jnp.where(jnp.diag(r) < 0, -1.0, 1.0)


def from_end_to_end(
    W: Float[ArrayLike, "dn d0"],
    dims: Sequence[int],
    key: PRNGKeyArray | None = None,
) -> Factors:
    """Balanced factors whose product is `W` (Procedure 1 of Arora et al. 2019a).

    With the SVD `W = U diag(s) V^T` truncated to `k = min(dims)` components, every
    layer carries `diag(s^{1/n})`:

        W_1 = Q_1 S^{1/n} V^T,   W_j = Q_j S^{1/n} Q_{j-1}^T,   W_n = U S^{1/n} Q_{n-1}^T

    with `Q_j` (d_j, k) orthonormal columns: the first `k` columns of the identity, or
    random ones drawn from `key`. Then `W_{j+1}^T W_{j+1} = W_j W_j^T = Q_j S^{2/n} Q_j^T`
    (unbalancedness zero) and `W_n ... W_1 = W`. `W` must have rank at most `k`.
    """
    dims = _checks.dims(dims)
    if key is not None:
        key = _checks.prng_key("key", key)
    W = _checks.finite("W", _checks.as_float_array("W", W, ndim=2))
    if W.shape != (dims[-1], dims[0]):
        raise ValueError(
            f"`W` must have shape (d_n, d_0) = {(dims[-1], dims[0])} for dims {dims}; "
            f"got {tuple(W.shape)}"
        )
    depth = len(dims) - 1
    if depth == 1:
        return (W,)
    k = min(dims)
    U, s, V = reduced_svd(W)
    if k < s.shape[0]:
        s = _checks._require(
            "W",
            s,
            lambda v: v[k] > 0,
            f"has rank above the narrowest width k = {k} of dims {dims}, so no "
            "network with these dims can represent it",
        )
    root = s[:k] ** (1.0 / depth)
    keys = [None] * (depth - 1) if key is None else jax.random.split(key, depth - 1)
    Q = [_orthonormal_columns(keys[j - 1], dims[j], k, W.dtype) for j in range(1, depth)]
    ws = [(Q[0] * root) @ V[:, :k].T]
    ws += [(Q[j] * root) @ Q[j - 1].T for j in range(1, depth - 1)]
    ws.append((U[:, :k] * root) @ Q[-1].T)
    return tuple(ws)


def balanced(
    key: PRNGKeyArray,
    dims: Sequence[int],
    scale: float,
    *,
    random_hidden: bool = True,
    dtype=None,
) -> Factors:
    """Balanced factors (Assumption 1) whose end-to-end matrix is a random Gaussian
    matrix scaled to Frobenius norm `scale`.

    The end-to-end matrix has rank `min(dims)` (full rank unless a hidden layer is
    narrower than `d_0` and `d_n`). With `random_hidden`, the orthonormal bases of the
    hidden layers in [`lnn_flow.init.from_end_to_end`][] are random too.
    """
    key = _checks.prng_key("key", key)
    dims = _checks.dims(dims)
    dtype = _checks.float_dtype("dtype", dtype)
    _checks.real_scalar("scale", scale)
    scale = _checks.non_negative("scale", _checks.as_float_array("scale", scale, ndim=0))
    scale = scale.astype(dtype)
    k_end, k_left, k_hidden = jax.random.split(key, 3)
    d0, dn, k = dims[0], dims[-1], min(dims)
    if k == min(d0, dn):
        W = jax.random.normal(k_end, (dn, d0), dtype)
    else:
        W = jax.random.normal(k_end, (dn, k), dtype) @ jax.random.normal(
            k_left, (k, d0), dtype
        )
    W = W * (scale / jnp.linalg.norm(W))
    return from_end_to_end(W, dims, key=k_hidden if random_hidden else None)


def gaussian(
    key: PRNGKeyArray,
    dims: Sequence[int],
    scale: float | Sequence[float] | None = None,
    *,
    dtype=None,
    std: float | Sequence[float] | None = None,
) -> Factors:
    """Factors with independent `N(0, scale^2)` entries: `scale` is the entries'
    standard deviation, one value or one per layer (for
    [`lnn_flow.init.balanced`][] it is the end-to-end matrix's Frobenius norm).
    Unbalanced in general: a test bed for Lemma 1.

    `std` is the deprecated name of `scale` (a DeprecationWarning; removed in the next
    release).
    """
    scale = renamed("gaussian", "std", "scale", std, scale, required=True)
    key = _checks.prng_key("key", key)
    dims = _checks.dims(dims)
    dtype = _checks.float_dtype("dtype", dtype)
    depth = len(dims) - 1
    if np.iscomplexobj(scale) or np.asarray(scale).dtype.kind not in "iuf":
        raise TypeError(
            f"`scale` must be real: one value or one per layer; got {scale!r}"
        )
    scales = np.asarray(scale, dtype=float)
    if scales.ndim == 0:
        scales = np.full(depth, float(scales))
    if scales.shape != (depth,):
        raise ValueError(
            f"`scale` must be one value or one per layer ({depth}); got {len(scales)}"
        )
    if not np.all(np.isfinite(scales)) or np.any(scales < 0):
        raise ValueError(f"`scale` must be finite and >= 0; got {scale}")
    keys = jax.random.split(key, depth)
    return tuple(
        scales[j] * jax.random.normal(keys[j], (dims[j + 1], dims[j]), dtype)
        for j in range(depth)
    )


def independent(
    key: PRNGKeyArray,
    dims: Sequence[int],
    scale: float,
    *,
    dtype=None,
) -> Factors:
    """Factors with independent `N(0, s^2)` entries, one `s` for every factor, such that
    the end-to-end matrix has expected squared Frobenius norm `scale^2`:

        E ||W_n ... W_1||_F^2 = d_0 prod_{j=1..n} (d_j s^2),
        s = (scale^2 / (d_0 d_1 ... d_n))^(1 / (2 n)).

    The initialization of Arora et al. (2019b, "Implicit Regularization in Deep Matrix
    Factorization"): their released code draws every factor of a `d x d` problem with
    `s = init_scale^(1/n) / sqrt(d)` (`init_scale = 1e-3` by default), which is this
    with `scale = init_scale sqrt(d)`; their ground truth has `||W*||_F = d`. Next to
    [`lnn_flow.init.balanced`][] (the same `scale`, but exactly, and balanced:
    Assumption 1), this one is unbalanced, at a magnitude that shrinks with `scale`
    (Proposition 2's regime of near-zero init).
    """
    key = _checks.prng_key("key", key)
    dims = _checks.dims(dims)
    dtype = _checks.float_dtype("dtype", dtype)
    _checks.real_scalar("scale", scale)
    scale = _checks.non_negative("scale", _checks.as_float_array("scale", scale, ndim=0))
    depth = len(dims) - 1
    # In logs: prod(dims) overflows nothing there.
    log_std = (2 * jnp.log(scale.astype(dtype)) - float(np.sum(np.log(dims)))) / (2 * depth)
    std = jnp.exp(log_std)
    keys = jax.random.split(key, depth)
    return tuple(
        std * jax.random.normal(keys[j], (dims[j + 1], dims[j]), dtype)
        for j in range(depth)
    )
