"""The public `lnn_flow.theory` namespace: what it exports, its input checks, and the
deprecated argument order it still accepts. The results themselves are tested with the
modules that compute them (test_landscape.py, test_convergence.py,
test_singular_values.py, test_determinant.py, test_exercises.py, test_symmetric.py)."""

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf

th = lf.theory


def test_every_exported_name_resolves():
    assert len(set(th.__all__)) == len(th.__all__)
    for name in th.__all__:
        assert getattr(th, name) is not None, name
    public = {
        name for name, value in vars(th).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(th.__all__)


def test_theory_inputs_are_checked():
    with pytest.raises(ValueError, match="`delta` must be > 0"):
        th.theorem2_time(1.0, 0.1, 1.0, -0.5, 3)
    with pytest.raises(ValueError, match="`epsilon` must be > 0"):
        th.theorem2_time(1.0, 0.0, 1.0, 0.5, 3)
    with pytest.raises(ValueError, match="`W` must be nonzero"):
        th.proposition3_point(jnp.zeros((2, 3)), (3, 4, 4, 2))


@pytest.fixture(scope="module")
def whitened_flows():
    target = jnp.array([[1.5, 0.2], [-0.1, 1.2]])
    loss = lf.losses.WhitenedSquare(target)
    W0 = target + jnp.array([[[0.1, -0.05], [0.0, 0.08]], [[-0.07, 0.0], [0.05, 0.1]]])
    ts = jnp.linspace(0.0, 2.0, 5)
    flows = jax.vmap(lambda W: lf.end_to_end_flow(loss, W, 3, ts[-1], ts))(W0)
    return loss, flows


def test_check_theorem2_old_argument_order_warns_and_agrees(whitened_flows):
    loss, flows = whitened_flows
    sol = jax.tree_util.tree_map(lambda x: x[0], flows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new order does not warn
        new = th.check_theorem2(loss, sol, slack=1e-9)
    with pytest.warns(
        DeprecationWarning,
        match=r"check_theorem2\(solution, loss\) is deprecated; call "
        r"check_theorem2\(loss, solution\)",
    ) as record:
        old = th.check_theorem2(sol, loss, slack=1e-9)
    assert record[0].filename == __file__  # stacklevel points at the caller
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old)):
        np.testing.assert_array_equal(a, b)
    assert new.holds


def test_check_theorem2_batch_recipe_in_its_error(whitened_flows):
    """A batched solution is refused with the vmap recipe, in the new order, and the
    recipe works."""
    loss, flows = whitened_flows
    with pytest.raises(ValueError, match=r"check_theorem2\(loss, s\)"):
        th.check_theorem2(loss, flows)
    batch = jax.vmap(lambda s: th.check_theorem2(loss, s))(flows)
    for i in range(2):
        one = th.check_theorem2(loss, jax.tree_util.tree_map(lambda x: x[i], flows))
        np.testing.assert_allclose(batch.gap[i], one.gap, rtol=1e-14)
        assert batch.holds[i] == one.holds
