"""Studies: a grid of configurations times a set of seeds, run group by group.

A study is a plain TOML or JSON file (read as data, never executed):

    name = "sensing_depths"
    problem = "matrix_sensing"      # or "matrix_completion"
    method = "factor"               # or "end_to_end", "descent"
    seeds = 32                      # seeds 0..31, or a list such as [3, 7, 11]

    [fixed]                         # one value per parameter
    d_in = 20
    d_out = 20
    t1 = 60.0

    [grid]                          # lists of values; every combination is run
    depth = [2, 3]
    init_scale = [1e-3, 1e-2]
    num_measurements = [80, 160]

Parameters not given take the defaults in `PARAMETERS` (`atol` unset: each flow's own
default, the end-to-end flow's scaled to its initial matrix). One configuration solved from all
seeds is a *group*: one `solve_batch` call (seeds vmapped, sharded over the devices)
and one result file pair (see `lnn_flow._store`). Groups are ordered so that those with
the same shapes and static options run one after another; times, tolerances, scales and
step sizes are traced, so each distinct shape compiles once. Each group is written as
soon as it finishes; running the same study into the same directory again skips the
groups already written (and says how many), so a killed study resumes and loses nothing.
A group is loaded only if its arrays match their checksum, its labels match theirs, and
its labelled configuration is the one its file name was computed from: a hand-edited
label (say `init_scale`) is refused, never read as a relabelling of computed results.

Seed `s` draws its initialization from `fold_in(PRNGKey(s), 1)`; the problem instance
(shared by all seeds) from `fold_in(PRNGKey(problem_seed), 0)`.
"""

import dataclasses
import hashlib
import importlib.metadata
import itertools
import json
import math
import platform
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm  # tqdm.auto warns in Jupyter without ipywidgets

import tomllib

from . import _store, init, problems
from ._batch import solve_batch
from ._network import end_to_end, unbalancedness
from ._store import CorruptResultError, Group

PROBLEMS = ("matrix_sensing", "matrix_completion")
METHODS = ("factor", "end_to_end", "descent")
INITS = ("balanced", "gaussian")


@dataclasses.dataclass(frozen=True)
class Parameter:
    kind: type  # int, float or str
    default: Any
    check: str = ""  # "positive", "non_negative", "at_least_2", or "" (none)
    static: bool = True  # part of the compiled program (shapes, options), not a value
    help: str = ""


PARAMETERS: dict[str, Parameter] = {
    "d_in": Parameter(int, 20, "positive", help="d_0"),
    "d_out": Parameter(int, 20, "positive", help="d_n"),
    "rank": Parameter(int, 2, "positive", help="rank of the planted truth"),
    "num_measurements": Parameter(
        int, 160, "positive", help="sensing: measurements m; completion: entries seen"
    ),
    "problem_seed": Parameter(int, 0, "non_negative", static=False),
    "depth": Parameter(int, 3, "positive", help="n"),
    "hidden_width": Parameter(
        int, None, "positive", help="hidden widths d_1..d_{n-1}: one int, or a list "
        "of n - 1 ints; default max(d_in, d_out)"
    ),
    "init": Parameter(str, "balanced", help=" or ".join(INITS)),
    "init_scale": Parameter(
        float, 1e-3, "positive", static=False,
        help="balanced: Frobenius norm of W(0); gaussian: entry std",
    ),
    "t1": Parameter(float, 60.0, "positive", static=False),
    "num_saves": Parameter(int, 21, "at_least_2", help="saves at linspace(0, t1)"),
    "solver": Parameter(str, "Tsit5", help="a diffrax solver class name"),
    "rtol": Parameter(float, 1e-8, "non_negative", static=False),
    "atol": Parameter(
        float, None, "non_negative", static=False,
        help="default: the flow's own (factor 1e-10; end_to_end its scaled "
        "min(1e-10, 1e-2 rtol max|W0|), not a fixed 1e-10 that small inits outrun)",
    ),
    "max_steps": Parameter(int, 16_384, "positive"),
    "loss_threshold": Parameter(float, None, "non_negative", static=False),
    "lr": Parameter(float, 1e-2, "positive", static=False, help="descent step size"),
    "steps": Parameter(int, 1000, "positive", help="descent steps"),
    "save_every": Parameter(int, 50, "positive", help="descent: save every k steps"),
}

