"""The notes' results as functions a researcher runs on their own problem.

Each function cites the result it computes or checks (Cohen & Razin, *Lecture Notes on
Linear Neural Networks*). Checks along a trajectory take a solved
[`lnn_flow.FlowSolution`][] (some need `dense=True`) and return an `eqx.Module` of
arrays, so they compose with `vmap` over seeds.

- Propositions 1, 3: gradient/Hessian of `phi`, the non-strict saddle at the origin.
- Definition 3, Theorem 2: deficiency margin, convergence time and envelope.
- Definition 4, Theorem 3: analytic SVD along a trajectory, predicted vs observed rates.
- Lemma 2, Proposition 5: determinant sign, a pre-flight check, the norm bound.
- Exercises 1, 2, 5: the `d_n = 1` field, the symmetric network `W W^T`, closed forms.
"""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Bool, Float

from . import _checks
from ._factor import overparameterized_objective
from ._network import Factors
from ._solution import FlowSolution, Loss, solve
from .losses import MatrixSensing, WhitenedSquare

# --- Propositions 1 and 3: the landscape of phi -----------------------------------------


def objective_gradient(loss: Loss, ws: Factors) -> Factors:
    """`d phi / d W_j` for each factor, `phi(W_1, ..., W_n) = l(W_n ... W_1)` (eq. 1).
    Zero at the origin for depth >= 2 (proof of Proposition 1)."""
    ws = _checks.factors(ws, "ws")
    return jax.grad(overparameterized_objective, argnums=1)(loss, ws)


def objective_hessian(loss: Loss, ws: Factors) -> Float[Array, "p p"]:
    """The Hessian of `phi` on the flattened factors (`jax.flatten_util.ravel_pytree`
    order: `W_1` row-major, then `W_2`, ...). Zero at the origin for depth >= 3
    (proof of Proposition 3)."""
    ws = _checks.factors(ws, "ws")
    flat, unravel = ravel_pytree(ws)
    return jax.hessian(lambda x: overparameterized_objective(loss, unravel(x)))(flat)


def proposition3_point(
    W: Float[ArrayLike, "dn d0"], dims: Sequence[int]
) -> Factors:
    """Factors whose product is `W`, built as in the proof of Proposition 3: with
    `d_0 >= d_n`, `W_1` holds `||W||_F^{-1+1/n} W` in its top block and `W_j` (j >= 2)
    holds `||W||_F^{1/n} I` in its top-left block (mirrored when `d_0 < d_n`).

    Their norm is `sqrt(1 + (n-1) min(d_0, d_n)) ||W||_F^{1/n}` (the proof's
    `sqrt(n) eps^{1/n}` is the case `min(d_0, d_n) = 1`): taking `W` with
    `l(W) < l(0)` and `||W||_F = eps` gives points of lower objective arbitrarily close
    to the origin, so for n >= 3 the origin (zero gradient and Hessian) is a non-strict
    saddle.
    """
    dims = _checks.dims(dims)
    W = _checks.finite("W", _checks.as_float_array("W", W, ndim=2))
    W = _checks._require("W", W, lambda v: ~jnp.any(v != 0), "must be nonzero")
    d0, dn, n = dims[0], dims[-1], len(dims) - 1
    if W.shape != (dn, d0):
        raise ValueError(f"`W` must have shape {(dn, d0)} for dims {dims}")
    k = min(d0, dn)
    if min(dims[1:-1], default=k) < k:
        raise ValueError(f"`dims` hidden widths must be >= min(d_0, d_n) = {k}")
    norm = jnp.linalg.norm(W)
    root = norm ** (1.0 / n)
    if n == 1:
        return (W,)

    def block(rows, cols):  # the k x k identity in the top-left corner
        return jnp.zeros((rows, cols), W.dtype).at[:k, :k].set(jnp.eye(k, dtype=W.dtype))

    if d0 >= dn:
        first = jnp.zeros((dims[1], d0), W.dtype).at[:dn].set(W * norm ** (-1 + 1 / n))
        rest = [root * block(dims[j], dims[j - 1]) for j in range(2, n + 1)]
        return (first, *rest)
    last = jnp.zeros((dn, dims[-2]), W.dtype).at[:, :d0].set(W * norm ** (-1 + 1 / n))
    rest = [root * block(dims[j], dims[j - 1]) for j in range(1, n)]
    return (*rest, last)


