"""The diverging-norms study: the 2x2 matrix sensing example of Proposition 5, whose
loss can approach zero only as ||W|| diverges (Lemma 2); re-exported by
`lnn_flow.studies`."""

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from tqdm import tqdm  # tqdm.auto warns in Jupyter without ipywidgets

from .._core import _checks
from .._reports import _figures
from .. import theory
from .._flows._end_to_end import end_to_end_flow
from .._reports._report import Report, Untrusted
from ._study_rows import timer

# The reference solve's rtol, relative to the study's, and the relative agreement on
# det W expected of the study's solve (theory.determinant_track).
_REFERENCE_RTOL = 1e-2
_DET_AGREEMENT = 1e-2


def norms_study(
    *,
    depths: Sequence[int] = (2, 3, 4),
    W0: Sequence[Sequence[float]] = ((0.3, 0.1), (-0.05, 0.2)),
    t1: float = 5000.0,
    num_saves: int = 400,
    rtol: float = 1e-8,
    progress: bool = False,
) -> Report:
    """The 2x2 matrix sensing example of Proposition 5 from `det W(0) > 0`: every
    minimizer has `det = -1`, so by Lemma 2 the loss can approach zero only as
    `||W||` diverges, above the bound `c l^{-1/2} + c'`.

    Each depth is solved twice, at `rtol` and at `rtol * _REFERENCE_RTOL` (the
    reference): saves from the first one where the two disagree on `det W` by more than
    `_DET_AGREEMENT` relative, or where `det` changes sign (which Lemma 2 rules out),
    are past the precision floor. Values from there on are reported as
    [`Untrusted`][], never as results.
    """
    W0 = _checked_inputs(W0, t1, num_saves, rtol)
    loss = theory.proposition5_loss()
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-2, t1, num_saves - 1)])
    ts = ts.at[-1].set(t1)  # geomspace may round its end off t1
    rows, curves = [], {}
    for depth in tqdm(depths, desc="norms", disable=not progress):
        row, curves[depth] = _solve_depth(loss, W0, depth, ts, t1, rtol)
        rows.append(row)
    facts = {"reference_rtol": rtol * _REFERENCE_RTOL, "det_agreement": _DET_AGREEMENT}
    return Report(
        name="norms",
        title="Norms that diverge: Proposition 5",
        description=(
            "The loss `l(W) = 1/6 [(w12 - 1)^2 + (w21 - 1)^2 + w22^2]` (eq. 15) solved by "
            "the end-to-end flow from `det W(0) > 0`. Lemma 2 keeps `det W(t) > 0` while "
            "every minimizer has `det = -1`, so ||W|| grows without bound as the loss "
            "falls; the dashed line is the bound of Proposition 5 (Frobenius norm). Each "
            f"depth is also solved at rtol {facts['reference_rtol']:.3g}: from the first "
            "save where det W disagrees with that reference by more than "
            f"{facts['det_agreement']:g} relative, or changes sign, the computed "
            "trajectory is past the precision floor and its values are marked untrusted. "
            + _findings(rows)
        ),
        tables={"norms": rows},
        figures={"norm_vs_loss": _figures.norms_figure(curves, rows)},
        parameters=dict(depths=list(depths), W0=np.asarray(W0).tolist(), t1=t1,
                        num_saves=num_saves, rtol=rtol),
        facts=facts,
    )


def _checked_inputs(W0, t1, num_saves, rtol):
    """`W0` as a float array, once it and the other inputs are checked (before any
    solve)."""
    W0 = _checks.as_float_array("W0", W0)
    if W0.shape != (2, 2):
        raise ValueError(f"`W0` must be a 2x2 matrix; got shape {tuple(W0.shape)}")
    if not jnp.linalg.det(W0) > 0:
        raise ValueError(
            f"`W0` must have a positive determinant (Proposition 5); got det "
            f"{float(jnp.linalg.det(W0)):.3g}"
        )
    if not 0 < rtol < 1:
        raise ValueError(f"`rtol` must be in (0, 1); got {rtol}")
    if not t1 > 1e-2:
        raise ValueError(f"`t1` must be > 0.01 (saves are log-spaced from 0.01); got {t1}")
    if not num_saves >= 3:
        raise ValueError(f"`num_saves` must be >= 3; got {num_saves}")
    return W0


