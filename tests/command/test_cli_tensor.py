"""`lnn-flow run tensor`: the Section 5 study from the command line (`--small`), and
its parameter errors, refused before any solve."""

import json

import pytest

from lnn_flow import studies
from lnn_flow._command._cli import main


@pytest.mark.slow  # the study itself runs in tests/test_study_tensor.py; this adds the CLI
def test_run_tensor_small_writes_the_report(tmp_path, capsys):
    out = tmp_path / "tensor"
    assert main(["run", "tensor", "--small", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Report:" in printed and "| observed | scale |" in printed
    data = json.loads((out / "results.json").read_text())
    assert data["study"] == "tensor"
    small = studies.SMALL["tensor"]
    assert data["parameters"]["num_measurements"] == list(small["num_measurements"])
    assert data["parameters"]["seeds"] == small["seeds"]
    assert set(data["tables"]) == {"components", "recovery", "init_scale", "matrix_view"}
    for name in ("component_norms", "init_scale", "matrix_view"):
        assert (out / f"{name}.png").exists()
    for name in data["tables"]:
        assert (out / f"{name}.csv").read_text().count("\n") == len(data["tables"][name]) + 1
    # A preset shows the effect in rows that finish (issue 26: the 60-entry rows of
    # the old preset finished none of their seeds).
    for name in ("init_scale", "matrix_view"):
        assert all(row["finished"] >= 1 for row in data["tables"][name]), name
    assert "Tensor factorization" in (out / "summary.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--set", "orders=[3,4]"], "`--set orders` = [3, 4] and `--small's sizes` = [6] "
                                "must pair up"),
    (["--set", "num_measurements=[300]"], "observed entries exceed the 216 entries"),
    (["--set", "cutoff=2"], "`--set cutoff` must be > 0 and <= 1; got 2"),
    (["--set", "scales=[0.001,0]"], "`--set scales[1]` must be > 0; got 0"),
    (["--set", "orders=[1]", "--set", "sizes=[4]"], "`--set orders[0]` must be >= 2"),
])
def test_parameter_errors_name_the_flag(tmp_path, capsys, argv, message):
    code = main(["run", "tensor", "--small", "--no-progress", "--out", str(tmp_path), *argv])
    assert code == 2
    assert message in capsys.readouterr().err
