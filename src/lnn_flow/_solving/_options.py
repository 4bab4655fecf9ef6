"""The solve options of every flow: their defaults in ONE place ([`SolveOptions`][])
and their checks ([`prepare`][]).

`factor_flow`, `end_to_end_flow`, the Exercise 2 flows, `solve_batch`, `solve_pool` and
the sweeps all take these keywords; each reads its defaults from [`DEFAULTS`][].
"""

import dataclasses
import warnings
from typing import Any, TypedDict

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core import _checks
from .. import losses as _losses


@dataclasses.dataclass(frozen=True)
class SolveOptions:
    """The keywords every flow takes after its positional arguments.

    Defaults: `Tsit5` (`solver=None`; `solver="auto"` switches among Tsit5, Chebyshev
    steps ([`lnn_flow.RKC2`][]) and an implicit Kvaerno5 on stiffness and cost,
    [`lnn_flow._solving._switching`][]), `rtol=1e-8`,
    `atol=None`: the system's own default ([`lnn_flow._solving._system.AbstractFlowSystem.default_atol`][]: 1e-10, scaled
    from `W0` by the end-to-end flow), `max_steps=16_384`, no
    loss or rest stop, no dense output. Values are checked by [`prepare`][] and
    [`check_output`][], not here: a traced value may sit in any field.
    """

    t0: Any = 0.0
    solver: diffrax.AbstractSolver | str | None = None
    rtol: Any = 1e-8
    atol: Any = None
    max_steps: int = 16_384
    dt0: Any = None
    stepsize_controller: diffrax.AbstractStepSizeController | None = None
    loss_threshold: Any = None
    steady_state: bool = False
    dense: bool = False
    progress_meter: diffrax.AbstractProgressMeter | None = None

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> "SolveOptions":
        """The options of `**options`; an unknown keyword is a `TypeError` naming it."""
        unknown = set(options) - set(NAMES)
        if unknown:
            raise TypeError(f"unknown solve options: {sorted(unknown)}")
        return cls(**options)

    def kwargs(self) -> dict[str, Any]:
        """Every option by name: `flow(..., **options.kwargs())` passes one set of
        options to any flow, `solve_batch` or `solve_pool`."""
        return {name: getattr(self, name) for name in NAMES}

    def solve_kwargs(self) -> dict[str, Any]:
        """The options [`prepare`][] checks (all but `dense`, `progress_meter`)."""
        # Shallow: `dataclasses.asdict` would turn a solver (a dataclass) into a dict.
        skip = ("dense", "progress_meter")
        return {name: getattr(self, name) for name in NAMES if name not in skip}


# The type of `stepsize_controller` (short, for the flows' signatures).
Controller = diffrax.AbstractStepSizeController

NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SolveOptions))
DEFAULTS = SolveOptions()

# The keywords of every flow's `**options: Unpack[SolveKwargs]`, built from the fields
# of `SolveOptions` so the names and types are written once.
SolveKwargs = TypedDict(  # noqa: UP013
    "SolveKwargs",
    {f.name: f.type for f in dataclasses.fields(SolveOptions)},
    total=False,
)


def check_output(dense, progress_meter) -> None:
    """`dense` a bool, `progress_meter` a diffrax progress meter or None."""
    if dense not in (True, False):
        raise TypeError(f"`dense` must be True or False; got {dense!r}")
    if progress_meter is not None and not isinstance(
        progress_meter, diffrax.AbstractProgressMeter
    ):
        raise TypeError(
            "`progress_meter` must be a diffrax progress meter (e.g. "
            f"diffrax.TqdmProgressMeter()); got {type(progress_meter).__name__}"
        )


def prepare(
    y0, *, t0, t1, ts, solver, rtol, atol, max_steps, dt0, stepsize_controller,
    loss_threshold, steady_state=False, loss=None,
) -> dict[str, Any]:
    """Check and normalize the solve arguments shared by every flow.

    Concrete values are checked on the host (a `ValueError`/`TypeError` naming the
    argument, before anything compiles); traced ones carry runtime checks.

    - A negative `loss_threshold` is refused when `loss` is one of `lnn_flow.losses`
      (all >= 0, so the stop could never trigger); a plain callable may be negative
      by design, so its threshold is taken as given.
    - With the default PID controller, tolerances finer than the state's dtype
      resolves are refused: the controller compares each step's error estimate, a
      difference of stage values each rounded to `eps |y|` (`eps =
      jnp.finfo(dtype).eps`: 1.2e-7 for float32, 2.2e-16 for float64), against
      `atol + rtol |y|`. Below `eps |y|` no step size passes reliably and the solve
      ends at `max_steps` (`tests/test_input_refusal.py` shows it for float32), so
      `rtol < eps` is refused unless `atol >= eps * max|y0|` covers it.
    """
    leaves = jax.tree_util.tree_leaves(y0)
    dtype = leaves[0].dtype

    scalar = lambda name, x: _scalar(name, x, dtype)
    t0 = scalar("t0", t0)
    t1 = scalar("t1", t1)
    t1 = _checks._require("t1", t1 - t0, lambda v: ~(v > 0), "must be greater than t0", on=t1)
    rtol = _checks.non_negative("rtol", scalar("rtol", rtol))
    atol = _checks.non_negative("atol", scalar("atol", atol))
    atol = _checks._require(
        "atol", rtol + atol, lambda v: ~(v > 0), "and rtol must not both be 0", on=atol
    )
    ts = _save_times(ts, t0, t1, dtype)
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)):
        raise TypeError(f"`max_steps` must be an integer; got {max_steps!r}")
    if max_steps < 1:
        raise ValueError(f"`max_steps` must be >= 1; got {max_steps}")
    if loss_threshold is not None:
        loss_threshold = scalar("loss_threshold", loss_threshold)
        if _non_negative_loss(loss):
            loss_threshold = _checks._require(
                "loss_threshold", loss_threshold, lambda v: v < 0,
                lambda: f"must be >= 0 for {type(loss).__name__} (a loss >= 0); got "
                f"{_checks._show(loss_threshold)}",
            )
    if not isinstance(steady_state, bool):
        raise TypeError(f"`steady_state` must be True or False; got {steady_state!r}")
    solver = _TSIT5 if solver is None else solver
    if isinstance(solver, str):
        if solver != "auto":
            raise ValueError(f"`solver` must be a diffrax solver or 'auto'; got {solver!r}")
        if stepsize_controller is not None:
            raise ValueError("`solver='auto'` steps with its own PID controller at `rtol`/"
                             "`atol`; pass no `stepsize_controller`")
    elif not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(
            f"`solver` must be a diffrax solver or 'auto'; got {type(solver).__name__}"
        )
    adaptive = isinstance(solver, (str, diffrax.AbstractAdaptiveSolver))
    if dt0 is not None:
        dt0 = _checks.positive("dt0", scalar("dt0", dt0))
    elif not adaptive and stepsize_controller is None:
        raise ValueError(
            f"`dt0` is required: {type(solver).__name__} has no error estimate, so it "
            "takes constant steps of size dt0"
        )
    if stepsize_controller is not None and not isinstance(
        stepsize_controller, diffrax.AbstractStepSizeController
    ):
        raise TypeError(
            "`stepsize_controller` must be a diffrax step-size controller; got "
            f"{type(stepsize_controller).__name__}"
        )
    if adaptive and stepsize_controller is None:
        rtol = _resolvable(rtol, atol, leaves, dtype)
    return dict(
        t0=t0, t1=t1, ts=ts, rtol=rtol, atol=atol, dt0=dt0,
        loss_threshold=loss_threshold, steady_state=steady_state, solver=solver,
        stepsize_controller=stepsize_controller, max_steps=int(max_steps),
    )


