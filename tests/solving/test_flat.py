"""The flat solver state: a layout that round-trips any state exactly, and a flat system
whose field and maps are the structured system's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import sensing

import lnn_flow as lf
from lnn_flow._flows._end_to_end import _EndToEndSystem
from lnn_flow._flows._factor import _FactorSystem
from lnn_flow._solving._flat import FlatLayout, FlatSystem, flat

DIMS = (3, 4, 2, 5)  # factors of three different shapes


@pytest.fixture(scope="module")
def problem():
    loss, _ = sensing((DIMS[-1], DIMS[0]), m=10)
    ws = lf.init.gaussian(jax.random.PRNGKey(0), DIMS, 0.5)
    return loss, ws


def test_layout_round_trips_exactly_in_leaf_order(problem):
    _, ws = problem
    layout = FlatLayout.of(ws)
    v = layout.ravel(ws)
    assert v.shape == (layout.size,) == (sum(w.size for w in ws),)
    np.testing.assert_array_equal(v[: ws[0].size], ws[0].ravel())  # W_1 first
    back = layout.unravel(v)
    assert isinstance(back, tuple) and len(back) == len(ws)
    for a, b in zip(back, ws):
        assert a.shape == b.shape and bool(jnp.all(a == b))


def test_one_matrix_state_is_its_own_ravel():
    W = jnp.arange(6.0).reshape(2, 3)
    layout = FlatLayout.of(W)
    assert bool(jnp.all(layout.unravel(layout.ravel(W)) == W))


def test_flat_system_is_the_structured_system_on_a_vector(problem):
    loss, ws = problem
    for system, y in ((_FactorSystem(loss, len(ws)), ws),
                      (_EndToEndSystem(loss, 3), lf.end_to_end(ws))):
        flat_system, v = flat(system, y)
        assert isinstance(flat_system, FlatSystem) and v.ndim == 1
        field = flat_system.vector_field(0.0, v, None)
        expected = flat_system.layout.ravel(system.vector_field(0.0, y, None))
        np.testing.assert_allclose(field, expected, rtol=1e-14, atol=1e-15)
        np.testing.assert_array_equal(flat_system.end_to_end(v), system.end_to_end(y))
        assert float(flat_system.loss_of_state(v)) == float(system.loss_of_state(y))
        assert flat_system.default_atol(v, 1e-8) == system.default_atol(y, 1e-8)
        assert flat_system.depth == system.depth


def test_solve_steps_a_vector_and_returns_the_structure(problem):
    loss, ws = problem
    sol = lf.factor_flow(loss, ws, 1.0, jnp.linspace(0.0, 1.0, 3), dense=True)
    # The solver's own dense output holds one vector: the solve stepped a flat state.
    assert sol.solution.evaluate(0.5).shape == (sum(w.size for w in ws),)
    assert sol.layout == FlatLayout.of(ws)
    assert tuple(f.shape for f in sol.factors) == tuple((3,) + w.shape for w in ws)
    at = sol.evaluate_factors(0.5)
    assert isinstance(at, tuple) and tuple(f.shape for f in at) == tuple(w.shape for w in ws)
    np.testing.assert_allclose(sol.evaluate(1.0), sol.end_to_end[-1], rtol=1e-12, atol=1e-14)
