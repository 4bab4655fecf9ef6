"""Training losses `l(W)` on the end-to-end matrix `W` of shape `(d_n, d_0)`.

Each loss is an `equinox.Module`: a pytree of its data, callable as `loss(W) -> scalar`,
so it passes through `jit`/`vmap`/`grad` and a change of data values never recompiles.
`loss.shape` is the `(d_n, d_0)` it expects. Anywhere a loss is accepted, a plain
callable `W -> scalar` works too.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from . import _checks


def _data(name: str, x, ndim: int) -> Float[Array, "..."]:
    return _checks.finite(name, _checks.as_float_array(name, x, ndim=ndim))


def _same(name: str, got: int, other: str, expected: int, what: str) -> None:
    if got != expected:
        raise ValueError(
            f"`{name}` must match `{other}` in {what}: expected {expected}, got {got}"
        )


class WhitenedSquare(eqx.Module):
    """`l(W) = 1/2 ||W - target||_F^2`: the square loss of linear regression with
    whitened inputs, up to a constant (Example 1, `target = Lambda_yx`).
    1-strongly convex, minimized by `target` with `l* = 0`."""

    target: Float[Array, "dn d0"]

    def __init__(self, target: Float[ArrayLike, "dn d0"]):
        self.target = _data("target", target, 2)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.target.shape)

    def __call__(self, W: Float[Array, "dn d0"]) -> Float[Array, ""]:
        return 0.5 * jnp.sum((W - self.target) ** 2)


class SquareRegression(eqx.Module):
    """`l(W) = 1/(2m) ||W X - Y||_F^2` with instances `X` (d_0, m) and labels `Y`
    (d_n, m) as columns (Example 1)."""

    X: Float[Array, "d0 m"]
    Y: Float[Array, "dn m"]

    def __init__(self, X: Float[ArrayLike, "d0 m"], Y: Float[ArrayLike, "dn m"]):
        self.X = _data("X", X, 2)
        self.Y = _data("Y", Y, 2)
        _same("Y", self.Y.shape[1], "X", self.X.shape[1], "number of examples m")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.Y.shape[0], self.X.shape[0])

    def __call__(self, W: Float[Array, "dn d0"]) -> Float[Array, ""]:
        return 0.5 * jnp.mean(jnp.sum((W @ self.X - self.Y) ** 2, axis=0))


class LpRegression(eqx.Module):
    """`l(W) = (1/m) sum_i ||W x_i - y_i||_p^p` for even `p` (Claim 1): convex, steep
    far from the optimum and flat near it for `p > 2`."""

    X: Float[Array, "d0 m"]
    Y: Float[Array, "dn m"]
    p: int = eqx.field(static=True)

    def __init__(
        self, X: Float[ArrayLike, "d0 m"], Y: Float[ArrayLike, "dn m"], p: int = 4
    ):
        if isinstance(p, bool) or int(p) != p or p < 2 or p % 2:
            raise ValueError(f"`p` must be an even integer >= 2; got {p!r}")
        self.X = _data("X", X, 2)
        self.Y = _data("Y", Y, 2)
        _same("Y", self.Y.shape[1], "X", self.X.shape[1], "number of examples m")
        self.p = int(p)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.Y.shape[0], self.X.shape[0])

    def __call__(self, W: Float[Array, "dn d0"]) -> Float[Array, ""]:
        return jnp.mean(jnp.sum((W @ self.X - self.Y) ** self.p, axis=0))


class MatrixSensing(eqx.Module):
    """`l(W) = 1/(2m) sum_i (<W, A_i> - b_i)^2` with `<W, A> = Tr(W A^T)` (eq. 9)."""

    A: Float[Array, "m dn d0"]
    b: Float[Array, " m"]

    def __init__(self, A: Float[ArrayLike, "m dn d0"], b: Float[ArrayLike, " m"]):
        self.A = _data("A", A, 3)
        self.b = _data("b", b, 1)
        _same("b", self.b.shape[0], "A", self.A.shape[0], "number of measurements m")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.A.shape[1:])

    def measure(self, W: Float[Array, "dn d0"]) -> Float[Array, " m"]:
        """The measurements `<W, A_i>`."""
        return jnp.tensordot(self.A, W, axes=2)

    def __call__(self, W: Float[Array, "dn d0"]) -> Float[Array, ""]:
        return 0.5 * jnp.mean((self.measure(W) - self.b) ** 2)


class MatrixCompletion(eqx.Module):
    """Matrix completion: eq. (9) with one-hot measurement matrices `A_i = e_r e_c^T`,
    `l(W) = 1/(2m) sum_i (W[rows_i, cols_i] - values_i)^2`, without forming `A`."""

    rows: Int[Array, " m"]
    cols: Int[Array, " m"]
    values: Float[Array, " m"]
    matrix_shape: tuple[int, int] = eqx.field(static=True)

    def __init__(
        self,
        rows: Int[ArrayLike, " m"],
        cols: Int[ArrayLike, " m"],
        values: Float[ArrayLike, " m"],
        shape: tuple[int, int],
    ):
        shape = _checks.dims(shape, "shape")
        if len(shape) != 2:
            raise ValueError(f"`shape` must be (d_n, d_0); got {shape}")
        self.matrix_shape = shape
        self.values = _data("values", values, 1)
        for name, idx, size in (("rows", rows, shape[0]), ("cols", cols, shape[1])):
            idx = jnp.asarray(idx)
            if idx.ndim != 1 or not jnp.issubdtype(idx.dtype, jnp.integer):
                raise ValueError(f"`{name}` must be a 1-D integer array")
            _same(name, idx.shape[0], "values", self.values.shape[0], "length m")
            _checks._require(
                name, idx, lambda v: jnp.any((v < 0) | (v >= size)),
                f"must hold indices in [0, {size})",
            )
            setattr(self, name, idx)

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix_shape

    def __call__(self, W: Float[Array, "dn d0"]) -> Float[Array, ""]:
        return 0.5 * jnp.mean((W[self.rows, self.cols] - self.values) ** 2)


class Logistic(eqx.Module):
    """Mean multinomial cross-entropy of the logits `W X`: instances `X` (d_0, m) as
    columns, integer `labels` (m,) in `[0, num_classes)`, and `d_n = num_classes`."""

    X: Float[Array, "d0 m"]
    labels: Int[Array, " m"]
    num_classes: int = eqx.field(static=True)

    def __init__(
        self,
        X: Float[ArrayLike, "d0 m"],
        labels: Int[ArrayLike, " m"],
        num_classes: int | None = None,
    ):
        self.X = _data("X", X, 2)
        labels = jnp.asarray(labels)
        if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError("`labels` must be a 1-D integer array")
        _same("labels", labels.shape[0], "X", self.X.shape[1], "number of examples m")
        if num_classes is None:
            if not _checks.is_concrete(labels):
                raise ValueError("`num_classes` is required when `labels` are traced")
            num_classes = int(np.max(np.asarray(labels))) + 1
        self.num_classes = _checks.depth(num_classes, "num_classes")
        self.labels = _checks._require(
            "labels", labels, lambda v: jnp.any((v < 0) | (v >= self.num_classes)),
            f"must lie in [0, {self.num_classes})",
        )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_classes, self.X.shape[0])

    def __call__(self, W: Float[Array, "dn d0"]) -> Float[Array, ""]:
        logits = W @ self.X
        picked = jnp.take_along_axis(logits, self.labels[None, :], axis=0)[0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=0) - picked)
