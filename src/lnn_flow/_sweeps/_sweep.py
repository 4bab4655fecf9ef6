"""Studies: a grid of configurations times a set of seeds, run group by group.

A study is a plain TOML or JSON file (read as data, never executed):

    name = "sensing_depths"
    problem = "matrix_sensing"      # or "matrix_completion"; "tensor_completion",
                                    # "tensor_sensing" (methods "tensor", "hierarchical")
    method = "factor"               # or "end_to_end", "descent", "modified_factor",
                                    # "tensor", "hierarchical"
    seeds = 32                      # seeds 0..31, or a list such as [3, 7, 11]

    [fixed]                         # one value per parameter
    d_in = 20
    d_out = 20
    t1 = 60.0

    [grid]                          # lists of values; every combination is run
    depth = [2, 3]
    init_scale = [1e-3, 1e-2]
    num_measurements = [80, 160]

Tensor studies (Section 5) take `method = "tensor"` (the CP flow, `lnn_flow.tensor`),
`problem = "tensor_completion"` or `"tensor_sensing"`, and set `shape` (a list: the
tensor's sizes), `components` (R) and optionally `truth_norms` and `rank_cutoff` in
place of the matrix parameters (`d_in`, `d_out`, `depth`, `hidden_width` and descent's
`lr`, `steps`, `save_every`, which a tensor study refuses, as a matrix study refuses the
tensor ones). Their groups add the component norms over the saves and at the end and
the effective tensor rank (`_tensor_arrays`).

Hierarchical studies (`method = "hierarchical"`, the hierarchical tensor factorization
of `lnn_flow.hierarchical`) take the same problems and problem parameters, with
`widths` (one int, or one per depth of internal nodes, root first), `tree` (nested lists
of the modes, e.g. `[[0, 1], [2, 3]]`; default the balanced binary tree, written into
each configuration) and `output` (the root's output matrix) in place of `components`;
`init_scale` is each weight matrix's Frobenius norm (balanced) or the entry std
(gaussian). Their groups add the local component norms per internal node over the saves
and at the end, how many carry the solution at each node (`rank_cutoff`), the singular
values and effective ranks of the matricizations of every non-root node, and the final
weights (`_hierarchical_arrays`).

Parameters not given take the defaults in `PARAMETERS` (`atol` unset: each flow's own
default, the end-to-end flow's scaled to its initial matrix). One configuration solved from all
seeds is a *group*: one `solve_batch` call (seeds vmapped, sharded over the devices)
and one result file pair (see `lnn_flow._sweeps._store`). Groups are ordered so that those with
the same shapes and static options run one after another; times, tolerances, scales and
step sizes are traced, so each distinct shape compiles once. Each group is written as
soon as it finishes; running the same study into the same directory again skips the
groups already written (and says how many), so a killed study resumes and loses nothing.
A group is loaded only if its arrays match their checksum, its labels match theirs, and
its labelled configuration is the one its file name was computed from: a hand-edited
label (say `init_scale`) is refused, never read as a relabelling of computed results.

Seed `s` draws its initialization from `fold_in(PRNGKey(s), 1)`; the problem instance
(shared by all seeds) from `fold_in(PRNGKey(problem_seed), 0)`.

This module solves and runs groups (`solve_group`, `run_sweep`); the study's validation
is `lnn_flow._sweeps._sweep_schema`, the plan and reading groups back `lnn_flow._sweeps._sweep_plan`,
the statistics `lnn_flow._sweeps._sweep_summary`. Their public names are re-exported here.
"""

import contextlib
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

from . import _store
from .. import hierarchical, init, problems, tensor
from .._batching._batch import solve_batch
from .._maths._cp import effective_tensor_rank, saved_component_norms
from .._maths._network import end_to_end, unbalancedness
from .._batching._methods import METHODS as REGISTRY
from ._store import CorruptResultError, Group
from ._sweep_schema import (
    FAMILIES,
    INITS,
    METHODS,
    PARAMETERS,
    PROBLEMS,
    Parameter,
    Study,
    family,
    load_study,
    parse_study,
    hierarchical_tree,
    save_times,
    solver_class,
)
from ._sweep_plan import (
    check_directory,
    claim,
    config_id,
    load_if_complete,
    load_sweep,
    planned_groups,
    versions,
)
from ._sweep_summary import QUANTILES, effective_rank, format_summary, summarize