# --- Definition 3 and Theorem 2: convergence under a deficiency margin --------------------


def deficiency_margin(
    W: Float[ArrayLike, "dn d0"], target: Float[ArrayLike, "dn d0"]
) -> Float[Array, ""]:
    """`sigma_min(target) - ||W - target||_F`: for the whitened square loss
    `1/2 ||W - target||^2` (Example 1, via Exercise 3) `W` has deficiency margin `delta`
    (Definition 3) iff `delta` is below this value; positive means `W` has one."""
    W = _checks.as_float_array("W", W, ndim=2)
    target = _checks.as_float_array("target", target, ndim=2)
    return jnp.linalg.svd(target, compute_uv=False)[-1] - jnp.linalg.norm(W - target)


def theorem2_time(
    initial_gap, epsilon, alpha, delta, depth: int
) -> Float[Array, ""]:
    """The time after which `phi(t) - phi* <= epsilon` (Theorem 2):
    `ln((phi(0) - phi*) / epsilon) / (2 alpha delta^{2(n-1)/n})`."""
    depth = _checks.depth(depth)
    rate = _theorem2_rate(alpha, delta, depth)
    initial_gap = _checks.positive("initial_gap", jnp.asarray(initial_gap, float))
    epsilon = _checks.positive("epsilon", jnp.asarray(epsilon, float))
    return jnp.log(initial_gap / epsilon) / rate


def _theorem2_rate(alpha, delta, depth: int):
    alpha = _checks.positive("alpha", jnp.asarray(alpha, float))
    delta = _checks.positive("delta", jnp.asarray(delta, float))
    return 2 * alpha * delta ** (2 * (depth - 1) / depth)


def convergence_envelope(
    ts: Float[ArrayLike, " k"], initial_gap, alpha, delta, depth: int
) -> Float[Array, " k"]:
    """Gronwall's envelope of Theorem 2's proof:
    `l(t) - l* <= (l(0) - l*) exp(-2 alpha delta^{2(n-1)/n} t)`."""
    depth = _checks.depth(depth)
    rate = _theorem2_rate(alpha, delta, depth)
    initial_gap = _checks.non_negative("initial_gap", jnp.asarray(initial_gap, float))
    return initial_gap * jnp.exp(-rate * jnp.asarray(ts))


class Theorem2Check(eqx.Module):
    """The solved loss gap next to Theorem 2's envelope."""

    ts: Float[Array, " k"]
    gap: Float[Array, " k"]  # l(t) - l*
    envelope: Float[Array, " k"]
    delta: Float[Array, ""]
    holds: Bool[Array, ""]  # gap <= envelope + slack at every reached save


def check_theorem2(
    solution: FlowSolution,
    loss: WhitenedSquare,
    *,
    delta: float | None = None,
    slack: float = 0.0,
) -> Theorem2Check:
    """Theorem 2 along a solved flow of the whitened square loss (1-strongly convex,
    `l* = 0`). `delta` defaults to the deficiency margin of `W(0)`; `slack` is an
    absolute allowance for solver error in the computed loss."""
    if not isinstance(loss, WhitenedSquare):
        raise TypeError("`loss` must be a WhitenedSquare (alpha = 1, l* = 0)")
    if solution.end_to_end.ndim != 3:
        raise ValueError(
            "`solution` must be one solve (end_to_end of shape (k, dn, d0)); for a "
            "batch use jax.vmap(lambda s: check_theorem2(s, loss))(solutions)"
        )
    W0 = solution.end_to_end[0]
    margin = deficiency_margin(W0, loss.target) if delta is None else jnp.asarray(delta)
    ts = solution.ts
    gap = solution.loss
    rate = 2 * jnp.maximum(margin, 0.0) ** (2 * (solution.depth - 1) / solution.depth)
    envelope = gap[0] * jnp.exp(-rate * (ts - ts[0]))
    ok = jnp.where(solution.reached, gap <= envelope + slack, True)
    return Theorem2Check(ts, gap, envelope, margin, jnp.all(ok) & (margin > 0))


