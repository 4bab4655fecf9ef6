"""Initial weights of a hierarchical tensor factorization ([`lnn_flow._maths._hierarchical`][]).

**Balanced** ([`balanced`][]): every local component's vectors have one norm, so the
conserved quantities of the flow ([`lnn_flow._maths._hierarchical.unbalancedness`][])
start at zero. A matrix `W^v` holds the rows of node `v`'s components and the columns
of its parent's, so every row of `W^v` needs norm^2 `F / R_v` and every column `F /
R_parent(v)`: both hold exactly when every matrix has `||W^v||_F^2 = F`. With `F =
scale^2`, every weight matrix has Frobenius norm `scale` and a local component at `v`
has norm `(scale^2 / R_v)^{K_v / 2}` (`K_v` its number of vectors). Directions are
random: a Gaussian matrix's squared entries scaled to those row and column sums
(Sinkhorn), signs kept; leaves (whose rows are free) have Gaussian columns rescaled.

**Gaussian** ([`gaussian`][]): independent `N(0, std^2)` entries, the authors'
convention (`std = 0.01` in their experiments): unbalanced in general.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import PRNGKeyArray

from .._core import _checks
from ._cp import tensor_shape
from ._hierarchical import HTWeights, binary_tree, mode_tree, preorder, tree_shape_widths
from ._tensor_init import _positive_scalar

# Sinkhorn sweeps: enough for 1e-14 relative margins on the widths used here
# (tests/maths/test_hierarchical.py checks the balance it reaches).
SINKHORN_SWEEPS = 2000


def _arguments(key, shape, widths, tree, dtype):
    key = _checks.prng_key("key", key)
    shape = tensor_shape(shape, "shape")
    tree = binary_tree(len(shape)) if tree is None else mode_tree(tree, len(shape))
    if isinstance(widths, bool):
        raise TypeError("`widths` must be a positive int or a sequence of them")
    if isinstance(widths, int):
        widths = _checks.positive_int("widths", widths)
    else:
        widths = _checks.integers(widths, "widths")
        if any(w < 1 for w in widths):
            raise ValueError(f"`widths` must be positive; got {widths}")
    dtype = _checks.float_dtype("dtype", dtype)
    return shape, tree, widths, dtype


def _scaled(g, row_sq, col_sq):
    """`sign(g) sqrt(S)` with `S` the Sinkhorn scaling of `g^2` to row sums `row_sq`
    and column sums `col_sq` (equal totals)."""
    s = g ** 2 + jnp.finfo(g.dtype).tiny

    def sweep(_, s):
        s = s * (row_sq / s.sum(1))[:, None]
        return s * (col_sq / s.sum(0))[None, :]

    s = lax.fori_loop(0, SINKHORN_SWEEPS, sweep, s)
    return jnp.sign(g) * jnp.sqrt(s)


def balanced(
    key: PRNGKeyArray,
    shape: Sequence[int],
    widths: int | Sequence[int],
    scale: float,
    *,
    tree=None,
    output: bool = True,
    dtype=None,
) -> HTWeights:
    """Balanced weights (module docstring) of a hierarchical factorization of a tensor
    of `shape` `(d_0, ..., d_{N-1})` on `tree` (default [`binary_tree`][]): every weight
    matrix of Frobenius norm `scale`, all conserved quantities zero.

    `widths`: one int for every internal node, or one per depth below the root
    (`widths[0]` the root's width). `output`: with the root's output layer (an
    `(R_root, 1)` matrix, the authors' model) or without (then a one-level tree is CP
    exactly). Pre-order weights, as [`lnn_flow.hierarchical.flow`][] takes them."""
    shape, tree, widths, dtype = _arguments(key, shape, widths, tree, dtype)
    scale = _positive_scalar("scale", scale, dtype)
    shapes = tree_shape_widths(tree, shape, widths, output)
    F = scale ** 2
    out = []
    kinds = [isinstance(node, int) for _, node in preorder(tree, output)]
    for k, ((rows, cols), leaf) in zip(jax.random.split(key, len(shapes)), zip(shapes, kinds)):
        g = jax.random.normal(k, (rows, cols), dtype)
        if leaf:
            out.append(g / jnp.linalg.norm(g, axis=0) * jnp.sqrt(F / cols))
        else:
            out.append(_scaled(g, jnp.full(rows, F / rows), jnp.full(cols, F / cols)))
    return tuple(out)


def gaussian(
    key: PRNGKeyArray,
    shape: Sequence[int],
    widths: int | Sequence[int],
    std: float,
    *,
    tree=None,
    output: bool = True,
    dtype=None,
) -> HTWeights:
    """Weights with independent `N(0, std^2)` entries (the authors' init), shapes as
    for [`balanced`][]: unbalanced in general."""
    shape, tree, widths, dtype = _arguments(key, shape, widths, tree, dtype)
    std = _positive_scalar("std", std, dtype)
    shapes = tree_shape_widths(tree, shape, widths, output)
    return tuple(std * jax.random.normal(k, s, dtype)
                 for k, s in zip(jax.random.split(key, len(shapes)), shapes))
