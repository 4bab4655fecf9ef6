"""The CP (CANDECOMP/PARAFAC) parameterization of an order-`N` tensor (Section 5).

Factors `fs = (A_1, ..., A_N)`, `A_n` of shape `(d_n, R)`; column `r` of each gives the
component `W_r = a_r^1 (x) ... (x) a_r^N`, and the end-to-end tensor is

    W = sum_{r=1}^R a_r^1 (x) a_r^2 (x) ... (x) a_r^N,   shape (d_1, ..., d_N).

For `N = 2` it is the matrix `A_1 A_2^T`: a depth-2 linear network (Definition 2) with
`W_1 = A_2^T`, `W_2 = A_1`. Lifting the factorization to `N >= 3` is the arithmetic
network of Section 5 (Razin, Maman & Cohen 2021). Re-exported by `lnn_flow.tensor`.
"""

import string
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._core import _checks

CPFactors = tuple[Float[Array, "_ R"], ...]

# Mode letters of the one einsum; `r` (the component) is not among them.
_MODES = string.ascii_lowercase.replace("r", "")


def tensor_shape(shape: Sequence[int], name: str = "shape") -> tuple[int, ...]:
    """`(d_1, ..., d_N)`: at least two positive integers (order `N >= 2`)."""
    out = _checks.integers(shape, name)
    if len(out) < 2:
        raise ValueError(
            f"`{name}` must be (d_1, ..., d_N) with order N >= 2; got {out}"
        )
    if len(out) > len(_MODES):
        raise ValueError(f"`{name}` must have order N <= {len(_MODES)}; got {len(out)}")
    if any(d < 1 for d in out):
        raise ValueError(f"`{name}` must hold positive dimensions; got {out}")
    return out


def cp_factors(fs, name: str = "fs", *, finite: bool = True) -> CPFactors:
    """`fs` as a tuple of `N >= 2` real 2-D arrays of one float dtype sharing their
    column count `R`; errors name `name` and the offending index. `finite`: also
    refuse NaN/inf entries (a runtime check on traced input)."""
    if isinstance(fs, (jax.Array, np.ndarray)):
        raise TypeError(
            f"`{name}` must be a tuple of CP factors (A_1, ..., A_N); got a single "
            f"array of shape {tuple(fs.shape)}"
        )
    try:
        fs = tuple(fs)
    except TypeError as err:
        raise TypeError(f"`{name}` must be a tuple of CP factors (A_1, ..., A_N)") from err
    if len(fs) < 2:
        raise ValueError(
            f"`{name}` must hold at least two factors (tensor order N >= 2); got {len(fs)}"
        )
    if len(fs) > len(_MODES):
        raise ValueError(f"`{name}` must hold at most {len(_MODES)} factors; got {len(fs)}")
    fs = tuple(
        _checks.non_empty(f"{name}[{n}]", _checks.as_float_array(f"{name}[{n}]", f, ndim=2))
        for n, f in enumerate(fs)
    )
    for n in range(1, len(fs)):
        if fs[n].dtype != fs[0].dtype:
            raise TypeError(
                f"`{name}` must share one float dtype: {name}[0] is {fs[0].dtype.name} "
                f"but {name}[{n}] is {fs[n].dtype.name}; cast them to one dtype"
            )
        if fs[n].shape[1] != fs[0].shape[1]:
            raise ValueError(
                f"`{name}` factors must share the number of components R (columns): "
                f"{name}[{n}] has {fs[n].shape[1]} columns, {name}[0] has "
                f"{fs[0].shape[1]}"
            )
    if finite:
        fs = tuple(_checks.finite(f"{name}[{n}]", f) for n, f in enumerate(fs))
    return fs


def shape_of(fs: CPFactors) -> tuple[int, ...]:
    """`(d_1, ..., d_N)`: the shape of the tensor the factors give."""
    return tuple(int(f.shape[0]) for f in fs)


def product(fs: CPFactors) -> Float[Array, "*E"]:
    """`sum_r a_r^1 (x) ... (x) a_r^N` as one einsum, unchecked (the flow's own map)."""
    modes = _MODES[: len(fs)]
    spec = ",".join(f"{m}r" for m in modes) + "->" + modes
    return jnp.einsum(spec, *fs)


def end_to_end(fs: CPFactors) -> Float[Array, "*E"]:
    """The end-to-end tensor `W = sum_r a_r^1 (x) ... (x) a_r^N` of shape
    `(d_1, ..., d_N)`; for `N = 2` the matrix `A_1 A_2^T`."""
    return product(cp_factors(fs))


def _column_norms(fs: CPFactors) -> Float[Array, "N R"]:
    return jnp.stack([jnp.linalg.norm(f, axis=0) for f in fs])


def component_norms(fs: CPFactors) -> Float[Array, "*batch R"]:
    """`||W_r||_F = prod_n ||a_r^n||` for each component `r` (the Frobenius norm of
    an outer product is the product of the norms of its vectors).

    The factors may share leading axes (a solution's saved `factors`, `(k, d_n, R)`,
    or a batch's `(B, k, d_n, R)`): then the norms have those axes too, `(..., R)`,
    NaN at saves not reached."""
    fs = _stacked_cp_factors(fs)
    return jnp.prod(jnp.stack([jnp.linalg.norm(f, axis=-2) for f in fs]), axis=0)


def _stacked_cp_factors(fs, name: str = "fs") -> CPFactors:
    """`fs` checked as CP factors with optional shared leading axes: each factor's
    last two axes as by [`cp_factors`][] (no finiteness check where there are
    leading axes: unreached saves are NaN)."""
    if not (isinstance(fs, (tuple, list)) and fs and all(jnp.ndim(f) > 2 for f in fs)):
        return cp_factors(fs, name)
    lead = jnp.shape(fs[0])[:-2]
    for n, f in enumerate(fs):
        if jnp.shape(f)[:-2] != lead:
            raise ValueError(
                f"`{name}` must share its leading (save or batch) axes: {name}[0] "
                f"has {tuple(lead)} but {name}[{n}] has {tuple(jnp.shape(f)[:-2])}"
            )
    if all(lead):  # the trailing axes of one member, checked as plain CP factors
        cp_factors(tuple(jnp.asarray(f)[(0,) * len(lead)] for f in fs), name, finite=False)
    return tuple(jnp.asarray(f) for f in fs)


def unbalancedness(fs: CPFactors) -> Float[Array, ""]:
    """`max_{r, n, n'} | ||a_r^n||^2 - ||a_r^n'||^2 |`: zero for balanced factors;
    conserved by the CP gradient flow (the analogue of Lemma 1, see
    [`lnn_flow._theory._tensor_theory.check_conservation`][])."""
    squares = _column_norms(cp_factors(fs)) ** 2
    return jnp.max(squares.max(axis=0) - squares.min(axis=0))


def saved_component_norms(factors) -> np.ndarray:
    """`||W_r||` of stacked factors on the host: `(..., R)` from factors `(..., d_n, R)`
    (saves, seeds); NaN where a save was not reached, with no finiteness check."""
    return np.prod([np.linalg.norm(np.asarray(f), axis=-2) for f in factors], axis=0)


def effective_tensor_rank(norms, cutoff: float) -> np.ndarray:
    """How many components carry the solution: final norms `(..., R)` at least `cutoff`
    times the largest (an upper bound on the CP rank at that tolerance)."""
    norms = np.asarray(norms)
    return np.sum(norms >= cutoff * norms.max(axis=-1, keepdims=True), axis=-1)
