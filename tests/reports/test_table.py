"""The one table printer: aligned text for terminals, Markdown for reports."""

import pytest

from lnn_flow._reports._report import Untrusted
from lnn_flow._reports._table import aligned, cell, markdown


def test_cell_formats_floats_flags_untrusted_and_keeps_the_rest():
    assert cell(0.123456789) == "0.1235"
    assert cell(float("nan")) == "nan" and cell(float("inf")) == "inf"
    assert cell(Untrusted(7.964e-22, "past floor")) == "7.964e-22 (past floor)"
    assert cell(3) == "3" and cell(True) == "True" and cell("x") == "x"


def test_aligned_right_justifies_every_column_to_its_widest_cell():
    text = aligned(["a", "long"], [["123", "1"], ["4", "22"]], rule=True)
    lines = text.splitlines()
    assert lines == ["  a  long", "---------", "123     1", "  4    22"]
    # No rule: header then rows, all of one width.
    plain = aligned(["x"], [["10"]]).splitlines()
    assert plain == [" x", "10"]


def test_aligned_refuses_ragged_rows():
    with pytest.raises(ValueError, match="one cell per header column"):
        aligned(["a", "b"], [["1"]])


def test_markdown_uses_the_first_rows_keys_and_cell_formatting():
    rows = [{"depth": 2, "loss": 0.5}, {"depth": 3, "loss": Untrusted(1e-20, "floor")}]
    assert markdown(rows).splitlines() == [
        "| depth | loss |",
        "| --- | --- |",
        "| 2 | 0.5 |",
        "| 3 | 1e-20 (floor) |",
    ]
    assert markdown([]) == "(empty)"
