"""The tensor study (Section 5) at reduced size: its rows agree with each other and
with the solves, its prose states only numbers from its rows, and a solve that did not
reach its loss threshold is marked, never read as a result."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_report_honesty import computed_values, prose_numbers, unexplained

import lnn_flow as lf
from lnn_flow import studies
from lnn_flow._studies._study_tensor import switch_on_times, unfold
from lnn_flow._studies._study_tensor_text import findings

# Every solve stopped by `max_steps` long before the loss threshold: nothing finishes.
UNFINISHED = dict(orders=(3,), sizes=(4,), rank=1, components=2, num_measurements=(30,),
                  scales=(1e-6,), seeds=2, num_saves=20, max_steps=20)


@pytest.fixture(scope="module")
def report():
    return studies.tensor_study(**studies.SMALL["tensor"])


@pytest.fixture(scope="module")
def unfinished():
    return studies.tensor_study(**UNFINISHED)


def test_registered_with_small_parameters():
    assert studies.STUDIES["tensor"] is studies.tensor_study
    assert studies._RENAMED["tensor"] == {}


def test_components_switch_on_and_recover_the_truth(report):
    """From norms 1e-6 the two components the truth needs grow, each switching on after
    a plateau, and match the truth's components; the others stay near their init."""
    (rec,) = report.tables["recovery"]
    rows = report.tables["components"]
    assert rec["finished"] and rec["effective_tensor_rank"] == rec["truth_rank"] == 2
    assert rec["relative_error"] < 1e-2
    carrying = [r for r in rows if r["carries"]]
    assert len(rows) == 4 and len(carrying) == rec["effective_tensor_rank"]
    assert [r["component"] for r in rows] == [1, 2, 3, 4]
    assert all(rows[i]["final_norm"] >= rows[i + 1]["final_norm"] for i in range(3))
    for r in carrying:  # a plateau first: switching on long after t = 0
        assert r["switch_on_time"] > 1e3 and r["cosine_to_truth"] > 0.999
        assert r["final_norm"] == pytest.approx(r["truth_norm"], rel=1e-2)
    assert {r["truth_component"] for r in carrying} == {1, 2}
    for r in rows:
        if not r["carries"]:
            assert math.isnan(r["switch_on_time"]) and r["final_norm"] < 1e-5
    truth = report.facts["truth_component_norms_order_3"]
    assert sorted(r["truth_norm"] for r in carrying) == pytest.approx(sorted(truth))
    # The planted components have norms evenly spaced between the ends of `truth_norms`
    # (rank 2: the two ends), and the larger one switches on first.
    assert truth == pytest.approx(report.parameters["truth_norms"], rel=1e-12)
    assert carrying[0]["truth_norm"] > carrying[1]["truth_norm"]
    assert carrying[0]["switch_on_time"] < carrying[1]["switch_on_time"]


def test_seed_statistics_are_consistent(report):
    rows = report.tables["init_scale"]
    params = report.parameters
    assert [(r["observed"], r["scale"]) for r in rows] == [
        (m, s) for m in params["num_measurements"] for s in params["scales"]]
    for r in rows:
        assert 0 <= r["finished"] <= r["seeds"] == params["seeds"]
        for key in ("error", "tensor_rank"):
            values = [r[f"{key}_{q}"] for q in ("min", "median", "max")]
            if r["finished"]:
                assert values == sorted(values)
            else:
                assert all(math.isnan(v) for v in values)
    # Part c's CP rows are part b's solves at the study's `scale`.
    by_key = {(r["observed"], r["scale"]): r for r in rows}
    for r in report.tables["matrix_view"]:
        if r["flow"].startswith("CP"):
            mine = by_key[r["observed"], params["scale"]]
            assert r["finished"] == mine["finished"]
            if r["finished"]:
                assert r["error_median"] == pytest.approx(mine["error_median"], rel=1e-12)


