"""Write the documentation's figures into docs/figures/.

    python docs/make_figures.py                  # everything (about 3 minutes on 2 cores)
    python docs/make_figures.py --only benchmarks  # the benchmark plots only (seconds)
    python docs/make_figures.py --only studies     # the study figures only

Studies: each built-in study runs with its reduced sizes, exactly as the command line
does (`lnn-flow demo`, `lnn-flow run NAME --small`, via `python -m lnn_flow`), into a
temporary report folder; every PNG the report holds is copied here as `NAME_FIGURE.png`
(`NAME.png` where the figure is named after its study).

Benchmarks: the plots are drawn from the tables of docs/benchmarks.md itself, each
marked by an `<!-- figure-data: NAME -->` line above it, so the numbers live in one place
(the page) and a plot cannot disagree with its table.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

DOCS = Path(__file__).resolve().parent
FIGURES = DOCS / "figures"
BENCHMARKS_PAGE = DOCS / "benchmarks.md"

# The command behind each study's figures: `lnn-flow ARGS --out DIR`.
STUDIES = {
    "demo": ["demo"],
    "completion": ["run", "completion", "--small", "--no-progress"],
    "greedy": ["run", "greedy", "--small", "--no-progress"],
    "norms": ["run", "norms", "--small", "--no-progress"],
    "tensor": ["run", "tensor", "--small", "--no-progress"],
    "hierarchical": ["run", "hierarchical", "--small", "--no-progress"],
    "descent": ["run", "descent", "--small", "--no-progress"],
}


def figure_name(study, png):
    return f"{study}.png" if png.stem == study else f"{study}_{png.name}"


def make_study_figures(names):
    FIGURES.mkdir(exist_ok=True)
    env = dict(os.environ, MPLBACKEND="Agg")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            out = Path(tmp) / name
            command = [sys.executable, "-m", "lnn_flow", *STUDIES[name], "--out", str(out)]
            print("$ lnn-flow", " ".join(command[3:]), flush=True)
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            pngs = sorted(out.glob("*.png"))
            if not pngs:
                raise SystemExit(f"`lnn-flow {' '.join(STUDIES[name])}` wrote no figure")
            for png in pngs:
                target = FIGURES / figure_name(name, png)
                shutil.copyfile(png, target)
                print(f"  {target.relative_to(DOCS.parent)}")


# --- Benchmark tables -------------------------------------------------------------------


def table(name, page=BENCHMARKS_PAGE):
    """The Markdown table under `<!-- figure-data: NAME -->`: its header and rows, as
    lists of cell strings (backticks removed)."""
    text = page.read_text()
    marker = f"<!-- figure-data: {name} -->\n"
    if text.count(marker) != 1:
        raise SystemExit(f"{page.name} must hold exactly one `{marker.strip()}`")
    lines = text.split(marker, 1)[1].splitlines()
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("`", "") for c in line.strip().strip("|").split("|")]
        if not all(set(c) <= set("-: ") for c in cells):  # the |---| line
            rows.append(cells)
    return rows[0], rows[1:]


def number(cell):
    """A cell's number (`1,048,576` -> 1048576.0), or None for an empty cell."""
    return float(cell.replace(",", "")) if cell.strip() else None


def first(pattern, cell):
    match = re.search(pattern, cell)
    return number(match.group(1)) if match else None


def wrapped(label, width=22):
    return "\n".join(textwrap.wrap(label, width))


