"""The flow-system interface: every system implements it, its per-state maps commute
with `vmap` over saves, and `FlowSolution` has the shapes it documents."""

import jax
import jax.numpy as jnp
import pytest
from conftest import sensing, whitened

import lnn_flow as lf
from lnn_flow._flows._end_to_end import _EndToEndSystem
from lnn_flow._flows._factor import _FactorSystem
from lnn_flow._flows._symmetric import _SymmetricFactorSystem, _SymmetricSystem
from lnn_flow._solving._system import AbstractFlowSystem

DIMS = (3, 4, 3)
K = 4  # saves
TS = jnp.linspace(0.0, 0.5, K)


def _systems():
    """(system, one state, its factors or None) for every system, d = 3."""
    loss, _ = sensing((3, 3), m=6)
    ws = lf.init.balanced(jax.random.PRNGKey(0), DIMS, 0.5)
    W = lf.end_to_end(ws)
    sym_loss, _ = whitened((3, 3))
    return {
        "factor": (_FactorSystem(loss, len(ws)), ws, ws),
        "end_to_end": (_EndToEndSystem(loss, 2), W, None),
        "symmetric": (_SymmetricSystem(sym_loss), W @ W.T, None),
        "symmetric_factor": (_SymmetricFactorSystem(sym_loss), (W.T, W), (W.T, W)),
    }


SYSTEMS = _systems()


def test_interface_is_abstract():
    # No vector field, no maps: cannot be instantiated.
    class Incomplete(AbstractFlowSystem):
        loss: object
        depth: int = 1

    with pytest.raises(TypeError):
        Incomplete(lambda W: jnp.sum(W))


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_every_system_implements_the_interface(name):
    system, y, factors = SYSTEMS[name]
    assert isinstance(system, AbstractFlowSystem)
    assert isinstance(system.depth, int)
    dy = system.vector_field(0.0, y, None)
    # The field has the structure and shapes of the state.
    assert jax.tree_util.tree_structure(dy) == jax.tree_util.tree_structure(y)
    for a, b in zip(jax.tree_util.tree_leaves(dy), jax.tree_util.tree_leaves(y)):
        assert a.shape == b.shape
    E = system.end_to_end(y)
    assert E.shape == (3, 3)
    assert jnp.allclose(system.loss_of_state(y), system.loss(E))
    got = system.factors(y)
    if factors is None:
        assert got is None
    else:
        assert all(jnp.array_equal(a, b) for a, b in zip(got, factors))
        # The end-to-end object is the product of the factors (Definition 2).
        assert jnp.allclose(lf.end_to_end(tuple(got)), E, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_maps_commute_with_vmap_over_saves(name):
    # A stack of K states: mapping each state equals mapping the stack under vmap,
    # with the save axis leading (the bug that transposed `factors` cannot recur).
    system, y, _ = SYSTEMS[name]
    scales = jnp.linspace(0.5, 1.5, K)
    stack = jax.vmap(lambda c: jax.tree_util.tree_map(lambda x: c * x, y))(scales)
    E = jax.vmap(system.end_to_end)(stack)
    assert E.shape == (K, 3, 3)
    for i in range(K):
        one = jax.tree_util.tree_map(lambda x: x[i], stack)
        assert jnp.array_equal(E[i], system.end_to_end(one))
        factors = system.factors(one)
        batched = jax.vmap(system.factors)(stack)
        if factors is None:
            assert batched is None
            continue
        for a, b in zip(batched, factors):
            assert jnp.array_equal(a[i], b)


@pytest.fixture(scope="module")
def solutions():
    loss, _ = sensing((3, 3), m=6)
    sym_loss, _ = whitened((3, 3))
    ws = lf.init.balanced(jax.random.PRNGKey(0), DIMS, 0.5)
    W = lf.end_to_end(ws)
    return {
        "factor": lf.factor_flow(loss, ws, 0.5, TS),
        "end_to_end": lf.end_to_end_flow(loss, W, 2, 0.5, TS),
        "symmetric": lf.theory.symmetric_flow(sym_loss, 0.1 * W @ W.T, 0.5, TS),
        "symmetric_factor": lf.theory.symmetric_factor_flow(sym_loss, 0.3 * W, 0.5, TS),
    }


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_solution_shapes_per_save(name, solutions):
    sol = solutions[name]
    assert bool(sol.success)
    assert sol.end_to_end.shape == (K, 3, 3)  # (k, *E)
    assert sol.end_to_end_final.shape == (3, 3)
    assert sol.loss.shape == (K,)
    if sol.factors is None:
        assert name in ("end_to_end", "symmetric") and sol.factors_final is None
        return
    # Each factor is (k, d_j, d_{j-1}): the save axis leads, per save the product is
    # the end-to-end matrix.
    for f, f_final in zip(sol.factors, sol.factors_final):
        assert f.shape == (K, *f_final.shape)
    for i in range(K):
        product = lf.end_to_end(tuple(f[i] for f in sol.factors))
        assert jnp.allclose(product, sol.end_to_end[i], rtol=1e-13, atol=1e-14)


def test_symmetric_factor_flow_saves_transpose_pairs(solutions):
    # (W^T, W) per save: the first factor stays the exact transpose of the second.
    sol = solutions["symmetric_factor"]
    Wt, W = sol.factors
    assert jnp.array_equal(Wt, jnp.swapaxes(W, 1, 2))


@pytest.mark.parametrize("name", list(_systems()))
def test_default_atol_is_fixed_unless_the_system_scales_it(name):
    system, y, _ = _systems()[name]
    atol = system.default_atol(y, 1e-8)
    assert atol.dtype == jax.tree_util.tree_leaves(y)[0].dtype
    if name == "end_to_end":  # min(1e-10, 1e-2 rtol max|W0|): scaled by the state
        assert float(atol) == pytest.approx(min(1e-10, 1e-10 * float(jnp.abs(y).max())))
        assert float(system.default_atol(1e-3 * y, 1e-8)) < 1e-12
    else:
        assert float(atol) == 1e-10
