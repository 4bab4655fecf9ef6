"""Result files (`_store`): writes are atomic, groups round-trip bit-exact with their
labels, and every kind of damage to a group is refused with the damaged file named.

Sweep-level behaviour (a damaged group inside `load_sweep`/`run_sweep`, an interrupted
`write_atomic`) is in tests/test_sweep.py and tests/test_sweep_integrity.py; here each
function is checked on its own, on files made in `tmp_path`.
"""

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest
from conftest import strict_json

from lnn_flow._sweeps import _store
from lnn_flow._sweeps._store import CorruptResultError

NAME = "group-0003-abcdef012345"
ARRAYS = {
    "seed": np.array([0, 7], dtype=np.int64),
    # Values a value-equality check cannot tell apart from others: nan, -0.0, a
    # subnormal, infinities. Bytes are compared, so each must come back as it went.
    "loss": np.array([[0.5, np.nan, -0.0], [5e-324, np.inf, -np.inf]]),
    "ts": np.linspace(0.0, 1.0, 3, dtype=np.float32),
    "success": np.array([True, False]),
    "end_to_end": np.random.default_rng(0).standard_normal((2, 3, 4)),
}
META = {"config": {"depth": 3, "init_scale": 0.01}, "seeds": (0, 7), "seconds": 1.25,
        "versions": {"jax": "0.0"}}


def _write(directory, arrays=ARRAYS, meta=META):
    group = _store.write_group(directory, NAME, arrays, meta)
    return group, directory / f"{NAME}.json", directory / f"{NAME}.npz"


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --- sha256, write_atomic, remove_temporaries ----------------------------------------


