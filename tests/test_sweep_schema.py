"""Sweep studies as data (`lnn_flow._sweep_schema`): defaults, completion of each
configuration, and refusal of what cannot run, before any solve. The wider catalogue of
refused studies is in tests/test_sweep.py."""

import pytest

from lnn_flow._sweep_schema import PARAMETERS, Study, load_study, parse_study

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
        assert set(c) == set(PARAMETERS)
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
