"""Argument validation with messages that name the argument and what was expected.

Shape checks are static and always run. Value checks (finiteness, signs) raise a
`ValueError` at once on concrete inputs; on traced inputs (inside a user's `jit` or
`vmap`) they become `equinox.error_if` runtime checks, so bad values still fail loudly.
"""

import contextlib
import sys
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def host_level(function: str, **arguments):
    """Refuse a traced argument of a host-level function: `solve_batch` and its kin
    choose a strategy, split over devices and dispatch compiled solves, which a
    user's `jax.jit` (or `vmap`, `grad`) cannot trace through."""
    for name, value in arguments.items():
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(value)):
            raise TypeError(
                f"`{name}` is a traced value: `{function}` was called inside "
                "`jax.jit`, `vmap` or `grad`. It is a host-level function that "
                "dispatches solves it compiles itself: call it outside the "
                "transformation (repeated calls with new values reuse its compiled "
                "program), or transform a single flow instead, e.g. "
                "`jax.vmap(lambda ws: lf.factor_flow(loss, ws, t1))(inits)`."
            )


@contextlib.contextmanager
def traceable_loss(name: str = "loss"):
    """Name the loss when it cannot be traced: a loss written with NumPy converts
    the traced array it is given (`np.asarray`, a NumPy function) and JAX raises a
    `TracerArrayConversionError` deep inside the solve."""
    try:
        yield
    except jax.errors.TracerArrayConversionError as err:
        raise TypeError(
            f"`{name}` must be traceable by JAX (written with `jax.numpy`): it converted "
            "the traced array it was called with to a NumPy array (`np.asarray` or a "
            "NumPy function on its argument). Flows differentiate and compile the loss, "
            f"so `{name}` is called on traced arrays; replace `np.` with `jnp.` in it."
        ) from err


def _require(name: str, x, bad, message: str, on=None):
    """Raise (concrete) or attach a runtime error (traced) where `bad(x)` holds.

    Returns `on` (default `x`) carrying the check. A traced check lives only in the
    value returned (an unused `eqx.error_if` is dead code under `jit`), so callers must
    use it: `ts = _require("ts", ts, ...)`, or `t1 = _require("t1", t1 - t0, ..., on=t1)`.
    """
    text = lambda: f"`{name}` {message() if callable(message) else message}"
    on = x if on is None else on
    if is_concrete(x):
        # On the host: `bad` uses operators and array methods that NumPy and JAX
        # share, so concrete checks dispatch no JAX ops;
        # a callable `message` is only formatted when the check fails.
        if bool(bad(np.asarray(x))):
            raise ValueError(text())
        return on
    return eqx.error_if(on, _announced(bad(x), text()), text())


def _announced(flag, text: str):
    """`flag`, passed through a host callback that prints `lnn_flow: <text>` on stderr
    where it is set, before the error it raises: under `jax.jit` (not equinox's
    `filter_jit`) the text of a runtime error sits deep inside JAX's wrapping of it,
    and the printed line is the first the user sees. The returned flag depends on the
    callback, so the line is printed before the error is raised."""

    def announce(value):
        value = np.asarray(value)
        if value.any():
            print(f"lnn_flow: {text}", file=sys.stderr, flush=True)
        return value

    shape = jax.ShapeDtypeStruct(jnp.shape(flag), jnp.result_type(flag))
    return jax.pure_callback(announce, shape, flag, vmap_method="broadcast_all")


def finite(name: str, x):
    """`x` with a check that all its entries are finite."""
    return _require(
        name, x, lambda v: ~(abs(v) < np.inf).all(), "must be finite; got NaN or inf"
    )


def positive(name: str, x):
    x = finite(name, x)
    return _require(
        name, x, lambda v: ~(v > 0).all(), lambda: f"must be > 0; got {_show(x)}"
    )


def non_negative(name: str, x):
    x = finite(name, x)
    return _require(
        name, x, lambda v: ~(v >= 0).all(), lambda: f"must be >= 0; got {_show(x)}"
    )


def target_norm(norm, rank: int, dtype):
    """The Frobenius norm a planted ground truth is scaled to: `norm` (a real scalar
    >= 0), by default `sqrt(rank)` (components or singular values of order one)."""
    if norm is None:
        return jnp.sqrt(rank)
    real_scalar("norm", norm)
    return non_negative("norm", as_float_array("norm", norm, ndim=0)).astype(dtype)


