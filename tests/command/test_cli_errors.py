"""CLI errors (issue 11): every mistake a user can make at the `lnn-flow` command is one
line on stderr naming what they typed (flag, `--set` key, file), exit status 2, before
any study is computed; a finished study is never lost to a write error; Ctrl-C exits
130 with one line (and, for a sweep, the command that resumes it).

Each error case is one line of data: (argv, stderr regex). `{dir}` is a fresh folder,
`{file}` an existing plain file, `{sweep}` a valid sweep file, `{bad:NAME}` a file
from `FILES`."""

import functools
import json
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import strict_json

import lnn_flow as lf
from lnn_flow._sweeps import _sweep
from lnn_flow import studies
from lnn_flow._command._cli import main
from lnn_flow._reports._report import Report

SWEEP = {
    "name": "tiny", "problem": "matrix_sensing", "method": "factor", "seeds": 2,
    "fixed": {"d_in": 3, "d_out": 3, "rank": 1, "t1": 2.0, "num_saves": 3},
    "grid": {"depth": [2]},
}

FILES = {
    "broken.toml": "study = [\n",
    "sweep_syntax.toml": "name = 'x'\n[grid]\ndepth = [2, \n",
    "sweep_type.toml": "seeds = 'many'\n[grid]\ndepth = [2]\n",
    "sweep_key.toml": "[fixed]\nfoo = 1\n[grid]\ndepth = [2]\n",
    "params_type.toml": "study = 'completion'\n[parameters]\nsize = 'ten'\n",
    "params_table.toml": "study = 'completion'\nparameters = 3\n",
    "params_unknown.toml": "study = 'greedy'\n[parameters]\nsizes = 3\n",
    "list.json": "[1, 2]",
}