_TOP_LEVEL = {"name", "problem", "method", "seeds", "fixed", "grid"}


@dataclasses.dataclass(frozen=True)
class Study:
    """A parsed, validated study: the configurations to run and the seeds."""

    name: str
    problem: str
    method: str
    seeds: tuple[int, ...]
    fixed: dict[str, Any]
    grid: dict[str, list]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "problem": self.problem,
            "method": self.method,
            "seeds": list(self.seeds),
            "fixed": self.fixed,
            "grid": self.grid,
        }

    def configs(self) -> list[dict[str, Any]]:
        """Every grid combination, full (defaults filled in), in grid order."""
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            config = {k: p.default for k, p in PARAMETERS.items()}
            config.update(self.fixed)
            config.update(zip(keys, values))
            out.append(_complete(config, self))
        return out


def load_study(path: str | Path) -> Study:
    """Read a study from a `.toml` or `.json` file (data only; nothing is executed)."""
    path = Path(path)
    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"study file {path} must end in .toml or .json")
    if not path.is_file():
        raise FileNotFoundError(f"study file {path} not found")
    parse = tomllib.loads if path.suffix == ".toml" else json.loads
    try:
        raw = parse(path.read_text())
    except ValueError as err:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(
            f"study file {path} is not valid {path.suffix[1:]}: {err}"
        ) from err
    return parse_study(raw, default_name=path.stem)


def parse_study(raw: dict[str, Any], default_name: str = "study") -> Study:
    """Validate a study given as a dictionary (the parsed TOML/JSON)."""
    if not isinstance(raw, dict):
        raise TypeError(f"a study must be a table/object; got {type(raw).__name__}")
    unknown = set(raw) - _TOP_LEVEL
    if unknown:
        raise ValueError(
            f"unknown study key(s) {sorted(unknown)}; expected {sorted(_TOP_LEVEL)} "
            "(parameters go in [fixed] or [grid])"
        )
    name = _choice("name", raw.get("name", default_name), None)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ValueError(
            f"`name` must be a plain file name (letters, digits, _ . -); got {name!r}"
        )
    problem = _choice("problem", raw.get("problem", "matrix_sensing"), PROBLEMS)
    method = _choice("method", raw.get("method", "factor"), METHODS)
    seeds = _seeds(raw.get("seeds", 8))
    fixed = raw.get("fixed", {})
    grid = raw.get("grid", {})
    for table, value in (("fixed", fixed), ("grid", grid)):
        if not isinstance(value, dict):
            raise TypeError(f"`{table}` must be a table; got {type(value).__name__}")
        for key in value:
            if key not in PARAMETERS:
                raise ValueError(
                    f"unknown parameter `{table}.{key}`; known parameters: "
                    f"{', '.join(sorted(PARAMETERS))}"
                )
    both = set(fixed) & set(grid)
    if both:
        raise ValueError(f"parameter(s) {sorted(both)} are in both [fixed] and [grid]")
    fixed = {k: _value(f"fixed.{k}", k, v) for k, v in fixed.items()}
    checked_grid = {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise TypeError(
                f"`grid.{key}` must be a non-empty list of values; got {values!r}"
            )
        checked_grid[key] = [
            _value(f"grid.{key}[{i}]", key, v) for i, v in enumerate(values)
        ]
        if len({json.dumps(v) for v in checked_grid[key]}) != len(values):
            raise ValueError(f"`grid.{key}` repeats a value: {values}")
    study = Study(name, problem, method, seeds, fixed, checked_grid)
    study.configs()  # validates every combination now, before any work
    return study


def _choice(name, value, choices):
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string; got {value!r}")
    if choices is not None and value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; got {value!r}")
    return value


def _seeds(value) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"`seeds` must be >= 1 (a count) or a list; got {value}")
        return tuple(range(value))
    if isinstance(value, list) and value and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value
    ):
        if len(set(value)) != len(value):
            raise ValueError(f"`seeds` repeats a seed: {value}")
        return tuple(value)
    raise TypeError(
        f"`seeds` must be a count or a non-empty list of distinct integers >= 0; "
        f"got {value!r}"
    )


