"""The `lnn-flow` command."""

import argparse
import json
import pathlib
import sys
import tomllib


def _demo(args: argparse.Namespace) -> int:
    from ._demo import format_table, matrix_sensing_study

    print(
        f"Matrix sensing: {args.dim}x{args.dim} ground truth of rank {args.rank}, "
        f"{args.measurements} Gaussian measurements, balanced init of norm {args.scale}, "
        f"t1 = {args.t1}.\nFactor flow (eq. 2) vs end-to-end flow (Theorem 1), "
        "Tsit5, rtol 1e-8, atol 1e-10, float64.\n"
    )
    rows = matrix_sensing_study(
        dim=args.dim,
        rank=args.rank,
        num_measurements=args.measurements,
        scale=args.scale,
        t1=args.t1,
        depths=tuple(args.depths),
        seed=args.seed,
    )
    print(format_table(rows))
    print(
        "\nmax gap: largest |W_n...W_1 - W| over the saves (Theorem 1 says 0); drift: "
        "largest change of W_{j+1}^T W_{j+1} - W_j W_j^T (Lemma 1 says 0)."
    )
    return 0 if all(r["success"] for r in rows) else 1


def _sweep(args: argparse.Namespace) -> int:
    from ._sweep import format_summary, load_study, run_sweep, summarize

    study = load_study(args.study)
    out = args.out if args.out is not None else f"results/{study.name}"
    groups = run_sweep(
        study, out, progress=not args.no_progress, solve_progress=args.solve_progress
    )
    if groups:  # process 0 (the only one under jax.distributed) reports
        print(format_summary(summarize(groups), list(study.grid)))
        print(f"\n{len(groups)} groups in {out}")
    return 0


def _parse_assignments(pairs: list[str]) -> dict:
    """`key=value` pairs; values are JSON literals (numbers, lists, strings)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"`--set` expects key=value; got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _study_spec(name_or_path: str) -> tuple[str, dict]:
    """A built-in study name, or a TOML/JSON file naming one (`study = "..."` with a
    `[parameters]` table)."""
    from .studies import STUDIES

    if name_or_path in STUDIES:
        return name_or_path, {}
    path = pathlib.Path(name_or_path)
    if not path.exists():
        raise ValueError(
            f"unknown study {name_or_path!r}: give one of {sorted(STUDIES)} or a study "
            "file (.toml or .json)"
        )
    text = path.read_text()
    try:
        spec = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a valid {path.suffix[1:].upper()} file: {err}")
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
    return study, dict(spec.get("parameters", {}))


def _sweep_report(path: str, args: argparse.Namespace) -> int:
    """A sweep file under `lnn-flow run`: run (or resume) it, then report its summary."""
    from matplotlib.figure import Figure

    from ._report import Report
    from ._sweep import load_study, run_sweep, summarize

    study = load_study(path)
    out = pathlib.Path(args.out) if args.out else pathlib.Path("reports") / study.name
    groups = run_sweep(study, out / "groups", progress=not args.no_progress)
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
    print(f"\nReport: {report.write(out)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import inspect
    import time

    from .studies import SMALL, STUDIES

    name, parameters = _study_spec(args.study)
    if name == "sweep":
        return _sweep_report(parameters["path"], args)
    if args.small:
        parameters = {**SMALL[name], **parameters}
    parameters.update(_parse_assignments(args.set))
    accepted = set(inspect.signature(STUDIES[name]).parameters) - {"progress"}
    unknown = set(parameters) - accepted
    if unknown:
        raise ValueError(
            f"study {name!r} has no parameter(s) {sorted(unknown)}; it takes "
            f"{sorted(accepted)}"
        )
    start = time.perf_counter()
    report = STUDIES[name](**parameters, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    report.parameters["wall_seconds"] = round(seconds, 1)
    summary = report.write(args.out if args.out else pathlib.Path("reports") / name)
    for table in report.tables:
        print(report.table(table))
    print(f"\n{report.title}: {seconds:.1f} s. Report: {summary}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lnn-flow",
        description="Gradient flows of deep linear neural networks as diffrax ODEs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="matrix sensing solved by both flows at depths 1-3, with their agreement",
    )
    demo.add_argument("--dim", type=int, default=20, help="d_0 = d_n (default 20)")
    demo.add_argument("--rank", type=int, default=2, help="ground-truth rank (2)")
    demo.add_argument("--measurements", type=int, default=160, help="m (160)")
    demo.add_argument("--scale", type=float, default=1e-3, help="init norm (1e-3)")
    demo.add_argument("--t1", type=float, default=60.0, help="final time (60)")
    demo.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3])
    demo.add_argument("--seed", type=int, default=0)
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
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError) as err:
        print(f"lnn-flow: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