def _scalar(name: str, x, dtype):
    """A finite real scalar of the state's dtype; host values stay on the host."""
    _checks.real_scalar(name, x)
    if isinstance(x, (int, float, np.number)):
        return _checks.finite(name, np.asarray(x, dtype))
    return _checks.finite(name, _cast(_checks.as_float_array(name, x, ndim=0), dtype))


def _save_times(ts, t0, t1, dtype):
    """`ts` checked (finite, non-decreasing, within `[t0, t1]`); None: `(t0, t1)`."""
    if ts is None:
        return (np if isinstance(t0 + t1, np.ndarray | np.number) else jnp).stack([t0, t1])
    ts = _checks.finite("ts", _cast(_checks.as_float_array("ts", ts, ndim=1), dtype))
    if ts.shape[0] < 1:
        raise ValueError("`ts` must hold at least one time")
    ts = _checks._require(
        "ts", ts, lambda v: (v[1:] < v[:-1]).any(), "must be non-decreasing"
    )
    return _checks._require(
        "ts",
        ts,
        lambda v: (v[0] < t0) | (v[-1] > t1),
        lambda: f"must lie within [t0, t1] = [{t0}, {t1}]; got times from "
        f"{np.asarray(ts).min()} to {np.asarray(ts).max()}"
        if all(_checks.is_concrete(x) for x in (t0, t1, ts))
        else "must lie within [t0, t1]",
    )


def _cast(x, dtype):
    return x if x.dtype == dtype else x.astype(dtype)


def _non_negative_loss(loss) -> bool:
    return isinstance(loss, _losses.NON_NEGATIVE)


def _resolvable(rtol, atol, leaves, dtype):
    """`rtol`, refused where `atol + rtol |y|` is below the rounding `eps |y0|`."""
    eps = float(jnp.finfo(dtype).eps)
    if _checks.is_concrete(rtol) and rtol >= eps:  # the common case: nothing to check
        return rtol
    if all(_checks.is_concrete(x) for x in (rtol, atol, *leaves)):
        scale = max(float(np.abs(np.asarray(x)).max()) for x in leaves)
        if rtol < eps and atol < eps * scale:
            raise ValueError(
                f"`rtol` = {float(rtol):.3g} (with `atol` = {float(atol):.3g}) is finer "
                f"than {jnp.dtype(dtype).name} resolves (eps = {eps:.3g} relative, "
                f"{eps * scale:.3g} absolute at max|y0| = {scale:.3g}): the solve could "
                f"only end at `max_steps`; pass rtol >= {eps:.2g}"
                + (" or float64 arrays" if eps > np.finfo(np.float64).eps else "")
            )
        return rtol
    scale = jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in leaves]))
    bad = (rtol < eps) & (atol < eps * scale)
    return eqx.error_if(
        rtol, bad, f"`rtol` and `atol` are finer than {jnp.dtype(dtype).name} resolves "
        f"(eps = {eps:.3g}): pass rtol >= {eps:.2g} or float64 arrays"
    )


_TSIT5 = diffrax.Tsit5()  # the default solver, built once (a Module is costly to build)
_DENSE_WARN_BYTES = 2 * 2**30


def warn_dense_memory(y0, solver, max_steps: int) -> None:
    """Dense output keeps every step's interpolation data in buffers sized by
    `max_steps` up front: warn before a large allocation."""
    state = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(y0))
    stages = getattr(getattr(solver, "tableau", None), "num_stages", 7)
    estimate = max_steps * state * (stages + 2)
    if estimate > _DENSE_WARN_BYTES:
        warnings.warn(
            f"dense=True reserves about {estimate / 2**30:.1f} GiB for max_steps="
            f"{max_steps}; pass a smaller max_steps if the solve needs fewer steps",
            stacklevel=4,
        )
