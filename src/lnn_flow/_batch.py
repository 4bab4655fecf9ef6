"""One problem solved from `B` initializations at once, across every visible device.

The seed axis is `jax.vmap`-ed and, with more than one device, split over a 1-D mesh
with `jax.shard_map`: each device runs the vmapped solve on its own slice of seeds and
never talks to the others. Seen with jax 0.10 / diffrax 0.7 on 8 CPU devices
(`python benchmarks/mesh.py` times all three ways and prints their differences):

- `jit(vmap(solve))` on input sharded over an Explicit-axes mesh fails inside
  `diffeqsolve` ("Resource axis ... not found in mesh");
- over an Auto-axes mesh it runs, but GSPMD syncs the devices at every solver step (the
  while loop's stop test reduces over the whole batch);
- `shard_map(vmap(solve), check_vma=False)` lets each device run its own while loop and
  takes the same steps for every member; values agree to rounding (XLA may pick other
  kernels for another per-device batch size: `tests/test_batch.py` bounds the
  difference by 1e-11). `check_vma=True` rejects equinox's runtime checks inside the
  solve.

One exception: a solve with a `loss_threshold` stop locates it with optimistix/lineax,
whose structure check rejects shard_map's manual-axes shardings ("pytree does not match
out_structure", with pmap too); such a batch falls back to the Auto-axes mesh.

A batch whose size is not a multiple of the device count is padded with copies of its
first member and the padding is trimmed from the result. With one device (the default
on a plain machine) the call is a plain `jit(vmap(solve))`: no mesh, no padding.
"""

from collections.abc import Callable, Sequence
from typing import Any

import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec
from jaxtyping import Array, PyTree

from . import _checks
from ._descent import check_options, end_to_end_descent, gradient_descent
from ._end_to_end import _EndToEndSystem, end_to_end_flow
from ._factor import _FactorSystem, factor_flow
from ._pool import PoolStats, pool_problem, pooled_solve
from ._solution import FlowSolution, prepare
from ._spectral import decomposition_name

BATCH_AXIS = "batch"


# name -> `solve(loss, init, *args, **kwargs) -> FlowSolution` for one member.
METHODS: dict[str, Callable[..., FlowSolution]] = {
    "factor": factor_flow,
    "end_to_end": end_to_end_flow,
    "descent": gradient_descent,
    "end_to_end_descent": end_to_end_descent,
}


def _method(method) -> Callable[..., FlowSolution]:
    if callable(method):
        return method
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {sorted(METHODS)} or a callable "
            f"`(loss, init, *args, **kwargs) -> FlowSolution`; got {method!r}"
        )
    return METHODS[method]


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


def _bind(method, solve_one, loss, init, args, kwargs) -> inspect.BoundArguments | None:
    """`solve_one(loss, member, *args, **kwargs)` bound to its signature (None when it
    has none): a missing or unknown argument is a `TypeError` here that shows what the
    method takes after `init`, not an error from inside the trace."""
    try:
        signature = inspect.signature(solve_one)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to bind
        return None
    try:
        return signature.bind(loss, init, *args, **kwargs)
    except TypeError as err:
        params = list(signature.parameters.values())[2:]
        takes = ", ".join(
            p.name + ("" if p.default is p.empty else f"={p.default!r}")
            for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        )
        name = getattr(solve_one, "__name__", type(solve_one).__name__)
        label = f" (method {method!r})" if isinstance(method, str) else ""
        raise TypeError(
            f"arguments of `{name}`{label}: {err}; after `loss, init` it takes "
            f"({takes}), got {len(args)} positional argument(s) {tuple(args)!r}"
        ) from None


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
def _initial_losses(system, init):
    return jax.vmap(lambda y: system.loss(system.end_to_end(y)))(init)


def _finite_initial_losses(system, init, name: str) -> None:
    if not all(_checks.is_concrete(x) for x in jax.tree_util.tree_leaves(init)):
        return
    values = _initial_losses(system, init)
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


