"""Mini-batch SGD and its stochastic modified equation: the noise covariance against an
enumeration of every batch, SGD at full batch against GD, reproducible and batchable
SDE paths, and SGD's distribution over seeds against the SDE's over Brownian paths.

Statistical tolerances: with `B` runs per side, a mean's standard error is `sd /
sqrt(B)`; means are compared to 4.5 standard errors of their difference (fixed keys:
deterministic, and a 4.5-sigma miss among 9 entries has probability ~6e-5 for
independent ones); the SDE's own weak error, `O(lr^2)` with the modified drift (Li,
Tai & E), is taken to be small against that at `lr = 0.05`. Spreads: the standard error of a standard
deviation is `sd / sqrt(2 B)` (1.6% at B = 2000); ratios are held to 10%.
"""

import itertools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROUNDING, sensing

import lnn_flow as lf

DIMS = (3, 3, 3)
M, BATCH, LR, HORIZON = 12, 3, 0.05, 2.0
RUNS = 2000


@pytest.fixture(scope="module")
def problem():
    loss, _ = sensing((DIMS[-1], DIMS[0]), rank=1, m=M)
    ws0 = lf.init.balanced(jax.random.PRNGKey(1), DIMS, 0.5)
    return loss, ws0


@pytest.fixture(scope="module")
def ensembles(problem):
    """SGD over RUNS seeds and the modified-drift SDE over RUNS paths, saved at the
    same times (every 10 steps)."""
    loss, ws0 = problem
    steps = int(round(HORIZON / LR))
    keys = jax.random.split(jax.random.PRNGKey(2), RUNS)
    sgd = eqx.filter_jit(jax.vmap(lambda k: lf.stochastic_gradient_descent(
        loss, ws0, LR, steps, batch_size=BATCH, key=k, save_every=10)))(keys)
    ts = sgd.ts[0]
    path_keys = jax.random.split(jax.random.PRNGKey(3), RUNS)
    sde = eqx.filter_jit(jax.vmap(lambda k: lf.sgd_sde(
        loss, ws0, HORIZON, ts, lr=LR, batch_size=BATCH, key=k, drift="modified")))(path_keys)
    return sgd, sde


def _mean_gap(a, b):
    """max over entries of |mean(a) - mean(b)| in standard errors of the difference."""
    se = jnp.sqrt(a.var(0) / a.shape[0] + b.var(0) / b.shape[0])
    return float(jnp.max(jnp.abs(a.mean(0) - b.mean(0)) / se))


def test_sde_mean_and_spread_match_sgd(problem, ensembles):
    loss, ws0 = problem
    sgd, sde = ensembles
    assert bool(jnp.all(sgd.finite)) and bool(jnp.all(sde.success))
    assert _mean_gap(sgd.end_to_end_final, sde.end_to_end_final) < 4.5
    assert _mean_gap(sgd.loss[:, 1:], sde.loss[:, 1:]) < 4.5
    ratio = np.asarray(sde.end_to_end_final.std(0) / sgd.end_to_end_final.std(0))
    np.testing.assert_allclose(ratio, 1.0, atol=0.1)
    np.testing.assert_allclose(sde.loss[:, 1:].std(0) / sgd.loss[:, 1:].std(0), 1.0, atol=0.1)
    # The comparison has the power to fail: the deterministic GD iterate is far outside.
    gd = lf.gradient_descent(loss, ws0, LR, int(round(HORIZON / LR)))
    se = jnp.sqrt(sgd.end_to_end_final.var(0) / RUNS)
    assert float(jnp.max(jnp.abs(gd.end_to_end_final - sgd.end_to_end_final.mean(0)) / se)) > 4.5


