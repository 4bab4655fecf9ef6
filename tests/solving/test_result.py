"""`FlowSolution`: what its messages say, where its dense output answers."""

import jax.numpy as jnp
import pytest

import lnn_flow as lf
from lnn_flow._solving._result import FlowSolution, all_finite

LOSS = lf.losses.WhitenedSquare(jnp.eye(2))
W0 = 0.5 * jnp.eye(2)


@pytest.fixture(scope="module")
def dense():
    return lf.end_to_end_flow(LOSS, W0, 2, 1.0, dense=True)


def test_messages_say_why_the_solve_ended(dense):
    assert dense.message == "" and bool(dense.success)
    short = lf.end_to_end_flow(LOSS, W0, 2, 1.0, max_steps=2)
    assert short.message.startswith("The maximum number of solver steps was reached")
    assert "max|W| = " in short.message and not bool(short.success)
    stop = lf.end_to_end_flow(LOSS, W0, 2, 10.0, loss_threshold=1e-3)
    assert stop.message == "Stopped: the loss fell to `loss_threshold`."
    assert float(stop.loss_final) <= 1e-3


def test_dense_output_within_the_solved_interval_only(dense):
    # At a save time the dense output is the solve's own state (to interpolation
    # error, zero at the step ends: the last save is the final state).
    assert jnp.allclose(dense.evaluate(1.0), dense.end_to_end_final, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="outside the solved interval"):
        dense.evaluate(1.5)
    with pytest.raises(ValueError, match="the end-to-end flow has no factors"):
        dense.evaluate_factors(0.5)
    assert not hasattr(FlowSolution, "derivative")  # removed: unused


def test_all_finite():
    assert bool(all_finite((jnp.ones(2), jnp.zeros((2, 2)))))
    assert not bool(all_finite((jnp.ones(2), jnp.array([jnp.nan]))))