# --- Definition 4 and Theorem 3: singular value dynamics -------------------------------


class AnalyticSVD(eqx.Module):
    """`W(t_k) = U_k diag(sigma_k) V_k^T` with columns continued in time (Definition 4):
    no reordering jumps, no sign flips between consecutive times; `sigma` may be
    negative (footnote 9) and need not be sorted."""

    U: Float[Array, "k dn r"]
    sigma: Float[Array, "k r"]
    V: Float[Array, "k d0 r"]


def _continue_svd(previous, W):
    U_prev, V_prev = previous
    U, s, Vt = jnp.linalg.svd(W, full_matrices=False)
    V = Vt.T
    overlap = jnp.abs(U_prev.T @ U) + jnp.abs(V_prev.T @ V)
    r = s.shape[0]

    def pick(_, carry):
        order, score = carry
        flat = jnp.argmax(score)
        old, new = flat // r, flat % r
        order = order.at[old].set(new)
        score = score.at[old, :].set(-jnp.inf).at[:, new].set(-jnp.inf)
        return order, score

    order, _ = jax.lax.fori_loop(0, r, pick, (jnp.zeros(r, int), overlap))
    U, s, V = U[:, order], s[order], V[:, order]
    sign_u = jnp.where(jnp.sum(U_prev * U, axis=0) < 0, -1.0, 1.0)
    sign_v = jnp.where(jnp.sum(V_prev * V, axis=0) < 0, -1.0, 1.0)
    U, V = U * sign_u, V * sign_v
    return (U, V), (U, s * sign_u * sign_v, V)


def analytic_svd(Ws: Float[ArrayLike, "k dn d0"]) -> AnalyticSVD:
    """An SVD of each `W(t_k)` continued from the previous one (Definition 4).

    Columns are matched to the previous time's by the largest overlap
    `|u_prev . u| + |v_prev . v|` (greedy assignment) and their signs fixed so that
    `u_prev . u > 0` and `v_prev . v > 0`; the singular value then carries the sign.
    Saves must be close enough that singular vectors move by less than 45 degrees
    between them (a few dozen saves per unit of the flow's fastest rate suffice).
    """
    Ws = _checks.finite("Ws", _checks.as_float_array("Ws", Ws, ndim=3))
    U0, s0, Vt0 = jnp.linalg.svd(Ws[0], full_matrices=False)
    _, (U, sigma, V) = jax.lax.scan(_continue_svd, (U0, Vt0.T), Ws)
    return AnalyticSVD(U, sigma, V)


def singular_value_rates(
    loss: Loss,
    W: Float[ArrayLike, "dn d0"],
    U: Float[ArrayLike, "dn r"],
    sigma: Float[ArrayLike, " r"],
    V: Float[ArrayLike, "d0 r"],
    depth: int,
) -> Float[Array, " r"]:
    """Theorem 3: `sigma_r' = n (sigma_r^2)^{1 - 1/n} <-grad l(W), u_r v_r^T>`."""
    depth = _checks.depth(depth)
    G = jax.grad(loss)(jnp.asarray(W))
    drive = -jnp.einsum("ir,ij,jr->r", U, G, V)
    return depth * (jnp.asarray(sigma) ** 2) ** (1 - 1 / depth) * drive


class SingularValueDynamics(eqx.Module):
    """Signed singular values along a trajectory with their rates, observed and
    predicted by Theorem 3."""

    ts: Float[Array, " k"]
    sigma: Float[Array, "k r"]
    observed_rates: Float[Array, "k r"]
    predicted_rates: Float[Array, "k r"]
    svd: AnalyticSVD


