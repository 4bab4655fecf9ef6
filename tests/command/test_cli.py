"""The `lnn-flow` command: demo, run (built-in studies, study files, sweeps), errors."""

import json

import numpy as np
import pytest
from conftest import strict_json_tree

from lnn_flow._command._cli import main


def test_demo_prints_the_table_it_writes_and_the_flows_agree(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--dim", "4", "--num-measurements", "10", "--t1", "5",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # Every file written is strict JSON (no bare NaN: issue 26).
    rows = strict_json_tree(out)[out / "results.json"]["tables"]["demo"]
    assert [r["depth"] for r in rows] == [1, 2, 3] and all(r["success"] for r in rows)
    # The printed table is the written one: each depth's line shows its max gap and
    # drift as results.json holds them (format .1e), and "yes" for success.
    table = {int(line.split()[0]): line.split() for line in printed.splitlines()
             if line.strip()[:1].isdigit() and len(line.split()) >= 10}
    for r in rows:
        line = table[r["depth"]]
        assert line[3] == f"{r['max_gap']:.1e}" and line[5] == f"{r['unbalancedness_drift']:.1e}"
        assert line[-1] == "yes"
        # Theorem 1: the two flows are one trajectory, solved at rtol 1e-8, atol 1e-10:
        # they differ by at most the conftest rule 2 N (rtol |W| + atol). From a 1e-3
        # init |W| grows towards the fit, |W(t1)|_F <= |W*|_F (1 + rel. error), and
        # |W*|_F = sqrt(rank) = sqrt(2) (`low_rank_matrix`); a factor 2 of margin.
        steps = max(r["steps_factor"], r["steps_end_to_end"])
        size = 2 * np.sqrt(2) * (1 + r["relative_error_to_truth"])
        assert r["max_gap"] <= 2 * steps * (1e-8 * size + 1e-10)
    assert f"Report: {out}" in printed


def test_run_builtin_study_writes_report(tmp_path, capsys):
    out = tmp_path / "norms"
    code = main(["run", "norms", "--small", "--no-progress", "--out", str(out),
                 "--set", "depths=[3]", "--set", "t1=500"])
    assert code == 0
    assert "Report:" in capsys.readouterr().out
    data = strict_json_tree(out)[out / "results.json"]
    assert data["parameters"]["depths"] == [3] and data["parameters"]["t1"] == 500
    assert (out / "norm_vs_loss.png").exists() and (out / "norms.csv").exists()


def test_run_study_file(tmp_path):
    spec = tmp_path / "mine.toml"
    spec.write_text('study = "norms"\n[parameters]\ndepths = [3]\nt1 = 300.0\n')
    assert main(["run", str(spec), "--no-progress", "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "results.json").read_text())["parameters"]["t1"] == 300


def test_run_sweep_file(tmp_path):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({
        "name": "tiny", "problem": "matrix_sensing", "method": "factor", "seeds": 2,
        "fixed": {"d_in": 3, "d_out": 3, "rank": 1, "t1": 5.0, "num_saves": 3},
        "grid": {"depth": [2], "num_measurements": [6, 8]},
    }))
    assert main(["run", str(spec), "--no-progress", "--out", str(tmp_path / "s")]) == 0
    files = strict_json_tree(tmp_path / "s")  # results, summary, study record, groups
    assert len(files) >= 5
    rows = files[tmp_path / "s" / "results.json"]["tables"]["summary"]
    assert [r["num_measurements"] for r in rows] == [6, 8]
    assert all(r["seeds"] == 2 and r["failures"] == 0 for r in rows)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["run", "nonsense"], "unknown study 'nonsense'"),
        (["run", "greedy", "--set", "foo=1"], "has no parameter(s) ['foo']"),
        (["run", "greedy", "--set", "oops"], "expects key=value"),
    ],
)
def test_clear_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_study_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('study = "nope"\n')
    assert main(["run", str(bad)]) == 2
    assert "`study` must be one of" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("study = [\n")
    assert main(["run", str(broken)]) == 2
    assert "not a valid TOML file" in capsys.readouterr().err
