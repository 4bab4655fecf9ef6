"""Sweeps: study files read as data and validated; one compile per distinct shape;
groups written atomically, so a study killed with SIGKILL resumes to the same results;
corrupt or partial files refused with a clear message; summaries across seeds."""

import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import lnn_flow as lf
from lnn_flow._sweeps import _store
from lnn_flow._reports._figures import sweep_loss_figure
from lnn_flow._sweeps._sweep import (
    Group,
    effective_rank,
    format_summary,
    parse_study,
    planned_groups,
    save_times,
)
from lnn_flow._sweeps._sweep_summary import report_rows

ROOT = Path(__file__).resolve().parents[2]

# Two shapes (depth 2 and 3), three groups each (init scales are traced).
STUDY = textwrap.dedent("""
    name = "resume"
    problem = "matrix_sensing"
    method = "factor"
    seeds = [0, 1, 2]

    [fixed]
    d_in = 4
    d_out = 4
    num_measurements = 12
    t1 = 10.0
    num_saves = 4

    [grid]
    depth = [2, 3]
    init_scale = [0.003, 0.03, 0.3]
""")


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "resume.toml"
    path.write_text(STUDY)
    return path


@contextlib.contextmanager
def count_compiles(name):
    """Count XLA compilations of the jitted function `name` through JAX's public
    monitoring hook (`fun_name` is `jit(NAME)`), not a cache's private size."""
    counts = collections.Counter()

    def listen(event, duration, fun_name=None, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            counts[fun_name] += 1

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    counts["total"] = counts[f"jit({name})"]


@pytest.fixture(scope="module")
def reference(study_file, tmp_path_factory):
    """The study run uninterrupted, in this process; and the compiles of the batched
    solve (`lnn_flow._batching._batch._run`, every sweep group's one program) it cost."""
    out = tmp_path_factory.mktemp("reference")
    with count_compiles("_run") as counts:
        groups = lf.run_sweep(study_file, out, progress=False)
    return out, groups, counts["total"]


def test_each_distinct_shape_compiles_once(reference):
    _, groups, compiles = reference
    assert len(groups) == 6
    assert compiles == 2  # depth 2 and depth 3; the three scales share each program


def test_groups_hold_labels_and_arrays(reference, study_file):
    out, groups, _ = reference
    g = groups[0]
    assert g.config["depth"] == 2 and g.config["init_scale"] == 0.003
    assert g.seeds.tolist() == [0, 1, 2]
    assert g["loss"].shape == (3, 4) and g["ts"].tolist() == [0.0, 10 / 3, 20 / 3, 10.0]
    assert g.meta["versions"]["jax"] and g.meta["study"]["grid"]["depth"] == [2, 3]
    assert g["success"].all()
    # Lemma 1 along the way: balanced init stays balanced (rtol-level drift only).
    assert g["unbalancedness_final"].max() < 1e-6
    # Member 1 is seed 1 solved on its own; a batch of 1 vs 3 may round differently
    # in XLA's kernels (same steps, O(eps) per operation over ~100 steps): 1e-12.
    config = g.config
    alone = lf._sweeps._sweep.solve_group(lf.load_study(study_file), config, [1])
    np.testing.assert_allclose(alone["loss"][0], g["loss"][1], rtol=1e-12)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary) == 6 and summary[0]["failures"] == 0


