"""`lnn_flow._core._deprecation.renamed`: a keyword's old name keeps working for one release
with a DeprecationWarning naming both; both at once, or a required one missing, is a
TypeError."""

import warnings

import pytest

from lnn_flow._core._deprecation import RenamedWarning, renamed


def _api(new=None, *, old=None, required=False, unset=None):
    """A stand-in public function with `old` renamed to `new`."""
    return renamed("api", "old", "new", old, new, unset=unset, required=required)


def test_the_new_name_and_the_default_pass_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _api(3) == 3
        assert _api() is None
        assert _api(unset=(1, 2)) is None  # `new` at its default: returned as given
        default = (1, 2)
        assert renamed("api", "old", "new", None, default, unset=default) is default


def test_the_old_name_warns_at_the_callers_line_and_is_used():
    with pytest.warns(RenamedWarning) as record:
        assert _api(old=5) == 5
    (warning,) = record
    assert issubclass(warning.category, DeprecationWarning)
    assert str(warning.message) == (
        "api(): `old` is deprecated and will be removed in the next release; use `new`"
    )
    assert warning.filename == __file__  # stacklevel: the caller of `api`, not `api`


def test_both_names_or_neither_when_required_are_refused():
    with pytest.raises(TypeError, match=r"api\(\) got both `new` and its deprecated "
                                        r"name `old`; give only `new`"):
        _api(1, old=2)
    default = (1, 2)
    with pytest.raises(TypeError, match="got both"):  # `new` is not its default object
        renamed("api", "old", "new", (3,), tuple([1, 2]), unset=default)
    with pytest.raises(TypeError, match=r"api\(\) missing required argument: 'new'"):
        _api(required=True)
    assert _api(0, required=True) == 0  # falsy values count as given
