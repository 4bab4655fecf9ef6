"""Second-order Runge-Kutta-Chebyshev steps ([`RKC2`][]): stabilized explicit steps for
the stiff tails of gradient flows.

Why: the Jacobian of a gradient flow `dy/dt = -grad phi(y)` is `-H`, `H` the Hessian
of `phi`: symmetric, with a real spectrum. Past a plateau an explicit Runge-Kutta
method such as Tsit5 is stable only for `h lambda_max <= 3.5`, and pays
`lambda_max t / 3.5` steps for a time `t`. A Chebyshev method with `s` stages is stable
on the real interval `[-beta(s), 0]` with `beta(s) ~ 0.653 s^2`: the cost of a unit
of time grows like `sqrt(lambda_max)` instead of `lambda_max`, with field evaluations
only (no Jacobian, no linear solve).

The step (van der Houwen & Sommeijer 1980; Sommeijer, Shampine & Verwer, "RKC: an
explicit solver for parabolic PDEs", J. Comput. Appl. Math. 88, 1998, eqs. (2.1)-(2.6)),
`T_j` the Chebyshev polynomials of the first kind, damping `epsilon = 2/13`:

    w0 = 1 + epsilon / s^2,   w1 = T_s'(w0) / T_s''(w0),
    b_j = T_j''(w0) / T_j'(w0)^2  (j >= 2; b_0 = b_1 = b_2),   a_j = 1 - b_j T_j(w0),
    Y_0 = y0,   Y_1 = y0 + mu~_1 h f(Y_0),   mu~_1 = b_1 w1,
    Y_j = (1 - mu_j - nu_j) y0 + mu_j Y_{j-1} + nu_j Y_{j-2}
          + mu~_j h f(Y_{j-1}) + gamma~_j h f(Y_0),                     j = 2, ..., s,
    mu_j = 2 b_j w0 / b_{j-1},  nu_j = -b_j / b_{j-2},  mu~_j = 2 b_j w1 / b_{j-1},
    gamma~_j = -a_{j-1} mu~_j,   y1 = Y_s.

On `y' = lambda y` with `z = h lambda` the step multiplies `y` by its stability
polynomial `R_s(z) = a_s + b_s T_s(w0 + w1 z) = 1 + z + z^2/2 + O(z^3)` (second order),
`|R_s(z)| <= 1` on `[-beta(s), 0]`, `beta(s) = (1 + w0) / w1`
([`stability_polynomial`][] evaluates it from the stage recurrence itself,
`tests/test_chebyshev.py` recomputes `beta`). Each step takes
`s = 1 + floor(sqrt(1 + 1.54 h rho))` stages ([`num_stages`][]), enough for
`beta(s) >= h rho`, `rho` an estimate of the spectral radius of `df/dy` inflated by
`safety`: a warm-started nonlinear power iteration ([`power_step`][]), one field
difference per step at the step's end.

Error estimate (RKC's): `0.8 (y0 - y1) + 0.4 h (f(y0) + f(y1))`, of local order 3;
`f(y1)` is the next step's first stage (first same as last). Dense output: the cubic
Hermite interpolant of `y0`, `y1`, `f(y0)`, `f(y1)` (third order, continuous with
a continuous derivative across steps).

Where `rho` underestimates the spectral radius, `R_s` explodes past `-beta(s)`; the
step is rejected and shrinks, and so does `s`: the estimate, made at every accepted
step's end and inflated by `safety = 1.2` (RKC's), is the guard. A rejected step's
solver state is discarded by diffrax, so the estimate moves with accepted steps only.
"""

from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, Int, PyTree

DAMPING = 2.0 / 13.0
SAFETY = 1.2
# `s = 1 + floor(sqrt(1 + STAGE_FACTOR h rho))` gives `beta(s) >= h rho` (RKC's rule).
STAGE_FACTOR = 1.54
MAX_STAGES = 1000
# Power iterations from a random vector at the start of a solve ([`RKC2.init`][]).
INITIAL_POWER_STEPS = 10


