"""Host-side checks of a batch (`solve_batch`, `solve_pool`), before anything is traced:
a bad value is a one-line `ValueError`/`TypeError` naming the argument, and a bad
member of `init` is named by its index, instead of a runtime error from inside the
compiled solve. Each registered method's checks come from its registry entry
([`lnn_flow._batching._methods`][]): its system builder and its options' `prepare`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree

from .._core import _checks
from .._flows._descent import check_options
from ._methods import METHODS, Method, arguments, bind
from .._solving._options import prepare


def batch_size(init: PyTree[Array]) -> int:
    """The common leading (seed) axis of every leaf of `init`."""
    leaves = jax.tree_util.tree_leaves(init)
    if not leaves:
        raise ValueError("`init` holds no arrays")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            "`init` must have one leading batch axis of the same size on every array; "
            f"got shapes {[tuple(np.shape(x)) for x in leaves]}"
        )
    size = sizes.pop()
    if size < 1:
        raise ValueError("`init` must hold at least one member; its batch axis has size 0")
    return size


def _members(init, name: str) -> None:
    """Every array of `init` real and non-empty, and each member finite; a bad member
    is named by its index. Host-side: traced `init` is left to the method's checks."""
    leaves = jax.tree_util.tree_leaves(init)
    named = len(leaves) > 1
    for j, x in enumerate(leaves):
        leaf = f"{name}[{j}]" if named else name
        _checks.real_dtype(leaf, jnp.result_type(x))
        if not _checks.is_concrete(x):
            continue
        a = np.asarray(x)
        if 0 in a.shape[1:]:
            raise ValueError(f"`{leaf}` members must be non-empty; got shape {a.shape}")
        ok = np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            raise ValueError(
                f"`{leaf}` member {int(bad[0])} has non-finite entries (NaN or inf)"
                + (f"; so do {len(bad) - 1} more" if len(bad) > 1 else "")
            )


@eqx.filter_jit
def _initial_losses(system, state, init):
    return jax.vmap(lambda member: system.loss_of_state(state(member)))(init)


def _finite_initial_losses(entry: Method, system, init, name: str) -> None:
    if not all(_checks.is_concrete(x) for x in jax.tree_util.tree_leaves(init)):
        return
    values = _initial_losses(system, entry.state, init)
    if values.ndim != 1 or not jnp.issubdtype(values.dtype, jnp.floating):
        raise TypeError(
            "`loss` must return a real scalar; got "
            f"{values.dtype.name} of shape {tuple(values.shape[1:])} per member"
        )
    ok = np.isfinite(np.asarray(values))
    if not ok.all():
        i = int(np.argmin(ok))
        raise ValueError(
            f"`{name}` member {i} gives a non-finite loss ({np.asarray(values)[i]}) at "
            "the initial state: the flow needs a finite loss to start from"
        )


def check_on_host(method, solve_one, loss, init, args, kwargs):
    """Validate a batch before anything is traced, so a bad value is a one-line
    `ValueError`/`TypeError` naming the argument (and the member), not a runtime error
    from inside the compiled solve. Returns `(args, kwargs)` with `depth` made a Python
    int (Python floats are traced, and a traced depth cannot fix the structure)."""
    first = _take(init, 0)
    bound = bind(method, solve_one, loss, first, args, kwargs)
    if bound is None or not isinstance(method, str):
        return args, kwargs
    entry = METHODS[method]
    shapes = [tuple(np.shape(x)) for x in jax.tree_util.tree_leaves(init)]
    if any(len(shape) != 3 for shape in shapes):
        what = "a tuple of factors, each " if entry.factors else ""
        raise ValueError(
            f"`init` must be {what}a (B, rows, cols) array: a leading batch axis over "
            f"matrices; got shapes {shapes}"
        )
    _members(init, "init")
    if "depth" in bound.arguments:
        bound.arguments["depth"] = _checks.positive_int("depth", bound.arguments["depth"])
    a = arguments(method, loss, first, tuple(bound.args[2:]), dict(bound.kwargs))
    system = entry.system(loss, first, a)
    dtype = jax.tree_util.tree_leaves(first)[0].dtype
    if entry.ode:
        options = entry.options(a)
        atol = options.atol
        if atol is None:  # a default scaled from the state, >= the smallest normal float
            _checks.real_scalar("rtol", options.rtol)
            atol = float(np.finfo(dtype).tiny)
        state = jax.tree_util.tree_map(np.asarray, entry.state(first))
        solve_kwargs = {**options.solve_kwargs(), "atol": atol}
        prepare(state, t1=a["t1"], ts=a["ts"], **solve_kwargs, loss=loss)
    else:
        check_options(a["lr"], a["steps"], a["save_every"], a["optimizer"], dtype)
    _finite_initial_losses(entry, system, init, "init")
    return tuple(bound.args[2:]), dict(bound.kwargs)


def _take(tree, index):
    leaves = jax.tree_util.tree_leaves(tree)
    if all(isinstance(x, jax.Array) and _checks.is_concrete(x) for x in leaves):
        return _take_compiled(tree, index)  # one dispatch for every leaf
    return jax.tree_util.tree_map(lambda x: x[index], tree)


@jax.jit
def _take_compiled(tree, index):
    return jax.tree_util.tree_map(lambda x: x[index], tree)
