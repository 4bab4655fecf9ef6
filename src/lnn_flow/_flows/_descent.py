"""Gradient descent: the discrete counterpart of both flows.

Descent with step `lr` is forward Euler on the same vector fields the flows solve:

- on the factors, `W_j <- W_j - lr * d phi / d W_j` with `phi` of eq. (1) (the
  discretization of eq. 2);
- on the end-to-end matrix, `vec(W) <- vec(W) - zeta P(W) vec(grad l(W))`, the
  discretized end-to-end dynamics of Claim 1 (eq. 6 with step `zeta`); at depth 1 this
  is plain gradient descent on `l` itself.

Both run as one compiled `lax.scan` and return a [`lnn_flow.FlowSolution`][] with
`ts = step * lr`, so iterate `k` sits at the flow time `k * lr` it approximates.
The step size and the loss data are traced (new values never recompile); `steps`,
`save_every` and the optimizer are static.
"""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax import lax
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from .._core import _checks
from ._end_to_end import _EndToEndSystem
from .._maths._spectral import decomposition_name
from ._factor import _FactorSystem, checked_factors
from .._solving._result import FlowSolution, SolverStats, all_finite
from .._solving._system import Loss

# observe(t, y, args) -> a vector reduced by max over every iterate of a run.
Observer = Callable[[Float[Array, ""], PyTree[Array], PyTree], Float[Array, " r"]]


class _Carry(eqx.Module):
    y: PyTree[Array]
    opt_state: PyTree
    count: Int[Array, ""]  # iterates computed and finite, i.e. steps taken
    finite: Bool[Array, ""]
    worst: Float[Array, " r"]  # running max of the observer over iterates


def gradient_descent(
    loss: Loss,
    ws0: tuple[Float[ArrayLike, "_ _"], ...],
    lr: float,
    steps: int,
    *,
    save_every: int = 1,
    optimizer: optax.GradientTransformation | None = None,
) -> FlowSolution:
    """Descent on the factors: optax on `phi(W_1, ..., W_n) = l(W_n ... W_1)` (eq. 1).

    With the default `optimizer=None` this is plain gradient descent,

        W_j <- W_j - lr * W_{n:j+1}^T grad l(W_{n:1}) W_{j-1:1}^T,

    i.e. forward Euler with step `lr` on the factor flow eq. (2): iterate `k`
    approximates the flow at time `k * lr`, and `result.ts = step * lr`.

    **Arguments:**

    - `loss`, `ws0`: as in [`lnn_flow.factor_flow`][].
    - `lr`: step size (> 0); traced, so new values (or `vmap` over a grid) do not
      recompile.
    - `steps`: number of steps (static: a new value recompiles).
    - `save_every`: save the iterate every this many steps (and at step 0); the last
      iterate is always in the `*_final` fields.
    - `optimizer`: an optax `GradientTransformation` that turns gradients into update
      directions before the step `-lr` is applied, e.g. `optax.trace(decay=0.9)`
      (heavy-ball momentum) or `optax.scale_by_adam()`. A complete optimizer such as
      `optax.sgd(0.1)` works with `lr=1.0`, but then `ts` counts steps, not flow time.

    **Returns:** a [`lnn_flow.FlowSolution`][] with `solution=None`. Divergence (an
    iterate with NaN or inf) stops the run: `finite` is False, the `*_final` fields
    hold the last finite iterate and `t_final` its time, later saves are NaN with
    `reached == False`. `stats.num_vector_field_evals` counts gradient evaluations.
    `jax.vmap` over `ws0` (or `lr`) batches every field.

    Bad input is refused up front as in [`lnn_flow.factor_flow`][] (complex, empty or
    non-finite factors, mixed dtypes, a loss not finite at `ws0`).
    """
    ws0 = checked_factors(loss, ws0)
    system = _FactorSystem(loss, len(ws0))
    ws0 = _checks.finite_initial_loss("ws0", system, ws0)
    return _run(system, ws0, lr, steps, save_every, optimizer)[0]


def end_to_end_descent(
    loss: Loss,
    W0: Float[ArrayLike, "dn d0"],
    depth: int,
    lr: float,
    steps: int,
    *,
    save_every: int = 1,
    optimizer: optax.GradientTransformation | None = None,
    decomposition: str = "svd",
) -> FlowSolution:
    """The discretized end-to-end dynamics of Claim 1:

        vec(W_{t+1}) = vec(W_t) - zeta P(W_t) vec(grad l(W_t)),   zeta = lr

    i.e. forward Euler on Theorem 1 (eq. 3, vectorized as eq. 6) with the step `lr`.
    `depth=1` gives `P = I`: plain gradient descent on `l` (the "linear" model of
    Claim 1). Arguments and result as in [`lnn_flow.gradient_descent`][], with
    `result.factors` None; `decomposition` as in [`lnn_flow.end_to_end_flow`][].
    """
    depth = _checks.positive_int("depth", depth)
    W0 = _checks.non_empty("W0", _checks.as_float_array("W0", W0, ndim=2))
    W0 = _checks.finite("W0", W0)
    _checks.fits_loss(loss, W0.shape, "W0")
    system = _EndToEndSystem(loss, depth, decomposition_name(decomposition))
    W0 = _checks.finite_initial_loss("W0", system, W0)
    return _run(system, W0, lr, steps, save_every, optimizer)[0]


