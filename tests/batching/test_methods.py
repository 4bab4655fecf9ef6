"""The method registry: what `solve_batch` and `solve_pool` read, so a flow registered
once is batchable and poolable."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from conftest import member, whitened

import lnn_flow as lf
from lnn_flow._batching import _methods
from lnn_flow._batching._methods import METHODS, Method, arguments, lookup, poolable

B = 3
T1 = 1.0
TS = jnp.linspace(0.0, T1, 3)
RTOL, ATOL = 1e-10, 1e-12


@pytest.fixture(scope="module")
def problem():
    loss, _ = whitened((3, 3))
    W0s = 0.3 * jax.random.normal(jax.random.PRNGKey(4), (B, 3, 3))
    return loss, W0s


def test_registry_lists_every_method():
    assert set(METHODS) == {
        "factor", "end_to_end", "descent", "end_to_end_descent", "symmetric",
        "symmetric_factor", "tensor", "hierarchical", "modified_factor",
        "modified_end_to_end",
    }
    assert poolable() == [
        "end_to_end", "factor", "hierarchical", "modified_end_to_end", "modified_factor",
        "symmetric", "symmetric_factor", "tensor"
    ]
    assert lookup("factor").flow is lf.factor_flow
    with pytest.raises(ValueError, match="for a refilled solve; got 'descent'"):
        lookup("descent", pool=True)
    with pytest.raises(ValueError, match="`method` must be one of"):
        lookup(3)


def test_arguments_fill_defaults_by_name():
    loss, _ = whitened((2, 2))
    a = arguments("end_to_end", loss, jnp.eye(2), (2, T1), {"rtol": 1e-6})
    assert (a["depth"], a["t1"], a["ts"], a["rtol"]) == (2, T1, None, 1e-6)
    assert a.get("atol") is None  # the end-to-end flow scales its own default
    options = METHODS["end_to_end"].options(a)
    assert (options.rtol, options.atol, options.max_steps) == (1e-6, None, 16_384)
    # A flow taking `**options`: merged in by name.
    a = arguments("symmetric", loss, jnp.eye(2), (T1,), {"rtol": 1e-7})
    assert METHODS["symmetric"].options(a).rtol == 1e-7
    assert a["rtol"] == 1e-7 and "options" not in a
    with pytest.raises(TypeError, match=r"arguments of `factor_flow` \(method 'factor'\)"):
        arguments("factor", loss, (jnp.eye(2),), (), {})


def test_system_builders_check_the_member_against_the_loss():
    loss, _ = whitened((3, 3))
    with pytest.raises(ValueError, match="`init` gives an end-to-end matrix of shape"):
        METHODS["end_to_end"].system(loss, jnp.eye(2), {"depth": 2})
    state = METHODS["symmetric_factor"].state(jnp.arange(4.0).reshape(2, 2))
    assert jnp.array_equal(state[0], state[1].T)


@pytest.mark.parametrize("name", ["symmetric", "symmetric_factor"])
def test_exercise2_flows_batch_and_pool_like_alone(problem, name):
    # Registered once in `_methods`: batchable and poolable with no other change.
    loss, W0s = problem
    flow = METHODS[name].flow
    inits = jnp.einsum("bij,bkj->bik", W0s, W0s) if name == "symmetric" else W0s
    kw = dict(rtol=RTOL, atol=ATOL)
    batch = lf.solve_batch(name, loss, inits, T1, TS, **kw)
    pooled = lf.solve_pool(name, loss, inits, T1, TS, slots=2, round_steps=4, **kw)
    assert bool(jnp.all(batch.success)) and bool(jnp.all(pooled.success))
    assert int(pooled.pool.rounds[0]) > 1  # slots were refilled
    for i in range(B):
        alone = flow(loss, inits[i], T1, TS, **kw)
        # The batch takes the same steps: equal to rounding.
        assert jnp.allclose(member(batch, i).end_to_end, alone.end_to_end, rtol=1e-12,
                            atol=1e-13)
        # The pool's rounds restart the controller: agreement to the solve's
        # tolerance (a few hundred steps of rtol 1e-10 on O(1) entries, non-expanding:
        # this flow is a gradient flow towards a minimum).
        assert jnp.allclose(member(pooled, i).end_to_end, alone.end_to_end, rtol=1e-7,
                            atol=1e-8)


def test_a_newly_registered_flow_is_batchable_and_poolable(problem, monkeypatch):
    # A "new" method reusing the end-to-end system at depth 1 under another name.
    loss, W0s = problem
    entry = METHODS["end_to_end"]
    new = Method(entry.flow, entry.system)
    monkeypatch.setitem(_methods.METHODS, "new_flow", new)
    assert "new_flow" in poolable()
    batch = lf.solve_batch("new_flow", loss, W0s, 1, T1, TS, rtol=RTOL)
    pooled = lf.solve_pool("new_flow", loss, W0s, 1, T1, TS, rtol=RTOL, slots=2)
    alone = lf.end_to_end_flow(loss, W0s[0], 1, T1, TS, rtol=RTOL)
    assert jnp.allclose(member(batch, 0).end_to_end, alone.end_to_end, rtol=1e-12,
                        atol=1e-13)
    assert jnp.allclose(member(pooled, 0).end_to_end, alone.end_to_end, rtol=1e-7,
                        atol=1e-8)


def test_callables_bind_whether_or_not_they_hash():
    # Signatures are cached by the callable; a module holding arrays cannot be hashed
    # and is bound from its signature each time.
    class Scaled(eqx.Module):
        scale: jax.Array

        def __call__(self, loss, init, t1, *, rtol=1e-8):
            return init * self.scale

    unhashable = Scaled(jnp.ones(()))
    with pytest.raises(TypeError):
        hash(unhashable)

    def plain(loss, init, t1, *, rtol=1e-8):
        return init

    for flow in (unhashable, plain, plain):
        bound = _methods.bind(flow, flow, None, jnp.eye(2), (T1,), {"rtol": 1e-6})
        assert bound.arguments["t1"] == T1 and bound.arguments["rtol"] == 1e-6
        with pytest.raises(TypeError, match="after `loss, init` it takes"):
            _methods.bind(flow, flow, None, jnp.eye(2), (), {"t2": 1.0})
