"""The flow-versus-descent study: descent's orders to the plain and modified flows,
SGD against its SDE, refusals, an honest report."""

import json

import pytest
from test_report_honesty import computed_values, prose_numbers, unexplained

from lnn_flow import studies
from lnn_flow._command._cli import main

# One depth, one step size, 100 seeds over half the horizon: every code path.
TINY = dict(depths=(2,), lrs=(0.2,), fit_lrs=(0.08, 0.04), t1=4.0, seeds=100,
            num_saves=21)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    report = studies.descent_study(**TINY)
    folder = tmp_path_factory.mktemp("descent")
    report.write(folder)
    return report, folder


def test_descent_follows_each_flow_at_its_order(written):
    """Fitted orders within 0.15 of 1, 2, 3 (see tests/flows/test_modified.py for the
    tolerance), and descent closer to its modified flow than to the flow."""
    report, _ = written
    for row in report.tables["orders"]:
        assert row["fitted_order"] == pytest.approx(row["predicted_order"], abs=0.15)
    for row in report.tables["descent"]:
        assert row["finished"] and row["closer_by"] > 2


def test_sgd_and_its_sde_agree_where_gd_and_the_flow_do_not(written):
    """The modified-drift SDE's mean end-to-end matrix within 4.5 standard errors of
    SGD's (tests/flows/test_stochastic.py), the loss spread within 30% (100 runs: the
    spread's standard error is 7%); all runs finished."""
    report, _ = written
    rows = {r["run"]: r for r in report.tables["noise"]}
    assert set(rows) == {"SGD", "SDE (flow drift)", "SDE (modified drift)", "GD", "flow"}
    assert all(r["finished"] == r["runs"] for r in rows.values())
    assert rows["SDE (modified drift)"]["mean_gap_to_sgd_in_se"] < 4.5
    assert rows["SDE (modified drift)"]["final_loss_sd_ratio_to_sgd"] == pytest.approx(1, abs=0.3)
    assert rows["SGD"]["final_loss_sd"] > 0 and rows["GD"]["final_loss_sd"] == 0


def test_report_shows_its_figures_and_only_computed_numbers(written):
    _, folder = written
    for name in ("trajectories", "orders"):
        assert (folder / f"{name}.png").stat().st_size > 10_000
    values = computed_values(json.loads((folder / "results.json").read_text()))
    text = (folder / "summary.md").read_text()
    assert prose_numbers(text)
    assert unexplained(text, values) == []


def test_ctrl_c_keeps_the_finished_depths(monkeypatch):
    """Ctrl-C during the second depth: a partial report of the first (the depth-2
    programs compiled for TINY are reused: they are module-level jits)."""
    from lnn_flow._studies import _study_descent

    real = _study_descent._one_depth

    def interrupted(depth, ws0, **setup):
        if depth == 3:
            raise KeyboardInterrupt
        return real(depth, ws0, **setup)

    monkeypatch.setattr(_study_descent, "_one_depth", interrupted)
    report = studies.descent_study(**{**TINY, "depths": (2, 3)})
    assert "1 of 2 depths" in report.partial
    assert {r["depth"] for r in report.tables["noise"]} == {2}
    monkeypatch.setattr(_study_descent, "_one_depth",
                        lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        studies.descent_study(**TINY)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_saves=7), "`num_saves` - 1 must divide"),
    (dict(seeds=5), "`seeds` must be >= 10"),
    (dict(fit_lrs=(0.1,)), "`fit_lrs` must list positive step sizes"),
    (dict(lrs=(-0.1,)), "`lrs` must list positive"),
    (dict(batch_size=41), "`batch_size` must be <="),
])
def test_bad_parameters_are_refused_before_any_solve(kwargs, match):
    with pytest.raises(ValueError, match=match):
        studies.descent_study(**kwargs)


@pytest.mark.slow
def test_run_descent_small_writes_the_report(tmp_path):
    out = tmp_path / "descent"
    assert main(["run", "descent", "--small", "--no-progress", "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["study"] == "descent"
    assert all(r["finished"] == r["runs"] for r in data["tables"]["noise"])