def _check_on_host(method, solve_one, loss, init, args, kwargs):
    """Validate a batch before anything is traced, so a bad value is a one-line
    `ValueError`/`TypeError` naming the argument (and the member), not a runtime error
    from inside the compiled solve. Returns `(args, kwargs)` with `depth` made a Python
    int (Python floats are traced, and a traced depth cannot fix the structure)."""
    first = _take(init, 0)
    bound = _bind(method, solve_one, loss, first, args, kwargs)
    if bound is None or not isinstance(method, str):
        return args, kwargs
    shapes = [tuple(np.shape(x)) for x in jax.tree_util.tree_leaves(init)]
    if any(len(shape) != 3 for shape in shapes):
        what = "a tuple of factors, each " if method in ("factor", "descent") else ""
        raise ValueError(
            f"`init` must be {what}a (B, rows, cols) array: a leading batch axis over "
            f"matrices; got shapes {shapes}"
        )
    _members(init, "init")
    if "depth" in bound.arguments:
        bound.arguments["depth"] = _checks.depth(bound.arguments["depth"])
    full = inspect.signature(solve_one).bind(*bound.args, **bound.kwargs)
    full.apply_defaults()
    a = full.arguments
    if method in ("factor", "descent"):
        ws = _checks.factors(first, "init")
        _checks.fits_loss(loss, (ws[-1].shape[0], ws[0].shape[1]), "init")
        system = _FactorSystem(loss, len(ws))
    else:
        W = _checks.as_float_array("init", first, ndim=2)
        _checks.fits_loss(loss, W.shape, "init")
        system = _EndToEndSystem(loss, a["depth"])
    dtype = jax.tree_util.tree_leaves(first)[0].dtype
    if method in ("factor", "end_to_end"):
        if method == "end_to_end":
            decomposition_name(a["decomposition"])
        atol = a["atol"]
        if atol is None:  # the end-to-end default, >= the smallest normal float
            _checks.real_scalar("rtol", a["rtol"])
            atol = float(np.finfo(dtype).tiny)
        prepare(
            jax.tree_util.tree_map(np.asarray, first), t0=a["t0"], t1=a["t1"],
            ts=a["ts"], solver=a["solver"], rtol=a["rtol"], atol=atol,
            max_steps=a["max_steps"], dt0=a["dt0"],
            stepsize_controller=a["stepsize_controller"],
            loss_threshold=a["loss_threshold"], steady_state=a["steady_state"],
            loss=loss,
        )
    else:
        check_options(a["lr"], a["steps"], a["save_every"], a["optimizer"], dtype)
    _finite_initial_losses(system, init, "init")
    return tuple(bound.args[2:]), dict(bound.kwargs)


def _take(tree, index):
    return jax.tree_util.tree_map(lambda x: x[index], tree)


def _resolve_devices(devices) -> tuple:
    if devices is None:
        return tuple(jax.devices())
    devices = tuple(devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise TypeError("`devices` must be a non-empty sequence of `jax.Device`s")
    return devices


CPU_CHUNK = 64


def auto_chunk_size(size: int, devices: Sequence[jax.Device]) -> int | None:
    """The `chunk_size` that `"auto"` picks: 64 seeds at a time on CPU devices that
    each hold more than 64 (one vmap over more falls out of cache), else no chunks."""
    per_device = -(-size // len(devices))
    on_cpu = all(d.platform == "cpu" for d in devices)
    return CPU_CHUNK if on_cpu and per_device > CPU_CHUNK else None


def _trace_floats(tree):
    # Python floats become traced scalars so that changing times, tolerances or step
    # sizes never recompiles; ints, bools, strings and modules stay static.
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x) if type(x) is float else x, tree
    )


