"""A sweep's plan and its directory: which groups a study consists of, what each
group's files are called, and reading them back only if they are what the plan says.

A group's file name is `group-RANK-HASH`, `HASH` a content hash of its configuration
(`config_id`), `RANK` its place in an order that keeps groups sharing a compiled shape
adjacent. A directory is claimed by one study (`study.json`); a group is loaded only
if its labelled configuration is the one its name was computed from (`load_if_complete`)
and the directory holds no group files outside the plan (`check_directory`).
"""

import hashlib
import importlib.metadata
import json
import platform
import warnings
from pathlib import Path
from typing import Any

from . import _store
from ._store import CorruptResultError, Group
from ._sweep_schema import PARAMETERS, Study, parse_study


def config_id(config: dict[str, Any], study: Study) -> str:
    """A short content hash naming a group's files (stable across runs)."""
    text = json.dumps(
        {"problem": study.problem, "method": study.method, "seeds": list(study.seeds),
         "config": config},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _shape_key(config: dict[str, Any]) -> str:
    static = {k: v for k, v in config.items() if PARAMETERS[k].static}
    static["loss_threshold"] = config["loss_threshold"] is None
    return json.dumps(static, sort_keys=True)


def planned_groups(study: Study) -> list[tuple[str, dict[str, Any]]]:
    """`(file name, config)` for every group, those sharing a compiled shape adjacent."""
    configs = study.configs()
    order = sorted(range(len(configs)), key=lambda i: (_shape_key(configs[i]), i))
    return [
        (f"group-{rank:04d}-{config_id(configs[i], study)}", configs[i])
        for rank, i in enumerate(order)
    ]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("lnn_flow", "jax", "jaxlib", "diffrax", "equinox", "optax", "numpy"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def claim(directory: Path, study: Study, writer: bool) -> None:
    """Record the study in `directory`, or check it is the one recorded there."""
    if not writer:
        return
    path = directory / "study.json"
    record = {"study": study.as_dict(), "versions": versions()}
    if path.exists():
        stored = _store.read_json(path, "study record")
        if not isinstance(stored, dict) or stored.get("study") != study.as_dict():
            raise ValueError(
                f"{directory} holds results of a different study (see {path}); use "
                "another output directory or the same study file"
            )
    else:
        _store.write_json(path, record)


def load_if_complete(
    directory: Path, name: str, config: dict[str, Any]
) -> Group | None:
    """The group `name` if written, after checking its labels are the planned `config`
    (its file name is the hash of that config: labels that differ would relabel the
    arrays)."""
    marker = directory / f"{name}.json"
    if not marker.exists():
        return None  # not run, or killed before its label file was moved into place
    group = _store.read_group(marker)
    stored_id = group.meta.get("config_id")
    if group.meta.get("config") != config or stored_id != name.rsplit("-", 1)[-1]:
        changed = sorted(
            k for k in set(config) | set(group.meta.get("config") or {})
            if (group.meta.get("config") or {}).get(k, "(missing)") != config.get(k)
        )
        raise CorruptResultError(
            f"{marker} is labelled with a configuration other than the one its name "
            f"(config_id {name.rsplit('-', 1)[-1]}) was computed for (differs in "
            f"{changed or ['config_id']}); delete {marker.name} and {name}.npz to "
            "recompute"
        )
    return group


def check_directory(directory: Path, plan) -> list[Path]:
    """Refuse group files the plan does not name; return the interrupted ones (arrays
    without labels), which are never loaded."""
    planned = {name for name, _ in plan}
    foreign = sorted(
        p.name for p in directory.glob("group-*")
        if p.suffix in (".json", ".npz") and p.stem not in planned
    )
    if foreign:
        raise CorruptResultError(
            f"{directory} holds group files that are not part of this study's plan "
            f"({', '.join(foreign[:4])}{', ...' if len(foreign) > 4 else ''}): renamed, "
            "copied from another study, or written by another lnn_flow version with "
            "other defaults; move them away or delete them"
        )
    return _store.orphans(directory)


def load_sweep(directory: str | Path) -> list[Group]:
    """Every complete group in `directory` (checksums verified), in planned order.

    Raises `CorruptResultError` naming the file if any group is corrupt or partial, or
    labelled with a configuration other than the one it was computed for. Warns about
    groups whose arrays are there without their label file (an interrupted write or a
    deleted `.json`): they are not loaded, and `run_sweep` recomputes them.
    """
    directory = Path(directory)
    if not (directory / "study.json").exists():
        raise FileNotFoundError(
            f"{directory} is not a sweep directory: it has no study.json"
        )
    record = _store.read_json(directory / "study.json", "study record")
    if not isinstance(record, dict) or not isinstance(record.get("study"), dict):
        raise CorruptResultError(
            f"{directory / 'study.json'} does not record a study; delete the directory "
            "to recompute"
        )
    study = parse_study(record["study"])
    plan = planned_groups(study)
    interrupted = check_directory(directory, plan)
    if interrupted:
        warnings.warn(
            f"{directory}: {len(interrupted)} group(s) have arrays but no label file "
            f"(interrupted write, or a deleted .json): "
            f"{', '.join(p.name for p in interrupted)}; not loaded (rerun the sweep to "
            "recompute them)",
            stacklevel=2,
        )
    return [
        g for name, config in plan
        if (g := load_if_complete(directory, name, config)) is not None
    ]