@pytest.mark.parametrize("size", [0, 5, (1 << 20) + 7])  # empty, one chunk, two chunks
def test_sha256_is_the_digest_of_the_whole_file(tmp_path, size):
    data = np.random.default_rng(size).bytes(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert _store.sha256(path) == hashlib.sha256(data).hexdigest()


def test_write_atomic_replaces_the_file_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "f.bin"
    _store.write_atomic(path, b"old")
    _store.write_atomic(str(path), b"new" * 1000)  # a str path works too
    assert path.read_bytes() == b"new" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def _fail(*args, **kwargs):
    raise OSError("simulated crash")


def test_remove_temporaries_removes_exactly_what_killed_writers_left(tmp_path,
                                                                     monkeypatch):
    # A real leftover: write_atomic killed before its rename.
    monkeypatch.setattr(_store.os, "replace", _fail)
    with pytest.raises(OSError, match="simulated crash"):
        _store.write_atomic(tmp_path / f"{NAME}.json", b"{}")
    monkeypatch.undo()
    leftover = [p.name for p in tmp_path.iterdir()]
    assert len(leftover) == 1 and _store._TEMP_MARK in leftover[0]
    other_writer = tmp_path / f".{NAME}.npz{_store._TEMP_MARK}99999"
    other_writer.write_bytes(b"PK")
    kept = ["group-0.json", "group-0.npz", ".hidden", "a.tmp-1", ".tmp-notes",
            "sub/.x.json.tmp-1"]  # not hidden / not the mark / in a subfolder
    (tmp_path / "sub").mkdir()
    for name in kept:
        (tmp_path / name).write_text("x")
    _store.remove_temporaries(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(kept)
    _store.remove_temporaries(tmp_path)  # nothing to do: no error
    _store.remove_temporaries(tmp_path / "sub")
    assert not (tmp_path / "sub" / ".x.json.tmp-1").exists()


# --- write_json, read_json --------------------------------------------------------------


def test_json_is_strict_non_finite_numbers_are_null(tmp_path):
    """Bare NaN / Infinity (Python's default) are not JSON: strict readers refuse the
    file (issue 26). Written as null; everything else round-trips."""
    path = tmp_path / "v.json"
    value = {"a": [1, 2.5, "é"], "nan": math.nan, "inf": math.inf, "-inf": -math.inf,
             "nested": {"none": None, "ok": True, "floats": (1.0, np.float64(np.nan))}}
    _store.write_json(path, value)
    text = path.read_text()
    assert text.endswith("\n") and "NaN" not in text and "Infinity" not in text
    back = strict_json(path)
    assert back == {"a": [1, 2.5, "é"], "nan": None, "inf": None, "-inf": None,
                    "nested": {"none": None, "ok": True, "floats": [1.0, None]}}
    assert _store.read_json(path, "label") == back
    assert [p.name for p in tmp_path.iterdir()] == ["v.json"]


UNREADABLE = [  # (what is done to a written JSON file)
    lambda p: p.write_text(p.read_text()[:7]),
    lambda p: p.write_text(""),
    lambda p: p.write_bytes(b'{"a": "\xff\xfe"}'),
    lambda p: p.unlink(),
]


@pytest.mark.parametrize("damage", UNREADABLE, ids=["truncated", "empty", "not-utf8",
                                                    "missing"])
def test_read_json_refuses_unreadable_files_naming_them(tmp_path, damage):
    path = tmp_path / "v.json"
    _store.write_json(path, {"a": [1, 2, 3]})
    damage(path)
    with pytest.raises(CorruptResultError, match="unreadable or truncated") as err:
        _store.read_json(path, "study file")
    assert f"study file {path} is unreadable" in str(err.value)
    assert "delete it to recompute" in str(err.value)


# --- write_group, read_group: a round trip ------------------------------------------------


def test_group_round_trip_is_bit_exact_with_its_labels(tmp_path):
    written, js, npz = _write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{NAME}.json", f"{NAME}.npz"]
    read = _store.read_group(js)
    for group in (written, read):
        assert sorted(group.arrays) == sorted(ARRAYS)
        for name, array in ARRAYS.items():
            assert _same_bits(group[name], array), name
    # The labels as written are the labels as read (the tuple became a list in both).
    assert written.meta == read.meta
    meta = read.meta
    assert meta["config"] == META["config"] and meta["seeds"] == [0, 7]
    assert meta["seconds"] == 1.25 and meta["versions"] == {"jax": "0.0"}
    assert meta["format"] == _store.FORMAT and meta["complete"] is True
    assert meta["npz"] == npz.name and meta["sha256"] == _store.sha256(npz)
    assert meta["labels_sha256"] == _store.labels_sha256(meta)
    assert meta["arrays"]["loss"] == {"shape": [2, 3], "dtype": "float64"}
    assert meta["arrays"]["ts"] == {"shape": [3], "dtype": "float32"}
    assert json.loads(js.read_text()) == meta  # the file holds exactly these labels


def test_group_accessors_and_array_like_input(tmp_path):
    group, js, _ = _write(tmp_path, arrays={"seed": [3, 4], "loss": [[1.0], [2.0]]},
                          meta={"config": {"depth": 2}, "note": math.nan})
    for g in (group, _store.read_group(js)):
        assert isinstance(g["loss"], np.ndarray) and g["loss"].shape == (2, 1)
        assert g.config == {"depth": 2}
        assert g.seeds.tolist() == [3, 4] and g.seeds is g.arrays["seed"]
        assert g.meta["note"] is None  # a NaN label is written as null (strict JSON)
    with pytest.raises(dataclasses.FrozenInstanceError):
        group.meta = {}


def test_group_written_before_strict_json_with_nan_labels_still_loads(tmp_path):
    """Groups written with bare NaN in their labels (before issue 26) keep loading:
    their checksum was taken over the same text."""
    _, js, _ = _write(tmp_path)
    meta = {k: v for k, v in _meta(js).items() if k != "labels_sha256"}
    meta["note"] = math.nan
    meta["labels_sha256"] = _store.labels_sha256(meta)
    js.write_text(json.dumps(meta, allow_nan=True))
    assert math.isnan(_store.read_group(js).meta["note"])


def test_group_rewrite_replaces_the_previous_one(tmp_path):
    _write(tmp_path)
    _write(tmp_path, arrays={"seed": np.array([1])}, meta={"config": {"depth": 9}})
    read = _store.read_group(tmp_path / f"{NAME}.json")
    assert read.config == {"depth": 9} and sorted(read.arrays) == ["seed"]
    assert len(list(tmp_path.iterdir())) == 2


# --- labels_sha256, orphans ---------------------------------------------------------------


def test_labels_sha256_ignores_key_order_and_itself_but_not_values():
    meta = {"config": {"depth": 3, "init_scale": 0.01}, "seeds": [0, 1], "format": "f"}
    digest = _store.labels_sha256(meta)
    reordered = {"format": "f", "seeds": [0, 1], "config": {"init_scale": 0.01, "depth": 3}}
    assert _store.labels_sha256(reordered) == digest
    assert _store.labels_sha256({**meta, "labels_sha256": "anything"}) == digest
    changed = [
        {**meta, "config": {"depth": 3, "init_scale": 0.02}},  # a nested value
        {**meta, "seeds": [1, 0]},  # list order is content
        {**meta, "format": "g"},
        {**meta, "extra": None},  # an added label
        {k: v for k, v in meta.items() if k != "seeds"},  # a removed one
    ]
    digests = {_store.labels_sha256(m) for m in changed}
    assert digest not in digests and len(digests) == len(changed)
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_orphans_are_exactly_the_arrays_without_labels(tmp_path):
    _store.write_group(tmp_path, "group-0", {"seed": [0]}, {"config": {}})
    for name in ("group-5.npz", "group-1.npz", "group-2.json", "other-3.npz",
                 ".group-4.npz.tmp-1"):
        (tmp_path / name).write_bytes(b"x")
    assert _store.orphans(tmp_path) == [tmp_path / "group-1.npz", tmp_path / "group-5.npz"]
    assert _store.orphans(tmp_path, "other-*") == [tmp_path / "other-3.npz"]
    (tmp_path / "empty").mkdir()
    assert _store.orphans(tmp_path / "empty") == []


# --- read_group refuses damaged groups, naming the file -----------------------------------


def _meta(js):
    return json.loads(js.read_text())


def _relabel(js, **fields):
    """Change labels and recompute their checksum: what survives the label check."""
    meta = {**_meta(js), **fields}
    meta["labels_sha256"] = _store.labels_sha256(meta)
    js.write_text(json.dumps(meta))


def _garbage_with_matching_checksum(js, npz):
    npz.write_bytes(b"PK\x03\x04 not an archive")
    _relabel(js, sha256=_store.sha256(npz))


def _flip_one_byte(npz):
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))


