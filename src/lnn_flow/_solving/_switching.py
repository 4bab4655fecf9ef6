"""`solver="auto"`: explicit steps while the flow is not stiff, stabilized explicit
(Chebyshev) steps once they are pinned at their stability limit, implicit steps where
those cost more, and back (in the spirit of LSODA's stiffness detection), as ONE
diffrax solver built from three: `diffrax.Tsit5`, second-order Runge-Kutta-Chebyshev
([`lnn_flow._solving._chebyshev.RKC2`][]) and `diffrax.Kvaerno5`.

Why: the Jacobian of a gradient flow `dy/dt = -grad phi(y)` is `-H`, `H` the Hessian
of `phi`. An explicit Runge-Kutta step is stable only while `h lambda_max(H) <= 3.51`
(Tsit5's stability interval on the negative real axis). Past a plateau the flow
changes on scales far longer than `1 / lambda_max` (creeping towards a minimum, or
along a manifold of minima, Proposition 5's norms running off to infinity), and an
explicit solver pays `lambda_max t / 3.5` steps for a time `t`: stiffness. `-H` is
symmetric with a real spectrum, the case of Chebyshev steps: `s` stages are stable for
`h lambda_max <= 0.653 s^2`, so a unit of time costs `~ sqrt(lambda_max)` field
evaluations instead of `lambda_max`, with no Jacobian and no linear solve. An implicit
step (Kvaerno5, L-stable) has no stability limit at all: its size follows the
solution's own time scale, at the price of Newton iterations (each a dense Jacobian
or GMRES's Jacobian-vector products) per stage.

A solve starts lean ([`lnn_flow._solving._auto`][], `lean_start`): plain Tsit5 steps and the
free estimate below, until `patience` of them in a row are stiff; then this solver
takes over (and keeps running when it bounces back to Tsit5). Where a flow never turns
stiff it runs Tsit5 alone (`python benchmarks/auto_overhead.py`).

Detection, per accepted step: a warm-started nonlinear power iteration on `df/dy`
(one field difference at the step's end, [`lnn_flow._solving._chebyshev.power_step`][]; every
step in the stiff modes and every `probe_every`-th in explicit mode) estimates
`rho = |lambda|_max`; in explicit mode the free estimate of Hairer & Wanner (*Solving
ODEs II*, IV.2) joins it: Tsit5's stages 6 and 7 are both taken at `t + h`, so
`||k_7 - k_6|| / ||y_7 - y_6||` (`k` the stage increments `h f`) estimates
`h |lambda|` for the eigenvalue that dominates that difference.

The cost model ([`Switching._proposal`][]), in field evaluations per unit of time; a
switch happens after `patience` accepted steps in a row vote for the same method:

- Tsit5 -> Chebyshev once `h rho >= to_implicit` (near Tsit5's limit: its steps are
  stability-bound);
- Chebyshev -> Tsit5 where Tsit5 at its stability limit (6 evaluations per
  `3.5 / rho`) costs under `1 / margin` of the Chebyshev steps' `(s + 1) / h`: their
  steps are accuracy-bound at a small `h rho` (a saddle escape);
- Chebyshev -> implicit once `s + 1 > implicit_cost` (`h rho` in the tens of
  thousands: Proposition 5's diverging norms, a long horizon), and back below half of
  it; implicit -> Tsit5 below `h rho < to_explicit`;
- switches out of Chebyshev steps ("bounces": second-order steps accuracy-bound at a
  small `h rho` while Tsit5's are stability-bound) are limited. For a state small
  enough for a dense LU (`after_bounces = IMPLICIT`), after `max_bounces` the implicit
  steps take the Chebyshev steps' place: a fifth-order method with no stability limit
  wins there (Proposition 5 at rtol 1e-10). For a larger state (`after_bounces =
  EXPLICIT`) an implicit step costs hundreds of GMRES mat-vecs (`python
  benchmarks/stiff_tails.py --cases completion --full --init-scale 1e-6`: a
  30,000-state flow whose Chebyshev steps bounced took 219 implicit steps and 247 s,
  first call, where Tsit5 alone took 3.3 s), so Tsit5 stays and the bounces back off
  instead: after `k` of them, Chebyshev steps need `patience * 2^k` stiff votes in a
  row (k at most `MAX_BACKOFF`). A transient that makes them bounce costs a few
  retries; a long stiff tail still gets them after the wait (`python
  benchmarks/long_horizon.py`'s whitened problem: with a bounce budget and Tsit5
  after it, 19.04 times the steps to 20 T as to T; with the backoff, 1.06).

The Chebyshev steps' error estimate is weighed by `error_scale` (10: rtol / 10 in that
mode) so that a second-order method lands as close to a tight reference as Tsit5 does
at the same tolerances (`benchmarks/stiff_tails.py --cases completion`). A system whose
Jacobian is not symmetric (`AbstractFlowSystem.gradient_flow` False: the end-to-end
flow, whose spectrum is complex on the plateau) switches between Tsit5 and implicit
steps only (`symmetric=False`).

The implicit steps solve their stage equations by Newton's method (`optimistix.Newton`)
with a dense LU of the Jacobian for small states and matrix-free GMRES (lineax,
Jacobian-vector products only) above `dense_max` entries: `I - gamma h J` is never
formed there ([`implicit_solver`][]).

Under `jax.vmap` a `lax.switch` runs every branch (every member pays for all three
kinds of step); `solve_batch`'s sequential strategy keeps it a real branch.
"""

