"""Every `problem` x `method` x `init` a sweep study accepts, one tiny study each: the
stored results are sane (shapes, finite where successful, the loss falls) and are what
the study names (the documented problem and init draws; the method really used: the
factor and end-to-end flows agree by Theorem 1, descent is O(lr) from them, not equal).
"""

import functools
import itertools
import json

import jax
import numpy as np
import pytest
from conftest import trajectory_tolerance

import lnn_flow as lf
from lnn_flow._sweep import INITS, METHODS, PROBLEMS

SEEDS = [0, 1]
FIXED = {
    "d_in": 3, "d_out": 3, "rank": 1, "depth": 2, "hidden_width": 3,
    "num_measurements": 6, "init_scale": 0.3, "t1": 4.0, "num_saves": 3,
    "rtol": 1e-10, "atol": 1e-12,
    # Descent: 400 steps of 0.01 saved every 200 reach the flows' save times 0, 2, 4.
    "lr": 0.01, "steps": 400, "save_every": 200,
}
TS = [0.0, 2.0, 4.0]
DIMS = (3, 3, 3)  # (d_in, hidden_width, d_out) at depth 2

# Theorem 1 needs balanced factors: the end-to-end method with a Gaussian init is
# refused when the study is read (see `test_refused_combination_is_named`).
ACCEPTED = [
    (problem, method, init)
    for problem, method, init in itertools.product(PROBLEMS, METHODS, INITS)
    if not (method == "end_to_end" and init != "balanced")
]


