"""The completion study (Supposition 1, Figure 2) at reduced size: deeper networks
complete a low-rank matrix from few entries at lower error and rank than depth 1."""

import pytest

from lnn_flow import studies


@pytest.fixture(scope="module")
def report():
    return studies.completion_study(**studies.SMALL["completion"])


def test_depth_three_completes_low_rank_far_better_than_depth_one(report):
    rows = report.tables["completion"]
    few = max(r["observations"] for r in rows)  # 300 of 900 entries, rank 2
    by = {r["solution"]: r for r in rows if r["observations"] == few}
    assert by["depth 1"]["success"] and by["depth 3"]["success"]
    assert by["depth 3"]["relative_error"] < 0.1 * by["depth 1"]["relative_error"]
    assert by["depth 3"]["effective_rank"] < by["depth 1"]["effective_rank"] / 3
    # Supposition 1 fails here: depth 3 beats the minimum-nuclear-norm solution.
    assert by["depth 3"]["relative_error"] < by["min nuclear norm"]["relative_error"]
    # Both fit the observations: the train loss fell by the requested 1e-6.
    assert by["depth 3"]["train_loss"] < 1e-8
    assert report.parameters["num_measurements"] == [150, 300]


def test_counts_is_the_deprecated_name_of_num_measurements():
    # 26 > 5^2 entries: refused by the problem, after the name is resolved, before
    # any solve.
    with pytest.warns(DeprecationWarning, match="`counts` is deprecated.*"
                                                "use `num_measurements`"):
        with pytest.raises(ValueError, match="`num_measurements` must be <= the number "
                                             "of entries 25; got 26"):
            studies.completion_study(size=5, rank=1, counts=(26,), depths=(1,))
    with pytest.raises(TypeError, match="both `num_measurements` and its deprecated "
                                        "name `counts`"):
        studies.completion_study(num_measurements=[10], counts=[10])
