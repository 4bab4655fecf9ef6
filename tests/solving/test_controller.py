"""The finite guard: a non-finite trial step is rejected, and a solve that can no
longer advance is flagged as diverged."""

import diffrax
import jax.numpy as jnp

from lnn_flow._solving._controller import _FiniteGuard, controller, diverged_flag


def test_controller_choice():
    adaptive = controller(diffrax.Tsit5(), None, 1e-8, 1e-10)
    assert isinstance(adaptive, _FiniteGuard)
    assert (adaptive.rtol, adaptive.atol) == (1e-8, 1e-10)
    # PI by default (benchmarks/controller.py): diffrax's I controller would have
    # pcoeff 0, icoeff 1.
    assert (adaptive.inner.pcoeff, adaptive.inner.icoeff) == (0.4, 0.3)
    implicit = controller(diffrax.Kvaerno5(), None, 1e-8, 1e-10).inner
    assert (implicit.pcoeff, implicit.icoeff) == (0, 1)
    i_controller = diffrax.PIDController(rtol=1e-6, atol=1e-8)
    assert controller(diffrax.Tsit5(), i_controller, 1e-8, 1e-10).inner is i_controller
    assert isinstance(controller(diffrax.Euler(), None, 1e-8, 1e-10), diffrax.ConstantStepSize)
    given = diffrax.ConstantStepSize()
    assert controller(diffrax.Tsit5(), given, 1e-8, 1e-10) is given


def _adapt(y1, width=0.1):
    guard = controller(diffrax.Tsit5(), None, 1e-6, 1e-8)
    y0 = jnp.ones(2)
    # dt0 given: the PID controller's init needs neither terms nor the solver's func.
    inner_state = guard.inner.init(None, 0.0, 1.0, y0, 0.1, None, None, 5)[1]
    state = (inner_state, jnp.asarray(False))
    error = jnp.zeros(2)
    return guard.adapt_step_size(0.0, width, y0, y1, None, error, 5, state)


def test_non_finite_trial_is_rejected_and_flagged():
    keep, _, next_t1, _, (_, stuck), _ = _adapt(jnp.array([1.0, jnp.inf]))
    assert not bool(keep) and bool(stuck)
    assert float(next_t1) < 0.1  # the step shrinks


def test_finite_accepted_step_clears_the_flag():
    keep, _, _, _, (_, stuck), _ = _adapt(jnp.ones(2))
    assert bool(keep) and not bool(stuck)


def test_diverged_flag_only_for_the_guard():
    guard = controller(diffrax.Tsit5(), None, 1e-8, 1e-10)
    assert bool(diverged_flag(guard, (None, jnp.asarray(True))))
    assert not bool(diverged_flag(diffrax.ConstantStepSize(), None))
