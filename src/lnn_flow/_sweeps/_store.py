"""Result files that a kill at any moment cannot leave half-written yet marked complete,
and that cannot be relabelled by hand without being refused.

A group of runs is two files: `NAME.npz` (the arrays, NumPy's open zip-of-`.npy`
format, no pickles) and `NAME.json` (labels: config values, seeds, save times, wall time,
the full study, package and JAX versions, the SHA-256 of the `.npz`, and the SHA-256 of
the labels themselves). Each is written to a temporary file, flushed to disk, and moved
into place with `os.replace`, which is atomic: a reader sees the old file or the new
one, never a mix. The `.json` is written last and is the completion marker: an `.npz`
without its `.json` is an interrupted write (or a deleted label file) and is never
loaded (`orphans` lists them; a sweep warns and recomputes them); a `.json` whose `.npz`
is missing or does not match the checksum, or whose labels were edited after writing
(say a hand-changed `init_scale`, which would relabel computed results), is corrupt and
raises `CorruptResultError`.
"""

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import socket
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import filelock
import numpy as np

from .._core import _json

FORMAT = "lnn_flow.sweep-group/2"
# Version 1 had no checksum of the labels; its files are still read (the sweep checks
# their configuration against its plan), version 2 files must match `labels_sha256`.
_FORMATS = ("lnn_flow.sweep-group/1", FORMAT)
_TEMP_MARK = ".tmp-"


class CorruptResultError(ValueError):
    """A result file exists but cannot be trusted; it is never loaded."""


@dataclasses.dataclass(frozen=True)
class Group:
    """One configuration solved from many seeds: arrays with a leading seed axis (or
    none, for shared ones such as `ts`) and the labels that say what they are."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    @property
    def seeds(self) -> np.ndarray:
        return self.arrays["seed"]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either absent/old or complete."""
    path = Path(path)
    temp = path.with_name(f".{path.name}{_TEMP_MARK}{os.getpid()}")
    with open(temp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on this platform
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryInUseError(OSError):
    """Another process holds the lock of a sweep's directory ([`directory_lock`][])."""


@contextlib.contextmanager
def directory_lock(directory: Path):
    """Hold the directory's lock (`.lock`, the `filelock` package: an OS file lock,
    released by the OS if the holder dies) while a sweep writes there; a second
    writer is refused at once, naming the holder (recorded in `.lock.holder`). Two
    sweeps on one folder would otherwise both run to the end, each doing all the
    work."""
    directory = Path(directory)
    lock = filelock.FileLock(directory / ".lock", timeout=0)
    holder = directory / ".lock.holder"
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            who = holder.read_text().strip()
        except OSError:
            who = "another process"
        raise DirectoryInUseError(
            f"{directory} is in use by {who}: one sweep writes to a folder at a time "
            "(a second would repeat all its work). Wait for it to finish or stop it, or "
            "choose another output folder"
        ) from None
    try:
        holder.write_text(
            f"process {os.getpid()} on {socket.gethostname()} (started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv) or 'python'})\n"
        )
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def remove_temporaries(directory: Path) -> None:
    """Delete temporary files left by killed writers (one writer per directory)."""
    for path in Path(directory).glob(f".*{_TEMP_MARK}*"):
        path.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (_json.dumps(value, indent=1) + "\n").encode())


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptResultError(
            f"{what} {path} is unreadable or truncated ({err}); delete it to recompute"
        ) from err


def write_group(directory: Path, name: str, arrays: dict[str, Any], meta: dict) -> Group:
    """Write one group: the arrays, then the labels with the arrays' checksum.

    Labels JSON cannot hold are refused before anything is written, so a bad label
    leaves no array file without its labels."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _json.dumps(meta)  # TypeError naming the value, before any write
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    npz = Path(directory) / f"{name}.npz"
    write_atomic(npz, buffer.getvalue())
    meta = {
        "format": FORMAT,
        **meta,
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in
                   arrays.items()},
        "npz": npz.name,
        "sha256": sha256(npz),
        "complete": True,
    }
    meta = json.loads(_json.dumps(meta))  # as a reader will see it
    meta["labels_sha256"] = labels_sha256(meta)
    write_json(Path(directory) / f"{name}.json", meta)
    return Group(arrays, meta)


def labels_sha256(meta: dict[str, Any]) -> str:
    """SHA-256 of a group's labels (every field but this checksum), key order free."""
    labels = {k: v for k, v in meta.items() if k != "labels_sha256"}
    # allow_nan: labels written before strict JSON (issue 26) may hold NaN.
    text = json.dumps(labels, sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def orphans(directory: Path, pattern: str = "group-*") -> list[Path]:
    """Array files `NAME.npz` without their label file `NAME.json`: interrupted writes
    or deleted labels. Never loaded: what they hold is not known to be complete."""
    return sorted(
        npz for npz in Path(directory).glob(f"{pattern}.npz")
        if not npz.with_suffix(".json").exists()
    )


def read_group(json_path: Path) -> Group:
    """Load a group after checking that it is complete and its arrays are intact."""
    json_path = Path(json_path)
    meta = read_json(json_path, "result label file")
    if not isinstance(meta, dict) or meta.get("format") not in _FORMATS:
        raise CorruptResultError(
            f"{json_path} is not an lnn_flow sweep group file (expected format "
            f"{FORMAT!r}); delete it to recompute"
        )
    if meta.get("complete") is not True or "sha256" not in meta:
        raise CorruptResultError(
            f"{json_path} is not marked complete; delete it to recompute"
        )
    if meta["format"] == FORMAT and meta.get("labels_sha256") != labels_sha256(meta):
        raise CorruptResultError(
            f"{json_path} was edited after it was written: its labels (configuration, "
            "seeds, times) no longer match their SHA-256, so they may not describe the "
            f"arrays; delete {json_path.name} and {json_path.stem}.npz to recompute"
        )
    npz = json_path.with_suffix(".npz")
    if meta.get("npz") != npz.name or not isinstance(meta.get("arrays"), dict):
        raise CorruptResultError(
            f"{json_path} does not describe {npz.name}; delete it to recompute"
        )
    if not npz.exists():
        raise CorruptResultError(
            f"{json_path} is complete but its arrays {npz.name} are missing; delete "
            f"{json_path.name} to recompute"
        )
    if sha256(npz) != meta["sha256"]:
        raise CorruptResultError(
            f"{npz} is corrupt or partial: its SHA-256 does not match the one recorded "
            f"in {json_path.name}; delete both files to recompute"
        )
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise CorruptResultError(f"{npz} cannot be read ({err})") from err
    for name, spec in meta["arrays"].items():
        if not isinstance(spec, dict) or "shape" not in spec:
            raise CorruptResultError(
                f"{json_path} lists the array {name!r} without its shape; delete it "
                "to recompute"
            )
        if name not in arrays or list(arrays[name].shape) != spec["shape"]:
            raise CorruptResultError(
                f"{npz} does not hold the array {name!r} of shape {spec['shape']} "
                f"listed in {json_path.name}"
            )
    return Group(arrays, meta)
