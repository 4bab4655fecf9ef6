"""Sweep integrity (issue 11): a group's labels cannot be changed without the group being
refused, arrays whose labels are gone do not vanish silently, a resume says what it
found, and an end-to-end sweep uses the flow's own default `atol`.

Every damage case is one line of data: (what is done to a copy of a finished sweep,
what `load_sweep` must then do)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import lnn_flow as lf
from lnn_flow._sweeps import _store, _sweep
from lnn_flow._sweeps._sweep import parse_study

# Two groups of one shape (init scales are traced): one compile for the module.
STUDY = {
    "name": "integrity", "problem": "matrix_sensing", "method": "factor", "seeds": 2,
    "fixed": {"d_in": 3, "d_out": 3, "rank": 1, "depth": 2, "num_measurements": 6,
              "t1": 4.0, "num_saves": 3},
    "grid": {"init_scale": [0.01, 0.1]},
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    groups = lf.run_sweep(parse_study(STUDY), out, progress=False)
    assert len(groups) == 2 and all(g["success"].all() for g in groups)
    return out


def _labels(out):
    return sorted(Path(out).glob("group-*.json"))


def _edit(path, **changes):
    """Rewrite a label file with `changes` merged into its `config`."""
    meta = json.loads(path.read_text())
    meta["config"] = {**meta["config"], **changes}
    path.write_text(json.dumps(meta))
    return meta


def _forge(path, **changes):
    """As `_edit`, then recompute the label checksum (a careful forger, or a tool that
    rewrites labels): the config no longer hashes to the file's name."""
    meta = _edit(path, **changes)
    meta["labels_sha256"] = _store.labels_sha256(meta)
    path.write_text(json.dumps(meta))


def _legacy(path, **changes):
    """A version-1 file (no label checksum) whose config was edited by hand."""
    meta = _edit(path, **changes)
    meta["format"] = "lnn_flow.sweep-group/1"
    del meta["labels_sha256"]
    path.write_text(json.dumps(meta))


def _rename(path):
    for suffix in (".json", ".npz"):
        src = path.with_suffix(suffix)
        src.rename(src.with_name("group-0099-000000000000" + suffix))


# (damage to the first group's files, exception or warning, match)
DAMAGE = [
    (lambda js: _edit(js, init_scale=0.5), lf.CorruptResultError,
     r"group-0000-\w+\.json was edited after it was written"),
    (lambda js: _edit(js, seeds_note="x"), lf.CorruptResultError,
     r"was edited after it was written"),
    (lambda js: _forge(js, init_scale=0.5), lf.CorruptResultError,
     r"group-0000-\w+\.json is labelled with a configuration other than .*\['init_scale'\]"),
    (lambda js: _legacy(js, init_scale=0.5), lf.CorruptResultError,
     r"labelled with a configuration other than .*\['init_scale'\]"),
    (lambda js: js.unlink(), UserWarning,
     r"1 group\(s\) have arrays but no label file .*group-0000-\w+\.npz"),
    (_rename, lf.CorruptResultError,
     r"not part of this study's plan \(group-0099-000000000000\.json"),
    (lambda js: (js.parent / "study.json").unlink(), FileNotFoundError,
     r"is not a sweep directory: it has no study\.json"),
]


@pytest.mark.parametrize("damage, error, match", DAMAGE)
def test_damaged_sweep_is_refused_or_flagged(finished, tmp_path, damage, error, match):
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    damage(_labels(out)[0])
    if issubclass(error, Warning):
        with pytest.warns(error, match=match):
            groups = lf.load_sweep(out)
        assert len(groups) == 1  # the other group still loads
    else:
        with pytest.raises(error, match=match):
            lf.load_sweep(out)


@pytest.mark.parametrize("damage, error, match",
                         [d for d in DAMAGE if d[1] is lf.CorruptResultError])
def test_damaged_sweep_is_not_resumed_over(finished, tmp_path, damage, error, match):
    """Resuming never loads (or silently recomputes over) a relabelled group."""
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    damage(_labels(out)[0])
    with pytest.raises(error, match=match):
        lf.run_sweep(parse_study(STUDY), out, progress=False)


def test_resume_says_how_many_groups_are_done(finished, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    _labels(out)[1].unlink()  # its arrays stay: an interrupted write
    groups = lf.run_sweep(parse_study(STUDY), out, progress=False)
    printed = capsys.readouterr().out
    assert re.search(r"resuming in .*: 1 of 2 groups already done; 1 interrupted",
                     printed), printed
    assert len(groups) == 2 and len(_labels(out)) == 2
    reference = lf.load_sweep(finished)
    # Recomputed by the same program from the same inputs: bit-identical.
    assert np.array_equal(groups[1]["loss"], reference[1]["loss"])


def test_fresh_sweep_prints_no_resume_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_sweep, "solve_group", _stop)
    with pytest.raises(_Stop):
        lf.run_sweep(parse_study(STUDY), tmp_path / "fresh", progress=False)
    assert "resuming" not in capsys.readouterr().out


def test_group_labels_carry_the_solver_message(finished):
    group = lf.load_sweep(finished)[0]
    # Messages per seed, not private result codes; "" is diffrax's for success.
    assert group.meta["messages"] == [""] * 2
    assert "result" not in group.arrays and "message" not in group.arrays


class _Stop(Exception):
    pass


def _stop(*args, **kwargs):
    raise _Stop


# ------------------------------------------------------------------- default atol


def _captured_options(monkeypatch, study):
    """The keyword arguments `solve_group` passes to `solve_batch` (nothing solved)."""
    seen = {}

    def fake(method, loss, init, *args, **kwargs):
        seen.update(kwargs, method=method)
        raise _Stop

    monkeypatch.setattr(_sweep, "solve_batch", fake)
    config = parse_study(study).configs()[0]
    with pytest.raises(_Stop):
        _sweep.solve_group(parse_study(study), config, (0,))
    return seen


# (method, fixed atol or None, atol the solve must get: "absent" = the flow's default)
ATOL_CASES = [
    ("end_to_end", None, "absent"),
    ("factor", None, "absent"),
    ("end_to_end", 1e-12, 1e-12),
    ("factor", 1e-9, 1e-9),
]


@pytest.mark.parametrize("method, atol, expected", ATOL_CASES)
def test_sweep_atol_defaults_to_the_flows_own(monkeypatch, method, atol, expected):
    study = {**STUDY, "method": method,
             "fixed": {**STUDY["fixed"], **({} if atol is None else {"atol": atol})}}
    options = _captured_options(monkeypatch, study)
    assert options["method"] == method
    if expected == "absent":
        assert "atol" not in options
    else:
        assert options["atol"] == expected