def singular_value_dynamics(
    loss: Loss, solution: FlowSolution, ts: Float[ArrayLike, " k"]
) -> SingularValueDynamics:
    """Theorem 3 along a solved flow (solved with `dense=True`), at times `ts`.

    Observed: `sigma_r'(t) = u_r^T W'(t) v_r` (eq. 11 with `u_r^T u_r' = 0`), where
    `W'(t)` is the time derivative of the solver's dense interpolant (forward-mode
    through it; for the factor flow through the product of interpolated factors), not a
    finite difference of saves. Predicted: `n (sigma_r^2)^{1-1/n} <-grad l, u_r v_r^T>`.
    """
    ts = _checks.as_float_array("ts", ts, ndim=1)
    one = jnp.ones((), ts.dtype)
    W, W_dot = jax.vmap(lambda t: jax.jvp(solution.evaluate, (t,), (one,)))(ts)
    svd = analytic_svd(W)
    observed = jnp.einsum("kir,kij,kjr->kr", svd.U, W_dot, svd.V)
    predicted = jax.vmap(
        lambda W_, U, s, V: singular_value_rates(loss, W_, U, s, V, solution.depth)
    )(W, svd.U, svd.sigma, svd.V)
    return SingularValueDynamics(ts, svd.sigma, observed, predicted, svd)


# --- Lemma 2 and Proposition 5: determinant and norms ---------------------------------


class DeterminantTrack(eqx.Module):
    """`det W(t)` along the saves of a square flow (Lemma 2: its sign is constant)."""

    ts: Float[Array, " k"]
    det: Float[Array, " k"]
    sigma_min: Float[Array, " k"]
    # From the first save where the computed trajectory hit the precision floor on: its
    # smallest singular value fell to the rounding level, or det changed sign, which an
    # exact flow cannot do (Lemma 2), so the solver's error exceeded sigma_min there;
    # or, given a tighter `reference` solve, det disagreed with the reference's.
    at_precision_floor: Bool[Array, " k"]
    floor_reached: Bool[Array, ""]
    # The sign of det is constant over the saves before the floor.
    sign_constant: Bool[Array, ""]


def determinant_track(
    solution: FlowSolution,
    reference: FlowSolution | None = None,
    *,
    agreement: float = 1e-2,
) -> DeterminantTrack:
    """Lemma 2 along a solved square flow, reporting where the computation stops being
    trustworthy instead of returning a trajectory that contradicts Lemma 2.

    Depth 2 on Proposition 5's example drives `det W` to zero exponentially. Once
    `sigma_min` is below the solver's error (or `d * eps * sigma_max`), the computed `W`
    can cross the singular matrices and flip the sign of `det`. Saves from the first
    such event on are flagged `at_precision_floor`; denser saves locate it more
    precisely.

    A sign flip shows the floor only once the error has swamped `det` completely; the
    error is large well before. `reference`, the same flow solved at tighter tolerances
    and saved at the same `ts`, measures it: saves from the first one whose `det`
    differs from the reference's by more than `agreement * |det_ref|` (or that the
    reference did not reach) are flagged too.
    """
    Ws = solution.end_to_end
    if Ws.shape[-1] != Ws.shape[-2]:
        raise ValueError(f"Lemma 2 needs square W; got {tuple(Ws.shape[-2:])}")
    if reference is not None and reference.end_to_end.shape != Ws.shape:
        raise ValueError(
            "`reference` must be the same flow saved at the same `ts`; got saves of "
            f"shape {tuple(reference.end_to_end.shape)}, expected {tuple(Ws.shape)}"
        )
    if not agreement > 0:
        raise ValueError(f"`agreement` must be > 0; got {agreement}")
    reached = solution.reached
    det = jnp.linalg.det(Ws)
    s = jnp.linalg.svd(Ws, compute_uv=False)
    rounding = reached & (s[..., -1] <= Ws.shape[-1] * jnp.finfo(Ws.dtype).eps * s[..., 0])
    sign = jnp.sign(det)
    flipped = jnp.concatenate(
        [jnp.zeros_like(sign[..., :1], bool), sign[..., 1:] != sign[..., :-1]], axis=-1
    ) & reached
    untrusted = rounding | flipped
    if reference is not None:
        det_ref = jnp.linalg.det(reference.end_to_end)
        off = ~(jnp.abs(det - det_ref) <= agreement * jnp.abs(det_ref))  # NaN: off
        untrusted = untrusted | (reached & (off | ~reference.reached))
    at_floor = jnp.cumsum(untrusted, axis=-1) > 0
    trusted = reached & ~at_floor
    constant = jnp.all(jnp.where(trusted, sign == sign[..., :1], True), axis=-1)
    return DeterminantTrack(
        solution.ts, det, s[..., -1], at_floor, jnp.any(at_floor, axis=-1), constant
    )