def _problem(study: Study, config: dict[str, Any]):
    key = jax.random.fold_in(jax.random.PRNGKey(config["problem_seed"]), 0)
    if family(study.method) == "tensor":
        make = {
            "tensor_sensing": problems.random_tensor_sensing,
            "tensor_completion": problems.random_tensor_completion,
        }[study.problem]
        return make(key, config["shape"], config["rank"], config["num_measurements"],
                    component_norms=config["truth_norms"])
    shape = (config["d_out"], config["d_in"])
    make = {
        "matrix_sensing": problems.random_matrix_sensing,
        "matrix_completion": problems.random_matrix_completion,
    }[study.problem]
    return make(key, shape, config["rank"], config["num_measurements"])


def _initial_factors(config: dict[str, Any], seeds: Sequence[int], method: str):
    """Seed `s`'s init from `fold_in(PRNGKey(s), 1)`: the network's factors, the
    CP factors of the tensor method or the weights of the hierarchical one (pre-order,
    on the configuration's tree), `init` balanced or gaussian at `init_scale`."""
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 1) for s in seeds])
    scale = config["init_scale"]
    if method == "hierarchical":
        draw = {"balanced": hierarchical.balanced,
                "gaussian": hierarchical.gaussian}[config["init"]]
        tree, output = hierarchical_tree(config), config["output"]
        make = lambda key: draw(key, config["shape"], config["widths"], scale, tree=tree,
                                output=output)
    elif family(method) == "tensor":
        draw = {"balanced": tensor.balanced, "gaussian": tensor.gaussian}[config["init"]]
        make = lambda key: draw(key, config["shape"], config["components"], scale)
    else:
        dims = (config["d_in"], *config["hidden_width"], config["d_out"])
        draw = {"balanced": init.balanced, "gaussian": init.gaussian}[config["init"]]
        make = lambda key: draw(key, dims, scale)
    return jax.vmap(make)(keys)


def _singular_values(W):
    return np.linalg.svd(W, compute_uv=False)


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
    ws0 = _initial_factors(config, seeds, study.method)
    ts = save_times(config)
    method = REGISTRY[study.method]
    if not method.ode:
        sol = solve_batch(
            study.method, loss, ws0, config["lr"], config["steps"],
            save_every=config["save_every"], devices=devices,
        )
    else:
        options = dict(
            solver="auto" if config["solver"] == "auto" else solver_class(
                config["solver"])(),
            rtol=config["rtol"],
            max_steps=config["max_steps"],
            loss_threshold=config["loss_threshold"],
            progress_meter=progress_meter,
            devices=devices,
        )
        if config["atol"] is not None:  # else the flow's own default
            options["atol"] = config["atol"]
        # A factor method starts from the factors, the end-to-end flow from their
        # product (balanced: Theorem 1) and takes the depth.
        init, args = (ws0, ()) if method.factors else (
            jax.vmap(end_to_end)(ws0), (config["depth"],)
        )
        if study.method == "modified_factor":  # descent's step size, the order
            options.update(lr=config["lr"], order=config["order"])
        if study.method == "hierarchical":  # the flow's keyword-only tree and output
            options.update(tree=hierarchical_tree(config), output=config["output"])
        sol = solve_batch(study.method, loss, init, *args, config["t1"], ts, **options)
    final = np.asarray(sol.end_to_end_final)
    truth = np.asarray(truth)
    entries = tuple(range(1, final.ndim))
    arrays = {
        "seed": np.asarray(seeds, dtype=np.int64),
        "ts": np.asarray(sol.ts)[0],
        "loss": sol.loss,
        "reached": sol.reached,
        "end_to_end": sol.end_to_end,
        "t_final": sol.t_final,
        "loss_final": sol.loss_final,
        "end_to_end_final": final,
        "relative_error_final": np.sqrt(np.sum((final - truth) ** 2, axis=entries))
        / np.linalg.norm(truth),
        "truth": truth,
        "success": sol.success,
        "stopped": sol.stopped,
        "finite": sol.finite,
        "message": np.asarray(sol.message, dtype=str),
        "num_steps": sol.stats.num_steps,
    }
    if sol.switching is not None:  # solver "auto"
        arrays["num_implicit_steps"] = sol.switching.num_implicit_steps
        arrays["num_chebyshev_steps"] = sol.switching.num_chebyshev_steps
        arrays["num_switches"] = sol.switching.num_switches
    if study.method == "hierarchical":
        arrays.update(_hierarchical_arrays(sol, ws0, config))
        return {k: np.asarray(v) for k, v in arrays.items()}
    if family(study.method) == "tensor":
        arrays.update(_tensor_arrays(sol, ws0, config["rank_cutoff"]))
        return {k: np.asarray(v) for k, v in arrays.items()}
    singular = _singular_values(final)
    arrays["singular_values_final"] = singular
    arrays["effective_rank_final"] = effective_rank(singular)
    if sol.factors_final is not None:
        unbalanced = jax.vmap(unbalancedness)
        arrays["unbalancedness_initial"] = unbalanced(ws0)
        arrays["unbalancedness_final"] = unbalanced(tuple(sol.factors_final))
        for j, w in enumerate(sol.factors_final, start=1):
            arrays[f"factor_final_{j}"] = w
    return {k: np.asarray(v) for k, v in arrays.items()}