def sweep_command(study, out):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return dict(
        args=[sys.executable, "-m", "lnn_flow", "sweep", str(study), "--out", str(out),
              "--no-progress"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def complete_groups(out):
    return sorted(p.name for p in Path(out).glob("group-*.json"))


@pytest.mark.slow  # ~20 s: SIGKILLs a sweep subprocess mid-run and resumes it
def test_killed_sweep_resumes_to_identical_results(reference, study_file, tmp_path):
    ref_dir, ref_groups, _ = reference
    out = tmp_path / "killed"
    process = subprocess.Popen(**sweep_command(study_file, out))
    deadline = time.time() + 240
    while not complete_groups(out):
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        assert time.time() < deadline, "no group finished in time"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = complete_groups(out)
    assert 1 <= len(written) < 6  # really killed mid-way
    first = {name: (out / name).read_bytes() for name in written}

    resumed = subprocess.run(**sweep_command(study_file, out), timeout=240)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert len(complete_groups(out)) == 6
    # Groups written before the kill were kept, not recomputed.
    assert all((out / name).read_bytes() == data for name, data in first.items())
    assert not list(out.glob(".*.tmp-*"))
    for a, b in zip(lf.load_sweep(out), ref_groups):
        assert a.config == b.config
        assert sorted(a.arrays) == sorted(b.arrays)
        for name in b.arrays:
            # Same program, same inputs, same machine: bit-identical.
            assert np.array_equal(a[name], b[name], equal_nan=True), name


def test_interrupted_write_is_recomputed_not_loaded(reference, tmp_path):
    """A kill between the two renames leaves an .npz without its .json; a kill during
    a write leaves a temporary file. Neither counts as complete."""
    ref_dir, ref_groups, _ = reference
    out = tmp_path / "partial"
    shutil.copytree(ref_dir, out)
    name = complete_groups(out)[3][: -len(".json")]
    (out / f"{name}.json").unlink()
    (out / f"{name}.npz").write_bytes(b"PK\x03\x04 half an archive")
    (out / f".{name}.json.tmp-99999").write_text('{"format": ')
    with pytest.warns(UserWarning, match=f"have arrays but no label file.*{name}\\.npz"):
        assert len(lf.load_sweep(out)) == 5  # the orphan is not read back, but named
    groups = lf.run_sweep(_study_from(out), out, progress=False)
    assert len(groups) == 6 and not list(out.glob(".*.tmp-*"))
    for name_ in ref_groups[3].arrays:
        assert np.array_equal(groups[3][name_], ref_groups[3][name_], equal_nan=True)


def _study_from(out):
    return parse_study(json.loads((Path(out) / "study.json").read_text())["study"])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda npz, js: npz.write_bytes(npz.read_bytes()[:-100]),
         "is corrupt or partial: its SHA-256 does not match"),
        (lambda npz, js: npz.unlink(), "its arrays .* are missing"),
        (lambda npz, js: js.write_text(js.read_text()[:200]), "unreadable or truncated"),
        (lambda npz, js: js.write_text(json.dumps(
            {**json.loads(js.read_text()), "complete": False})), "not marked complete"),
    ],
    ids=["truncated-npz", "missing-npz", "truncated-json", "unmarked-json"],
)
def test_corrupt_group_is_refused_with_a_clear_message(reference, tmp_path, damage,
                                                       message):
    ref_dir, _, _ = reference
    out = tmp_path / "corrupt"
    shutil.copytree(ref_dir, out)
    js = out / complete_groups(out)[2]
    damage(js.with_suffix(".npz"), js)
    with pytest.raises(lf.CorruptResultError, match=message) as err:
        lf.load_sweep(out)
    assert js.stem in str(err.value) and "delete" in str(err.value)
    with pytest.raises(lf.CorruptResultError, match=message):  # never silently redone
        lf.run_sweep(_study_from(out), out, progress=False)


def test_another_study_in_the_same_directory_is_refused(reference, tmp_path):
    ref_dir, _, _ = reference
    out = tmp_path / "other"
    shutil.copytree(ref_dir, out)
    other = _study_from(out).as_dict()
    other["seeds"] = [0, 1]
    with pytest.raises(ValueError, match="holds results of a different study"):
        lf.run_sweep(parse_study(other), out, progress=False)


def test_a_second_sweep_on_a_held_folder_is_refused_naming_the_holder(study_file,
                                                                      tmp_path):
    """Two sweeps on one folder both ran to the end, each doing all the work."""
    out = tmp_path / "held"
    out.mkdir()
    with _store.directory_lock(out):
        assert "process" in (out / ".lock.holder").read_text()
        with pytest.raises(_store.DirectoryInUseError,
                           match=rf"{out} is in use by process \d+ on .* one sweep "
                           "writes to a folder at a time"):
            lf.run_sweep(lf.load_study(study_file), out, progress=False)
        assert not (out / "study.json").exists()  # refused before any work
    assert not (out / ".lock.holder").exists()  # released with the lock
    with _store.directory_lock(out):  # and free again
        pass


