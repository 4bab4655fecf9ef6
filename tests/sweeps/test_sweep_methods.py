"""Every `problem` x `method` x `init` a sweep study accepts, one tiny study each: the
stored results are sane (shapes, finite where successful, the loss falls) and are what
the study names (the documented problem and init draws; the method really used: the
factor and end-to-end flows agree by Theorem 1, descent is O(lr) from them, not equal;
the tensor method is the CP flow of `lnn_flow.tensor.flow`, with its conservation law).
The hierarchical method's groups are tested in test_sweep_hierarchical.py.
"""

import functools
import itertools
import json

import jax
import numpy as np
import pytest
from conftest import trajectory_tolerance

import lnn_flow as lf
from lnn_flow._sweeps._sweep import FAMILIES, INITS, METHODS, PROBLEMS, family

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
# The tensor method: 3x3x3 tensors of CP rank 1, two components, the same times and
# tolerances (init norm 0.3 per component: no saddle to escape, conftest's rule holds).
TENSOR_FIXED = {
    "shape": [3, 3, 3], "rank": 1, "components": 2, "num_measurements": 15,
    "init_scale": 0.3, "t1": 4.0, "num_saves": 3, "rtol": 1e-10, "atol": 1e-12,
}

# Theorem 1 needs balanced factors: the end-to-end method with a Gaussian init is
# refused when the study is read (see `test_refused_combination_is_named`); each
# method solves the problems of its family (matrix or tensor).
ACCEPTED = [
    (problem, method, init)
    for problem, method, init in itertools.product(PROBLEMS, METHODS, INITS)
    if not (method == "end_to_end" and init != "balanced")
    and problem.startswith(family(method))
]
MATRIX = [case for case in ACCEPTED if family(case[1]) == "matrix"]
TENSOR = [case for case in ACCEPTED if case[1] == "tensor"]
# Covered in test_sweep_hierarchical.py (both problems and both inits, over two groups).
HIERARCHICAL = [case for case in ACCEPTED if case[1] == "hierarchical"]