from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float, Int, PyTree

from ._chebyshev import (
    RKC2,
    ChebyshevInterpolation,
    chebyshev_step,
    num_stages,
    power_step,
    random_direction,
)

# The Newton stop's absolute floor, in units of the residual's rounding
# `eps |lambda|_max |y| sqrt(n)` ([`Switching._noise_floored`][]).
NOISE_FACTOR = 10.0
# Tsit5's real stability boundary: |R(z)| <= 1 on [-3.5068, 0] (R its stability
# polynomial; tests/test_switching.py recomputes it from the tableau).
TSIT5_STABILITY = 3.5068
# How many switch times a solve records (later switches are counted, not timed).
MAX_SWITCHES = 32
# States up to this many entries get a dense LU in the implicit steps; GMRES above
# (benchmarks/stiff_tails.py --cases root_finders: at 300 entries GMRES was already
# the faster, a dense Jacobian costing one JVP per entry per Newton iteration).
DENSE_MAX = 64
# The Chebyshev steps' stage cap: past IMPLICIT_COST stages the cost model moves on to
# implicit steps, and each step builds its coefficient table for every stage up to the
# cap (19 us at 1000 stages, 2.3 us at 200; `_chebyshev._coefficients`).
CHEBYSHEV_MAX_STAGES = 256
# The methods of `solver="auto"` (`_SwitchState.mode`).
EXPLICIT, CHEBYSHEV, IMPLICIT = 0, 1, 2
# With Tsit5 as the fallback, Chebyshev steps are re-entered after `patience * 2^k`
# stiff votes in a row, k the bounces so far, at most this.
MAX_BACKOFF = 10
# Tsit5's field evaluations per step (7 stages, the first shared with the last).
TSIT5_EVALS = 6
# An implicit step's cost in field evaluations, for the switch from Chebyshev steps:
# Kvaerno5's five implicit stages, each a few Newton iterations, each a dense
# Jacobian (one JVP per entry, DENSE_MAX at most) or GMRES's mat-vecs (JVPs).
IMPLICIT_COST = 200


def _stage_difference_weights() -> np.ndarray:
    """`w` with `y_7 - y_6 = sum_j w_j k_j` for Tsit5 (stage 7 is `y_1`: FSAL)."""
    tableau = diffrax.Tsit5.tableau
    b = np.asarray(tableau.b_sol, dtype=np.float64)
    a6 = np.zeros_like(b)
    a6[: len(tableau.a_lower[-2])] = tableau.a_lower[-2]
    return b - a6


_WEIGHTS = _stage_difference_weights()


def _norm(tree) -> Float[Array, ""]:
    return jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(tree)))


def explicit_stiffness(k: PyTree[Array]) -> Float[Array, ""]:
    """`h rho` from one Tsit5 step's stage increments `k` (leading axis: the 7
    stages): `||k_7 - k_6|| / ||y_7 - y_6||`, both stages at `t + h`."""
    top = _norm(jax.tree_util.tree_map(lambda x: x[6] - x[5], k))
    w = jnp.asarray(_WEIGHTS)
    diff = jax.tree_util.tree_map(lambda x: jnp.tensordot(w.astype(x.dtype), x, 1), k)
    bottom = _norm(diff)
    return jnp.where(bottom > 0, top / jnp.where(bottom > 0, bottom, 1.0), 0.0)