def _show(x) -> str:
    return str(np.asarray(x)) if is_concrete(x) else "a traced value"


def as_float_array(name: str, x, ndim: int | None = None) -> jax.Array:
    """`x` as a real floating JAX array: float types are kept, integers become float64.

    Complex, boolean and non-numeric input is refused (`TypeError`): casting would drop
    an imaginary part or turn flags into numbers silently.
    """
    if isinstance(x, (str, bytes)):
        raise TypeError(f"`{name}` must be a real array; got {type(x).__name__}")
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating):
        arr = x  # already a real JAX array: no conversion to dispatch
    else:
        arr = _as_array(name, x)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"`{name}` must have {ndim} dimension(s); got shape {tuple(arr.shape)}"
        )
    return arr


def _as_array(name: str, x) -> jax.Array:
    try:
        arr = jnp.asarray(x)
    except TypeError as err:
        raise TypeError(
            f"`{name}` must be a real array; got {type(x).__name__}"
        ) from err
    real_dtype(name, arr.dtype)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.float64)
    return arr


def real_dtype(name: str, dtype) -> None:
    """Refuse a dtype that is not a real number type (complex, bool, object, ...)."""
    dtype = np.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"`{name}` must be real; got {dtype.name} (take `.real` explicitly if the "
            "imaginary part is meant to be dropped)"
        )
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"`{name}` must hold real numbers; got dtype {dtype.name}")


def float_dtype(name: str, dtype) -> np.dtype:
    """A real floating dtype for `dtype=` arguments (`float32`, `float64`, ...).
    `None`: float64, or float32 where JAX's 64-bit mode is off (`LNN_FLOW_NO_X64=1`):
    the widest float the process has, asked for without JAX's truncation warning."""
    if dtype is None:
        return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"`{name}` must be a real floating dtype; got {dtype!r}") from err
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"`{name}` must be a real floating dtype (e.g. jnp.float64); got {dtype.name}"
        )
    return dtype


def prng_key(name: str, key):
    """A JAX PRNG key: typed (`jax.random.key(0)`) or raw uint32 (`jax.random.PRNGKey(0)`)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and (
        jnp.issubdtype(dtype, jax.dtypes.prng_key)
        or (dtype == jnp.uint32 and np.ndim(key) >= 1)
    ):
        return key
    raise TypeError(
        f"`{name}` must be a JAX PRNG key (e.g. jax.random.PRNGKey(0)); got {key!r}"
    )


def non_empty(name: str, x):
    """`x` with a check that it has no zero-length axis (shapes are static)."""
    if 0 in np.shape(x):
        raise ValueError(f"`{name}` must be non-empty; got shape {tuple(np.shape(x))}")
    return x


def real_scalar(name: str, x) -> None:
    """Refuse Python/NumPy scalars that are complex or boolean (`True` is not a time)."""
    if isinstance(x, (bool, np.bool_)) or np.iscomplexobj(x):
        raise TypeError(f"`{name}` must be a real number; got {x!r}")


def integers(value: Sequence[int], name: str) -> tuple[int, ...]:
    """`value` as a tuple of Python ints, refused unless every entry is an integer."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"`{name}` must be a sequence of integers; got {value!r}")
    try:
        out = tuple(int(d) for d in value)
    except (TypeError, ValueError, OverflowError) as err:
        raise TypeError(f"`{name}` must be a sequence of integers; got {value!r}") from err
    if any(o != d for o, d in zip(out, value)):
        raise TypeError(f"`{name}` must hold integers; got {tuple(value)}")
    return out


def dims(value: Sequence[int], name: str = "dims") -> tuple[int, ...]:
    """`(d_0, d_1, ..., d_n)`: at least two positive integers (depth n >= 1)."""
    out = integers(value, name)
    if len(out) < 2:
        raise ValueError(
            f"`{name}` must be (d_0, ..., d_n) with depth n >= 1, i.e. at least two "
            f"entries; got {out}"
        )
    if any(d < 1 for d in out):
        raise ValueError(f"`{name}` must hold positive widths; got {out}")
    return out


