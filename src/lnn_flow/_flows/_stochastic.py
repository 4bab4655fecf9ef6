"""Mini-batch SGD on the factors and the stochastic differential equation it follows.

For a loss that is a mean over `m` samples, `l = (1/m) sum_i l_i` (regression
examples, sensing measurements, observed entries: the losses with `subset`), SGD with
step `h = lr` and batch size `b` is

    W_j <- W_j - h d phi_B / d W_j,   phi_B = l_B(W_n ... W_1),  l_B = (1/b) sum_{i in B} l_i

with `B` drawn uniformly each step, without replacement (`replace=False`, the default)
or with. Its mini-batch gradient is `grad phi + xi`, `E xi = 0`, with covariance
`c Sigma(theta) / b`,

    Sigma = (1/m) sum_i (g_i - g)(g_i - g)^T,   g_i = grad phi_i,  g = grad phi,

`c = 1` with replacement and `c = (m - b) / (m - 1)` without. To first order in `h`
(weak error `O(h)` over a fixed horizon; Li, Tai & E 2017, "Stochastic Modified
Equations") the iterate `k` is distributed as `theta(k h)` of the Ito SDE

    d theta = -grad phi dt + sqrt(h c / b) Sigma^{1/2} dB,

and to second order (`drift="modified"`) with the drift of the order-1 modified flow,
`-grad(phi + (h/4) |grad phi|^2)` ([`lnn_flow._flows._modified`][]). `Sigma` is never
formed: with the centred per-sample gradients as the rows of `G_c` (`m x p`),
`Sigma = G_c^T G_c / m`, so the noise `sqrt(h c / (b m)) G_c^T dB` with an
`m`-dimensional Brownian motion `B` has exactly that covariance. The SDE is solved by
diffrax with a `VirtualBrownianTree`: one key gives one path, reproducibly, at any
step size, and `jax.vmap` over keys gives many.
"""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._core import _checks
from .._maths._network import end_to_end
from .._solving._auto import run
from .._solving._flat import flat
from .._solving._options import prepare
from .._solving._result import FlowSolution
from .._solving._solve import assemble
from .._solving._system import AbstractFlowSystem, Loss
from ._descent import _run, check_lr
from ._factor import _FactorSystem, _field, checked_factors
from ._modified import _ModifiedSystem

DRIFTS = ("flow", "modified")


class _MiniBatchSystem(AbstractFlowSystem):
    """Eq. (2) on the mini-batch loss drawn by the key `args` (the full loss when
    `args` is None): the direction one SGD step moves along."""

    loss: Loss
    depth: int = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    replace: bool = eqx.field(static=True)

    def vector_field(self, t, ws, key):
        if key is None:
            return _field(self.loss, ws)
        batch = jax.random.choice(
            key, self.loss.num_samples, (self.batch_size,), replace=self.replace
        )
        return _field(self.loss.subset(batch), ws)

    def end_to_end(self, ws):
        return end_to_end(ws)

    def factors(self, ws):
        return ws


def _sampled(loss, batch_size, replace) -> tuple[int, int]:
    """`(m, b)`: a loss with samples, and a batch size that fits them."""
    if not (hasattr(loss, "subset") and hasattr(loss, "num_samples")):
        raise TypeError(
            "`loss` must be a mean over samples (a loss of lnn_flow.losses with "
            f"`subset`: SquareRegression, LpRegression, MatrixSensing, MatrixCompletion, "
            f"Logistic); got {type(loss).__name__}"
        )
    if not isinstance(replace, bool):
        raise TypeError(f"`replace` must be True or False; got {replace!r}")
    m = int(loss.num_samples)
    b = _checks.positive_int("batch_size", batch_size, integral_floats=False)
    if not replace and b > m:
        raise ValueError(
            f"`batch_size` must be <= the loss's {m} samples without replacement; got {b}"
        )
    return m, b


def stochastic_gradient_descent(
    loss: Loss,
    ws0: tuple[Float[ArrayLike, "_ _"], ...],
    lr: float,
    steps: int,
    *,
    batch_size: int,
    key: PRNGKeyArray,
    save_every: int = 1,
    replace: bool = False,
) -> FlowSolution:
    """Mini-batch SGD on the factors: [`lnn_flow.gradient_descent`][] with the gradient
    of the mean over `batch_size` samples drawn afresh each step (module docstring).

    - `loss`: a mean over samples (`loss.subset`, `loss.num_samples`).
    - `key`: a JAX PRNG key; step `k` draws its batch from `fold_in(key, k)`, so a run
      is reproducible per key. `jax.vmap` over keys runs many seeds in one program.
    - `replace`: draw each batch with replacement (default: without).

    Result as in [`lnn_flow.gradient_descent`][] (`ts = step * lr`); its `loss` is the
    full loss at each save.
    """
    ws0 = checked_factors(loss, ws0)
    _, b = _sampled(loss, batch_size, replace)
    key = _checks.prng_key("key", key)
    system = _MiniBatchSystem(loss, len(ws0), b, replace)
    ws0 = _checks.finite_initial_loss("ws0", system, ws0)
    return _run(system, ws0, lr, steps, save_every, None, key=key)[0]


def sgd_diffusion(
    loss: Loss, ws: tuple[Float[ArrayLike, "_ _"], ...], lr: float, batch_size: int,
    *, replace: bool = False,
) -> Float[Array, "p m"]:
    """The SDE's noise matrix `S = sqrt(lr c / (b m)) G_c^T` at `ws` (module
    docstring): `S S^T = lr c Sigma / b`, the covariance of one SGD step's noise over
    `lr` (flat state in `jax.flatten_util.ravel_pytree(ws)` order; `m` columns, one
    per sample)."""
    ws = checked_factors(loss, ws, "ws")
    m, b = _sampled(loss, batch_size, replace)
    lr = check_lr(lr, ws[0].dtype)
    return _diffusion(loss, ws, lr, m, b, replace)