def _solve_depth(loss, W0, depth, ts, t1, rtol) -> tuple[dict[str, Any], tuple]:
    """One depth solved at `rtol` and against its reference: the table row, and the
    curves the figure draws."""
    elapsed = timer()
    sol = end_to_end_flow(loss, W0, depth, t1, ts, rtol=rtol, max_steps=200_000)
    reference = end_to_end_flow(loss, W0, depth, t1, ts, rtol=rtol * _REFERENCE_RTOL,
                                max_steps=200_000)
    track = theory.determinant_track(sol, reference, agreement=_DET_AGREEMENT)
    norms = jnp.linalg.norm(sol.end_to_end, axis=(1, 2))
    bound = theory.proposition5_norm_bound(sol.loss)
    curve = (ts, sol.loss, norms, track, sol.reached)
    trusted = np.asarray(sol.reached & ~track.at_precision_floor)
    last = int(np.flatnonzero(trusted)[-1]) if trusted.any() else None
    floor = bool(track.floor_reached)
    flag = (lambda v: Untrusted(v, "past floor")) if floor else float
    status = "; ".join(
        ["precision floor"] * floor
        + ([] if sol.success else [str(sol.message)])
        + ([] if reference.success else [f"reference: {reference.message}"])
    ) or "ok"
    row = {
        "depth": depth,
        "trusted_until_t": float(ts[last]) if last is not None else float("nan"),
        "loss_at_trusted_t": float(sol.loss[last]) if last is not None else float("nan"),
        "norm_at_trusted_t": float(norms[last]) if last is not None else float("nan"),
        "final_loss": flag(float(sol.loss_final)),
        "final_norm": flag(float(jnp.linalg.norm(sol.end_to_end_final))),
        "bound_holds": bool(jnp.all(jnp.where(trusted, norms >= bound, True))),
        # Saves where the bound says something (it is <= 0 for l >= l_0).
        "bound_positive_saves": int(jnp.sum(trusted & (bound > 0))),
        "det_sign_constant": bool(track.sign_constant),
        "precision_floor_reached": floor,
        "seconds": round(elapsed(), 3),
        "success": bool(sol.success) and not floor,
        "status": status,
    }
    return row, curve


def _findings(rows) -> str:
    """What each depth showed, every number formatted from `rows`."""
    text = []
    for r in rows:
        if r["precision_floor_reached"]:
            text.append(
                f"Depth {r['depth']}: trusted until t = {r['trusted_until_t']:.4g} "
                f"(loss {r['loss_at_trusted_t']:.3g}, ||W||_F "
                f"{r['norm_at_trusted_t']:.3g}); from the next save on det W disagrees "
                "with the reference or changes sign: the final loss and norm are marked "
                "(past floor) and the table's success is False."
            )
        elif r["success"]:
            text.append(
                f"Depth {r['depth']}: det W kept its sign to t = {r['trusted_until_t']:.4g}; "
                f"the loss fell to {r['final_loss']:.3g} while ||W||_F grew to "
                f"{r['final_norm']:.3g}."
            )
        else:
            text.append(f"Depth {r['depth']}: the solve failed ({r['status']}).")
        if r["bound_positive_saves"] == 0:
            text.append(f"Depth {r['depth']}: the bound is not positive at any trusted "
                        "save, so it was not tested.")
        else:
            text.append(
                f"Depth {r['depth']}: the norm was "
                + ("above the bound at all" if r["bound_holds"] else "NOT above the bound "
                   "at some of the")
                + f" {r['bound_positive_saves']} trusted saves where it is positive."
            )
    return " ".join(text)
