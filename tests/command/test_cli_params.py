"""`lnn-flow run`'s parameters (`lnn_flow._command._cli_params`): values checked against the
study's type hints and ranges, and each error naming where the value came from. The
catalogue of messages through the command itself is in tests/test_cli_errors.py."""

import functools
from collections.abc import Sequence

import pytest

from lnn_flow import studies
from lnn_flow._command._cli import main
from lnn_flow._command._cli_params import (
    check_combination,
    check_parameters,
    conform,
    current_name,
    in_range,
    parse_assignments,
    study_spec,
)
from lnn_flow._core._deprecation import RenamedWarning
from lnn_flow._reports._report import Report


def test_assignments_are_json_values_or_bare_words():
    assert parse_assignments(["a=1", "b=[1, 2]", 'c="x"', "d=null", "e=independent"]) == {
        "a": 1, "b": [1, 2], "c": "x", "d": None, "e": "independent"
    }
    with pytest.raises(ValueError, match="expects key=value"):
        parse_assignments(["novalue"])
    with pytest.raises(ValueError, match=r"`--set a`: '1e-3x' is not a JSON value"):
        parse_assignments(["a=1e-3x"])


def test_conform_converts_ints_to_floats_and_follows_unions_and_lists():
    assert conform("w", 3, float) == 3.0 and isinstance(conform("w", 3, float), float)
    assert conform("w", None, int | None) is None and conform("w", 4, int | None) == 4
    assert conform("w", [1, 2], Sequence[float]) == [1.0, 2.0]
    with pytest.raises(TypeError, match=r"`w\[1\]` must be an integer; got 2\.5"):
        conform("w", [1, 2.5], Sequence[int])
    with pytest.raises(TypeError, match="`w` must be an integer or null; got True"):
        conform("w", True, int | None)


def test_ranges_are_checked_elementwise():
    in_range("x", "rank", 1)  # the boundary of an inclusive range
    in_range("x", "unknown_key", -5)  # keys without a range pass
    with pytest.raises(ValueError, match=r"`x\[1\]` must be >= 1; got 0"):
        in_range("x", "depths", [2, 0])
    with pytest.raises(ValueError, match=r"`x` must be > 0 and <= 1; got 0"):
        in_range("x", "fraction", 0)


def test_parameters_are_checked_against_the_studys_signature():
    assert check_parameters("greedy", {"t1": 10}, "--set") == {"t1": 10.0}
    with pytest.raises(ValueError, match=r"study 'greedy' has no parameter\(s\) \['x'\]"):
        check_parameters("greedy", {"x": 1}, "--set")
    with pytest.raises(ValueError, match=r"f\.toml: parameters\.size` must be >= 1"):
        check_parameters("greedy", {"size": 0}, "f.toml")


def test_combinations_name_each_values_source():
    check_combination("greedy", {"size": 5, "rank": 5}, {})
    with pytest.raises(ValueError, match=r"`--set rank` = 6 must be <= `size` = 5"):
        check_combination("greedy", {"size": 5, "rank": 6}, {"rank": "--set rank"})


def test_study_spec_reads_builtin_names_study_files_and_sweep_files(tmp_path):
    assert study_spec("norms") == ("norms", {})
    spec = tmp_path / "mine.toml"
    spec.write_text('study = "greedy"\n[parameters]\nsize = 8\n')
    assert study_spec(str(spec)) == ("greedy", {"size": 8})
    sweep = tmp_path / "grid.json"
    sweep.write_text('{"grid": {"depth": [2]}}')
    assert study_spec(str(sweep)) == ("sweep", {"path": str(sweep)})
    with pytest.raises(ValueError, match=r"unknown study 'nope'"):
        study_spec("nope")
    spec.write_text('study = "greedy"\nextra = 1\n')
    with pytest.raises(ValueError, match=r"unknown keys \['extra'\]"):
        study_spec(str(spec))


# --- renamed parameters: old names work for one release, with a warning --------------


def test_old_parameter_names_are_checked_and_returned_under_the_new_ones():
    assert current_name("completion", "counts") == "num_measurements"
    assert current_name("greedy", "measurements") == "num_measurements"
    assert current_name("greedy", "size") == "size"
    with pytest.warns(RenamedWarning, match=r"`--set counts` is deprecated .* use "
                                            r"`--set num_measurements`"):
        assert check_parameters("completion", {"counts": [10, 20]}, "--set") == {
            "num_measurements": [10, 20]
        }
    with pytest.warns(RenamedWarning, match=r"`f\.toml: parameters\.measurements` is "
                                            r"deprecated"):
        assert check_parameters("greedy", {"measurements": 8}, "f.toml") == {
            "num_measurements": 8
        }
    # Errors still name what the user typed.
    with pytest.warns(RenamedWarning), pytest.raises(
            ValueError, match=r"`--set counts\[1\]` must be >= 1; got 0"):
        check_parameters("completion", {"counts": [5, 0]}, "--set")
    with pytest.raises(ValueError, match=r"`--set counts` and `--set num_measurements` "
                                         r"are the same parameter"):
        check_parameters("completion", {"counts": [5], "num_measurements": [5]}, "--set")
    # The old names are not advertised.
    with pytest.raises(ValueError, match=r"it takes \['depths', 'init', 'loss_reduction', "
                                         r"'loss_reductions', 'num_measurements', 'rank'"):
        check_parameters("completion", {"x": 1}, "--set")
    # The completion study's second part: its lists are range-checked per entry.
    with pytest.raises(ValueError, match=r"`--set loss_reductions\[1\]` must be > 0 "
                                         r"and <= 1; got 0"):
        check_parameters("completion", {"loss_reductions": [1e-6, 0]}, "--set")


def test_the_combination_check_uses_the_new_name():
    small = {"size": 3, "rank": 1}
    check_combination("completion", {**small, "num_measurements": [9]}, {})
    with pytest.raises(ValueError, match=r"`--set counts` = 10 observed entries exceed "
                                         r"`size`\^2 = 9"):
        check_combination("completion", {**small, "num_measurements": [10]},
                          {"num_measurements": "--set counts"})


@pytest.fixture
def stand_in(monkeypatch):
    """The completion study replaced by one that records its arguments."""
    calls = []

    def study(**kwargs):
        calls.append(kwargs)
        return Report(name="completion", title="t", description="d",
                      tables={"t": [{"a": 1}]}, figures={}, parameters={})

    monkeypatch.setitem(studies.STUDIES, "completion",
                        functools.wraps(studies.completion_study)(study))
    return calls


@pytest.mark.parametrize("key", ["counts", "num_measurements"])
def test_run_set_takes_the_old_and_the_new_name(key, stand_in, tmp_path, capsys):
    argv = ["run", "completion", "--no-progress", "--out", str(tmp_path / "out"),
            "--set", f"{key}=[40,50]"]
    assert main(argv) == 0
    assert stand_in[0] == {"num_measurements": [40, 50], "progress": False}
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    if key == "counts":
        assert warned == [
            "lnn-flow: warning: `--set counts` is deprecated and will be removed in the "
            "next release; use `--set num_measurements`"
        ]
    else:
        assert warned == []


def test_run_reads_old_names_in_study_files(stand_in, tmp_path, capsys):
    spec = tmp_path / "mine.toml"
    spec.write_text('study = "completion"\n[parameters]\ncounts = [30]\nsize = 6\n')
    assert main(["run", str(spec), "--no-progress", "--out", str(tmp_path / "o")]) == 0
    assert stand_in[0] == {"num_measurements": [30], "size": 6, "progress": False}
    assert "parameters.counts` is deprecated" in capsys.readouterr().err
