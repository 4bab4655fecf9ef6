"""The CP gradient flow (Section 5): its field, the order-2 case as the depth-2 factor
flow, batch and pool through the registry, input refusal, and a reduced tensor
completion from a small balanced init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATOL, RTOL, member, trajectory_tolerance, whitened

import lnn_flow as lf
from lnn_flow._flows._tensor_flow import cp_vector_field

SHAPE = (3, 4, 5)
TS = jnp.linspace(0.0, 2.0, 5)


@pytest.fixture(scope="module")
def sensing():
    loss, _ = lf.problems.random_tensor_sensing(jax.random.PRNGKey(0), SHAPE, 2, 30)
    return loss


def test_field_is_minus_the_contracted_gradient(sensing):
    """da_r^n/dt = -G x_{m != n} a_r^m, written out for N = 3."""
    fs = lf.tensor.gaussian(jax.random.PRNGKey(1), SHAPE, 3, 0.7)
    G = jax.grad(sensing)(lf.tensor.end_to_end(fs))
    A, B, C = fs
    expected = (-jnp.einsum("ijk,jr,kr->ir", G, B, C),
                -jnp.einsum("ijk,ir,kr->jr", G, A, C),
                -jnp.einsum("ijk,ir,jr->kr", G, A, B))
    for got, want in zip(cp_vector_field(sensing, fs), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_order_two_is_the_depth_two_factor_flow():
    """CP(A_1, A_2) = A_1 A_2^T: the flow equals `factor_flow` from (W_1, W_2) =
    (A_2^T, A_1). The same ODE on permuted entries (the RMS step control is permutation
    invariant): two solves from an init of norm 0.5 (no saddle to escape), so each is
    within conftest's rule of the true flow and they differ by at most twice it."""
    loss, _ = whitened((3, 4))
    fs0 = lf.tensor.balanced(jax.random.PRNGKey(2), (3, 4), 3, 0.5)
    cp = lf.tensor.flow(loss, fs0, TS[-1], TS, rtol=RTOL, atol=ATOL)
    fac = lf.factor_flow(loss, (fs0[1].T, fs0[0]), TS[-1], TS, rtol=RTOL, atol=ATOL)
    assert cp.success and fac.success and cp.depth == 2
    steps = max(int(cp.stats.num_steps), int(fac.stats.num_steps))
    tol = 2 * trajectory_tolerance(steps, float(jnp.abs(fac.end_to_end).max()))
    assert float(jnp.abs(cp.end_to_end - fac.end_to_end).max()) <= tol
    assert float(jnp.abs(cp.factors[0] - fac.factors[1]).max()) <= tol
    assert float(jnp.abs(cp.factors[1] - jnp.swapaxes(fac.factors[0], 1, 2)).max()) <= tol


def test_batch_and_pool_equal_separate_solves(sensing):
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    inits = jax.vmap(lambda k: lf.tensor.balanced(k, SHAPE, 3, 0.3))(keys)
    kw = dict(rtol=RTOL, atol=ATOL)
    batch = lf.solve_batch("tensor", sensing, inits, TS[-1], TS, **kw)
    pooled = lf.solve_pool("tensor", sensing, inits, TS[-1], TS, slots=2, round_steps=4,
                           **kw)
    assert bool(jnp.all(batch.success)) and bool(jnp.all(pooled.success))
    assert batch.end_to_end.shape == (3, TS.shape[0], *SHAPE)
    assert int(pooled.pool.rounds[0]) > 1  # slots were refilled
    for i in range(3):
        alone = lf.tensor.flow(sensing, member(inits, i), TS[-1], TS, **kw)
        # The batch takes the same steps: equal to rounding.
        np.testing.assert_allclose(member(batch, i).end_to_end, alone.end_to_end,
                                   rtol=0, atol=1e-13)
        # The pool's rounds restart the controller: within twice conftest's rule
        # (init norm 0.3 of an O(1) solution: no saddle).
        tol = 2 * trajectory_tolerance(alone.stats.num_steps,
                                       jnp.abs(alone.end_to_end).max())
        assert float(jnp.abs(member(pooled, i).end_to_end - alone.end_to_end).max()) <= tol