def test_noise_covariance_is_that_of_the_minibatch_gradient(problem):
    """S S^T = lr Cov(minibatch gradient) exactly, the covariance enumerated over all
    C(m, b) batches (without replacement) or all m^b ordered draws (with)."""
    loss, ws0 = problem
    small = loss.subset(jnp.arange(5))
    flat = lambda g: jax.flatten_util.ravel_pytree(g)[0]
    grad_on = lambda l: flat(jax.grad(lambda w: l(lf.end_to_end(w)))(ws0))
    for replace, batches in [
        (False, list(itertools.combinations(range(5), 2))),
        (True, list(itertools.product(range(5), repeat=2))),
    ]:
        G = jnp.stack([grad_on(small.subset(jnp.asarray(bt))) for bt in batches])
        cov = jnp.cov(G.T, bias=True)
        S = lf.sgd_diffusion(small, ws0, LR, 2, replace=replace)
        np.testing.assert_allclose(S @ S.T, LR * cov, atol=ROUNDING * float(jnp.abs(cov).max()) * 10 + 1e-15)


def test_full_batch_sgd_is_gradient_descent(problem):
    loss, ws0 = problem
    sgd = lf.stochastic_gradient_descent(loss, ws0, LR, 20, batch_size=M,
                                         key=jax.random.PRNGKey(0))
    gd = lf.gradient_descent(loss, ws0, LR, 20)
    np.testing.assert_allclose(sgd.end_to_end, gd.end_to_end, atol=ROUNDING)
    # and the SDE of a full batch without replacement has no noise: it is the flow
    sde = lf.sgd_sde(loss, ws0, 1.0, lr=LR, batch_size=M, key=jax.random.PRNGKey(0),
                     dt0=1e-3)
    flow = lf.factor_flow(loss, ws0, 1.0, rtol=1e-12, atol=1e-14)
    # Euler at dt 1e-3 on the flow: global error O(dt) ~ 1e-3 |W'|, bounded here by 1e-3.
    np.testing.assert_allclose(sde.end_to_end_final, flow.end_to_end_final, atol=1e-3)


def test_paths_are_reproducible_per_key_and_batch_like_single_solves(problem):
    loss, ws0 = problem
    solve = lambda k: lf.sgd_sde(loss, ws0, 0.5, lr=LR, batch_size=BATCH, key=k)
    keys = jax.random.split(jax.random.PRNGKey(9), 3)
    batch = eqx.filter_jit(jax.vmap(solve))(keys)
    for i in range(3):
        one = solve(keys[i])
        np.testing.assert_allclose(batch.end_to_end_final[i], one.end_to_end_final,
                                   atol=ROUNDING)
    np.testing.assert_array_equal(solve(keys[0]).end_to_end_final,
                                  solve(keys[0]).end_to_end_final)
    assert float(jnp.abs(batch.end_to_end_final[0] - batch.end_to_end_final[1]).max()) > 1e-4
    run = lambda k: lf.stochastic_gradient_descent(loss, ws0, LR, 10, batch_size=BATCH, key=k)
    np.testing.assert_array_equal(run(keys[0]).end_to_end, run(keys[0]).end_to_end)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [(dict(batch_size=M + 1), ValueError, "`batch_size` must be <="),
     (dict(batch_size=0), ValueError, "`batch_size`"),
     (dict(batch_size=2, drift="plain"), ValueError, "`drift` must be one of"),
     (dict(batch_size=2, solver=diffrax.Heun()), TypeError, "`solver` must be an Ito"),
     (dict(batch_size=2, replace=1), TypeError, "`replace` must be True or False")],
)
def test_sde_refuses_bad_input(problem, kwargs, error, match):
    loss, ws0 = problem
    with pytest.raises(error, match=match):
        lf.sgd_sde(loss, ws0, 1.0, lr=LR, key=jax.random.PRNGKey(0), **kwargs)


def test_a_loss_without_samples_is_refused(problem):
    _, ws0 = problem
    loss = lf.losses.WhitenedSquare(jnp.eye(3))
    with pytest.raises(TypeError, match="`loss` must be a mean over samples"):
        lf.stochastic_gradient_descent(loss, ws0, LR, 5, batch_size=1,
                                       key=jax.random.PRNGKey(0))
