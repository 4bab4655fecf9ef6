"""`assemble`: one FlowSolution from what any solve wrote, per-state maps applied per
save; and `solve`'s refusals before anything compiles."""

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest

from lnn_flow._flows._factor import _FactorSystem
from lnn_flow._solving._options import SolveOptions
from lnn_flow._solving._solve import _vector_field_evals, assemble, solve

LOSS = lambda W: jnp.sum(W**2)


def test_assemble_blanks_unreached_saves_and_keeps_t0():
    system = _FactorSystem(LOSS, 2)
    ts = jnp.array([0.0, 1.0, 2.0])
    y0 = (jnp.ones((3, 2)), jnp.ones((2, 3)))
    # diffrax wrote NaN/inf at t0 (no step accepted) and never reached t = 2.
    saved = (
        jnp.stack([jnp.full((3, 2), jnp.nan), 0.5 * y0[0], jnp.full((3, 2), jnp.inf)]),
        jnp.stack([jnp.full((2, 3), jnp.nan), 0.5 * y0[1], jnp.full((2, 3), jnp.inf)]),
    )
    sol = assemble(
        system, diffrax.Tsit5(), ts=ts, t0=0.0, y0=y0, saved_ys=saved,
        written=jnp.array([False, True, False]), t_final=jnp.asarray(1.5),
        y_final=(0.4 * y0[0], 0.4 * y0[1]), result=diffrax.RESULTS.max_steps_reached,
        stopped=jnp.asarray(False), num_steps=jnp.asarray(10),
        num_accepted_steps=jnp.asarray(7),
    )
    assert np.array_equal(sol.reached, [True, True, False])
    assert jnp.array_equal(sol.end_to_end[0], y0[1] @ y0[0])  # t0: the initial state
    assert jnp.allclose(sol.end_to_end[1], 0.25 * (y0[1] @ y0[0]))
    assert bool(jnp.all(jnp.isnan(sol.end_to_end[2]))) and bool(jnp.isnan(sol.loss[2]))
    # Factors per save, save axis first, blanked like the rest.
    assert [f.shape for f in sol.factors] == [(3, 3, 2), (3, 2, 3)]
    assert bool(jnp.all(jnp.isnan(sol.factors[0][2])))
    assert float(sol.loss_final) == pytest.approx(float(LOSS(0.16 * (y0[1] @ y0[0]))))
    assert int(sol.stats.num_rejected_steps) == 3
    # Tsit5: 7 stages, FSAL: 6 per step plus the first.
    assert int(sol.stats.num_vector_field_evals) == 10 * 6 + 1
    assert not bool(sol.success) and not bool(sol.diverged)


def test_vector_field_evals_unknown_for_implicit_solvers():
    assert int(_vector_field_evals(diffrax.Kvaerno5(), jnp.asarray(5))) == -1
    assert int(_vector_field_evals(diffrax.Euler(), jnp.asarray(5))) == 5


def test_solve_refuses_bad_output_options_before_compiling():
    system = _FactorSystem(LOSS, 1)
    y0 = (jnp.ones((2, 2)),)
    with pytest.raises(TypeError, match="`dense` must be True or False"):
        solve(system, y0, 1.0, None, SolveOptions(dense="yes"))
    with pytest.raises(ValueError, match="`t1` must be greater than t0"):
        solve(system, y0, -1.0, None, SolveOptions())