def _norm(tree) -> Float[Array, ""]:
    return jnp.sqrt(sum(jnp.sum(x**2) for x in jtu.tree_leaves(tree)))


def num_stages(h_rho, min_stages: int = 2, max_stages: int = MAX_STAGES) -> Int[Array, ""]:
    """`s = 1 + floor(sqrt(1 + 1.54 h rho))`, clipped to `[min_stages, max_stages]`:
    the fewest stages whose stability interval covers `h rho`."""
    s = 1 + jnp.floor(jnp.sqrt(1.0 + STAGE_FACTOR * jnp.maximum(h_rho, 0.0)))
    s = jnp.where(jnp.isfinite(s), s, max_stages)
    return jnp.clip(s, min_stages, max_stages).astype(jnp.int32)


def _w0_w1(s, damping):
    """`w0 = 1 + epsilon/s^2` and `w1 = T_s'(w0) / T_s''(w0)` by `T_s(cosh x) =
    cosh(s x)` (`w0^2 - 1` formed without cancellation)."""
    s = jnp.asarray(s).astype(jnp.result_type(float))
    delta = damping / s**2
    w0 = 1.0 + delta
    sinh2 = delta * (2.0 + delta)  # w0^2 - 1 = sinh(x)^2
    sinh = jnp.sqrt(sinh2)
    arg = s * jnp.arcsinh(sinh)  # s x, x = acosh(w0)
    w1 = jnp.sinh(arg) * sinh2 / (jnp.cosh(arg) * s * sinh - w0 * jnp.sinh(arg))
    return w0, w1


def stability_interval(s, damping: float = DAMPING) -> Float[Array, ""]:
    """`beta(s) = (1 + w0) / w1`: `|R_s(z)| <= 1` on `[-beta(s), 0]`."""
    w0, w1 = _w0_w1(s, damping)
    return (1.0 + w0) / w1


def stability_polynomial(z, s, damping: float = DAMPING) -> Float[Array, "..."]:
    """`R_s(z)`: one step of size 1 on `y' = z y` from `y0 = 1`, by the stage
    recurrence itself (not the closed form `a_s + b_s T_s(w0 + w1 z)`)."""
    z = jnp.asarray(z, jnp.result_type(float))
    one = jnp.ones_like(z)
    return _stages(lambda t, y: z * y, 0.0, 1.0, one, z, s, damping, MAX_STAGES)


SERIES_TERMS = 14  # of `D_j` below: `(j x)^(2n+1) / (2n+1)!` with `j x <= 0.56`


def _coefficients(s, damping, max_stages):
    """Rows `j = 0, ..., max_stages` of `(mu_j, nu_j, mu~_j, a_{j-1}, c_{j-1})`
    (module docstring) for `s` stages, from closed forms at `w0 = cosh x`:
    `T_j = cosh(j x)`, `T_j' = j sinh(j x) / sinh x`, `T_j'' = j D_j / sinh(x)^3`
    with `D_j = j cosh(j x) sinh x - sinh(j x) cosh x` summed as its Taylor series
    (the leading terms cancel; `j x <= sqrt(2 epsilon) ~ 0.56` for `j <= s`). One
    vectorized table per step: the stage loop then only reads a row, instead of
    running the three-term recurrences on scalars at every stage (whose per-stage
    overhead `benchmarks/chebyshev.py` measured)."""
    dtype = jnp.result_type(float)
    w0, w1 = _w0_w1(s, damping)
    x = jnp.arccosh(w0)
    sh = jnp.sinh(x)
    j = jnp.arange(max_stages + 1, dtype=dtype)
    jm, jp = (j - 1) * x, (j + 1) * x
    D = jnp.zeros_like(j)
    factorial = 1.0
    for n in range(1, SERIES_TERMS + 1):
        factorial *= (2 * n) * (2 * n + 1)
        D = D + (jp ** (2 * n) - jm ** (2 * n)) / factorial
    D = (j**2 - 1) * x * D / 2
    T = jnp.cosh(j * x)
    dT = j * jnp.sinh(j * x) / sh
    b = jnp.where(j >= 2, j * D / sh**3 / jnp.where(j >= 2, dT, 1.0) ** 2, 0.0)
    b = b.at[:2].set(b[2])
    a = 1.0 - b * T
    prev, prev2 = jnp.roll(b, 1), jnp.roll(b, 2)
    mu = 2 * w0 * b / prev
    nu = -b / prev2
    mus = mu * w1 / w0
    c = jnp.where(j >= 2, w1 * b * dT, w1 * b[1])  # c_j = w1 T_j''/T_j'; c_1 = w1 b_1
    c = c.at[0].set(0.0).at[s].set(1.0)
    return jnp.stack([mu, nu, mus, jnp.roll(a, 1), jnp.roll(c, 1)], axis=1), w1 * b[1]


