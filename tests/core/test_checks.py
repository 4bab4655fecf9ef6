"""`lnn_flow._core._checks`: argument checks whose errors name the caller's argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnn_flow._core import _checks


@pytest.mark.parametrize("value", [1, 3, np.int64(3), 3.0, np.asarray(2)])
def test_positive_int_accepts_integral_values(value):
    out = _checks.positive_int("rank", value)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value, error, message", [
    (0, ValueError, "`rank` must be >= 1; got 0"),
    (-2, ValueError, "`rank` must be >= 1; got -2"),
    (2.5, TypeError, "`rank` must be an integer; got 2.5"),
    ("3", TypeError, "`rank` must be an integer; got '3'"),
    (None, TypeError, "`rank` must be an integer; got None"),
    (np.inf, TypeError, "`rank` must be an integer"),
    (np.ones(2), TypeError, "`rank` must be an integer"),
])
def test_positive_int_names_the_argument(value, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(")):
        _checks.positive_int("rank", value)


def test_positive_int_minimum_and_strict_counts():
    assert _checks.positive_int("steps", 0, minimum=0) == 0
    with pytest.raises(ValueError, match="`num_saves` must be >= 3; got 2"):
        _checks.positive_int("num_saves", 2, minimum=3)
    # Counts such as `steps` refuse floats and bools even when integral.
    assert _checks.positive_int("steps", np.int32(4), integral_floats=False) == 4
    for bad in (4.0, True, np.asarray(4)):
        with pytest.raises(TypeError, match="`steps` must be an integer"):
            _checks.positive_int("steps", bad, integral_floats=False)


def test_positive_int_refuses_traced_sizes():
    with pytest.raises(TypeError, match="`depth` must be a Python integer"):
        jax.jit(lambda d: _checks.positive_int("depth", d))(jnp.asarray(2))


def test_positive_int_names_the_argument_it_is_given():
    assert _checks.positive_int("depth", 2) == 2
    with pytest.raises(ValueError, match="`depth` must be >= 1"):
        _checks.positive_int("depth", 0)
    with pytest.raises(ValueError, match="`rank` must be >= 1"):
        _checks.positive_int("rank", 0)
