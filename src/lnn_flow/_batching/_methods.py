"""One registry of the methods that `solve_batch`, `solve_pool` and the sweeps run.

Each entry says how to call the method on one member (`flow(loss, init, *args,
**kwargs)`), how to build its system ([`lnn_flow._solving._system.AbstractFlowSystem`][]) and its
initial state from one member of `init`, and whether it is an ODE flow taking the
[`lnn_flow._solving._options.SolveOptions`][] keywords (then it can be pooled). A flow
registered here once is batchable and poolable, with no other file changing.
"""

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
from jaxtyping import Array, PyTree

from .._core import _checks
from .._flows._descent import end_to_end_descent, gradient_descent
from .._flows._end_to_end import _EndToEndSystem, end_to_end_flow
from .._flows._factor import _FactorSystem, factor_flow
from .._flows._hierarchical_flow import flow as hierarchical_flow
from .._flows._hierarchical_flow import hierarchical_system
from .._flows._modified import (
    _ModifiedSystem,
    check_lr_order,
    modified_end_to_end_flow,
    modified_factor_flow,
)
from .._solving._options import DEFAULTS, NAMES, SolveOptions
from .._maths._spectral import decomposition_name
from .._flows._symmetric import (
    _SymmetricFactorSystem,
    _SymmetricSystem,
    symmetric_factor_flow,
    symmetric_flow,
)
from .._solving._system import AbstractFlowSystem, Loss
from .._flows._tensor_flow import cp_system, flow as tensor_flow

# `(loss, one member of init, the method's bound arguments by name) -> system`.
SystemBuilder = Callable[[Loss, PyTree[Array], dict[str, Any]], AbstractFlowSystem]


def _identity(member):
    return member


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method.

    - `flow`: `flow(loss, member, *args, **kwargs) -> FlowSolution` for one member.
    - `system`: builds the system from the loss, one member and the bound arguments,
      checking the member's shapes against the loss (errors name `init`).
    - `state`: the flow's initial state from one member (the identity, except where
      the state is not what the user passes, e.g. `(W^T, W)` from `W`).
    - `factors`: a member is a tuple of factors (else one matrix).
    - `ode`: takes the `SolveOptions` keywords (a diffrax solve): poolable.
    """

    flow: Callable[..., Any]
    system: SystemBuilder
    state: Callable[[PyTree[Array]], PyTree[Array]] = _identity
    factors: bool = False
    ode: bool = True

    def options(self, arguments: dict[str, Any]) -> SolveOptions:
        """The solve options among `arguments` (from [`arguments`][]), the rest from
        `DEFAULTS`."""
        picked = {name: arguments[name] for name in NAMES if name in arguments}
        return dataclasses.replace(DEFAULTS, **picked)


def _factor_system(loss, member, arguments) -> AbstractFlowSystem:
    ws = _checks.factors(member, "init")
    _checks.fits_loss(loss, (ws[-1].shape[0], ws[0].shape[1]), "init")
    return _FactorSystem(loss, len(ws))


def _end_to_end_system(loss, member, arguments) -> AbstractFlowSystem:
    W = _checks.as_float_array("init", member, ndim=2)
    _checks.fits_loss(loss, W.shape, "init")
    depth = _checks.positive_int("depth", arguments["depth"])
    decomposition = decomposition_name(arguments.get("decomposition", "svd"))
    return _EndToEndSystem(loss, depth, decomposition)


def _symmetric_system(loss, member, arguments) -> AbstractFlowSystem:
    Ws = _checks.as_float_array("init", member, ndim=2)
    _checks.fits_loss(loss, Ws.shape, "init")
    return _SymmetricSystem(loss)


def _symmetric_factor_system(loss, member, arguments) -> AbstractFlowSystem:
    W = _checks.as_float_array("init", member, ndim=2)
    _checks.fits_loss(loss, (W.shape[0], W.shape[0]), "init")
    return _SymmetricFactorSystem(loss)


def _modified(builder: SystemBuilder) -> SystemBuilder:
    """`builder`'s system wrapped in its modified equation (`lr`, `order` bound)."""

    def build(loss, member, arguments) -> AbstractFlowSystem:
        system = builder(loss, member, arguments)
        dtype = jax.tree_util.tree_leaves(member)[0].dtype
        lr, order = check_lr_order(arguments["lr"], arguments["order"], dtype)
        return _ModifiedSystem(system, lr, order)

    return build