def _value(where: str, key: str, value):
    spec = PARAMETERS[key]
    if key == "hidden_width" and isinstance(value, list):
        return [_value(f"{where}[{i}]", key, v) for i, v in enumerate(value)]
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not spec.kind:
        raise TypeError(
            f"`{where}` must be {spec.kind.__name__}; got {value!r} "
            f"({type(value).__name__})"
        )
    if spec.kind is float and not math.isfinite(value):
        raise ValueError(f"`{where}` must be finite; got {value}")
    bad = {
        "positive": lambda v: v <= 0,
        "non_negative": lambda v: v < 0,
        "at_least_2": lambda v: v < 2,
    }.get(spec.check)
    if bad is not None and bad(value):
        wanted = {"positive": "> 0", "non_negative": ">= 0", "at_least_2": ">= 2"}
        raise ValueError(f"`{where}` must be {wanted[spec.check]}; got {value}")
    return value


def _complete(config: dict[str, Any], study: Study) -> dict[str, Any]:
    """Fill derived values and check the combination as a whole."""
    depth = config["depth"]
    width = config["hidden_width"]
    if width is None:
        width = max(config["d_in"], config["d_out"])
    if isinstance(width, int):
        width = [width] * (depth - 1)
    if len(width) != depth - 1:
        raise ValueError(
            f"`hidden_width` lists {len(width)} widths but depth {depth} has "
            f"{depth - 1} hidden layers"
        )
    config["hidden_width"] = list(width)
    if config["init"] not in INITS:
        raise ValueError(f"`init` must be one of {list(INITS)}; got {config['init']!r}")
    solver = getattr(diffrax, config["solver"], None)
    if not (isinstance(solver, type) and issubclass(solver, diffrax.AbstractAdaptiveSolver)):
        raise ValueError(
            "`solver` must name an adaptive diffrax solver (with an error estimate, "
            f"e.g. Tsit5, Dopri5, Dopri8, Kvaerno5); got {config['solver']!r}"
        )
    try:
        solver()
    except TypeError as err:  # abstract classes cannot be instantiated
        raise ValueError(f"`solver` {config['solver']!r} cannot be instantiated: {err}")
    if config["rank"] > min(config["d_in"], config["d_out"]):
        raise ValueError(
            f"`rank` {config['rank']} exceeds min(d_in, d_out) = "
            f"{min(config['d_in'], config['d_out'])}"
        )
    if study.problem == "matrix_completion" and (
        config["num_measurements"] > config["d_in"] * config["d_out"]
    ):
        raise ValueError(
            "`num_measurements` (observed entries) exceeds d_in * d_out = "
            f"{config['d_in'] * config['d_out']}"
        )
    if study.method == "end_to_end" and config["init"] != "balanced":
        raise ValueError(
            "`init` must be 'balanced' for method 'end_to_end': Theorem 1 assumes "
            "unbalancedness zero (Assumption 1)"
        )
    return config


# ---------------------------------------------------------------------------- running


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


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("lnn_flow", "jax", "jaxlib", "diffrax", "equinox", "optax", "numpy"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _problem(study: Study, config: dict[str, Any]):
    key = jax.random.fold_in(jax.random.PRNGKey(config["problem_seed"]), 0)
    shape = (config["d_out"], config["d_in"])
    make = {
        "matrix_sensing": problems.random_matrix_sensing,
        "matrix_completion": problems.random_matrix_completion,
    }[study.problem]
    return make(key, shape, config["rank"], config["num_measurements"])


def _initial_factors(config: dict[str, Any], seeds: Sequence[int]):
    dims = (config["d_in"], *config["hidden_width"], config["d_out"])
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 1) for s in seeds])
    scale = config["init_scale"]
    if config["init"] == "balanced":
        make = lambda key: init.balanced(key, dims, scale)
    else:
        make = lambda key: init.gaussian(key, dims, scale)
    return jax.vmap(make)(keys)


def _singular_values(W):
    return np.linalg.svd(W, compute_uv=False)


def effective_rank(s: np.ndarray) -> np.ndarray:
    """Effective rank `exp(entropy(s / sum(s)))` of singular values `s` (last axis)
    (Roy & Vetterli 2007): a continuous rank, `r` for `r` equal nonzero values, 0 for
    the zero matrix."""
    s = np.asarray(s, dtype=float)
    total = s.sum(axis=-1, keepdims=True)
    p = s / np.where(total > 0, total, 1.0)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), -1)
    return np.where(total[..., 0] > 0, np.exp(entropy), 0.0)