def _diffusion(loss, ws, lr, m, b, replace):
    def sample_gradient(i):
        g = jax.grad(lambda w: loss.subset(i[None])(end_to_end(w)))(ws)
        return jax.flatten_util.ravel_pytree(g)[0]

    G = jax.vmap(sample_gradient)(jnp.arange(m))
    G = G - jnp.mean(G, axis=0)
    c = 1.0 if replace or m == 1 else (m - b) / (m - 1)
    return jnp.sqrt(lr * c / (b * m)) * G.T


def sgd_sde(
    loss: Loss,
    ws0: tuple[Float[ArrayLike, "_ _"], ...],
    t1: float,
    ts: Float[ArrayLike, " k"] | None = None,
    *,
    lr: float,
    batch_size: int,
    key: PRNGKeyArray,
    replace: bool = False,
    drift: str = "flow",
    solver: diffrax.AbstractSolver | None = None,
    dt0: float | None = None,
    max_steps: int | None = None,
) -> FlowSolution:
    """Solve the stochastic modified equation of [`lnn_flow.stochastic_gradient_descent`][]
    (module docstring) on `[0, t1]`, one Brownian path per `key`.

    - `lr`, `batch_size`, `replace`: those of the SGD it models.
    - `drift`: `"flow"` (eq. 2's field: weak order 1 in `lr`) or `"modified"` (the
      order-1 modified flow's field: weak order 2).
    - `solver`: an Ito solver of diffrax (default `diffrax.Euler()`, Euler-Maruyama:
      weak order 1 in `dt0`); a Stratonovich solver (Heun, SPaRK, ...) would solve
      another SDE here and is refused.
    - `dt0`: the constant step (default `lr / 4`: the solver's weak error then stays
      below the first-order model's own `O(lr)`). The Brownian tree resolves to
      `dt0 / 2`.
    - `max_steps`: default the number of steps to `t1`.

    Returns a [`lnn_flow.FlowSolution`][] saved at `ts` (default `0, t1`);
    `jax.vmap` over `key` gives paths (`eqx.filter_vmap` or `jax.vmap` with the loss
    closed over). Each step evaluates the `m` per-sample gradients.
    """
    ws0 = checked_factors(loss, ws0)
    m, b = _sampled(loss, batch_size, replace)
    key = _checks.prng_key("key", key)
    dtype = ws0[0].dtype
    given_lr = lr
    lr = check_lr(lr, dtype)
    if drift not in DRIFTS:
        raise ValueError(f"`drift` must be one of {DRIFTS}; got {drift!r}")
    solver = diffrax.Euler() if solver is None else solver
    if not isinstance(solver, diffrax.AbstractItoSolver):
        raise TypeError(
            "`solver` must be an Ito solver of diffrax (Euler, ItoMilstein for commutative "
            f"noise, ...): this SDE is an Ito SDE; got {type(solver).__name__}"
        )
    if dt0 is None:
        if not _checks.is_concrete(given_lr):
            raise ValueError("`dt0` is required when `lr` is traced")
        dt0 = float(given_lr) / 4
    if max_steps is None:
        if not (_checks.is_concrete(t1) and _checks.is_concrete(dt0)):
            raise ValueError("`max_steps` is required when `t1` or `dt0` is traced")
        max_steps = max(1, math.ceil(float(t1) / float(dt0) * (1 + 1e-12)))
    checked = prepare(
        ws0, t0=0.0, t1=t1, ts=ts, solver=solver, rtol=0.0, atol=1.0,
        max_steps=max_steps, dt0=dt0, stepsize_controller=diffrax.ConstantStepSize(),
        loss_threshold=None, loss=loss,
    )
    base = _FactorSystem(loss, len(ws0))
    system = _ModifiedSystem(base, lr, 1) if drift == "modified" else base
    with _checks.traceable_loss():
        solution, initial_loss = _solve_sde(
            system, ws0, checked["t0"], checked["t1"], checked["ts"], checked["dt0"], lr,
            key, m=m, b=b, replace=replace, solver=solver, max_steps=checked["max_steps"],
        )
    return _checks.refuse_nonfinite_initial_loss("ws0", initial_loss, solution)


@eqx.filter_jit
def _solve_sde(system, ws0, t0, t1, ts, dt0, lr, key, *, m, b, replace, solver, max_steps):
    initial_loss = system.loss_of_state(ws0)
    flat_system, y0 = flat(system, ws0)
    layout, loss = flat_system.layout, system.loss

    def diffusion(t, y, args):
        return _diffusion(loss, layout.unravel(y), lr, m, b, replace)

    brownian = diffrax.VirtualBrownianTree(
        t0, t1, tol=dt0 / 2, shape=(m,), key=key, levy_area=diffrax.BrownianIncrement
    )
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(flat_system.vector_field), diffrax.ControlTerm(diffusion, brownian)
    )
    ctrl = diffrax.ConstantStepSize()
    sol = diffrax.diffeqsolve(
        terms, solver, t0, t1, dt0, y0,
        saveat=diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts), diffrax.SubSaveAt(t1=True)]),
        stepsize_controller=ctrl, max_steps=max_steps, throw=False,
    )
    outcome = run(sol, None, ctrl)
    solution = assemble(
        flat_system, solver, ts=ts, t0=t0, y0=y0, saved_ys=outcome.saved_ys,
        written=outcome.written, t_final=outcome.t_final, y_final=outcome.y_final,
        result=outcome.result, stopped=outcome.stopped,
        num_steps=outcome.num_steps, num_accepted_steps=outcome.num_accepted_steps,
    )
    return solution, initial_loss
