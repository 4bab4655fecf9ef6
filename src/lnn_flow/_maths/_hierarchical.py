"""Hierarchical tensor factorization (Section 5; Razin, Maman & Cohen 2022): an
order-`N` tensor built along a mode tree, the model of deep convolutional arithmetic
networks (Cohen et al. 2017), whose implicit regularization lowers hierarchical
tensor rank.

**The tree.** A nested tuple over the modes `0, ..., N-1`: an `int` is a leaf (one
mode), a tuple an internal node whose children are its entries, each mode once, e.g.
`((0, 1), (2, 3))` (the balanced binary tree of `N = 4`, [`binary_tree`][]) or
`(0, 1, 2)` (one level: the root's children are the leaves).

**The weights.** Every node `v` has a matrix `W^v` of shape `(R_v, R_parent(v))`:
`R_v = d_n` for the leaf of mode `n`, the node's width for an internal node, and
`R_parent(root) = 1` (the output layer; `output=False`: no root matrix, the root sums
its `R_root` channels). They are listed in pre-order (root first, then each child's
subtree left to right): [`nodes`][] gives the order.

**The tensor.** With `T^v[:, s]` the tensor of node `v`'s channel `s` (over the modes
below `v`),

    leaf of mode n:  T^v[:, s] = W^v[:, s]                          (a vector in R^{d_n})
    internal v:      T^v[:, s] = sum_r W^v[r, s] (x)_{c in C(v)} T^c[:, r]

and the end-to-end tensor is `T^root[:, 0]`, its modes put back in order `0..N-1`.
Pooling is the product (the `(x)` of the children's channel `r`), as in the authors'
code (`asafmaman101/imp_reg_htf`). One level with `output=False` is CP exactly:
`W = sum_r (x)_n W^{leaf n}[:, r]`, the factors `A_n = W^{leaf n}`
([`lnn_flow._maths._cp`][]).

**Local components.** At an internal node `v`, component `r` is the tuple of `K_v =
|C(v)| + 1` vectors (row `r` of `W^v`; column `r` of each child's `W^c`), `K_v = |C(v)|`
for the root without an output layer; `W` is multilinear in them and, by the
recursion, a sum over `r` of terms each linear in component `r`'s outer product. Its
norm is the product of the vectors' norms ([`local_component_norms`][]). A zero
local component at the parent `p` of `v` removes one term from the sum, each of
rank <= 1 in the matricization of `v`'s modes against the rest: the number of nonzero
local components at `p` bounds that rank (derived; the hierarchical rank is the tuple
of these ranks over the non-root nodes, [`matricization_singular_values`][]).
"""

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._core import _checks

HTWeights = tuple[Float[Array, "_ _"], ...]
Tree = Any  # int | tuple[Tree, ...]


def binary_tree(order: int) -> Tree:
    """The balanced binary mode tree over `order` modes: adjacent modes paired level
    by level (an odd one out is carried up), as the authors' default pooling
    ("checkerboard", pool size 2). `binary_tree(4) == ((0, 1), (2, 3))`."""
    level: list[Tree] = list(range(order))
    while len(level) > 2:
        paired = [tuple(level[i:i + 2]) for i in range(0, len(level) - 1, 2)]
        level = paired + ([level[-1]] if len(level) % 2 else [])
    return tuple(level)


def mode_tree(tree, order: int | None = None, name: str = "tree") -> Tree:
    """`tree` checked and normalized to nested tuples of ints: every mode
    `0..N-1` exactly once, each internal node with at least two children, the root
    internal (order `N >= 2`); `order`: the `N` it must cover (the loss's)."""
    def normal(node):
        if isinstance(node, (int, np.integer)) and not isinstance(node, bool):
            return int(node)
        if isinstance(node, (tuple, list)):
            children = tuple(normal(c) for c in node)
            if len(children) < 2:
                raise ValueError(f"`{name}`: every internal node needs at least two "
                                 f"children; got {node!r}")
            return children
        raise TypeError(f"`{name}` must be nested tuples of mode indices (ints); "
                        f"got {node!r}")

    out = normal(tree)
    if isinstance(out, int):
        raise ValueError(f"`{name}` must be a tuple of subtrees (order N >= 2); got {tree!r}")
    modes = leaves(out)
    n = len(modes) if order is None else order
    if sorted(modes) != list(range(n)):
        raise ValueError(f"`{name}` must cover the modes 0..{n - 1} once each; got "
                         f"the leaves {modes}")
    return out