def plot_call_overhead(plt):
    header, rows = table("call_overhead")
    sizes = header[1:]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    height = 0.8 / len(sizes)
    for k, size in enumerate(sizes):
        ys, xs = [], []
        for i, row in enumerate(rows):
            if (value := number(row[1 + k])) is not None:
                ys.append(i + (k - (len(sizes) - 1) / 2) * height)
                xs.append(value)
        ax.barh(ys, xs, height=height, label=size)
    ax.axvline(1.0, color="black", ls="--", lw=1, label="odeint (ratio 1)")
    ax.set_yticks(range(len(rows)), [wrapped(r[0], 28) for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0.7, 1.15)
    ax.set_xlabel("odeint's time / the solve's time (> 1: faster than odeint)")
    ax.set_title("call_overhead.py: one small solve against jax.experimental.ode.odeint")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return fig


def plot_controller(plt):
    header, rows = table("controller")
    records = [dict(d=int(r[0]), rtol=number(r[1]), controller=r[2], error=number(r[3]),
                    evals=number(r[4])) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    sweep = [r for r in records if r["evals"] is None]
    for controller in dict.fromkeys(r["controller"] for r in sweep):
        points = sorted((r["rtol"], r["error"]) for r in sweep if r["controller"] == controller)
        d = sweep[0]["d"]
        left.plot(*zip(*points), marker="o", label=f"{controller} controller, d = {d}")
    left.set_xscale("log")
    left.set_yscale("log")
    left.invert_xaxis()
    left.set_xlabel("rtol (tighter to the right)")
    left.set_ylabel("trajectory error")
    left.set_title("error as rtol tightens")
    left.legend(fontsize=8)
    markers = {"PI": "o", "I": "s", "odeint": "^"}
    for r in (r for r in records if r["evals"] is not None):
        right.scatter(r["evals"], r["error"], marker=markers.get(r["controller"], "o"),
                      color=f"C{[10, 20].index(r['d']) if r['d'] in (10, 20) else 2}",
                      label=f"d = {r['d']}, {r['controller']}, rtol {r['rtol']:g}")
        right.annotate(f"rtol {r['rtol']:g}", (r["evals"], r["error"]),
                       textcoords="offset points", xytext=(5, 4), fontsize=7)
    right.set_yscale("log")
    right.margins(x=0.15, y=0.15)
    right.set_xlabel("gradient evaluations")
    right.set_ylabel("trajectory error")
    right.set_title("error against cost (lower left is better)")
    right.legend(fontsize=7)
    fig.suptitle("controller.py: Tsit5 under lnn_flow's PI controller, diffrax's I "
                 "controller, and odeint")
    fig.tight_layout()
    return fig


def plot_stiff_tails(plt):
    header, rows = table("stiff_tails")
    methods = header[1:]
    cases = [wrapped(re.sub(r" \(.*?\)", "", ", ".join(r[0].split(", ")[:2])), 16)
             for r in rows]
    fig, (steps_ax, time_ax) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / len(methods)
    labelled, missed_labelled = {}, set()
    for k, method in enumerate(methods):
        for i, row in enumerate(rows):
            cell = row[1 + k]
            x = i + (k - (len(methods) - 1) / 2) * width
            steps = first(r"([\d,]+) steps", cell)
            seconds = first(r"([\d.]+) s\b", cell)
            missed = cell.startswith("not reached")
            label = None if labelled.get(k) else method
            if steps is not None:
                steps_ax.bar(x, steps, width, color=f"C{k}",
                             label=None if missed else label,
                             hatch="//" if missed else None,
                             edgecolor="black" if missed else None)
            if seconds is not None:
                time_ax.bar(x, seconds, width, color=f"C{k}", label=label)
                labelled[k] = True
            if missed:
                time_ax.plot(x, 0.02, "x", color=f"C{k}", ms=8,
                             label=None if k in missed_labelled else f"{method}: not reached, no time")
                missed_labelled.add(k)
    steps_ax.bar(0, 0, 0, color="white", hatch="//", edgecolor="black",
                 label="hatched: not reached (stopped at max_steps)")
    for ax, label in ((steps_ax, "steps"), (time_ax, "wall time (s)")):
        ax.set_yscale("log")
        ax.set_xticks(range(len(cases)), cases, fontsize=8)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    steps_ax.set_title("steps to the stop")
    time_ax.set_ylim(bottom=0.01)
    time_ax.set_title("wall time (100x100 row: first calls, compilation included)")
    fig.suptitle("stiff_tails.py: Tsit5, Kvaerno5, the old two-way switch and "
                 'solver="auto"')
    fig.tight_layout()
    return fig


def plot_long_horizon(plt):
    header, rows = table("long_horizon")
    problems = [r[0] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for k, column in enumerate(header[1:3]):
        xs = [i + (k - 0.5) * 0.38 for i in range(len(rows))]
        left.bar(xs, [number(r[1 + k]) for r in rows], 0.38, label=column)
    left.axhline(1.0, color="black", lw=1, ls="--", label="ratio 1: no extra steps past T")
    left.set_yscale("log")
    left.set_xticks(range(len(rows)), problems)
    left.set_ylabel("steps to 20 T / steps to T")
    left.set_title("steps past convergence")
    left.legend(fontsize=8)
    right.bar(range(len(rows)), [number(r[3]) for r in rows], 0.5, color="C1",
              label=header[3])
    right.set_yscale("log")
    right.set_ylim(top=0.3)
    right.set_xticks(range(len(rows)), problems)
    right.set_ylabel("time to 20 T, as a fraction of Tsit5's")
    right.set_title('solver="auto" against Tsit5, to 20 T')
    right.legend(fontsize=8)
    fig.suptitle("long_horizon.py: factor flow, d = 20, depth 3")
    fig.tight_layout()
    return fig


def plot_auto_overhead(plt):
    header, rows = table("auto_overhead")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, column in enumerate(header[1:]):
        xs = [i + (k - 0.5) * 0.38 for i in range(len(rows))]
        ax.bar(xs, [number(r[1 + k]) for r in rows], 0.38, label=column)
    ax.axhline(1.0, color="black", lw=1, ls="--", label="Tsit5 (ratio 1)")
    ax.set_xticks(range(len(rows)), [f"d = {r[0]}" for r in rows])
    ax.set_ylabel("wall time / Tsit5's")
    ax.set_title("auto_overhead.py: a flow that is not stiff (sensing, t1 = 60)")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_ylim(0, 1.5)
    return fig


PLOTS = {
    "call_overhead": plot_call_overhead,
    "controller": plot_controller,
    "stiff_tails": plot_stiff_tails,
    "long_horizon": plot_long_horizon,
    "auto_overhead": plot_auto_overhead,
}


def make_benchmark_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(exist_ok=True)
    for name, plot in PLOTS.items():
        fig = plot(plt)
        target = FIGURES / f"bench_{name}.png"
        fig.savefig(target, dpi=100, bbox_inches="tight")
        plt.close(fig)
        print(f"  {target.relative_to(DOCS.parent)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["studies", "benchmarks"])
    parser.add_argument("--studies", nargs="+", choices=list(STUDIES), default=list(STUDIES),
                        help="which studies to run (default: all)")
    args = parser.parse_args(argv)
    if args.only != "benchmarks":
        make_study_figures(args.studies)
    if args.only != "studies":
        make_benchmark_figures()


if __name__ == "__main__":
    main()