def _run(system, y0, lr, steps, save_every, optimizer, observe=None, observe_args=None,
         key=None):
    """Validate the descent arguments, then run the compiled scan.

    Returns `(solution, worst)`: `worst` is the elementwise max of
    `observe(k * lr, y_k, observe_args)` over every finite iterate `k = 0..steps`
    (empty without an observer), so a comparison sees each iterate without saving it.
    `key`: step `k` passes `fold_in(key, k)` to the system's field as `args` (a
    stochastic gradient, [`lnn_flow._flows._stochastic`][]); None passes None.
    """
    dtype = jax.tree_util.tree_leaves(y0)[0].dtype
    lr, steps, save_every = check_options(lr, steps, save_every, optimizer, dtype)
    with _checks.traceable_loss():
        return _descend(
            system,
            y0,
            lr,
            observe_args,
            key,
            steps=steps,
            save_every=save_every,
            optimizer=optimizer,
            observe=observe,
        )


def check_lr(lr, dtype) -> Float[Array, ""]:
    """`lr > 0`, a real scalar in `dtype` (traced values carry a runtime check)."""
    _checks.real_scalar("lr", lr)
    return _checks.positive("lr", _checks.as_float_array("lr", lr, ndim=0).astype(dtype))


def check_options(lr, steps, save_every, optimizer, dtype):
    """`(lr, steps, save_every)` checked: `lr > 0` real, integer counts >= 1, an optax
    optimizer or None."""
    lr = check_lr(lr, dtype)
    steps = _checks.positive_int("steps", steps, integral_floats=False)
    save_every = _checks.positive_int("save_every", save_every, integral_floats=False)
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "`optimizer` must be an optax GradientTransformation; got "
            f"{type(optimizer).__name__}"
        )
    return lr, steps, save_every


@eqx.filter_jit
def _descend(system, y0, lr, observe_args, key, *, steps, save_every, optimizer, observe):
    # Plain GD is `scale_by_learning_rate` alone; any other transformation comes first.
    transform = optax.chain(
        optax.identity() if optimizer is None else optimizer,
        optax.scale_by_learning_rate(lr),
    )
    dtype = jax.tree_util.tree_leaves(y0)[0].dtype

    def observed(t, y):
        if observe is None:
            return jnp.zeros((0,), dtype)
        return jnp.atleast_1d(observe(t, y, observe_args)).astype(dtype)

    def step(carry: _Carry, _) -> tuple[_Carry, None]:
        # The gradient is minus the flow's vector field (eq. 2, or eq. 3 end to end).
        args = None if key is None else jax.random.fold_in(key, carry.count)
        grads = jax.tree_util.tree_map(jnp.negative, system.vector_field(None, carry.y, args))
        updates, opt_state = transform.update(grads, carry.opt_state, carry.y)
        y = optax.apply_updates(carry.y, updates)
        ok = carry.finite & all_finite(y)
        keep = lambda new, old: jax.tree_util.tree_map(
            lambda a, b: jnp.where(ok, a, b), new, old
        )
        count = carry.count + ok
        worst = jnp.where(
            ok, jnp.maximum(carry.worst, observed(count * lr, y)), carry.worst
        )
        return _Carry(keep(y, carry.y), keep(opt_state, carry.opt_state), count, ok, worst), None

    def chunk(carry: _Carry, _) -> tuple[_Carry, tuple]:
        carry, _ = lax.scan(step, carry, None, length=save_every)
        return carry, (carry.y, carry.count)

    zero = jnp.zeros((), jnp.int32)
    carry = _Carry(
        y0, transform.init(y0), zero, jnp.asarray(True), observed(zero * lr, y0)
    )
    carry, (saved, counts) = lax.scan(chunk, carry, None, length=steps // save_every)
    if steps % save_every:
        carry, _ = lax.scan(step, carry, None, length=steps % save_every)

    save_steps = jnp.arange(steps // save_every + 1) * save_every
    saved = jax.tree_util.tree_map(lambda a, s: jnp.concatenate([a[None], s]), y0, saved)
    reached = jnp.concatenate([zero[None], counts]) == save_steps

    def fill(x):
        column = reached.reshape((-1,) + (1,) * (x.ndim - 1))
        return jnp.where(column, x, jnp.nan)

    saved = jax.tree_util.tree_map(fill, saved)
    end_to_end = jax.vmap(system.end_to_end)(saved)
    final_end_to_end = system.end_to_end(carry.y)
    # Gradient evaluations: every step taken, plus the one whose iterate diverged.
    evals = carry.count + (~carry.finite)
    return FlowSolution(
        ts=save_steps * lr,
        end_to_end=end_to_end,
        loss=jax.vmap(system.loss)(end_to_end),
        factors=system.factors(saved),
        reached=reached,
        t_final=carry.count * lr,
        end_to_end_final=final_end_to_end,
        loss_final=system.loss(final_end_to_end),
        factors_final=system.factors(carry.y),
        stopped=jnp.asarray(False),
        at_rest=jnp.asarray(False),
        finite=carry.finite,
        diverged=~carry.finite,
        result=diffrax.RESULTS.successful,
        stats=SolverStats(
            num_steps=evals,
            num_accepted_steps=carry.count,
            num_rejected_steps=evals - carry.count,
            num_vector_field_evals=evals,
        ),
        solution=None,
        depth=system.depth,
    ), carry.worst