def leaves(tree: Tree) -> list[int]:
    """The modes of `tree`'s leaves, left to right."""
    return [tree] if isinstance(tree, int) else [m for c in tree for m in leaves(c)]


def preorder(tree: Tree, output: bool = True) -> list[tuple[tuple[int, ...], Tree]]:
    """`(path, node)` in the order of the weights (pre-order; `path` the child indices
    from the root, a unique key where two subtrees are equal as values), the root
    first unless it has no matrix (`output=False`)."""
    def walk(node, path):
        yield path, node
        if not isinstance(node, int):
            for i, child in enumerate(node):
                yield from walk(child, path + (i,))
    out = list(walk(tree, ()))
    return out if output else out[1:]


def nodes(tree: Tree, output: bool = True) -> list[Tree]:
    """The nodes in the order of the weights (pre-order), the root first unless it has
    no matrix (`output=False`)."""
    return [node for _, node in preorder(tree, output)]


def _layout(tree: Tree, output: bool) -> dict:
    """Node path -> index of its weight in the pre-order list."""
    return {path: i for i, (path, _) in enumerate(preorder(tree, output))}


def ht_weights(ws, tree: Tree, output: bool = True, name: str = "ws", *,
               finite: bool = True) -> tuple[HTWeights, tuple[int, ...]]:
    """`ws` checked against `tree`: one real 2-D float array per node in pre-order,
    shapes chained as `(R_v, R_parent(v))` (`(R_root, 1)` at the root). Returns the
    weights and the tensor shape `(d_0, ..., d_{N-1})`; errors name `name`."""
    if isinstance(ws, (np.ndarray,)) or hasattr(ws, "shape"):
        raise TypeError(f"`{name}` must be a tuple of weight matrices, one per tree node; "
                        f"got a single array")
    ws = tuple(ws)
    want = len(nodes(tree, output))
    if len(ws) != want:
        raise ValueError(f"`{name}` must hold {want} weight matrices for this tree "
                         f"(one per node, pre-order{'' if output else ', no root'}); "
                         f"got {len(ws)}")
    ws = tuple(_checks.as_float_array(f"{name}[{i}]", w, ndim=2) for i, w in enumerate(ws))
    ws = tuple(_checks.non_empty(f"{name}[{i}]", w) for i, w in enumerate(ws))
    if finite:
        ws = tuple(_checks.finite(f"{name}[{i}]", w) for i, w in enumerate(ws))
    if len({w.dtype for w in ws}) > 1:
        raise TypeError(f"`{name}` must have one dtype; got {sorted({str(w.dtype) for w in ws})}")
    index = _layout(tree, output)
    dims = {}

    def check(node, path, parent_width):
        i = index.get(path)
        if i is None:  # the root without an output layer
            widths = {ws[index[path + (k,)]].shape[1] for k in range(len(node))}
            if len(widths) > 1:
                raise ValueError(f"`{name}`: the root's children must share their column "
                                 f"count (the root's width); got {sorted(widths)}")
            rows = widths.pop()
        else:
            rows, cols = ws[i].shape
            if cols != parent_width:
                raise ValueError(f"`{name}[{i}]` (node {node!r}) must have "
                                 f"{parent_width} columns (its parent's width); got "
                                 f"shape {tuple(ws[i].shape)}")
        if isinstance(node, int):
            dims[node] = rows
        else:
            for k, child in enumerate(node):
                check(child, path + (k,), rows)

    check(tree, (), 1)
    return ws, tuple(dims[m] for m in range(len(dims)))


def _node_tensor(ws: HTWeights, index: dict, node: Tree, path: tuple) -> Array:
    """`T^v` of shape `(*dims below v in leaf order, R_parent(v))`."""
    if isinstance(node, int):
        return ws[index[path]]
    pooled = None
    for k, child in enumerate(node):
        t = _node_tensor(ws, index, child, path + (k,))
        if pooled is None:
            pooled = t
        else:
            shape = pooled.shape[:-1] + t.shape[:-1] + t.shape[-1:]
            flat = pooled.reshape(-1, 1, pooled.shape[-1]) * t.reshape(1, -1, t.shape[-1])
            pooled = flat.reshape(shape)
    i = index.get(path)
    if i is None:  # no output layer: the root sums its channels
        return pooled.sum(-1, keepdims=True)
    return jnp.tensordot(pooled, ws[i], axes=1)