def positive_int(name: str, value, minimum: int = 1, *, integral_floats: bool = True) -> int:
    """`value` as a Python `int >= minimum`; errors name the caller's argument `name`.

    The one check for counts and static sizes (depth, rank, steps, ...). Sizes fix the
    structure of a compiled function, so a traced value is refused. With
    `integral_floats` (the default), integral floats and 0-d arrays (`2.0`,
    `np.int64(2)`) are accepted; without, only `int` and NumPy integers are (a count
    such as `steps` given as `2.0` is more likely a mix-up than a count).
    """
    if not is_concrete(value):
        raise TypeError(
            f"`{name}` must be a Python integer (it fixes the structure); got a traced "
            "value"
        )
    if integral_floats:
        arr = np.asarray(value) if not isinstance(value, (str, bytes)) else None
        bad = (
            arr is None
            or arr.ndim != 0
            or arr.dtype.kind not in "iuf"
            or not np.isfinite(arr)
            or int(arr) != arr
        )
    else:
        bad = isinstance(value, bool) or not isinstance(value, (int, np.integer))
    if bad:
        raise TypeError(f"`{name}` must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}")
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
    ws = tuple(
        non_empty(f"{name}[{j}]", as_float_array(f"{name}[{j}]", w, ndim=2))
        for j, w in enumerate(ws)
    )
    for j in range(1, len(ws)):
        if ws[j].dtype != ws[0].dtype:
            raise TypeError(
                f"`{name}` must share one float dtype: {name}[0] is {ws[0].dtype.name} "
                f"but {name}[{j}] is {ws[j].dtype.name}; cast them to one dtype"
            )
    for j in range(1, len(ws)):
        if ws[j].shape[1] != ws[j - 1].shape[0]:
            raise ValueError(
                f"`{name}` dims do not chain: {name}[{j}] has shape "
                f"{tuple(ws[j].shape)} but {name}[{j - 1}] has shape "
                f"{tuple(ws[j - 1].shape)}; W_{{j+1}} needs {ws[j - 1].shape[0]} "
                "columns"
            )
    return ws


def fits_loss(
    loss, shape: tuple[int, ...], name: str, what: str = "matrix", axes: str = "(d_n, d_0)"
) -> None:
    """A loss that knows its input shape (`loss.shape`) must match `shape`, the
    end-to-end `what` (matrix, tensor) that the argument `name` gives."""
    expected = getattr(loss, "shape", None)
    if expected is not None and tuple(expected) != tuple(shape):
        raise ValueError(
            f"`{name}` gives an end-to-end {what} of shape {tuple(shape)} but the loss "
            f"expects shape {tuple(expected)} {axes}"
        )
    if not callable(loss):
        raise TypeError(f"`loss` must be callable W -> scalar; got {type(loss).__name__}")


@eqx.filter_jit
def _loss_at(system, y):
    return system.loss(system.end_to_end(y))


def scalar_loss(value) -> None:
    """A loss value must be a real scalar (checked on its shape and dtype only, so it
    runs at trace time too)."""
    if jnp.ndim(value) != 0 or not jnp.issubdtype(jnp.result_type(value), jnp.floating):
        raise TypeError(
            "`loss` must return a real scalar; got "
            f"{jnp.result_type(value).name} of shape {tuple(jnp.shape(value))}"
        )


def refuse_nonfinite_initial_loss(name: str, value, out):
    """`out`, refused unless the initial loss `value` is finite: a `ValueError` on a
    concrete value, a runtime error attached to `out` on a traced one. `name` is what
    the user passed as the initial state."""
    message = lambda: (
        f"`{name}` gives a non-finite loss ({_show(value)}) at the initial state: the "
        "flow needs a finite loss to start from"
    )
    if is_concrete(value):
        if not np.isfinite(np.asarray(value)):
            raise ValueError(message())
        return out
    return eqx.error_if(out, ~jnp.isfinite(value), message())


def finite_initial_loss(name: str, system, y0):
    """`y0`, refused unless the loss at it is a finite real scalar: a flow from a
    NaN/inf loss has no direction to follow, and a solver would spend every step on it
    before failing. `name` is what the user passed as the initial state. Costs one
    small compiled loss evaluation, no solve; on a traced `y0` the check is attached
    to `y0` as a runtime error. (The ODE solves check inside their own compiled call:
    `lnn_flow._solving._solve`.)"""
    with traceable_loss():
        value = _loss_at(system, y0)
    scalar_loss(value)
    return refuse_nonfinite_initial_loss(name, value, y0)


def one_of(name: str, value, choices: dict):
    """`choices[value]` for a string `value` naming one of `choices`; else a clear
    error naming the argument and the names it takes."""
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string, one of {list(choices)}; got {value!r}")
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; got {value!r}")
    return choices[value]
