"""The documentation site builds with `mkdocs build --strict`: every page, link, anchor,
figure and docstring cross-reference resolves (a broken one fails the build, shown on a
throwaway project), the figures it shows are the ones docs/make_figures.py writes, and
every example block whose comments claim a bound is one tests/test_readme.py runs."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from test_readme import CLAIM, EXAMPLES, README, section_block

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def mkdocs_build(project, site):
    """`python -m mkdocs build --strict` in `project` into `site`: (exit status, output)."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # Material's banner, not a warning
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    return done.returncode, done.stdout + done.stderr


def test_site_builds_strict(tmp_path):
    """The whole site, the API reference and the notebooks (not executed) included;
    `strict` turns every warning (a missing page, file or anchor, an unresolved
    cross-reference in a docstring) into a failure."""
    status, output = mkdocs_build(ROOT, tmp_path / "site")
    assert status == 0, f"mkdocs build --strict failed:\n{output}"
    for page in ["index.html", "getting-started/index.html", "benchmarks/index.html",
                 "reference/lnn_flow/index.html", "reference/internals/index.html",
                 "notebooks/theory_tour/index.html"]:
        assert (tmp_path / "site" / page).is_file(), page
    # The reference is generated from the docstrings: `factor_flow`'s signature is there.
    assert "factor_flow" in (tmp_path / "site/reference/lnn_flow/index.html").read_text()


def test_broken_docstring_cross_reference_fails_the_strict_build(tmp_path):
    """The same configuration on a throwaway module whose docstring refers to a name
    that does not exist: the strict build fails and names it; with the name defined it
    builds. (So test_site_builds_strict would catch a reference broken by a rename.)"""
    config = (ROOT / "mkdocs.yml").read_text()
    plugins = config[config.index("\nplugins:\n"):]
    plugins = re.sub(r"(?m)^  - mkdocs-jupyter:\n(    .*\n)+", "", plugins)
    plugins = plugins.replace("paths: [src]", "paths: [.]")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nstrict: true\nnav:\n  - index.md\n" + plugins)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# t\n\n::: tiny_module\n")

    def module(target):
        (tmp_path / "tiny_module.py").write_text(textwrap.dedent(f'''\
            """A module."""


            class Thing:
                """Something."""


            def f():
                """Returns a [`{target}`][]."""
            '''))

    module("NoSuchThing")
    status, output = mkdocs_build(tmp_path, tmp_path / "site")
    assert status != 0, output
    assert "NoSuchThing" in output and "cross-reference" in output, output
    module("Thing")  # a short name, resolved in the module's scope
    status, output = mkdocs_build(tmp_path, tmp_path / "site")
    assert status == 0, output


def python_blocks(text):
    return re.findall(r"```python\n(.*?)\n```", text, re.S)


def test_every_claimed_bound_in_the_docs_is_checked():
    """The blocks the README's tests ran (its example and the Section 5 example) moved
    to docs pages; tests/test_readme.py runs them from there. Any python block on a page
    (or in the README) that prints with a `# < bound` comment must be one of those
    blocks, so no claim is left that no test checks."""
    checked = {name: section_block((DOCS / page).read_text(), heading, page)
               for name, (page, heading) in EXAMPLES.items()}
    assert set(checked) >= {"example", "tensor"}
    for name, block in checked.items():
        assert any(CLAIM.match(line) for line in block.splitlines()), name
    pages = [ROOT / "README.md", *sorted(DOCS.glob("**/*.md"))]
    found = 0
    for path in pages:
        for block in python_blocks(path.read_text()):
            if any(CLAIM.match(line) for line in block.splitlines()):
                found += 1
                assert block in checked.values(), (
                    f"{path.relative_to(ROOT)}: a block with claimed bounds that "
                    f"tests/test_readme.py does not run:\n{block}")
    assert found == len(checked) + 1  # + the README's copy of the first example
    assert section_block(README, "Example", "README.md") == checked["example"]


def shown_figures():
    """`figures/NAME.png` shown by a docs page or the README."""
    texts = [p.read_text() for p in DOCS.glob("**/*.md")] + [README]
    return {name for text in texts for name in re.findall(r"figures/([\w.-]+\.png)", text)}


def test_figures_are_shown_small_and_written_by_make_figures():
    """Every PNG in docs/figures is shown somewhere (none left behind by a renamed
    figure), is small enough to commit, and is one docs/make_figures.py writes: a
    study's report figure (`lnn-flow run NAME --small`) or a benchmark table's plot."""
    sys.path.insert(0, str(DOCS))
    try:
        import make_figures
    finally:
        sys.path.remove(str(DOCS))
    on_disk = {p.name for p in (DOCS / "figures").glob("*.png")}
    assert shown_figures() == on_disk
    for name in on_disk:
        assert (DOCS / "figures" / name).stat().st_size < 300_000, name
        study = name.split("_")[0].removesuffix(".png")
        assert study in make_figures.STUDIES or (
            name.removeprefix("bench_").removesuffix(".png") in make_figures.PLOTS), name
    # Each benchmark plot's table is on the page, under its marker, with numbers.
    for plot in make_figures.PLOTS:
        header, rows = make_figures.table(plot)
        assert len(header) >= 2 and rows, plot

