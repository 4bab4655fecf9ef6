"""The package's folders are its plan: every import points down the layers below, and
every module lives in a layer (a new module in a new folder fails until it is placed)."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lnn_flow"

# Bottom to top. The public modules sit with the layer they expose.
LAYERS = [
    ["_core"],
    ["_maths"],
    ["init", "losses", "problems"],
    ["_solving"],
    ["_flows"],
    ["_theory"],
    ["theory", "hierarchical", "tensor"],
    ["_reports"],
    ["_batching"],
    ["_sweeps"],
    ["_studies"],
    ["studies"],
    ["_command"],
    ["__init__", "__main__"],
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _imported_layers(source: str, here: tuple[str, ...]):
    """(line, layer) for every import of lnn_flow's own modules in `source`, the module
    at `here` (e.g. `("_solving", "_solve")`), lazy imports inside functions included."""
    package = here[:-1]
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            target = package[: len(package) - node.level + 1]
            target += tuple(node.module.split(".")) if node.module else ()
        elif node.module and node.module.split(".")[0] == "lnn_flow":
            target = tuple(node.module.split(".")[1:])
        else:
            continue
        if target:
            yield node.lineno, target[0]
        else:  # `from . import a, b` at the top: each name is a module or an attribute
            for alias in node.names:
                if alias.name != "__version__":  # metadata, not code
                    yield node.lineno, alias.name if alias.name in RANK else "__init__"


def _upward(source: str, here: tuple[str, ...]) -> list[str]:
    own = here[0]
    return [f"line {line}: {own} imports {layer}"
            for line, layer in _imported_layers(source, here)
            if layer != own and RANK[layer] > RANK[own]]


MODULES = sorted(PACKAGE.rglob("*.py"))


def _where(path: Path) -> tuple[str, ...]:
    return path.relative_to(PACKAGE).with_suffix("").parts


def test_every_module_is_in_a_layer():
    layers = {_where(p)[0] for p in MODULES}
    assert layers <= set(RANK), f"not placed in LAYERS: {sorted(layers - set(RANK))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: "/".join(_where(p)))
def test_imports_point_down(path):
    assert _upward(path.read_text(), _where(path)) == []


@pytest.mark.parametrize("line", ["from .._studies import _demo",
                                  "    from lnn_flow._sweeps._store import write",
                                  "from .. import studies"])
def test_an_upward_import_is_caught(line):
    source = (PACKAGE / "_solving" / "_solve.py").read_text()
    assert _upward(source + "\ndef late():\n" + "    " + line.strip() + "\n",
                   ("_solving", "_solve")) != []


def test_the_package_docstring_names_the_layers_in_order():
    import lnn_flow

    private = [name for names in LAYERS for name in names if name.startswith("_")
               and not name.startswith("__")]
    named = [n for n in re.findall(r"`(_[a-z]+)`", lnn_flow.__doc__) if n in RANK]
    assert named == private
