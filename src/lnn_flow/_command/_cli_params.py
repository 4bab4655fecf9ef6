"""The parameters of `lnn-flow run`: which study, and the values given for it.

A built-in study's parameters come from a study file's `[parameters]` table, `--set
key=value` flags and `--small`; each is checked against the study function's type hints
(`conform`) and ranges (`RANGES`), then as a combination (`check_combination`), and
every error names where the value came from (the flag, the file and key, `--small`).
A parameter's old name (`studies._RENAMED`, e.g. `counts` for `num_measurements`) still
works for one release, with a warning.
"""

import collections.abc
import inspect
import json
import math
import os
import pathlib
import re
import types
import typing
import warnings

from .._core._deprecation import RenamedWarning
from .._core._files import read_study_file


_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def parse_assignments(pairs: list[str]) -> dict:
    """`key=value` pairs; values are JSON literals (numbers, lists, quoted strings), or
    a bare word (`init=independent`), read as that string."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"`--set` expects key=value; got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as err:
            if _BARE_WORD.fullmatch(value.strip()):
                out[key] = value.strip()
                continue
            raise ValueError(
                f"`--set {key}`: {value!r} is not a JSON value ({err.msg} at column "
                f"{err.colno}); give a number, a list such as [1,3], or a string"
            ) from None
    return out


def conform(where: str, value, hint):
    """`value` checked against the type hint `hint` of a study parameter (and
    converted: ints where floats are wanted); raises TypeError naming `where`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return conform(where, value, option)
            except TypeError:
                pass
        raise TypeError(f"`{where}` must be {describe(hint)}; got {value!r}")
    if hint is type(None):
        if value is None:
            return None
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"`{where}` must be finite; got {value}")
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is collections.abc.Sequence:
        if isinstance(value, list):
            (item,) = typing.get_args(hint)
            return [conform(f"{where}[{i}]", v, item) for i, v in enumerate(value)]
    else:  # a hint this checker does not know: leave it to the study
        return value
    raise TypeError(f"`{where}` must be {describe(hint)}; got {value!r}")


def describe(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(h) for h in typing.get_args(hint))
    if origin is collections.abc.Sequence:
        return f"a list of ({describe(typing.get_args(hint)[0])})"
    if hint is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true or false",
            str: "a string"}.get(hint, str(hint))


# Ranges of the built-in studies' parameters: (low, high, low inclusive); checked
# elementwise for lists, so an error names the key (and index) the user typed.
RANGES = {
    "size": (1, math.inf, True),
    "rank": (1, math.inf, True),
    "num_measurements": (1, math.inf, True),
    "depths": (1, math.inf, True),
    "num_saves": (2, math.inf, True),
    "seed": (0, math.inf, True),
    "scale": (0, math.inf, False),
    "t1": (0, math.inf, False),
    "loss_reduction": (0, 1, False),
    "loss_reductions": (0, 1, False),
    "tail_depths": (1, math.inf, True),
    "tail_num_measurements": (1, math.inf, True),
    "rtol": (0, 1, False),
    "fraction": (0, 1, False),
    "orders": (2, math.inf, True),
    "sizes": (1, math.inf, True),
    "components": (1, math.inf, True),
    "scales": (0, math.inf, False),
    "seeds": (1, math.inf, True),
    "cutoff": (0, 1, False),
    "max_steps": (1, math.inf, True),
}


def in_range(where: str, key: str, value) -> None:
    if key not in RANGES or value is None:
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            in_range(f"{where}[{i}]", key, v)
        return
    low, high, inclusive = RANGES[key]
    if not ((value >= low if inclusive else value > low) and value <= high):
        wanted = f"{'>=' if inclusive else '>'} {low}" + (
            f" and <= {high}" if math.isfinite(high) else ""
        )
        raise ValueError(f"`{where}` must be {wanted}; got {value}")


def current_name(name: str, key: str) -> str:
    """The name study `name` now gives its parameter `key` (`key` itself unless renamed;
    `lnn_flow.studies._RENAMED`)."""
    from ..studies import _RENAMED

    return _RENAMED.get(name, {}).get(key, key)