def test_every_number_in_the_summary_comes_from_the_results(report, tmp_path):
    report.write(tmp_path)
    values = computed_values(json.loads((tmp_path / "results.json").read_text()))
    text = (tmp_path / "summary.md").read_text()
    assert prose_numbers(report.description)
    assert unexplained(text, values) == []
    for name in ("component_norms", "init_scale", "matrix_view"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
        assert f"![{name}]({name}.png)" in text


def test_description_defines_both_ranks_it_reports(report):
    """The integer effective tensor rank and the continuous unfolding effective rank
    (an entropy rank) appear side by side: both are defined (issue 26)."""
    text = report.description
    assert "the effective tensor rank is the number of components" in text
    assert "the unfolding effective rank is a continuous one, `exp(entropy(" in text


def test_prose_is_formatted_from_the_rows(report):
    """Change a row and the prose says the new number: it is not fixed text."""
    tables = {k: [dict(r) for r in v] for k, v in report.tables.items()}
    row = next(r for r in tables["matrix_view"] if r["finished"])
    row["error_median"] = 0.123456
    tables["recovery"][0]["relative_error"] = 0.00987654
    text = findings(tables, report.parameters)
    assert "0.123" in text and "0.00988" in text
    assert "0.123" not in report.description


def test_unfinished_solves_are_marked_and_not_read_as_results(unfinished, tmp_path):
    (rec,) = unfinished.tables["recovery"]
    assert not rec["finished"]
    assert isinstance(rec["relative_error"], studies.Untrusted)
    assert rec["relative_error"].note == "not finished"
    assert all(isinstance(r["final_norm"], studies.Untrusted)
               for r in unfinished.tables["components"])
    for r in unfinished.tables["init_scale"] + unfinished.tables["matrix_view"]:
        assert r["finished"] == 0 and math.isnan(r["error_median"])
    text = unfinished.description
    assert "not finished" in text and "no result is read from it" in text
    assert "none of 2 finished" in text and "relative error 0." not in text
    unfinished.write(tmp_path)
    assert "(not finished)" in (tmp_path / "summary.md").read_text()
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["tables"]["recovery"][0]["relative_error"]["untrusted"] == "not finished"


def test_switch_on_time_is_interpolated_on_the_save_grid():
    ts = np.array([0.0, 1.0, 10.0, 100.0, 1000.0])
    norms = np.array([[1e-3, 1e-3], [1e-3, 1e-3], [1e-2, 1e-3], [1.0, 1e-3], [1.0, 1e-3]])
    # Component 0 crosses 0.5 between t = 10 (1e-2) and t = 100 (1): log-log linear,
    # log(0.5 / 1e-2) / log(100) of the way from log 10 to log 100.
    expected = 10 ** (1 + np.log10(0.5 / 1e-2) / 2)
    times = switch_on_times(ts, norms, 0.5)
    np.testing.assert_allclose(times[0], expected, rtol=1e-12)
    assert math.isnan(times[1])  # never grew: already at its final norm at t = 0


def test_unfolding_observes_the_same_entries():
    loss, _ = lf.problems.random_tensor_completion(jax.random.PRNGKey(3), (3, 4, 5), 2, 20)
    matrix = unfold(loss, (3, 4, 5))
    W = jax.random.normal(jax.random.PRNGKey(4), (3, 4, 5))
    np.testing.assert_allclose(matrix(W.reshape(3, 20)), loss(W), rtol=1e-14)
    assert matrix(jnp.zeros((3, 20))) > 0


@pytest.mark.parametrize("params, match", [
    (dict(orders=(3, 4), sizes=(5,)), "must pair up"),
    (dict(orders=(3,), sizes=(3,), num_measurements=(28,)), r"must lie in \[1, 27\]"),
    (dict(seeds=0), "must be >= 1"),
    (dict(truth_norms=(0.5, 1.0)), r"`truth_norms` must be \[largest, smallest\]"),
    (dict(truth_norms=(1.0,)), r"`truth_norms` must be \[largest, smallest\]"),
])
def test_refuses_bad_parameters_before_solving(params, match):
    with pytest.raises(ValueError, match=match):
        studies.tensor_study(**params)


def test_solver_is_checked_first_and_passed_to_every_batch(monkeypatch):
    """`solver` names the flows' solver ("tsit5" their default, "auto" the switching
    one): refused before any solve when unknown, handed to `solve_batch` otherwise."""
    from lnn_flow._studies import _study_tensor

    class Solved(Exception):
        pass

    seen = []

    def record(method, *args, solver=None, **kwargs):
        seen.append((method, solver))
        raise Solved

    monkeypatch.setattr(_study_tensor, "solve_batch", record)
    with pytest.raises(ValueError, match=r"`solver` must be one of \['auto', 'tsit5'\]"):
        studies.tensor_study(**UNFINISHED, solver="rk4")
    assert seen == []
    with pytest.raises(Solved):
        studies.tensor_study(**UNFINISHED, solver="auto")
    assert seen == [("tensor", "auto")]
