"""How `solve_batch(..., chunk_size="auto")` runs its seeds: vmapped, or one after another.

A vmapped adaptive solve advances every member until the slowest is done, and its
vector field runs as batched XLA ops. On a GPU batching is the point. On CPU it pays
only where the batched field costs less per member than a single one: small states,
whose field is a few tiny ops each dominated by per-op overhead, and fields that read
a large shared operand once for the whole batch (matrix sensing's measurement tensor).
Elsewhere the plain ops of a single solve are as fast or faster per member, and a
sequential batch (a plain `lax.map`, no per-call dispatch) is at least as fast per
seed as a loop of single solves. `benchmarks/throughput.py` measures all three ways
(and the field ratio below) for matrix sensing at d = 10, 20, 50 and the completion
study's 100 x 100 problem: which way wins changes with d and with the loss, not
monotonically, so no rule by size alone picks right.

So on CPU the choice is measured once per problem shape ([`choose`][]): the system's
vector field at the seeds' initial states, single and vmapped over one chunk of
seeds, a few evaluations each (two small programs compiled, well under a second).
The batch is vmapped (by chunks of [`CPU_CHUNK`][]) when the batched field costs per
member at most [`VMAP_MARGIN`][] of a single one, or at most [`LARGE_FIELD_MARGIN`][]
of it where a single evaluation takes [`LARGE_FIELD_SECONDS`][] or more; otherwise the
seeds are solved one after another. The margins are wide because the field alone
understates what a vmapped solve costs: every member also steps until the slowest is
done, and the solver's own per-step work runs batched too, which weighs most where the
field is cheap (at d = 20 a vmapped solve lost to a loop even where its batched field
was the cheaper one, a few tens of microseconds each); where one evaluation takes
hundreds of microseconds or more the field is the solve's cost and a smaller gain pays
(sensing at d = 50 and 100, whose measurement tensor a batched field reads once).
States of fewer than [`SMALL_STATE`][] entries are vmapped without measuring (per-op
overhead dominates there, where both ways tie in `benchmarks/throughput.py`), by
chunks of at most [`SMALL_CHUNK_ENTRIES`][] state entries in all
([`small_state_chunk`][]): a chunk of 64 such members falls out of cache too. A single
seed per device is solved unbatched, and so is every seed of a `solver="auto"` batch.
The decision is cached for the process by method, shapes and device kind.
"""

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .._solving._chebyshev import RKC2
from ._methods import METHODS, arguments
from .._solving._switching import Switching

# Seeds per vmapped chunk on CPU: one vmap over more falls out of cache.
CPU_CHUNK = 64
# Below this many state entries per member a CPU batch is vmapped without measuring,
SMALL_STATE = 512
# by chunks of at most this many state entries in all (members x entries).
SMALL_CHUNK_ENTRIES = 8192
# vmap when the batched field costs per member at most this fraction of a single one,
VMAP_MARGIN = 0.4
# or this fraction where a single evaluation takes at least this long (seconds).
LARGE_FIELD_MARGIN = 0.75
LARGE_FIELD_SECONDS = 2e-4
_EVALS = 16
_REPEATS = 5
_decisions: dict = {}


def auto_chunk_size(size: int, devices: Sequence[jax.Device]) -> int | None:
    """The vmapped `chunk_size`: chunks of `CPU_CHUNK` on CPU devices that each hold
    more seeds than that, else the whole batch at once (`None`)."""
    per_device = -(-size // len(devices))
    on_cpu = all(d.platform == "cpu" for d in devices)
    return CPU_CHUNK if on_cpu and per_device > CPU_CHUNK else None


def choose(method, loss, init, args, kwargs, size: int, devices) -> int | None:
    """The `chunk_size` that `"auto"` runs: `1` (one seed after another) where the
    measurement above says a vmapped field does not pay on these CPU devices, else
    [`auto_chunk_size`][]. Traced inputs (inside a user's `jit`) and callables that
    are not registered methods are not measured."""
    vmapped = auto_chunk_size(size, devices)
    per_device = -(-size // len(devices))
    if per_device == 1:
        return 1  # a vmap over one member only adds batched ops
    if (
        not all(d.platform == "cpu" for d in devices)
        or not isinstance(method, str)
        or method not in METHODS
        or not METHODS[method].ode
        or any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(init))
    ):
        return vmapped
    solver = kwargs.get("solver")
    if (isinstance(solver, str) and solver == "auto") or isinstance(solver,
                                                                    (RKC2, Switching)):
        # Under vmap the `lax.switch` of "auto" runs every kind of step for every
        # member, and RKC2's stage loop runs the largest member's stage count; one
        # after another each stays its own (`benchmarks/stiff_tails.py --cases batch`).
        return 1
    entry = METHODS[method]
    width = min(per_device, CPU_CHUNK)
    members = jax.tree_util.tree_map(lambda x: x[:width], init)
    states = jax.vmap(entry.state)(members)
    first = jax.tree_util.tree_map(lambda x: x[0], states)
    entries = sum(x.size for x in jax.tree_util.tree_leaves(first))
    if entries < SMALL_STATE:
        return small_state_chunk(entries, per_device)
    system = entry.system(
        loss, jax.tree_util.tree_map(lambda x: x[0], members),
        arguments(method, loss, jax.tree_util.tree_map(lambda x: x[0], members), args,
                  kwargs),
    )
    key = (
        method,
        jax.tree_util.tree_structure(system),
        tuple((x.shape, x.dtype.name) for x in jax.tree_util.tree_leaves((system, states))),
        devices[0].device_kind,
    )
    if key not in _decisions:
        single, batched = field_costs(system, states)
        _decisions[key] = pays_to_vmap(single, batched)
    return vmapped if _decisions[key] else 1


def small_state_chunk(entries: int, per_device: int) -> int | None:
    """The vmapped `chunk_size` of a CPU batch of small states (`entries` per member):
    the largest power of two of members holding at most `SMALL_CHUNK_ENTRIES` entries,
    capped at `CPU_CHUNK`; `None` where one chunk holds every seed of a device."""
    fits = max(1, SMALL_CHUNK_ENTRIES // entries)
    chunk = min(CPU_CHUNK, 1 << (fits.bit_length() - 1))
    return None if per_device <= chunk else chunk


def pays_to_vmap(single: float, batched: float) -> bool:
    """From the field's seconds per member, single and vmapped: vmap the batch?"""
    margin = LARGE_FIELD_MARGIN if single >= LARGE_FIELD_SECONDS else VMAP_MARGIN
    return batched <= margin * single


def field_costs(system, states) -> tuple[float, float]:
    """Seconds per member of one evaluation of `system.vector_field`: single (at the
    first state) and vmapped over all `states`; the best of a few timed runs, after
    compiling."""

    def repeat(field):
        # Each evaluation feeds the next (a step of 1e-30), so none is hoisted.
        step = lambda i, y: jax.tree_util.tree_map(
            lambda a, b: a + 1e-30 * b, y, field(y)
        )
        return jax.jit(lambda y: jax.lax.fori_loop(0, _EVALS, step, y))

    one = lambda y: system.vector_field(0.0, y, None)
    single = repeat(one)
    batched = repeat(jax.vmap(one))
    first = jax.tree_util.tree_map(lambda x: x[0], states)
    width = jax.tree_util.tree_leaves(states)[0].shape[0]
    return (
        _best_time(single, first) / _EVALS,
        _best_time(batched, states) / (_EVALS * width),
    )


def _best_time(fn, x) -> float:
    jax.block_until_ready(fn(x))
    best = float("inf")
    for _ in range(_REPEATS):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        best = min(best, time.perf_counter() - start)
    return best
