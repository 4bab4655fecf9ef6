"""Sweep summaries: per configuration, across seeds, the statistics a reader compares
(failures; median and quantiles of the final loss, effective rank, relative error,
unbalancedness), as rows, a printed table, and a report (table and figure)."""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _table
from ._store import Group

if TYPE_CHECKING:
    from ._report import Report


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
    """Per configuration, across seeds: failures, and the median and quantiles of the
    final loss, effective rank, relative error and unbalancedness (NaN-aware; failed
    solves keep their last values and are counted in `failures`)."""
    rows = []
    for group in groups:
        a = group.arrays
        row = {
            "config_id": group.meta["config_id"],
            "config": group.config,
            "seeds": int(a["seed"].shape[0]),
            "failures": int(np.sum(~a["success"])),
        }
        stats = ["loss_final", "effective_rank_final", "relative_error_final",
                 "num_steps", "unbalancedness_final"]
        for name in stats:
            if name in a:
                values = a[name].astype(float)
                row[name] = {
                    f"q{round(100 * q):02d}": float(np.nanquantile(values, q))
                    for q in QUANTILES
                }
                row[name]["median"] = row[name].pop("q50")
        rows.append(row)
    return rows


def format_summary(rows: Sequence[dict[str, Any]], varying: Sequence[str]) -> str:
    """A plain-text table of `summarize` rows, one line per configuration."""
    header = [*varying, "seeds", "fail", "loss med", "loss q10", "loss q90", "eff rank",
              "rel err", "unbal med"]
    body = []
    for row in rows:
        def stat(name, q="median"):
            return f"{row[name][q]:.3g}" if name in row else "-"

        body.append([
            *(str(row["config"][k]) for k in varying),
            str(row["seeds"]), str(row["failures"]),
            stat("loss_final"), stat("loss_final", "q10"), stat("loss_final", "q90"),
            stat("effective_rank_final"), stat("relative_error_final"),
            stat("unbalancedness_final"),
        ])
    return _table.aligned(header, body)


def report_rows(
    rows: Sequence[dict[str, Any]], varying: Sequence[str]
) -> list[dict[str, Any]]:
    """`summarize` rows flattened for a report table: the varying parameters, seeds,
    failures, and median, q10 and q90 of the final loss, effective rank and error."""
    flat_rows = []
    for row in rows:
        flat = {k: row["config"][k] for k in varying}
        flat.update(seeds=row["seeds"], failures=row["failures"])
        for stat in ("loss_final", "effective_rank_final", "relative_error_final"):
            if stat in row:
                for q in ("median", "q10", "q90"):
                    flat[f"{stat}_{q}"] = row[stat][q]
        flat_rows.append(flat)
    return flat_rows


def sweep_report(study, groups: Sequence[Group], source: str, groups_dir) -> "Report":
    """A finished sweep as a report folder: the `report_rows` table and `loss_figure`,
    saying where the arrays of every group are (`groups_dir`, read by `load_sweep`)."""
    from . import _figures
    from ._report import Report

    rows = report_rows(summarize(groups), list(study.grid))
    return Report(
        name=study.name,
        title=f"Sweep {study.name}",
        description=(
            f"{len(groups)} configurations x {len(study.seeds)} seeds from {source}; the "
            f"arrays of every group are in {groups_dir} (lnn_flow.load_sweep)."
        ),
        tables={"summary": rows},
        figures={"final_loss": _figures.sweep_loss_figure(rows, list(study.grid), study.name)},
        parameters={"study_file": source, **{k: list(v) for k, v in study.grid.items()}},
    )