def _tensor_arrays(sol, fs0, cutoff: float) -> dict[str, Any]:
    """A tensor group's own arrays: component norms `||W_r||` over the saves and at
    the end, the effective tensor rank (components with a final norm of at least
    `cutoff` times the largest, as in `lnn_flow.studies.tensor_study`), the CP
    unbalancedness at the start and the end, and the final CP factors."""
    norms = saved_component_norms(sol.factors)  # NaN at saves not reached
    final = saved_component_norms(sol.factors_final)
    unbalanced = jax.vmap(tensor.unbalancedness)
    arrays = {
        "component_norms": norms,
        "component_norms_final": final,
        "effective_tensor_rank_final": effective_tensor_rank(final, cutoff),
        "unbalancedness_initial": unbalanced(fs0),
        "unbalancedness_final": unbalanced(tuple(sol.factors_final)),
    }
    for n, f in enumerate(sol.factors_final, start=1):
        arrays[f"factor_final_{n}"] = f
    return arrays


def _hierarchical_arrays(sol, ws0, config: dict[str, Any]) -> dict[str, Any]:
    """A hierarchical group's own arrays (`lnn_flow.hierarchical`), the internal nodes
    in pre-order (root first) and the non-root nodes in pre-order:

    - `local_component_norms` `(seeds, saves, C)` (NaN at saves not reached) and
      `local_component_norms_final` `(seeds, C)`: every internal node's local component
      norms, concatenated in node order (`C` the sum of the widths);
      `local_component_node` `(C,)`: the internal node (its index) of each column;
    - `local_rank_final` `(seeds, internal nodes)`: per node, how many local components
      have a final norm of at least `rank_cutoff` times the node's largest (those
      carrying the solution; the counts bound the hierarchical rank);
    - `matricization_singular_values_final` `(seeds, S)`: the singular values of the
      final tensor's matricization of every non-root node's modes against the rest,
      concatenated in node order; `matricization_node` `(S,)`: the node of each column;
      `matricization_effective_rank_final` `(seeds, non-root nodes)`: their effective
      ranks (`effective_rank`);
    - `unbalancedness_initial`, `_final` `(seeds,)`: the largest `|.|` of the conserved
      quantities (`lnn_flow.hierarchical.unbalancedness`; zero for a balanced init);
    - `factor_final_1..K`: the final weights in pre-order."""
    tree, output = hierarchical_tree(config), config["output"]

    def norms(ws):
        return jnp.concatenate(hierarchical.local_component_norms(ws, tree, output))

    def unbalanced(ws):
        return jnp.max(jnp.abs(hierarchical.unbalancedness(ws, tree, output)))

    def spectra(W):
        return jnp.concatenate(hierarchical.matricization_singular_values(W, tree))

    per_node = [np.asarray(n) for n in hierarchical.local_component_norms(
        tuple(w[0] for w in ws0), tree, output)]
    node = np.concatenate([np.full(n.shape, i) for i, n in enumerate(per_node)])
    saved = np.asarray(jax.vmap(jax.vmap(norms))(tuple(sol.factors)))  # NaN stays NaN
    final = np.asarray(jax.vmap(norms)(tuple(sol.factors_final)))
    ranks = np.stack([
        effective_tensor_rank(final[:, node == i], config["rank_cutoff"])
        for i in range(len(per_node))
    ], axis=1)
    sizes = [np.asarray(s).shape for s in hierarchical.matricization_singular_values(
        np.asarray(sol.end_to_end_final[0]), tree)]
    where = np.concatenate([np.full(s, i) for i, s in enumerate(sizes)])
    singular = np.asarray(jax.vmap(spectra)(jnp.asarray(sol.end_to_end_final)))
    arrays = {
        "local_component_norms": saved,
        "local_component_norms_final": final,
        "local_component_node": node,
        "local_rank_final": ranks,
        "matricization_singular_values_final": singular,
        "matricization_node": where,
        "matricization_effective_rank_final": np.stack(
            [effective_rank(singular[:, where == i]) for i in range(len(sizes))], axis=1),
        "unbalancedness_initial": jax.vmap(unbalanced)(tuple(ws0)),
        "unbalancedness_final": jax.vmap(unbalanced)(tuple(sol.factors_final)),
    }
    for j, w in enumerate(sol.factors_final, start=1):
        arrays[f"factor_final_{j}"] = w
    return arrays


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
    with _store.directory_lock(directory) if writer else contextlib.nullcontext():
        return _run_sweep(study, directory, writer, devices, progress, solve_progress)


