"""A sweep's plan and directory (`lnn_flow._sweeps._sweep_plan`): stable file names, groups of
one compiled shape adjacent, a directory claimed by one study, groups read back only if
the plan names them. Reading back written groups is in tests/test_sweep_integrity.py."""

import json

import pytest

from lnn_flow._sweeps._store import CorruptResultError
from lnn_flow._sweeps._sweep_plan import (
    check_directory,
    claim,
    config_id,
    load_if_complete,
    planned_groups,
)
from lnn_flow._sweeps._sweep_schema import parse_study

RAW = {"name": "p", "seeds": 2, "fixed": {"d_in": 3, "d_out": 3, "rank": 1},
       "grid": {"init_scale": [1e-3, 1e-2], "depth": [2, 3]}}


@pytest.fixture(scope="module")
def study():
    return parse_study(RAW)


def test_names_are_content_hashes_stable_and_distinct(study):
    plan = planned_groups(study)
    again = planned_groups(parse_study(json.loads(json.dumps(RAW))))
    assert plan == again and len({n for n, _ in plan}) == 4
    for rank, (name, config) in enumerate(plan):
        assert name == f"group-{rank:04d}-{config_id(config, study)}"
    # Another seed set is another computation: other names.
    other = parse_study({**RAW, "seeds": 3})
    assert not {n for n, _ in plan} & {n for n, _ in planned_groups(other)}


def test_groups_sharing_a_shape_run_back_to_back(study):
    # init_scale is traced (not static): the two scales of a depth share one program.
    depths = [c["depth"] for _, c in planned_groups(study)]
    assert depths == [2, 2, 3, 3]


def test_a_directory_holds_one_study(study, tmp_path):
    claim(tmp_path, study, writer=True)
    claim(tmp_path, study, writer=True)  # the same study again: fine (a resume)
    with pytest.raises(ValueError, match="holds results of a different study"):
        claim(tmp_path, parse_study({**RAW, "seeds": 3}), writer=True)


def test_unwritten_groups_are_absent_and_foreign_files_refused(study, tmp_path):
    plan = planned_groups(study)
    name, config = plan[0]
    assert load_if_complete(tmp_path, name, config) is None
    assert check_directory(tmp_path, plan) == []
    (tmp_path / "group-0009-abcdef012345.npz").write_bytes(b"")
    with pytest.raises(CorruptResultError, match="not part of this study's plan"):
        check_directory(tmp_path, plan)
