"""Training losses `l(W)` on the end-to-end matrix `W` of shape `(d_n, d_0)`.

Each loss is an `equinox.Module`: a pytree of its data, callable as `loss(W) -> scalar`,
so it passes through `jit`/`vmap`/`grad` and a change of data values never recompiles.
`loss.shape` is the `(d_n, d_0)` it expects; calling it on a matrix of another shape
raises (a static check: free at run time). Data must be real, finite and non-empty
(at least one example, measurement or entry). Anywhere a loss is accepted, a plain
callable `W -> scalar` works too.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._core import _checks


def _data(name: str, x, ndim: int) -> Float[Array, "..."]:
    x = _checks.non_empty(name, _checks.as_float_array(name, x, ndim=ndim))
    return _checks.finite(name, x)


def _indices(name: str, x, size: int | None, what: str = "hold indices") -> Int[Array, " m"]:
    """A 1-D integer array with entries in `[0, size)` (checked at run time if traced;
    `size=None`: the range is checked later)."""
    try:
        idx = jnp.asarray(x)
    except TypeError as err:
        raise TypeError(f"`{name}` must be a 1-D integer array; got {type(x).__name__}") from err
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise TypeError(f"`{name}` must be a 1-D integer array; got dtype {idx.dtype.name}")
    if idx.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D integer array; got shape {tuple(idx.shape)}")
    if size is None:
        return idx
    return _checks._require(
        name, idx, lambda v: ((v < 0) | (v >= size)).any(), f"must {what} in [0, {size})"
    )


def _fits(loss, W) -> None:
    """`W` must have the `(d_n, d_0)` shape the loss was built for (static shapes):
    indexing would clamp and broadcasting would pair the wrong entries silently."""
    if tuple(jnp.shape(W)) != tuple(loss.shape):
        raise ValueError(
            f"`W` must have shape {tuple(loss.shape)} (d_n, d_0) for this "
            f"{type(loss).__name__}; got {tuple(jnp.shape(W))}"
        )


def _same(name: str, got: int, other: str, expected: int, what: str) -> None:
    if got != expected:
        raise ValueError(
            f"`{name}` must match `{other}` in {what}: expected {expected}, got {got}"
        )


class _Mean:
    """A loss that is a mean over samples (examples, measurements or observed
    entries): `loss(W) = mean_i loss_i(W)`, the case of mini-batch SGD
    ([`lnn_flow.stochastic_gradient_descent`][]). `SAMPLED` names the data fields with
    one sample per row along `SAMPLE_AXIS`."""

    SAMPLED: tuple[str, ...] = ()
    SAMPLE_AXIS: tuple[int, ...] = ()

    @property
    def num_samples(self) -> int:
        """The number of samples `m` the loss averages over."""
        first = getattr(self, self.SAMPLED[0])
        return first.shape[self.SAMPLE_AXIS[0]]

    def subset(self, indices: Int[ArrayLike, " b"]):
        """The same loss over the samples `indices` (repeats count twice): the
        mini-batch loss. Traceable; indices are not range-checked (JAX clamps)."""
        indices = jnp.asarray(indices)
        picked = tuple(
            jnp.take(getattr(self, name), indices, axis=axis)
            for name, axis in zip(self.SAMPLED, self.SAMPLE_AXIS)
        )
        return eqx.tree_at(
            lambda loss: tuple(getattr(loss, name) for name in self.SAMPLED), self, picked
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
        _fits(self, W)
        return 0.5 * jnp.sum((W - self.target) ** 2)


def _examples(X, Y) -> tuple[Array, Array]:
    """Instances `X` (d_0, m) and labels `Y` (d_n, m), checked to agree on `m`."""
    X, Y = _data("X", X, 2), _data("Y", Y, 2)
    _same("Y", Y.shape[1], "X", X.shape[1], "number of examples m")
    return X, Y


class SquareRegression(_Mean, eqx.Module):
    """`l(W) = 1/(2m) ||W X - Y||_F^2` with instances `X` (d_0, m) and labels `Y`
    (d_n, m) as columns (Example 1)."""

    SAMPLED = ('X', 'Y')
    SAMPLE_AXIS = (1, 1)

    X: Float[Array, "d0 m"]
    Y: Float[Array, "dn m"]

    def __init__(self, X: Float[ArrayLike, "d0 m"], Y: Float[ArrayLike, "dn m"]):
        self.X, self.Y = _examples(X, Y)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.Y.shape[0], self.X.shape[0])

    def __call__(self, W: Float[Array, "dn d0"]) -> Float[Array, ""]:
        _fits(self, W)
        return 0.5 * jnp.mean(jnp.sum((W @ self.X - self.Y) ** 2, axis=0))


class LpRegression(_Mean, eqx.Module):
    """`l(W) = (1/m) sum_i ||W x_i - y_i||_p^p` for even `p` (Claim 1): convex, steep
    far from the optimum and flat near it for `p > 2`."""

    SAMPLED = ('X', 'Y')
    SAMPLE_AXIS = (1, 1)

    X: Float[Array, "d0 m"]
    Y: Float[Array, "dn m"]
    p: int = eqx.field(static=True)

    def __init__(
        self, X: Float[ArrayLike, "d0 m"], Y: Float[ArrayLike, "dn m"], p: int = 4
    ):
        p = _checks.positive_int("p", p)  # a Python integer (TypeError otherwise)
        if p < 2 or p % 2:
            raise ValueError(f"`p` must be an even integer >= 2; got {p!r}")
        self.X, self.Y = _examples(X, Y)
        self.p = int(p)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.Y.shape[0], self.X.shape[0])

    def __call__(self, W: Float[Array, "dn d0"]) -> Float[Array, ""]:
        _fits(self, W)
        return jnp.mean(jnp.sum((W @ self.X - self.Y) ** self.p, axis=0))


class MatrixSensing(_Mean, eqx.Module):
    """`l(W) = 1/(2m) sum_i (<W, A_i> - b_i)^2` with `<W, A> = Tr(W A^T)` (eq. 9)."""

    SAMPLED = ('A', 'b')
    SAMPLE_AXIS = (0, 0)

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
        _fits(self, W)
        return jnp.tensordot(self.A, W, axes=2)

    def __call__(self, W: Float[Array, "dn d0"]) -> Float[Array, ""]:
        return 0.5 * jnp.mean((self.measure(W) - self.b) ** 2)


class MatrixCompletion(_Mean, eqx.Module):
    """Matrix completion: eq. (9) with one-hot measurement matrices `A_i = e_r e_c^T`,
    `l(W) = 1/(2m) sum_i (W[rows_i, cols_i] - values_i)^2`, without forming `A`.

    An entry listed twice with different `values` is refused (no matrix fits both, so
    the planted truth would not be a minimizer); one listed twice with the same value
    is kept and counts twice in the mean (a weight: the minimizers do not change).
    """

    SAMPLED = ('rows', 'cols', 'values')
    SAMPLE_AXIS = (0, 0, 0)

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
        values = _data("values", values, 1)
        self.rows = _indices("rows", rows, shape[0])
        self.cols = _indices("cols", cols, shape[1])
        _same("rows", self.rows.shape[0], "values", values.shape[0], "length m")
        _same("cols", self.cols.shape[0], "values", values.shape[0], "length m")
        self.values = _one_value_per_entry(self.rows, self.cols, values, shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix_shape

    def __call__(self, W: Float[Array, "dn d0"]) -> Float[Array, ""]:
        _fits(self, W)
        return 0.5 * jnp.mean((W[self.rows, self.cols] - self.values) ** 2)


def _one_value_per_entry(rows, cols, values, d0: int) -> Float[Array, " m"]:
    """`values`, refused where one entry `(r, c)` is observed with two values."""

    def conflicts(v):  # v = [flat index; value]; after sorting by index, a repeated
        # index with two values has a neighbouring pair that differs (in any order)
        s = v[:, v[0].argsort()]
        return (s[0, 1:] == s[0, :-1]) & (s[1, 1:] != s[1, :-1])

    if all(_checks.is_concrete(x) for x in (rows, cols, values)):
        v = np.stack([np.asarray(rows) * d0 + np.asarray(cols), np.asarray(values)])
        v = v.astype(np.float64)
        bad = conflicts(v)
        if bad.any():
            s = v[:, v[0].argsort()]
            i = int(np.argmax(bad))
            r, c = divmod(int(s[0, i]), d0)
            raise ValueError(
                f"`values` give entry (row {r}, col {c}) two different values "
                f"({s[1, i]:.6g} and {s[1, i + 1]:.6g}); a matrix has one value per entry"
            )
        return values
    v = jnp.stack([rows * d0 + cols, values.astype(jnp.float64)]).astype(jnp.float64)
    return eqx.error_if(
        values, conflicts(v).any(),
        "`values` give one entry (row, col) two different values",
    )


class Logistic(_Mean, eqx.Module):
    """Mean multinomial cross-entropy of the logits `W X`: instances `X` (d_0, m) as
    columns, integer `labels` (m,) in `[0, num_classes)`, and `d_n = num_classes`."""

    SAMPLED = ('X', 'labels')
    SAMPLE_AXIS = (1, 0)

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
        labels = _indices("labels", labels, None)
        _same("labels", labels.shape[0], "X", self.X.shape[1], "number of examples m")
        if num_classes is None:
            if not _checks.is_concrete(labels):
                raise ValueError("`num_classes` is required when `labels` are traced")
            num_classes = int(np.max(np.asarray(labels))) + 1
        self.num_classes = _checks.positive_int("num_classes", num_classes)
        self.labels = _indices("labels", labels, self.num_classes, "lie")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_classes, self.X.shape[0])

    def __call__(self, W: Float[Array, "dn d0"]) -> Float[Array, ""]:
        _fits(self, W)
        logits = W @ self.X
        picked = jnp.take_along_axis(logits, self.labels[None, :], axis=0)[0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=0) - picked)


# Every loss above is >= 0: a negative `loss_threshold` could never be reached.
from ._maths._tensor_losses import TensorCompletion, TensorSensing  # noqa: E402

NON_NEGATIVE = (
    WhitenedSquare, SquareRegression, LpRegression, MatrixSensing, MatrixCompletion,
    Logistic, TensorCompletion, TensorSensing,
)