def _run_sweep(study: Study, directory: Path, writer: bool, devices, progress: bool,
               solve_progress: bool) -> list[Group]:
    if writer:
        _store.remove_temporaries(directory)
    claim(directory, study, writer)
    plan = planned_groups(study)
    interrupted = check_directory(directory, plan) if writer else []
    done = {
        name: load_if_complete(directory, name, config) if writer else None
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
            _warn_short_trajectories(name, config, arrays)
            meta = _labels(study, name, config, arrays, start, devices)
            if writer:
                done[name] = _store.write_group(directory, name, arrays, meta)
            bar.update()
    if not writer:
        return []
    groups = [done[name] for name, _ in plan]
    _store.write_json(directory / "summary.json", summarize(groups))
    return groups




def _warn_short_trajectories(name: str, config: dict[str, Any], arrays) -> None:
    """Warn where seeds reached fewer than 2 saves: their stored trajectory is the
    initial state alone (every later save NaN), so "over time" shows nothing."""
    reached = np.asarray(arrays["reached"]).sum(axis=1)
    short = np.flatnonzero(reached < 2)
    if short.size:
        ends = np.asarray(arrays["t_final"])[short]
        warnings.warn(
            f"{name}: {short.size} of {reached.size} seeds (seeds "
            f"{np.asarray(arrays['seed'])[short].tolist()}) ended (t_final "
            f"{ends.min():.3g}..{ends.max():.3g}) before their second save at t = "
            f"{float(np.asarray(arrays['ts'])[1]):.3g}: their trajectory holds t = 0 "
            f"only. Use save_times = 'log' (now {config['save_times']!r}) or a smaller "
            "t1.",
            stacklevel=3,
        )


def _labels(study: Study, name: str, config: dict[str, Any], arrays, start: float,
            devices) -> dict[str, Any]:
    """The label file of a solved group: its configuration, seeds, save times, the
    solver's message per seed ("" = success; strings, so popped from `arrays`), wall
    time, where it ran, the whole study and the package versions."""
    return {
        "study_name": study.name,
        "config_id": name.rsplit("-", 1)[-1],
        "config": config,
        "seeds": list(study.seeds),
        "ts": arrays["ts"].tolist(),
        "messages": arrays.pop("message").tolist(),
        "started": start,
        "wall_time_s": time.time() - start,
        "backend": jax.default_backend(),
        "devices": len(devices) if devices is not None else jax.device_count(),
        "study": study.as_dict(),
        "versions": versions(),
    }


__all__ = [
    "CorruptResultError", "FAMILIES", "Group", "INITS", "METHODS", "PARAMETERS", "PROBLEMS",
    "Parameter", "QUANTILES", "Study", "effective_rank", "format_summary",
    "config_id", "family", "load_study", "load_sweep", "parse_study", "planned_groups",
    "save_times", "summarize",
]
