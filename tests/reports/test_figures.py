"""Figures (`lnn_flow._reports._figures`): each draws what it is given, from synthetic numbers
(the studies that compute them are tested in tests/test_studies.py and test_cli.py)."""

from types import SimpleNamespace

import numpy as np
import pytest

from lnn_flow._reports import _figures

TS = np.linspace(0.0, 1.0, 11)


def test_positive_part_masks_zeros_for_log_axes():
    out = _figures.positive_part([0.0, 1e-3, -1.0])
    assert np.isnan(out[0]) and out[1] == 1e-3 and np.isnan(out[2])


def test_symlog_threshold_is_the_power_of_ten_below_the_smallest_value():
    assert _figures.symlog_threshold([0.0, -3e-5, 2.0, np.nan]) == pytest.approx(1e-5)
    assert _figures.symlog_threshold([0.0]) == 1.0


def test_demo_figure_draws_both_flows_per_depth_and_the_atol_line():
    curve = dict(ts=TS, loss_factor=np.exp(-TS), loss_end_to_end=np.exp(-TS),
                 gap=np.full(11, 1e-12), unbalancedness=np.full(11, 1e-9), drift=TS * 0)
    fig = _figures.demo_figure({1: curve, 3: curve}, atol=1e-10)
    left, middle, right = fig.axes
    assert len(left.get_lines()) == 4  # two flows at two depths
    assert any(np.allclose(line.get_ydata(), 1e-10) for line in middle.get_lines())
    assert len(right.get_lines()) == 2  # depth 3's D_j and the atol line (not depth 1)
    assert "past floor" not in left.get_title()


def test_demo_figure_draws_losses_past_the_floor_dotted_and_names_them():
    floor = TS >= 0.5
    curve = dict(ts=TS, loss_factor=np.exp(-TS), loss_end_to_end=np.exp(-TS),
                 gap=np.full(11, 1e-12), unbalancedness=np.full(11, 1e-9), drift=TS * 0,
                 past_floor=floor)
    left = _figures.demo_figure({1: curve}, atol=1e-10, agreement=1e-4).axes[0]
    solid = [l for l in left.get_lines() if l.get_linestyle() in ("-", "None")]
    dotted = [l for l in left.get_lines() if l.get_linestyle() == ":"]
    assert all(np.isnan(l.get_ydata()[floor]).all() for l in solid)
    assert len(dotted) == 2 and all(l.get_xdata()[0] == TS[4] for l in dotted)
    assert "n = 1: past floor" in [t.get_text() for t in left.get_legend().get_texts()]
    assert "past floor, the flows differ > 1e-04" in left.get_title()


def test_completion_figure_marks_failed_solves():
    rows = [dict(solution=s, observations=m, relative_error=0.1, nuclear_norm=2.0,
                 effective_rank=2.0, success=(m, s) != (20, "n = 3"))
            for s in ("n = 1", "n = 3") for m in (10, 20)]
    fig = _figures.completion_figure(rows, dict(truth_nuclear_norm=2.0,
                                                truth_effective_rank=2.0))
    crosses = [line for line in fig.axes[0].get_lines() if line.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [20]


def test_greedy_figure_one_panel_per_depth_with_switch_on_lines():
    sigma = np.outer(TS, [3.0, 2.0, 0.1])
    curves = {1: (TS, sigma, np.array([0.5, np.nan])), 2: (TS, sigma, np.array([0.2, 0.7]))}
    fig = _figures.greedy_figure(curves, np.array([3.0, 2.0]), 0.5)
    assert [ax.get_title() for ax in fig.axes] == ["linear (n = 1)", "2-layer network"]
    vertical = lambda ax: [l for l in ax.get_lines() if len(set(l.get_xdata())) == 1]
    assert len(vertical(fig.axes[0])) == 1 and len(vertical(fig.axes[1])) == 2


def test_norms_figure_draws_the_trusted_part_and_the_bound():
    loss = np.geomspace(0.1, 1e-6, 11)
    track = SimpleNamespace(det=np.linspace(0.1, 1.0, 11),
                            at_precision_floor=np.zeros(11, bool))
    row = dict(precision_floor_reached=False, final_loss=loss[-1])
    fig = _figures.norms_figure({2: (TS, loss, 1 / loss, track, np.ones(11, bool))}, [row])
    left, right = fig.axes
    labels = [line.get_label() for line in left.get_lines()]
    assert labels == ["n = 2", "Prop. 5 bound"]
    assert right.get_yscale() == "symlog"
