"""The `lnn-flow` command."""

import argparse
import sys


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
