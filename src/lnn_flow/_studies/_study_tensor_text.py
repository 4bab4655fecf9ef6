"""The prose of the tensor study's report ([`lnn_flow._studies._study_tensor`][]): the
definitions, then what the run found, every number formatted from its rows or
parameters (so the report states nothing it did not compute)."""

import math
from typing import Any

Rows = list[dict[str, Any]]


def findings(tables: dict[str, Rows], parameters: dict[str, Any]) -> str:
    """The report's description: definitions, then parts a, b and c."""
    p = parameters
    text = [
        "Section 5 (arithmetic networks; Razin, Maman & Cohen): tensor completion of a "
        f"planted tensor of CP rank {p['rank']} ({_truth(p.get('truth_norms'))}) by "
        "the CP gradient flow "
        f"(`lnn_flow.tensor.flow`) from balanced inits of {p['components']} "
        "components. Relative error is `||W - W*||_F / ||W*||_F`. A component carries "
        f"the solution when its final norm is at least {p['cutoff']:g} of the largest; "
        "the effective tensor rank is the number of components that carry it (an "
        "upper bound on the CP rank of the solution at that tolerance), an integer; "
        "the unfolding effective rank is a continuous one, `exp(entropy(s / sum s))` "
        "of the singular values `s` of the mode-1 unfolding (Roy & Vetterli), equal "
        "to `r` for `r` equal nonzero values. A carrying "
        f"component switches on when `||W_r(t)||` first reaches {p['fraction']:g} of "
        "its final value (log-spaced saves, log-log interpolated). Every solve stops "
        "at the loss threshold `loss_reduction * l(0)`; one stopped by `max_steps` "
        "before it is not finished: its values are flagged `(not finished)` or left "
        "out of the seed statistics, which are over the finished seeds only.",
        _greedy(tables["recovery"], tables["components"]),
        _init_scale(tables["init_scale"]),
        _matrix_view(tables["matrix_view"]),
    ]
    return " ".join(t for t in text if t)


def _truth(norms) -> str:
    """How the truth's components were scaled (the study's `truth_norms`)."""
    if norms is None:
        return "Gaussian factors, the tensor scaled to norm sqrt(rank)"
    return (f"Gaussian directions, component norms evenly spaced from {norms[0]:g} "
            f"down to {norms[1]:g}")


def _greedy(recovery: Rows, components: Rows) -> str:
    """Part a: per order, error, effective rank and the switch-on order."""
    text = []
    for rec in recovery:
        mine = [r for r in components if r["order"] == rec["order"]]
        head = (f"(a) Order {rec['order']} ({rec['shape']}, {rec['observed']} observed "
                "entries, the first init)")
        if not rec["finished"]:
            text.append(f"{head}: not finished ({rec['steps']} steps, train loss "
                        f"{rec['train_loss']:.3g}), so no result is read from it.")
            continue
        on = sorted((r for r in mine if r["carries"] and math.isfinite(r["switch_on_time"])),
                    key=lambda r: r["switch_on_time"])
        said = ", ".join(f"t = {r['switch_on_time']:.3g} (truth component of norm "
                         f"{r['truth_norm']:.4g})" for r in on)
        truth = [r["truth_norm"] for r in on]
        ordered = truth == sorted(truth, reverse=True)
        text.append(
            f"{head}: relative error {rec['relative_error']:.3g}; "
            f"{rec['effective_tensor_rank']} components carry the solution (truth: CP "
            f"rank {rec['truth_rank']}). They switched on at {said}"
            + (", largest truth component first." if ordered and len(on) > 1 else
               ", not in order of the truth's norms." if len(on) > 1 else ".")
        )
    return " ".join(text)


def _init_scale(rows: Rows) -> str:
    """Part b: median error and tensor rank by init scale, per number of entries."""
    text = []
    for m in dict.fromkeys(r["observed"] for r in rows):
        mine = [r for r in rows if r["observed"] == m]
        cells = "; ".join(
            f"{r['scale']:g}: error {r['error_median']:.3g}, rank "
            f"{r['tensor_rank_median']:g} ({r['finished']} of {r['seeds']} finished)"
            if r["finished"] else f"{r['scale']:g}: none of {r['seeds']} finished"
            for r in mine)
        text.append(f"(b) {m} observed entries, median over finished seeds by init "
                    f"scale: {cells}.")
    return " ".join(text)


def _matrix_view(rows: Rows) -> str:
    """Part c: the CP flow against the factor flow on the unfolded entries."""
    text = []
    for m in dict.fromkeys(r["observed"] for r in rows):
        said = [
            f"{r['flow']}: {r['error_median']:.3g} (unfolding effective rank "
            f"{r['unfolding_effective_rank_median']:.3g}; {r['finished']} of "
            f"{r['seeds']} finished)" if r["finished"]
            else f"{r['flow']}: none of {r['seeds']} finished"
            for r in rows if r["observed"] == m
        ]
        text.append(f"(c) {m} observed entries, `mode-1` unfolding, median relative "
                    f"error of " + "; ".join(said) + ".")
    return " ".join(text)