def implicit_solver(size: int, rtol, atol, dense_max: int = DENSE_MAX) -> diffrax.Kvaerno5:
    """Kvaerno5 whose stage equations are solved by `optimistix.Newton` at 1/10 of the
    step tolerances (floored at 1e-13 relative: float64 resolves no finer), with a
    dense LU for states of at most `dense_max` entries and matrix-free GMRES (lineax)
    above: the matrix `I - gamma h J` (30,000^2 entries for a depth-3 network at
    d = 100) is never formed, only Jacobian-vector products.

    Newton stops on a small update and a small residual (optimistix's Cauchy test);
    the residual's absolute bound is raised above its rounding at every step
    ([`Switching._noise_floored`][]): the rounding grows with the state (Proposition
    5's norms run to 4e3), and below it no stage solve converges and the solve stalls
    (`benchmarks/stiff_tails.py --cases root_finders`, atol 1e-14, "residual stop"
    without the floor). diffrax's default `VeryChord` (one Jacobian per step) ended
    that problem at `max_steps` short of the loss."""
    if size <= dense_max:
        linear = lx.AutoLinearSolver(well_posed=None)
    else:
        linear = lx.GMRES(rtol=1e-10, atol=1e-14, restart=40, stagnation_iters=40,
                          max_steps=400)
    newton = optx.Newton(rtol=jnp.maximum(0.1 * rtol, 1e-13), atol=0.1 * atol,
                         linear_solver=linear)
    return diffrax.Kvaerno5(root_finder=newton)


class _SwitchState(eqx.Module):
    inner: Any  # the FSAL state all three methods share: (first step, f(y0))
    mode: Int[Array, ""]  # EXPLICIT, CHEBYSHEV or IMPLICIT
    proposal: Int[Array, ""]  # the mode the running streak of votes asks for
    streak: Int[Array, ""]
    bounces: Int[Array, ""]  # switches out of Chebyshev steps
    direction: PyTree[Array]  # the power iteration's vector
    rho: Float[Array, ""]  # its latest estimate of |lambda|_max
    num_steps: Int[Array, ""]  # accepted
    num_chebyshev_steps: Int[Array, ""]
    num_implicit_steps: Int[Array, ""]
    num_evals: Int[Array, ""]  # of accepted explicit and Chebyshev steps and probes
    num_switches: Int[Array, ""]
    switch_times: Float[Array, " MAX_SWITCHES"]
    switch_modes: Int[Array, " MAX_SWITCHES"]


class _SwitchingInterpolation(diffrax.AbstractLocalInterpolation):
    """Tsit5's interpolation over explicit steps, the cubic Hermite over Chebyshev
    steps ([`lnn_flow._solving._chebyshev.ChebyshevInterpolation`][]) and Kvaerno5's over
    implicit ones."""

    t0: Float[Array, ""]
    t1: Float[Array, ""]
    y0: PyTree[Array]
    y1: PyTree[Array]
    k: PyTree[Array]
    mode: Float[Array, ""]  # EXPLICIT, CHEBYSHEV or IMPLICIT

    def evaluate(self, t0, t1=None, left: bool = True):
        parts = dict(t0=self.t0, t1=self.t1, y0=self.y0, y1=self.y1, k=self.k)
        explicit = diffrax.Tsit5.interpolation_cls(**parts).evaluate(t0, t1, left)
        chebyshev = ChebyshevInterpolation(**parts).evaluate(t0, t1, left)
        implicit = diffrax.Kvaerno5.interpolation_cls(**parts).evaluate(t0, t1, left)
        return jax.tree_util.tree_map(
            lambda e, c, i: jnp.select([self.mode == EXPLICIT, self.mode == CHEBYSHEV],
                                       [e, c], i),
            explicit, chebyshev, implicit,
        )