class DeterminantPreflight(eqx.Module):
    """Lemma 2 before a solve: can the flow from `W0` reach the minimizer at all?"""

    reachable: Bool[Array, ""]
    det_initial: Float[Array, ""]
    det_minimizer: Float[Array, ""]
    # For the whitened square loss, a lower bound on the loss along the whole flow
    # when unreachable: 1/2 sigma_min(target)^2 (distance to the singular matrices).
    loss_floor: Float[Array, ""]


def determinant_preflight(
    W0: Float[ArrayLike, "d d"], minimizer: Float[ArrayLike, "d d"]
) -> DeterminantPreflight:
    """For a square problem with a unique (or one-signed) full-rank minimizer, a flow
    whose `det W(0)` has the other sign, or is zero, never reaches it (Lemma 2: the
    sign of `det W(t)` is constant). `W0` may carry a leading batch axis via `vmap`."""
    W0 = _checks.as_float_array("W0", W0, ndim=2)
    minimizer = _checks.as_float_array("minimizer", minimizer, ndim=2)
    if W0.shape != minimizer.shape or W0.shape[0] != W0.shape[1]:
        raise ValueError(
            f"`W0` and `minimizer` must be square of one shape; got {tuple(W0.shape)} "
            f"and {tuple(minimizer.shape)}"
        )
    d0, dm = jnp.linalg.det(W0), jnp.linalg.det(minimizer)
    reachable = jnp.sign(d0) == jnp.sign(dm)
    floor = jnp.where(
        reachable, 0.0, 0.5 * jnp.linalg.svd(minimizer, compute_uv=False)[-1] ** 2
    )
    return DeterminantPreflight(reachable, d0, dm, floor)


def proposition5_norm_bound(
    loss_values: Float[ArrayLike, " k"],
    norm: Callable[[Float[Array, "2 2"]], Float[Array, ""]] = jnp.linalg.norm,
) -> Float[Array, " k"]:
    """Proposition 5's lower bound `c (l - l*)^{-1/2} + c'` on `||W(t)||` for the 2x2
    example ([`proposition5_loss`][], `l* = 0`) along a flow with
    `det W(0) > 0`, for any `norm` (default Frobenius).

    From the proof: `||W|| >= ||e1 e1^T|| / sqrt(6 l) - 2 S` with `S` the sum of the
    norms of the four units `e_i e_j^T`, so `c = ||e1 e1^T|| / sqrt(6)`, `c' = -2 S`
    (for `l >= 1/6` the bound is negative, hence trivially true)."""
    units = jnp.eye(4).reshape(4, 2, 2)
    sizes = jax.vmap(norm)(units)
    c = sizes[0] / jnp.sqrt(6.0)
    return c / jnp.sqrt(jnp.asarray(loss_values)) - 2 * jnp.sum(sizes)


