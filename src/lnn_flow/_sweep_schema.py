"""Sweep studies as data: the parameters a study may set, and their validation.

A study (the file format is described in `lnn_flow._sweep`) is checked here in full
before any work: unknown keys, types, ranges, and each grid combination as a whole
(widths against depth, rank against the shape, an adaptive diffrax solver, Assumption 1
for the end-to-end flow). `Study.configs` lists the complete configurations that
`lnn_flow._sweep` runs.
"""

import dataclasses
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import diffrax

from ._files import read_study_file

PROBLEMS = ("matrix_sensing", "matrix_completion")
# The methods of `lnn_flow._methods.METHODS` whose initial states a sweep draws.
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
    return parse_study(read_study_file(path), default_name=Path(path).stem)


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
