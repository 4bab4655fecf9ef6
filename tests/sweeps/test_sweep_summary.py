"""Sweep summaries (`lnn_flow._sweeps._sweep_summary`): rows for a report, its figure
(`lnn_flow._reports._figures.sweep_loss_figure`) and the report itself, from groups built by hand
(no solves)."""

import numpy as np
import pytest

from lnn_flow._reports._figures import sweep_loss_figure
from lnn_flow._sweeps._store import Group
from lnn_flow._sweeps._sweep_schema import parse_study
from lnn_flow._sweeps._sweep_summary import (
    format_summary,
    report_rows,
    summarize,
    sweep_report,
)


def _group(depth, losses):
    n = len(losses)
    return Group(
        arrays={
            "seed": np.arange(n), "loss_final": np.asarray(losses, float),
            "effective_rank_final": np.full(n, 2.0), "relative_error_final": np.zeros(n),
            "num_steps": np.full(n, 10), "success": np.isfinite(losses),
        },
        meta={"config_id": f"id{depth}", "config": {"depth": depth, "t1": 1.0}},
    )


@pytest.fixture(scope="module")
def groups():
    return [_group(2, [1e-3, 2e-3, 3e-3]), _group(3, [1e-6, np.nan, 3e-6])]


def test_report_rows_flatten_the_varying_parameters_and_quantiles(groups):
    rows = report_rows(summarize(groups), ["depth"])
    assert [r["depth"] for r in rows] == [2, 3]
    assert "t1" not in rows[0]  # fixed parameters are not columns
    assert rows[0]["loss_final_median"] == pytest.approx(2e-3)
    assert rows[1]["failures"] == 1 and rows[1]["loss_final_median"] == pytest.approx(2e-6)
    assert rows[0]["loss_final_q10"] <= rows[0]["loss_final_median"] <= rows[0]["loss_final_q90"]
    assert "unbalancedness_final_median" not in rows[0]  # not in the report table


def test_printed_summary_has_one_line_per_configuration(groups):
    lines = format_summary(summarize(groups), ["depth"]).splitlines()
    assert lines[0].split()[:5] == ["depth", "seeds", "fail", "unfin", "fin"]
    assert len(lines) == 3 and lines[2].split()[:5] == ["3", "3", "1", "0", "2"]
    assert lines[1].split()[5] == "0.002"
    assert lines[1].split()[-1] == "-"  # no unbalancedness: a dash, not a number


def test_figure_draws_one_point_per_configuration(groups):
    rows = report_rows(summarize(groups), ["depth"])
    figure = sweep_loss_figure(rows, ["depth"], "t")
    (ax,) = figure.axes
    assert ax.get_xscale() == "log" and ax.get_title() == "t"
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "2  (3/3 finished)", "3  (2/3 finished)"]


def test_sweep_report_states_where_the_groups_are(groups, tmp_path):
    study = parse_study({"name": "tiny", "seeds": 3, "grid": {"depth": [2, 3]}})
    report = sweep_report(study, groups, "tiny.toml", tmp_path / "groups")
    assert report.name == "tiny" and str(tmp_path / "groups") in report.description
    assert report.parameters == {"study_file": "tiny.toml", "depth": [2, 3]}
    summary = report.write(tmp_path / "out")
    assert (tmp_path / "out" / "final_loss.png").exists() and summary.exists()


def test_solves_that_stop_short_of_the_loss_threshold_are_counted_unfinished():
    """Success at t1 without reaching `loss_threshold` is not a finished row: counted
    in `unfinished` (summary, printed table, report rows); without a threshold every
    success is finished."""
    group = _group(2, [1e-3, 2e-3, np.nan])
    group.arrays["stopped"] = np.array([True, False, False])
    group.meta["config"]["loss_threshold"] = 1e-8
    (row,) = summarize([group])
    assert row["failures"] == 1 and row["unfinished"] == 1
    assert report_rows([row], ["depth"])[0]["unfinished"] == 1
    assert format_summary([row], ["depth"]).splitlines()[1].split()[3] == "1"
    group.meta["config"]["loss_threshold"] = None
    assert summarize([group])[0]["unfinished"] == 0


def test_tensor_groups_summarize_tensor_rank_and_sorted_component_norms():
    group = _group(2, [1e-3, 2e-3, 3e-3])
    del group.arrays["effective_rank_final"]
    group.arrays["effective_tensor_rank_final"] = np.array([2, 2, 3])
    group.arrays["component_norms_final"] = np.array(
        [[1e-4, 1.5, 0.7], [0.8, 1e-4, 1.4], [1.6, 0.9, 0.2]])
    (row,) = summarize([group])
    assert row["effective_tensor_rank_final"]["median"] == 2.0
    # Per seed largest first, then the median over seeds of each place.
    np.testing.assert_allclose(row["component_norms_final"]["median"], [1.5, 0.8, 1e-4])
    lines = format_summary([row], ["depth"]).splitlines()
    assert "tensor rank" in lines[0] and "eff rank" not in lines[0]
    assert lines[1].split()[-3:] == ["1.5", "0.8", "0.0001"]
    assert report_rows([row], ["depth"])[0]["effective_tensor_rank_final_median"] == 2.0
