"""The README and the documentation pages as a user reads them: their examples run as
written and print what their comments claim; the package they describe installs what it
imports, on the Python they name, through public API only.

The README's content lives in docs/ now (tests/test_docs.py builds the site); the README
keeps the first example, which must equal the one in docs/getting-started.md."""

import ast
import contextlib
import importlib.metadata
import io
import re
import sys
import tomllib
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import trajectory_tolerance

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# A comment claim on a `print(...)` line: `# < 1e-7`, `# each < 1e-3`.
CLAIM = re.compile(r"^print\((?P<expr>.*)\)\s*#.*?<\s*(?P<bound>[0-9.]+(?:e-?[0-9]+)?)")


# The example blocks this module runs, by name: (page under docs/, its `## heading`).
# tests/test_docs.py checks that every block on the pages whose comments claim a bound
# is one of these.
EXAMPLES = {
    "example": ("getting-started.md", "Example"),  # also the README's `## Example`
    "tensor": ("tensor.md", "Example"),  # Section 5; the README's before the docs site
}


def section_block(text, heading, where):
    """The first ```python block of the `## {heading}` section of `text`."""
    assert f"\n## {heading}\n" in text, f"{where} has no `## {heading}`"
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)\n```", section, re.S)
    assert match, f"`## {heading}` of {where} must hold a ```python block"
    return match.group(1)


def example_block(name="example"):
    page, heading = EXAMPLES[name]
    return section_block((DOCS / page).read_text(), heading, f"docs/{page}")


def test_readme_example_is_the_checked_one():
    """The README's one example is the block run here (docs/getting-started.md's)."""
    assert section_block(README, "Example", "README.md") == example_block("example")


@pytest.fixture(scope="module")
def example():
    """The block run as written (one compile of each flow, ~15 s of CPU), its namespace
    and what it printed."""
    namespace = {"__name__": "readme_example"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example_block(), "docs/getting-started.md#example", "exec"), namespace)
    return namespace, out.getvalue()


def claims(name="example"):
    return [CLAIM.match(line) for line in example_block(name).splitlines()
            if CLAIM.match(line)]


def test_every_number_in_the_example_comments_is_a_checked_bound():
    """`# ~1e-6` (it printed 3.6e-8) is not a claim anyone checks: a number in a
    comment of the example must be a `< bound` this module evaluates."""
    for line in example_block().splitlines():
        comment = line.partition("#")[2]
        if re.search(r"\d+e-?\d+|~", comment):
            assert CLAIM.match(line), f"unchecked number in the example: {line!r}"
    assert len(claims()) == 3


def test_example_prints_what_its_comments_claim(example):
    namespace, printed = example
    assert printed.count("\n") >= 4 and "nan" not in printed.lower()
    for claim in claims():
        value = np.asarray(eval(claim["expr"], namespace))
        assert np.all(np.isfinite(value)), claim.group(0)
        assert value.max() < float(claim["bound"]), (claim.group(0), value)


def test_tensor_example_prints_what_its_comments_claim():
    """The Section 5 block: run as written (one CP solve, ~10 s of CPU); every number
    in its comments is a checked bound, and the solve reached its loss threshold."""
    block = example_block("tensor")
    for line in block.splitlines():
        comment = line.partition("#")[2]
        if re.search(r"\d+e-?\d+|~", comment) and "norm 1e-6" not in comment:
            assert CLAIM.match(line), f"unchecked number in the tensor example: {line!r}"
    namespace, out = {"__name__": "readme_tensor"}, io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "docs/tensor.md#example", "exec"), namespace)
    assert out.getvalue().startswith("True Stopped: the loss fell")
    found = claims("tensor")
    assert len(found) == 3
    for claim in found:
        value = np.asarray(eval(claim["expr"], namespace))
        assert np.all(np.isfinite(value)), claim.group(0)
        assert value.max() < float(claim["bound"]), (claim.group(0), value)


def test_example_flows_succeed_within_the_solver_tolerance(example):
    """Independent of the comments: what the example shows is true of the solves."""
    ns, printed = example
    factor, e2e = ns["factor"], ns["e2e"]
    assert printed.startswith("True ")
    assert bool(factor.success) and bool(e2e.success)
    assert bool(ns["results"].success.all())
    # Two solves of one trajectory (Theorem 1) at rtol 1e-8, atol 1e-10 (the defaults)
    # differ by at most twice the conftest rule's N (rtol |W| + atol); the comment's
    # 1e-7 is tighter, and this is the bound the tolerances guarantee.
    steps = max(int(factor.stats.num_steps), int(e2e.stats.num_steps))
    scale = jnp.abs(factor.end_to_end).max()
    gap = jnp.abs(factor.end_to_end - e2e.end_to_end).max()
    assert gap <= 2 * trajectory_tolerance(steps, scale, 1e-8, 1e-10)
    # The flows learned: the batch's final losses (< 1e-3 in the comment) are far
    # below the initial loss, so the bound is not met by a loss that was small anyway.
    assert float(factor.loss[0]) > 100 * float(ns["results"].loss[:, -1].max())


