"""The `lnn-flow` command.

Every error a user can cause is one line naming what they typed (the flag, the `--set`
key, the file), exit status 2, raised before any solve: arguments are checked, the
output folder is created and test-written, then the study runs. A finished study is
never lost to a write error (it goes to a temporary folder, and the command says where);
Ctrl-C exits with status 130 and, for sweeps, the command that resumes.
"""

import argparse
import collections.abc
import importlib.metadata
import inspect
import json
import math
import os
import pathlib
import shlex
import sys
import tempfile
import tomllib
import types
import typing


class _Interrupted(Exception):
    """Raised in place of KeyboardInterrupt once a resume hint is known."""


# ------------------------------------------------------------------- output folders


def _prepare_out(out: str | pathlib.Path, flag: str = "--out") -> pathlib.Path:
    """Create `out` (a folder) and check it can be written, before any work."""
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"`{flag}` {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".lnn-flow-write-test-"):
            pass
    except OSError as err:
        raise ValueError(
            f"`{flag}` {out} cannot be created or written: "
            f"{err.strerror or err} ({type(err).__name__})"
        ) from err
    return out


def _write_report(report, out: pathlib.Path) -> tuple[pathlib.Path, int]:
    """Write `report` to `out`; on a write error, to a fresh temporary folder instead,
    saying so on stderr (exit status 1: the report is safe, but not where asked)."""
    try:
        return report.write(out), 0
    except OSError as err:
        fallback = pathlib.Path(tempfile.mkdtemp(prefix=f"lnn-flow-{report.name}-"))
        summary = report.write(fallback)
        print(
            f"lnn-flow: error: could not write the report to {out} ({err}); the "
            f"finished study was written to {fallback} instead",
            file=sys.stderr,
        )
        return summary, 1


# --------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace) -> int:
    from ._demo import demo_report, describe, format_table

    for flag, value in (("--dim", args.dim), ("--measurements", args.measurements),
                        ("--rank", args.rank)):
        if value < 1:
            raise ValueError(f"`{flag}` must be >= 1; got {value}")
    if args.rank > args.dim:
        raise ValueError(f"`--rank` must be <= `--dim` = {args.dim}; got {args.rank}")
    for flag, value in (("--scale", args.scale), ("--t1", args.t1)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"`{flag}` must be a finite number > 0; got {value}")
    if any(d < 1 for d in args.depths):
        raise ValueError(f"`--depths` must all be >= 1; got {args.depths}")
    if args.seed < 0:
        raise ValueError(f"`--seed` must be >= 0; got {args.seed}")
    out = _prepare_out(args.out)
    report = demo_report(
        dim=args.dim,
        rank=args.rank,
        num_measurements=args.measurements,
        scale=args.scale,
        t1=args.t1,
        depths=tuple(args.depths),
        seed=args.seed,
    )
    rows = report.tables["demo"]
    summary, code = _write_report(report, out)  # first: printing can fail (a pipe)
    print(describe(args.dim, args.rank, args.measurements, args.scale, args.t1, rows))
    print()
    print(format_table(rows))
    print(
        "\nmax gap: largest |W_n...W_1 - W| over the saves (Theorem 1 says 0); drift: "
        "largest change of W_{j+1}^T W_{j+1} - W_j W_j^T (Lemma 1 says 0)."
    )
    print(f"\nReport: {summary}")
    return code or (0 if all(r["success"] for r in rows) else 1)


# -------------------------------------------------------------------------- sweep


def _sweep(args: argparse.Namespace) -> int:
    from ._sweep import format_summary, load_study, run_sweep, summarize

    study = load_study(args.study)
    out = args.out if args.out is not None else f"results/{study.name}"
    _prepare_out(out)
    resume = ["lnn-flow", "sweep", args.study, "--out", str(out)]
    try:
        groups = run_sweep(
            study, out, progress=not args.no_progress, solve_progress=args.solve_progress
        )
    except KeyboardInterrupt:
        raise _Interrupted(_resume_hint(out, resume)) from None
    if groups:  # process 0 (the only one under jax.distributed) reports
        print(format_summary(summarize(groups), list(study.grid)))
        print(f"\n{len(groups)} groups in {out}")
    return 0


def _resume_hint(out, command: list[str]) -> str:
    return (
        f"finished groups are saved in {out}; resume with: {shlex.join(command)}"
    )


# ---------------------------------------------------------------- study parameters


def _parse_assignments(pairs: list[str]) -> dict:
    """`key=value` pairs; values are JSON literals (numbers, lists, quoted strings)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"`--set` expects key=value; got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"`--set {key}`: {value!r} is not a JSON value ({err.msg} at column "
                f"{err.colno}); give a number, a list such as [1,3], or a quoted string"
            ) from None
    return out


def _conform(where: str, value, hint):
    """`value` checked against the type hint `hint` of a study parameter (and
    converted: ints where floats are wanted); raises TypeError naming `where`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _conform(where, value, option)
            except TypeError:
                pass
        raise TypeError(f"`{where}` must be {_describe(hint)}; got {value!r}")
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
            return [_conform(f"{where}[{i}]", v, item) for i, v in enumerate(value)]
    else:  # a hint this checker does not know: leave it to the study
        return value
    raise TypeError(f"`{where}` must be {_describe(hint)}; got {value!r}")


