"""MkDocs hook: the notebooks under `notebooks/` are the site's tutorials, read from where
they live (mkdocs-jupyter renders them unexecuted) and published at `notebooks/NAME/`."""

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(File(path.relative_to(ROOT).as_posix(), src_dir=str(ROOT),
                          dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


# The Internals page: a bare `::: lnn_flow._name` block renders that private subpackage
# with its submodules and private members (the public pages show public names only), so
# that docstrings' references to `lnn_flow._...` objects resolve. Blocks that carry their
# own `options:` are left as written.
INTERNALS = "reference/internals.md"
INTERNAL_OPTIONS = """
    options:
      show_submodules: true
      filters: ["!^__"]"""


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != INTERNALS:
        return markdown
    lines = markdown.split("\n")
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if line.startswith(":::") and not following.startswith("    "):
            out.append(INTERNAL_OPTIONS.lstrip("\n"))
    return "\n".join(out)