class Switching(diffrax.AbstractAdaptiveSolver):
    """Tsit5, second-order Runge-Kutta-Chebyshev ([`lnn_flow._solving._chebyshev.RKC2`][]) and
    an implicit Kvaerno5 ([`implicit_solver`][]), switched on the stiffness estimate
    and cost model of the module docstring. All three are first-same-as-last methods
    with the same solver state `(first step, f(y0))`, so a switch costs nothing.

    `symmetric=False` leaves the Chebyshev steps out (Tsit5 and Kvaerno5 only): for a
    system whose Jacobian may have eigenvalues far from the real axis.
    """

    implicit_solver: diffrax.Kvaerno5
    chebyshev: RKC2 = RKC2(max_stages=CHEBYSHEV_MAX_STAGES)
    symmetric: bool = True
    implicit_cost: float = IMPLICIT_COST
    to_implicit: float = 0.5 * TSIT5_STABILITY  # leave Tsit5 at h rho >= this
    to_explicit: float = 0.3 * TSIT5_STABILITY  # implicit -> Tsit5 at h rho < this
    error_scale: float = 10.0  # the Chebyshev steps' error estimate, weighed
    max_bounces: int = 8
    after_bounces: int = IMPLICIT  # what replaces Chebyshev steps after max_bounces
    margin: float = 3.0  # Chebyshev -> Tsit5 once Tsit5 costs 1/margin of it
    patience: int = 15
    probe_every: int = 4
    lean_start: bool = True  # the solve starts with `LeanStart` ([`lnn_flow._solving._auto`][])

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar[Callable[..., _SwitchingInterpolation]] = (
        _SwitchingInterpolation
    )

    @property
    def explicit_solver(self) -> diffrax.Tsit5:
        return diffrax.Tsit5()

    def order(self, terms):
        return 5

    def error_order(self, terms):
        return self.explicit_solver.error_order(terms)

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def init(self, terms, t0, t1, y0, args) -> _SwitchState:
        return self.fresh_state(self.explicit_solver.init(terms, t0, t1, y0, args), y0)

    def fresh_state(self, inner, y0) -> _SwitchState:
        """The state of a solve that starts explicit, from Tsit5's FSAL state."""
        dtype = jax.tree_util.tree_leaves(y0)[0].dtype
        zero = jnp.asarray(0, jnp.int32)
        return _SwitchState(
            inner=inner, mode=zero, proposal=zero, streak=zero, bounces=zero,
            direction=random_direction(y0), rho=jnp.zeros((), dtype), num_steps=zero,
            num_chebyshev_steps=zero, num_implicit_steps=zero, num_evals=zero,
            num_switches=zero, switch_times=jnp.full((MAX_SWITCHES,), jnp.nan, dtype),
            switch_modes=jnp.full((MAX_SWITCHES,), -1, jnp.int32),
        )

    def step(self, terms, t0, t1, y0, args, solver_state: _SwitchState, made_jump):
        state = solver_state
        h = jnp.abs(t1 - t0)
        vf = lambda t, y: terms.vf(t, y, args)
        first = jnp.asarray(state.inner[0] | made_jump).astype(jnp.int32)
        zero = jnp.zeros((), h.dtype)

        def explicit(_):
            out = self.explicit_solver.step(terms, t0, t1, y0, args, state.inner, made_jump)
            return out, explicit_stiffness(out[2]["k"]), 6 + first

        def chebyshev(_):
            f0 = jax.lax.cond(eqxi.unvmap_any(first > 0), lambda: vf(t0, y0),
                              lambda: state.inner[1])
            c = self.chebyshev
            y1, f1, error, s = chebyshev_step(vf, t0, t1, y0, f0, state.rho, c.damping,
                                              c.safety, c.min_stages, c.max_stages)
            k = jax.tree_util.tree_map(
                lambda a, b: jnp.zeros((7,) + a.shape, a.dtype).at[0].set((t1 - t0) * a)
                .at[6].set((t1 - t0) * b), f0, f1)
            inner = (jnp.asarray(False), f1)
            error = jax.tree_util.tree_map(lambda e: self.error_scale * e, error)
            out = (y1, error, dict(y0=y0, y1=y1, k=k), inner, diffrax.RESULTS.successful)
            return out, zero, s + first

        def implicit(_):
            solver = self._noise_floored(state, y0)
            out = solver.step(terms, t0, t1, y0, args, state.inner, made_jump)
            return out, zero, jnp.zeros((), jnp.int32)

        (y1, err, info, inner, result), h_rho_stages, evals = jax.lax.switch(
            state.mode, (explicit, chebyshev, implicit), None
        )
        inner = (jnp.asarray(inner[0]), inner[1])
        # Kvaerno5's last stage solves f to Newton's tolerance: probe at f(y1) itself.
        probe = (state.mode != EXPLICIT) | (state.num_steps % self.probe_every == 0)
        direction, rho = jax.lax.cond(
            probe,
            lambda: power_step(vf, t1, y1, jax.lax.cond(
                state.mode == IMPLICIT, lambda: vf(t1, y1), lambda: inner[1]),
                state.direction, state.rho),
            lambda: (state.direction, state.rho),
        )
        evals = evals + probe.astype(jnp.int32)
        h_rho = jnp.maximum(h * rho, h_rho_stages)
        proposal = self._proposal(state.mode, h_rho, state.bounces)
        streak = jnp.where(proposal == state.mode, 0,
                           jnp.where(proposal == state.proposal, state.streak + 1, 1))
        # With Tsit5 as the fallback (large states), each bounce doubles the streak that
        # re-enters Chebyshev steps: a transient where they bounce costs a few retries,
        # and a stiff tail still gets them after a wait (module docstring).
        backoff = (self.after_bounces == EXPLICIT) & (state.mode == EXPLICIT) & (
            proposal == CHEBYSHEV)
        needed = self.patience * jnp.where(
            backoff, 2 ** jnp.minimum(state.bounces, MAX_BACKOFF), 1)
        switch = streak >= needed
        slot = jnp.minimum(state.num_switches, MAX_SWITCHES - 1)
        record = switch & (state.num_switches < MAX_SWITCHES)
        one = lambda flag: flag.astype(jnp.int32)
        mode = jnp.where(switch, proposal, state.mode)
        new_state = _SwitchState(
            inner=inner,
            mode=mode,
            proposal=proposal,
            streak=jnp.where(switch, 0, streak),
            bounces=state.bounces + one(switch & (state.mode == CHEBYSHEV)),
            direction=direction,
            rho=rho,
            num_steps=state.num_steps + 1,
            num_chebyshev_steps=state.num_chebyshev_steps + one(state.mode == CHEBYSHEV),
            num_implicit_steps=state.num_implicit_steps + one(state.mode == IMPLICIT),
            num_evals=state.num_evals + evals,
            num_switches=state.num_switches + one(switch),
            switch_times=state.switch_times.at[slot].set(
                jnp.where(record, t1, state.switch_times[slot])
            ),
            switch_modes=state.switch_modes.at[slot].set(
                jnp.where(record, mode, state.switch_modes[slot])
            ),
        )
        # A float: diffrax fills unused dense-output rows with inf, which no int holds.
        dense_info = dict(info, mode=state.mode.astype(h.dtype))
        return y1, err, dense_info, new_state, result

    def _proposal(self, mode, h_rho, bounces) -> Int[Array, ""]:
        """The mode this step votes for (module docstring's cost model): from Tsit5,
        once `h rho >= to_implicit` (stability-bound); from the Chebyshev steps, back
        to Tsit5 where its steps at their stability limit cost less per unit time, or
        on to implicit steps once `s + 1` field evaluations exceed `implicit_cost`;
        from implicit steps, back to Tsit5 below `to_explicit` or to the Chebyshev
        steps once `s + 1 < implicit_cost / 2`. After `max_bounces` returns from
        Chebyshev steps to Tsit5 (the second-order steps accuracy-bound at a small
        `h rho` while Tsit5's are stability-bound: a fifth-order method with no
        stability limit wins there), `after_bounces` takes the Chebyshev steps' place
        for the rest of the solve."""
        c = self.chebyshev
        cost = num_stages(c.safety * h_rho, c.min_stages, c.max_stages) + 1
        # Tsit5 as the fallback: no budget, the re-entry backs off instead (`step`).
        limited = self.after_bounces != EXPLICIT
        chebyshev = self.symmetric & ((bounces < self.max_bounces) | (not limited))
        fallback = self.after_bounces if self.symmetric else IMPLICIT
        stiff = jnp.where(chebyshev, CHEBYSHEV, fallback)
        from_explicit = jnp.where(h_rho >= self.to_implicit, stiff, EXPLICIT)
        explicit_cheaper = cost * TSIT5_STABILITY > self.margin * TSIT5_EVALS * h_rho
        last_bounce = limited & (bounces + 1 >= self.max_bounces)
        from_chebyshev = jnp.select(
            [explicit_cheaper & ~last_bounce, explicit_cheaper, cost > self.implicit_cost],
            [EXPLICIT, fallback, IMPLICIT], CHEBYSHEV)
        back = chebyshev & (cost < 0.5 * self.implicit_cost)
        from_implicit = jnp.select([h_rho < self.to_explicit, back],
                                   [EXPLICIT, CHEBYSHEV], IMPLICIT)
        return jnp.select([mode == EXPLICIT, mode == CHEBYSHEV],
                          [from_explicit, from_chebyshev], from_implicit).astype(jnp.int32)

    def _noise_floored(self, state: _SwitchState, y) -> diffrax.Kvaerno5:
        """The implicit solver with its Newton `atol` raised, where needed, above the
        rounding of the stage residual `f_i - f(y + h gamma f_i)`: evaluating `f` at a
        state rounded to `eps |y|` moves it by about `eps |lambda|_max |y|`, and a
        residual stop below that never triggers (Proposition 5's norms grow to 4e3)."""
        finder = self.implicit_solver.root_finder
        if not isinstance(finder, optx.Newton):
            return self.implicit_solver
        leaves = jax.tree_util.tree_leaves(y)
        eps = jnp.finfo(leaves[0].dtype).eps
        size = max(x.size for x in leaves)
        scale = jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in leaves]))
        floor = NOISE_FACTOR * eps * state.rho * scale * np.sqrt(size)
        return eqx.tree_at(lambda s: s.root_finder.atol, self.implicit_solver,
                           jnp.maximum(finder.atol, floor))