def check_parameters(name: str, parameters: dict, source: str) -> dict:
    """Check parameters given for study `name` (from `--set` or a study file): known
    keys, the types the study's signature declares, and the ranges in `RANGES`.

    A renamed parameter given under its old name is returned under its new one, with a
    [`RenamedWarning`][lnn_flow._core._deprecation.RenamedWarning] naming both (the command
    prints it once the checks pass); both names at once are refused."""
    from ..studies import _RENAMED, STUDIES

    hints = typing.get_type_hints(inspect.unwrap(STUDIES[name]))
    renamed = _RENAMED.get(name, {})
    accepted = sorted(set(hints) - {"progress", "return"} - set(renamed))
    unknown = sorted(set(parameters) - set(accepted) - set(renamed))
    if unknown:
        where = f"`--set {', '.join(unknown)}`" if source == "--set" else source
        raise ValueError(
            f"{where}: study {name!r} has no parameter(s) {unknown}; it takes "
            f"{accepted}"
        )
    checked = {}
    for key, value in parameters.items():
        where = f"{source} {key}" if source == "--set" else f"{source}: parameters.{key}"
        new = renamed.get(key, key)
        if new != key:
            _warn_renamed(source, key, new, given_both=new in parameters)
        checked[new] = conform(where, value, hints[new])
        in_range(where, new, checked[new])
    return checked


def _warn_renamed(source: str, old: str, new: str, given_both: bool) -> None:
    """A parameter given under its old name `old`: refused next to `new`, else a
    RenamedWarning naming both, as the user would type them."""
    spell = (lambda k: f"`--set {k}`") if source == "--set" else (
        lambda k: f"`{source}: parameters.{k}`")
    if given_both:
        raise ValueError(
            f"{spell(old)} and {spell(new)} are the same parameter ({old} is its "
            f"deprecated name); give only {spell(new)}"
        )
    warnings.warn(
        f"{spell(old)} is deprecated and will be removed in the next release; use "
        f"{spell(new)}",
        RenamedWarning,
        stacklevel=3,
    )


def check_combination(name: str, parameters: dict, sources: dict) -> None:
    """Cross-parameter limits (defaults filled in), naming where each value came
    from."""
    from ..studies import STUDIES

    defaults = {
        k: p.default for k, p in inspect.signature(STUDIES[name]).parameters.items()
    }
    parameters = {**defaults, **parameters}
    size, rank = parameters.get("size"), parameters.get("rank")
    if size is not None and rank is not None and rank > size:
        raise ValueError(
            f"`{sources.get('rank', 'rank')}` = {rank} must be <= "
            f"`{sources.get('size', 'size')}` = {size}"
        )
    W0 = parameters.get("W0")
    if W0 is not None and (len(W0) != 2 or any(len(row) != 2 for row in W0)):
        raise ValueError(
            f"`{sources.get('W0', 'W0')}` must be a 2x2 matrix (two rows of two "
            f"numbers); got {W0}"
        )
    if name == "tensor":
        _check_tensor(parameters, sources)
    if name == "completion" and size is not None:
        for m in parameters.get("num_measurements") or ():
            if m > size * size:
                raise ValueError(
                    f"`{sources.get('num_measurements', 'num_measurements')}` = {m} "
                    f"observed entries exceed `{sources.get('size', 'size')}`^2 = "
                    f"{size * size}"
                )


def _check_tensor(parameters: dict, sources: dict) -> None:
    """The tensor study's orders pair with its sizes, and the observed entries fit the
    first order's tensor."""
    src = lambda key: sources.get(key, key)
    orders, sizes = list(parameters["orders"]), list(parameters["sizes"])
    if len(orders) != len(sizes) or not orders:
        raise ValueError(
            f"`{src('orders')}` = {orders} and `{src('sizes')}` = {sizes} must pair up "
            "(one size per order)"
        )
    entries = sizes[0] ** orders[0]
    for m in parameters.get("num_measurements") or ():
        if m > entries:
            raise ValueError(
                f"`{src('num_measurements')}` = {m} observed entries exceed the "
                f"{entries} entries of `{src('sizes')}`[0]^`{src('orders')}`[0]"
            )


def study_spec(name_or_path: str) -> tuple[str, dict]:
    """A built-in study name, or a TOML/JSON file naming one (`study = "..."` with a
    `[parameters]` table)."""
    from ..studies import STUDIES

    if name_or_path in STUDIES:
        return name_or_path, {}
    path = pathlib.Path(name_or_path)
    if not path.exists():
        if path.suffix in (".toml", ".json") or os.sep in name_or_path:
            raise ValueError(f"study file {name_or_path} not found")
        raise ValueError(
            f"unknown study {name_or_path!r}: give one of {sorted(STUDIES)} or a study "
            "file (.toml or .json)"
        )
    spec = read_study_file(path, invalid="{path}: not a valid {KIND} file: {error}")
    if "grid" in spec and "study" not in spec:
        return "sweep", {"path": str(path)}
    study = spec.get("study")
    if study not in STUDIES:
        raise ValueError(
            f"{path}: `study` must be one of {sorted(STUDIES)}, or the file must be a "
            f"sweep (a [grid] of configurations x seeds); got study = {study!r}"
        )
    unknown = set(spec) - {"study", "parameters"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    parameters = spec.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ValueError(f"{path}: `parameters` must be a table")
    return study, check_parameters(study, dict(parameters), str(path))