# --- What the README, the docs and pyproject say about the package -------------------


def test_python_version_agrees_with_pyproject():
    required = PYPROJECT["project"]["requires-python"]  # ">=3.11"
    version = required.removeprefix(">=")
    setup = (DOCS / "getting-started.md").read_text()
    for where, text in [("README.md", README), ("docs/getting-started.md", setup)]:
        assert f"Python >= {version}" in text, where
    for path in [ROOT / "README.md", *sorted(DOCS.glob("**/*.md"))]:
        text = path.read_text()
        assert not re.search(r"Python >= (?!" + re.escape(version) + r")\d", text), path
    assert sys.version_info >= tuple(int(p) for p in version.split("."))


def _imported_top_level_modules():
    names = set()
    for path in (ROOT / "src" / "lnn_flow").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"lnn_flow"}


def test_every_direct_import_is_a_declared_dependency():
    """`optimistix` was imported but not declared: an install could not find it."""
    declared = {
        re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")
        for req in PYPROJECT["project"]["dependencies"]
    }
    distributions = importlib.metadata.packages_distributions()
    missing = {
        module: distributions.get(module, [module])
        for module in _imported_top_level_modules()
        if not any(d.lower().replace("_", "-") in declared
                   for d in distributions.get(module, [module]))
    }
    assert not missing, f"imported by src/lnn_flow but not in pyproject: {missing}"


def test_license_is_an_spdx_expression():
    assert PYPROJECT["project"]["license"] == "MIT"  # a table is deprecated (PEP 639)


# Private attributes of diffrax/equinox/jax objects, which break silently on an upgrade
# (`RESULTS._index_to_message`, `result._value`, `jitted._cached._cache_size()`).
PRIVATE = {"_index_to_message", "_value", "_cached", "_cache_size"}


@pytest.mark.parametrize("folder", ["src/lnn_flow", "tests"])
def test_no_private_api_of_dependencies(folder):
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE
    ]
    assert not found, "private API:\n" + "\n".join(found)


# --- Constants quoted in the docs pages and docstrings, computed -----------------------


def tsit5_real_stability_limit():
    """The largest x with |R(-y)| <= 1 on [0, x], R(z) = 1 + z b^T (I - z A)^{-1} 1 the
    stability function of Tsit5's Butcher tableau (diffrax's own coefficients)."""
    import diffrax

    tableau = diffrax.Tsit5.tableau
    stages = len(tableau.c) + 1
    A = np.zeros((stages, stages))
    for i, row in enumerate(tableau.a_lower):
        A[i + 1, : len(row)] = row
    b = np.asarray(tableau.b_sol)
    R = lambda z: 1 + z * b @ np.linalg.solve(np.eye(stages) - z * A, np.ones(stages))
    xs = np.arange(1e-3, 6.0, 1e-4)
    stable = np.array([abs(R(-x)) <= 1 for x in xs])
    return float(xs[np.argmin(stable) - 1])


CONSTANTS = [  # (value computed here, as the text prints it, files that print it)
    (lambda: tsit5_real_stability_limit(), "3.5", ["docs/solvers.md"]),
    (lambda: np.sqrt(20 * np.finfo(float).eps), "6.7e-8",
     ["docs/numerics.md", "src/lnn_flow/_maths/_spectral.py"]),
    (lambda: 1e-17 ** (1 / 3), "2e-6", ["docs/numerics.md", "src/lnn_flow/_maths/_spectral.py"]),
]


@pytest.mark.parametrize("value, text, files", CONSTANTS, ids=[c[1] for c in CONSTANTS])
def test_quoted_constants_are_what_they_say(value, text, files):
    digits = len(text.split("e")[0].replace(".", ""))
    assert float(f"{value():.{digits - 1}e}") == float(text)
    for name in files:
        assert text in (ROOT / name).read_text(), name


def test_tsit5_step_is_stable_below_3_5_and_not_above():
    """The limit docs/solvers.md quotes, seen in diffrax's Tsit5 itself: y' = -y with
    constant steps h decays for h = 3.45 and grows for h = 3.55 (40 steps)."""
    import diffrax
    import jax

    def final(h):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: -y), diffrax.Tsit5(), 0.0, 40 * h, h,
            jnp.asarray(1.0), stepsize_controller=diffrax.ConstantStepSize(),
            max_steps=64,
        )
        return sol.ys[-1]

    stable, unstable = jax.vmap(final)(jnp.array([3.45, 3.55]))
    assert abs(stable) < 1 < abs(unstable)
