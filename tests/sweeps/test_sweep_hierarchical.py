"""Sweeps of the hierarchical tensor factorization (`method = "hierarchical"`,
`lnn_flow.hierarchical`): a group is the direct `lf.hierarchical.flow` solve of every
seed on the documented problem and init draws, with the configuration's tree, output
layer and widths; its stored arrays are what they say; its summary has the hierarchical
columns; bad parameters are refused naming them, before any solve; the shipped example
runs, every group finishing.

Two groups cover both tensor problems, both inits, the default and a given tree, both
`output`s and both forms of `widths` (3x3x3x3 tensors, two seeds each, init norm 1 per
weight matrix at t1 = 4: no saddle to escape, conftest's rule holds).
"""

import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import trajectory_tolerance

import lnn_flow as lf
from lnn_flow._sweeps._sweep import (
    INITS,
    PROBLEMS,
    effective_rank,
    format_summary,
    parse_study,
)
from lnn_flow._sweeps._sweep_schema import PARAMETERS, parameters_of
from lnn_flow._sweeps._sweep_summary import report_rows

ht = lf.hierarchical
ROOT = Path(__file__).resolve().parents[2]
SEEDS = [0, 1]
TS = [0.0, 2.0, 4.0]
SHAPE = (3, 3, 3, 3)
FIXED = {"shape": list(SHAPE), "rank": 1, "num_measurements": 30, "init_scale": 1.0,
         "t1": 4.0, "num_saves": 3, "rtol": 1e-10, "atol": 1e-12}
# name -> (problem, init, the study's own parameters, the tree and widths it means)
CASES = {
    "binary": ("tensor_completion", "balanced", {"widths": 2},
               ((0, 1), (2, 3)), [2, 2], True),
    "given": ("tensor_sensing", "gaussian",
              {"tree": [[0, 1, 2], 3], "widths": [2, 3], "output": False},
              ((0, 1, 2), 3), [2, 3], False),
}