def test_bad_input_is_refused_before_solving(sensing):
    fs0 = lf.tensor.balanced(jax.random.PRNGKey(4), SHAPE, 2, 0.3)
    with pytest.raises(ValueError, match=r"fs0\[1\] has 3 columns, fs0\[0\] has 2"):
        lf.tensor.flow(sensing, (fs0[0], jnp.ones((4, 3)), fs0[2]), 1.0)
    with pytest.raises(ValueError, match=r"`fs0` gives an end-to-end tensor of shape "
                       r"\(3, 5, 4\) but the loss expects shape \(3, 4, 5\)"):
        lf.tensor.flow(sensing, (fs0[0], fs0[2], fs0[1]), 1.0)
    with pytest.raises(ValueError, match="`fs0` must hold at least two factors"):
        lf.tensor.flow(sensing, fs0[:1], 1.0)
    with pytest.raises(ValueError, match=r"`fs0\[2\]` must be finite"):
        lf.tensor.flow(sensing, (*fs0[:2], fs0[2].at[0, 0].set(jnp.nan)), 1.0)
    with pytest.raises(TypeError, match=r"`fs0\[0\]` must be real"):
        lf.tensor.flow(sensing, (fs0[0].astype(complex), *fs0[1:]), 1.0)
    with pytest.raises(ValueError, match="`t1` must be greater than t0"):
        lf.tensor.flow(sensing, fs0, -1.0)
    with pytest.raises(ValueError, match="`init` gives an end-to-end tensor of shape"):
        lf.solve_batch("tensor", sensing,
                       tuple(jnp.stack([f, f]) for f in (fs0[1], fs0[0], fs0[2])), 1.0)


# Reduced tensor completion: 8x8x8, CP rank 2 (truth of norm sqrt(2)), 250 of 512
# entries observed, R = 4 components from balanced norms 1e-6, stopped at loss TAU.
COMPLETION_SHAPE, TRUE_RANK, OBSERVED, R, TAU = (8, 8, 8), 2, 250, 4, 1e-9


@pytest.fixture(scope="module")
def completion():
    loss, truth = lf.problems.random_tensor_completion(
        jax.random.PRNGKey(0), COMPLETION_SHAPE, TRUE_RANK, OBSERVED)
    fs0 = lf.tensor.balanced(jax.random.PRNGKey(1), COMPLETION_SHAPE, R, 1e-6)
    sol = lf.tensor.flow(loss, fs0, 1e7, loss_threshold=TAU, max_steps=4096)
    return loss, truth, sol


def test_completion_recovers_the_truth_with_few_large_components(completion):
    loss, truth, sol = completion
    assert sol.success and bool(sol.stopped), sol.message
    W = sol.end_to_end_final
    # The stop says l = TAU: the observed residual has norm sqrt(2 m TAU) exactly.
    observed = W[tuple(loss.indices.T)] - loss.values
    np.testing.assert_allclose(jnp.linalg.norm(observed), np.sqrt(2 * OBSERVED * TAU),
                               rtol=1e-5)
    # If the error spread evenly over the 512 entries, the observed m would carry a
    # fraction m / 512 of it: ||W - W*|| ~ sqrt(512 / m) sqrt(2 m TAU) = sqrt(1024 TAU)
    # (7.2e-4 relative to ||W*|| = sqrt 2). The loss does not bound the unobserved
    # entries; a factor 3 allows an uneven spread (seen: 1.5, i.e. 1.09e-3).
    implied = np.sqrt(2 * np.prod(COMPLETION_SHAPE) * TAU) / float(jnp.linalg.norm(truth))
    error = float(jnp.linalg.norm(W - truth) / jnp.linalg.norm(truth))
    assert error <= 3 * implied, (error, implied)
    # Implicit regularization towards low tensor rank: the components beyond the
    # truth's rank stay orders of magnitude below the two that fit it (seen 3.8e-5
    # against 0.84).
    norms = jnp.sort(lf.tensor.component_norms(sol.factors_final))[::-1]
    assert float(norms[TRUE_RANK]) < 1e-3 * float(norms[TRUE_RANK - 1])


def test_dense_output_evaluates_the_tensor(sensing):
    """`evaluate(t)` combines the dense output's factors with the CP product (not the
    matrix product), at a save time equal to the saved tensor to rounding (the dense
    output interpolates through the step ends, and a save is written from the same
    interpolant)."""
    fs0 = lf.tensor.balanced(jax.random.PRNGKey(6), SHAPE, 2, 0.3)
    sol = lf.tensor.flow(sensing, fs0, TS[-1], TS, rtol=RTOL, atol=ATOL, dense=True)
    for k in (1, 3):
        got = sol.evaluate(TS[k])
        assert got.shape == SHAPE
        np.testing.assert_allclose(got, sol.end_to_end[k], rtol=0, atol=1e-13)
        factors = sol.evaluate_factors(TS[k])
        np.testing.assert_allclose(lf.tensor.end_to_end(factors), got, rtol=0, atol=1e-15)