def proposition5_loss() -> MatrixSensing:
    """The matrix-sensing loss of Proposition 5's proof (eq. 15):
    `A_1 = e1 e2^T`, `A_2 = e2 e1^T`, `A_3 = e2 e2^T`, `b = (1, 1, 0)`, so
    `l(W) = 1/6 [(w12 - 1)^2 + (w21 - 1)^2 + w22^2]`. Every minimizer (`l* = 0`) has
    `det W = -1`, so a flow from `det W(0) > 0` approaches `l*` only with diverging
    norm (Lemma 2 and Proposition 5)."""
    A = jnp.zeros((3, 2, 2)).at[0, 0, 1].set(1.0).at[1, 1, 0].set(1.0).at[2, 1, 1].set(1.0)
    return MatrixSensing(A, jnp.array([1.0, 1.0, 0.0]))


# --- Exercises ---------------------------------------------------------------------


def exercise1_vector_field(
    loss: Loss, w: Float[ArrayLike, "1 d0"], depth: int
) -> Float[Array, "1 d0"]:
    """Exercise 1: eq. (3) for a single output (`d_n = 1`, `W = w` a row),

        dw/dt = -||w||^{2 - 2/n} (g + (n - 1) <g, w_hat> w_hat),   w_hat = w / ||w||,

    with `g = grad l(w)`: the gradient, amplified by the norm and pushed along the
    direction already taken (`w_hat`)."""
    depth = _checks.depth(depth)
    w = _checks.as_float_array("w", w, ndim=2)
    if w.shape[0] != 1:
        raise ValueError(f"`w` must be a row (1, d_0); got {tuple(w.shape)}")
    g = jax.grad(loss)(w)
    if depth == 1:
        return -g
    norm = jnp.linalg.norm(w)
    safe = jnp.where(norm > 0, norm, 1.0)
    w_hat = w / safe
    along = jnp.sum(g * w_hat) * w_hat
    return -jnp.where(norm > 0, safe ** (2 - 2 / depth), 0.0) * (g + (depth - 1) * along)


def symmetric_vector_field(
    loss: Loss, Ws: Float[ArrayLike, "d d"]
) -> Float[Array, "d d"]:
    """Exercise 2: for `phi_s(W) = l_s(W W^T)` and `W' = -grad phi_s(W)`, the product
    `W_s = W W^T` follows, with `S = grad l_s(W_s) + grad l_s(W_s)^T`,

        dW_s/dt = -(S W_s + W_s S),

    since `grad phi_s(W) = S W`; it depends on `W` only through `W_s`."""
    Ws = _checks.as_float_array("Ws", Ws, ndim=2)
    return _symmetric_field(loss, Ws)


def _symmetric_field(loss, Ws):
    G = jax.grad(loss)(Ws)
    S = G + G.T
    return -(S @ Ws + Ws @ S)


class _SymmetricSystem(eqx.Module):
    loss: Loss
    depth: int = eqx.field(static=True, default=2)

    def vector_field(self, t, Ws, args):
        return _symmetric_field(self.loss, Ws)

    def end_to_end(self, Ws):
        return Ws

    def factors(self, Ws):
        return None


class _SymmetricFactorSystem(eqx.Module):
    """Exercise 2's flow on `W`, with state the factors `(W^T, W)` of the depth-2
    network `W W^T`: saves, `evaluate` and `evaluate_factors` then work as for
    [`lnn_flow.factor_flow`][]. Both leaves get the same field (transposed), so the
    first stays the exact transpose of the second."""

    loss: Loss
    depth: int = eqx.field(static=True, default=2)

    def vector_field(self, t, ws, args):
        _, W = ws
        dW = -jax.grad(lambda W_: self.loss(W_ @ W_.T))(W)
        return (dW.T, dW)

    def end_to_end(self, ws):
        return ws[1] @ ws[0]

    def factors(self, ws):
        return tuple(ws)


def symmetric_flow(loss: Loss, Ws0, t1, ts=None, **options) -> FlowSolution:
    """Solve Exercise 2's ODE on `W_s = W W^T` (options as for
    [`lnn_flow.factor_flow`][])."""
    Ws0 = _checks.finite("Ws0", _checks.as_float_array("Ws0", Ws0, ndim=2))
    _checks.fits_loss(loss, Ws0.shape, "Ws0")
    return solve(
        _SymmetricSystem(loss), Ws0, **_solve_options(t1, ts, options), init_name="Ws0"
    )


