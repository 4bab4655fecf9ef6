"""The demo's printed table (`lnn_flow._studies._demo.format_table`): the quantities at their
precisions, one line per depth, on the shared table printer; and its precision floor
(`past_floor`): losses where the two flows disagree are marked, and are indeed off.
The solves behind the table are tested through the command in tests/test_cli.py."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import lnn_flow as lf
from lnn_flow._studies import _demo
from lnn_flow._studies._demo import AGREEMENT, PAST_FLOOR, format_table, past_floor
from lnn_flow._reports._report import Untrusted

ROW = dict(depth=3, loss_factor=1.23456e-4, loss_end_to_end=1.23457e-4, max_gap=3.2e-9,
           unbalancedness_t0=0.0, unbalancedness_drift=1.1e-12,
           relative_error_to_truth=0.0123, steps_factor=120, steps_end_to_end=98,
           seconds_factor=1.234, seconds_end_to_end=0.5, success=True)


def test_one_aligned_line_per_depth_with_each_quantitys_precision():
    lines = format_table([ROW, {**ROW, "depth": 10, "success": False}]).splitlines()
    header, rule, first, second, footer = lines
    assert set(rule) == {"-"} and len(rule) == len(header) == len(first) == len(second)
    assert first.split() == ["3", "1.235e-04", "1.235e-04", "3.2e-09", "0.0e+00",
                             "1.1e-12", "1.230e-02", "120/98", "1.23/0.50", "yes"]
    assert second.split()[0] == "10" and second.split()[-1] == "NO"
    assert footer.startswith("* wall seconds")


def test_untrusted_losses_end_in_a_mark_explained_under_the_table():
    flagged = {**ROW, "loss_factor": Untrusted(3.2e-18, PAST_FLOOR),
               "loss_end_to_end": Untrusted(5.1e-20, PAST_FLOOR)}
    lines = format_table([flagged, {**ROW, "depth": 2}]).splitlines()
    assert lines[2].split()[1:3] == ["3.200e-18^", "5.100e-20^"]
    assert lines[3].split()[1:3] == ["1.235e-04", "1.235e-04"]
    assert lines[-1].startswith("^ past the solves' accuracy floor")
    assert "^" not in format_table([ROW])


def test_past_floor_holds_from_the_first_disagreement_on():
    a = np.array([1.0, 1e-2, 1e-4, 1e-6, 1e-8])
    b = a * (1 + np.array([0.0, 0.5, 20.0, 0.0, 0.0]) * AGREEMENT)
    assert past_floor(a, b).tolist() == [False, False, True, True, True]
    # Saves a solve did not reach (NaN) do not set it off.
    assert not past_floor([1.0, np.nan], [1.0, np.nan]).any()


def test_losses_past_the_floor_are_the_solvers_error_and_those_before_are_right():
    # Depth 1 (linear regression, fewer measurements than entries): the loss falls
    # exponentially for ever, past what the demo's tolerances resolve. The reference
    # (Dopri8, 1e5x tighter rtol) resolves it down to the end.
    loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(0), (6, 6), 2, 20)
    ws0 = lf.init.balanced(jax.random.PRNGKey(1), (6, 6), 1e-3)
    t1, ts = 200.0, jnp.linspace(0.0, 200.0, 41)
    demo = dict(solver=_demo.SOLVER, rtol=_demo.RTOL)
    factor = lf.factor_flow(loss, ws0, t1, ts, atol=_demo.FACTOR_ATOL, **demo)
    e2e = lf.end_to_end_flow(loss, factor.end_to_end[0], 1, t1, ts, **demo)
    ref = lf.factor_flow(loss, ws0, t1, ts, solver=diffrax.Dopri8(), rtol=1e-13,
                         atol=1e-18, max_steps=100_000)
    floor = past_floor(factor.loss, e2e.loss)
    assert not floor[:10].any() and floor[-1]
    truth = np.asarray(ref.loss)
    for sol in (factor, e2e):
        error = np.abs(np.asarray(sol.loss) - truth) / truth
        assert np.all(error[~floor] <= AGREEMENT)  # before: right to the table's digits
        assert error[-1] > 1.0  # at t1: off by more than the loss itself