def auto_solver(size: int, rtol, atol, symmetric: bool = True) -> Switching:
    """The solver of `solver="auto"` for a state of `size` entries; `symmetric`: the
    system's Jacobian is symmetric (a gradient flow), so Chebyshev steps fit it. After
    `max_bounces`, implicit steps replace the Chebyshev steps only where a dense LU
    solves their stages (`size <= DENSE_MAX`); Tsit5 does elsewhere."""
    after = IMPLICIT if size <= DENSE_MAX else EXPLICIT
    return Switching(implicit_solver(size, rtol, atol), symmetric=symmetric,
                     after_bounces=after)


METHOD_NAMES = ("explicit", "chebyshev", "implicit")


class SwitchRecord(eqx.Module):
    """Which method ran when, in a `solver="auto"` solve (`FlowSolution.switching`).

    The solve starts explicit (Tsit5) at `t0` and changes method at each of the first
    `num_switches` entries of `switch_times`, to the method of the same entry of
    `switch_modes` (0 explicit, 1 Chebyshev, 2 implicit; NaN and -1 beyond; at most
    `MAX_SWITCHES` are timed, all are counted). Steps are accepted ones;
    `num_field_evals` counts the field evaluations of the accepted explicit and
    Chebyshev steps and of the stiffness probes (not the implicit steps' Newton and
    GMRES work, nor rejected steps)."""

    t0: Float[Array, ""]
    switch_times: Float[Array, " MAX_SWITCHES"]
    switch_modes: Int[Array, " MAX_SWITCHES"]
    num_switches: Int[Array, ""]
    num_implicit_steps: Int[Array, ""]
    num_chebyshev_steps: Int[Array, ""]
    num_explicit_steps: Int[Array, ""]
    num_field_evals: Int[Array, ""]

    def intervals(self, t_final) -> list[tuple[str, float, float]]:
        """`[(method, start, end), ...]` for ONE solve (no batch axis), ending at
        `t_final` (the solution's): `method` is "explicit", "chebyshev" or
        "implicit"."""
        if np.ndim(self.num_switches) != 0:
            raise ValueError("`intervals` reads one solve; index a batch first, e.g. "
                             "jax.tree_util.tree_map(lambda x: x[i], sol.switching)")
        n = min(int(self.num_switches), MAX_SWITCHES)
        edges = [float(self.t0), *np.asarray(self.switch_times)[:n].tolist(),
                 float(t_final)]
        modes = [EXPLICIT, *np.asarray(self.switch_modes)[:n].tolist()]
        return [(METHOD_NAMES[m], a, b) for m, a, b in zip(modes, edges, edges[1:])]


def switch_record(t0, state: _SwitchState) -> SwitchRecord:
    """The record of a finished solve from its final solver state."""
    return SwitchRecord(
        t0=jnp.asarray(t0), switch_times=state.switch_times,
        switch_modes=state.switch_modes, num_switches=state.num_switches,
        num_implicit_steps=state.num_implicit_steps,
        num_chebyshev_steps=state.num_chebyshev_steps,
        num_explicit_steps=(state.num_steps - state.num_implicit_steps
                            - state.num_chebyshev_steps),
        num_field_evals=state.num_evals,
    )