def test_the_cases_cover_the_schema():
    """The lists come from the schema: a new problem, method or init gets a case."""
    assert set(PROBLEMS) == {"matrix_sensing", "matrix_completion", "tensor_sensing",
                             "tensor_completion"}
    assert set(METHODS) == {"factor", "end_to_end", "descent", "modified_factor", "tensor",
                            "hierarchical"}
    assert FAMILIES == {"matrix": ("factor", "end_to_end", "descent", "modified_factor"),
                        "tensor": ("tensor", "hierarchical")}
    assert set(INITS) == {"balanced", "gaussian"}
    assert len(MATRIX) == 2 * (4 * len(INITS) - 1) and len(TENSOR) == 2 * len(INITS)
    assert len(HIERARCHICAL) == 2 * len(INITS)
    assert len(MATRIX) + len(TENSOR) + len(HIERARCHICAL) == len(ACCEPTED)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`run(problem, method, init)`: the one group of that tiny study, run once."""
    root = tmp_path_factory.mktemp("sweep_methods")

    @functools.cache
    def one(problem, method, init):
        name = f"{problem}-{method}-{init}"
        fixed = TENSOR_FIXED if family(method) == "tensor" else FIXED
        study = {"name": name, "problem": problem, "method": method, "seeds": SEEDS,
                 "fixed": fixed | {"init": init}}
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


@pytest.mark.parametrize("problem,method,init", MATRIX)
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


@pytest.mark.parametrize("problem", ["matrix_sensing", "matrix_completion"])
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
@pytest.mark.parametrize("problem", ["matrix_sensing", "matrix_completion"])
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


@pytest.mark.parametrize("problem", ["matrix_sensing", "matrix_completion"])
def test_modified_factor_method_is_the_flow_descent_follows(run, problem):
    """Descent at lr 0.01 is within C lr of the flow and C' lr^2 of its order-1
    modified flow (backward error analysis): at the saves, the modified method is
    closer to descent by more than a factor 10 (C'/C of order 1 here)."""
    flow = run(problem, "factor", "balanced")
    descent = run(problem, "descent", "balanced")
    modified = run(problem, "modified_factor", "balanced")
    to_flow = np.abs(descent["end_to_end"] - flow["end_to_end"]).max()
    to_modified = np.abs(descent["end_to_end"] - modified["end_to_end"]).max()
    assert to_modified < 0.1 * to_flow, (to_modified, to_flow)
    assert modified.config["order"] == 1 and modified.config["lr"] == FIXED["lr"]


@pytest.mark.parametrize("problem", ["matrix_sensing", "matrix_completion"])
def test_refused_combination_is_named(problem, tmp_path):
    study = {"name": "bad", "problem": problem, "method": "end_to_end", "seeds": 2,
             "fixed": FIXED | {"init": "gaussian"}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(study))
    with pytest.raises(ValueError, match="`init` must be 'balanced' for method"):
        lf.run_sweep(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def documented_tensor_problem(problem):
    make = {"tensor_sensing": lf.problems.random_tensor_sensing,
            "tensor_completion": lf.problems.random_tensor_completion}[problem]
    return make(jax.random.fold_in(jax.random.PRNGKey(0), 0), TENSOR_FIXED["shape"],
                TENSOR_FIXED["rank"], TENSOR_FIXED["num_measurements"])


def documented_tensor_init(init, seed):
    make = {"balanced": lf.tensor.balanced, "gaussian": lf.tensor.gaussian}[init]
    return make(jax.random.fold_in(jax.random.PRNGKey(seed), 1), TENSOR_FIXED["shape"],
                TENSOR_FIXED["components"], TENSOR_FIXED["init_scale"])


@pytest.mark.parametrize("problem,method,init", TENSOR)
def test_tensor_groups_are_the_cp_flow_of_the_documented_draws(run, problem, method,
                                                               init):
    g = run(problem, method, init)
    shape, R, k = tuple(TENSOR_FIXED["shape"]), TENSOR_FIXED["components"], len(TS)
    assert g.meta["study"]["problem"] == problem and g.config["init"] == init
    assert g["end_to_end"].shape == (len(SEEDS), k, *shape)
    assert g["component_norms"].shape == (len(SEEDS), k, R)
    assert g["success"].all() and g["reached"].all()
    assert (np.diff(g["loss"], axis=1) < 0).all()
    loss, truth = documented_tensor_problem(problem)
    np.testing.assert_array_equal(g["truth"], truth)
    scale = np.abs(g["end_to_end"]).max()
    for i, seed in enumerate(SEEDS):
        fs0 = documented_tensor_init(init, seed)
        np.testing.assert_allclose(g["end_to_end"][i, 0], lf.tensor.end_to_end(fs0),
                                   rtol=1e-12, atol=1e-15)
        # The method that ran is `lnn_flow.tensor.flow` at the study's options: the
        # stored trajectory is the one a direct solve gives, to twice conftest's rule.
        direct = lf.tensor.flow(loss, fs0, TENSOR_FIXED["t1"], ts=TS,
                                rtol=TENSOR_FIXED["rtol"], atol=TENSOR_FIXED["atol"])
        steps = max(int(g["num_steps"][i]), int(direct.stats.num_steps))
        tol = 2 * trajectory_tolerance(steps, scale, TENSOR_FIXED["rtol"],
                                       TENSOR_FIXED["atol"])
        assert np.abs(g["end_to_end"][i] - np.asarray(direct.end_to_end)).max() <= tol
    # The stored tensor columns are what they say, from the stored factors.
    fs = tuple(g[f"factor_final_{n}"] for n in range(1, len(shape) + 1))
    np.testing.assert_allclose(jax.vmap(lf.tensor.end_to_end)(fs), g["end_to_end_final"],
                               rtol=1e-12, atol=1e-15)
    norms = jax.vmap(lf.tensor.component_norms)(fs)
    np.testing.assert_allclose(g["component_norms_final"], norms, rtol=1e-12)
    np.testing.assert_allclose(g["component_norms"][:, -1], norms, rtol=1e-12)
    carry = (norms >= 1e-2 * norms.max(axis=1, keepdims=True)).sum(axis=1)
    np.testing.assert_array_equal(g["effective_tensor_rank_final"], carry)
    error = np.linalg.norm((g["end_to_end_final"] - truth).reshape(len(SEEDS), -1),
                           axis=1) / np.linalg.norm(truth)
    np.testing.assert_allclose(g["relative_error_final"], error, rtol=1e-12)
    # The conservation law of the CP flow (Section 5; `lnn_flow.tensor`): per-component
    # ||a_r^n||^2 - ||a_r^n'||^2 constant, so the unbalancedness too, to the rule.
    start = g["unbalancedness_initial"]
    assert (start < 1e-12).all() if init == "balanced" else (start > 1e-2).all()
    np.testing.assert_allclose(g["unbalancedness_final"], start, rtol=0,
                               atol=trajectory_tolerance(g["num_steps"].max(), scale))


def test_tensor_summary_and_printed_table_carry_the_tensor_columns(run):
    g = run("tensor_completion", "tensor", "balanced")
    (row,) = lf.summarize([g])
    assert row["effective_tensor_rank_final"]["median"] >= 1
    assert len(row["component_norms_final"]["median"]) == TENSOR_FIXED["components"]
    from lnn_flow._sweeps._sweep import format_summary
    assert "tensor rank" in format_summary([row], [])


def test_solver_auto_in_a_sweep_records_its_implicit_steps(tmp_path):
    """`solver = "auto"` in a study: the groups keep how many accepted steps were
    implicit and how often each seed switched (here a short non-stiff flow: none)."""
    study = {"name": "auto", "problem": "matrix_sensing", "method": "factor",
             "seeds": SEEDS, "fixed": FIXED | {"solver": "auto"}}
    path = tmp_path / "auto.json"
    path.write_text(json.dumps(study))
    (g,) = lf.run_sweep(path, tmp_path / "out", progress=False)
    assert g["success"].all() and g.config["solver"] == "auto"
    np.testing.assert_array_equal(g["num_switches"], [0, 0])
    np.testing.assert_array_equal(g["num_implicit_steps"], [0, 0])
    plain = lf.run_sweep(_written(tmp_path, "factor"), tmp_path / "plain", progress=False)
    # "auto" steps with diffrax's I controller, Tsit5 alone with the PI default
    # (`_controller`): two solves of the same flow, each within its tolerance of it.
    steps = max(g["num_steps"].max(), plain[0]["num_steps"].max())
    scale = np.abs(plain[0]["end_to_end"]).max()
    tol = 2 * trajectory_tolerance(steps, scale, FIXED["rtol"], FIXED["atol"])
    np.testing.assert_allclose(g["end_to_end"], plain[0]["end_to_end"], rtol=0, atol=tol)


def _written(tmp_path, method):
    study = {"name": "plain", "problem": "matrix_sensing", "method": method,
             "seeds": SEEDS, "fixed": FIXED}
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(study))
    return path
