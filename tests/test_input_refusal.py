"""Bad input is refused up front (issue 11): a `ValueError`/`TypeError` in one line that
names the argument the user typed, raised before anything is solved or compiled.

Each case is one line of data, `(call, exception, match)`: to cover a new path, add a
line. The calls share one tiny problem (d = 3, depth 2) so the few solves they reach
compile once.
"""

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import sensing

import lnn_flow as lf

DIMS = (3, 3, 3)
T1 = 2.0
LOSS, TRUTH = sensing((3, 3), m=6)
WS0 = lf.init.balanced(jax.random.PRNGKey(1), DIMS, 0.5)
W0 = lf.end_to_end(WS0)
WS32 = tuple(w.astype(jnp.float32) for w in WS0)
B = 3
BATCH = tuple(jnp.stack([w] * B) for w in WS0)  # three copies of WS0
W0S = jnp.stack([W0] * B)
X, Y = jnp.ones((3, 4)), jnp.ones((3, 4))
LABELS = jnp.array([0, 1, 2, 0])


def nan_at(tree, i):
    """`tree` (a batch) with member `i` of its first array set to NaN."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves[0] = leaves[0].at[i].set(jnp.nan)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def complex_(x):
    return jnp.asarray(x) * (1 + 1j)


def with_leaf(ws, j, w):
    return tuple(w if k == j else v for k, v in enumerate(ws))


def nan_loss(W):
    """NaN wherever W != 0: a loss with no finite value at any non-zero init."""
    return jnp.log(-jnp.sum(W**2))


def numpy_loss(W):
    """A loss written with NumPy: fine on concrete arrays, not on traced ones."""
    return np.sum(np.asarray(W) ** 2)


def inf_loss(W):
    return jnp.sum(W**2) / 0.0


@functools.cache
def dense():
    """One dense solve, and one that stops at a loss threshold before `T1`."""
    full = lf.factor_flow(LOSS, WS0, T1, dense=True)
    stop = lf.factor_flow(LOSS, WS0, T1, dense=True, loss_threshold=0.5 * float(LOSS(W0)))
    return full, stop


REFUSED = [
    # --- complex, boolean, non-numeric arrays: never cast silently ------------------
    (lambda: lf.factor_flow(LOSS, with_leaf(WS0, 1, complex_(WS0[1])), T1), TypeError,
     r"`ws0\[1\]` must be real; got complex128"),
    (lambda: lf.end_to_end_flow(LOSS, complex_(W0), 2, T1), TypeError,
     r"`W0` must be real; got complex128"),
    (lambda: lf.factor_vector_field(LOSS, with_leaf(WS0, 0, complex_(WS0[0]))), TypeError,
     r"`ws\[0\]` must be real"),
    (lambda: lf.end_to_end_vector_field(LOSS, complex_(W0), 2), TypeError,
     r"`W` must be real"),
    (lambda: lf.apply_preconditioner(W0, complex_(W0), 2), TypeError, r"`G` must be real"),
    (lambda: lf.end_to_end(with_leaf(WS0, 1, complex_(WS0[1]))), TypeError,
     r"`ws\[1\]` must be real"),
    (lambda: lf.unbalancedness(with_leaf(WS0, 0, complex_(WS0[0]))), TypeError,
     r"`ws\[0\]` must be real"),
    (lambda: lf.gradient_descent(LOSS, with_leaf(WS0, 0, complex_(WS0[0])), 0.1, 5),
     TypeError, r"`ws0\[0\]` must be real"),
    (lambda: lf.end_to_end_descent(LOSS, complex_(W0), 2, 0.1, 5), TypeError,
     r"`W0` must be real"),
    (lambda: lf.gradient_descent(LOSS, WS0, 0.1 + 0.1j, 5), TypeError,
     r"`lr` must be a real number"),
    (lambda: lf.losses.WhitenedSquare(complex_(TRUTH)), TypeError, r"`target` must be real"),
    (lambda: lf.losses.SquareRegression(complex_(X), Y), TypeError, r"`X` must be real"),
    (lambda: lf.losses.SquareRegression(X, complex_(Y)), TypeError, r"`Y` must be real"),
    (lambda: lf.losses.LpRegression(complex_(X), Y), TypeError, r"`X` must be real"),
    (lambda: lf.losses.MatrixSensing(complex_(jnp.ones((2, 3, 3))), jnp.ones(2)), TypeError,
     r"`A` must be real"),
    (lambda: lf.losses.MatrixSensing(jnp.ones((2, 3, 3)), complex_(jnp.ones(2))), TypeError,
     r"`b` must be real"),
    (lambda: lf.losses.MatrixCompletion([0], [1], complex_([1.0]), (3, 3)), TypeError,
     r"`values` must be real"),
    (lambda: lf.losses.Logistic(complex_(X), LABELS), TypeError, r"`X` must be real"),
    (lambda: lf.init.balanced(jax.random.PRNGKey(0), DIMS, 1.0, dtype=jnp.complex64),
     TypeError, r"`dtype` must be a real floating dtype .* got complex64"),
    (lambda: lf.init.gaussian(jax.random.PRNGKey(0), DIMS, 1.0, dtype=complex), TypeError,
     r"`dtype` must be a real floating dtype .* got complex128"),
    (lambda: lf.init.gaussian(jax.random.PRNGKey(0), DIMS, 1.0, dtype=jnp.int32), TypeError,
     r"`dtype` must be a real floating dtype .* got int32"),
    (lambda: lf.init.from_end_to_end(complex_(W0), DIMS), TypeError, r"`W` must be real"),
    (lambda: lf.problems.random_matrix_sensing(jax.random.PRNGKey(0), (3, 3), 1, 4,
                                               dtype=jnp.complex128),
     TypeError, r"`dtype` must be a real floating dtype"),
    (lambda: lf.solve_batch("factor", LOSS, with_leaf(BATCH, 0, complex_(BATCH[0])), T1),
     TypeError, r"`init\[0\]` must be real"),
    (lambda: lf.solve_pool("end_to_end", LOSS, complex_(W0S), 2, T1), TypeError,
     r"`init` must be real"),
    (lambda: lf.factor_flow(LOSS, with_leaf(WS0, 0, WS0[0] > 0), T1), TypeError,
     r"`ws0\[0\]` must hold real numbers; got dtype bool"),
    (lambda: lf.factor_flow(LOSS, WS0, np.complex128(2 + 1j)), TypeError,
     r"`t1` must be a real number"),
    (lambda: lf.factor_flow(LOSS, WS0, True), TypeError, r"`t1` must be a real number"),
    # --- dtypes and sizes ---------------------------------------------------------
    (lambda: lf.factor_flow(LOSS, (WS0[0], WS32[1]), T1), TypeError,
     r"`ws0` must share one float dtype: ws0\[0\] is float64 but ws0\[1\] is float32"),
    (lambda: lf.factor_flow(lambda W: jnp.sum(W), (jnp.zeros((0, 3)), jnp.zeros((3, 0))),
                            T1),
     ValueError, r"`ws0\[0\]` must be non-empty; got shape \(0, 3\)"),
    (lambda: lf.end_to_end_flow(lambda W: jnp.sum(W), jnp.zeros((0, 3)), 2, T1), ValueError,
     r"`W0` must be non-empty"),
    # float32 cannot resolve the default rtol = 1e-8 (see the test below).
    (lambda: lf.factor_flow(LOSS, WS32, T1), ValueError,
     r"`rtol` = 1e-08 .* is finer than float32 resolves \(eps = 1.19e-07"),
    (lambda: lf.end_to_end_flow(LOSS, W0.astype(jnp.float32), 2, T1, rtol=1e-9), ValueError,
     r"`rtol` = 1e-09 .* finer than float32"),
    (lambda: lf.factor_flow(LOSS, WS0, T1, rtol=1e-17, atol=1e-20), ValueError,
     r"`rtol` = 1e-17 .* finer than float64"),
    # --- losses: no data, wrong shapes, contradictory data -------------------------
    (lambda: lf.losses.MatrixSensing(jnp.zeros((0, 3, 3)), jnp.zeros(0)), ValueError,
     r"`A` must be non-empty; got shape \(0, 3, 3\)"),
    (lambda: lf.losses.SquareRegression(jnp.zeros((3, 0)), jnp.zeros((3, 0))), ValueError,
     r"`X` must be non-empty"),
    (lambda: lf.losses.LpRegression(jnp.zeros((3, 0)), jnp.zeros((3, 0))), ValueError,
     r"`X` must be non-empty"),
    (lambda: lf.losses.MatrixCompletion([], [], [], (3, 3)), ValueError,
     r"`values` must be non-empty"),
    (lambda: lf.losses.Logistic(jnp.zeros((3, 0)), jnp.zeros(0, int), 2), ValueError,
     r"`X` must be non-empty"),
    (lambda: lf.losses.WhitenedSquare(jnp.zeros((0, 3))), ValueError,
     r"`target` must be non-empty"),
    (lambda: lf.losses.MatrixCompletion([0], [0], [1.0], (4, 4))(jnp.zeros((3, 3))),
     ValueError, r"`W` must have shape \(4, 4\) \(d_n, d_0\) for this MatrixCompletion; "
     r"got \(3, 3\)"),
    (lambda: lf.losses.WhitenedSquare(TRUTH)(jnp.zeros((3, 4))), ValueError,
     r"`W` must have shape \(3, 3\)"),
    (lambda: lf.losses.SquareRegression(X, Y)(jnp.zeros((3, 3, 3))), ValueError,
     r"`W` must have shape \(3, 3\)"),
    (lambda: lf.losses.LpRegression(X, Y)(jnp.zeros((4, 3))), ValueError,
     r"`W` must have shape \(3, 3\)"),
    (lambda: LOSS(jnp.zeros((3, 1))), ValueError, r"`W` must have shape \(3, 3\)"),
    (lambda: LOSS.measure(jnp.zeros((1, 3))), ValueError, r"`W` must have shape \(3, 3\)"),
    (lambda: lf.losses.Logistic(X, LABELS)(jnp.zeros((2, 3))), ValueError,
     r"`W` must have shape \(3, 3\)"),
    (lambda: lf.losses.MatrixCompletion([0, 1, 0], [2, 1, 2], [1.0, 2.0, 3.0], (3, 3)),
     ValueError, r"`values` give entry \(row 0, col 2\) two different values \(1 and 3\)"),
    (lambda: lf.losses.MatrixCompletion([0.0], [1], [1.0], (3, 3)), TypeError,
     r"`rows` must be a 1-D integer array; got dtype float64"),
    (lambda: lf.losses.MatrixCompletion([0], [3], [1.0], (3, 3)), ValueError,
     r"`cols` must hold indices in \[0, 3\)"),
    (lambda: lf.losses.Logistic(X, LABELS.astype(float)), TypeError,
     r"`labels` must be a 1-D integer array"),
    (lambda: lf.losses.LpRegression(X, Y, None), TypeError, r"`p` must be an integer"),
    # --- thresholds and the loss at the start --------------------------------------
    (lambda: lf.factor_flow(LOSS, WS0, T1, loss_threshold=-1e-3), ValueError,
     r"`loss_threshold` must be >= 0 for MatrixSensing \(a loss >= 0\); got -0.001"),
    (lambda: lf.end_to_end_flow(LOSS, W0, 2, T1, loss_threshold=-1.0), ValueError,
     r"`loss_threshold` must be >= 0 for MatrixSensing"),
    (lambda: lf.factor_flow(nan_loss, WS0, T1), ValueError,
     r"`ws0` gives a non-finite loss \(nan\) at the initial state"),
    (lambda: lf.factor_flow(inf_loss, WS0, T1), ValueError,
     r"`ws0` gives a non-finite loss \(inf\) at the initial state"),
    (lambda: lf.end_to_end_flow(nan_loss, W0, 2, T1), ValueError,
     r"`W0` gives a non-finite loss \(nan\)"),
    (lambda: lf.theory.symmetric_flow(nan_loss, W0 @ W0.T, T1), ValueError,
     r"gives a non-finite loss \(nan\) at the initial state"),
    (lambda: lf.gradient_descent(nan_loss, WS0, 0.1, 5), ValueError,
     r"`ws0` gives a non-finite loss"),
    (lambda: lf.end_to_end_descent(inf_loss, W0, 2, 0.1, 5), ValueError,
     r"`W0` gives a non-finite loss"),
    (lambda: lf.factor_flow(lambda W: jnp.sum(W, axis=0), WS0, T1), TypeError,
     r"`loss` must return a real scalar; got float64 of shape \(3,\)"),
    # --- solve options of the wrong kind -------------------------------------------
    (lambda: lf.factor_flow(LOSS, WS0, T1, stepsize_controller="pid"), TypeError,
     r"`stepsize_controller` must be a diffrax step-size controller; got str"),
    (lambda: lf.factor_flow(LOSS, WS0, T1, progress_meter="tqdm"), TypeError,
     r"`progress_meter` must be a diffrax progress meter"),
    (lambda: lf.factor_flow(LOSS, WS0, T1, dense="no"), TypeError,
     r"`dense` must be True or False; got 'no'"),
    (lambda: lf.factor_flow(LOSS, WS0, T1, ts=jnp.linspace(0.0, 3.0, 4)), ValueError,
     r"`ts` must lie within \[t0, t1\] = \[0.0, 2.0\]; got times from 0.0 to 3.0"),
    (lambda: lf.end_to_end_flow(LOSS, W0, 2.5, T1), TypeError, r"`depth` must be an integer"),
    (lambda: lf.end_to_end_flow(LOSS, W0, None, T1), TypeError, r"`depth` must be an integer"),
    (lambda: lf.problems.low_rank_matrix(jax.random.PRNGKey(0), (3, 3), 1, norm=-1.0),
     ValueError, r"`norm` must be >= 0; got -1.0"),
    (lambda: lf.problems.low_rank_matrix(jax.random.PRNGKey(0), (3, 3), 1, norm=np.nan),
     ValueError, r"`norm` must be finite"),
    (lambda: lf.init.gaussian(jax.random.PRNGKey(0), DIMS, 1j), TypeError,
     r"`scale` must be real"),
    (lambda: lf.init.balanced(5, DIMS, 1.0), TypeError,
     r"`key` must be a JAX PRNG key \(e.g. jax.random.PRNGKey\(0\)\); got 5"),
    (lambda: lf.init.from_end_to_end(W0, DIMS, key=3), TypeError, r"`key` must be a JAX PRNG"),
    (lambda: lf.problems.random_matrix_sensing(0, (3, 3), 1, 4), TypeError,
     r"`key` must be a JAX PRNG key"),
    # --- batches and pools: checked on the host, a bad member named by its index ----
    (lambda: lf.solve_batch("end_to_end", LOSS, jnp.zeros((0, 3, 3)), 2, T1), ValueError,
     r"`init` must hold at least one member"),
    (lambda: lf.solve_batch("end_to_end", LOSS, W0, 2, T1), ValueError,
     r"`init` must be a \(B, rows, cols\) array: a leading batch axis"),
    (lambda: lf.solve_pool("end_to_end", LOSS, W0S, 2.5, T1), TypeError,
     r"`depth` must be an integer; got 2.5"),
    (lambda: lf.solve_batch("factor", LOSS, BATCH, T1, rtol=-1.0), ValueError,
     r"`rtol` must be >= 0; got -1.0"),
    (lambda: lf.solve_batch("factor", LOSS, BATCH, T1, jnp.linspace(0.0, 3.0, 4)),
     ValueError, r"`ts` must lie within \[t0, t1\]"),
    (lambda: lf.solve_batch("factor", LOSS, nan_at(BATCH, 2), T1), ValueError,
     r"`init\[0\]` member 2 has non-finite entries \(NaN or inf\)"),
    (lambda: lf.solve_batch("end_to_end", LOSS, W0S, T1), TypeError,
     r"arguments of `end_to_end_flow` \(method 'end_to_end'\): missing a required "
     r"argument: 't1'; after `loss, init` it takes \(depth, t1, ts=None\)"),
    (lambda: lf.solve_batch("end_to_end", LOSS, W0S, 2, T1, loss_threshold=-1.0),
     ValueError, r"`loss_threshold` must be >= 0"),
    (lambda: lf.solve_batch("factor", nan_loss, BATCH, T1), ValueError,
     r"`init` member 0 gives a non-finite loss \(nan\)"),
    (lambda: lf.solve_batch("descent", LOSS, BATCH, -0.1, 5), ValueError,
     r"`lr` must be > 0"),
    (lambda: lf.solve_batch("end_to_end_descent", LOSS, W0S, 2, 0.1), TypeError,
     r"missing a required argument: 'steps'"),
    (lambda: lf.solve_batch("factor", LOSS, BATCH, T1, tolerance=1e-3), TypeError,
     r"arguments of `factor_flow` \(method 'factor'\): got an unexpected keyword"),
    (lambda: lf.solve_pool("factor", LOSS, BATCH, T1, rtol=-1.0), ValueError,
     r"`rtol` must be >= 0; got -1.0"),
    (lambda: lf.solve_pool("factor", LOSS, BATCH, T1, jnp.linspace(-1.0, 1.0, 3)),
     ValueError, r"`ts` must lie within \[t0, t1\]"),
    (lambda: lf.solve_pool("end_to_end", LOSS, nan_at(W0S, 1), 2, T1), ValueError,
     r"`init` member 1 has non-finite entries"),
    (lambda: lf.solve_pool("end_to_end", LOSS, W0S, T1), TypeError,
     r"missing a required argument: 't1'; after `loss, init` it takes \(depth, t1"),
    (lambda: lf.solve_pool("factor", LOSS, BATCH, T1, rtol=1e-17, atol=1e-20), ValueError,
     r"`rtol` = 1e-17 .* finer than float64"),
    # --- host-level functions inside a transformation; losses JAX cannot trace ------
    (lambda: jax.jit(lambda b: lf.solve_batch("factor", LOSS, b, T1).loss_final)(BATCH),
     TypeError, r"`init` is a traced value: `solve_batch` was called inside `jax.jit`"),
    (lambda: jax.jit(lambda t: lf.solve_pool("factor", LOSS, BATCH, t).loss_final)(T1),
     TypeError, r"`args` is a traced value: `solve_pool` was called inside"),
    (lambda: lf.factor_flow(numpy_loss, WS0, T1), TypeError,
     r"`loss` must be traceable by JAX \(written with `jax.numpy`\)"),
    (lambda: lf.solve_batch("factor", numpy_loss, BATCH, T1), TypeError,
     r"`loss` must be traceable by JAX"),
    (lambda: lf.gradient_descent(numpy_loss, WS0, 0.1, 5), TypeError,
     r"`loss` must be traceable by JAX"),
    # --- dense output outside the solved interval ----------------------------------
    (lambda: dense()[0].evaluate(T1 + 1.0), ValueError,
     r"`t` = 3.0 lies outside the solved interval \[t0, t_final\] = \[0, 2\]"),
    (lambda: dense()[0].evaluate(-0.5), ValueError, r"`t` = -0.5 lies outside"),
    (lambda: dense()[0].evaluate_factors(T1 + 1e-9), ValueError, r"`t` = .* lies outside"),
    (lambda: dense()[1].evaluate(T1), ValueError,
     r"lies outside the solved interval .* \(the solve ended at t_final = .*: Stopped: the "
     r"loss fell to `loss_threshold`"),
    (lambda: dense()[0].evaluate(1.0 + 1j), TypeError, r"`t` must be a real number"),
]


@pytest.mark.parametrize(("call", "error", "match"), REFUSED)
def test_refused_up_front(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value)  # one line


ACCEPTED = [
    # Integer data is real: cast to float64.
    lambda: lf.losses.WhitenedSquare(np.eye(3, dtype=int))(jnp.eye(3)),
    # The same entry twice with the same value is kept (a weight), see MatrixCompletion.
    lambda: lf.losses.MatrixCompletion([0, 0], [1, 1], [2.0, 2.0], (3, 3))(jnp.zeros((3, 3))),
    # A plain callable may be negative, so its threshold may be too.
    lambda: lf.factor_flow(lambda W: LOSS(W) - 1.0, WS0, T1, loss_threshold=-0.5).loss_final,
    # An integral float depth is a depth (made a Python int before floats are traced).
    lambda: lf.solve_batch("end_to_end", LOSS, W0S, 2.0, T1).loss_final,
    # The interval's ends are inside it.
    lambda: dense()[0].evaluate(T1),
    lambda: dense()[1].evaluate(float(dense()[1].t_final)),
]


@pytest.mark.parametrize("call", ACCEPTED)
def test_accepted(call):
    assert bool(jnp.all(jnp.isfinite(call())))


def test_float32_floor_is_where_the_solver_stops_resolving():
    """Why `rtol < eps` is refused: handed the same tolerance through an explicit
    controller (which bypasses the check), float32 spends its whole step budget
    (the controller asks for changes below the state's rounding), while at a
    tolerance float32 resolves the same solve finishes well inside it."""
    fine = diffrax.PIDController(rtol=1e-9, atol=1e-11)  # ~eps32 / 100
    starved = lf.factor_flow(LOSS, WS32, 20.0, stepsize_controller=fine, max_steps=2000)
    assert not bool(starved.success)
    assert bool(starved.result == diffrax.RESULTS.max_steps_reached)
    ok = lf.factor_flow(LOSS, WS32, 20.0, rtol=1e-6, atol=1e-8, max_steps=2000)
    assert bool(ok.success) and int(ok.stats.num_steps) < 500


def test_under_jax_jit_the_first_line_names_the_argument(capfd):
    """Under `jax.jit` the runtime error's text is wrapped deep in JAX's own; the check
    prints `lnn_flow: <text>` on stderr before raising, the first line the user sees.
    A good value prints nothing."""
    solve = jax.jit(lambda t1: lf.factor_flow(LOSS, WS0, t1).loss_final)
    float(solve(2.0))
    assert capfd.readouterr().err == ""
    with pytest.raises(Exception, match="`t1` must be greater than t0"):
        float(solve(-1.0))
    err = capfd.readouterr().err
    assert err.splitlines()[0] == "lnn_flow: `t1` must be greater than t0", err[:500]


def test_traced_checks_are_not_dropped():
    """Under `jit`, the argument checks become runtime errors: they must stay in the
    program (an unused `eqx.error_if` is dead code), e.g. `t1 < t0` and a conflicting
    completion entry."""
    with pytest.raises(eqx.EquinoxRuntimeError, match="`t1` must be greater than t0"):
        eqx.filter_jit(lambda t1: lf.factor_flow(LOSS, WS0, t1).loss_final)(jnp.asarray(-1.0))
    completion = lambda v: lf.losses.MatrixCompletion(
        jnp.array([0, 0]), jnp.array([1, 1]), v, (3, 3)
    )(jnp.zeros((3, 3)))
    with pytest.raises(eqx.EquinoxRuntimeError, match="two different values"):
        eqx.filter_jit(completion)(jnp.array([1.0, 2.0]))
    assert float(eqx.filter_jit(completion)(jnp.array([1.0, 1.0]))) == 0.5