def solve_batch(
    method: str | Callable[..., FlowSolution],
    loss: Callable,
    init: PyTree[Array],
    *args: Any,
    devices: Sequence[jax.Device] | None = None,
    chunk_size: int | None | str = "auto",
    **kwargs: Any,
) -> FlowSolution:
    """Solve one problem from a batch of initializations; the batch axis leads `init`.

    **Arguments:**

    - `method`: `"factor"` ([`lnn_flow.factor_flow`][], `init` = factors, each with a
      leading batch axis), `"end_to_end"` ([`lnn_flow.end_to_end_flow`][], `init` =
      end-to-end matrices `(B, d_n, d_0)`), `"descent"`
      ([`lnn_flow.gradient_descent`][]), `"end_to_end_descent"`
      ([`lnn_flow.end_to_end_descent`][]), or any callable
      `solve(loss, init_one, *args, **kwargs)` returning a pytree of arrays.
    - `loss`, `*args`, `**kwargs`: passed to the method unchanged for every member, e.g.
      `solve_batch("end_to_end", loss, W0s, depth, t1, ts, rtol=1e-10)`. A loss from
      `lnn_flow.losses` is keyed by its shapes; a plain function by its identity (a new
      lambda per call recompiles).
    - `devices`: the devices to split the batch over; default all of `jax.devices()`
      (global devices after `jax.distributed.initialize`). One device: no sharding.
    - `chunk_size`: solve each device's seeds `chunk_size` at a time (`jax.lax.map`
      with `batch_size`), one vmapped chunk after another, instead of all at once
      (`None`). A vmapped adaptive solve steps every member until the slowest
      finishes, and on CPU a large batch falls out of cache: `benchmarks/throughput.py`
      measures both. `"auto"` (default) chunks by 64 on CPU devices holding more than
      64 seeds each, where `benchmarks/throughput.py` measured it fastest (d = 20,
      depth 3), and does not chunk elsewhere.

    Python floats among the arguments are traced, so new times, tolerances or step
    sizes reuse the compiled program. For the named methods every argument is checked
    on the host first, as the method checks it alone: a bad value (e.g. `rtol=-1.0`,
    `ts` outside `[t0, t1]`, a missing `depth`) raises a `ValueError`/`TypeError`
    naming the argument, and a bad member of `init` (non-finite entries, a non-finite
    initial loss) is named by its index, before anything compiles.

    **Returns:** the method's result with a leading batch axis on every array, member
    `i` equal to solving `init[i]` alone (the same steps; values to rounding, as XLA's
    kernels for different batch sizes may round differently). Under
    `jax.distributed` every process gets the whole batch.
    """
    solve_one = _method(method)
    size = batch_size(init)
    devices = _resolve_devices(devices)
    args, kwargs = _check_on_host(method, solve_one, loss, init, args, kwargs)
    if isinstance(chunk_size, str) and chunk_size == "auto":
        chunk_size = auto_chunk_size(size, devices)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(
            f"`chunk_size` must be a positive integer, None or 'auto'; got {chunk_size!r}"
        )
    dynamic, static = eqx.partition(
        (solve_one, loss, init, _trace_floats(args), _trace_floats(kwargs)),
        eqx.is_array,
    )
    return _dispatch(dynamic, static, size, devices, chunk_size, None)