def solve_group(
    study: Study,
    config: dict[str, Any],
    seeds: Sequence[int],
    devices=None,
    progress_meter: diffrax.AbstractProgressMeter | None = None,
) -> dict[str, np.ndarray]:
    """Solve one configuration from every seed; the arrays written for the group, and
    `message` (the solver's message per seed), which `run_sweep` stores in the labels."""
    loss, truth = _problem(study, config)
    ws0 = _initial_factors(config, seeds)
    ts = np.linspace(0.0, config["t1"], config["num_saves"])
    if study.method == "descent":
        sol = solve_batch(
            "descent", loss, ws0, config["lr"], config["steps"],
            save_every=config["save_every"], devices=devices,
        )
    else:
        options = dict(
            solver=getattr(diffrax, config["solver"])(),
            rtol=config["rtol"],
            max_steps=config["max_steps"],
            loss_threshold=config["loss_threshold"],
            progress_meter=progress_meter,
            devices=devices,
        )
        if config["atol"] is not None:  # else the flow's own default
            options["atol"] = config["atol"]
        if study.method == "factor":
            sol = solve_batch("factor", loss, ws0, config["t1"], ts, **options)
        else:
            W0 = jax.vmap(end_to_end)(ws0)
            sol = solve_batch(
                "end_to_end", loss, W0, config["depth"], config["t1"], ts, **options
            )
    final = np.asarray(sol.end_to_end_final)
    truth = np.asarray(truth)
    singular = _singular_values(final)
    arrays = {
        "seed": np.asarray(seeds, dtype=np.int64),
        "ts": np.asarray(sol.ts)[0],
        "loss": sol.loss,
        "reached": sol.reached,
        "end_to_end": sol.end_to_end,
        "t_final": sol.t_final,
        "loss_final": sol.loss_final,
        "end_to_end_final": final,
        "singular_values_final": singular,
        "effective_rank_final": effective_rank(singular),
        "relative_error_final": np.linalg.norm(final - truth, axis=(-2, -1))
        / np.linalg.norm(truth),
        "truth": truth,
        "success": sol.success,
        "stopped": sol.stopped,
        "finite": sol.finite,
        "message": np.asarray(sol.message, dtype=str),
        "num_steps": sol.stats.num_steps,
    }
    if sol.factors_final is not None:
        unbalanced = jax.vmap(unbalancedness)
        arrays["unbalancedness_initial"] = unbalanced(ws0)
        arrays["unbalancedness_final"] = unbalanced(tuple(sol.factors_final))
        for j, w in enumerate(sol.factors_final, start=1):
            arrays[f"factor_final_{j}"] = w
    return {k: np.asarray(v) for k, v in arrays.items()}


