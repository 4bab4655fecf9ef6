"""Tables, printed: the one place rows become text.

Two renderings of the same cells: `aligned` for a terminal (right-justified columns,
what `lnn-flow demo` and `lnn-flow sweep` print) and `markdown` for a report's
`summary.md` and notebooks. `cell` is the number formatting both share.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any


def cell(value: Any) -> str:
    """A value as a table shows it: floats to 4 significant digits, a flagged
    (`Untrusted`) number with its note, anything else as `str`."""
    note = getattr(value, "note", None)
    if note is not None and isinstance(value, float):
        return f"{float(value):.4g} ({note})"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def aligned(
    header: Sequence[str], body: Sequence[Sequence[str]], *, rule: bool = False
) -> str:
    """Right-justified columns separated by two spaces; `rule` adds a dashed line
    under the header. Cells are strings already formatted by the caller, so each
    column keeps the precision its quantity deserves."""
    lines = [list(header), *(list(row) for row in body)]
    if any(len(line) != len(header) for line in lines):
        raise ValueError("every row of a table must have one cell per header column")
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines]
    if rule:
        text.insert(1, "-" * len(text[0]))
    return "\n".join(text)


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows (dicts with the first row's keys) as a Markdown table of `cell`s."""
    if not rows:
        return "(empty)"
    keys = list(rows[0])
    head = "| " + " | ".join(keys) + " |"
    divider = "| " + " | ".join("---" for _ in keys) + " |"
    body = ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join([head, divider, *body])
