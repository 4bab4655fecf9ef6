"""Report folders (`_report`): `Report.write` writes every file it names, an
`Untrusted` number is flagged in each of them, and values JSON has no type for
(NumPy scalars and arrays) are written as plain numbers, NaN and infinities as null
(strict JSON).

The studies' own reports (flags past the precision floor, prose numbers that must be
computed) are in tests/test_report_honesty.py; here one small hand-made report is
written once, with no solve.
"""

import csv
import json
import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import strict_json
from matplotlib.figure import Figure

from lnn_flow._reports import _table
from lnn_flow._reports._report import Report, Untrusted, _json_ready, _plain, _write_csv

FLOOR = Untrusted(7.964e-22, "past floor")
TINY = Untrusted(0.12345678901234, "tiny")
ROWS = [
    {"depth": 2, "loss": FLOOR, "norm": TINY, "ok": False, "method": "factor"},
    {"depth": 3, "loss": 0.1234567, "norm": np.float64(2.5), "ok": True,
     "method": "end_to_end"},
]


def _report(**changes) -> Report:
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [1, 0])
    fields = dict(
        name="unit", title="A unit report", description="What was run, in words.",
        tables={"norms": ROWS, "empty": []}, figures={"curve": figure},
        parameters={"depth": 3, "scales": (0.01, 0.1)},
        facts={"nuclear": Untrusted(1.23456, "past floor"), "count": np.int64(4),
               "ratio": np.float32(0.5), "gap": math.nan, "top": math.inf},
    )
    return Report(**{**fields, **changes})


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    report = _report()
    folder = tmp_path_factory.mktemp("report") / "nested" / "folder"  # made by write
    summary = report.write(folder)
    return report, folder, summary


# --- Untrusted ----------------------------------------------------------------------------


def test_untrusted_is_a_float_with_a_note():
    assert isinstance(FLOOR, float) and FLOOR == 7.964e-22 and FLOOR.note == "past floor"
    assert Untrusted(2.0).note == "untrusted"
    assert Untrusted(2.0) < 3 and Untrusted(2.0) * 2 == 4.0 and math.sqrt(Untrusted(4.0)) == 2
    assert repr(FLOOR) == "Untrusted(7.964e-22, 'past floor')"
    assert repr(Untrusted(math.nan, "x")) == "Untrusted(nan, 'x')"


# --- the helpers --------------------------------------------------------------------------


def test_json_ready_flags_untrusted_at_any_depth_and_keeps_the_rest():
    value = {"a": FLOOR, "b": [1, (TINY, 0.5)], "c": {"d": {"e": FLOOR}}, "f": "s",
             "g": None}
    ready = _json_ready(value)
    floor = {"value": 7.964e-22, "untrusted": "past floor"}
    assert ready == {"a": floor, "b": [1, [{"value": float(TINY), "untrusted": "tiny"},
                                           0.5]],
                     "c": {"d": {"e": floor}}, "f": "s", "g": None}
    assert type(ready["a"]["value"]) is float  # a plain float: no flag left unread
    assert value["a"] is FLOOR and value["b"][1][0] is TINY  # the input is not changed


PLAIN = [  # (a value json cannot encode, what results.json holds)
    (np.float32(0.5), 0.5),
    (np.int64(4), 4),
    (np.bool_(True), True),
    (np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
    (np.array([np.nan]), [math.nan]),
    (jnp.asarray(2.5), 2.5),
    (pathlib.PurePosixPath("a/b"), "a/b"),
]


@pytest.mark.parametrize("value, plain", PLAIN, ids=["float32", "int64", "bool_", "array",
                                                     "nan-array", "jax", "path"])
def test_plain_turns_numpy_values_into_python_ones(value, plain):
    got = _plain(value)
    assert type(got) is type(plain)
    assert json.dumps(got) == json.dumps(plain)  # nan compares by its text


def test_write_csv_flags_untrusted_values_at_full_precision(tmp_path):
    path = tmp_path / "t.csv"
    _write_csv(path, ROWS)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["depth", "loss", "norm", "ok", "method"]
    assert rows[0] == {"depth": "2", "loss": "7.964e-22 (past floor)",
                       "norm": "0.12345678901234 (tiny)", "ok": "False",
                       "method": "factor"}
    assert rows[1] == {"depth": "3", "loss": "0.1234567", "norm": "2.5", "ok": "True",
                       "method": "end_to_end"}
    _write_csv(path, [])
    assert path.read_text() == ""


# --- Report.write -------------------------------------------------------------------------


def test_write_makes_the_folder_and_exactly_the_files_it_names(written):
    _, folder, summary = written
    assert summary == folder / "summary.md"
    assert sorted(p.name for p in folder.iterdir()) == [
        "curve.png", "empty.csv", "norms.csv", "results.json", "summary.md"]
    assert (folder / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "empty.csv").read_text() == ""


def test_summary_shows_parameters_facts_figures_and_tables(written):
    report, folder, summary = written
    text = summary.read_text()
    lines = text.splitlines()
    assert lines[:3] == ["# A unit report", "", "What was run, in words."]
    for line in ["## Parameters", "- `depth`: 3", "- `scales`: (0.01, 0.1)",
                 "## Computed", "- `nuclear`: 1.235 (past floor)", "- `count`: 4",
                 "- `gap`: nan", "- `top`: inf", "![curve](curve.png)",
                 "## norms", "([norms.csv](norms.csv))", "## empty", "(empty)",
                 "([empty.csv](empty.csv))"]:
        assert line in lines, line
    assert report.table("norms") in text
    # Sections in order: parameters, computed values, figures, then the tables.
    order = [text.index(s) for s in ("## Parameters", "## Computed", "![curve]",
                                     "## norms", "## empty")]
    assert order == sorted(order)


def test_summary_explains_each_note_once_under_its_table(written):
    _, _, summary = written
    text = summary.read_text()
    legend = ("Values marked `(past floor)`, `(tiny)` were computed but are not "
              "trusted: see the description above.")
    # One legend under the flagged facts, one under the flagged table, none elsewhere.
    assert text.count("Values marked") == 2
    computed = text.split("## Computed")[1].split("## norms")[0]
    assert ("Values marked `(past floor)` were computed but are not trusted"
            in computed)
    norms, empty = text.split("## norms")[1].split("## empty")
    assert legend in norms and "Values marked" not in empty


def test_a_flagged_parameter_is_shown_with_its_note(tmp_path):
    report = _report(parameters={"scale": Untrusted(1.5, "x"), "depth": 3}, facts={},
                     figures={}, tables={})
    text = report.write(tmp_path).read_text()
    assert "- `scale`: 1.5 (x)" in text and "- `depth`: 3" in text


def test_no_computed_section_without_facts(tmp_path):
    summary = _report(facts={}, figures={}, tables={"t": [{"a": 1}]}).write(tmp_path)
    text = summary.read_text()
    assert "## Computed" not in text and "Values marked" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "summary.md",
                                                          "t.csv"]