def solve_pool(
    method: str,
    loss: Callable,
    init: PyTree[Array],
    *args: Any,
    slots: int = 64,
    round_steps: int = 32,
    devices: Sequence[jax.Device] | None = None,
    **kwargs: Any,
) -> tuple[FlowSolution, PoolStats]:
    """Like [`lnn_flow.solve_batch`][], for `"factor"` or `"end_to_end"`, with refilled
    slots: each device solves its seeds `slots` at a time in rounds of at most
    `round_steps` steps, and a member that finishes hands its slot to the next
    pending seed inside the compiled loop (see `lnn_flow._pool`). Use it when seeds
    need very different numbers of steps (plateaus of different lengths, loss stops):
    no slot idles while seeds are pending.

    **Returns:** `(solution, stats)`: the batched [`lnn_flow.FlowSolution`][] (member
    `i` is `init[i]` solved alone, to the solver's tolerance: its steps differ where
    rounds end; `max_steps` is checked between rounds) and a `PoolStats` with
    `utilization` (useful steps over slot-steps), summed over devices.
    """
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ValueError(f"`slots` must be a positive integer; got {slots!r}")
    if isinstance(round_steps, bool) or not isinstance(round_steps, int) or round_steps < 1:
        raise ValueError(f"`round_steps` must be a positive integer; got {round_steps!r}")
    if not isinstance(method, str):
        raise ValueError(f"`method` must be 'factor' or 'end_to_end'; got {method!r}")
    if method not in ("factor", "end_to_end"):
        raise ValueError(
            f"`method` must be one of ['end_to_end', 'factor'] for a refilled solve; "
            f"got {method!r}"
        )
    size = batch_size(init)
    devices = _resolve_devices(devices)
    args, kwargs = _check_on_host(method, METHODS[method], loss, init, args, kwargs)
    dynamic, static = eqx.partition(
        (method, loss, init, _trace_floats(args), _trace_floats(kwargs)), eqx.is_array
    )
    solution, stats = _dispatch(dynamic, static, size, devices, None, (slots, round_steps))
    stats = jax.tree_util.tree_map(lambda x: jnp.sum(x), stats)
    return solution, stats


def _dispatch(dynamic, static, size, devices, chunk_size, pool):
    mesh = None
    if len(devices) > 1:
        mesh = jax.make_mesh(
            (len(devices),), (BATCH_AXIS,), axis_types=(AxisType.Auto,),
            devices=devices,
        )
    try:
        out = _run(dynamic, static, size, mesh, chunk_size, pool, manual=True)
    except ValueError as err:
        if mesh is None or "does not match out_structure" not in str(err):
            raise
        # lineax (the Newton root find that locates a `loss_threshold` stop) rejects
        # the manual-axes shardings shard_map gives its inputs (pmap too). The
        # Auto-axes mesh works for it, at the cost measured in the module docstring.
        out = _run(dynamic, static, size, mesh, chunk_size, pool, manual=False)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        out = multihost_utils.process_allgather(out, tiled=True)
    return out


def _pooled(method, loss, args, kwargs, pool):
    slots, round_steps = pool

    def run(members):
        system, atols, options = pool_problem(method, loss, members, args, kwargs)
        solution, stats = pooled_solve(
            system, members, atols, **options, slots=slots, round_steps=round_steps
        )
        # One row per device, so shard_map can stack them along the batch axis.
        return solution, jax.tree_util.tree_map(lambda x: x[None], stats)

    return run


@eqx.filter_jit
def _run(dynamic, static, size: int, mesh, chunk_size, pool, manual: bool):
    solve_one, loss, init, args, kwargs = eqx.combine(dynamic, static)
    one = lambda member: solve_one(loss, member, *args, **kwargs)
    if pool is not None:
        per_member = _pooled(solve_one, loss, args, kwargs, pool)
    elif chunk_size is None:
        per_member = jax.vmap(one)
    else:
        per_member = lambda members: jax.lax.map(one, members, batch_size=chunk_size)
    if mesh is None:
        return per_member(init)
    pad = -size % mesh.size
    if pad:  # copies of member 0: real inputs, so no NaN paths and no extra failures
        init = jax.tree_util.tree_map(
            lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]), init
        )
    if not manual:  # GSPMD partitions the vmapped solve over the batch axis
        batch = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
        init = jax.lax.with_sharding_constraint(init, batch)
        out = jax.lax.with_sharding_constraint(per_member(init), batch)
        return jax.tree_util.tree_map(lambda x: x[:size], out)
    sharded = jax.shard_map(
        per_member,
        mesh=mesh,
        in_specs=PartitionSpec(BATCH_AXIS),
        out_specs=PartitionSpec(BATCH_AXIS),
        # The solve closes over `loss` and `args` (replicated). check_vma=True rejects
        # equinox's runtime checks (error_if) inside the solve.
        check_vma=False,
    )
    out = sharded(init)
    if pad:
        out = jax.tree_util.tree_map(lambda x: x[:size], out)
    return out
