"""Sweep summaries: per configuration, across seeds, the statistics a reader compares
(failures, unfinished solves; median and quantiles of the final loss, effective rank
(tensor studies: effective tensor rank and the component norms; hierarchical studies:
per node the local components carrying the solution, the matricizations' effective
ranks and the local component norms), relative error, unbalancedness), as rows, a
printed table, and a report (table and figure).

A solve is *unfinished* when its configuration sets `loss_threshold` and it ended
(successfully, at `t1`) without reaching it: its statistics are those of a solve cut
short, not of a converged one. One rule for every summary, as for the studies
(`lnn_flow.studies.tensor_study`): the statistics are over *finished* seeds only
(successful, and stopped at the threshold where one is set); failures and unfinished
solves are counted next to them, and a configuration with none finished has NaN
statistics (`null` in JSON), never the median of what failed."""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._reports import _table
from ._store import Group

if TYPE_CHECKING:
    from .._reports._report import Report


def effective_rank(s: np.ndarray) -> np.ndarray:
    """Effective rank `exp(entropy(s / sum(s)))` of singular values `s` (last axis)
    (Roy & Vetterli 2007): a continuous rank, `r` for `r` equal nonzero values, 0 for
    the zero matrix."""
    s = np.asarray(s, dtype=float)
    total = s.sum(axis=-1, keepdims=True)
    p = s / np.where(total > 0, total, 1.0)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), -1)
    return np.where(total[..., 0] > 0, np.exp(entropy), 0.0)


QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def summarize(groups: Sequence[Group]) -> list[dict[str, Any]]:
    """Per configuration, across seeds: failures, unfinished solves, finished seeds
    (see the module docstring), and over the finished seeds only the median and
    quantiles of the final loss, effective rank (or effective tensor rank), relative
    error, steps and unbalancedness. Tensor groups add `component_norms_final`: per
    quantile, the component norms sorted largest first. Hierarchical groups add, per
    quantile, `local_rank_final` and `matricization_effective_rank_final` (one value per
    internal, resp. non-root, node) and `local_component_norms_final` (one list per
    internal node, sorted largest first)."""
    rows = []
    for group in groups:
        a = group.arrays
        row = {
            "config_id": group.meta["config_id"],
            "config": group.config,
            "seeds": int(a["seed"].shape[0]),
            "failures": int(np.sum(~a["success"])),
            "unfinished": unfinished(a, group.config),
        }
        done = finished(a, group.config)
        row["finished"] = int(np.sum(done))
        stats = ["loss_final", "effective_rank_final", "effective_tensor_rank_final",
                 "relative_error_final", "num_steps", "unbalancedness_final"]
        for name in stats:
            if name in a:
                row[name] = _quantiles(a[name][done].astype(float), axis=0)
        if "component_norms_final" in a:
            norms = -np.sort(-a["component_norms_final"][done].astype(float), axis=1)
            row["component_norms_final"] = {
                q: v.tolist() for q, v in _quantiles(norms, axis=0).items()
            }
        for name in ("local_rank_final", "matricization_effective_rank_final"):
            if name in a:
                row[name] = {q: np.asarray(v).tolist() for q, v in
                             _quantiles(a[name][done].astype(float), axis=0).items()}
        if "local_component_norms_final" in a:
            node = np.asarray(a["local_component_node"])
            values = a["local_component_norms_final"][done].astype(float)
            per_node = [_quantiles(-np.sort(-values[:, node == i], axis=1), axis=0)
                        for i in range(int(node.max()) + 1)]
            row["local_component_norms_final"] = {
                q: [np.asarray(p[q]).tolist() for p in per_node] for q in per_node[0]
            }
        rows.append(row)
    return rows


def finished(arrays, config: dict[str, Any]) -> np.ndarray:
    """Per seed: the solve succeeded and, where the configuration sets
    `loss_threshold`, stopped there."""
    done = np.asarray(arrays["success"], bool)
    if config.get("loss_threshold") is not None:
        done = done & np.asarray(arrays["stopped"], bool)
    return done


def unfinished(arrays, config: dict[str, Any]) -> int:
    """Solves that ended successfully without reaching the configuration's
    `loss_threshold` (0 when it sets none: then every success is finished)."""
    if config.get("loss_threshold") is None:
        return 0
    return int(np.sum(arrays["success"] & ~arrays["stopped"]))


def _quantiles(values: np.ndarray, axis: int) -> dict[str, Any]:
    """NaN-aware quantiles over `axis`; NaN where no value is left (no seed finished)."""
    empty = np.full(np.delete(values.shape, axis), np.nan)
    quantile = (lambda q: empty) if values.shape[axis] == 0 else (
        lambda q: np.nanquantile(values, q, axis=axis))
    out = {f"q{round(100 * q):02d}": quantile(q) for q in QUANTILES}
    out["median"] = out.pop("q50")
    return {k: v if np.ndim(v) else float(v) for k, v in out.items()}


