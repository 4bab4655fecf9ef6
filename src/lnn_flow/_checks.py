"""Argument validation with messages that name the argument and what was expected.

Shape checks are static and always run. Value checks (finiteness, signs) raise a
`ValueError` at once on concrete inputs; on traced inputs (inside a user's `jit` or
`vmap`) they become `equinox.error_if` runtime checks, so bad values still fail loudly.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _require(name: str, x, bad, message: str):
    """Raise (concrete) or attach a runtime error (traced) where `bad(x)` holds."""
    full = f"`{name}` {message}"
    if is_concrete(x):
        # On the host: `bad` uses operators and array methods that NumPy and JAX
        # share, so concrete checks dispatch no JAX ops (~0.4 ms a solve otherwise).
        if bool(bad(np.asarray(x))):
            raise ValueError(full)
        return x
    return eqx.error_if(x, bad(x), full)


def finite(name: str, x):
    """`x` with a check that all its entries are finite."""
    return _require(
        name, x, lambda v: ~(abs(v) < np.inf).all(), "must be finite; got NaN or inf"
    )


def positive(name: str, x):
    x = finite(name, x)
    return _require(name, x, lambda v: ~(v > 0).all(), f"must be > 0; got {_show(x)}")


def non_negative(name: str, x):
    x = finite(name, x)
    return _require(
        name, x, lambda v: ~(v >= 0).all(), f"must be >= 0; got {_show(x)}"
    )


def _show(x) -> str:
    return str(np.asarray(x)) if is_concrete(x) else "a traced value"


def as_float_array(name: str, x, ndim: int | None = None) -> jax.Array:
    """`x` as a floating JAX array (float64 unless it already is a float type)."""
    try:
        arr = jnp.asarray(x)
    except TypeError as err:
        raise TypeError(f"`{name}` must be an array; got {type(x).__name__}") from err
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"`{name}` must have {ndim} dimension(s); got shape {tuple(arr.shape)}"
        )
    return arr


def dims(value: Sequence[int], name: str = "dims") -> tuple[int, ...]:
    """`(d_0, d_1, ..., d_n)`: at least two positive integers (depth n >= 1)."""
    try:
        out = tuple(int(d) for d in value)
    except TypeError as err:
        raise TypeError(f"`{name}` must be a sequence of integers") from err
    if any(o != d for o, d in zip(out, value)):
        raise TypeError(f"`{name}` must hold integers; got {tuple(value)}")
    if len(out) < 2:
        raise ValueError(
            f"`{name}` must be (d_0, ..., d_n) with depth n >= 1, i.e. at least two "
            f"entries; got {out}"
        )
    if any(d < 1 for d in out):
        raise ValueError(f"`{name}` must hold positive widths; got {out}")
    return out


def depth(value, name: str = "depth") -> int:
    if isinstance(value, bool) or int(value) != value:
        raise TypeError(f"`{name}` must be an integer; got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1; got {value}")
    return int(value)


def factors(ws, name: str = "ws") -> tuple[jax.Array, ...]:
    """A tuple `(W_1, ..., W_n)` of 2-D arrays with `W_j` of shape `(d_j, d_{j-1})`."""
    if isinstance(ws, (jax.Array, np.ndarray)):
        raise TypeError(
            f"`{name}` must be a tuple of factor matrices (W_1, ..., W_n); got a single "
            f"array of shape {tuple(ws.shape)}"
        )
    try:
        ws = tuple(ws)
    except TypeError as err:
        raise TypeError(
            f"`{name}` must be a tuple of factor matrices (W_1, ..., W_n)"
        ) from err
    if len(ws) < 1:
        raise ValueError(f"`{name}` must hold at least one factor (depth >= 1)")
    ws = tuple(as_float_array(f"{name}[{j}]", w, ndim=2) for j, w in enumerate(ws))
    for j in range(1, len(ws)):
        if ws[j].shape[1] != ws[j - 1].shape[0]:
            raise ValueError(
                f"`{name}` dims do not chain: {name}[{j}] has shape "
                f"{tuple(ws[j].shape)} but {name}[{j - 1}] has shape "
                f"{tuple(ws[j - 1].shape)}; W_{{j+1}} needs {ws[j - 1].shape[0]} "
                "columns"
            )
    return ws


def fits_loss(loss, shape: tuple[int, int], name: str) -> None:
    """A loss that knows its input shape (`loss.shape`) must match `shape`."""
    expected = getattr(loss, "shape", None)
    if expected is not None and tuple(expected) != tuple(shape):
        raise ValueError(
            f"`{name}` gives an end-to-end matrix of shape {tuple(shape)} but the loss "
            f"expects shape {tuple(expected)} (d_n, d_0)"
        )
    if not callable(loss):
        raise TypeError(f"`loss` must be callable W -> scalar; got {type(loss).__name__}")