def test_example_study_file():
    study = lf.load_study(ROOT / "studies" / "example_sweep.toml")
    plan = planned_groups(study)
    assert len(plan) == 8 and len(study.seeds) == 4
    # Groups of one shape (depth, m) run back to back: 4 shapes, 4 runs of 2.
    shapes = [(c["depth"], c["num_measurements"]) for _, c in plan]
    assert [len(set(shapes[i:i + 2])) for i in range(0, 8, 2)] == [1, 1, 1, 1]
    assert len(set(shapes)) == 4
    assert len({name for name, _ in plan}) == 8


def test_example_study_names_the_folders_it_writes():
    from lnn_flow._command._cli import _default_groups

    text = (ROOT / "studies" / "example_sweep.toml").read_text()
    assert str(_default_groups("example_sweep")) in text
    assert "results/example_sweep" not in text


def test_example_tensor_study_file():
    study = lf.load_study(ROOT / "studies" / "tensor_sweep.toml")
    assert (study.problem, study.method) == ("tensor_completion", "tensor")
    plan = planned_groups(study)
    assert len(plan) == 4 and all(c["shape"] == [8, 8, 8] for _, c in plan)
    # Groups of one observed-entry count (a shape) run back to back.
    counts = [c["num_measurements"] for _, c in plan]
    assert counts[0] == counts[1] and counts[2] == counts[3] != counts[0]


def base(**changes):
    raw = {"name": "s", "seeds": 2, "fixed": {"d_in": 4, "d_out": 4},
           "grid": {"init_scale": [1e-3]}}
    for key, value in changes.items():
        table, _, field = key.partition("__")
        if field:
            raw[table] = {**raw[table], field: value}
        else:
            raw[table] = value
    return raw


@pytest.mark.parametrize(
    "raw, error, message",
    [
        (base(colour="red"), ValueError, r"unknown study key\(s\) \['colour'\]"),
        (base(fixed__dim=4), ValueError, "unknown parameter `fixed.dim`"),
        (base(fixed__t1="long"), TypeError, "`fixed.t1` must be float; got 'long'"),
        (base(fixed__depth=2.5), TypeError, "`fixed.depth` must be int"),
        (base(fixed__depth=True), TypeError, "`fixed.depth` must be int"),
        (base(fixed__t1=float("inf")), ValueError, "`fixed.t1` must be finite"),
        (base(grid__init_scale=[1e-3, -1e-3]), ValueError,
         r"`grid.init_scale\[1\]` must be > 0; got -0.001"),
        (base(fixed__rtol=-1e-8), ValueError, "`fixed.rtol` must be >= 0"),
        (base(grid__t1=5.0), TypeError, "`grid.t1` must be a non-empty list"),
        (base(grid__depth=[2, 2]), ValueError, "`grid.depth` repeats a value"),
        (base(fixed__init_scale=0.1), ValueError, r"\['init_scale'\] are in both"),
        (base(seeds=0), ValueError, "`seeds` must be >= 1"),
        (base(seeds=[1, 1]), ValueError, "`seeds` repeats a seed"),
        (base(seeds="all"), TypeError, "`seeds` must be a count"),
        (base(method="newton"), ValueError, "`method` must be one of"),
        (base(fixed__solver="Magic"), ValueError,
         "`solver` must be .auto., .RKC2. or name an adaptive diffrax solver"),
        (base(fixed__depth=2, fixed__hidden_width=[3, 3]), ValueError,
         "lists 2 widths but depth 2"),
        (base(fixed__rank=5), ValueError, "`rank` 5 exceeds min"),
        (base(method="end_to_end", fixed__init="gaussian"), ValueError,
         "must be 'balanced' for method 'end_to_end'"),
        (base(name="../up"), ValueError, "`name` must be a plain file name"),
    ],
)
def test_bad_study_names_the_key(raw, error, message):
    with pytest.raises(error, match=message):
        parse_study(raw)


