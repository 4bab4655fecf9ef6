"""Strict JSON for every file lnn_flow writes: NaN and infinities become `null`.

Python's `json` writes bare `NaN` and `Infinity` by default, which is not JSON
(RFC 8259): JavaScript's `JSON.parse`, `jq` and many other readers refuse the file. A
number that is not finite (a seed that failed, a quantile over no finished seed) is
written as `null`; where the reason matters, the writer puts it beside the value
(flagged numbers of a report: `{"value": null, "untrusted": note}`).
"""

import json
import math
from collections.abc import Callable
from typing import Any


def strict(value: Any) -> Any:
    """`value` with every non-finite float replaced by `None`, recursively through
    dicts, lists and tuples. Other types are left to `json` (and its `default`)."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, default: Callable[[Any], Any] | None = None, **kwargs: Any) -> str:
    """`json.dumps` of [`strict`][]`(value)` (and of what `default` makes of other
    objects), refusing anything non-finite left."""
    hook = None if default is None else (lambda obj: strict(default(obj)))
    return json.dumps(strict(value), allow_nan=False, default=hook, **kwargs)
