"""Sweep studies as data: the parameters a study may set, and their validation.

A study (the file format is described in `lnn_flow._sweeps._sweep`) is checked here in full
before any work: unknown keys, types, ranges, and each grid combination as a whole
(widths against depth, rank against the shape, a mode tree against the shape, an adaptive
diffrax solver, Assumption 1 for the end-to-end flow). `Study.configs` lists the complete
configurations that `lnn_flow._sweeps._sweep` runs.
"""

import dataclasses
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import diffrax
import numpy as np

from .._solving._chebyshev import RKC2
from .._core._files import read_study_file
from .._maths._hierarchical import binary_tree, leaves, mode_tree

PROBLEMS = ("matrix_sensing", "matrix_completion", "tensor_sensing", "tensor_completion")
# The methods of `lnn_flow._batching._methods.METHODS` whose initial states a sweep draws.
METHODS = ("factor", "end_to_end", "descent", "modified_factor", "tensor", "hierarchical")
INITS = ("balanced", "gaussian")
SAVE_TIMES = ("auto", "linear", "log")
# `save_times = "auto"` saves geometrically from this `t1` on: a flow from a small init
# sits on plateaus and escapes saddles on a log time scale, and linear saves up to such
# a `t1` fall after the solve's loss stop (every save but t = 0 empty).
LOG_SAVES_FROM = 1e3
# Which problems each kind of method solves: matrices (eq. 2, Theorem 1, descent)
# or tensors (Section 5: the CP factorization, the hierarchical one).
FAMILIES = {"matrix": ("factor", "end_to_end", "descent", "modified_factor"),
            "tensor": ("tensor", "hierarchical")}


def family(method: str) -> str:
    """`"matrix"` or `"tensor"`: the kind of problem `method` solves."""
    return next(f for f, methods in FAMILIES.items() if method in methods)


@dataclasses.dataclass(frozen=True)
class Parameter:
    kind: type  # int, float, str, bool, or list (`tree`: nested lists of ints)
    default: Any
    # "positive", "non_negative", "at_least_2", "tree" (a mode tree), or "" (none)
    check: str = ""
    static: bool = True  # part of the compiled program (shapes, options), not a value
    help: str = ""
    family: str | None = None  # "matrix" or "tensor" if only those methods take it
    sequence: str = ""  # "allowed": a value or a list of them; "required": a list
    # Only these methods of the family take it (None: all of them), e.g. the CP
    # factorization's `components`, the hierarchical one's `widths`.
    methods: tuple[str, ...] | None = None