# Strings that would create MARKER if anything evaluated them.
EVIL = "__import__('pathlib').Path('{marker}').touch()"


@pytest.mark.parametrize(
    "text, error, message",
    [
        ('name = "{evil}"\n', ValueError, r"`name` must be a plain file name .*got \"__import__"),
        ('name = "s"\nseeds = 1\n[fixed]\nt1 = "{evil}"\n[grid]\ndepth = [2]\n', TypeError,
         r"`fixed.t1` must be float; got \"__import__"),
        ('name = "s"\nseeds = 1\n[grid]\ndepth = ["{evil}"]\n', TypeError,
         r"`grid.depth\[0\]` must be int; got \"__import__"),
        ('name = "s"\nseeds = 1\nmethod = "{evil}"\n[grid]\ndepth = [2]\n', ValueError,
         r"`method` must be one of .*; got \"__import__"),
        ("seeds = [1,\n", ValueError, r"broken\.toml.* is not valid toml"),
    ],
    ids=["name", "fixed-value", "grid-value", "method", "broken-toml"],
)
def test_study_file_is_data_not_code(tmp_path, text, error, message):
    marker = tmp_path / "evaluated"
    evil = EVIL.format(marker=marker.as_posix())
    path = tmp_path / "broken.toml"
    path.write_text(text.replace("{evil}", evil))
    with pytest.raises(error, match=message):
        lf.load_study(path)
    assert not marker.exists()


def test_study_file_may_be_json(tmp_path):
    as_json = tmp_path / "s.json"
    as_json.write_text(json.dumps(base(grid__depth=[2, 3])))
    assert [c["depth"] for c in lf.load_study(as_json).configs()] == [2, 3]


def test_summary_counts_failures_and_takes_quantiles():
    losses = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    group = Group(
        arrays={
            "seed": np.arange(5),
            "loss_final": losses,
            "effective_rank_final": np.array([1.0, 1.0, 2.0, 2.0, 2.0]),
            "relative_error_final": np.zeros(5),
            "num_steps": np.array([10, 10, 10, 10, 16384]),
            "success": np.array([True, True, True, True, False]),
        },
        meta={"config_id": "x", "config": {"depth": 2}},
    )
    (row,) = lf.summarize([group])
    assert row["failures"] == 1 and row["seeds"] == 5
    assert row["loss_final"]["median"] == 2.5  # NaN of the failed run is left out
    assert row["loss_final"]["q10"] == pytest.approx(np.quantile([1, 2, 3, 4], 0.1))
    assert "unbalancedness_final" not in row  # end-to-end flow: no factors
    table = format_summary([row], ["depth"])
    assert "2.5" in table and table.splitlines()[0].split()[0] == "depth"


def test_summary_statistics_are_over_finished_seeds_only():
    """Issue 26: a failed seed's last values (finite, from where it ran out of steps)
    and an unfinished one's (cut short at t1) used to enter the medians: a row printed
    "rel err 8.15" as the median of a converged seed at 8.3e-4 and a failed one at
    16.3. One rule: statistics over finished seeds, the others counted beside them."""
    group = Group(
        arrays={
            "seed": np.arange(4),
            "loss_final": np.array([1e-9, 3e-9, 0.5, 0.2]),
            "relative_error_final": np.array([8.3e-4, 9.1e-4, 16.3, 4.0]),
            "success": np.array([True, True, False, True]),
            "stopped": np.array([True, True, False, False]),
        },
        meta={"config_id": "x", "config": {"depth": 2, "loss_threshold": 1e-8}},
    )
    (row,) = lf.summarize([group])
    assert (row["failures"], row["unfinished"], row["finished"]) == (1, 1, 2)
    assert row["relative_error_final"]["median"] == pytest.approx(8.7e-4)
    assert row["loss_final"]["median"] == pytest.approx(2e-9)
    none = Group(arrays={**group.arrays, "success": np.zeros(4, bool)}, meta=group.meta)
    (row,) = lf.summarize([none])
    assert row["finished"] == 0 and np.isnan(row["relative_error_final"]["median"])
    # The report's figure marks the row, and its label counts the finished seeds.
    rows = report_rows(lf.summarize([group, none]), ["depth"])
    figure = sweep_loss_figure(rows, ["depth"], "t")
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "2  (2/4 finished)", "2  (0/4 finished)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "some seeds failed or unfinished"]


