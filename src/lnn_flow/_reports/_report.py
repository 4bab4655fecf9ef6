"""A report folder a researcher reads: figures (PNG), tables (CSV and JSON), and a
Markdown summary that embeds the figures and shows the tables."""

import csv
import dataclasses
import pathlib
from typing import Any

from matplotlib.figure import Figure

from .._core import _json
from . import _table


class Untrusted(float):
    """A number a study computed but cannot vouch for (e.g. a value from after the
    precision floor). It compares and computes like a float, and every output shows it
    flagged: the Markdown table and the CSV as `7.964e-22 (past floor)`, results.json as
    `{"value": 7.964e-22, "untrusted": "past floor"}`."""

    note: str

    def __new__(cls, value: float, note: str = "untrusted"):
        self = super().__new__(cls, value)
        self.note = note
        return self

    def __repr__(self) -> str:
        return f"Untrusted({float(self)!r}, {self.note!r})"


@dataclasses.dataclass
class Report:
    """What a study produced. `tables` map a name to rows (dicts of plain values, or
    [`Untrusted`][lnn_flow.studies.Untrusted] numbers); `facts` are named values the run
    computed that are not rows (e.g. the ground truth's nuclear norm), so that every
    number the description states is in results.json."""

    name: str
    title: str
    description: str
    tables: dict[str, list[dict[str, Any]]]
    figures: dict[str, Figure]  # built without pyplot: no GUI backend needed
    parameters: dict[str, Any]
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Why the report covers part of the study only ("" for a whole one): e.g. a run
    # interrupted by Ctrl-C keeps what finished. Stated at the top of summary.md and
    # in results.json.
    partial: str = ""

    def table(self, name: str) -> str:
        """The table `name` as Markdown (for notebooks: `IPython.display.Markdown`)."""
        return _table.markdown(self.tables[name])

    def write(self, directory: str | pathlib.Path) -> pathlib.Path:
        """Write `summary.md`, one PNG per figure, `<table>.csv` and `results.json`
        into `directory` (created if needed); returns the path of `summary.md`."""
        out = pathlib.Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        lines = [f"# {self.title}", ""]
        if self.partial:
            lines += [f"**Partial report:** {self.partial}", ""]
        lines += [self.description, "", "## Parameters", ""]
        lines += [f"- `{k}`: {_shown(v)}" for k, v in self.parameters.items()]
        if self.facts:
            lines += ["", "## Computed", ""]
            lines += [f"- `{k}`: {_table.cell(v)}" for k, v in self.facts.items()]
            lines += _legend(self.facts.values())
        for name, fig in self.figures.items():
            fig.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
            lines += ["", f"![{name}]({name}.png)"]
        for name, rows in self.tables.items():
            _write_csv(out / f"{name}.csv", rows)
            lines += ["", f"## {name}", "", _table.markdown(rows), "", f"([{name}.csv]({name}.csv))"]
            lines += _legend(v for r in rows for v in r.values())
        (out / "results.json").write_text(
            _json.dumps(
                _json_ready({"study": self.name, "parameters": self.parameters,
                             "facts": self.facts, "tables": self.tables,
                             **({"partial": self.partial} if self.partial else {})}),
                indent=2,
                default=_plain,
            )
        )
        summary = out / "summary.md"
        summary.write_text("\n".join(lines) + "\n")
        return summary


def _shown(value) -> str:
    """A parameter as the summary lists it: as given, a flagged number with its note."""
    return _table.cell(value) if isinstance(value, Untrusted) else str(value)


def _legend(values) -> list[str]:
    """The line under a table or list that explains each flag among `values` (also
    inside lists and tuples)."""
    notes, stack = set(), list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, Untrusted):
            notes.add(v.note)
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    if not notes:
        return []
    marks = ", ".join(f"`({n})`" for n in sorted(notes))
    return ["", f"Values marked {marks} were computed but are not trusted: see the "
            "description above."]


def _json_ready(value):
    """Untrusted numbers as `{"value": v, "untrusted": note}`, everything else as is."""
    if isinstance(value, Untrusted):
        return {"value": float(value), "untrusted": value.note}
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _write_csv(path: pathlib.Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    flagged = lambda v: f"{float(v)!r} ({v.note})" if isinstance(v, Untrusted) else v
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: flagged(v) for k, v in row.items()} for row in rows)
