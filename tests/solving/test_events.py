"""The stops of a solve: bisection inside the crossed step, and which events exist."""

import diffrax
import jax.numpy as jnp
import optimistix as optx
import pytest

from lnn_flow._flows._end_to_end import _EndToEndSystem
from lnn_flow._solving._events import _Crossing, stop_event


@pytest.mark.parametrize("root", [0.3, 0.999, 1e-3])
def test_crossing_lands_on_the_crossed_side(root):
    # Positive before the crossing, <= 0 at and after it, as diffrax hands it over.
    fn = lambda t, args: root - t
    rtol = 1e-12
    sol = optx.root_find(
        fn, _Crossing(rtol=rtol), jnp.asarray(0.5), options=dict(lower=0.0, upper=1.0)
    )
    t = float(sol.value)
    assert fn(t, None) <= 0  # never before the crossing
    assert t - root <= 2 * rtol * 1.0 + 1e-16  # the bracket's width, relative to |t| <= 1


def test_boolean_event_ends_at_once():
    # A boolean event gives 0 at the step's end: no bisection, the end is the stop.
    sol = optx.root_find(
        lambda t, args: jnp.zeros(()), _Crossing(rtol=1e-8), jnp.asarray(0.5),
        options=dict(lower=0.0, upper=1.0),
    )
    assert float(sol.value) == 1.0


def test_stop_event_holds_only_the_requested_stops():
    system = _EndToEndSystem(lambda W: jnp.sum(W**2), 2)
    assert stop_event(system, None, False, 1e-8, 1e-10) is None
    loss_only = stop_event(system, 0.1, False, 1e-8, 1e-10)
    assert set(loss_only.cond_fn) == {"loss"}
    assert isinstance(loss_only.root_finder, _Crossing)
    both = stop_event(system, 0.1, True, 1e-8, 1e-10)
    assert set(both.cond_fn) == {"loss", "rest"}
    rest = stop_event(system, None, True, 1e-8, 1e-10)
    assert set(rest.cond_fn) == {"rest"} and rest.root_finder is None
    # The loss condition is the loss at the state minus the threshold.
    value, crossed = loss_only.cond_fn["loss"]
    W = jnp.eye(2)
    assert float(value(0.0, W, None)) == pytest.approx(2.0 - 0.1)
    assert not bool(crossed(0.0, W, None))
    assert isinstance(both, diffrax.Event)