# (argv, regex on stderr): each must exit 2 with one line, before computing anything.
CASES = [
    # --set: values are JSON, keys are the study's, types and ranges its own
    (["run", "completion", "--set", "depths=[1,3"],
     r"`--set depths`: '\[1,3' is not a JSON value \(Expecting ',' delimiter"),
    (["run", "completion", "--set", 'size="ten"'],
     r"`--set size` must be an integer; got 'ten'"),
    (["run", "completion", "--set", "size=ten"], r"`--set size` must be an integer; got 'ten'"),
    (["run", "completion", "--set", "size=1e"], r"`--set size`: '1e' is not a JSON"),
    (["run", "completion", "--set", "size=-3"], r"`--set size` must be >= 1; got -3"),
    (["run", "completion", "--set", "size=2.5"], r"`--set size` must be an integer"),
    (["run", "completion", "--set", "foo=1"],
     r"`--set foo`: study 'completion' has no parameter\(s\) \['foo'\]; it takes "
     r"\['depths', 'init', 'loss_reduction', 'loss_reductions', 'num_measurements', "
     r"'rank', 'scale', 'scales', 'seed', 'seeds', 'size', 'solver', 'tail_depths', "
     r"'tail_num_measurements'\]"),
    (["run", "greedy", "--set", "oops"], r"`--set` expects key=value; got 'oops'"),
    (["run", "greedy", "--set", "=3"], r"`--set` expects key=value"),
    (["run", "greedy", "--set", "rank=30"], r"`--set rank` = 30 must be <= `size` = 20"),
    (["run", "greedy", "--set", "scale=0"], r"`--set scale` must be > 0; got 0\.0"),
    (["run", "greedy", "--set", "fraction=1.5"],
     r"`--set fraction` must be > 0 and <= 1; got 1\.5"),
    (["run", "greedy", "--set", "measurements=true"],
     r"`--set measurements` must be an integer or null; got True"),
    (["run", "norms", "--set", "t1=NaN"], r"`--set t1` must be finite; got nan"),
    (["run", "norms", "--set", "depths=[2.5]"],
     r"`--set depths\[0\]` must be an integer; got 2\.5"),
    (["run", "norms", "--set", "depths=3"], r"`--set depths` must be a list of"),
    (["run", "norms", "--set", "W0=[[1,2],[3]]"], r"`--set W0` must be a 2x2 matrix"),
    (["run", "completion", "--set", "counts=[20000]"],
     r"`--set counts` = 20000 observed entries exceed `size`\^2 = 10000"),
    (["run", "completion", "--small", "--set", "size=10"],
     r"`--small's num_measurements` = 150 observed entries exceed `--set size`\^2 = 100"),
    (["run", "completion", "--set", "loss_reduction=0"],
     r"`--set loss_reduction` must be > 0 and <= 1"),
    # study names and files
    (["run", "nonsense"], r"unknown study 'nonsense': give one of"),
    (["run", "missing.toml"], r"study file missing\.toml not found"),
    (["run", "{dir}"], r"study file .* is not a file"),
    (["run", "{bad:broken.toml}"], r"broken\.toml: not a valid TOML file"),
    (["run", "{bad:params_type.toml}"],
     r"params_type\.toml: parameters\.size` must be an integer; got 'ten'"),
    (["run", "{bad:params_table.toml}"], r"params_table\.toml: `parameters` must be a"),
    (["run", "{bad:params_unknown.toml}"],
     r"params_unknown\.toml: study 'greedy' has no parameter\(s\) \['sizes'\]"),
    (["run", "{bad:list.json}"], r"list\.json: a study file must hold a table"),
    (["run", "{sweep}", "--small"], r"`--small` applies to the built-in studies"),
    (["run", "{sweep}", "--set", "depth=3"], r"`--set` applies to the built-in studies"),
    (["sweep", "missing.toml"], r"study file missing\.toml not found"),
    (["sweep", "study.yaml"], r"study file study\.yaml must end in \.toml or \.json"),
    (["sweep", "{bad:sweep_syntax.toml}"], r"sweep_syntax\.toml is not valid toml"),
    (["sweep", "{bad:sweep_type.toml}"], r"`seeds` must be a count .* got 'many'"),
    (["sweep", "{bad:sweep_key.toml}"], r"unknown parameter `fixed\.foo`"),
    # --out: checked before computing
    (["run", "greedy", "--out", "{file}"], r"`--out` .*plain\.txt exists and is not a"),
    (["run", "greedy", "--out", "{file}/sub"],
     r"`--out` .*plain\.txt/sub cannot be created or written"),
    (["run", "{sweep}", "--out", "{file}"], r"`--out` .*plain\.txt exists and is not a"),
    (["sweep", "{sweep}", "--out", "{file}"], r"`--out` .*plain\.txt exists and is not"),
    (["demo", "--out", "{file}"], r"`--out` .*plain\.txt exists and is not a folder"),
    # demo flags
    (["demo", "--rank", "30"], r"`--rank` must be <= `--dim` = 20; got 30"),
    (["demo", "--dim", "0"], r"`--dim` must be >= 1; got 0"),
    (["demo", "--num-measurements", "0"], r"`--num-measurements` must be >= 1; got 0"),
    # The old spelling of the flag is read as the new one.
    (["demo", "--measurements", "0"], r"`--num-measurements` must be >= 1; got 0"),
    (["demo", "--scale", "-1"], r"`--scale` must be a finite number > 0; got -1\.0"),
    (["demo", "--t1", "inf"], r"`--t1` must be a finite number > 0; got inf"),
    (["demo", "--depths", "2", "0"], r"`--depths` must all be >= 1; got \[2, 0\]"),
    (["demo", "--seed", "-1"], r"`--seed` must be >= 0; got -1"),
]


@pytest.fixture
def nothing_computed(monkeypatch):
    """Every study, sweep group and demo fails the test if it is reached."""

    def refuse(*args, **kwargs):
        raise AssertionError("computed before the arguments were checked")

    for name, study in list(studies.STUDIES.items()):
        wrapper = _wraps(study, refuse)
        monkeypatch.setitem(studies.STUDIES, name, wrapper)
    monkeypatch.setattr(_sweep, "solve_group", refuse)
    monkeypatch.setattr("lnn_flow._studies._demo.demo_report", refuse)


def _wraps(study, body):
    """A new function running `body`, with `study`'s signature (which the CLI checks)."""

    def stand_in(*args, **kwargs):
        return body(*args, **kwargs)

    return functools.wraps(study)(stand_in)