def test_the_cases_cover_the_problems_inits_and_options():
    assert {c[0] for c in CASES.values()} == {p for p in PROBLEMS if p.startswith("tensor")}
    assert {c[1] for c in CASES.values()} == set(INITS)
    assert {c[5] for c in CASES.values()} == {True, False}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`run(case)`: the one group of that tiny study (cached per module)."""
    root = tmp_path_factory.mktemp("sweep_hierarchical")
    cache = {}

    def one(case):
        if case not in cache:
            problem, init, own, *_ = CASES[case]
            study = {"name": case, "problem": problem, "method": "hierarchical",
                     "seeds": SEEDS, "fixed": FIXED | own | {"init": init}}
            path = root / f"{case}.json"
            path.write_text(json.dumps(study))
            (group,) = lf.run_sweep(path, root / case, progress=False)
            cache[case] = group
        return cache[case]

    return one


def documented_problem(problem):
    make = {"tensor_sensing": lf.problems.random_tensor_sensing,
            "tensor_completion": lf.problems.random_tensor_completion}[problem]
    return make(jax.random.fold_in(jax.random.PRNGKey(0), 0), SHAPE, FIXED["rank"],
                FIXED["num_measurements"])


def documented_init(case, seed):
    _, init, _, tree, widths, output = CASES[case]
    draw = {"balanced": ht.balanced, "gaussian": ht.gaussian}[init]
    return draw(jax.random.fold_in(jax.random.PRNGKey(seed), 1), SHAPE, widths,
                FIXED["init_scale"], tree=tree, output=output)


@pytest.mark.parametrize("case", CASES)
def test_group_is_the_direct_hierarchical_flow_of_the_documented_draws(run, case):
    problem, init, _, tree, widths, output = CASES[case]
    g = run(case)
    assert g.meta["study"]["method"] == "hierarchical"
    assert g.config["tree"] == json.loads(json.dumps(tree))  # written out, as lists
    assert g.config["widths"] == widths and g.config["output"] is output
    assert g["success"].all() and g["reached"].all() and g["finite"].all()
    np.testing.assert_allclose(g["ts"], TS, rtol=1e-12)
    assert g["end_to_end"].shape == (len(SEEDS), len(TS), *SHAPE)
    assert (np.diff(g["loss"], axis=1) < 0).all()  # it learns
    loss, truth = documented_problem(problem)
    np.testing.assert_array_equal(g["truth"], truth)
    scale = np.abs(g["end_to_end"]).max()
    for i, seed in enumerate(SEEDS):
        ws0 = documented_init(case, seed)
        np.testing.assert_allclose(g["end_to_end"][i, 0], ht.end_to_end(ws0, tree, output),
                                   rtol=1e-12, atol=1e-15)
        # The method that ran is `lf.hierarchical.flow` on this tree, output layer and
        # the study's options: the direct solve's trajectory, to twice conftest's rule.
        direct = ht.flow(loss, ws0, FIXED["t1"], ts=TS, tree=tree, output=output,
                         rtol=FIXED["rtol"], atol=FIXED["atol"])
        assert direct.success
        steps = max(int(g["num_steps"][i]), int(direct.stats.num_steps))
        tol = 2 * trajectory_tolerance(steps, scale, FIXED["rtol"], FIXED["atol"])
        assert np.abs(g["end_to_end"][i] - np.asarray(direct.end_to_end)).max() <= tol
        np.testing.assert_allclose(g["loss"][i], direct.loss, rtol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_stored_hierarchical_arrays_are_what_they_say(run, case):
    _, init, _, tree, widths, output = CASES[case]
    g = run(case)
    ws = tuple(g[f"factor_final_{j}"] for j in range(1, len(ht.nodes(tree, output)) + 1))
    assert f"factor_final_{len(ws) + 1}" not in g.arrays
    product = jax.vmap(lambda w: ht.end_to_end(w, tree, output))(ws)
    np.testing.assert_allclose(product, g["end_to_end_final"], rtol=1e-12, atol=1e-15)
    internal = [n for n in ht.nodes(tree) if not isinstance(n, int)]
    # Local component norms: per internal node (pre-order), concatenated, labelled.
    per_seed = [ht.local_component_norms(tuple(w[i] for w in ws), tree, output)
                for i in range(len(SEEDS))]
    expected = np.stack([np.concatenate(p) for p in per_seed])
    np.testing.assert_allclose(g["local_component_norms_final"], expected, rtol=1e-12)
    np.testing.assert_allclose(g["local_component_norms"][:, -1], expected, rtol=1e-12)
    assert g["local_component_norms"].shape == (len(SEEDS), len(TS), expected.shape[1])
    node = g["local_component_node"]
    assert node.tolist() == [i for i, p in enumerate(per_seed[0]) for _ in range(p.size)]
    assert g["local_rank_final"].shape == (len(SEEDS), len(internal))
    for i, norms in enumerate(per_seed):
        carry = [int(np.sum(n >= 1e-2 * n.max())) for n in map(np.asarray, norms)]
        assert g["local_rank_final"][i].tolist() == carry
    # Matricizations of the non-root nodes: singular values and effective ranks.
    spectra = [ht.matricization_singular_values(W, tree) for W in g["end_to_end_final"]]
    np.testing.assert_allclose(g["matricization_singular_values_final"],
                               [np.concatenate(s) for s in spectra], rtol=1e-10,
                               atol=1e-14)
    where = g["matricization_node"]
    assert where.tolist() == [k for k, s in enumerate(spectra[0]) for _ in range(s.size)]
    ranks = [[effective_rank(np.asarray(x)) for x in s] for s in spectra]
    np.testing.assert_allclose(g["matricization_effective_rank_final"], ranks, rtol=1e-8)
    assert g["matricization_effective_rank_final"].shape == (len(SEEDS),
                                                             len(ht.nodes(tree)) - 1)
    # The conserved quantities: zero from a balanced init, not from a Gaussian one,
    # constant along the flow to the solve's tolerance.
    ws0 = [documented_init(case, s) for s in SEEDS]
    start = [float(jnp.abs(ht.unbalancedness(w, tree, output)).max()) for w in ws0]
    np.testing.assert_allclose(g["unbalancedness_initial"], start, rtol=1e-12, atol=1e-15)
    assert (g["unbalancedness_initial"] < 1e-10).all() if init == "balanced" else (
        g["unbalancedness_initial"] > 1e-2).all()
    scale = np.abs(g["end_to_end"]).max()
    drift = np.abs(g["unbalancedness_final"] - g["unbalancedness_initial"]).max()
    assert drift <= 10 * trajectory_tolerance(g["num_steps"].max(), max(scale, 1.0))


def test_summary_and_printed_table_carry_the_hierarchical_columns(run):
    groups = [run(case) for case in CASES]
    rows = lf.summarize(groups)
    for row, case in zip(rows, CASES):
        tree, output = CASES[case][3], CASES[case][5]
        internal = [n for n in ht.nodes(tree) if not isinstance(n, int)]
        assert row["finished"] == len(SEEDS)
        assert len(row["local_rank_final"]["median"]) == len(internal)
        assert len(row["matricization_effective_rank_final"]["median"]) == len(
            ht.nodes(tree)) - 1
        norms = row["local_component_norms_final"]["median"]
        assert len(norms) == len(internal)
        assert all(list(n) == sorted(n, reverse=True) for n in norms)
        assert np.isfinite(row["loss_final"]["median"])
    json.dumps(rows)  # plain lists, writable as summary.json
    text = format_summary(rows, ["tree"])
    for column in ("local ranks med", "matricization eff ranks med", "local norms med"):
        assert column in text
    assert "|" in text.splitlines()[1]  # nodes separated
    flat = report_rows(rows, ["tree"])
    assert len(flat[0]["local_rank_final_median"]) == 3


# ------------------------------------------------------------------ refused studies

STUDY = {"name": "h", "method": "hierarchical", "seeds": 2,
         "fixed": {"shape": [3, 3, 3, 3], "rank": 1, "num_measurements": 30}}


def test_configs_take_the_hierarchical_parameters_with_defaults_written_out(tmp_path):
    study = parse_study(STUDY)
    assert study.problem == "tensor_completion"
    (config,) = study.configs()
    assert set(config) == set(parameters_of("hierarchical"))
    assert not {"components", "d_in", "depth", "hidden_width"} & set(config)
    assert config["tree"] == [[0, 1], [2, 3]]  # the binary tree over the modes
    assert config["widths"] == [PARAMETERS["widths"].default] * 2  # one per depth
    assert config["output"] is True and config["init"] == "balanced"
    # A tensor study's configurations keep their keys (and so their group names).
    tensor = parse_study({**STUDY, "method": "tensor", "fixed": {**STUDY["fixed"]}})
    assert not {"widths", "tree", "output"} & set(tensor.configs()[0])
    # Trees in TOML: nested arrays, read as nested lists, and a grid of them.
    path = tmp_path / "trees.toml"
    path.write_text('method = "hierarchical"\nseeds = 1\n[fixed]\nshape = [2, 2, 2]\n'
                    'rank = 1\nnum_measurements = 4\nwidths = [2, 3]\n[grid]\n'
                    'tree = [[[0, 1], 2], [0, [1, 2]]]\n')
    configs = lf.load_study(path).configs()
    assert [c["tree"] for c in configs] == [[[0, 1], 2], [0, [1, 2]]]
    assert parse_study(lf.load_study(path).as_dict()) == lf.load_study(path)


@pytest.mark.parametrize("change,error,message", [
    ({"widths": 0}, ValueError, r"`fixed.widths` must be > 0"),
    ({"widths": [2, 0]}, ValueError, r"`fixed.widths\[1\]` must be > 0"),
    ({"widths": 2.5}, TypeError, r"`fixed.widths` must be int"),
    ({"widths": [2, 2, 2]}, ValueError,
     r"`widths` lists 3 widths but the tree \[\[0, 1\], \[2, 3\]\] has internal nodes "
     r"at 2 depth"),
    ({"tree": [0, 1, 2, 3], "widths": [2, 2]}, ValueError,
     r"`widths` lists 2 widths but the tree \[0, 1, 2, 3\] has internal nodes at 1"),
    ({"tree": [[0, 1], 2]}, ValueError,
     r"`tree` must cover the modes 0..3 of `shape` \[3, 3, 3, 3\]"),
    ({"tree": [[0, 1], [2, 2]]}, ValueError, r"`fixed.tree` must cover the modes"),
    ({"tree": [[0], [1, 2, 3]]}, ValueError,
     r"`fixed.tree`: every internal node needs at least two children"),
    ({"tree": [[0, 1.0], [2, 3]]}, TypeError, r"`fixed.tree` must be nested tuples"),
    ({"tree": [[0, True], [2, 3]]}, TypeError, r"`fixed.tree` must be nested tuples"),
    ({"tree": 3}, TypeError, r"`fixed.tree` must be a list"),
    ({"output": 1}, TypeError, r"`fixed.output` must be bool"),
    ({"init": "orthogonal"}, ValueError, r"`init` must be one of"),
    ({"init_scale": -1.0}, ValueError, r"`fixed.init_scale` must be > 0"),
    ({"rank_cutoff": 0.0}, ValueError, r"`fixed.rank_cutoff` must be > 0"),
    ({"components": 3}, ValueError,
     r"parameter `fixed.components` is for the tensor methods \['tensor'\], not "
     r"method 'hierarchical'"),
    ({"depth": 3}, ValueError, r"parameter `fixed.depth` is for the matrix methods"),
    ({"num_measurements": 100}, ValueError,
     r"`num_measurements` \(observed entries\) exceeds prod\(shape\) = 81"),
])
def test_bad_parameters_are_refused_naming_them(change, error, message):
    with pytest.raises(error, match=message):
        parse_study({**STUDY, "fixed": {**STUDY["fixed"], **change}})


def test_refusals_of_the_study_as_a_whole():
    with pytest.raises(ValueError, match=r"`problem` 'matrix_sensing' is not solved by "
                                         r"`method` 'hierarchical'"):
        parse_study({**STUDY, "problem": "matrix_sensing"})
    with pytest.raises(ValueError, match=r"parameter `fixed.widths` is for the tensor "
                                         r"methods \['hierarchical'\], not method "
                                         r"'tensor'"):
        parse_study({**STUDY, "method": "tensor",
                     "fixed": {**STUDY["fixed"], "widths": 2}})
    with pytest.raises(ValueError, match=r"`grid.tree\[1\]` must cover the modes"):
        parse_study({**STUDY, "grid": {"tree": [[[0, 1], [2, 3]], [[0, 1], [1, 3]]]}})
    with pytest.raises(ValueError, match=r"`grid.tree` repeats a value"):
        parse_study({**STUDY, "grid": {"tree": [[[0, 1], [2, 3]], [[0, 1], [2, 3]]]}})


def test_a_refused_study_writes_nothing(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**STUDY, "fixed": {**STUDY["fixed"], "tree": [[0, 1], 2]}}))
    with pytest.raises(ValueError, match=r"`tree` must cover"):
        lf.run_sweep(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ----------------------------------------------------------------- the shipped example

def test_the_example_study_runs_and_every_group_finishes(tmp_path):
    """studies/hierarchical_sweep.toml: every seed of every group stops at the loss
    threshold with a trajectory of more than one save; from the small inits the median
    seed ends with one local component carrying the solution at every node, fewer in
    all than from the large ones."""
    study = lf.load_study(ROOT / "studies" / "hierarchical_sweep.toml")
    assert study.method == "hierarchical"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no short trajectories
        groups = lf.run_sweep(study, tmp_path / "groups", progress=False)
    assert len(groups) == len(study.configs())
    small, large = min(study.grid["init_scale"]), max(study.grid["init_scale"])
    ranks = {}
    for g in groups:
        assert g["success"].all() and g["stopped"].all(), g.meta["messages"]
        assert (g["reached"].sum(axis=1) >= 2).all()
        ranks[g.config["init"], g.config["init_scale"]] = g["local_rank_final"]
    for init in study.grid["init"]:  # the implicit bias the example shows
        assert (np.median(ranks[init, small], axis=0) == 1).all()
        assert ranks[init, small].sum() < ranks[init, large].sum()
    rows = lf.summarize(groups)
    assert all(row["finished"] == len(study.seeds) for row in rows)
    assert json.loads((tmp_path / "groups" / "summary.json").read_text())
