"""`lnn_flow.studies`, the public face of the Section 4 and 5 studies: `STUDIES`, `SMALL` and
the renamed parameters. Each study's own effect is tested in its mirror file
(tests/test_study_completion.py, test_study_greedy.py, test_study_norms.py,
test_study_tensor.py)."""

import inspect

import pytest

from lnn_flow import studies


def test_studies_are_re_exported_under_their_names():
    assert studies.STUDIES == {
        "completion": studies.completion_study,
        "greedy": studies.greedy_study,
        "norms": studies.norms_study,
        "tensor": studies.tensor_study,
        "hierarchical": studies.hierarchical_study,
        "descent": studies.descent_study,
    }
    for name in studies.__all__:
        assert hasattr(studies, name), name


@pytest.mark.parametrize("name", sorted(studies.STUDIES))
def test_small_parameters_and_renames_match_the_signatures(name):
    parameters = inspect.signature(studies.STUDIES[name]).parameters
    assert set(studies.SMALL[name]) <= set(parameters)
    for old, new in studies._RENAMED[name].items():
        assert parameters[old].default is None
        assert parameters[old].kind is inspect.Parameter.KEYWORD_ONLY
        assert new in parameters and old not in studies.SMALL[name]
    # One spelling per idea: counts of measurements, and the init size.
    assert not {"counts", "measurements", "num_observed"} & (
        set(parameters) - set(studies._RENAMED[name]))
