"""The hierarchical study: local components switching on one per node, the three
factorizations of the same entries, refusals, an honest report."""

import json

import pytest
from test_report_honesty import computed_values, prose_numbers, unexplained

from lnn_flow import studies
from lnn_flow._command._cli import main

# One init scale and two seeds: every code path, a fifth of SMALL's solves.
TINY = dict(scales=(0.3,), seeds=2, num_saves=30)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    report = studies.hierarchical_study(**TINY)
    folder = tmp_path_factory.mktemp("hierarchical")
    report.write(folder)
    return report, folder


def test_one_local_component_per_node_carries_the_rank_one_truth(written):
    report, _ = written
    recovery = report.tables["recovery"][0]
    assert recovery["finished"] and recovery["relative_error"] < 1e-2
    rows = report.tables["local_components"]
    nodes = {r["node"] for r in rows}
    assert nodes == {"{0,1,2,3}", "{0,1}", "{2,3}"}
    for node in nodes:
        mine = [r for r in rows if r["node"] == node]
        assert [r["carries"] for r in mine] == [True, False, False, False]
        # the extra components stay orders of magnitude below the one that carries
        assert mine[1]["final_norm"] < 5e-2 * mine[0]["final_norm"]
        assert mine[0]["switch_on_time"] > 0


def test_the_hierarchical_flow_fits_what_cp_and_matrix_flows_miss(written):
    report, _ = written
    rows = {r["factorization"]: r for r in report.tables["comparison"]}
    assert set(rows) == {"hierarchical", "CP", "matrix (depth 4)"}
    assert all(r["finished"] == r["seeds"] == 2 for r in rows.values())
    h = rows["hierarchical"]["error_median"]
    assert h < 0.1 * min(rows["CP"]["error_median"], rows["matrix (depth 4)"]["error_median"])
    assert rows["hierarchical"]["hierarchical_rank_median"] < 1.1


def test_report_is_written_and_every_number_is_computed(written):
    report, folder = written
    assert {p.name for p in folder.glob("*.png")} == {
        "local_components.png", "matricizations.png", "comparison.png"}
    values = computed_values(json.loads((folder / "results.json").read_text()))
    text = (folder / "summary.md").read_text()
    assert prose_numbers(text)
    assert unexplained(text, values) == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(order=3), "`order` must be even"),
    (dict(num_measurements=300), "`num_measurements` must be at most"),
    (dict(solver="rk4"), "`solver`"),
    (dict(scales=()), "`scales`"),
])
def test_bad_parameters_are_refused_before_any_solve(kwargs, match):
    with pytest.raises(ValueError, match=match):
        studies.hierarchical_study(**kwargs)


@pytest.mark.slow
def test_run_hierarchical_small_writes_the_report(tmp_path):
    out = tmp_path / "hierarchical"
    assert main(["run", "hierarchical", "--small", "--no-progress", "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["study"] == "hierarchical"
    assert all(r["finished"] == r["seeds"] for r in data["tables"]["comparison"])