def _describe(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is collections.abc.Sequence:
        return f"a list of ({_describe(typing.get_args(hint)[0])})"
    if hint is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true or false",
            str: "a string"}.get(hint, str(hint))


# Ranges of the built-in studies' parameters: (low, high, low inclusive); checked
# elementwise for lists, so an error names the key (and index) the user typed.
_RANGES = {
    "size": (1, math.inf, True),
    "rank": (1, math.inf, True),
    "counts": (1, math.inf, True),
    "depths": (1, math.inf, True),
    "measurements": (1, math.inf, True),
    "num_saves": (2, math.inf, True),
    "seed": (0, math.inf, True),
    "scale": (0, math.inf, False),
    "t1": (0, math.inf, False),
    "loss_reduction": (0, 1, False),
    "rtol": (0, 1, False),
    "fraction": (0, 1, False),
}


def _in_range(where: str, key: str, value) -> None:
    if key not in _RANGES or value is None:
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _in_range(f"{where}[{i}]", key, v)
        return
    low, high, inclusive = _RANGES[key]
    if not ((value >= low if inclusive else value > low) and value <= high):
        wanted = f"{'>=' if inclusive else '>'} {low}" + (
            f" and <= {high}" if math.isfinite(high) else ""
        )
        raise ValueError(f"`{where}` must be {wanted}; got {value}")


def _check_parameters(name: str, parameters: dict, source: str) -> dict:
    """Check parameters given for study `name` (from `--set` or a study file): known
    keys, the types the study's signature declares, and the ranges in `_RANGES`."""
    from .studies import STUDIES

    hints = typing.get_type_hints(inspect.unwrap(STUDIES[name]))
    accepted = sorted(set(hints) - {"progress", "return"})
    unknown = sorted(set(parameters) - set(accepted))
    if unknown:
        where = f"`--set {', '.join(unknown)}`" if source == "--set" else source
        raise ValueError(
            f"{where}: study {name!r} has no parameter(s) {unknown}; it takes "
            f"{accepted}"
        )
    checked = {}
    for key, value in parameters.items():
        where = f"{source} {key}" if source == "--set" else f"{source}: parameters.{key}"
        checked[key] = _conform(where, value, hints[key])
        _in_range(where, key, checked[key])
    return checked


def _check_combination(name: str, parameters: dict, sources: dict) -> None:
    """Cross-parameter limits (defaults filled in), naming where each value came
    from."""
    from .studies import STUDIES

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
    if name == "completion" and size is not None:
        for m in parameters.get("counts") or ():
            if m > size * size:
                raise ValueError(
                    f"`{sources.get('counts', 'counts')}` = {m} observed entries exceed "
                    f"`{sources.get('size', 'size')}`^2 = {size * size}"
                )


# --------------------------------------------------------------------------- run


def _study_spec(name_or_path: str) -> tuple[str, dict]:
    """A built-in study name, or a TOML/JSON file naming one (`study = "..."` with a
    `[parameters]` table)."""
    from .studies import STUDIES

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
    if not path.is_file():
        raise ValueError(f"study file {path} is not a file")
    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"study file {path} must end in .toml or .json")
    try:
        text = path.read_text()
        spec = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except OSError as err:
        raise ValueError(f"study file {path} cannot be read: {err}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path}: not a valid {path.suffix[1:].upper()} file: {err}"
        ) from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a study file must hold a table/object")
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
    return study, _check_parameters(study, dict(parameters), str(path))


def _sweep_report(path: str, args: argparse.Namespace) -> int:
    """A sweep file under `lnn-flow run`: run (or resume) it, then report its summary."""
    from matplotlib.figure import Figure

    from ._report import Report
    from ._sweep import load_study, run_sweep, summarize

    if args.small or args.set:
        flag = "--small" if args.small else "--set"
        raise ValueError(
            f"`{flag}` applies to the built-in studies, not to the sweep file {path}: "
            "edit its [fixed] and [grid] tables instead"
        )
    study = load_study(path)
    out = pathlib.Path(args.out) if args.out else pathlib.Path("reports") / study.name
    _prepare_out(out)
    resume = ["lnn-flow", "run", path, "--out", str(out)]
    try:
        groups = run_sweep(study, out / "groups", progress=not args.no_progress)
    except KeyboardInterrupt:
        raise _Interrupted(_resume_hint(out / "groups", resume)) from None
    summary = summarize(groups)
    rows = []
    for row in summary:
        flat = {k: row["config"][k] for k in study.grid}
        flat.update(seeds=row["seeds"], failures=row["failures"])
        for stat in ("loss_final", "effective_rank_final", "relative_error_final"):
            if stat in row:
                flat[f"{stat}_median"] = row[stat]["median"]
                flat[f"{stat}_q10"] = row[stat]["q10"]
                flat[f"{stat}_q90"] = row[stat]["q90"]
        rows.append(flat)
    figure = Figure(figsize=(6.5, 1.2 + 0.35 * len(rows)))
    ax = figure.subplots()
    labels = [", ".join(str(r[k]) for k in study.grid) for r in rows]
    medians = [r.get("loss_final_median", float("nan")) for r in rows]
    spread = [[m - r.get("loss_final_q10", m) for m, r in zip(medians, rows)],
              [r.get("loss_final_q90", m) - m for m, r in zip(medians, rows)]]
    ax.errorbar(medians, range(len(rows)), xerr=spread, fmt="o", capsize=3)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xscale="log", xlabel="final loss (median, q10 to q90 over seeds)",
           ylabel=", ".join(study.grid), title=study.name)
    figure.tight_layout()
    report = Report(
        name=study.name,
        title=f"Sweep {study.name}",
        description=(
            f"{len(groups)} configurations x {len(study.seeds)} seeds from {path}; the "
            f"arrays of every group are in {out / 'groups'} (lnn_flow.load_sweep)."
        ),
        tables={"summary": rows},
        figures={"final_loss": figure},
        parameters={"study_file": path, **{k: list(v) for k, v in study.grid.items()}},
    )
    print(report.table("summary"))
    written, code = _write_report(report, out)
    print(f"\nReport: {written}")
    return code


