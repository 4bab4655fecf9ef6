"""The hierarchical factorization's gradient flow: CP at one level, recovery of a
low-hierarchical-rank completion problem from a small init, refusal of bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf

ht = lf.tensor.hierarchical
RTOL, ATOL = 1e-10, 1e-12


@pytest.fixture(scope="module")
def completion():
    """Order 4, 4x4x4x4, CP rank 1 truth (hierarchical rank 1), 120 of 256 entries."""
    return lf.problems.random_tensor_completion(jax.random.PRNGKey(0), (4, 4, 4, 4), 1, 120)


def test_one_level_flow_is_the_cp_flow():
    """Same factors, same field: the trajectories agree to the solver tolerance
    (both at rtol 1e-10: differences of a few 1e-10 relative, 1e-8 allowed)."""
    loss, _ = lf.problems.random_tensor_completion(jax.random.PRNGKey(3), (3, 4, 5), 2, 40)
    fs0 = lf.tensor.balanced(jax.random.PRNGKey(4), (3, 4, 5), 3, 0.5)
    ts = jnp.linspace(0.0, 200.0, 5)
    cp = lf.tensor.flow(loss, fs0, 200.0, ts, rtol=RTOL, atol=ATOL)
    h = ht.flow(loss, fs0, 200.0, ts, tree=(0, 1, 2), output=False, rtol=RTOL, atol=ATOL)
    assert cp.success and h.success
    scale = float(jnp.abs(cp.end_to_end).max())
    np.testing.assert_allclose(h.end_to_end, cp.end_to_end, atol=1e-8 * scale)


@pytest.fixture(scope="module")
def recovered(completion):
    loss, truth = completion
    ws0 = ht.balanced(jax.random.PRNGKey(1), (4, 4, 4, 4), 4, 0.1)
    threshold = 1e-8 * float(loss(jnp.zeros((4, 4, 4, 4))))
    sol = ht.flow(loss, ws0, 1e13, jnp.geomspace(1.0, 1e13, 60), rtol=1e-8,
                  loss_threshold=threshold, solver="auto", max_steps=100_000)
    return sol, truth


def test_small_init_recovers_the_low_rank_truth(recovered):
    sol, truth = recovered
    assert sol.success and "loss fell" in sol.message, sol.message
    W = ht.end_to_end(sol.factors_final, ht.binary_tree(4))
    assert float(jnp.linalg.norm(W - truth) / jnp.linalg.norm(truth)) < 1e-2
    # One local component per node carries the rank-1 truth; the others stay orders of
    # magnitude smaller (they start at (0.1^2 / 4)^{3/2} ~ 1e-4 of a unit truth).
    for norms in ht.local_component_norms(sol.factors_final, ht.binary_tree(4)):
        ordered = jnp.sort(norms)[::-1]
        assert float(ordered[1] / ordered[0]) < 5e-2
        assert float(ordered[2] / ordered[0]) < 1e-3


def test_conservation_holds_from_an_unbalanced_init(completion):
    """(C) to the solver's tolerance: drift <= 100 rtol x the squared norms' scale."""
    loss, _ = completion
    ws0 = ht.gaussian(jax.random.PRNGKey(2), (4, 4, 4, 4), 3, 0.5)
    sol = ht.flow(loss, ws0, 50.0, jnp.linspace(0, 50.0, 11), rtol=1e-9, atol=1e-12)
    check = ht.check_conservation(sol)
    assert sol.success
    assert float(jnp.abs(ht.unbalancedness(ws0, ht.binary_tree(4))).max()) > 1e-2
    assert float(check.max_drift) < 100 * 1e-9 * float(check.scale)


def test_bad_input_is_refused_naming_the_argument(completion):
    loss, _ = completion
    ws0 = ht.balanced(jax.random.PRNGKey(1), (4, 4, 4, 4), 2, 0.1)
    with pytest.raises(ValueError, match="`tree`"):
        ht.flow(loss, ws0, 1.0, tree=((0, 1), (2, 2)))
    with pytest.raises(ValueError, match="`ws0`"):
        ht.flow(loss, ws0[:-1], 1.0)
    wrong = ht.balanced(jax.random.PRNGKey(1), (4, 4, 4, 5), 2, 0.1)
    with pytest.raises(ValueError, match="`ws0`"):
        ht.flow(loss, wrong, 1.0)
    with pytest.raises(ValueError, match=r"`ws0\[0\]`"):
        ht.flow(loss, (jnp.full((2, 1), jnp.nan),) + ws0[1:], 1.0)
    with pytest.raises(TypeError, match="`output`"):
        ht.flow(loss, ws0, 1.0, output=1)


def test_batch_pool_and_auto_match_single_solves():
    """solve_batch (vmapped), solve_pool (refilled slots) and solver="auto" against the
    plain solve of each member at the same rtol 1e-10: within 1e-8 of the tensor's
    scale (a few tolerances of two independent solves)."""
    loss, _ = lf.problems.random_tensor_sensing(jax.random.PRNGKey(0), (3, 3, 3, 3), 2, 40)
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    inits = jax.vmap(lambda k: ht.balanced(k, (3, 3, 3, 3), 3, 1.0))(keys)
    ts = jnp.linspace(0.0, 3.0, 4)
    alone = [ht.flow(loss, tuple(w[i] for w in inits), 3.0, ts, rtol=RTOL, atol=ATOL)
             for i in range(3)]
    scale = max(float(jnp.abs(s.end_to_end).max()) for s in alone)
    for how in (lambda: lf.solve_batch("hierarchical", loss, inits, 3.0, ts, rtol=RTOL,
                                       atol=ATOL),
                lambda: lf.solve_pool("hierarchical", loss, inits, 3.0, ts, slots=2,
                                      rtol=RTOL, atol=ATOL),
                lambda: lf.solve_batch("hierarchical", loss, inits, 3.0, ts, rtol=RTOL,
                                       atol=ATOL, solver="auto")):
        batch = how()
        assert bool(jnp.all(batch.success))
        for i, one in enumerate(alone):
            np.testing.assert_allclose(batch.end_to_end[i], one.end_to_end,
                                       atol=1e-8 * scale)