def _stages(vf, t0, h, y0, f0, s, damping, max_stages):
    """`Y_s` of the module docstring's recurrence."""
    table, mu1 = _coefficients(s, damping, max_stages)
    y1 = jtu.tree_map(lambda y, f: y + (h * mu1).astype(y.dtype) * f, y0, f0)

    def cond(carry):
        return carry[0] <= s

    def body(carry):
        j, yj1, yj2 = carry
        mu, nu, mus, aj1, cj1 = table[j]
        fj = vf(t0 + h * cj1, yj1)
        yj = jtu.tree_map(
            lambda a, b, c, f, g: (mu * a + nu * b + (1 - mu - nu) * c
                                   + h * mus * (f - aj1 * g)).astype(a.dtype),
            yj1, yj2, y0, fj, f0,
        )
        return j + 1, yj, yj1

    init = (jnp.asarray(2, jnp.int32), y1, y0)
    out = eqxi.while_loop(cond, body, init, max_steps=max_stages - 1, kind="checkpointed")
    return out[1]


def power_step(vf, t, y, fy, direction, rho):
    """One step of the nonlinear power iteration on `df/dy` at `y` (RKC's): with
    `delta = sqrt(eps) ||y||`, `d = (f(y + delta v) - f(y)) / delta` estimates `J v`;
    returns `d / ||d||` and `||d||`, an estimate of `|lambda|_max` that only grows
    more accurate as the iteration is warm-started step after step (both kept where
    `d` is zero or not finite). One field evaluation."""
    leaves = jtu.tree_leaves(y)
    eps = jnp.finfo(leaves[0].dtype).eps
    size = _norm(y)
    delta = jnp.sqrt(eps) * jnp.where(size > 0, size, 1.0)
    shifted = jtu.tree_map(lambda a, v: a + delta.astype(a.dtype) * v, y, direction)
    diff = jtu.tree_map(lambda a, b: a - b, vf(t, shifted), fy)
    norm = _norm(diff)
    ok = jnp.isfinite(norm) & (norm > 0)
    safe = jnp.where(ok, norm, 1.0)
    new = jtu.tree_map(lambda d, old: jnp.where(ok, d / safe, old), diff, direction)
    return new, jnp.where(ok, norm / delta, rho)


