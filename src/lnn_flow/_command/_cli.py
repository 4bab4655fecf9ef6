"""The `lnn-flow` command.

Every error a user can cause is one line naming what they typed (the flag, the `--set`
key, the file), exit status 2, raised before any solve: arguments are checked, the
output folder is created and test-written, then the study runs. A finished study is
never lost to a write error (it goes to a temporary folder, and the command says where);
Ctrl-C exits with status 130 and, for sweeps, the command that resumes.
"""

import argparse
import contextlib
import importlib.metadata
import math
import pathlib
import shlex
import sys
import tempfile
import warnings

from .._core._deprecation import RenamedWarning


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


@contextlib.contextmanager
def _report_folder(out: str | pathlib.Path):
    """`_prepare_out(out)`; if the work inside fails or is interrupted (Ctrl-C), the
    folders this created are removed again when nothing was written to them: no
    empty report folder is left behind."""
    created = _new_folders(out)
    folder = _prepare_out(out)
    try:
        yield folder
    except BaseException:
        _remove_if_empty(created)
        raise


def _new_folders(out: str | pathlib.Path) -> pathlib.Path | None:
    """The outermost folder of `out` that does not exist yet (None: `out` exists):
    what `_prepare_out` will create, and an interrupted run removes again."""
    out = pathlib.Path(out).absolute()
    if out.exists():
        return None
    while not out.parent.exists():
        out = out.parent
    return out


def _remove_if_empty(top: pathlib.Path | None) -> None:
    """Remove `top` (a folder this run created) if it holds no file, so that an
    interrupted run leaves no empty report folder behind."""
    if top is None or not top.is_dir():
        return
    if any(p.is_file() for p in top.rglob("*")):
        return
    for folder in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
        folder.rmdir()
    top.rmdir()


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
    from .._core._checks import positive_int
    from .._studies._demo import demo_report, describe, format_table

    for flag, value in (("--dim", args.dim), ("--num-measurements", args.num_measurements),
                        ("--rank", args.rank)):
        positive_int(flag, value)
    if args.rank > args.dim:
        raise ValueError(f"`--rank` must be <= `--dim` = {args.dim}; got {args.rank}")
    for flag, value in (("--scale", args.scale), ("--t1", args.t1)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"`{flag}` must be a finite number > 0; got {value}")
    if any(d < 1 for d in args.depths):
        raise ValueError(f"`--depths` must all be >= 1; got {args.depths}")
    positive_int("--seed", args.seed, minimum=0)
    with _report_folder(args.out) as out:
        report = demo_report(
            dim=args.dim,
            rank=args.rank,
            num_measurements=args.num_measurements,
            scale=args.scale,
            t1=args.t1,
            depths=tuple(args.depths),
            seed=args.seed,
        )
    rows = report.tables["demo"]
    summary, code = _write_report(report, out)  # first: printing can fail (a pipe)
    print(describe(args.dim, args.rank, args.num_measurements, args.scale, args.t1, rows))
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
    """Run (or resume) a sweep file's groups; by default into `reports/NAME/groups`,
    the folder `lnn-flow run` on the same file uses, so either command resumes the
    other's groups."""
    from .._sweeps._sweep import format_summary, load_study, run_sweep, summarize

    study = load_study(args.study)
    out = args.out if args.out is not None else _default_groups(study.name)
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


def _default_groups(name: str) -> pathlib.Path:
    """Where a sweep's groups go without `--out`: `reports/NAME/groups` (up to 0.1:
    `results/NAME`; a study there resumes with `--out results/NAME`)."""
    old = pathlib.Path("results") / name
    if (old / "study.json").exists() and not (pathlib.Path("reports") / name).exists():
        print(
            f"lnn-flow: note: sweeps now write to reports/{name}/groups; to resume the "
            f"groups in {old}, pass --out {old}",
            file=sys.stderr,
        )
    return pathlib.Path("reports") / name / "groups"


