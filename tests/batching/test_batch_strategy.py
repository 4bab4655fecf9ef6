"""How `solve_batch(chunk_size="auto")` picks vmapped or sequential solves, and that the
sequential way gives the vmapped way's results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import member, sensing

import lnn_flow as lf
from lnn_flow._batching import _batch_strategy
from lnn_flow._batching._batch_strategy import (
    CPU_CHUNK,
    LARGE_FIELD_MARGIN,
    LARGE_FIELD_SECONDS,
    SMALL_CHUNK_ENTRIES,
    SMALL_STATE,
    VMAP_MARGIN,
    auto_chunk_size,
    choose,
    field_costs,
    pays_to_vmap,
    small_state_chunk,
)
from lnn_flow._flows._factor import _FactorSystem

CPU = tuple(jax.devices("cpu")[:1])
T1 = 6.0


def inits(d, B, depth=3, seed=1):
    keys = jax.random.split(jax.random.PRNGKey(seed), B)
    return jax.vmap(lambda k: lf.init.balanced(k, (d,) * (depth + 1), 0.3))(keys)


@pytest.fixture
def measured(monkeypatch):
    """`field_costs` replaced by given (single, batched) costs; records its calls."""
    calls = []

    def use(single, batched):
        def fake(system, states):
            calls.append(jax.tree_util.tree_leaves(states)[0].shape[0])
            return single, batched

        monkeypatch.setattr(_batch_strategy, "field_costs", fake)
        monkeypatch.setattr(_batch_strategy, "_decisions", {})
        return calls

    return use


def test_auto_chunk_size_chunks_only_large_cpu_batches():
    assert auto_chunk_size(64, CPU) is None
    assert auto_chunk_size(65, CPU) == CPU_CHUNK
    assert auto_chunk_size(1024, CPU) == CPU_CHUNK


def test_one_seed_is_solved_unbatched(measured):
    calls = measured(1.0, 0.0)
    loss, _ = sensing((3, 3))
    assert choose("factor", loss, inits(3, 1), (T1,), {}, 1, CPU) == 1
    assert calls == []


def test_small_states_are_vmapped_without_measuring(measured):
    calls = measured(1.0, 1.0)  # would say "sequential" if it were asked
    loss, _ = sensing((3, 3))
    ws = inits(3, 4)
    assert sum(w[0].size for w in ws) < SMALL_STATE
    assert choose("factor", loss, ws, (T1,), {}, 4, CPU) is None
    assert calls == []


def test_small_states_are_chunked_to_fit_in_cache(measured):
    calls = measured(1.0, 1.0)
    loss, _ = sensing((10, 10))
    ws = inits(10, 70)  # 3 x 100 entries per member
    assert choose("factor", loss, ws, (T1,), {}, 70, CPU) == 16
    assert calls == []
    # The largest power of two of members within SMALL_CHUNK_ENTRIES, at most CPU_CHUNK.
    for entries in (1, 27, 128, 129, 300, SMALL_STATE - 1):
        chunk = small_state_chunk(entries, 10_000)
        assert chunk * entries <= max(SMALL_CHUNK_ENTRIES, entries) and chunk <= CPU_CHUNK
        assert chunk == CPU_CHUNK or 2 * chunk * entries > SMALL_CHUNK_ENTRIES
    assert small_state_chunk(300, 16) is None  # one chunk holds the device's seeds


@pytest.mark.parametrize("ratio, expected", [(0.9 * VMAP_MARGIN, None), (0.95, 1)])
def test_large_states_follow_the_measured_field(measured, ratio, expected):
    calls = measured(1.0, ratio)
    loss, _ = sensing((14, 14))
    ws = inits(14, 70)  # 3 x 196 entries per member: measured
    assert sum(w[0].size for w in ws) >= SMALL_STATE
    got = choose("factor", loss, ws, (T1,), {}, 70, CPU)
    assert got == (CPU_CHUNK if expected is None else 1)
    assert calls == [CPU_CHUNK]  # one chunk of seeds measured
    # Cached: the same shapes are not measured again.
    choose("factor", loss, inits(14, 70, seed=2), (T1,), {}, 70, CPU)
    assert calls == [CPU_CHUNK]


def test_expensive_fields_vmap_at_a_smaller_gain():
    cheap, costly = 0.5 * LARGE_FIELD_SECONDS, 2 * LARGE_FIELD_SECONDS
    between = 0.5 * (VMAP_MARGIN + LARGE_FIELD_MARGIN)
    assert pays_to_vmap(cheap, 0.9 * VMAP_MARGIN * cheap)
    assert not pays_to_vmap(cheap, between * cheap)
    assert pays_to_vmap(costly, between * costly)
    assert not pays_to_vmap(costly, 1.1 * LARGE_FIELD_MARGIN * costly)


def test_unregistered_callables_and_traced_inits_are_not_measured(measured):
    calls = measured(1.0, 1.0)
    loss, _ = sensing((14, 14))
    ws = inits(14, 4)
    assert choose(lf.factor_flow, loss, ws, (T1,), {}, 4, CPU) is None
    assert choose("descent", loss, ws, (0.1, 5), {}, 4, CPU) is None
    jax.jit(lambda w: choose("factor", loss, w, (T1,), {}, 4, CPU) or 0)(ws)
    assert calls == []


def test_field_costs_are_positive_seconds_per_member():
    loss, _ = sensing((14, 14))
    single, batched = field_costs(_FactorSystem(loss, 3), inits(14, 4))
    assert 0 < single < 1 and 0 < batched < 1


def test_sequential_and_vmapped_batches_agree():
    """Chunk 1 (a plain `lax.map`) runs each member's own solve: the same steps as the
    vmapped batch, values equal to rounding."""
    loss, _ = sensing((14, 14))
    ws = inits(14, 3)
    ts = jnp.linspace(0.0, T1, 4)
    seq = lf.solve_batch("factor", loss, ws, T1, ts, chunk_size=1)
    vm = lf.solve_batch("factor", loss, ws, T1, ts, chunk_size=None)
    np.testing.assert_array_equal(seq.stats.num_steps, vm.stats.num_steps)
    np.testing.assert_allclose(seq.end_to_end, vm.end_to_end, rtol=0, atol=1e-12)
    alone = lf.factor_flow(loss, member(ws, 1), T1, ts)
    np.testing.assert_allclose(member(seq, 1).end_to_end, alone.end_to_end, rtol=0,
                               atol=1e-12)


def test_solver_auto_batches_run_one_after_another_on_cpu():
    """`solver="auto"` under vmap would run both its explicit and implicit steps for
    every member (its `lax.cond` becomes a select): sequential even for small states,
    which are otherwise vmapped (`benchmarks/stiff_tails.py --cases batch`)."""
    loss, _ = sensing((3, 3), rank=1)
    ws = inits(3, 4)
    assert choose("factor", loss, ws, (T1,), {}, 4, CPU) is None
    assert choose("factor", loss, ws, (T1,), {"solver": "auto"}, 4, CPU) == 1
