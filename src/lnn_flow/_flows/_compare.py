"""Flow versus descent: how far gradient descent is from the flow it discretizes, the
unbalancedness descent creates, and implicit acceleration (Claim 1).

Descent with step `eta` is forward Euler on eq. (2) (or eq. 3), a first-order method:
on a fixed horizon `[0, T]` its iterates stay within `C(T) * eta` of the flow, so the
maximum distance halves when `eta` halves (fitted order 1). They stay within
`C_r(T) * eta^{r+1}` of the order-`r` modified flow
([`lnn_flow._flows._modified`][]): fitted orders 2 and 3.
"""

import functools
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from .._core import _checks
from ._descent import _run
from ._end_to_end import _EndToEndSystem
from .._maths._spectral import decomposition_name
from ._factor import _FactorSystem
from ._modified import ORDERS, modified_end_to_end_flow, modified_factor_flow
from .._maths._network import Factors, end_to_end, factor_gradient, unbalancedness
from .._solving._result import FlowSolution
from .._solving._system import Loss
from ..init import balanced


def distance_to_flow(
    flow: FlowSolution, descent: FlowSolution
) -> Float[Array, " k"]:
    """`||W_descent(t_k) - W_flow(t_k)||_F` at every save `t_k = k * lr` of a descent,
    with the flow's end-to-end matrix from its dense output (`dense=True`).

    Save every iterate (`save_every=1`) to see every iterate; for long runs use
    [`lnn_flow.max_distance_to_flow`][], which never stores them. NaN at saves the
    descent did not reach (it diverged).
    """
    flow_W = jax.vmap(flow.evaluate)(descent.ts)
    return jnp.linalg.norm(descent.end_to_end - flow_W, axis=(-2, -1))


def max_distance_to_flow(
    loss: Loss,
    flow: FlowSolution,
    init: Factors | Float[ArrayLike, "dn d0"],
    lr: float,
    steps: int,
    *,
    relative: bool = False,
    decomposition: str = "svd",
) -> Float[Array, ""]:
    """`max_{k <= steps} ||W_k - W_flow(k * lr)||_F`: the largest distance of plain
    gradient descent with step `lr` from the flow, over the horizon `[0, steps * lr]`.

    The flow (solved with `dense=True`) is evaluated from its dense output at *every*
    iterate inside the compiled descent scan, so no iterate is stored and `steps` can be
    millions. A factor flow is compared with [`lnn_flow.gradient_descent`][] from the
    factors `init`; an end-to-end flow with [`lnn_flow.end_to_end_descent`][] from the
    matrix `init` at the flow's depth. `relative=True` divides by
    `max_k ||W_flow(k * lr)||_F`, the scale of the trajectory (the relative end-to-end
    error over the whole trajectory). `inf` if descent diverges. The flow and `lr` are
    traced: a new flow or step size of the same shapes does not recompile.
    `decomposition` (`"svd"` or `"gram"`, as in [`lnn_flow.end_to_end_vector_field`][])
    is the end-to-end descent's; pass the one the flow was solved with.
    """
    if flow.solution is None:
        raise ValueError("`flow` has no dense output: solve it with `dense=True`")
    decomposition = decomposition_name(decomposition)
    if flow.factors is None:
        init = _checks.finite("init", _checks.as_float_array("init", init, ndim=2))
        system = _EndToEndSystem(loss, flow.depth, decomposition)
    else:
        init = _checks.factors(init, "init")
        system = _FactorSystem(loss, len(init))
    _checks.fits_loss(loss, flow.end_to_end_final.shape, "flow")
    lr = _checks.positive("lr", _checks.as_float_array("lr", lr, ndim=0))
    if _checks.is_concrete(lr) and _checks.is_concrete(flow.t_final):
        horizon = float(lr) * steps
        if horizon > float(flow.t_final) * (1 + 1e-12):
            raise ValueError(
                f"`steps` * `lr` = {horizon} runs past the flow's final time "
                f"{float(flow.t_final)}: its dense output does not reach there"
            )
    sol, worst = _run(
        system, init, lr, steps, steps, None, observe=_distance_and_scale,
        observe_args=flow,
    )
    distance = jnp.where(sol.finite, worst[0], jnp.inf)
    return distance / worst[1] if relative else distance