def _run(args: argparse.Namespace) -> int:
    import time

    from .studies import SMALL, STUDIES

    name, parameters = _study_spec(args.study)
    if name == "sweep":
        return _sweep_report(parameters["path"], args)
    sources = {k: f"{args.study}: parameters.{k}" for k in parameters}
    overrides = _check_parameters(name, _parse_assignments(args.set), "--set")
    sources.update({k: f"--set {k}" for k in overrides})
    if args.small:
        sources = {**{k: f"--small's {k}" for k in SMALL[name]}, **sources}
        parameters = {**SMALL[name], **parameters}
    parameters.update(overrides)
    _check_combination(name, parameters, sources)
    out = _prepare_out(args.out if args.out else pathlib.Path("reports") / name)
    start = time.perf_counter()
    report = STUDIES[name](**parameters, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    report.parameters["wall_seconds"] = round(seconds, 1)
    summary, code = _write_report(report, out)
    for table in report.tables:
        print(report.table(table))
    print(f"\n{report.title}: {seconds:.1f} s. Report: {summary}")
    return code


# --------------------------------------------------------------------------- main


def _version() -> str:
    try:
        return importlib.metadata.version("lnn_flow")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        from . import __version__

        return __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lnn-flow",
        description="Gradient flows of deep linear neural networks as diffrax ODEs.",
    )
    parser.add_argument("--version", action="version", version=f"lnn-flow {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="matrix sensing solved by both flows at depths 1-3, with their agreement",
        description=(
            "Matrix sensing solved by the factor flow (eq. 2) and the end-to-end flow "
            "(Theorem 1) at each depth; prints the table and writes a report folder: "
            "a figure of both flows over time, the table as CSV/JSON, summary.md."
        ),
    )
    demo.add_argument("--dim", type=int, default=20, help="d_0 = d_n (default 20)")
    demo.add_argument("--rank", type=int, default=2, help="ground-truth rank (2)")
    demo.add_argument("--measurements", type=int, default=160, help="m (160)")
    demo.add_argument("--scale", type=float, default=1e-3, help="init norm (1e-3)")
    demo.add_argument("--t1", type=float, default=60.0, help="final time (60)")
    demo.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3])
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--out", default="reports/demo", help="report folder (default reports/demo)"
    )
    demo.set_defaults(run=_demo)
    run = sub.add_parser(
        "run",
        help="run a study and write a report folder (figures, tables, summary)",
        description=(
            "Run a built-in study (completion: deep networks vs minimum nuclear norm; "
            "greedy: singular values switching on; norms: Proposition 5's diverging "
            "norms) or a study file (TOML/JSON with `study = NAME` and a [parameters] "
            "table), and write PNG figures, CSV/JSON tables and summary.md."
        ),
    )
    run.add_argument("study", help="completion, greedy, norms, or a study file")
    run.add_argument("--out", default=None, help="report folder (default reports/NAME)")
    run.add_argument(
        "--small", action="store_true", help="reduced sizes that still show the effect"
    )
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a parameter (JSON value), e.g. --set 'counts=[1000,2000]'",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(run=_run)
    sweep = sub.add_parser(
        "sweep",
        help="run (or resume) a study: a grid of configurations times seeds",
    )
    sweep.add_argument("study", help="the study file (.toml or .json)")
    sweep.add_argument(
        "--out", default=None, help="results directory (default results/NAME)"
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument(
        "--solve-progress", action="store_true",
        help="also a progress bar per solve (diffrax's TqdmProgressMeter)",
    )
    sweep.set_defaults(run=_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except _Interrupted as hint:
        print(f"lnn-flow: interrupted; {hint}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("lnn-flow: interrupted before the study finished; no report was written",
              file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as err:
        print(f"lnn-flow: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
