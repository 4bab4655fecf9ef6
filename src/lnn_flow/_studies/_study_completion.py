"""The matrix completion study: deep linear networks vs the minimum-nuclear-norm
solution (Supposition 1, Figure 2 of the notes); re-exported by `lnn_flow.studies`."""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from tqdm import tqdm  # tqdm.auto warns in Jupyter without ipywidgets

from .._core import _checks
from .._reports import _figures
from . import _figures_completion
from .. import init, problems
from . import _study_completion_tail as tail
from .._core._deprecation import renamed
from .._flows._factor import factor_flow
from .._maths._network import end_to_end
from ._nuclear import min_nuclear_norm_completion
from .._reports._report import Report
from ._study_rows import SOLVERS, effective_rank, solution_row, timer

# The numbers of observed entries of Figure 2's size.
DEFAULT_NUM_MEASUREMENTS = (1000, 2000, 4000, 8000)
# How the factors start (`init`): each maps (key, dims, scale) to factors whose
# end-to-end matrix has Frobenius norm `scale` (exactly / in expectation).
INITS = {"balanced": init.balanced, "independent": init.independent}
PROTOCOLS = {
    "balanced": "balanced init (Assumption 1) with ||W(0)||_F = {scale:g}",
    "independent": ("init of independent Gaussian factor entries with E ||W(0)||_F^2 = "
                    "{scale:g}^2 (the convention of Arora et al.'s implicit-regularization paper)"),
}


def completion_study(
    *,
    size: int = 100,
    rank: int = 5,
    num_measurements: Sequence[int] = DEFAULT_NUM_MEASUREMENTS,
    depths: Sequence[int] = (1, 2, 3, 4),
    scale: float = 1e-6,
    loss_reduction: float = 1e-10,
    seed: int = 0,
    progress: bool = False,
    counts: Sequence[int] | None = None,
    loss_reductions: Sequence[float] = (),
    scales: Sequence[float] = (),
    seeds: int = 3,
    tail_num_measurements: int | None = None,
    tail_depths: Sequence[int] = (2, 3),
    init: str = "balanced",
    solver: str = "auto",
) -> Report:
    """Matrix completion of a `size x size` rank-`rank` ground truth from each number of
    observed entries in `num_measurements` (one-hot measurements, sampled without
    replacement): the factor flow at each depth from a balanced init of Frobenius norm
    `scale`, stopped when the loss fell by `loss_reduction`, next to the
    minimum-nuclear-norm solution of eq. (10).

    `init`: "balanced" ([`lnn_flow.init.balanced`][]: Assumption 1, `||W(0)||_F =
    scale`) or "independent" ([`lnn_flow.init.independent`][]: independent Gaussian
    factors with `E ||W(0)||_F^2 = scale^2`, Arora et al. 2019b's convention).
    `solver`: "auto" ([`lnn_flow._solving._switching`][]: Tsit5 until the flow's tail turns
    stiff) or "tsit5".

    Supposition 1 says the network finds the minimum-nuclear-norm solution; with few
    observations deeper networks find solutions of lower rank and error instead. The
    defaults (init 1e-6, a 1e-10 loss reduction) are a regime where this shows at
    Figure 2's size: at 2000 of 100 x 100 entries depth 2 lands below the
    minimum-nuclear-norm error and depth 3 far below it (the run on the studies page of the docs); from
    `scale = 1e-3` stopped at 1e-6, depth 2 lands above it.

    With `loss_reductions` or `scales` given, a second table "stopping_and_scale" and
    figure show the error against the stop and the init scale (`seeds` inits per
    depth in `tail_depths` and scale: [`lnn_flow._studies._study_completion_tail`][]); its
    arguments are checked before anything is solved, recorded in `parameters` if used.

    `counts` is the deprecated name of `num_measurements` (a DeprecationWarning; removed
    in the next release).
    """
    num_measurements = renamed(
        "completion_study", "counts", "num_measurements", counts, num_measurements,
        unset=DEFAULT_NUM_MEASUREMENTS,
    )
    initialize = _checks.one_of("init", init, INITS)
    flow_solver = _checks.one_of("solver", solver, SOLVERS)
    plan = tail.check_arguments(loss_reductions, scales, seeds, tail_depths,
                                tail_num_measurements, num_measurements, size)
    key_problem, key_init = jax.random.split(jax.random.PRNGKey(seed))
    init_factors = lambda depth: initialize(key_init, (size,) * (depth + 1), scale)
    rows = []
    jobs = [(m, depth) for m in num_measurements for depth in (None, *depths)]
    truth_norm = None
    partial = ""
    try:
        for m, depth in tqdm(jobs, desc="completion", disable=not progress):
            loss, truth = problems.random_matrix_completion(
                key_problem, (size, size), rank, int(m)
            )
            truth_norm = float(jnp.sum(jnp.linalg.svd(truth, compute_uv=False)))
            rows.append(_solve(loss, truth, int(m), depth, init_factors, loss_reduction,
                               flow_solver))
    except KeyboardInterrupt:
        if not rows:
            raise
        # Ctrl-C: the solutions that finished make a partial report (`lnn-flow run`
        # writes it and exits 130); the second part is not started.
        partial = (f"interrupted (Ctrl-C) after {len(rows)} of {len(jobs)} solutions of "
                   "the first table; rerun to compute the rest")
    facts = {
        "truth_nuclear_norm": truth_norm,
        "truth_effective_rank": float(effective_rank(truth)),
    }
    parameters = dict(size=size, rank=rank, num_measurements=list(num_measurements),
                      depths=list(depths), scale=scale, loss_reduction=loss_reduction,
                      seed=seed, init=init, solver=solver)
    tables = {"completion": rows}
    figures = {"completion": _figures.completion_figure(rows, facts)}
    findings = _findings(rows, facts)
    if plan.m is not None and not partial:
        part = _stopping_and_scale(plan, rows, key_problem, size, rank, scale,
                                   loss_reduction, seed, progress, init)
        tables["stopping_and_scale"], figures["stopping_and_scale"], error, text = part
        facts["stopping_and_scale_min_nuclear_norm_error"] = error
        findings += " " + text
        parameters.update(plan.parameters())
    return Report(
        name="completion",
        title="Matrix completion: deep linear networks vs minimum nuclear norm",
        description=(
            "Supposition 1 (Figure 2 of the notes): solutions of the factor flow (eq. 2) "
            f"from a near-zero {PROTOCOLS[init].format(scale=scale)}, stopped once the "
            f"training loss fell by {loss_reduction:g} (solver {solver}), next to the "
            "minimum-nuclear-norm solution of eq. (10) (ADMM). Relative error is "
            "||W - W*||_F / ||W*||_F (its square is the mean squared error per entry "
            "of a ground truth scaled to entries of mean square 1, the test loss Arora "
            "et al.'s released code reports); effective rank is exp(entropy of sigma / sum "
            "sigma). Unlike the paper's runs (gradient descent or an adaptive optimizer "
            "on one sampled instance, stopped at a fixed training loss per observed "
            "entry), this is the gradient flow itself on this run's random instance. "
            + findings
        ),
        tables=tables,
        figures=figures,
        parameters=parameters,
        facts=facts,
        partial=partial,
    )