def _cells(text: str, value: str) -> list[str]:
    """The Markdown table rows of `text` that hold `value`."""
    return [line for line in text.splitlines() if line.startswith("| ") and value in line]


def _json_rows(folder) -> list[str]:
    rows = json.loads((folder / "results.json").read_text())["tables"]["norms"]
    return [json.dumps(row) for row in rows]


# Every place a table value is shown: (output, text of the rows of depth 2 and 3).
SHOWN = [
    ("Report.table", lambda r, f: _cells(r.table("norms"), "| ")[2:]),
    ("summary.md", lambda r, f: _cells(
        (f / "summary.md").read_text().split("## norms")[1], "| ")[2:]),
    ("norms.csv", lambda r, f: (f / "norms.csv").read_text().splitlines()[1:]),
    ("results.json", lambda r, f: _json_rows(f)),
]


@pytest.mark.parametrize("output, shown", SHOWN, ids=[s[0] for s in SHOWN])
def test_untrusted_table_values_are_flagged_in_every_output(written, output, shown):
    depth2, depth3 = shown(*written[:2])
    assert "past floor" in depth2 and "tiny" in depth2, depth2
    assert "past floor" not in depth3 and "tiny" not in depth3, depth3


def test_results_json_holds_everything_flagged_and_plain(written):
    report, folder, _ = written
    data = strict_json(folder / "results.json")
    assert sorted(data) == ["facts", "parameters", "study", "tables"]
    assert data["study"] == "unit"
    assert data["parameters"] == {"depth": 3, "scales": [0.01, 0.1]}
    facts = data["facts"]
    assert facts["nuclear"] == {"value": 1.23456, "untrusted": "past floor"}
    assert facts["count"] == 4 and type(facts["count"]) is int
    assert facts["ratio"] == 0.5
    # NaN and infinity are not JSON (issue 26): written as null, read by any parser;
    # summary.md shows them as "nan" and "inf".
    assert facts["gap"] is None and facts["top"] is None
    norms = data["tables"]["norms"]
    assert norms[0]["loss"] == {"value": 7.964e-22, "untrusted": "past floor"}
    assert norms[0]["norm"] == {"value": 0.12345678901234, "untrusted": "tiny"}
    assert norms[1] == {"depth": 3, "loss": 0.1234567, "norm": 2.5, "ok": True,
                        "method": "end_to_end"}
    assert data["tables"]["empty"] == []
    # Writing did not turn the report's own values into dicts.
    assert report.tables["norms"][0]["loss"] is FLOOR
    assert isinstance(report.facts["nuclear"], Untrusted)


def test_table_is_the_markdown_of_its_rows():
    report = _report()
    assert report.table("norms") == _table.markdown(ROWS)
    assert report.table("empty") == "(empty)"
    with pytest.raises(KeyError):
        report.table("missing")


def test_write_again_replaces_the_previous_files(tmp_path):
    _report().write(tmp_path)
    _report(tables={"norms": [{"depth": 5}]}, title="Again").write(tmp_path)
    assert (tmp_path / "norms.csv").read_text().splitlines() == ["depth", "5"]
    assert (tmp_path / "summary.md").read_text().startswith("# Again\n")
    assert json.loads((tmp_path / "results.json").read_text())["tables"] == {
        "norms": [{"depth": 5}]}