@pytest.mark.parametrize("config, expected", [
    (dict(t1=30.0, num_saves=4, save_times="auto"), [0.0, 10.0, 20.0, 30.0]),
    (dict(t1=1e8, num_saves=4, save_times="auto"), [0.0, 1.0, 1e4, 1e8]),
    (dict(t1=1e8, num_saves=3, save_times="linear"), [0.0, 5e7, 1e8]),
    (dict(t1=5.0, num_saves=3, save_times="log"), [0.0, 0.5, 5.0]),
])
def test_save_times_are_geometric_where_t1_spans_decades(config, expected):
    np.testing.assert_allclose(save_times(config), expected, rtol=1e-12)


def test_shipped_studies_store_trajectories_on_a_log_scale_where_t1_is_long():
    """studies/tensor_sweep.toml runs to t1 = 1e8 and every seed stops between 8.7e4
    and 3.3e6: linear saves put all but t = 0 after the stop."""
    study = lf.load_study(ROOT / "studies" / "tensor_sweep.toml")
    for config in study.configs():
        ts = save_times(config)
        assert ts[0] == 0 and np.sum((ts > 0) & (ts <= 8.7e4)) >= 4, ts


def test_a_group_with_fewer_than_two_saves_warns(tmp_path):
    raw = {"name": "short", "seeds": 2, "fixed": {
        "d_in": 3, "d_out": 3, "rank": 1, "num_measurements": 6, "init_scale": 0.3,
        "depth": 2, "t1": 1e6, "num_saves": 3, "save_times": "linear",
        "loss_threshold": 1e-3}, "grid": {"rtol": [1e-6]}}
    with pytest.warns(UserWarning, match=r"2 of 2 seeds .* before their second save at "
                      r"t = 5e\+05: their trajectory holds t = 0 only"):
        lf.run_sweep(parse_study(raw), tmp_path / "s", progress=False)


def test_effective_rank():
    assert effective_rank(np.array([1.0, 1.0, 0.0])) == pytest.approx(2.0)
    assert effective_rank(np.array([[5.0, 0.0], [0.0, 0.0]])).tolist() == [1.0, 0.0]
    assert 1.0 < effective_rank(np.array([1.0, 0.1])) < 2.0


def _fail(*args, **kwargs):
    raise OSError("simulated crash")


@pytest.mark.parametrize(
    "stage",
    ["fsync", "replace"],  # data written but not yet on disk / not yet moved into place
)
def test_atomic_write_interrupted_leaves_the_old_file(tmp_path, monkeypatch, stage):
    """A write that dies before it completes leaves the previous file whole: a direct
    `open(path, "wb").write(...)` would leave the new (or partial) bytes here."""
    path = tmp_path / "f.bin"
    _store.write_atomic(path, b"old")
    monkeypatch.setattr(_store.os, stage, _fail)
    with pytest.raises(OSError, match="simulated crash"):
        _store.write_atomic(path, b"new" * 1000)
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if _store._TEMP_MARK not in p.name] == ["f.bin"]
    _store.write_atomic(path, b"new")  # and the next write succeeds over the debris
    assert path.read_bytes() == b"new"


@pytest.mark.parametrize("solver", ["Euler", "AbstractERK"])
def test_study_rejects_solvers_it_cannot_run(solver):
    raw = {
        "name": "s", "problem": "matrix_sensing", "method": "factor", "seeds": 1,
        "fixed": {"d_in": 3, "d_out": 3, "solver": solver}, "grid": {"depth": [2]},
    }
    with pytest.raises(ValueError, match="`solver`"):
        lf._sweeps._sweep.parse_study(raw)