def _stopping_and_scale(plan, rows, key_problem, size, rank, scale, loss_reduction,
                        seed, progress, init_name
                        ) -> tuple[list[dict[str, Any]], Any, float, str]:
    """The second part ([`lnn_flow._studies._study_completion_tail`][]) on the problem with
    `plan.m` observed entries (the first table's problem at that count: the same key):
    its rows, figure, the minimum-nuclear-norm solution's error there (from the first
    table when it solved that count, else solved here) and its findings."""
    loss, truth = problems.random_matrix_completion(key_problem, (size, size), rank,
                                                    plan.m)
    reference = next((r for r in rows if r["depth"] == "-"
                      and r["observations"] == plan.m), None)
    if reference is None:
        reference = _solve(loss, truth, plan.m, None, None, None, None)
    error = reference["relative_error"]
    extra = tail.stopping_and_scale_rows(
        loss, truth, plan.m, depths=plan.depths, scales=plan.scales or (scale,),
        reductions=plan.reductions or (loss_reduction,), seeds=plan.seeds, seed=seed,
        progress=progress, initialize=INITS[init_name])
    figure = _figures_completion.stopping_and_scale_figure(extra, error, plan.m, scale)
    return extra, figure, error, tail.findings(extra, error, plan.m, scale)


def _solve(loss, truth, m, depth, init_factors, loss_reduction, solver) -> dict[str, Any]:
    """The row of one solution from `m` observed entries: the minimum-nuclear-norm one
    (`depth` None), or the factor flow at `depth` from `init_factors(depth)` solved by
    `solver` (a `factor_flow` solver)."""
    elapsed = timer()
    if depth is None:
        ref = min_nuclear_norm_completion(loss)
        jax.block_until_ready(ref.W)
        return solution_row("min nuclear norm", ref.W, truth, loss(ref.W), elapsed(),
                            ref.converged, observations=m, depth="-")
    ws0 = init_factors(depth)
    threshold = loss_reduction * float(loss(end_to_end(ws0)))
    # The stop is the loss threshold; the horizon is only a cap (`tail.HORIZON_PER_ENTRY`).
    sol = factor_flow(loss, ws0, tail.HORIZON_PER_ENTRY * m, loss_threshold=threshold,
                      max_steps=tail.MAX_STEPS, solver=solver)
    jax.block_until_ready(sol.end_to_end_final)
    return solution_row(f"depth {depth}", sol.end_to_end_final, truth, sol.loss_final,
                        elapsed(), sol.success & sol.stopped, observations=m, depth=depth)


def _findings(rows, facts) -> str:
    """What this run found, every number formatted from `rows` or `facts`."""
    text = [
        f"The ground truth has nuclear norm {facts['truth_nuclear_norm']:.4g} and "
        f"effective rank {facts['truth_effective_rank']:.4g}."
    ]
    for m in dict.fromkeys(r["observations"] for r in rows):
        mine = [r for r in rows if r["observations"] == m and r["success"]]
        if not mine:
            continue
        best = min(mine, key=lambda r: r["relative_error"])
        text.append(
            f"With {m} observed entries the lowest error is {best['relative_error']:.3g} "
            f"({best['solution']}, effective rank {best['effective_rank']:.3g})."
        )
    failed = [r for r in rows if not r["success"]]
    if failed:
        text.append(
            "Not finished (ADMM not converged, or the flow stopped by `max_steps` "
            "before the loss threshold), so not compared above: "
            + ", ".join(f"{r['solution']} at {r['observations']}" for r in failed)
            + "."
        )
    return " ".join(text)