def _fill(argv, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("not a folder")
    sweep = tmp_path / "tiny.json"
    sweep.write_text(json.dumps(SWEEP))
    out = []
    for arg in argv:
        arg = arg.replace("{dir}", str(tmp_path)).replace("{file}", str(plain))
        arg = arg.replace("{sweep}", str(sweep))
        if arg.startswith("{bad:"):
            name = arg[len("{bad:"):-1]
            (tmp_path / name).write_text(FILES[name])
            arg = str(tmp_path / name)
        out.append(arg)
    return out


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_error_names_what_the_user_typed(argv, message, tmp_path, capsys,
                                         nothing_computed, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative names (missing.toml) resolve here
    assert main(_fill(argv, tmp_path)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err  # one line, no traceback
    assert lines[0].startswith("lnn-flow: error: ")
    assert re.search(message, lines[0]), lines[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"lnn-flow {lf.__version__}"


# ------------------------------------------------------------------ write failures


def _report():
    return Report(name="norms", title="t", description="d", tables={"t": [{"a": 1}]},
                  figures={}, parameters={})


def test_finished_study_survives_a_write_error(tmp_path, capsys, monkeypatch):
    """The output folder passes the check, then turns into a file while the study
    runs (a full or changed disk): the report goes to a temporary folder instead."""
    out = tmp_path / "out"

    def study(**kwargs):
        out.rmdir()
        out.write_text("now a file")
        return _report()

    monkeypatch.setitem(studies.STUDIES, "norms",
                        _wraps(studies.norms_study, study))
    assert main(["run", "norms", "--no-progress", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    where = re.search(r"the finished study was written to (\S+) instead", err)
    assert where, err
    assert (pathlib.Path(where[1]) / "summary.md").is_file()
    assert (pathlib.Path(where[1]) / "t.csv").read_text().splitlines() == [
        "a", "1"]


# ---------------------------------------------------------------------- Ctrl-C


# (argv, where KeyboardInterrupt is raised, regex on the one line of stderr)
INTERRUPTS = [
    (["run", "norms", "--no-progress", "--out", "{dir}/r"], "study",
     r"^lnn-flow: interrupted before the study finished; no report was written$"),
    (["demo", "--out", "{dir}/d"], "demo",
     r"^lnn-flow: interrupted before the study finished"),
    (["sweep", "{sweep}", "--no-progress", "--out", "{dir}/s"], "group",
     r"^lnn-flow: interrupted; finished groups are saved in .*/s; resume with: "
     r"lnn-flow sweep .*tiny\.json --out .*/s$"),
    (["run", "{sweep}", "--no-progress", "--out", "{dir}/r"], "group",
     r"^lnn-flow: interrupted; finished groups are saved in .*/r/groups; resume with: "
     r"lnn-flow run .*tiny\.json --out .*/r$"),
]


@pytest.mark.parametrize("argv, where, message", INTERRUPTS,
                         ids=[c[0][0] + "-" + c[1] for c in INTERRUPTS])
def test_ctrl_c_exits_130_with_one_line(argv, where, message, tmp_path, capsys,
                                        monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "study":
        monkeypatch.setitem(studies.STUDIES, "norms",
                            _wraps(studies.norms_study, interrupt))
    elif where == "demo":
        monkeypatch.setattr("lnn_flow._studies._demo.demo_report", interrupt)
    else:
        monkeypatch.setattr(_sweep, "solve_group", interrupt)
    assert main(_fill(argv, tmp_path)) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    if where in ("study", "demo"):  # no empty report folder left behind (issue 26)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt", "tiny.json"]


def _interrupting(solve, call: int):
    """`solve`, raising KeyboardInterrupt (Ctrl-C) at its `call`-th call instead."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return solve(*args, **kwargs)

    return wrapped


def test_ctrl_c_during_the_completion_study_keeps_what_finished(tmp_path, capsys,
                                                                 monkeypatch):
    """Issue 26: Ctrl-C on `lnn-flow run` lost everything. The completion study (the
    papers' long one) keeps the solutions that finished: a partial report, said so at
    its top and in results.json, exit status 130."""
    from lnn_flow._studies import _study_completion

    monkeypatch.setattr(_study_completion, "_solve",
                        _interrupting(_study_completion._solve, call=3))
    out = tmp_path / "c"
    assert main(["run", "completion", "--small", "--no-progress", "--out", str(out)]) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "lnn-flow: interrupted; partial report (interrupted (Ctrl-C) after 2 of 6 "
        "solutions of the first table; rerun to compute the rest): "), lines
    data = strict_json(out / "results.json")
    assert len(data["tables"]["completion"]) == 2 and data["partial"].startswith(
        "interrupted (Ctrl-C) after 2 of 6")
    assert "stopping_and_scale" not in data["tables"]
    assert "**Partial report:** interrupted" in (out / "summary.md").read_text()


def test_ctrl_c_during_the_tensor_study_keeps_what_finished(tmp_path, capsys,
                                                             monkeypatch):
    """The tensor study likewise: its first init-scale configuration finished, the
    second interrupted; the partial report holds that one row and its figure, and none
    of the parts that did not run."""
    from lnn_flow._studies import _study_tensor

    monkeypatch.setattr(_study_tensor, "_solve", _interrupting(_study_tensor._solve, call=2))
    out = tmp_path / "t"
    assert main(["run", "tensor", "--small", "--no-progress", "--out", str(out)]) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "lnn-flow: interrupted; partial report (interrupted (Ctrl-C) with 1 of 4 "
        "init-scale configurations, 0 of 1 component-norm solves and 0 of 2 "
        "matrix-view comparisons finished; rerun to compute the rest): "), lines
    data = strict_json(out / "results.json")
    assert set(data["tables"]) == {"init_scale"} and len(data["tables"]["init_scale"]) == 1
    assert sorted(p.name for p in out.glob("*.png")) == ["init_scale.png"]
    assert "**Partial report:** interrupted" in (out / "summary.md").read_text()


def test_sigint_in_a_real_process(tmp_path):
    """SIGINT to a running `lnn-flow sweep` (its solve replaced by a sleep, so no JAX
    compile is needed): exit status 130, one line, the resume command."""
    sweep = tmp_path / "tiny.json"
    sweep.write_text(json.dumps(SWEEP))
    # Python's own SIGINT handler, even if this test runs in a background job (whose
    # children inherit SIGINT ignored, and would sleep through it).
    script = textwrap.dedent(f"""
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from lnn_flow._command import _cli
        from lnn_flow._sweeps import _sweep
        def slow(*args, **kwargs):
            print("READY", flush=True)
            time.sleep(120)
        _sweep.solve_group = slow
        sys.exit(_cli.main(["sweep", {str(sweep)!r}, "--no-progress",
                            "--out", {str(tmp_path / "out")!r}]))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "READY", child.stderr.read()
        time.sleep(0.2)  # inside time.sleep, as a long solve would be
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "resume with: lnn-flow sweep" in lines[0], err


# ------------------------------------------------------------------------- demo


def test_demo_writes_a_report_of_computed_numbers(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--dim", "4", "--num-measurements", "10", "--t1", "5", "--depths", "2",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {
        "flows.png", "demo.csv", "results.json", "summary.md"}
    rows = json.loads((out / "results.json").read_text())["tables"]["demo"]
    assert [r["depth"] for r in rows] == [2]
    # The printed table is the written one (not fixed prose): same final loss.
    assert f"{rows[0]['loss_factor']:.3e}" in printed
    # The stated tolerances are the ones solved with: the end-to-end atol is the
    # flow's scaled default, computed from this run's W0, printed as computed.
    assert f"= {rows[0]['atol_end_to_end']:.1e} (end-to-end flow)" in printed
    assert rows[0]["atol_end_to_end"] < 1e-10
    summary = (out / "summary.md").read_text()
    assert "4x4 ground truth of rank 2, 10 Gaussian measurements" in summary
    assert "![flows](flows.png)" in summary
    assert f"Report: {out / 'summary.md'}" in printed