def random_direction(y0) -> PyTree[Array]:
    """A fixed unit vector of `y0`'s structure: the power iteration's start."""
    leaves, treedef = jtu.tree_flatten(y0)
    keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
    v = [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    norm = _norm(v)
    return jtu.tree_unflatten(treedef, [x / norm for x in v])


def chebyshev_step(vf, t0, t1, y0, f0, rho, damping, safety, min_stages, max_stages):
    """One RKC2 step from `(t0, y0)` with `f0 = f(t0, y0)`: `(y1, f1, y_error, s)`."""
    h = t1 - t0
    s = num_stages(jnp.abs(h) * safety * rho, min_stages, max_stages)
    y1 = _stages(vf, t0, h, y0, f0, s, damping, max_stages)
    f1 = vf(t1, y1)
    error = jtu.tree_map(
        lambda a, b, c, d: (0.8 * (a - b) + 0.4 * h * (c + d)).astype(a.dtype),
        y0, y1, f0, f1,
    )
    return y1, f1, error, s


class ChebyshevInterpolation(diffrax.AbstractLocalInterpolation):
    """The cubic Hermite interpolant of a step from its end values and fields,
    `k = (h f(y0), h f(y1))` (rows 0 and -1 of `k`; rows between are not read)."""

    t0: Float[Array, ""]
    t1: Float[Array, ""]
    y0: PyTree[Array]
    y1: PyTree[Array]
    k: PyTree[Array]

    def evaluate(self, t0, t1=None, left: bool = True):
        return diffrax.ThirdOrderHermitePolynomialInterpolation.from_k(
            t0=self.t0, t1=self.t1, y0=self.y0, y1=self.y1, k=self.k
        ).evaluate(t0, t1, left)


class _RKCState(eqx.Module):
    f0: PyTree[Array]  # f(y0) of the next step (first same as last)
    direction: PyTree[Array]  # the power iteration's unit vector
    rho: Float[Array, ""]  # its latest estimate of |lambda|_max
    num_evals: Int[Array, ""]  # field evaluations of accepted and rejected steps


class RKC2(diffrax.AbstractAdaptiveSolver):
    """Second-order Runge-Kutta-Chebyshev with a stage count per step from a
    spectral-radius estimate (module docstring): explicit steps that stay stable
    where `h |lambda|_max` is in the thousands, for Jacobians with a real (or
    nearly real) spectrum, as a gradient flow's is.

    `damping`: RKC's `epsilon` (2/13); `safety`: the factor on the spectral-radius
    estimate (1.2); `min_stages`/`max_stages`: the stage count's range (a step needing
    more than `max_stages` is unstable and rejected, and shrinks). Use with an adaptive
    step-size controller; under `jax.vmap` every member runs the largest stage count.
    """

    damping: float = DAMPING
    safety: float = SAFETY
    min_stages: int = eqx.field(static=True, default=2)
    max_stages: int = eqx.field(static=True, default=MAX_STAGES)

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar[Callable[..., ChebyshevInterpolation]] = (
        ChebyshevInterpolation
    )

    def order(self, terms):
        return 2

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def init(self, terms, t0, t1, y0, args) -> _RKCState:
        vf = lambda t, y: terms.vf(t, y, args)
        f0 = vf(t0, y0)
        dtype = jtu.tree_leaves(y0)[0].dtype

        def iterate(_, carry):
            return power_step(vf, t0, y0, f0, *carry)

        direction, rho = jax.lax.fori_loop(
            0, INITIAL_POWER_STEPS, iterate, (random_direction(y0), jnp.zeros((), dtype))
        )
        return _RKCState(
            f0=f0, direction=direction, rho=rho,
            num_evals=jnp.asarray(1 + INITIAL_POWER_STEPS, jnp.int32),
        )

    def step(self, terms, t0, t1, y0, args, solver_state: _RKCState, made_jump):
        vf = lambda t, y: terms.vf(t, y, args)
        state = solver_state
        f0 = jax.lax.cond(eqxi.unvmap_any(made_jump), lambda: vf(t0, y0), lambda: state.f0)
        y1, f1, error, s = chebyshev_step(vf, t0, t1, y0, f0, state.rho, self.damping,
                                          self.safety, self.min_stages, self.max_stages)
        direction, rho = power_step(vf, t1, y1, f1, state.direction, state.rho)
        h = t1 - t0
        k = jtu.tree_map(lambda a, b: jnp.stack([h * a, h * b]), f0, f1)
        evals = s + 1 + jnp.asarray(made_jump).astype(jnp.int32)
        new_state = _RKCState(f0=f1, direction=direction,
                              rho=rho, num_evals=state.num_evals + evals)
        dense_info = dict(y0=y0, y1=y1, k=k)
        return y1, error, dense_info, new_state, diffrax.RESULTS.successful


def evaluations(solver_state) -> Int[Array, ""] | None:
    """The field evaluations a finished solve's final solver state counted, or None
    where the solver keeps no count."""
    return getattr(solver_state, "num_evals", None)