def _transpose_pair(W):
    return (W.T, W)


METHODS: dict[str, Method] = {
    "factor": Method(factor_flow, _factor_system, factors=True),
    "end_to_end": Method(end_to_end_flow, _end_to_end_system),
    "descent": Method(gradient_descent, _factor_system, factors=True, ode=False),
    "end_to_end_descent": Method(end_to_end_descent, _end_to_end_system, ode=False),
    "symmetric": Method(symmetric_flow, _symmetric_system),
    "symmetric_factor": Method(
        symmetric_factor_flow, _symmetric_factor_system, state=_transpose_pair
    ),
    "modified_factor": Method(
        modified_factor_flow, _modified(_factor_system), factors=True
    ),
    "modified_end_to_end": Method(modified_end_to_end_flow, _modified(_end_to_end_system)),
    "tensor": Method(tensor_flow, cp_system, factors=True),
    "hierarchical": Method(hierarchical_flow, hierarchical_system, factors=True),
}


def poolable() -> list[str]:
    """The registered methods a refilled pool can solve (the ODE flows)."""
    return sorted(name for name, entry in METHODS.items() if entry.ode)


def lookup(method: str, *, pool: bool = False) -> Method:
    """The entry of `method`; a `ValueError` listing the choices otherwise."""
    names = poolable() if pool else sorted(METHODS)
    if not isinstance(method, str) or method not in names:
        what = " for a refilled solve" if pool else ""
        raise ValueError(f"`method` must be one of {names}{what}; got {method!r}")
    return METHODS[method]


def bind(method, flow, loss, member, args, kwargs) -> inspect.BoundArguments | None:
    """`flow(loss, member, *args, **kwargs)` bound to its signature (None when it has
    none): a missing or unknown argument is a `TypeError` here that shows what the
    method takes after `init`, not an error from inside the trace. `method` is the
    registered name (or the callable itself), named in the error."""
    try:
        signature = _signature(flow)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to bind
        return None
    try:
        bound = signature.bind(loss, member, *args, **kwargs)
        if isinstance(method, str):  # a registered flow's `**options` are solve options
            for param in signature.parameters.values():
                if param.kind is not param.VAR_KEYWORD:
                    continue
                unknown = set(bound.arguments.get(param.name, {})) - set(NAMES)
                if unknown:
                    raise TypeError(
                        f"got an unexpected keyword argument {sorted(unknown)[0]!r}"
                    )
        return bound
    except TypeError as err:
        params = list(signature.parameters.values())[2:]
        takes = ", ".join(
            p.name + ("" if p.default is p.empty else f"={p.default!r}")
            for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        )
        name = getattr(flow, "__name__", type(flow).__name__)
        label = f" (method {method!r})" if isinstance(method, str) else ""
        raise TypeError(
            f"arguments of `{name}`{label}: {err}; after `loss, init` it takes "
            f"({takes}), got {len(args)} positional argument(s) {tuple(args)!r}"
        ) from None


def _signature(flow) -> inspect.Signature:
    try:
        hash(flow)
    except TypeError:  # e.g. a module holding arrays: not cached
        return inspect.signature(flow)
    return _cached_signature(flow)


@functools.lru_cache(maxsize=64)
def _cached_signature(flow) -> inspect.Signature:
    return inspect.signature(flow)


def arguments(method: str, loss, member, args, kwargs) -> dict[str, Any]:
    """Every argument of the registered `method` by name, defaults filled in; the
    keywords a flow takes as `**options` are merged in by name."""
    bound = bind(method, METHODS[method].flow, loss, member, args, kwargs)
    bound.apply_defaults()
    out = dict(bound.arguments)
    for param in bound.signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            out.update(out.pop(param.name))
    return out
