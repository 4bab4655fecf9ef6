"""The CP gradient flow's analogues of Lemma 1 and Theorem 3 (Section 5; Razin, Maman
& Cohen 2021), checked along solved flows. Re-exported by `lnn_flow.tensor`.

Let `G = grad l(W)`, `W_r = a_r^1 (x) ... (x) a_r^N`. Column `r` of factor `n` moves
as `da_r^n/dt = -G x_{m != n} a_r^m` ([`lnn_flow._flows._tensor_flow.flow`][]), so

    d/dt ||a_r^n||^2 = 2 <a_r^n, da_r^n/dt> = -2 <G, a_r^1 (x) ... (x) a_r^N>
                     = -2 <G, W_r>,                                            (C)

the same for every `n` (the analogue of Lemma 1, whose `W_{j+1}^T W_{j+1} - W_j W_j^T`
is conserved by eq. 2): every difference `||a_r^n||^2 - ||a_r^n'||^2` is constant in
time. With `||W_r|| = prod_n ||a_r^n||` and (C),

    d/dt ||W_r|| = sum_n (||W_r|| / ||a_r^n||) d||a_r^n||/dt
                 = ||W_r|| (sum_n ||a_r^n||^{-2}) <-G, W_r>,                  (R)

and for a balanced component (`||a_r^n||^2 = ||W_r||^{2/N}` for every n, kept along
the flow by (C)) the sum is `N ||W_r||^{-2/N}`:

    d/dt ||W_r|| = N ||W_r||^{2 - 2/N} <-G, W_r / ||W_r||>,

the tensor analogue of Theorem 3's `sigma_r' = n (sigma_r^2)^{1-1/n} <-G, u_r v_r^T>`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._core import _checks
from .._maths._cp import _MODES, CPFactors, cp_factors, product, shape_of
from .._solving._result import FlowSolution
from .._solving._system import Loss
from .._maths._tensor_losses import fits_loss


class ConservationCheck(eqx.Module):
    """The conservation law (C) along a solved CP flow.

    `drift[k] = max_{r, n} |g_r^n(t_k) - g_r^n(t_0)|` with `g_r^n = ||a_r^n||^2 -
    ||a_r^1||^2` (every difference `||a_r^n||^2 - ||a_r^n'||^2` is one of these or the
    difference of two, so it drifts by at most `2 max_drift`); NaN at unreached saves.
    `scale = max_{k, r, n} ||a_r^n(t_k)||^2`, the size the solver's relative tolerance
    applies to: `max_drift / scale` is the drift relative to it."""

    ts: Float[Array, " k"]
    drift: Float[Array, " k"]
    max_drift: Float[Array, ""]
    scale: Float[Array, ""]


def _squared_norms(fs) -> Float[Array, "N R"]:
    return jnp.stack([jnp.sum(f**2, axis=0) for f in fs])


def check_conservation(solution: FlowSolution) -> ConservationCheck:
    """(C) along `solution`, a solve of [`lnn_flow.tensor.flow`][] (one solve; for a
    batch use `jax.vmap(check_conservation)(solutions)`)."""
    fs = solution.factors
    if fs is None or fs[0].ndim != 3:
        raise ValueError(
            "`solution` must be one CP flow solve (factors of shape (k, d_n, R)); for a "
            "batch use jax.vmap(check_conservation)(solutions)"
        )
    squares = jax.vmap(_squared_norms)(tuple(fs))  # (k, N, R)
    gaps = squares - squares[:, :1]
    drift = jnp.max(jnp.abs(gaps - gaps[:1]), axis=(1, 2))
    drift = jnp.where(solution.reached, drift, jnp.nan)
    scale = jnp.max(jnp.where(solution.reached[:, None, None], squares, 0.0))
    return ConservationCheck(solution.ts, drift, jnp.nanmax(drift), scale)


def component_norm_rates(loss: Loss, fs: CPFactors) -> Float[Array, " R"]:
    """Predicted `d/dt ||W_r|| = N ||W_r||^{2-2/N} <-grad l(W), W_r/||W_r||>` at the
    factors `fs`, one rate per component.

    Exact for balanced components (`||a_r^n||` equal over `n`; a balanced init stays
    balanced, by (C) in this module's docstring); for an unbalanced one the exact rate
    is (R), `||W_r|| (sum_n ||a_r^n||^{-2}) <-G, W_r>`, which this formula bounds from
    below in size (`sum_n x_n^{-1} >= N (prod_n x_n)^{-1/N}`, AM-GM). Computed as
    `N ||W_r||^{1-2/N} <-G, W_r>`, finite at `W_r = 0`."""
    fs = cp_factors(fs, "fs")
    fits_loss(loss, shape_of(fs), "fs")
    G = jax.grad(loss)(product(fs))
    order = len(fs)
    modes = _MODES[:order]
    spec = modes + "," + ",".join(f"{m}r" for m in modes) + "->r"
    drive = -jnp.einsum(spec, G, *fs)  # <-G, W_r>
    norms = jnp.prod(jnp.sqrt(_squared_norms(fs)), axis=0)
    return order * norms ** (1.0 - 2.0 / order) * drive


@eqx.filter_jit
def _norms_and_rates(solution: FlowSolution, ts):
    one = jnp.ones((), ts.dtype)

    def norms(t):
        fs = solution.evaluate_factors(t)
        return jnp.prod(jnp.sqrt(_squared_norms(fs)), axis=0)

    return jax.vmap(lambda t: jax.jvp(norms, (t,), (one,)))(ts)


def observed_component_norm_rates(
    solution: FlowSolution, t: Float[ArrayLike, "*k"]
) -> Float[Array, "*k R"]:
    """Observed `d/dt ||W_r(t)||` at time(s) `t` of a CP flow solved with
    `dense=True`: the time derivative (forward mode) of `prod_n ||a_r^n(t)||` along
    the solver's dense interpolant of the factors, not a finite difference of saves.

    Why not the vector field at the interpolated state: for balanced factors that
    equals the prediction by (R) to rounding whatever the solve did (it checks the
    algebra, not the flow), and it needs the loss, which the solution does not hold.
    The interpolant's derivative observes the solved trajectory and shares no step
    with the prediction (no gradient of `l`, no use of (C)). Its error is that of the
    derivative of Tsit5's 4th-order interpolant, about `tol / h` for steps of size `h`
    and local error `tol = rtol |y| + atol` (tests/test_tensor_theory.py holds it to
    that bound on a sensing problem), so it grows with the tolerances while the field
    at the interpolated state agrees to rounding. For rates to a few digits, solve at
    tight tolerances. `t` a scalar gives `(R,)`, a 1-D array `(k, R)`."""
    t = _checks.as_float_array("t", t)
    if t.ndim > 1:
        raise ValueError(f"`t` must be a time or a 1-D array of times; got shape {t.shape}")
    if solution.factors is None or solution.factors[0].ndim != 3:
        raise ValueError("`solution` must be one CP flow solve (`lnn_flow.tensor.flow`)")
    solution._dense(jnp.min(t) if t.ndim else t)  # dense output, t in [t0, t_final]
    solution._dense(jnp.max(t) if t.ndim else t)
    _, rates = _norms_and_rates(solution, jnp.atleast_1d(t))
    return rates if t.ndim else rates[0]
