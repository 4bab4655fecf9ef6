"""Training losses `l(W)` on an end-to-end tensor `W` of shape `(d_1, ..., d_N)`
(Section 5): tensor completion and tensor sensing, the order-`N` analogues of eq. (9).

Like the matrix losses of `lnn_flow.losses` (which re-exports these), each is an
`equinox.Module` callable as `loss(W) -> scalar`; `loss.shape` is the tensor shape it
expects and calling it on another shape raises. [`fits_loss`][] is the tensor-shape
check the CP flow runs on its initial factors.
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from .._core import _checks
from ._cp import tensor_shape


def fits_loss(loss, shape: tuple[int, ...], name: str) -> None:
    """A loss that knows its input shape (`loss.shape`) must match `shape`, the tensor
    that the argument `name` gives."""
    _checks.fits_loss(loss, shape, name, what="tensor", axes="(d_1, ..., d_N)")


def _fits(loss, W) -> None:
    if tuple(jnp.shape(W)) != tuple(loss.shape):
        raise ValueError(
            f"`W` must have shape {tuple(loss.shape)} (d_1, ..., d_N) for this "
            f"{type(loss).__name__}; got {tuple(jnp.shape(W))}"
        )


def _data(name: str, x, ndim: int | None = None):
    x = _checks.non_empty(name, _checks.as_float_array(name, x, ndim=ndim))
    return _checks.finite(name, x)


def _same_m(name: str, got: int, other: str, expected: int) -> None:
    if got != expected:
        raise ValueError(
            f"`{name}` must match `{other}` in number of measurements m: expected "
            f"{expected}, got {got}"
        )


class TensorCompletion(eqx.Module):
    """Tensor completion: `l(W) = 1/(2m) sum_i (W[indices_i] - values_i)^2` over the
    `m` observed entries `indices` (m, N) of a tensor of `shape` (d_1, ..., d_N).

    An entry listed twice with different `values` is refused (no tensor fits both);
    one listed twice with the same value counts twice in the mean."""

    indices: Int[Array, "m N"]
    values: Float[Array, " m"]
    tensor_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        indices: Int[ArrayLike, "m N"],
        values: Float[ArrayLike, " m"],
        shape: tuple[int, ...],
    ):
        shape = tensor_shape(shape, "shape")
        self.tensor_shape = shape
        values = _data("values", values, 1)
        idx = _index_array(indices, len(shape))
        _same_m("indices", idx.shape[0], "values", values.shape[0])
        bounds = np.asarray(shape)
        idx = _checks._require(
            "indices", idx, lambda v: ((v < 0) | (v >= bounds)).any(),
            lambda: f"must hold entries in [0, d_n) for shape {shape}"
            + _first_out_of_range(idx, bounds),
        )
        self.indices = idx
        self.values = _one_value_per_entry(idx, values, shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.tensor_shape

    def __call__(self, W: Float[Array, "*E"]) -> Float[Array, ""]:
        _fits(self, W)
        return 0.5 * jnp.mean((W[tuple(self.indices.T)] - self.values) ** 2)


def _index_array(indices, order: int) -> Int[Array, "m N"]:
    try:
        idx = jnp.asarray(indices)
    except TypeError as err:
        raise TypeError(
            f"`indices` must be an (m, N) integer array; got {type(indices).__name__}"
        ) from err
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise TypeError(f"`indices` must be an (m, N) integer array; got dtype {idx.dtype.name}")
    if idx.ndim != 2 or idx.shape[1] != order:
        raise ValueError(
            f"`indices` must have shape (m, N) with one column per mode (N = {order} for "
            f"this shape); got shape {tuple(idx.shape)}"
        )
    return _checks.non_empty("indices", idx)


def _first_out_of_range(idx, bounds: np.ndarray) -> str:
    if not _checks.is_concrete(idx):
        return ""
    idx = np.asarray(idx)
    i, n = np.argwhere((idx < 0) | (idx >= bounds))[0]
    return f"; indices[{i}, {n}] = {idx[i, n]} is outside [0, {bounds[n]})"


def _one_value_per_entry(idx, values, shape) -> Float[Array, " m"]:
    """`values`, refused where one entry is observed with two different values."""

    def conflicts(flat, v):  # sorted by entry, a repeat with two values has a
        order = flat.argsort()  # neighbouring pair that differs
        f, v = flat[order], v[order]
        return (f[1:] == f[:-1]) & (v[1:] != v[:-1]), order

    if _checks.is_concrete(idx) and _checks.is_concrete(values):
        flat = np.ravel_multi_index(tuple(np.asarray(idx).T), shape)
        bad, order = conflicts(flat, np.asarray(values))
        if bad.any():
            i = order[int(np.argmax(bad))]
            raise ValueError(
                f"`values` give entry {tuple(int(x) for x in np.asarray(idx)[i])} two "
                "different values; a tensor has one value per entry"
            )
        return values
    flat = jnp.ravel_multi_index(tuple(idx.T), shape, mode="clip")
    bad, _ = conflicts(flat, values)
    return eqx.error_if(values, bad.any(), "`values` give one entry two different values")


class TensorSensing(eqx.Module):
    """Tensor sensing: `l(W) = 1/(2m) sum_i (<A_i, W> - b_i)^2` with measurement
    tensors `A` of shape (m, d_1, ..., d_N) and `<A_i, W>` the sum of their entrywise
    product (eq. 9 lifted to order N)."""

    A: Float[Array, "m *E"]
    b: Float[Array, " m"]

    def __init__(self, A: Float[ArrayLike, "m *E"], b: Float[ArrayLike, " m"]):
        A = _data("A", A)
        if A.ndim < 3:
            raise ValueError(
                "`A` must have shape (m, d_1, ..., d_N) with order N >= 2; got shape "
                f"{tuple(A.shape)}"
            )
        self.A = A
        self.b = _data("b", b, 1)
        _same_m("b", self.b.shape[0], "A", self.A.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.A.shape[1:])

    def measure(self, W: Float[Array, "*E"]) -> Float[Array, " m"]:
        """The measurements `<A_i, W>`."""
        _fits(self, W)
        return jnp.tensordot(self.A, W, axes=W.ndim)

    def __call__(self, W: Float[Array, "*E"]) -> Float[Array, ""]:
        return 0.5 * jnp.mean((self.measure(W) - self.b) ** 2)
