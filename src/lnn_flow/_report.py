"""A report folder a researcher reads: figures (PNG), tables (CSV and JSON), and a
Markdown summary that embeds the figures and shows the tables."""

import csv
import dataclasses
import json
import math
import pathlib
from typing import Any

from matplotlib.figure import Figure


@dataclasses.dataclass
class Report:
    """What a study produced. `tables` map a name to rows (dicts of plain values)."""

    name: str
    title: str
    description: str
    tables: dict[str, list[dict[str, Any]]]
    figures: dict[str, Figure]  # built without pyplot: no GUI backend needed
    parameters: dict[str, Any]

    def table(self, name: str) -> str:
        """The table `name` as Markdown (for notebooks: `IPython.display.Markdown`)."""
        return _markdown_table(self.tables[name])

    def write(self, directory: str | pathlib.Path) -> pathlib.Path:
        """Write `summary.md`, one PNG per figure, `<table>.csv` and `results.json`
        into `directory` (created if needed); returns the path of `summary.md`."""
        out = pathlib.Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        lines = [f"# {self.title}", "", self.description, "", "## Parameters", ""]
        lines += [f"- `{k}`: {v}" for k, v in self.parameters.items()]
        for name, fig in self.figures.items():
            fig.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
            lines += ["", f"![{name}]({name}.png)"]
        for name, rows in self.tables.items():
            _write_csv(out / f"{name}.csv", rows)
            lines += ["", f"## {name}", "", _markdown_table(rows), "", f"([{name}.csv]({name}.csv))"]
        (out / "results.json").write_text(
            json.dumps(
                {"study": self.name, "parameters": self.parameters, "tables": self.tables},
                indent=2,
                default=_plain,
            )
        )
        summary = out / "summary.md"
        summary.write_text("\n".join(lines) + "\n")
        return summary


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _write_csv(path: pathlib.Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _cell(value) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def _markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(empty)"
    keys = list(rows[0])
    head = "| " + " | ".join(keys) + " |"
    rule = "| " + " | ".join("---" for _ in keys) + " |"
    body = ["| " + " | ".join(_cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join([head, rule, *body])