def product(ws: HTWeights, tree: Tree, output: bool = True) -> Array:
    """The end-to-end tensor of the weights `ws` on `tree` (module docstring), modes in
    order `0..N-1`. Linear in each node's matrix; traceable, vmappable."""
    out = _node_tensor(tuple(ws), _layout(tree, output), tree, ())[..., 0]
    return jnp.transpose(out, np.argsort(leaves(tree)))


class HTProduct:
    """`ws -> product(ws, tree, output)` for one tree: a hashable callable (a static
    field of [`lnn_flow.FlowSolution`][] that `evaluate` applies)."""

    __slots__ = ("tree", "output")

    def __init__(self, tree: Tree, output: bool):
        self.tree, self.output = tree, output

    def __call__(self, ws):
        return product(ws, self.tree, self.output)

    def __eq__(self, other):
        return isinstance(other, HTProduct) and (self.tree, self.output) == (other.tree, other.output)

    def __hash__(self):
        return hash((HTProduct, self.tree, self.output))

    def __repr__(self):
        return f"HTProduct(tree={self.tree!r}, output={self.output})"


def local_components(ws: HTWeights, tree: Tree, output: bool = True):
    """Per internal node (pre-order, root first), the vectors' squared norms of each
    local component: an array `(K_v, R_v)`, row 0 the node's own rows (absent at the
    root without an output layer), then each child's columns."""
    index = _layout(tree, output)
    out = []
    for path, node in preorder(tree):
        if isinstance(node, int):
            continue
        rows = [jnp.sum(ws[index[path]] ** 2, axis=1)] if path in index else []
        rows += [jnp.sum(ws[index[path + (k,)]] ** 2, axis=0) for k in range(len(node))]
        out.append(jnp.stack(rows))
    return out


def local_component_norms(ws: HTWeights, tree: Tree, output: bool = True) -> list[Array]:
    """Per internal node (pre-order), the norms `(R_v,)` of its local components:
    the product of their vectors' norms."""
    return [jnp.prod(jnp.sqrt(sq), axis=0) for sq in local_components(ws, tree, output)]


def unbalancedness(ws: HTWeights, tree: Tree, output: bool = True) -> Array:
    """Every local component's `||u_k||^2 - ||u_0||^2` (vector `k` against the first),
    concatenated over nodes: constant along the flow (the analogue of Lemma 1 and of
    the CP law); zero at a balanced init."""
    return jnp.concatenate([(sq[1:] - sq[:1]).ravel()
                            for sq in local_components(ws, tree, output)])


def matricization_singular_values(W: Float[Array, "..."], tree: Tree) -> list[Array]:
    """Singular values of the matricization `[[W; v]]` (the modes below `v` as rows,
    the rest as columns) for every non-root node `v` in pre-order: the ranks that
    make up the hierarchical tensor rank."""
    out = []
    for node in nodes(tree)[1:]:
        rows = leaves(node)
        cols = [m for m in range(W.ndim) if m not in rows]
        M = jnp.transpose(W, rows + cols).reshape(int(np.prod([W.shape[m] for m in rows])), -1)
        out.append(jnp.linalg.svd(M, compute_uv=False))
    return out


def tree_shape_widths(tree: Tree, shape: Sequence[int], widths, output: bool = True):
    """The weight shapes, pre-order, for `shape` `(d_0, ..., d_{N-1})` and `widths`:
    an int (every internal node) or one int per depth below the root (`widths[0]` the
    root's)."""
    shapes = []

    def width(depth):
        if isinstance(widths, int):
            return widths
        if depth >= len(widths):
            raise ValueError(f"`widths` must give a width for each depth of internal "
                             f"nodes (root first); got {len(widths)} for a tree with "
                             f"internal nodes at depth {depth}")
        return widths[depth]

    def walk(node, depth, parent):
        rows = shape[node] if isinstance(node, int) else width(depth)
        shapes.append((rows, parent))
        if not isinstance(node, int):
            for child in node:
                walk(child, depth + 1, rows)

    walk(tree, 0, 1)
    return shapes if output else shapes[1:]