def format_summary(rows: Sequence[dict[str, Any]], varying: Sequence[str]) -> str:
    """A plain-text table of `summarize` rows, one line per configuration (tensor
    studies: the effective tensor rank, and the median component norms; hierarchical
    studies: per internal node the median count of local components carrying the
    solution, per non-root node the matricization's median effective rank, and the
    median local component norms, nodes separated by `|`)."""
    tensor = any("effective_tensor_rank_final" in row for row in rows)
    hier = any("local_rank_final" in row for row in rows)
    rank = "effective_tensor_rank_final" if tensor else "effective_rank_final"
    header = [*varying, "seeds", "fail", "unfin", "fin", "loss med", "loss q10", "loss q90",
              "local ranks med" if hier else "tensor rank" if tensor else "eff rank",
              "rel err", "unbal med"]
    if tensor:
        header.append("component norms med")
    if hier:
        header += ["matricization eff ranks med", "local norms med"]
    body = []
    for row in rows:
        def stat(name, q="median"):
            return f"{row[name][q]:.3g}" if name in row else "-"

        line = [
            *(str(row["config"][k]) for k in varying),
            str(row["seeds"]), str(row["failures"]), str(row.get("unfinished", 0)),
            str(row.get("finished", "-")), stat("loss_final"), stat("loss_final", "q10"), stat("loss_final", "q90"),
            _values(row, "local_rank_final") if hier else stat(rank),
            stat("relative_error_final"), stat("unbalancedness_final"),
        ]
        if hier:
            norms = row.get("local_component_norms_final", {}).get("median", [])
            line += [_values(row, "matricization_effective_rank_final"),
                     " | ".join(" ".join(f"{x:.2g}" for x in n) for n in norms) or "-"]
        if tensor:
            norms = row.get("component_norms_final", {}).get("median", [])
            line.append(" ".join(f"{x:.2g}" for x in norms) or "-")
        body.append(line)
    return _table.aligned(header, body)


def _values(row: dict[str, Any], name: str) -> str:
    """The medians of a per-node statistic, space-separated ("-" where absent)."""
    values = row.get(name, {}).get("median", [])
    return " ".join(f"{x:.3g}" for x in values) or "-"


def report_rows(
    rows: Sequence[dict[str, Any]], varying: Sequence[str]
) -> list[dict[str, Any]]:
    """`summarize` rows flattened for a report table: the varying parameters, seeds,
    failures, unfinished solves, finished seeds, and over these the median, q10 and q90
    of the final loss, effective rank (or effective tensor rank) and error (hierarchical
    studies: the per-node medians of the local ranks and matricization effective
    ranks, as lists)."""
    flat_rows = []
    for row in rows:
        flat = {k: row["config"][k] for k in varying}
        flat.update(seeds=row["seeds"], failures=row["failures"],
                    unfinished=row.get("unfinished", 0),
                    finished=row["finished"])
        for stat in ("loss_final", "effective_rank_final", "effective_tensor_rank_final",
                     "relative_error_final"):
            if stat in row:
                for q in ("median", "q10", "q90"):
                    flat[f"{stat}_{q}"] = row[stat][q]
        for stat in ("local_rank_final", "matricization_effective_rank_final"):
            if stat in row:  # hierarchical: one median per node
                flat[f"{stat}_median"] = row[stat]["median"]
        flat_rows.append(flat)
    return flat_rows


def sweep_report(study, groups: Sequence[Group], source: str, groups_dir) -> "Report":
    """A finished sweep as a report folder: the `report_rows` table and `loss_figure`,
    saying where the arrays of every group are (`groups_dir`, read by `load_sweep`)."""
    from .._reports import _figures
    from .._reports._report import Report

    rows = report_rows(summarize(groups), list(study.grid))
    return Report(
        name=study.name,
        title=f"Sweep {study.name}",
        description=(
            f"{len(groups)} configurations x {len(study.seeds)} seeds from {source}; the "
            f"arrays of every group are in {groups_dir} (lnn_flow.load_sweep). "
            "Statistics are over the finished seeds of each configuration (successful, "
            "and stopped at `loss_threshold` where one is set); failed and unfinished "
            "seeds are counted beside them, and a configuration with none finished "
            "has no statistics."
        ),
        tables={"summary": rows},
        figures={"final_loss": _figures.sweep_loss_figure(rows, list(study.grid), study.name)},
        parameters={"study_file": source, **{k: list(v) for k, v in study.grid.items()}},
    )