def _resume_hint(out, command: list[str]) -> str:
    return (
        f"finished groups are saved in {out}; resume with: {shlex.join(command)}"
    )


# --------------------------------------------------------------------------- run


def _sweep_report(path: str, args: argparse.Namespace) -> int:
    """A sweep file under `lnn-flow run`: run (or resume) it, then report its summary."""
    from .._sweeps._sweep import load_study, run_sweep
    from .._sweeps._sweep_summary import sweep_report

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
    report = sweep_report(study, groups, path, out / "groups")
    print(report.table("summary"))
    written, code = _write_report(report, out)
    print(f"\nReport: {written}")
    return code


def _run_parameters(args: argparse.Namespace) -> tuple[str, dict]:
    """The study `lnn-flow run` names and its checked parameters: `--set` over the study
    file over `--small`, over the study's defaults."""
    from ._cli_params import check_combination, check_parameters, current_name
    from ._cli_params import parse_assignments, study_spec
    from ..studies import SMALL

    name, parameters = study_spec(args.study)
    if name == "sweep":
        return name, parameters
    sources = {k: f"{args.study}: parameters.{k}" for k in parameters}
    assigned = parse_assignments(args.set)
    overrides = check_parameters(name, assigned, "--set")
    sources.update({current_name(name, k): f"--set {k}" for k in assigned})
    if args.small:
        sources = {**{k: f"--small's {k}" for k in SMALL[name]}, **sources}
        parameters = {**SMALL[name], **parameters}
    parameters.update(overrides)
    check_combination(name, parameters, sources)
    return name, parameters


def _run(args: argparse.Namespace) -> int:
    import time

    from ..studies import STUDIES

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RenamedWarning)
        name, parameters = _run_parameters(args)
    if name == "sweep":
        return _sweep_report(parameters["path"], args)
    for warning in caught:  # old parameter names, said once the checks passed
        if issubclass(warning.category, RenamedWarning):
            print(f"lnn-flow: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category,
                                   warning.filename, warning.lineno)
    start = time.perf_counter()
    with _report_folder(args.out if args.out else pathlib.Path("reports") / name) as out:
        report = STUDIES[name](**parameters, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    report.parameters["wall_seconds"] = round(seconds, 1)
    summary, code = _write_report(report, out)
    for table in report.tables:
        print(report.table(table))
    if report.partial:  # interrupted: what finished is written, and said so
        print(f"lnn-flow: interrupted; partial report ({report.partial}): {summary}",
              file=sys.stderr)
        return 130
    print(f"\n{report.title}: {seconds:.1f} s. Report: {summary}")
    return code


# --------------------------------------------------------------------------- main


def _version() -> str:
    try:
        return importlib.metadata.version("lnn_flow")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        from .. import __version__

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
    demo.add_argument(
        "--num-measurements", "--measurements", dest="num_measurements", type=int,
        default=160, help="m (160); `--measurements` is the old spelling",
    )
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
            "norms; tensor: CP components switching on, Section 5) or a study file "
            "(TOML/JSON with `study = NAME` and a [parameters] "
            "table), and write PNG figures, CSV/JSON tables and summary.md."
        ),
    )
    run.add_argument("study", help="completion, greedy, norms, tensor, or a study file")
    run.add_argument("--out", default=None, help="report folder (default reports/NAME)")
    run.add_argument(
        "--small", action="store_true", help="reduced sizes that still show the effect"
    )
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a parameter (a JSON value or a bare word), e.g. "
        "--set 'num_measurements=[1000,2000]' --set init=independent",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(run=_run)
    sweep = sub.add_parser(
        "sweep",
        help="run (or resume) a study: a grid of configurations times seeds",
    )
    sweep.add_argument("study", help="the study file (.toml or .json)")
    sweep.add_argument(
        "--out", default=None,
        help="groups directory (default reports/NAME/groups, as `run` uses)"
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