def _distance_and_scale(t, y, flow):
    # `k * lr` can overshoot the final time by rounding, where the dense output is NaN.
    W_flow = flow.evaluate(jnp.minimum(t, flow.t_final))
    W = y if flow.factors is None else end_to_end(y)
    return jnp.stack([jnp.linalg.norm(W - W_flow), jnp.linalg.norm(W_flow)])


class OrderFit(eqx.Module):
    """Maximum flow-to-descent distance over a fixed horizon for a list of step sizes,
    and the least-squares fit `log distance = order * log lr + log constant`.

    `flow_order` says which flow the distances are to: 0 the plain flow (eq. 2 or 3;
    fitted order about 1), `r` = 1 or 2 the order-`r` modified flow of each step size
    (about `r + 1`). `modified` holds one such fit per order asked of
    [`lnn_flow.distance_vs_lr`][], on the same step sizes.
    """

    lrs: Float[Array, " g"]
    steps: Int[Array, " g"]
    max_distance: Float[Array, " g"]
    order: Float[Array, ""]
    constant: Float[Array, ""]
    modified: tuple["OrderFit", ...] = ()
    flow_order: int = eqx.field(static=True, default=0)


def distance_vs_lr(
    loss: Loss,
    flow: FlowSolution,
    init: Factors | Float[ArrayLike, "dn d0"],
    lrs: Float[ArrayLike, " g"],
    horizon: float,
    *,
    relative: bool = False,
    decomposition: str = "svd",
    modified: Sequence[int] = (),
    modified_options: dict[str, Any] | None = None,
) -> OrderFit:
    """[`lnn_flow.max_distance_to_flow`][] over `[0, horizon]` for each step size in
    `lrs` (`round(horizon / lr)` steps each; each distinct step count compiles once),
    with the fitted order: about 1 for gradient descent (forward Euler).

    `modified`: orders (1, 2) of modified flows to measure too. For each order `r` and
    each step size the modified flow of that step size
    ([`lnn_flow.modified_factor_flow`][], or [`lnn_flow.modified_end_to_end_flow`][]
    for an end-to-end `flow`) is solved from `init` with `dense=True` and
    `modified_options` (default `rtol=1e-12, atol=1e-14`: solve errors far below
    the `~lr^{r+1}` distances measured), and `result.modified[i]` is its fit
    (order about `r + 1`).
    """
    lrs = np.asarray(lrs, dtype=float)
    if lrs.ndim != 1 or lrs.size < 1:
        raise ValueError(f"`lrs` must be a non-empty 1-D list; got shape {lrs.shape}")
    _checks.positive("lrs", jnp.asarray(lrs))
    _checks.positive("horizon", jnp.asarray(horizon, float))
    modified = tuple(modified) if not isinstance(modified, int) else (modified,)
    for order in modified:
        if isinstance(order, bool) or order not in ORDERS:
            raise ValueError(f"`modified` must list orders 1 or 2; got {order!r}")
    options = dict(_MODIFIED_OPTIONS if modified_options is None else modified_options)
    options["dense"] = True
    if flow.solution is None:
        raise ValueError("`flow` has no dense output: solve it with `dense=True`")
    steps = [max(1, int(round(horizon / lr))) for lr in lrs]
    lrs = np.asarray([horizon / n for n in steps])  # land exactly on the horizon

    def fit(flows, flow_order, modified_fits=()):
        distances = jnp.stack([
            max_distance_to_flow(
                loss, f, init, lr, n, relative=relative, decomposition=decomposition
            )
            for f, lr, n in zip(flows, lrs, steps)
        ])
        order, constant = fit_order(lrs, distances)
        return OrderFit(jnp.asarray(lrs), jnp.asarray(steps), distances, order, constant,
                        modified_fits, flow_order)

    fits = []
    for order in modified:
        solve_modified = functools.partial(
            _solve_modified, loss, flow, init, horizon, order, decomposition, options
        )
        fits.append(fit([solve_modified(lr) for lr in lrs], order))
    return fit([flow] * len(lrs), 0, tuple(fits))


_MODIFIED_OPTIONS = dict(rtol=1e-12, atol=1e-14)


def _solve_modified(loss, flow, init, horizon, order, decomposition, options, lr):
    if flow.factors is None:
        return modified_end_to_end_flow(
            loss, init, flow.depth, horizon, lr=lr, order=order,
            decomposition=decomposition, **options,
        )
    return modified_factor_flow(loss, init, horizon, lr=lr, order=order, **options)


