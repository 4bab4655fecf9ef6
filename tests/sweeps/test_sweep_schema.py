"""Sweep studies as data (`lnn_flow._sweeps._sweep_schema`): defaults, completion of each
configuration, and refusal of what cannot run, before any solve. The wider catalogue of
refused studies is in tests/test_sweep.py."""

import pytest

from lnn_flow._sweeps._sweep_schema import (
    PARAMETERS,
    Study,
    load_study,
    parameters_of,
    parse_study,
)

RAW = {"name": "s", "seeds": 3, "fixed": {"d_in": 4, "d_out": 5},
       "grid": {"depth": [2, 3], "init_scale": [1e-3, 1e-2]}}


def test_configs_are_the_grid_product_with_defaults_and_derived_widths():
    study = parse_study(RAW)
    assert isinstance(study, Study) and study.seeds == (0, 1, 2)
    configs = study.configs()
    assert [(c["depth"], c["init_scale"]) for c in configs] == [
        (2, 1e-3), (2, 1e-2), (3, 1e-3), (3, 1e-2)
    ]
    for c in configs:
        # The matrix parameters only: a matrix study's configurations (and their
        # hashes, the group file names) are those from before tensor studies existed.
        assert set(c) == set(parameters_of("factor"))
        assert not {"shape", "components", "truth_norms", "rank_cutoff"} & set(c)
        assert c["hidden_width"] == [5] * (c["depth"] - 1)  # max(d_in, d_out)
        assert c["t1"] == PARAMETERS["t1"].default and c["d_in"] == 4


def test_ints_are_accepted_as_floats_and_seed_lists_kept():
    study = parse_study({**RAW, "seeds": [7, 3], "fixed": {"t1": 5, "d_in": 4}})
    assert study.seeds == (7, 3)
    assert study.fixed["t1"] == 5.0 and isinstance(study.fixed["t1"], float)


def test_as_dict_round_trips():
    study = parse_study(RAW)
    assert parse_study(study.as_dict()) == study


def test_completion_cannot_observe_more_entries_than_there_are():
    raw = {**RAW, "problem": "matrix_completion",
           "fixed": {"d_in": 3, "d_out": 3, "num_measurements": 10}}
    with pytest.raises(ValueError, match=r"exceeds d_in \* d_out = 9"):
        parse_study(raw)


def test_load_study_names_the_study_after_its_file(tmp_path):
    path = tmp_path / "deep_ones.toml"
    path.write_text('seeds = 1\n[grid]\ndepth = [2]\n')
    assert load_study(path).name == "deep_ones"
    with pytest.raises(ValueError, match=r"must end in \.toml or \.json"):
        load_study(tmp_path / "deep_ones.yaml")


TENSOR = {"name": "t", "method": "tensor", "seeds": 2,
          "fixed": {"shape": [4, 5, 6], "rank": 2, "truth_norms": [1.5, 0.75],
                    "num_measurements": 60},
          "grid": {"components": [3, 4]}}


def test_tensor_study_takes_the_tensor_parameters_and_completion_by_default():
    study = parse_study(TENSOR)
    assert study.problem == "tensor_completion"
    configs = study.configs()
    assert [c["components"] for c in configs] == [3, 4]
    for c in configs:
        assert set(c) == set(parameters_of("tensor")) and set(c) < set(PARAMETERS)
        assert not {"d_in", "d_out", "depth", "hidden_width", "lr", "steps"} & set(c)
        assert c["shape"] == [4, 5, 6] and c["truth_norms"] == [1.5, 0.75]
        assert c["rank_cutoff"] == PARAMETERS["rank_cutoff"].default
    assert parse_study(study.as_dict()) == study
    fixed = {k: v for k, v in TENSOR["fixed"].items() if k != "shape"}
    grid = parse_study({**TENSOR, "fixed": fixed,
                        "grid": {"shape": [[4, 4, 4], [3, 3, 3, 3]]}})
    assert [c["shape"] for c in grid.configs()] == [[4, 4, 4], [3, 3, 3, 3]]


@pytest.mark.parametrize("change,message", [
    ({"problem": "matrix_sensing"}, r"`problem` 'matrix_sensing' is not solved by "
                                    r"`method` 'tensor'"),
    ({"method": "factor", "problem": "tensor_sensing"},
     r"`problem` 'tensor_sensing' is not solved by `method` 'factor'"),
    ({"fixed": {"depth": 3}}, r"parameter `fixed.depth` is for the matrix methods"),
    ({"fixed": {"shape": [4]}}, r"`shape` must list the N >= 2 sizes"),
    ({"fixed": {"shape": 8}}, r"`fixed.shape` must be a list of ints; got 8"),
    ({"fixed": {"shape": [4, 0]}}, r"`fixed.shape\[1\]` must be > 0"),
    ({"fixed": {"shape": [2, 2], "rank": 3, "num_measurements": 4}},
     r"`rank` 3 exceeds prod\(shape\) / max\(shape\) = 2"),
    ({"fixed": {"rank": 3}},
     r"`truth_norms` lists 2 component norms but `rank` is 3"),
    ({"fixed": {"truth_norms": [1.0, -0.5]}}, r"`fixed.truth_norms\[1\]` must be > 0"),
    ({"fixed": {"shape": [3, 3], "num_measurements": 10}},
     r"`num_measurements` \(observed entries\) exceeds prod\(shape\) = 9"),
])
def test_tensor_study_refuses_what_cannot_run(change, message):
    fixed = {**TENSOR["fixed"], **change.pop("fixed", {})}
    raw = {**TENSOR, "grid": {}, "fixed": fixed, **change}
    with pytest.raises((TypeError, ValueError), match=message):
        parse_study(raw)


def test_matrix_study_refuses_tensor_parameters():
    with pytest.raises(ValueError, match=r"parameter `grid.components` is for the "
                                         r"tensor methods \['tensor'\], not method "
                                         r"'factor'"):
        parse_study({**RAW, "grid": {"components": [2]}})


def test_solver_names_rkc2_auto_or_an_adaptive_diffrax_solver():
    for name in ("RKC2", "auto", "Kvaerno5"):
        study = parse_study({**RAW, "fixed": {**RAW["fixed"], "solver": name}})
        assert study.configs()[0]["solver"] == name
    with pytest.raises(ValueError, match=r"must be 'auto', 'RKC2' or name an adaptive"):
        parse_study({**RAW, "fixed": {**RAW["fixed"], "solver": "Euler"}})
