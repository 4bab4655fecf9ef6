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

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec
from jaxtyping import Array, PyTree

from .._core import _checks
from ._batch_checks import batch_size, check_on_host
from ._batch_strategy import CPU_CHUNK, auto_chunk_size, choose  # noqa: F401
from ._methods import METHODS, lookup
from ._pool import pool_problem, pooled_solve
from .._solving._result import FlowSolution

BATCH_AXIS = "batch"


def _method(method) -> Callable[..., FlowSolution]:
    """The flow of a registered method ([`lnn_flow._batching._methods.METHODS`][]), or the
    callable itself."""
    if callable(method):
        return method
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {sorted(METHODS)} or a callable "
            f"`(loss, init, *args, **kwargs) -> FlowSolution`; got {method!r}"
        )
    return METHODS[method].flow


def _resolve_devices(devices) -> tuple:
    if devices is None:
        return tuple(jax.devices())
    devices = tuple(devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise TypeError("`devices` must be a non-empty sequence of `jax.Device`s")
    return devices


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
      ([`lnn_flow.end_to_end_descent`][]), `"symmetric"`, `"symmetric_factor"`
      (Exercise 2's flows of `lnn_flow.theory`), `"tensor"` ([`lnn_flow.tensor.flow`][],
      `init` = CP factors; any method of `lnn_flow._batching._methods.METHODS`), or any callable
      `solve(loss, init_one, *args, **kwargs)` returning a pytree of arrays.
    - `loss`, `*args`, `**kwargs`: passed to the method unchanged for every member, e.g.
      `solve_batch("end_to_end", loss, W0s, depth, t1, ts, rtol=1e-10)`. A loss from
      `lnn_flow.losses` is keyed by its shapes; a plain function by its identity (a new
      lambda per call recompiles).
    - `devices`: the devices to split the batch over; default all of `jax.devices()`
      (global devices after `jax.distributed.initialize`). One device: no sharding.
    - `chunk_size`: solve each device's seeds `chunk_size` at a time (`jax.lax.map`
      with `batch_size`), one vmapped chunk after another, instead of all at once
      (`None`); `1` solves them one after another with plain (unbatched) ops. A
      vmapped adaptive solve steps every member until the slowest finishes, its field
      runs as batched ops, and on CPU a large batch falls out of cache:
      `benchmarks/throughput.py` measures each way. `"auto"` (default): vmapped on
      GPU/TPU; on CPU, measured once per problem shape (`lnn_flow._batching._batch_strategy`):
      vmapped by chunks of 64 (fewer members of a small state) where the batched
      vector field is cheaper per member, else one seed after another, so a batch is
      not slower per seed than a loop of single solves.

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
    _checks.host_level("solve_batch", init=init, args=args, kwargs=kwargs, loss=loss)
    solve_one = _method(method)
    size = batch_size(init)
    devices = _resolve_devices(devices)
    with _checks.traceable_loss():
        args, kwargs = check_on_host(method, solve_one, loss, init, args, kwargs)
    if isinstance(chunk_size, str) and chunk_size == "auto":
        with _checks.traceable_loss():
            chunk_size = choose(method, loss, init, args, kwargs, size, devices)
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
) -> FlowSolution:
    """Like [`lnn_flow.solve_batch`][], for a registered ODE flow (`"factor"`,
    `"end_to_end"`, `"symmetric"`, `"symmetric_factor"`, `"tensor"`, `"hierarchical"`,
    `"modified_factor"`, `"modified_end_to_end"`), with refilled slots: each
    device solves its seeds `slots` at a time in rounds of at most `round_steps`
    steps, and a member that finishes hands its slot to the next pending seed inside
    the compiled loop (see `lnn_flow._batching._pool`). Use it when seeds
    need very different numbers of steps (plateaus of different lengths, loss stops):
    no slot idles while seeds are pending.

    **Returns:** the batched [`lnn_flow.FlowSolution`][], as `solve_batch` does (member
    `i` is `init[i]` solved alone, to the solver's tolerance: its steps differ where
    rounds end; `max_steps` is checked between rounds), with the slots' work in
    `solution.pool` (a [`lnn_flow.PoolStats`][]: `utilization` = useful steps over
    slot-steps, summed over devices; the totals are repeated for every member, so
    `solution.pool.utilization[0]` is the pool's).
    """
    _checks.host_level("solve_pool", init=init, args=args, kwargs=kwargs, loss=loss)
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ValueError(f"`slots` must be a positive integer; got {slots!r}")
    if isinstance(round_steps, bool) or not isinstance(round_steps, int) or round_steps < 1:
        raise ValueError(f"`round_steps` must be a positive integer; got {round_steps!r}")
    entry = lookup(method, pool=True)
    size = batch_size(init)
    devices = _resolve_devices(devices)
    with _checks.traceable_loss():
        args, kwargs = check_on_host(method, entry.flow, loss, init, args, kwargs)
    dynamic, static = eqx.partition(
        (method, loss, init, _trace_floats(args), _trace_floats(kwargs)), eqx.is_array
    )
    solution, stats = _dispatch(dynamic, static, size, devices, None, (slots, round_steps))
    # Totals over devices, repeated for every member: the solution stays a batch along
    # its leading axis in every leaf, so indexing or mapping over members keeps working.
    stats = jax.tree_util.tree_map(lambda x: jnp.full(size, jnp.sum(x)), stats)
    return dataclasses.replace(solution, pool=stats)


def _dispatch(dynamic, static, size, devices, chunk_size, pool):
    mesh = None
    if len(devices) > 1:
        mesh = jax.make_mesh(
            (len(devices),), (BATCH_AXIS,), axis_types=(AxisType.Auto,),
            devices=devices,
        )
    try:
        with _checks.traceable_loss():
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
        system, states, atols, options = pool_problem(method, loss, members, args, kwargs)
        solution, stats = pooled_solve(
            system, states, atols, **options, slots=slots, round_steps=round_steps
        )
        # One row per device, so shard_map can stack them along the batch axis.
        return solution, jax.tree_util.tree_map(lambda x: x[None], stats)

    return run


def _chunked(one, members, chunk_size: int):
    """`one` over `members`, `chunk_size` vmapped at a time. One at a time is a plain
    `lax.map`: `lax.map(..., batch_size=1)` would vmap each member over an axis of size
    1, and batched ops cost more than plain ones on CPU (a sequential batch then runs
    slower than a loop of single solves)."""
    if chunk_size == 1:
        return jax.lax.map(one, members)
    return jax.lax.map(one, members, batch_size=chunk_size)


@eqx.filter_jit
def _run(dynamic, static, size: int, mesh, chunk_size, pool, manual: bool):
    solve_one, loss, init, args, kwargs = eqx.combine(dynamic, static)
    one = lambda member: solve_one(loss, member, *args, **kwargs)
    if pool is not None:
        per_member = _pooled(solve_one, loss, args, kwargs, pool)
    elif chunk_size is None:
        per_member = jax.vmap(one)
    else:
        per_member = lambda members: _chunked(one, members, chunk_size)
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