def fit_order(
    lrs: Float[ArrayLike, " g"], errors: Float[ArrayLike, " g"]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """`(order, constant)` of the least-squares line `log error = order * log lr +
    log constant` (NaN with fewer than two finite, positive errors)."""
    x, y = jnp.log(jnp.asarray(lrs, float)), jnp.log(jnp.asarray(errors, float))
    use = jnp.isfinite(y)
    w = use.astype(float)
    n = jnp.sum(w)
    mx, my = jnp.sum(w * x) / n, jnp.sum(w * jnp.where(use, y, 0.0)) / n
    dx = jnp.where(use, x - mx, 0.0)
    slope = jnp.sum(dx * jnp.where(use, y - my, 0.0)) / jnp.sum(dx**2)
    slope = jnp.where(n >= 2, slope, jnp.nan)
    return slope, jnp.exp(my - slope * mx)


def unbalancedness_step(
    loss: Loss, ws: Factors, lr: float
) -> tuple[Float[Array, "_ _"], ...]:
    """The exact change of `W_{j+1}^T W_{j+1} - W_j W_j^T` (Lemma 1) made by one
    gradient-descent step `W_j <- W_j - eta G_j`, `G_j = d phi / d W_j`:

        eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T),   j = 1, ..., n - 1.

    Derivation: expanding the step,

        W'_{j+1}^T W'_{j+1} - W'_j W'_j^T = (W_{j+1}^T W_{j+1} - W_j W_j^T)
            - eta (W_{j+1}^T G_{j+1} + G_{j+1}^T W_{j+1} - W_j G_j^T - G_j W_j^T)
            + eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T).

    With `G_j = W_{n:j+1}^T grad l W_{j-1:1}^T` (proof of Lemma 1),
    `W_{j+1}^T G_{j+1} = W_{n:j+1}^T grad l W_{j:1}^T = G_j W_j^T`, and its transpose
    `G_{j+1}^T W_{j+1} = W_j G_j^T`, so the first-order term vanishes -- the same identity
    that makes the flow conserve these matrices -- and only the `eta^2` term is left.
    Descent therefore creates unbalancedness of order `eta^2` per step (Remark 2 needs it
    small), which vanishes in the flow limit.
    """
    ws = _checks.factors(ws, "ws")
    _checks.fits_loss(loss, (ws[-1].shape[0], ws[0].shape[1]), "ws")
    grads = factor_gradient(loss, ws)
    lr = _checks.positive("lr", _checks.as_float_array("lr", lr, ndim=0))
    return tuple(
        lr**2 * (grads[j + 1].T @ grads[j + 1] - grads[j] @ grads[j].T)
        for j in range(len(grads) - 1)
    )


def unbalancedness_along(solution: FlowSolution) -> Float[Array, " k"]:
    """Unbalancedness magnitude (Definition 1) at every save of a factor flow or
    descent: constant along the flow (Proposition 2), drifting under descent."""
    if solution.factors is None:
        raise ValueError("`solution` has no factors (an end-to-end flow or descent)")
    return jax.vmap(lambda ws: unbalancedness(tuple(ws)))(solution.factors)


class Acceleration(eqx.Module):
    """Gradient descent at depth `depth` over a grid of step sizes (Claim 1).

    `iterations[i]`: the first iteration whose loss is within `epsilon` of the optimum
    at `lrs[i]`, `-1` if it never is (a diverged run counts as failed). The best step
    size is the one with the fewest iterations; `losses` is its loss at every iteration
    (NaN everywhere if no step size succeeded).
    """

    lrs: Float[Array, " g"]
    iterations: Int[Array, " g"]
    diverged: Bool[Array, " g"]
    best_lr: Float[Array, ""]
    best_iterations: Int[Array, ""]
    losses: Float[Array, " steps+1"]
    depth: int = eqx.field(static=True)


# Gradient reduction (relative to the gradient at zero) that counts as stationary.
_STATIONARY = 1e-7


def loss_minimum(loss: Loss, shape: tuple[int, int]) -> Float[Array, ""]:
    """The minimum of a convex loss `l` over `shape` matrices, by BFGS (optimistix)
    from zero, to rounding-level tolerances.

    At these tolerances BFGS's own stopping test (successive iterates and values
    agreeing to 1e-13) can be out of reach of rounding although the minimum was found,
    so a run that used its 10,000 steps still counts when the gradient there fell by
    `_STATIONARY` relative to the gradient at zero (first-order optimality; a convex
    loss has its minimum at any stationary point, and the value there is off by a
    term second order in the gradient). A BFGS that did neither (a loss
    unbounded below, or one too ill-conditioned) gives no minimum: a `ValueError` with
    optimistix's reason, or NaN when traced (under `jit`/`vmap`), never the loss where
    it stopped."""
    solver = optx.BFGS(rtol=1e-13, atol=1e-15)
    W0 = jnp.zeros(shape)
    sol = optx.minimise(
        lambda W, _: loss(W), solver, W0, max_steps=10_000, throw=False
    )
    value = loss(sol.value)
    grad_norm = lambda W: jnp.linalg.norm(jax.grad(loss)(W))
    stationary = grad_norm(sol.value) <= _STATIONARY * jnp.maximum(grad_norm(W0), 1.0)
    converged = (sol.result == optx.RESULTS.successful) | (
        (sol.result == optx.RESULTS.nonlinear_max_steps_reached) & stationary
    )
    ok = converged & jnp.isfinite(value)
    if _checks.is_concrete(ok):
        if not bool(ok):
            reason = (
                optx.RESULTS[sol.result] if not bool(converged)
                else f"it ended at a non-finite loss {float(value)}"
            )
            raise ValueError(
                f"`loss` has no minimum BFGS could find over {tuple(shape)} matrices "
                f"(l* needs a convex loss bounded below): {reason.splitlines()[0]}"
            )
        return value
    return jnp.where(ok, value, jnp.nan)


def first_iteration_within(
    losses: Float[Array, " k"], level: Float[ArrayLike, ""]
) -> Int[Array, ""]:
    """The first index `k` with `losses[k] <= level`; `-1` if none."""
    hit = losses <= level
    return jnp.where(jnp.any(hit), jnp.argmax(hit), -1)


def implicit_acceleration(
    loss: Loss,
    dims: tuple[int, ...],
    lrs: Float[ArrayLike, " g"],
    steps: int,
    epsilon: float,
    *,
    key: PRNGKeyArray,
    scale: float = 1e-3,
    optimum: float | None = None,
) -> Acceleration:
    """Claim 1 / Figure 1 (left): plain gradient descent on `phi` (eq. 1) for the network
    `dims = (d_0, ..., d_n)` from near-zero balanced init (Assumption 1; end-to-end
    norm `scale`), at each step size in `lrs`, counting iterations until
    `l(W) - l* <= epsilon`. `dims = (d_0, d_n)` is GD on the linear model itself.

    `optimum`: `l*`; by default [`lnn_flow.loss_minimum`][] (the losses of Claim 1 are
    convex). One compile per `dims` and `steps`; the step sizes run one by one (their
    iterates are kept for the loss curve, and the step size is traced).
    """
    dims = _checks.dims(dims)
    lrs = np.asarray(lrs, dtype=float)
    if lrs.ndim != 1 or lrs.size < 1:
        raise ValueError(f"`lrs` must be a non-empty 1-D list; got shape {lrs.shape}")
    _checks.positive("lrs", jnp.asarray(lrs))
    _checks.positive("epsilon", jnp.asarray(epsilon, float))
    if optimum is None:
        optimum = loss_minimum(loss, (dims[-1], dims[0]))
    ws0 = balanced(key, dims, scale)
    system = _FactorSystem(loss, len(ws0))
    level = optimum + epsilon
    curves, diverged = [], []
    for lr in lrs:
        run = _run(system, ws0, lr, steps, 1, None)[0]
        curves.append(run.loss)  # keep only the losses: the saved factors are large
        diverged.append(~run.finite)
    curves, diverged = jnp.stack(curves), jnp.stack(diverged)
    iterations = jax.vmap(first_iteration_within, in_axes=(0, None))(curves, level)
    # A diverged run can pass the level before blowing up; it still counts as failed.
    iterations = jnp.where(diverged, -1, iterations)
    ok = iterations >= 0
    best = jnp.argmin(jnp.where(ok, iterations, jnp.iinfo(iterations.dtype).max))
    any_ok = jnp.any(ok)
    losses = curves[best]
    return Acceleration(
        lrs=jnp.asarray(lrs),
        iterations=iterations,
        diverged=diverged,
        best_lr=jnp.where(any_ok, jnp.asarray(lrs)[best], jnp.nan),
        best_iterations=jnp.where(any_ok, iterations[best], -1),
        losses=jnp.where(any_ok, losses, jnp.nan),
        depth=len(dims) - 1,
    )