def run_sweep(
    study: Study | str | Path,
    directory: str | Path,
    *,
    devices=None,
    progress: bool = True,
    solve_progress: bool = False,
) -> list[Group]:
    """Run every group of `study` not yet in `directory`, writing each as it finishes.

    Restarting with the same study and directory resumes: groups already written are
    checked (checksums of arrays and labels, configuration against the plan) and kept,
    and a line says how many; a corrupt or relabelled one raises `CorruptResultError`
    instead of being loaded, and arrays without labels (an interrupted write) are
    recomputed. Returns all groups in planned order and writes `summary.json`.
    Under `jax.distributed` every process runs the same solves (each on its share of
    the seeds); process 0 decides what is left, writes, and returns the groups; the
    other processes return `[]`. `progress` shows a tqdm bar over groups;
    `solve_progress` adds diffrax's `TqdmProgressMeter` to each flow solve (one bar per
    device when sharded), for studies of long solves.
    """
    if not isinstance(study, Study):
        study = load_study(study)
    directory = Path(directory)
    writer = jax.process_index() == 0
    directory.mkdir(parents=True, exist_ok=True)
    if writer:
        _store.remove_temporaries(directory)
    _claim(directory, study, writer)
    plan = planned_groups(study)
    interrupted = _check_directory(directory, plan) if writer else []
    done = {
        name: _load_if_complete(directory, name, config) if writer else None
        for name, config in plan
    }
    todo = np.array([done[name] is None for name, _ in plan])
    finished = sum(g is not None for g in done.values())
    if writer and (finished or interrupted):
        print(
            f"{study.name}: resuming in {directory}: {finished} of {len(plan)} groups "
            "already done"
            + (f"; {len(interrupted)} interrupted (arrays without labels) will be "
               "recomputed" if interrupted else ""),
            flush=True,
        )
    if jax.process_count() > 1:  # every process must make the same solves, in order
        from jax.experimental import multihost_utils

        todo = np.asarray(multihost_utils.broadcast_one_to_all(todo))
    remaining = [(n, c) for (n, c), run in zip(plan, todo) if run]
    bar = tqdm(
        total=len(plan), initial=len(plan) - len(remaining), desc=study.name,
        unit="group", disable=not progress,
    )
    with bar:
        for name, config in remaining:
            start = time.time()
            meter = diffrax.TqdmProgressMeter() if solve_progress else None
            arrays = solve_group(study, config, study.seeds, devices, meter)
            messages = arrays.pop("message").tolist()  # strings: labels, not arrays
            meta = {
                "study_name": study.name,
                "config_id": name.rsplit("-", 1)[-1],
                "config": config,
                "seeds": list(study.seeds),
                "ts": arrays["ts"].tolist(),
                "messages": messages,  # the solver's message per seed ("" = success)
                "started": start,
                "wall_time_s": time.time() - start,
                "backend": jax.default_backend(),
                "devices": len(devices) if devices is not None else jax.device_count(),
                "study": study.as_dict(),
                "versions": _versions(),
            }
            if writer:
                done[name] = _store.write_group(directory, name, arrays, meta)
            bar.update()
    if not writer:
        return []
    groups = [done[name] for name, _ in plan]
    _store.write_json(directory / "summary.json", summarize(groups))
    return groups


def _claim(directory: Path, study: Study, writer: bool) -> None:
    """Record the study in `directory`, or check it is the one recorded there."""
    if not writer:
        return
    path = directory / "study.json"
    record = {"study": study.as_dict(), "versions": _versions()}
    if path.exists():
        stored = _store.read_json(path, "study record")
        if not isinstance(stored, dict) or stored.get("study") != study.as_dict():
            raise ValueError(
                f"{directory} holds results of a different study (see {path}); use "
                "another output directory or the same study file"
            )
    else:
        _store.write_json(path, record)


def _load_if_complete(
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


def _check_directory(directory: Path, plan) -> list[Path]:
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
    interrupted = _check_directory(directory, plan)
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
        if (g := _load_if_complete(directory, name, config)) is not None
    ]


# --------------------------------------------------------------------------- summaries

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def summarize(groups: Sequence[Group]) -> list[dict[str, Any]]:
    """Per configuration, across seeds: failures, and the median and quantiles of the
    final loss, effective rank, relative error and unbalancedness (NaN-aware; failed
    solves keep their last values and are counted in `failures`)."""
    rows = []
    for group in groups:
        a = group.arrays
        row = {
            "config_id": group.meta["config_id"],
            "config": group.config,
            "seeds": int(a["seed"].shape[0]),
            "failures": int(np.sum(~a["success"])),
        }
        stats = ["loss_final", "effective_rank_final", "relative_error_final",
                 "num_steps", "unbalancedness_final"]
        for name in stats:
            if name in a:
                values = a[name].astype(float)
                row[name] = {
                    f"q{round(100 * q):02d}": float(np.nanquantile(values, q))
                    for q in QUANTILES
                }
                row[name]["median"] = row[name].pop("q50")
        rows.append(row)
    return rows


def format_summary(rows: Sequence[dict[str, Any]], varying: Sequence[str]) -> str:
    """A plain-text table of `summarize` rows, one line per configuration."""
    head = [*varying, "seeds", "fail", "loss med", "loss q10", "loss q90", "eff rank",
            "rel err", "unbal med"]
    lines = [head]
    for row in rows:
        def stat(name, q="median"):
            return f"{row[name][q]:.3g}" if name in row else "-"

        lines.append([
            *(str(row["config"][k]) for k in varying),
            str(row["seeds"]), str(row["failures"]),
            stat("loss_final"), stat("loss_final", "q10"), stat("loss_final", "q90"),
            stat("effective_rank_final"), stat("relative_error_final"),
            stat("unbalancedness_final"),
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in lines
    )


__all__ = ["CorruptResultError", "Group", "Study"]
