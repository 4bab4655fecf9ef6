"""Keyword arguments renamed in the public API, kept working for one release.

A renamed keyword stays accepted under its old name, keyword-only, defaulting to
`None`; the function resolves the pair with [`renamed`][] on entry: the old name warns
([`RenamedWarning`][], a `DeprecationWarning` naming both), both at once is a TypeError
naming both, and a required argument given under neither name is a TypeError as
Python's own.
"""

import warnings
from typing import Any

__all__ = ["RenamedWarning", "renamed"]


class RenamedWarning(DeprecationWarning):
    """A keyword given under the name it had before a rename (removed next release).
    A subclass so that the command line can pick these out and print them."""


def renamed(
    where: str,
    old: str,
    new: str,
    old_value: Any,
    new_value: Any,
    *,
    unset: Any = None,
    required: bool = False,
    stacklevel: int = 3,
) -> Any:
    """The value of keyword `new` of function `where`, given as `new_value` or under its
    deprecated name `old` as `old_value`.

    `old` counts as given when `old_value is not None`, `new` when `new_value is not
    unset` (`unset`: the default in `where`'s signature). `old` alone warns
    `RenamedWarning` (at the caller of `where` with the default `stacklevel`) and
    returns `old_value`; both raise TypeError naming both; neither returns `new_value`
    (the default), or raises TypeError if `required`.
    """
    new_given = new_value is not unset
    if old_value is None:
        if not new_given and required:
            raise TypeError(f"{where}() missing required argument: '{new}'")
        return new_value
    if new_given:
        raise TypeError(
            f"{where}() got both `{new}` and its deprecated name `{old}`; give only "
            f"`{new}`"
        )
    warnings.warn(
        f"{where}(): `{old}` is deprecated and will be removed in the next release; "
        f"use `{new}`",
        RenamedWarning,
        stacklevel=stacklevel,
    )
    return old_value