def test_the_cases_cover_the_schema():
    """The lists come from the schema: a new problem, method or init gets a case."""
    assert set(PROBLEMS) == {"matrix_sensing", "matrix_completion"}
    assert set(METHODS) == {"factor", "end_to_end", "descent"}
    assert set(INITS) == {"balanced", "gaussian"}
    assert len(ACCEPTED) == len(PROBLEMS) * (len(METHODS) * len(INITS) - 1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`run(problem, method, init)`: the one group of that tiny study, run once."""
    root = tmp_path_factory.mktemp("sweep_methods")

    @functools.cache
    def one(problem, method, init):
        name = f"{problem}-{method}-{init}"
        study = {"name": name, "problem": problem, "method": method, "seeds": SEEDS,
                 "fixed": FIXED | {"init": init}}
        path = root / f"{name}.json"
        path.write_text(json.dumps(study))
        groups = lf.run_sweep(path, root / name, progress=False)
        assert len(groups) == 1
        return groups[0]

    return one


def documented_problem(problem):
    """The instance the sweep docstring promises: `fold_in(PRNGKey(problem_seed), 0)`
    (problem_seed defaults to 0)."""
    make = {"matrix_sensing": lf.problems.random_matrix_sensing,
            "matrix_completion": lf.problems.random_matrix_completion}[problem]
    key = jax.random.fold_in(jax.random.PRNGKey(0), 0)
    return make(key, (FIXED["d_out"], FIXED["d_in"]), FIXED["rank"],
                FIXED["num_measurements"])


def documented_init(init, seed):
    """Seed `s` draws its init from `fold_in(PRNGKey(s), 1)` (sweep docstring)."""
    make = {"balanced": lf.init.balanced, "gaussian": lf.init.gaussian}[init]
    return make(jax.random.fold_in(jax.random.PRNGKey(seed), 1), DIMS,
                FIXED["init_scale"])


@pytest.mark.parametrize("problem,method,init", ACCEPTED)
def test_stored_results_are_sane_and_what_the_study_names(run, problem, method, init):
    g = run(problem, method, init)
    k, d = len(TS), FIXED["d_out"]
    assert g.config["init"] == init and g.meta["study"]["method"] == method
    assert g.meta["study"]["problem"] == problem
    assert g.seeds.tolist() == SEEDS
    np.testing.assert_allclose(g["ts"], TS, rtol=1e-12)
    assert g["loss"].shape == (len(SEEDS), k)
    assert g["end_to_end"].shape == (len(SEEDS), k, d, d)
    assert g["end_to_end_final"].shape == (len(SEEDS), d, d)
    assert g["success"].all() and g["finite"].all() and g["reached"].all()
    for name in ("loss", "end_to_end", "loss_final", "end_to_end_final",
                 "relative_error_final", "effective_rank_final", "t_final"):
        assert np.isfinite(g[name]).all(), name
    assert (np.diff(g["loss"], axis=1) < 0).all()  # it learns: the loss falls
    # The documented problem instance and init draws: the stored start and the loss
    # at it are those of the named problem and init (sensing and completion give
    # different losses on the same W).
    loss, truth = documented_problem(problem)
    np.testing.assert_array_equal(g["truth"], truth)
    for i, seed in enumerate(SEEDS):
        W0 = lf.end_to_end(documented_init(init, seed))
        np.testing.assert_allclose(g["end_to_end"][i, 0], W0, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(g["loss"][i, 0], loss(W0), rtol=1e-12)
    # The method: descent takes exactly its steps; the factor methods keep factors.
    if method == "descent":
        assert (g["num_steps"] == FIXED["steps"]).all()
    else:
        assert (g["num_steps"] > 0).all() and (g["num_steps"] < 16_384).all()
        np.testing.assert_allclose(g["t_final"], FIXED["t1"], rtol=1e-12)
    has_factors = method != "end_to_end"
    assert ("factor_final_1" in g.arrays) == has_factors
    if has_factors:
        assert g["factor_final_1"].shape == (len(SEEDS), DIMS[1], DIMS[0])
        product = g["factor_final_2"] @ g["factor_final_1"]
        np.testing.assert_allclose(product, g["end_to_end_final"], rtol=1e-12,
                                   atol=1e-15)
        # Balanced starts are balanced (to rounding); Gaussian ones are not.
        start = g["unbalancedness_initial"]
        assert (start < 1e-12).all() if init == "balanced" else (start > 1e-2).all()
    if method == "factor":
        # Lemma 1: the flow conserves the unbalancedness (to the solve's tolerance:
        # rtol 1e-10 on O(1) entries over < 1e3 steps, 1e-6 with a wide margin).
        np.testing.assert_allclose(g["unbalancedness_final"],
                                   g["unbalancedness_initial"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_factor_and_end_to_end_methods_agree(run, problem):
    """Theorem 1: from the same balanced inits the two flows give the same end-to-end
    trajectory, to twice conftest's rule at the study's tolerances (init 0.3 escapes
    no saddle)."""
    factor = run(problem, "factor", "balanced")
    e2e = run(problem, "end_to_end", "balanced")
    steps = max(factor["num_steps"].max(), e2e["num_steps"].max())
    scale = np.abs(factor["end_to_end"]).max()
    tol = 2 * trajectory_tolerance(steps, scale, FIXED["rtol"], FIXED["atol"])
    error = np.abs(factor["end_to_end"] - e2e["end_to_end"]).max()
    assert error <= tol, (error, tol)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("problem", PROBLEMS)
def test_descent_is_descent_not_the_flow(run, problem, init):
    """Descent at lr 0.01 follows the flow to first order: a distance C lr, well
    below the trajectory's scale (C of order 1 on this problem), and far above the
    flow's own error (so it is really the discrete method that ran)."""
    flow = run(problem, "factor", init)
    descent = run(problem, "descent", init)
    scale = np.abs(flow["end_to_end"]).max()
    distance = np.abs(descent["end_to_end"] - flow["end_to_end"]).max()
    flow_error = trajectory_tolerance(flow["num_steps"].max(), scale, FIXED["rtol"],
                                      FIXED["atol"])
    assert 1e3 * flow_error < distance < 0.05 * scale, (distance, flow_error, scale)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_refused_combination_is_named(problem, tmp_path):
    study = {"name": "bad", "problem": problem, "method": "end_to_end", "seeds": 2,
             "fixed": FIXED | {"init": "gaussian"}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(study))
    with pytest.raises(ValueError, match="`init` must be 'balanced' for method"):
        lf.run_sweep(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
