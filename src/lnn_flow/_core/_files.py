"""Study files: the one reader of the TOML/JSON files `lnn-flow run` and
`lnn-flow sweep` (and `lnn_flow.load_study`) take.

A study file is data, never executed: its text is parsed as TOML or JSON by its suffix
and must hold a table. Every failure is one `ValueError` (or `FileNotFoundError`)
naming the file, raised before any work.
"""

import json
import tomllib
from pathlib import Path
from typing import Any

SUFFIXES = (".toml", ".json")

# How a parse error is worded; callers that have promised another wording pass their own.
INVALID = "study file {path} is not valid {kind}: {error}"


def read_study_file(path: str | Path, *, invalid: str = INVALID) -> dict[str, Any]:
    """The table in the `.toml` or `.json` file `path`.

    Checks, in order: a folder is not a file; the suffix; existence; readable text;
    valid syntax (the message from `invalid`, formatted with `path`, `kind` ("toml" or
    "json"), `KIND` (upper case) and `error`); a table at the top level.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"study file {path} is not a file")
    if path.suffix not in SUFFIXES:
        raise ValueError(f"study file {path} must end in .toml or .json")
    if not path.is_file():
        raise FileNotFoundError(f"study file {path} not found")
    kind = path.suffix[1:]
    parse = tomllib.loads if kind == "toml" else json.loads
    try:
        raw = parse(path.read_text())
    except OSError as err:
        raise ValueError(f"study file {path} cannot be read: {err}") from None
    except ValueError as err:  # TOML, JSON and Unicode decoding errors are ValueErrors
        text = invalid.format(path=path, kind=kind, KIND=kind.upper(), error=err)
        raise ValueError(text) from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a study file must hold a table/object")
    return raw
