"""Failures that say the truth (issue 11): a solve that fails says why, a stop is a
stop, the statistics count what ran, and every system's saves have the documented
shapes. Each case is one line of data, so the lists can grow."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import gradient_counter

import lnn_flow as lf
from lnn_flow import theory as th
from lnn_flow._flows._compare import loss_minimum

# --- A problem that converges fast, used by the counting and vmap cases ---------------

_sym = lambda x: 0.5 * (x + x.T)
TARGET = jnp.eye(3) + 0.2 * _sym(jax.random.normal(jax.random.PRNGKey(0), (3, 3)))
# W_1 = W_2 = S symmetric: W_2^T W_2 = W_1 W_1^T, balanced (Assumption 1), det > 0 like
# the positive definite target, so the depth-2 flow converges (Lemma 2).
S0 = 0.7 * jnp.eye(3) + 0.05 * _sym(jax.random.normal(jax.random.PRNGKey(1), (3, 3)))
WS0 = (S0, S0)
SQUARE = lf.losses.WhitenedSquare(TARGET)
LOSS0 = float(SQUARE(S0 @ S0))
CALLS = []


_tap = gradient_counter(CALLS)


def counted(W):
    """The whitened square loss, counting its gradient (= vector-field) evaluations.
    Forward evaluations (the loss stop's condition and root find) are not counted:
    they are not vector-field evaluations."""
    return SQUARE(_tap(W))


# (solve options, message regex): every stopping mode. rtol 1e-6 / atol 1e-8 and
# t1 = 60 (the flow is at rest to 1e-6 well before: its slowest rate is ~2 sigma_min of
# the target) keep each solve to a few hundred steps.
STOPS = [
    (dict(), r"^$"),
    (dict(loss_threshold=1e-3 * LOSS0), r"loss fell to `loss_threshold`"),
    (dict(steady_state=True), r"came to rest"),
    # Both: a rest stop is located by the loss event's root finder (one more field
    # evaluation); a loss stop evaluates only the loss.
    (dict(steady_state=True, loss_threshold=1e-30), r"came to rest"),
    (dict(steady_state=True, loss_threshold=1e-3 * LOSS0), r"loss fell"),
    (dict(max_steps=7), r"maximum number of solver steps was reached at t = "),
]


@pytest.mark.parametrize("options, message", STOPS)
def test_vector_field_count_is_exact_for_every_stop(options, message):
    CALLS.clear()
    sol = lf.factor_flow(counted, WS0, 60.0, rtol=1e-6, atol=1e-8, **options)
    jax.block_until_ready(sol.loss)
    assert int(sol.stats.num_vector_field_evals) == len(CALLS)
    assert len(CALLS) > 0
    assert re.search(message, sol.message), sol.message
    assert bool(sol.success) == ("max_steps" not in options)


def test_messages_under_vmap_are_each_members():
    """A nested list, entry i the message member i gets alone."""
    near = WS0  # stops at the threshold within the budget
    far = (0.05 * S0, 0.05 * S0)  # a small init: the plateau outlasts 40 steps
    batch = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), near, far)
    solve = lambda ws: lf.factor_flow(
        SQUARE, ws, 60.0, loss_threshold=1e-3 * LOSS0, max_steps=40
    )
    batched = jax.vmap(solve)(batch)
    members = [jax.tree_util.tree_map(lambda x: x[i], batched) for i in range(2)]
    assert batched.message == [m.message for m in members]
    # Each entry says what its member did (a vmapped solve steps members in lockstep,
    # so step counts, and with them where `max_steps` ends, differ from solves alone).
    assert "loss fell" in batched.message[0]
    t_final = float(batched.t_final[1])
    assert batched.message[1].startswith(
        f"The maximum number of solver steps was reached at t = {t_final:.6g},"
    )
    assert batched.success.tolist() == [True, False]
    # Two batch axes: a list of lists.
    nested = jax.tree_util.tree_map(lambda x: x.reshape((1, 2) + x.shape[1:]), batched)
    assert nested.message == [batched.message]


# --- Divergence: (loss, initial factors, t1, max_steps, message regex) ---------------

E = jnp.diag(jnp.array([1.0, 0.0]))
DIVERGING = [
    # dw/dt = e^w from w = 0 blows up at t = 1; the state stays ~34 while the field
    # (e^34) makes every step fall below the resolution of t.
    (lambda W: -jnp.exp(W[0, 0]), (jnp.zeros((1, 1)),), 2.0, 4000, r"diverged at t = 1\b"),
    # Exercise 5, depth 3, drive c = 1 from sigma = 1: sigma = (1 - t)^-3, blow-up at 1.
    (lambda W: -W[0, 0], (E, E, E), 2.0, 4000, r"diverged at t = 1\b"),
]


@pytest.mark.parametrize("loss, ws0, t1, max_steps, message", DIVERGING)
def test_flow_to_infinity_is_reported_as_diverged(loss, ws0, t1, max_steps, message):
    sol = lf.factor_flow(loss, ws0, t1, max_steps=max_steps)
    assert not bool(sol.success) and bool(sol.diverged)
    assert re.search(message, sol.message), sol.message


def test_overflowing_trial_steps_shrink_instead_of_stalling():
    """Init scale 1e30: the first trial steps overflow. diffrax's controller turned
    that into a NaN step size (inf / inf), rejected every later step at t = 0 and
    reported "maximum number of solver steps"; now the steps shrink and the flow
    moves (a gradient flow of a loss >= 0 cannot blow up, so it is merely stiff)."""
    loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(0), (4, 4), 2, 10)
    ws0 = lf.init.balanced(jax.random.PRNGKey(1), (4, 4, 4, 4), scale=1e30)
    sol = lf.factor_flow(loss, ws0, 10.0, max_steps=300)
    assert int(sol.stats.num_accepted_steps) > 100 and float(sol.t_final) > 0
    assert float(sol.loss_final) < 1e-3 * float(loss(lf.end_to_end(ws0)))
    assert not bool(sol.diverged) and "maximum number of solver steps" in sol.message


# --- A loss that is not finite at a bounded state (issue 26, items 1-3) ---------------

TIGHT = dict(rtol=1e-8, atol=1e-10)
CAP = 0.8  # max|W| along the flow from S0 @ S0 (0.49 I) to TARGET (~1.2 I) crosses it


def _capped(W):
    """SQUARE, NaN where max|W| > CAP: its autodiff gradient there is finite (zero),
    so without a guard the flow froze at the edge and ran on to t1 on a NaN loss."""
    return jnp.where(jnp.abs(W).max() > CAP, jnp.nan, SQUARE(W))


def _nan_value(W):
    """SQUARE's gradient everywhere, but a NaN value past CAP (stop_gradient)."""
    return SQUARE(W) + jax.lax.stop_gradient(jnp.where(jnp.abs(W).max() > CAP, jnp.nan, 0.0))


CAPPED = [
    ("factor", lambda loss, t1: lf.factor_flow(loss, WS0, t1, **TIGHT)),
    ("end_to_end", lambda loss, t1: lf.end_to_end_flow(loss, S0 @ S0, 2, t1, **TIGHT)),
    ("symmetric", lambda loss, t1: th.symmetric_flow(loss, S0 @ S0, t1, **TIGHT)),
]


@pytest.mark.parametrize("name, flow", CAPPED)
def test_nonfinite_loss_at_a_bounded_state_is_named_not_called_divergence(name, flow):
    """The solve ends at the last state with a finite loss, with `t_final` its time,
    and says the loss was not finite there; it used to run to t1 (`t_final = 60`)
    with a frozen state, or blame divergence."""
    sol = flow(_capped, 60.0)
    t_final = float(sol.t_final)
    W = np.asarray(sol.end_to_end_final)
    assert 0.0 < t_final < 60.0
    assert not bool(sol.success) and bool(sol.blocked) and not bool(sol.diverged)
    assert np.isfinite(float(sol.loss_final))
    # The state reached is the edge of the region where the loss is finite: the steps
    # past it shrank to the resolution of t, so it lies within one step's reach of CAP.
    assert CAP - 1e-6 < np.abs(W).max() <= CAP
    # It is the flow's state at t_final: the flow of the plain loss (which never sees
    # the cap) at that time, to the solves' tolerance (rtol 1e-8; 1e-6 leaves the
    # global errors of both runs room).
    plain = flow(SQUARE, t_final)
    np.testing.assert_allclose(W, np.asarray(plain.end_to_end_final), rtol=0, atol=1e-6)
    assert re.match(rf"The solve stopped at t = {t_final:.6g}, at a bounded state "
                    r"\(max\|W\| = 0\.8", sol.message), sol.message
    assert "did not diverge" in sol.message
    # It stopped at once: a stall no longer runs on to `max_steps`.
    assert int(sol.stats.num_steps) < 1000


def test_nan_loss_with_a_finite_gradient_never_counts_as_a_stop():
    sol = lf.factor_flow(_nan_value, WS0, 60.0, loss_threshold=1e-3 * LOSS0)
    assert not bool(sol.stopped) and not bool(sol.success) and bool(sol.blocked)
    assert np.isfinite(float(sol.loss_final)) and float(sol.loss_final) > 1e-3 * LOSS0
    assert "loss or its gradient is not finite" in sol.message


def test_reaching_t1_short_of_the_threshold_says_so():
    sol = lf.factor_flow(SQUARE, WS0, 0.5, loss_threshold=1e-12)
    assert bool(sol.success) and not bool(sol.stopped)
    loss = float(sol.loss_final)
    assert sol.message == (f"Reached t1 = 0.5 with loss {loss:.6g}, above "
                           "`loss_threshold` = 1e-12: the threshold was not reached.")
    assert lf.factor_flow(SQUARE, WS0, 0.5).message == ""


# --- A crossed threshold is a stop ----------------------------------------------------


def _jump_loss(W):
    """`1/2 ||W - I||^2`, dropping by 0.1 where `||W - I|| < 0.5`: invisible to the
    gradient, so the loss in time jumps from 0.225 to 0.125 there. A Newton root find
    on the crossing of 0.2 ran out of steps (result "maximum number of steps ... in
    the nonlinear solver", success False, stopped False)."""
    smooth = 0.5 * jnp.sum((W - jnp.eye(3)) ** 2)
    drop = jnp.where(jnp.linalg.norm(W - jnp.eye(3)) < 0.5, 0.0, 0.1)
    return smooth + jax.lax.stop_gradient(drop)


CROSSINGS = [
    (_jump_loss, lf.init.balanced(jax.random.PRNGKey(1), (3, 3, 3), 0.1), 0.2),
    (_jump_loss, lf.init.balanced(jax.random.PRNGKey(1), (3, 3, 3), 0.1), 0.15),
    (counted, WS0, 1e-3 * LOSS0),  # compiled already by the counting case
]


@pytest.mark.parametrize("loss, ws0, threshold", CROSSINGS)
def test_crossed_threshold_is_a_successful_stop(loss, ws0, threshold):
    sol = lf.factor_flow(loss, ws0, 50.0, loss_threshold=threshold, rtol=1e-6, atol=1e-8)
    assert bool(sol.success) and bool(sol.stopped), sol.message
    # The bisection keeps the stop on the crossed side: at or below the threshold.
    assert float(sol.loss_final) <= threshold
    assert float(sol.t_final) < 50.0


# --- Every system: factors per save, dense evaluation ---------------------------------

TS = jnp.linspace(0.0, 1.0, 5)
SPD = jnp.eye(3) + 0.3 * _sym(jax.random.normal(jax.random.PRNGKey(3), (3, 3)))
SYSTEMS = [
    ("factor", lambda **o: lf.factor_flow(SQUARE, WS0, 1.0, TS, **o)),
    ("end_to_end", lambda **o: lf.end_to_end_flow(SQUARE, S0 @ S0, 2, 1.0, TS, **o)),
    ("symmetric", lambda **o: th.symmetric_flow(SQUARE, S0 @ S0, 1.0, TS, **o)),
    ("symmetric_factor", lambda **o: th.symmetric_factor_flow(SQUARE, S0, 1.0, TS, **o)),
]


@pytest.mark.parametrize("name, flow", SYSTEMS)
def test_factors_and_dense_output_of_every_system(name, flow):
    sol = flow(dense=True)
    k = TS.shape[0]
    assert bool(sol.success) and sol.end_to_end.shape == (k, 3, 3)
    if sol.factors is not None:
        assert all(f.shape[0] == k and f.ndim == 3 for f in sol.factors)
        # The saved factors multiply to the saved end-to-end matrix (rounding only).
        product = jax.vmap(lambda *ws: lf.end_to_end(ws))(*sol.factors)
        np.testing.assert_allclose(product, sol.end_to_end, rtol=1e-12, atol=1e-14)
        for a, b in zip(sol.factors_final, (f[-1] for f in sol.factors)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # Saves at `ts` come from the same interpolant `evaluate` reads: equal to rounding.
    for i in (1, 3):
        np.testing.assert_allclose(sol.evaluate(TS[i]), sol.end_to_end[i], rtol=1e-12,
                                   atol=1e-14)


def test_symmetric_factor_flow_factors_are_w_transpose_and_w():
    W0 = S0 + 0.1 * jnp.triu(jnp.ones((3, 3)))  # not symmetric: W^T != W
    sol = th.symmetric_factor_flow(SQUARE, W0, 1.0, TS, dense=True)
    Wt, W = sol.factors
    assert Wt.shape == W.shape == (TS.shape[0], 3, 3)
    np.testing.assert_array_equal(Wt, jnp.swapaxes(W, 1, 2))  # exact: same arithmetic
    np.testing.assert_allclose(sol.end_to_end, W @ Wt, rtol=1e-12, atol=1e-14)


# --- loss_minimum: a failed BFGS is not a minimum -------------------------------------

MINIMA = [
    (lambda W: -jnp.sum(W), ValueError, r"`loss` has no minimum.*maximum number of steps"),
    (lambda W: jnp.sum(jnp.log(W**2)), ValueError, r"`loss` has no minimum"),
]


@pytest.mark.parametrize("loss, error, match", MINIMA)
def test_loss_minimum_refuses_a_failed_search(loss, error, match):
    with pytest.raises(error, match=match):
        loss_minimum(loss, (2, 2))


def test_loss_minimum_of_a_convex_loss_is_its_minimum():
    loss, truth = lf.problems.random_matrix_sensing(jax.random.PRNGKey(0), (3, 3), 2, 6)
    # An underdetermined sensing problem interpolates: l* = 0, to BFGS's atol 1e-15
    # on the gradient (squared residuals far below it).
    assert 0.0 <= float(loss_minimum(loss, (3, 3))) <= 1e-20