def _add_array_spec(js, name, spec):
    _relabel(js, arrays={**_meta(js)["arrays"], name: spec})


# (what is done to the written group's (json, npz), message, file the message names)
DAMAGE = [
    (lambda js, npz: js.write_text(js.read_text()[:100]), "unreadable or truncated",
     "json"),
    (lambda js, npz: js.write_text("[1, 2]"), "is not an lnn_flow sweep group file",
     "json"),
    (lambda js, npz: _relabel(js, format="lnn_flow.sweep-group/9"),
     "is not an lnn_flow sweep group file", "json"),
    (lambda js, npz: _relabel(js, complete=False), "is not marked complete", "json"),
    (lambda js, npz: _relabel(js, complete="true"), "is not marked complete", "json"),
    (lambda js, npz: js.write_text(json.dumps(
        {k: v for k, v in _meta(js).items() if k != "sha256"})), "is not marked complete",
     "json"),
    (lambda js, npz: js.write_text(json.dumps({**_meta(js), "seconds": 2.0})),
     "was edited after it was written", "json"),
    (lambda js, npz: js.write_text(json.dumps(
        {k: v for k, v in _meta(js).items() if k != "labels_sha256"})),
     "was edited after it was written", "json"),
    (lambda js, npz: _relabel(js, npz="group-other.npz"), "does not describe", "json"),
    (lambda js, npz: _relabel(js, arrays=["seed"]), "does not describe", "json"),
    (lambda js, npz: npz.unlink(), "is complete but its arrays .* are missing", "json"),
    (lambda js, npz: npz.write_bytes(npz.read_bytes()[:-10]), "is corrupt or partial",
     "npz"),
    (lambda js, npz: _flip_one_byte(npz), "is corrupt or partial", "npz"),
    (_garbage_with_matching_checksum, "cannot be read", "npz"),
    (lambda js, npz: _add_array_spec(js, "w", {"shape": [2], "dtype": "float64"}),
     r"does not hold the array 'w' of shape \[2\]", "npz"),
    (lambda js, npz: _add_array_spec(js, "loss", {"shape": [3, 2], "dtype": "float64"}),
     r"does not hold the array 'loss' of shape \[3, 2\]", "npz"),
]
IDS = ["truncated-json", "not-an-object", "other-format", "complete-false",
       "complete-string", "no-checksum", "edited-label", "no-label-checksum",
       "other-npz-name", "arrays-not-a-dict", "missing-npz", "truncated-npz",
       "flipped-byte", "unreadable-npz", "unlisted-array", "wrong-shape"]


@pytest.mark.parametrize("damage, message, named", DAMAGE, ids=IDS)
def test_damaged_group_is_refused_naming_the_file(tmp_path, damage, message, named):
    _, js, npz = _write(tmp_path)
    damage(js, npz)
    with pytest.raises(CorruptResultError, match=message) as err:
        _store.read_group(js)
    assert str({"json": js, "npz": npz}[named]) in str(err.value)


def test_version_1_group_is_read_without_a_label_checksum(tmp_path):
    """Version 1 had no label checksum: its labels are read as they are (the sweep
    checks them against its plan instead)."""
    _, js, _ = _write(tmp_path)
    meta = {k: v for k, v in _meta(js).items() if k != "labels_sha256"}
    js.write_text(json.dumps({**meta, "format": "lnn_flow.sweep-group/1", "seconds": 9.0}))
    group = _store.read_group(js)
    assert group.meta["seconds"] == 9.0 and _same_bits(group["loss"], ARRAYS["loss"])


def test_version_1_group_with_a_malformed_array_list_is_refused(tmp_path):
    _, js, _ = _write(tmp_path)
    meta = {k: v for k, v in _meta(js).items() if k != "labels_sha256"}
    meta = {**meta, "format": "lnn_flow.sweep-group/1", "arrays": {"seed": [2]}}
    js.write_text(json.dumps(meta))
    with pytest.raises(CorruptResultError, match="without its shape") as err:
        _store.read_group(js)
    assert str(js) in str(err.value)


def test_labels_json_cannot_hold_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        _store.write_group(tmp_path, "group-b", {"seed": np.arange(2)},
                           {"config": {"x": np.int64(1)}})
    assert list(tmp_path.iterdir()) == []  # no array file left without its labels