PARAMETERS: dict[str, Parameter] = {
    "d_in": Parameter(int, 20, "positive", help="d_0", family="matrix"),
    "d_out": Parameter(int, 20, "positive", help="d_n", family="matrix"),
    "shape": Parameter(
        int, [8, 8, 8], "positive", family="tensor", sequence="required",
        help="tensor shape (d_1, ..., d_N), order N >= 2",
    ),
    "components": Parameter(
        int, 4, "positive", family="tensor", methods=("tensor",),
        help="R, the CP factorization's components",
    ),
    "widths": Parameter(
        int, 4, "positive", family="tensor", methods=("hierarchical",),
        sequence="allowed",
        help="hierarchical: the internal nodes' widths R_v, one int for all, or a list "
        "with one per depth of internal nodes (root first)",
    ),
    "tree": Parameter(
        list, None, "tree", family="tensor", methods=("hierarchical",),
        help="hierarchical: the mode tree, nested lists of the modes 0..N-1 (each "
        "once, every internal node with >= 2 children), e.g. [[0, 1], [2, 3]]; "
        "default the balanced binary tree (lnn_flow.hierarchical.binary_tree)",
    ),
    "output": Parameter(
        bool, True, family="tensor", methods=("hierarchical",),
        help="hierarchical: the root's (R_root, 1) output matrix (false: the root "
        "sums its channels)",
    ),
    "rank": Parameter(
        int, 2, "positive", help="rank (tensor: CP rank) of the planted truth"
    ),
    "truth_norms": Parameter(
        float, None, "positive", static=False, family="tensor", sequence="required",
        help="the truth's `rank` component norms (default: a Gaussian draw scaled to "
        "norm sqrt(rank), as lnn_flow.problems.low_rank_tensor)",
    ),
    "num_measurements": Parameter(
        int, 160, "positive", help="sensing: measurements m; completion: entries seen"
    ),
    "problem_seed": Parameter(int, 0, "non_negative", static=False),
    "depth": Parameter(int, 3, "positive", help="n", family="matrix"),
    "hidden_width": Parameter(
        int, None, "positive", family="matrix", sequence="allowed",
        help="hidden widths d_1..d_{n-1}: one int, or a list of n - 1 ints; default "
        "max(d_in, d_out)",
    ),
    "init": Parameter(str, "balanced", help=" or ".join(INITS)),
    "init_scale": Parameter(
        float, 1e-3, "positive", static=False,
        help="balanced: Frobenius norm of W(0) (tensor: of each component; "
        "hierarchical: of each weight matrix); gaussian: entry std",
    ),
    "t1": Parameter(float, 60.0, "positive", static=False),
    "num_saves": Parameter(int, 21, "at_least_2", help="how many save times"),
    "save_times": Parameter(
        str, "auto", help="'linear': linspace(0, t1); 'log': 0, then geometric from "
        "min(1, t1 / 10) to t1; 'auto': log where t1 >= 1000, else linear"
    ),
    "solver": Parameter(
        str, "Tsit5", help="a diffrax solver class name, 'RKC2', or 'auto' (Tsit5 "
        "switching to Chebyshev or implicit steps where the flow is stiff: "
        "lnn_flow._solving._switching)"
    ),
    "rtol": Parameter(float, 1e-8, "non_negative", static=False),
    "atol": Parameter(
        float, None, "non_negative", static=False,
        help="default: the flow's own (factor 1e-10; end_to_end its scaled "
        "min(1e-10, 1e-2 rtol max|W0|), not a fixed 1e-10 that small inits outrun)",
    ),
    "max_steps": Parameter(int, 16_384, "positive"),
    "loss_threshold": Parameter(float, None, "non_negative", static=False),
    "lr": Parameter(float, 1e-2, "positive", static=False, family="matrix",
                    help="descent step size; modified_factor: the step size of the "
                    "descent whose modified flow is solved"),
    "order": Parameter(int, 1, "positive", family="matrix", methods=("modified_factor",),
                       help="modified_factor: the modified flow's order, 1 (the gradient "
                       "flow of phi + lr/4 |grad phi|^2) or 2"),
    "steps": Parameter(int, 1000, "positive", help="descent steps", family="matrix"),
    "save_every": Parameter(int, 50, "positive", help="descent: save every k steps",
                            family="matrix"),
    "rank_cutoff": Parameter(
        float, 1e-2, "positive", static=False, family="tensor",
        help="a component carries the solution if its norm is >= rank_cutoff times the "
        "largest (the effective tensor rank counts those; hierarchical: the local "
        "components at each internal node against the node's largest)",
    ),
}


def parameters_of(method: str) -> dict[str, Parameter]:
    """The parameters a study of `method` takes (and its configurations list)."""
    kind = family(method)
    return {k: p for k, p in PARAMETERS.items() if p.family in (None, kind)
            and (p.methods is None or method in p.methods)}