def symmetric_factor_flow(loss: Loss, W0, t1, ts=None, **options) -> FlowSolution:
    """Gradient flow on `W` for `phi_s(W) = l_s(W W^T)` (Exercise 2); `end_to_end` is
    `W W^T`, `factors` is `(W^T, W)`."""
    W0 = _checks.finite("W0", _checks.as_float_array("W0", W0, ndim=2))
    _checks.fits_loss(loss, (W0.shape[0], W0.shape[0]), "W0")
    return solve(
        _SymmetricFactorSystem(loss), (W0.T, W0), **_solve_options(t1, ts, options),
        init_name="W0",
    )


def _solve_options(t1, ts, options):
    defaults = dict(
        t0=0.0, solver=None, rtol=1e-8, atol=1e-10, max_steps=16_384, dt0=None,
        stepsize_controller=None, loss_threshold=None, steady_state=False, dense=False,
        progress_meter=None,
    )
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown solve options: {sorted(unknown)}")
    return {**defaults, **options, "t1": t1, "ts": ts}


def exercise5_singular_values(
    sigma0, drive, ts: Float[ArrayLike, " k"], depth: int
) -> Float[Array, "k r"]:
    """Closed-form `sigma_r(t)` under a constant drive `<-grad l, u_r v_r^T> = c_r`
    (Exercise 5; proof of Lemma 2 with `int_0^t g = n c_r t`), for `sigma_r(0) > 0`:

    - n = 2: `sigma_r(t) = sigma_r(0) exp(2 c_r t)`, so ratios between singular
      values evolve exponentially, `exp(2 (c_r - c_r') t)`;
    - n >= 3: `sigma_r(t) = (sigma_r(0)^{2/n-1} + (2/n-1) n c_r t)^{1/(2/n-1)}`, which
      blows up in finite time `sigma_r(0)^{2/n-1} / ((1-2/n) n c_r)` for `c_r > 0`;
    - n = 1: `sigma_r(t) = sigma_r(0) + c_r t`.

    Past the blow-up time the result is `inf`; a negative `sigma_r(0)` follows the
    mirrored formula of the proof of Lemma 2.
    """
    depth = _checks.depth(depth)
    t = jnp.asarray(ts)[:, None]
    s0 = jnp.atleast_1d(jnp.asarray(sigma0, t.dtype))
    c = jnp.atleast_1d(jnp.asarray(drive, t.dtype))
    if depth == 1:
        return s0 + c * t
    # sigma(0) < 0 mirrors sigma(0) > 0 with the drive's sign flipped (proof of
    # Lemma 2); sigma(0) = 0 stays 0.
    sign = jnp.sign(s0)
    size, c = jnp.abs(s0), sign * c
    if depth == 2:
        return sign * size * jnp.exp(2 * c * t)
    p = 2 / depth - 1
    base = size**p + p * depth * c * t
    safe = jnp.where(base > 0, base, 1.0)
    return sign * jnp.where(base > 0, safe ** (1 / p), jnp.inf)  # inf past blow-up


__all__ = [
    "AnalyticSVD",
    "DeterminantPreflight",
    "DeterminantTrack",
    "SingularValueDynamics",
    "Theorem2Check",
    "analytic_svd",
    "check_theorem2",
    "convergence_envelope",
    "deficiency_margin",
    "determinant_preflight",
    "determinant_track",
    "exercise1_vector_field",
    "exercise5_singular_values",
    "objective_gradient",
    "objective_hessian",
    "proposition3_point",
    "proposition5_loss",
    "proposition5_norm_bound",
    "singular_value_dynamics",
    "singular_value_rates",
    "symmetric_factor_flow",
    "symmetric_flow",
    "symmetric_vector_field",
    "theorem2_time",
]