def methods_taking(key: str) -> list[str]:
    """The methods whose studies take the parameter `key`."""
    return [m for m in METHODS if key in parameters_of(m)]


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
            config = {k: p.default for k, p in parameters_of(self.method).items()}
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
    method = _choice("method", raw.get("method", "factor"), METHODS)
    default_problem = {"matrix": "matrix_sensing", "tensor": "tensor_completion"}
    problem = _choice("problem", raw.get("problem", default_problem[family(method)]),
                      PROBLEMS)
    seeds = _seeds(raw.get("seeds", 8))
    if family(method) != problem.split("_")[0]:
        raise ValueError(
            f"`problem` {problem!r} is not solved by `method` {method!r}: the methods "
            f"{list(FAMILIES['matrix'])} solve matrix_* problems, "
            f"{list(FAMILIES['tensor'])} tensor_* ones"
        )
    fixed = raw.get("fixed", {})
    grid = raw.get("grid", {})
    accepted = parameters_of(method)
    for table, value in (("fixed", fixed), ("grid", grid)):
        if not isinstance(value, dict):
            raise TypeError(f"`{table}` must be a table; got {type(value).__name__}")
        for key in value:
            if key not in PARAMETERS:
                raise ValueError(
                    f"unknown parameter `{table}.{key}`; known parameters: "
                    f"{', '.join(sorted(PARAMETERS))}"
                )
            if key not in accepted:
                raise ValueError(
                    f"parameter `{table}.{key}` is for the {PARAMETERS[key].family} "
                    f"methods {methods_taking(key)}, not method "
                    f"{method!r}; its parameters: {', '.join(sorted(accepted))}"
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
    if spec.check == "tree":
        return _tree(where, value)
    if isinstance(value, list) and spec.sequence:
        if not value and spec.sequence == "required":
            raise ValueError(f"`{where}` must be a non-empty list; got []")
        return [_scalar(f"{where}[{i}]", spec, v) for i, v in enumerate(value)]
    if spec.sequence == "required" and value is not None:
        raise TypeError(
            f"`{where}` must be a list of {spec.kind.__name__}s; got {value!r}"
        )
    return _scalar(where, spec, value)


def _tree(where: str, value) -> list:
    """A mode tree as nested lists of ints (TOML/JSON arrays), checked for its own
    structure here (each mode of `0..N-1` once, internal nodes with >= 2 children); its
    `N` against `shape` when the configuration is completed."""
    if not isinstance(value, list):
        raise TypeError(
            f"`{where}` must be a list (nested lists of mode indices, e.g. "
            f"[[0, 1], [2, 3]]); got {value!r} ({type(value).__name__})"
        )
    return _as_lists(mode_tree(value, name=where))


def _as_lists(tree):
    """Nested tuples (a normalized tree) as nested lists: the JSON form of a config."""
    return tree if isinstance(tree, int) else [_as_lists(c) for c in tree]


def _as_tuples(tree):
    """A config's tree (nested lists) as the nested tuples the flow takes."""
    return tree if isinstance(tree, int) else tuple(_as_tuples(c) for c in tree)


def hierarchical_tree(config: dict[str, Any]):
    """A completed hierarchical configuration's mode tree as nested tuples."""
    return _as_tuples(config["tree"])


def _scalar(where: str, spec: Parameter, value):
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
    if config["init"] not in INITS:
        raise ValueError(f"`init` must be one of {list(INITS)}; got {config['init']!r}")
    if config["save_times"] not in SAVE_TIMES:
        raise ValueError(f"`save_times` must be one of {list(SAVE_TIMES)}; got "
                         f"{config['save_times']!r}")
    if config["solver"] != "auto":
        _check_solver(config["solver"])
    if study.method == "hierarchical":
        return _complete_hierarchical(_complete_tensor(config, study))
    if family(study.method) == "tensor":
        return _complete_tensor(config, study)
    return _complete_matrix(config, study)


def save_times(config: dict[str, Any]) -> np.ndarray:
    """The save times of a configuration: `num_saves` times from 0 to `t1`, linear or
    (`save_times = "log"`, or `"auto"` with `t1 >= LOG_SAVES_FROM`) 0 and then
    geometric from `min(1, t1 / 10)` (the flows' unit of time: an O(1) curvature of
    the loss) to `t1`."""
    t1, n, kind = float(config["t1"]), config["num_saves"], config["save_times"]
    if kind == "linear" or (kind == "auto" and t1 < LOG_SAVES_FROM):
        return np.linspace(0.0, t1, n)
    ts = np.geomspace(min(1.0, t1 / 10), t1, n - 1)
    ts[-1] = t1
    return np.concatenate([[0.0], ts])


def solver_class(name: str):
    """The solver class a study's `solver` names: lnn_flow's `RKC2`, else diffrax's."""
    return RKC2 if name == "RKC2" else getattr(diffrax, name, None)


def _check_solver(name: str) -> None:
    solver = solver_class(name)
    adaptive = isinstance(solver, type) and issubclass(
        solver, diffrax.AbstractAdaptiveSolver)
    if not adaptive:
        raise ValueError(
            "`solver` must be 'auto', 'RKC2' or name an adaptive diffrax solver (with an "
            f"error estimate, e.g. Tsit5, Dopri5, Dopri8, Kvaerno5); got {name!r}"
        )
    try:
        solver()
    except TypeError as err:  # abstract classes cannot be instantiated
        raise ValueError(f"`solver` {name!r} cannot be instantiated: {err}")


def _complete_matrix(config: dict[str, Any], study: Study) -> dict[str, Any]:
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
    if study.method == "modified_factor" and config["order"] not in (1, 2):
        raise ValueError(f"`order` must be 1 or 2 (the modified flow's order); got "
                         f"{config['order']}")
    return config


def _complete_tensor(config: dict[str, Any], study: Study) -> dict[str, Any]:
    shape = config["shape"] = list(config["shape"])
    if len(shape) < 2:
        raise ValueError(f"`shape` must list the N >= 2 sizes of a tensor; got {shape}")
    size = math.prod(shape)
    if config["rank"] > size // max(shape):
        raise ValueError(
            f"`rank` {config['rank']} exceeds prod(shape) / max(shape) = "
            f"{size // max(shape)}, the largest CP rank of a tensor of shape {shape}"
        )
    norms = config["truth_norms"]
    if norms is not None and len(norms) != config["rank"]:
        raise ValueError(
            f"`truth_norms` lists {len(norms)} component norms but `rank` is "
            f"{config['rank']}"
        )
    if config["truth_norms"] is not None:
        config["truth_norms"] = list(norms)
    if study.problem == "tensor_completion" and config["num_measurements"] > size:
        raise ValueError(
            "`num_measurements` (observed entries) exceeds prod(shape) = "
            f"{size} for shape {shape}"
        )
    return config


def _depths(tree) -> int:
    """How many depths of `tree` hold internal nodes (the root's is depth 0)."""
    if isinstance(tree, int):
        return 0
    return 1 + max(_depths(c) for c in tree)


def _complete_hierarchical(config: dict[str, Any]) -> dict[str, Any]:
    """The mode tree against `shape` (default: the binary tree over its modes, written
    out), and `widths` as one width per depth of internal nodes, root first."""
    order = len(config["shape"])
    tree = config["tree"]
    if tree is None:
        tree = binary_tree(order)
    elif len(leaves(mode_tree(tree))) != order:
        raise ValueError(
            f"`tree` must cover the modes 0..{order - 1} of `shape` {config['shape']} "
            f"once each; got the leaves {leaves(mode_tree(tree))}"
        )
    tree = mode_tree(tree, order)
    config["tree"] = _as_lists(tree)
    depths = _depths(tree)
    widths = config["widths"]
    if isinstance(widths, int):
        widths = [widths] * depths
    if len(widths) != depths:
        raise ValueError(
            f"`widths` lists {len(widths)} widths but the tree {config['tree']} has "
            f"internal nodes at {depths} depth(s) (one width per depth, root first)"
        )
    config["widths"] = list(widths)
    return config
